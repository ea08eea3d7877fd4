/* store-dump.c - prints every object of a store, one line each, sorted: kind, mesh, name and the
 * SHA-256 of its value (never the value: stores hold keys). The crash tests compare these dumps
 * to tell "before", "after" and torn states apart. Usage: store-dump [URL] ($MESHCA_STORE). */
#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "reconciler/store.h"


int main(int argc, char **argv)
{
    char errbuf[MESHCA_ERRBUF] = "";
    store *s = NULL;
    if (argc > 2) {
        fprintf(stderr, "usage: store-dump [URL]\n");
        return 2;
    }
    int rc = store_open(argc == 2 ? argv[1] : NULL, &s, errbuf);
    if (rc < 0) {
        fprintf(stderr, "store-dump: %s\n", errbuf);
        return 2;
    }
    size_t nkinds = 0;
    const char *const *kinds = store_kinds(&nkinds);
    for (size_t k = 0; k < nkinds; k++) {
        store_entry *e = NULL;
        size_t n = 0;
        if ((rc = store_list(s, kinds[k], NULL, &e, &n)) < 0) {
            fprintf(stderr, "store-dump: %s: %s\n", kinds[k], store_errmsg(s));
            store_close(s);
            return 2;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char md[EVP_MAX_MD_SIZE];
            unsigned int mdlen = 0;
            if (!EVP_Digest(e[i].value, e[i].len, md, &mdlen, EVP_sha256(), NULL)) {
                fprintf(stderr, "store-dump: sha256 failed\n");
                store_entries_free(e, n);
                store_close(s);
                return 2;
            }
            printf("%s\t%s\t%s\t", e[i].kind, e[i].mesh ? e[i].mesh : "", e[i].name);
            for (unsigned j = 0; j < mdlen; j++)
                printf("%02x", md[j]);
            putchar('\n');
        }
        store_entries_free(e, n);
    }
    store_close(s);
    return fflush(stdout) == 0 ? 0 : 2;
}
