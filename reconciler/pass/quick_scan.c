/* quick_scan.c - the pass's scan of a mesh's identities, range by range as the pass goes: unchanged ones decided from their small fields, the others' records kept. */
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

/* quick_scan.scanned: a range not read yet, read, or failed (or not read after a failure). */
enum { RANGE_UNREAD = 0, RANGE_READ = 1, RANGE_FAILED = 2 };

typedef struct quick_name {
    const char *name;
    size_t index;   /* in the pass's dataplanes */
} quick_name;

struct quick_scan {
    store *s;
    const mesh *m;
    const pass_cas *pc;
    int64_t now;
    const dataplane *const *dps;
    size_t ndps;
    quick_name *names;         /* sorted by name */
    size_t n;
    size_t range;              /* names per range */
    size_t *range_of;          /* per dataplane of the pass: its range (SIZE_MAX: no name) */
    unsigned char *scanned;    /* per range: RANGE_* */
    size_t ranges_read;        /* store calls made */
    bool failed;               /* a range failed: every dataplane not read takes the full path */
    const quick_name *slice;   /* the range being read */
    size_t nslice;
    unsigned char *verdict;    /* QUICK_* per dataplane of the pass */
    quick_record *records;     /* per dataplane of the pass: the QUICK_FULL ones' records */
};

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
    const quick_name *hit = bsearch(&key, q->slice, q->nslice, sizeof(*q->slice), cmp_quick_name);
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

void quick_close(quick_scan *q)
{
    if (!q)
        return;
    quick_records_free(q->records, q->ndps);
    free(q->names);
    free(q->range_of);
    free(q->scanned);
    free(q->verdict);
    free(q);
}

quick_scan *quick_open(store *s, const mesh *m, const pass_cas *pc, int64_t now,
                       const dataplane *const *dps, size_t ndps, size_t range)
{
    quick_scan *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    *q = (quick_scan){.s = s, .m = m, .pc = pc, .now = now, .dps = dps, .ndps = ndps,
                      .range = range ? range : QUICK_RANGE,
                      .names = calloc(ndps + 1, sizeof(quick_name)),
                      .range_of = calloc(ndps + 1, sizeof(size_t)),
                      .verdict = calloc(ndps + 1, 1),
                      .records = calloc(ndps + 1, sizeof(quick_record))};
    if (!q->names || !q->range_of || !q->verdict || !q->records) {
        quick_close(q);
        return NULL;
    }
    for (size_t i = 0; i < ndps; i++) {
        q->range_of[i] = SIZE_MAX;
        if (dps[i]->name.value)
            q->names[q->n++] = (quick_name){dps[i]->name.value, i};
    }
    qsort(q->names, q->n, sizeof(*q->names), cmp_quick_name);
    /* Ranges of names in name order, whatever the dataplanes' order: a pass in any order reads
     * each range once, when it first needs one of its dataplanes. */
    for (size_t j = 0; j < q->n; j++)
        q->range_of[q->names[j].index] = j / q->range;
    if (!(q->scanned = calloc(q->n / q->range + 1, 1))) {
        quick_close(q);
        return NULL;
    }
    return q;
}

/* Reads range r: the verdicts of its dataplanes and the records of the QUICK_FULL ones. A
 * store failure leaves them, and every range not read yet, to the full path (identity_read
 * then reports the store's state), as a failed scan of the whole mesh did. */
static void quick_read_range(quick_scan *q, size_t r)
{
    size_t lo = r * q->range, hi = lo + q->range < q->n ? lo + q->range : q->n;
    q->scanned[r] = RANGE_FAILED;
    if (q->failed)
        return;
    q->slice = q->names + lo;
    q->nslice = hi - lo;
    q->ranges_read++;
    if (store_scan_range(q->s, STATE_IDENTITIES, q->m->name.value, q->names[lo].name,
                         q->names[hi - 1].name, quick_scan_one, q) == 0) {
        q->scanned[r] = RANGE_READ;
        return;
    }
    q->failed = true;
    for (size_t j = lo; j < hi; j++) {
        quick_record *rec = &q->records[q->names[j].index];
        free(rec->value);
        free(rec->digest);
        *rec = (quick_record){0};
    }
}

int quick_verdict(quick_scan *q, size_t i, quick_record **ret_record)
{
    *ret_record = NULL;
    size_t r = q->range_of[i];
    if (r == SIZE_MAX)
        return QUICK_FULL;
    if (!q->scanned[r])
        quick_read_range(q, r);
    if (q->scanned[r] != RANGE_READ)
        return QUICK_FULL;
    *ret_record = &q->records[i];
    return q->verdict[i];
}

bool quick_read_ahead(quick_scan *q, size_t i)
{
    if (q->failed || i >= q->ndps || q->range_of[i] == SIZE_MAX)
        return false;
    size_t nranges = (q->n + q->range - 1) / q->range;
    for (size_t r = q->range_of[i]; r < nranges && r <= q->range_of[i] + QUICK_AHEAD; r++)
        if (q->scanned[r] == RANGE_UNREAD) {
            quick_read_range(q, r);
            return q->scanned[r] == RANGE_READ;
        }
    return false;
}

size_t quick_ranges_read(const quick_scan *q)
{
    return q->ranges_read;
}
