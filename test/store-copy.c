/* store-copy.c - test helper: makes one store hold exactly another's objects (values only). */
/* The crash tests build a "before" state once in SQLite and restore it into etcd for every trial.
 * Usage: store-copy FROM-URL TO-URL. Exit 0, or 2 with the store's message on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/store.h"

/* Runs the ops collected so far as one transaction, then starts over. */
static int flush(store *s, store_op *ops, size_t *n)
{
    int rc = *n ? store_txn(s, ops, *n) : 0;

    if (rc < 0)
        fprintf(stderr, "store-copy: %s\n", store_errmsg(s));
    *n = 0;
    return rc;
}

int main(int argc, char **argv)
{
    char errbuf[MESHCA_ERRBUF] = "";
    store *from = NULL, *to = NULL;
    int rc = 2;

    if (argc != 3) {
        fprintf(stderr, "usage: store-copy FROM-URL TO-URL\n");
        return 2;
    }
    if (store_open(argv[1], &from, errbuf) < 0 || store_open(argv[2], &to, errbuf) < 0) {
        fprintf(stderr, "store-copy: %s\n", errbuf);
        goto out;
    }
    /* Parts of at most the destination's atomic limit: the copy need not be one transaction. */
    size_t limit = store_txn_limit(to), nkinds = 0;
    if (limit > 64)
        limit = 64;
    store_op *ops = calloc(limit, sizeof(*ops));
    if (!ops)
        goto out;
    const char *const *kinds = store_kinds(&nkinds);
    for (size_t k = 0; k < nkinds; k++) {
        store_entry *old = NULL, *src = NULL;
        size_t nold = 0, nsrc = 0, n = 0;
        store *failed = to;
        int r = store_list(to, kinds[k], NULL, &old, &nold);

        if (r == 0) {
            failed = from;
            r = store_list(from, kinds[k], NULL, &src, &nsrc);
        }
        if (r < 0)
            fprintf(stderr, "store-copy: %s: %s\n", kinds[k], store_errmsg(failed));
        for (size_t i = 0; i < nold && r == 0; i++) {
            ops[n++] = (store_op){.type = STORE_OP_DELETE,
                                  .key = {old[i].kind, old[i].mesh, old[i].name},
                                  .expected_version = STORE_ANY_VERSION};
            if (n == limit)
                r = flush(to, ops, &n);
        }
        if (r == 0)
            r = flush(to, ops, &n);
        for (size_t i = 0; i < nsrc && r == 0; i++) {
            ops[n++] = (store_op){.type = STORE_OP_PUT,
                                  .key = {src[i].kind, src[i].mesh, src[i].name},
                                  .value = src[i].value,
                                  .len = src[i].len,
                                  .expected_version = STORE_ANY_VERSION};
            if (n == limit)
                r = flush(to, ops, &n);
        }
        if (r == 0)
            r = flush(to, ops, &n);
        store_entries_free(old, nold);
        store_entries_free(src, nsrc);
        if (r < 0) {
            free(ops);
            goto out;
        }
    }
    free(ops);
    rc = 0;
out:
    store_close(from);
    store_close(to);
    return rc;
}
