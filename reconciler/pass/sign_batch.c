/* sign_batch.c - a pass's leaves signed on the signing workers, two batches under way at once, finished in dataplane order. */
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
#include "reconciler/failpoint.h"
#include "reconciler/state.h"
#include "reconciler/store/identity_json.h"
#include "reconciler/store/identity_peek.h"

static void deferred_clear(deferred *d)
{
    identity_clear(&d->id);
    free(d->spki);
    free(d->digest);
    for (size_t i = 0; i < d->req.nuris; i++)
        free(d->uris[i]);
    memset(d, 0, sizeof(*d));
}

/* Drops n items of a batch unfinished, with the leaves signed for them. */
static void batch_drop(deferred *items, sign_pool_job *jobs, size_t n)
{
    for (size_t i = 0, k = 0; items && i < n; i++) {
        if (items[i].sign)
            pki_signed_leaf_clear(&jobs[k++].leaf);
        deferred_clear(&items[i]);
    }
}

/* Waits for the batch the workers sign, if any. */
static void sign_batch_wait(sign_batch *b)
{
    if (b->signing)
        (void)sign_pool_wait(b->pool, NULL);   /* per-job results are read when finishing */
    b->signing = false;
}

bool sign_batch_signing(const sign_batch *b)
{
    return b->signing && !sign_pool_idle(b->pool);
}

/* Both batches dropped unfinished (the mesh stops). */
void sign_batch_drop(sign_batch *b)
{
    sign_batch_wait(b);
    batch_drop(b->fl_items, b->fl_jobs, b->fl_n);
    batch_drop(b->items, b->jobs, b->n);
    b->fl_n = b->n = 0;
    b->fl_stop = b->stop = 0;
}

void sign_batch_free(sign_batch *b)
{
    sign_batch_drop(b);
    free(b->items);
    free(b->jobs);
    free(b->fl_items);
    free(b->fl_jobs);
    memset(b, 0, sizeof(*b));   /* the pool is the CA's (ca_backend_sign_pool) */
}

/* Queues *id (moved out: *id is left empty) to be finished by the batch, signed when spki (taken
 * over) or csr_pem of id is given; digest (taken over, may be NULL) is dp's tags digest.
 * Returns ISSUE_DEFERRED, ISSUE_SKIPPED (no SANs: warned, *id kept) or MESHCA_ENOMEM. */
int sign_batch_defer(sign_batch *b, const mesh *m, const dataplane *dp, const pass_cas *pc,
                     identity *id, uint64_t version, reconcile_verb verb, const char *reason,
                     bool sign, bool pending, unsigned char *spki, size_t spki_len, bool rsa,
                     char *digest, diag_list *diags)
{
    if ((!b->items && !(b->items = calloc(SIGN_BATCH, sizeof(*b->items)))) ||
        (!b->jobs && !(b->jobs = calloc(SIGN_BATCH, sizeof(*b->jobs))))) {
        free(spki);
        free(digest);
        return MESHCA_ENOMEM;
    }
    deferred *d = &b->items[b->n];
    memset(d, 0, sizeof(*d));
    if (sign) {
        int r = pass_issue_request(m, dp, pc, rsa, d->uris, &d->req, diags);
        if (r != 0) {
            free(spki);
            free(digest);
            memset(d, 0, sizeof(*d));
            return r;
        }
    }
    d->digest = digest;
    d->dp = dp;
    d->id = *id;
    memset(id, 0, sizeof(*id));
    d->version = version;
    d->verb = verb;
    d->reason = reason;
    d->sign = sign;
    d->pending = pending;
    d->spki = spki;
    d->spki_len = spki_len;
    b->n++;
    return ISSUE_DEFERRED;
}

/* Posts the batch being filled to the workers (a pool is made for the first batch that signs);
 * a pool that cannot be made sets the batch's stop (reported). */
static void sign_batch_start(sign_batch *b, const mesh *m, const pass_cas *pc, int64_t now,
                             diag_list *diags)
{
    char perr[PKI_ERRBUF] = "";
    size_t nj = 0;
    for (size_t i = 0; i < b->n; i++) {
        deferred *d = &b->items[i];
        if (!d->sign)
            continue;
        /* A record made after the pass read the clock is signed at its since (pass_sign_time). */
        int64_t at = pass_sign_time(&d->id, now);
        b->jobs[nj] = (sign_pool_job){.req = d->req, .now = at != now ? at : 0};
        if (d->spki) {
            b->jobs[nj].spki_der = d->spki;
            b->jobs[nj].spki_len = d->spki_len;
        } else {
            b->jobs[nj].csr_pem = d->id.pending_csr_pem;
            b->jobs[nj].csr_len = strlen(d->id.pending_csr_pem);
        }
        nj++;
    }
    if (nj && !b->pool && !b->stop) {
        int r = ca_backend_sign_pool(b->ca, b->workers, &b->pool, perr);
        if (r < 0 || !b->pool)
            b->stop = r == MESHCA_ENOMEM ? r
                                         : pass_sign_refused(m, b->items[0].dp, pc,
                                                             r < 0 ? r : PKI_EINVAL, perr, diags);
    }
    /* Per-job results are read when finishing: the first failure's summary is not needed. */
    if (nj && !b->stop)
        b->signing = sign_pool_start(b->pool, b->jobs, nj, now, perr) == 0;
    if (nj && !b->stop && !b->signing)
        b->stop = MESHCA_ENOMEM;   /* cannot happen: the pool has no batch posted here */
}

