/* quick_scan.c - the pass's one scan of a mesh's identities: unchanged ones decided from their small fields, the others' records kept. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "manifests/manifest.h"
#include "reconciler/bundle.h"
#include "reconciler/ca_backend.h"
#include "reconciler/ca/ca_cache.h"
#include "reconciler/mesh_ca.h"
#include "reconciler/pass/pass.h"
#include "reconciler/reconcile.h"
#include "reconciler/sign_pool.h"
#include "reconciler/state.h"
#include "reconciler/store/identity_json.h"
#include "reconciler/store/identity_peek.h"

typedef struct quick_name {
    const char *name;
    size_t index;   /* in the pass's dataplanes */
} quick_name;

typedef struct quick_scan {
    const mesh *m;
    const pass_cas *pc;
    int64_t now;
    const dataplane *const *dps;
    quick_name *names;         /* sorted by name */
    size_t n;
    unsigned char *verdict;    /* QUICK_* per dataplane of the pass */
    quick_record *records;     /* per dataplane of the pass: the QUICK_FULL ones' records */
} quick_scan;

static int cmp_quick_name(const void *a, const void *b)
{
    return strcmp(((const quick_name *)a)->name, ((const quick_name *)b)->name);
}

/* Whether the record says the dataplane has nothing to change. When it has, *ret_digest gets
 * the dataplane's tags digest if computed (caller frees), for the full decision to reuse. */
static bool quick_unchanged(const mesh *m, const dataplane *dp, const pass_cas *pc, int64_t now,
                            const char *value, size_t len, char **ret_digest)
{
    identity id = {0};
    unsigned flags = 0;
    reconcile_verb verb;
    int ask;
    char *digest = NULL;
    bool same = identity_peek(value, len, &id, &flags) == 0 &&
                !(flags & PEEK_PENDING_KEY) && id.generation > 0 && (flags & PEEK_PUBLIC_KEY) &&
                (flags & PEEK_CERTIFICATE) && (digest = pass_tags_digest(dp)) != NULL &&
                !pass_why_change(m, pc, &id, digest, now, &verb, &ask);
    if (same)
        free(digest);
    else
        *ret_digest = digest;
    identity_clear(&id);
    return same;
}

static int quick_scan_one(void *userdata, const store_entry *e)
{
    quick_scan *q = userdata;
    quick_name key = {e->name, 0};
    const quick_name *hit = bsearch(&key, q->names, q->n, sizeof(*q->names), cmp_quick_name);
    if (!hit)
        return 0;
    quick_record *rec = &q->records[hit->index];
    char *digest = NULL;
    if (quick_unchanged(q->m, q->dps[hit->index], q->pc, q->now, e->value, e->len, &digest)) {
        q->verdict[hit->index] = QUICK_UNCHANGED;
        return 0;
    }
    q->verdict[hit->index] = QUICK_FULL;
    free(rec->digest);
    rec->digest = digest;
    /* Kept for the full decision; out of memory leaves it to identity_read. */
    if (!rec->value && (rec->value = malloc(e->len + 1)) != NULL) {
        memcpy(rec->value, e->value, e->len);
        rec->value[e->len] = '\0';
        rec->len = e->len;
        rec->version = e->version;
    }
    return 0;
}

void quick_records_free(quick_record *records, size_t n)
{
    for (size_t i = 0; records && i < n; i++) {
        free(records[i].value);
        free(records[i].digest);
    }
    free(records);
}

/* Verdicts for the pass's dataplanes (caller frees), or NULL when out of memory: then every
 * dataplane takes the full path. A scan the store fails leaves them all to the full path.
 * *ret_records: the records of the QUICK_FULL ones (caller frees with quick_records_free), or
 * NULL. */
unsigned char *quick_verdicts(store *s, const mesh *m, const pass_cas *pc, int64_t now,
                              const dataplane *const *dps, size_t ndps,
                              quick_record **ret_records)
{
    quick_scan q = {m, pc, now, dps, calloc(ndps + 1, sizeof(quick_name)), 0,
                    calloc(ndps + 1, 1), calloc(ndps + 1, sizeof(quick_record))};
    *ret_records = NULL;
    if (!q.names || !q.verdict || !q.records) {
        free(q.names);
        free(q.verdict);
        free(q.records);
        return NULL;
    }
    for (size_t i = 0; i < ndps; i++)
        if (dps[i]->name.value)
            q.names[q.n++] = (quick_name){dps[i]->name.value, i};
    qsort(q.names, q.n, sizeof(*q.names), cmp_quick_name);
    if (store_scan(s, STATE_IDENTITIES, m->name.value, quick_scan_one, &q) < 0) {
        memset(q.verdict, QUICK_FULL, ndps);
        quick_records_free(q.records, ndps);
        q.records = NULL;
    }
    free(q.names);
    *ret_records = q.records;
    return q.verdict;
}
