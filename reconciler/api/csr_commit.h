/* csr_commit.h - group commit of CSR submissions: the keys agents POST, written by a thread of
 * its own in as few store transactions as they allow, each answered once it is durable. */
#ifndef MESHCA_API_CSR_COMMIT_H
#define MESHCA_API_CSR_COMMIT_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "manifests/error.h"
#include "reconciler/state.h"
#include "reconciler/store.h"

/* One dataplane's submitted key, and once committed what came of it. */
typedef struct csr_submission {
    char mesh[STORE_NAME_MAX + 1];
    char dataplane[STORE_NAME_MAX + 1];
    char *key_pem;                  /* owned: the PEM "PUBLIC KEY" to sign */
    char *csr_pem;                  /* owned, or NULL: the checked request (Vault signs it) */
    void *cookie;                   /* the caller's (the API's pending answer) */
    int64_t cert_not_before;        /* the client certificate's notBefore, checked against the
                                     * identity it would write (identity_with_pending_key), or
                                     * IDENTITY_NO_CERT (csr_submission_new's) for a token */
    int rc;                         /* 0: durable in the store; else a store or MESHCA_E* code */
    char errbuf[MESHCA_ERRBUF];     /* the one-line reason when rc < 0 */
    struct csr_submission *next;    /* the committer's queues */
} csr_submission;

/* A submission of key_pem (taken: freed with the submission, also on failure) and a copy of
 * csr_pem (may be NULL). NULL when out of memory or a name is too long. */
csr_submission *csr_submission_new(const char *mesh_name, const char *dp_name, char *key_pem,
                                   const char *csr_pem, void *cookie);
void csr_submission_free(csr_submission *sub);

/*
 * Writes each submission's key as its dataplane's pending key (as reconcile_submit_key does one),
 * as few transactions as possible: one for the lot, split only where a dataplane comes again
 * (the later key wins, as it would one after the other) or at store_txn_limit(s) (two ops each:
 * the identity's put, the check of its Dataplane). A dataplane that does not exist, or is
 * deleted before the commit, gets MESHCA_ENOTFOUND and is left out; a transaction that conflicts with
 * another writer (a pass wrote the identity meanwhile) is retried one submission at a time. A
 * submission whose client certificate the identity no longer backs (cert_not_before) gets
 * MESHCA_EUNAUTHENTICATED and is left out too. Sets every item's rc and errbuf. Returns the number of transactions that committed.
 */
size_t csr_commit_batch(store *s, csr_submission *const *items, size_t n);

/* Called on the loop for each submission once its commit ended (rc says how); sub is freed
 * after the call returns. */
typedef void (*csr_committed_fn)(void *ctx, csr_submission *sub);

typedef struct csr_committer csr_committer;

/*
 * A committer on s (borrowed: its own handle on the store, used by its thread only, which
 * outlives it), answering through fn on base's loop. While the thread commits one batch, the
 * submissions that arrive wait and go in the next: a commit's fsync is paid once for them all,
 * and the loop never waits on it. MESHCA_ENOMEM or MESHCA_EIO with a line in errbuf.
 */
int csr_committer_new(struct event_base *base, store *s, csr_committed_fn fn, void *ctx,
                      csr_committer **ret, char *errbuf);
/* Queues sub (taken). Loop thread only. */
void csr_committer_submit(csr_committer *c, csr_submission *sub);
/* Transactions committed so far (for tests and metrics). Loop thread only. */
size_t csr_committer_batches(const csr_committer *c);
/* Commits what is queued, answers every submission through fn, ends the thread. Accepts NULL. */
void csr_committer_free(csr_committer *c);

#endif
