/* pass.h - the parts of one reconcile pass (reconciler/pass/), shared by reconcile.c and each other: not a public API. */
#ifndef MESHCA_PASS_H
#define MESHCA_PASS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "manifests/manifest.h"
#include "reconciler/ca_backend.h"
#include "reconciler/ca/ca_cache.h"
#include "reconciler/mesh_ca.h"
#include "reconciler/reconcile.h"
#include "reconciler/sign_pool.h"
#include "reconciler/state.h"

/* Outcomes besides 0 and negative (store, memory) codes. */
enum {
    ISSUE_SKIPPED = 1,   /* issue(): no certificate for this dataplane (warned), the mesh goes on */
    ISSUE_REFUSED = 2,   /* the CA could not sign, or cannot be used (reported): the mesh stops */
    ISSUE_DEFERRED = 3,  /* queued for the signing workers: the batch finishes it (sign_batch) */
};

/* The CAs and the bundle one pass of a mesh signs with. */
typedef struct pass_cas {
    mesh_ca *cas;              /* per backend, manifest order (mesh_ca.h); ca NULL: unavailable */
    size_t ncas;
    size_t enabled;            /* index of the enabled backend */
    char *bundle_pem;
    const char **bundle_backends;   /* borrowed names, enabled first */
    size_t nbundle;
    char *chain_extra_pem;     /* intermediates served after the leaf (may be "") */
    char *cross_pem;           /* forced switch: the new CA signed by the old one, or NULL */
    char bundle_digest[65];    /* SHA-256 of bundle_pem */
} pass_cas;

/* The writes of one pass, committed together at its end (SPEC S6). */
typedef struct pass_write {
    const char *kind;   /* static */
    char *mesh, *name;
    char *value;        /* NULL for a delete */
    uint64_t version;   /* expected version (0: must not exist) */
    bool del;
} pass_write;

/* The versions a pass computed from (below). */
typedef struct pass_fence pass_fence;

/*
 * The pass's writes. On a store that holds a transaction open (SQLite), the last mesh's writes
 * are applied to one open transaction as its batches finish (pass_flush), so that the store's
 * work overlaps the signing instead of following it; the pass still commits once, at its end
 * (pass_commit). Only the last mesh flushes: opening a mesh's CAs may write (a builtin CA's
 * first secrets), which the store refuses while the transaction is open. The write lock is
 * held from the first flush to the commit.
 */
typedef struct pass_txn {
    pass_write *w;                   /* queued, not yet flushed */
    size_t n, cap;
    const reconcile_options *opts;   /* its progress callback */
    size_t done, total;              /* dataplanes handled / of every mesh */
    store *s;                        /* the store, while a transaction is open on it */
    const pass_fence *fence;
    bool may_flush;                  /* this mesh's writes may go to an open transaction */
    bool no_flush;                   /* the store holds none open: everything at the commit */
    size_t flushed;                  /* writes applied to the open transaction */
    int flush_rc;                    /* a flush failed: rolled back, the pass writes nothing */
    char flush_err[MESHCA_ERRBUF];
} pass_txn;

/*
 * Leaves of a CA whose key is local are signed on the signing workers (sign_pool.c), a batch at
 * a time: the pass decides for each dataplane and queues what to sign, then finishes the batch
 * in dataplane order, so the writes and the report are those of signing one at a time. A batch
 * bounds the memory of a full pass (identities held until signed), and is large enough that the
 * workers stay busy. Two batches are under way at once: while the workers sign one, the pass
 * finishes the one before (its certificates recorded, its identities encoded) and decides the
 * next, so that with fewer workers than cores the pass's own work does not wait for the
 * signing, nor the signing for it.
 */
#define SIGN_BATCH 1024

typedef struct deferred {
    const dataplane *dp;
    identity id;             /* owned: moved in from the pass */
    uint64_t version;
    reconcile_verb verb;
    const char *reason;      /* static */
    bool pending;            /* the agent's pending key: its CSR (or key) is used up */
    bool sign;               /* false: rebundled only, queued to keep the order */
    unsigned char *spki;     /* SPKI DER to re-sign (owned), or NULL with the CSR of id */
    char *digest;            /* pass_tags_digest of dp (owned), or NULL: computed when recorded */
    size_t spki_len;
    char *uris[PKI_MAX_SANS];   /* req.nuris of them, owned */
    pki_leaf_request req;
} deferred;