/* Finishes the batch in items (signed: the workers are done with it) in dataplane order.
 * Returns 0, ISSUE_REFUSED (reported: the CA could not sign; the rest of the batch is dropped)
 * or MESHCA_ENOMEM. */
static int sign_batch_finish(sign_batch *b, const mesh *m, const pass_cas *pc, int64_t now,
                             pass_txn *tx, reconcile_report *rep, reconcile_mesh_report *mr,
                             diag_list *diags, char *errbuf)
{
    int stop = b->stop;
    char fperr[MESHCA_ERRBUF] = "";
    /* Test-only (failpoint.h): the CA refuses this batch, as an expired or unreachable one
     * would, to see the batch under way behind it dropped. */
    if (!stop && b->n > 0 && FAILPOINT("pass.sign.batch", fperr) < 0)
        stop = pass_sign_refused(m, b->items[0].dp, pc, MESHCA_EIO, fperr, diags);
    for (size_t i = 0, k = 0; i < b->n; i++) {
        deferred *d = &b->items[i];
        sign_pool_job *job = d->sign ? &b->jobs[k++] : NULL;
        int r = 0;
        if (stop) {
            if (job)
                pki_signed_leaf_clear(&job->leaf);
            deferred_clear(d);
            continue;
        }
        if (job && job->result == 0) {
            r = pass_issue_store(m, d->dp, pc, job->now ? job->now : now, &d->id, d->req.rsa, job->leaf.pem,
                                 job->leaf.serial_hex, job->leaf.not_before, job->leaf.not_after,
                                 d->digest);
            job->leaf.pem = NULL;
            d->digest = NULL;
        } else if (job && job->result == PKI_EINVAL) {
            /* The key held, or the CSR, does not parse or verify: only a new CSR helps. */
            diag_warning(diags, "corrupt-object", NULL, "", "dataplane '%s/%s': %s; waiting for "
                         "a new CSR", m->name.value, d->dp->name.value,
                         d->pending ? "the pending key (CSR) does not verify and is dropped"
                                    : "the public key held cannot be read");
            r = ISSUE_SKIPPED;
        } else if (job) {
            r = job->result == MESHCA_ENOMEM
                    ? MESHCA_ENOMEM
                    : pass_sign_refused(m, d->dp, pc, job->result, NULL, diags);
        }
        if (job)
            pki_signed_leaf_clear(&job->leaf);
        if (d->pending)
            pass_pending_done(&d->id, r);
        if (r == MESHCA_ENOMEM)
            stop = meshca_fail(errbuf, r, "out of memory");
        else if (d->pending && r == ISSUE_SKIPPED)
            stop = pass_pending_skipped(tx, m->name.value, d->dp->name.value, &d->id, d->version,
                                        mr, errbuf);
        else
            stop = pass_finish_dataplane(m->name.value, pc, &d->id, d->version, d->verb,
                                         d->reason, r, tx, rep, mr, errbuf);
        deferred_clear(d);
    }
    b->n = 0;
    b->stop = 0;
    return stop;
}

/* One turn of the two batches: waits for the one being signed, posts the one filled, and
 * finishes the one signed meanwhile (the workers sign while the pass records, encodes and
 * decides). Returns sign_batch_finish's result. */
int sign_batch_cycle(sign_batch *b, const mesh *m, const pass_cas *pc, int64_t now,
                     pass_txn *tx, reconcile_report *rep, reconcile_mesh_report *mr,
                     diag_list *diags, char *errbuf)
{
    sign_batch_wait(b);
    sign_batch_start(b, m, pc, now, diags);
    deferred *items = b->items;
    sign_pool_job *jobs = b->jobs;
    size_t n = b->n;
    int stop = b->stop;
    b->items = b->fl_items;
    b->jobs = b->fl_jobs;
    b->n = b->fl_n;
    b->stop = b->fl_stop;
    b->fl_items = items;
    b->fl_jobs = jobs;
    b->fl_n = n;
    b->fl_stop = stop;
    return sign_batch_finish(b, m, pc, now, tx, rep, mr, diags, errbuf);
}

/* Both batches signed and finished (the end of a mesh). Returns as sign_batch_finish. */
int sign_batch_drain(sign_batch *b, const mesh *m, const pass_cas *pc, int64_t now,
                     pass_txn *tx, reconcile_report *rep, reconcile_mesh_report *mr,
                     diag_list *diags, char *errbuf)
{
    int rc = sign_batch_cycle(b, m, pc, now, tx, rep, mr, diags, errbuf);
    return rc == 0 ? sign_batch_cycle(b, m, pc, now, tx, rep, mr, diags, errbuf) : rc;
}
