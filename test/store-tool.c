/* store-tool.c - test helper: put, get and dump raw store objects through store.h, so test scripts
 * seed and read any backend alike. */
#include "reconciler/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Usage (the store is $MESHCA_STORE, as for meshca):
 *   store-tool put KIND MESH NAME VALUE   unconditional put; prints the new version
 *   store-tool get KIND MESH NAME         prints the value as stored (exit 1 when absent)
 *   store-tool dump                       every object of every kind: "kind/mesh/name@version
 *                                         len" then the value and a newline, sorted
 * Exit: 0 ok, 1 not found, 2 usage or store error (the store's message on stderr).
 */


static int fail(store *s, int r)
{
    fprintf(stderr, "store-tool: %s\n", s ? store_errmsg(s) : store_strerror(r));
    return r == STORE_ENOTFOUND ? 1 : 2;
}

int main(int argc, char **argv)
{
    char err[MESHCA_ERRBUF] = "";
    store *s = NULL;
    int r, rc = 0;

    if (argc < 2 || (strcmp(argv[1], "put") == 0 && argc != 6) ||
        (strcmp(argv[1], "get") == 0 && argc != 5) || (strcmp(argv[1], "dump") == 0 && argc != 2)) {
        fputs("usage: store-tool put KIND MESH NAME VALUE | get KIND MESH NAME | dump\n", stderr);
        return 2;
    }
    r = store_open(NULL, &s, err);
    if (r < 0) {
        fprintf(stderr, "store-tool: %s\n", err);
        return 2;
    }
    if (strcmp(argv[1], "put") == 0) {
        store_key k = {argv[2], argv[3], argv[4]};
        uint64_t ver = 0;

        r = store_put(s, &k, argv[5], strlen(argv[5]), STORE_ANY_VERSION, &ver);
        if (r < 0)
            rc = fail(s, r);
        else
            printf("%llu\n", (unsigned long long)ver);
    } else if (strcmp(argv[1], "get") == 0) {
        store_key k = {argv[2], argv[3], argv[4]};
        char *v = NULL;
        size_t len = 0;

        r = store_get(s, &k, &v, &len, NULL);
        if (r < 0)
            rc = fail(s, r);
        else if (fwrite(v, 1, len, stdout) != len)
            rc = 2;
        free(v);
    } else if (strcmp(argv[1], "dump") == 0) {
        size_t nkinds = 0;
        const char *const *kinds = store_kinds(&nkinds);
        for (size_t i = 0; i < nkinds && rc == 0; i++) {
            store_entry *e = NULL;
            size_t n = 0;

            r = store_list(s, kinds[i], NULL, &e, &n);
            if (r < 0) {
                rc = fail(s, r);
                break;
            }
            for (size_t j = 0; j < n; j++) {
                printf("%s/%s/%s@%llu %zu\n", e[j].kind, e[j].mesh, e[j].name,
                       (unsigned long long)e[j].version, e[j].len);
                if (fwrite(e[j].value, 1, e[j].len, stdout) != e[j].len)
                    rc = 2;
                putchar('\n');
            }
            store_entries_free(e, n);
        }
    } else {
        fprintf(stderr, "store-tool: unknown command '%s'\n", argv[1]);
        rc = 2;
    }
    store_close(s);
    return rc;
}