typedef struct sign_batch {
    ca_backend *ca;          /* borrowed; NULL: the CA signs remotely and nothing is deferred */
    unsigned workers;        /* 0: the online CPUs */
    sign_pool *pool;         /* the CA's (borrowed), taken at the first batch that signs */
    /* The batch being filled (by defer), then, once started, the one the workers sign (fl_*):
     * sign_batch_cycle swaps them. */
    deferred *items;         /* SIGN_BATCH of them, allocated once (req.uris points inside) */
    sign_pool_job *jobs;
    size_t n;
    int stop;                /* the batch cannot be signed (ISSUE_REFUSED, MESHCA_ENOMEM) */
    deferred *fl_items;
    sign_pool_job *fl_jobs;
    size_t fl_n;
    int fl_stop;
    bool signing;            /* fl_* posted to the pool, not waited for yet */
} sign_batch;

/* What a pass does to an issued identity besides re-signing or rebundling. */
enum { ASK_NOTHING = 0, ASK_RENEW = 1 };

/*
 * The common case of a pass, decided from the identity records' small fields (identity_peek)
 * in one scan of the mesh's identities (store_scan: one statement, not one SELECT per
 * dataplane): no identity yet (awaiting its agent's CSR), or an issued one with nothing to
 * change. Anything else goes through the full decision, from the record the scan read (kept
 * as text, decoded by identity_json_decode: a full pass decodes every record, and one SELECT
 * and jansson tree each was a fifth of it); a record that decoder does not take, a corrupt one
 * included, is read again by identity_read, which reports it.
 */
enum { QUICK_ABSENT = 0, QUICK_UNCHANGED = 1, QUICK_FULL = 2 };

/* A record the full decision needs, as the scan read it. */
typedef struct quick_record {
    char *value;   /* owned, NUL-terminated; NULL: not read (identity_read reads it) */
    char *digest;  /* pass_tags_digest of the dataplane, as the scan computed it (owned), or NULL */
    size_t len;
    uint64_t version;
} quick_record;

/* The versions a pass computed from: meshes and dataplanes listed before they are loaded, so
 * that a change made while the pass works fails its transaction instead of being overwritten by
 * results computed from the old resources. */
struct pass_fence {
    store_entry *meshes, *dps;
    size_t nmeshes, ndps;
    /* The store's revision read before the versions above and everything the pass reads
     * (store_txn_open_since); STORE_NO_REVISION when not read (a targeted pass). */
    uint64_t revision;
};

static inline bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* cas.c */
void pass_cas_free(pass_cas *pc);
int pass_append(char **buf, size_t *len, const char *text);
void pass_backend_path(size_t i, char *buf, size_t size);
bool pass_set_condition(json_t *conditions, const char *backend, const char *reason);
int pass_open_cas(store *s, const mesh *m, int64_t now, ca_cache *cache, pass_cas *pc,
                  json_t *conditions, bool *ret_conditions_changed, diag_list *diags);
int pass_prepare_cross_sign(store *s, const mesh *m, const dataplane *const *dps, size_t ndps,
                            json_t *mstatus, int64_t now, pass_cas *pc, diag_list *diags);
int pass_queue_bundle(store *s, const char *mesh_name, const pass_cas *pc, pass_txn *tx,
                      char *errbuf);

/* leaf.c */
int pass_set_str(char **dst, const char *s);
char *pass_tags_digest(const dataplane *dp);
int64_t pass_leaf_lifetime_s(const mesh_backend *b);
int pass_issue_request(const mesh *m, const dataplane *dp, const pass_cas *pc, bool rsa,
                       char **uris, pki_leaf_request *req, diag_list *diags);
int pass_sign_refused(const mesh *m, const dataplane *dp, const pass_cas *pc, int r,
                      const char *why, diag_list *diags);
int pass_issue_store(const mesh *m, const dataplane *dp, const pass_cas *pc, int64_t now,
                     identity *id, bool rsa, char *cert_pem, const char *serial, int64_t nb,
                     int64_t na, char *digest);
int pass_issue(const mesh *m, const dataplane *dp, const pass_cas *pc, int64_t now, identity *id,
               EVP_PKEY *pub, diag_list *diags);
int64_t pass_sign_time(const identity *id, int64_t now);
const char *pass_why_change(const mesh *m, const pass_cas *pc, const identity *id,
                            const char *digest, int64_t now, reconcile_verb *ret_verb,
                            int *ret_ask);
void pass_pending_done(identity *id, int r);
int pass_sign_pending(const mesh *m, const dataplane *dp, const pass_cas *pc, int64_t now,
                      identity *id, uint64_t version, reconcile_verb verb, const char *reason,
                      sign_batch *batch, diag_list *diags);
int pass_pending_skipped(pass_txn *tx, const char *mesh_name, const char *dp_name,
                         identity *id, uint64_t version, reconcile_mesh_report *mr, char *errbuf);
int pass_finish_dataplane(const char *mesh_name, const pass_cas *pc, identity *id,
                          uint64_t version,
                          reconcile_verb verb, const char *reason, int rc, pass_txn *tx,
                          reconcile_report *rep, reconcile_mesh_report *mr, char *errbuf);

/* sign_batch.c */
void sign_batch_drop(sign_batch *b);
/* Whether the workers are still signing the batch started last (sign_batch_cycle would wait). */
bool sign_batch_signing(const sign_batch *b);
void sign_batch_free(sign_batch *b);
int sign_batch_defer(sign_batch *b, const mesh *m, const dataplane *dp, const pass_cas *pc,
                     identity *id, uint64_t version, reconcile_verb verb, const char *reason,
                     bool sign, bool pending, unsigned char *spki, size_t spki_len, bool rsa,
                     char *digest, diag_list *diags);
int sign_batch_cycle(sign_batch *b, const mesh *m, const pass_cas *pc, int64_t now,
                     pass_txn *tx, reconcile_report *rep, reconcile_mesh_report *mr,
                     diag_list *diags, char *errbuf);
int sign_batch_drain(sign_batch *b, const mesh *m, const pass_cas *pc, int64_t now,
                     pass_txn *tx, reconcile_report *rep, reconcile_mesh_report *mr,
                     diag_list *diags, char *errbuf);

/* quick_scan.c: the identities read in ranges of names (QUICK_RANGE dataplanes each), each
 * when the pass first needs one of its dataplanes, so that only the first is read before the
 * first signing batch and the others while the workers sign. */
#define QUICK_RANGE SIGN_BATCH
typedef struct quick_scan quick_scan;
void quick_records_free(quick_record *records, size_t n);
/* The scan of m's identities for the pass's dataplanes dps (borrowed until quick_close), in
 * ranges of `range` names (0: QUICK_RANGE); reads nothing yet. NULL when out of memory (then
 * every dataplane takes the full path). */
quick_scan *quick_open(store *s, const mesh *m, const pass_cas *pc, int64_t now,
                       const dataplane *const *dps, size_t ndps, size_t range);
/* The verdict (QUICK_*) of dps[i], its range read first if not yet. *ret_record: the record a
 * QUICK_FULL verdict read (the full decision takes its value and digest), or NULL. A range the
 * store failed to read, and every range after, gives QUICK_FULL and no record. */
int quick_verdict(quick_scan *q, size_t i, quick_record **ret_record);
/* Reads the first range not read yet from the one of dps[i] (the dataplane the pass decides
 * next) to QUICK_AHEAD ranges after it: what the pass does while the workers sign, so that the
 * scan fills the main thread's waits instead of adding to its work between batches. Returns
 * whether it read one (false: none left within reach, or a range failed). */
#define QUICK_AHEAD 4
bool quick_read_ahead(quick_scan *q, size_t i);
/* Store calls made so far (tests, the bench). */
size_t quick_ranges_read(const quick_scan *q);
/* Accepts NULL. */
void quick_close(quick_scan *q);

/* commit.c */
void pass_txn_free(pass_txn *tx);
int pass_queue_write(pass_txn *tx, const char *kind, const char *mesh_name, const char *name,
                     char *value, uint64_t version, bool del);
int pass_queue_identity(pass_txn *tx, const identity *id, uint64_t version);
int pass_fence_load(store *s, pass_fence *f);
void pass_fence_free(pass_fence *f);
int pass_flush(store *s, pass_txn *tx);
void pass_commit(store *s, pass_txn *tx, const pass_fence *f, reconcile_report *rep,
                 diag_list *diags);

#endif
