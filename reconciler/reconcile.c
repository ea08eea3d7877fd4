/* reconcile.c - one reconcile pass: every mTLS mesh's dataplanes get a current leaf and trust bundle. */
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
#include "reconciler/pass_targets.h"
#include "reconciler/sign_pool.h"
#include "reconciler/state.h"
#include "reconciler/store/identity_json.h"
#include "reconciler/store/identity_peek.h"

const char *reconcile_verb_name(reconcile_verb verb)
{
    switch (verb) {
    case RECONCILE_ISSUED:
        return "issued";
    case RECONCILE_REISSUED:
        return "reissued";
    case RECONCILE_RENEWED:
        return "renewed";
    case RECONCILE_REBUNDLED:
        return "rebundled";
    }
    return "?";
}

void reconcile_report_free(reconcile_report *report)
{
    if (!report)
        return;
    for (size_t i = 0; i < report->nmeshes; i++)
        free(report->meshes[i].mesh);
    free(report->meshes);
    for (size_t i = 0; i < report->nactions; i++) {
        free(report->actions[i].mesh);
        free(report->actions[i].dataplane);
        free(report->actions[i].backend);
        free(report->actions[i].reason);
    }
    free(report->actions);
    memset(report, 0, sizeof(*report));
}

/* A store operation failed (not a conflict): the mesh's pass stops, the pass exits 2. The first
 * failure's cause is kept apart from its object so that `run` can log each cause once. */
static void store_failed(reconcile_report *rep, reconcile_mesh_report *mr, int rc,
                         const char *mesh_name, const char *what, diag_list *diags)
{
    mr->failed = true;
    mr->store_failed = true;
    if (!rep->store_error) {
        rep->store_error = rc;
        snprintf(rep->store_cause, sizeof(rep->store_cause), "%s", store_strerror(rc));
    }
    diag_error(diags, "store-error", NULL, "", "mesh '%s': %s; the rest of this mesh waits for "
               "the next pass", mesh_name, what);
}

/* Returns 0 (done, skipped or warned), ISSUE_REFUSED (reported; the mesh stops), or a store or
 * memory code with errbuf naming the object and the cause (the caller reports it; the mesh
 * stops). Writes are queued in tx. */
static int reconcile_dataplane(store *s, const mesh *m, const dataplane *dp, const pass_cas *pc,
                               int64_t now, int quick, quick_record *rec, sign_batch *batch,
                               pass_txn *tx, reconcile_report *rep, reconcile_mesh_report *mr,
                               diag_list *diags, char *errbuf)
{
    const char *mesh_name = m->name.value;
    identity id = {0};
    uint64_t version = 0;
    if (quick == QUICK_ABSENT) {
        mr->awaiting++;   /* no CSR from its agent yet */
        return 0;
    }
    if (quick == QUICK_UNCHANGED) {
        mr->unchanged++;
        return 0;
    }
    int rc = -1;
    if (rec && rec->value) {
        /* The record the scan read; its version guards the write as identity_read's would. */
        if (identity_json_decode(rec->value, rec->len, &id) == 0) {
            version = rec->version;
            rc = 0;
        }
        free(rec->value);
        rec->value = NULL;
    }
    if (rc != 0)
        rc = identity_read(s, mesh_name, dp->name.value, &id, &version, errbuf);
    if (rc == MESHCA_ECORRUPT) {
        /* A corrupt record holds no key we could trust: it is removed (compare-and-swap on its
         * version, so a concurrent writer still wins), and the agent's next CSR issues anew. */
        store_key key = {STATE_IDENTITIES, mesh_name, dp->name.value};
        int got = state_object_version(s, &key, &version);
        if (got < 0) {
            snprintf(errbuf, MESHCA_ERRBUF, "cannot read %s/%s/%s: %s", key.kind, key.mesh,
                     key.name, store_strerror(got));
            return got;
        }
        diag_warning(diags, "corrupt-object", NULL, "", "%s; removed, the agent's next CSR "
                     "issues a new identity", errbuf);
        mr->skipped++;
        return pass_queue_write(tx, STATE_IDENTITIES, mesh_name, dp->name.value, NULL, version,
                                true) < 0
                   ? meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory")
                   : 0;
    }
    if (rc == STORE_ENOTFOUND) {
        mr->awaiting++;   /* no CSR from its agent yet */
        return 0;
    }
    if (rc < 0)
        return rc;   /* errbuf names the object and the cause */

    reconcile_verb verb = RECONCILE_ISSUED;
    const char *reason = NULL;
    int ask = ASK_NOTHING;
    if (id.pending_key_pem) {
        verb = id.generation > 0 ? RECONCILE_RENEWED : RECONCILE_ISSUED;
        reason = id.generation > 0 ? "new key from the agent (CSR)" : "first CSR";
        rc = pass_sign_pending(m, dp, pc, now, &id, version, verb, reason, batch, diags);
        if (rc == ISSUE_DEFERRED)
            return 0;
        if (rc == ISSUE_SKIPPED)
            return pass_pending_skipped(tx, mesh_name, dp->name.value, &id, version, mr, errbuf);
    } else if (id.generation <= 0 || !id.public_key_pem) {
        mr->awaiting++;
        identity_clear(&id);
        return 0;
    } else {
        /* The scan's digest of this dataplane's tags, else computed; kept for its new leaf. */
        char *digest = rec && rec->digest ? rec->digest : pass_tags_digest(dp);
        if (rec)
            rec->digest = NULL;
        if (!digest) {
            identity_clear(&id);
            return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
        }
        reason = pass_why_change(m, pc, &id, digest, now, &verb, &ask);
        if (!reason || ask == ASK_RENEW || verb == RECONCILE_REBUNDLED || !batch->ca) {
            free(digest);
            digest = NULL;
        }
        if (!reason) {
            mr->unchanged++;
            identity_clear(&id);
            return 0;
        }
        if (ask == ASK_RENEW) {
            /* The agent's to do: tell it through renewAt, once. */
            mr->unchanged++;
            if (id.renew_at <= now) {
                identity_clear(&id);
                return 0;
            }
            id.renew_at = now;
            rc = pass_queue_identity(tx, &id, version);
            identity_clear(&id);
            return rc < 0 ? meshca_fail(errbuf, rc, "out of memory") : 0;
        }
        rc = 0;
        if (verb != RECONCILE_REBUNDLED) {
            /* Re-signing the public key held: as SPKI DER, no EVP_PKEY built for a local CA. */
            unsigned char *spki = NULL;
            size_t spki_len = 0;
            bool rsa = false;
            EVP_PKEY *pub = NULL;
            char perr[PKI_ERRBUF] = "";
            rc = pki_spki_from_pem(id.public_key_pem, strlen(id.public_key_pem), &spki, &spki_len,
                                   &rsa, perr);
            if (rc == 0 && !batch->ca)
                rc = pki_pubkey_from_der(spki, spki_len, &pub, perr);
            if (rc < 0) {
                diag_warning(diags, "corrupt-object", NULL, "", "dataplane '%s/%s': the public key "
                             "held cannot be read (%s); waiting for a new CSR", mesh_name,
                             dp->name.value, perr);
                rc = ISSUE_SKIPPED;
            } else if (batch->ca) {
                rc = sign_batch_defer(batch, m, dp, pc, &id, version, verb, reason, true, false,
                                      spki, spki_len, rsa, digest, diags);   /* takes both */
                spki = NULL;
                digest = NULL;
            } else {
                rc = pass_issue(m, dp, pc, now, &id, pub, diags);
            }
            free(spki);
            free(digest);
            EVP_PKEY_free(pub);
        } else if (batch->n > 0 || batch->fl_n > 0) {
            /* Rebundled only, queued behind the leaves being signed to keep the order. */
            rc = sign_batch_defer(batch, m, dp, pc, &id, version, verb, reason, false, false, NULL,
                                  0, false, NULL, diags);
        }
        if (rc == ISSUE_DEFERRED)
            return 0;
    }
    return pass_finish_dataplane(mesh_name, pc, &id, version, verb, reason, rc, tx, rep, mr,
                                 errbuf);
}

/* Returns 0 or MESHCA_ENOMEM; everything else is in the report and diags. */
static int reconcile_mesh(store *s, const manifest_set *set, const mesh *m, int64_t now,
                          unsigned workers, ca_cache *cache, pass_txn *tx, reconcile_report *rep,
                          diag_list *diags)
{
    const char *mesh_name = m->name.value;
    reconcile_mesh_report *mr = realloc(rep->meshes, (rep->nmeshes + 1) * sizeof(*mr));
    if (!mr)
        return MESHCA_ENOMEM;
    rep->meshes = mr;
    mr = &rep->meshes[rep->nmeshes];
    memset(mr, 0, sizeof(*mr));
    if (pass_set_str(&mr->mesh, mesh_name) < 0)
        return MESHCA_ENOMEM;
    rep->nmeshes++;
    if (cache) {
        /* Backends no longer in the mesh (or every one, mTLS off) leave the cache. */
        const char *names[MODEL_MAX_BACKENDS + 1];
        size_t n = 0;
        for (size_t i = 0; mesh_enabled_backend(m) && i < m->nbackends && n < MODEL_MAX_BACKENDS; i++)
            if (m->backends[i].name.value)
                names[n++] = m->backends[i].name.value;
        ca_cache_prune(cache, mesh_name, names, n);
    }
    if (!mesh_enabled_backend(m))
        return 0;
    mr->mtls = true;

    pass_cas pc = {0};
    sign_batch batch = {.workers = workers};
    quick_scan *quick = NULL;
    json_t *mstatus = NULL;
    uint64_t mstatus_version = 0;
    const dataplane **dps = NULL;
    size_t ndps = 0;
    char errbuf[MESHCA_ERRBUF] = "";
    int rc = state_read_mesh_status(s, mesh_name, &mstatus, &mstatus_version, errbuf);
    if (rc == MESHCA_ECORRUPT) {
        /* It may hold a forced switch's cross-signing request: going on without it could issue
         * leaves that dataplanes reject. Skip the mesh until it is repaired. */
        diag_error(diags, "corrupt-object", NULL, "", "mesh '%s' skipped: %s", mesh_name, errbuf);
        mr->failed = true;
        return 0;
    }
    if (rc < 0) {
        if (rc == MESHCA_ENOMEM)
            return rc;
        store_failed(rep, mr, rc, mesh_name, errbuf, diags);
        return 0;
    }
    /* Targeted: whether every dataplane trusts the new CA is not for one dataplane to say. */
    bool targeted = tx->opts && tx->opts->targets;
    if (targeted && json_object_get(mstatus, "crossSign")) {
        rep->need_full = true;
        goto out;
    }
    json_t *conditions = json_object_get(mstatus, "conditions");
    if (!json_is_array(conditions)) {
        conditions = json_array();
        if (!conditions || json_object_set_new(mstatus, "conditions", conditions) < 0) {
            json_decref(mstatus);
            return MESHCA_ENOMEM;
        }
    }
    bool status_changed = false;
    bool bundle_queued = false, rebundled = false;   /* the bundle's write: see below */
    rc = pass_open_cas(s, m, now, cache, &pc, conditions, &status_changed, diags);
    if (rc == ISSUE_REFUSED) {
        mr->failed = true;
        rc = 0;
        goto status;
    }
    /* The enabled CA failed to sign lately: wait for its backoff rather than ask every pass. */
    if (rc == 0 && cache && ca_cache_sign_wait(cache, mesh_name, m->backends[pc.enabled].name.value,
                                               now, errbuf)) {
        char path[64];
        pass_backend_path(pc.enabled, path, sizeof(path));
        diag_error(diags, "ca-unavailable", NULL, path, "%s (retried with backoff)", errbuf);
        mr->failed = true;
        goto status;
    }
    if (rc < 0) {
        if (rc != MESHCA_ENOMEM) {
            snprintf(errbuf, sizeof(errbuf), "cannot open its CAs: %s", store_strerror(rc));
            store_failed(rep, mr, rc, mesh_name, errbuf, diags);
            rc = 0;
        }
        goto out;
    }
    if ((rc = manifest_set_dataplanes_of(set, mesh_name, &dps, &ndps)) < 0)
        goto out;
    int cross_flag = pass_prepare_cross_sign(s, m, dps, ndps, mstatus, now, &pc, diags);
    if ((rc = cross_flag) < 0)
        goto out;
    /* The mesh's trust bundle goes first in the pass's writes. A pass split into several
     * transactions (etcd) otherwise stored leaves before it: an agent fetching in between got a
     * generation whose bundle names (what its ack records as supportedBackends) included a CA
     * the bundle it was served lacked, and nothing sent it the bundle later (the generation does
     * not change): a switch passed the gate with that proxy not trusting the new CA. */
    if (pc.bundle_pem) {
        size_t before = tx->n;
        bundle_queued = true;
        if ((rc = pass_queue_bundle(s, mesh_name, &pc, tx, errbuf)) < 0) {
            if (rc == MESHCA_ENOMEM)
                goto out;
            store_failed(rep, mr, rc, mesh_name, errbuf, diags);
            rc = 0;
            goto status;
        }
        rebundled = tx->n > before;
    }
    if (ca_backend_signs_locally(pc.cas[pc.enabled].ca))
        batch.ca = pc.cas[pc.enabled].ca;
    /* Targeted: a few identities, each read by reconcile_dataplane, not a scan of the mesh.
     * Otherwise the identities are read range by range as the loop goes (quick_verdict): the
     * later ranges while the workers sign the first batches. */
    quick = targeted ? NULL : quick_open(s, m, &pc, now, dps, ndps, 0);
    for (size_t i = 0; i < ndps; i++) {
        if (!dps[i]->name.value)
            continue;
        quick_record *record = NULL;
        int verdict = quick ? quick_verdict(quick, i, &record) : QUICK_FULL;
        rc = reconcile_dataplane(s, m, dps[i], &pc, now, verdict, record, &batch, tx, rep, mr,
                                 diags, errbuf);
        if (rc == 0 && batch.n == SIGN_BATCH) {
            /* The next identities read while the workers finish the batch before, rather than
             * after it: the wait filled, the main thread's work between batches shortened. */
            while (quick && i + 1 < ndps && sign_batch_signing(&batch) &&
                   quick_read_ahead(quick, i + 1))
                ;
            rc = sign_batch_cycle(&batch, m, &pc, now, tx, rep, mr, diags, errbuf);
            /* The store's work for the batch just finished, while the workers sign the next. */
            if (rc == 0)
                rc = pass_flush(s, tx);
        }
        if (tx->opts && tx->opts->progress)
            tx->opts->progress(tx->opts->progress_userdata, ++tx->done, tx->total);
        if (rc == ISSUE_REFUSED) {
            /* The CA refused to sign (e.g. expired meanwhile, Vault down): stop this mesh, and
             * say why in its status (the diagnostic just reported). */
            mr->failed = true;
            rc = 0;
            const char *why = diags->count ? diags->items[diags->count - 1].message : "";
            status_changed |= pass_set_condition(conditions, m->backends[pc.enabled].name.value,
                                                 why);
            if (cache)
                ca_cache_sign_failed(cache, mesh_name, m->backends[pc.enabled].name.value, why, now);
            /* The batches under way are dropped: the mesh stops here. */
            sign_batch_drop(&batch);
            break;
        }
        if (rc == MESHCA_ENOMEM)
            goto out;
        if (rc < 0) {
            /* One failure per mesh, not one per dataplane: a read-only or lost store fails
             * every write the same way. */
            store_failed(rep, mr, rc, mesh_name, errbuf, diags);
            rc = 0;
            break;
        }
    }
    /* The last batches, or what was decided before a store failure stopped the mesh. */
    if (batch.n > 0 || batch.fl_n > 0) {
        rc = sign_batch_drain(&batch, m, &pc, now, tx, rep, mr, diags, errbuf);
        if (rc == ISSUE_REFUSED) {
            mr->failed = true;
            rc = 0;
        } else if (rc < 0) {
            goto out;
        }
    }
    /* Every dataplane trusts the new CA and no leaf carries the cross-signed CA any more. */
    if (cross_flag && !pc.cross_pem && !mr->failed && !mr->skipped) {
        json_object_del(mstatus, "crossSign");
        status_changed = true;
    }
    /* The enabled backend signed what there was to sign: no longer unavailable. */
    if (!mr->failed && !mr->store_failed) {
        status_changed |= pass_set_condition(conditions, m->backends[pc.enabled].name.value,
                                             ca_backend_warning(pc.cas[pc.enabled].ca));
        if (cache)
            ca_cache_sign_ok(cache, mesh_name, m->backends[pc.enabled].name.value);
    }
status:
    if (json_array_size(conditions) == 0)
        json_object_del(mstatus, "conditions");
    if (status_changed && !mr->store_failed) {
        char *text = json_dumps(mstatus, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!text || (rc = pass_queue_write(tx, STATE_MESHSTATUS, mesh_name, mesh_name, text,
                                            mstatus_version, false)) < 0) {
            rc = MESHCA_ENOMEM;
            goto out;
        }
    }
    /* The mesh's one trust bundle (and the cross-signed CA, for roots), when it changed and was
     * not queued before the leaves (a CA that could not be opened). */
    size_t nqueued = tx->n;
    if (!bundle_queued && !mr->store_failed && pc.bundle_pem &&
        (rc = pass_queue_bundle(s, mesh_name, &pc, tx, errbuf)) < 0) {
        if (rc == MESHCA_ENOMEM)
            goto out;
        store_failed(rep, mr, rc, mesh_name, errbuf, diags);
    }
    rebundled |= tx->n > nqueued;
    /* Targeted: a new bundle or status concerns every dataplane of the mesh. */
    if (targeted && (status_changed || rebundled))
        rep->need_full = true;
    rc = 0;
out:
    quick_close(quick);
    sign_batch_free(&batch);
    free(dps);
    json_decref(mstatus);
    pass_cas_free(&pc);
    return rc;
}

static int pass_once(store *s, const reconcile_options *opts, reconcile_report *ret,
                     diag_list *diags)
{
    int64_t now = opts && opts->now ? opts->now : (int64_t)time(NULL);
    pass_fence fence = {.revision = STORE_NO_REVISION};
    bool targeted = opts && opts->targets;
    /* Targeted: the versions are those pass_targets_load reads with the objects. */
    int frc = targeted ? 0 : pass_fence_load(s, &fence);
    if (frc < 0) {
        pass_fence_free(&fence);
        return frc;
    }
    manifest_set *set = manifest_set_new();
    if (!set) {
        pass_fence_free(&fence);
        return STORE_ENOMEM;
    }
    diag_list load_diags = DIAG_LIST_INIT;
    int rc = targeted ? pass_targets_load(s, opts->targets, set, &fence.meshes, &fence.nmeshes,
                                          &fence.dps, &fence.ndps, &load_diags)
                      : state_load_resources(s, NULL, set, &load_diags);
    /* Store objects that do not decode are reported as warnings: they are skipped, not fatal. */
    for (size_t i = 0; i < load_diags.count; i++)
        load_diags.items[i].severity = DIAG_WARNING;
    diag_list_move(diags, &load_diags);
    if (rc < 0) {
        manifest_set_free(set);
        pass_fence_free(&fence);
        return rc;
    }
    reconcile_report rep = RECONCILE_REPORT_INIT;
    pass_txn tx = {0};
    tx.opts = opts;
    tx.fence = &fence;
    for (size_t i = 0; opts && opts->progress && i < manifest_set_count(set); i++)
        tx.total += manifest_set_get(set, i)->kind == RESOURCE_DATAPLANE;
    /* The last mesh with mTLS may flush its writes to an open transaction (pass_txn): no CA is
     * opened after it. A targeted pass writes little, and may write nothing (need_full). */
    size_t last_mtls = SIZE_MAX;
    for (size_t i = 0; !targeted && i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind == RESOURCE_MESH && res->u.mesh.name.value &&
            mesh_enabled_backend(&res->u.mesh))
            last_mtls = i;
    }
    for (size_t i = 0; i < manifest_set_count(set) && rc == 0; i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind != RESOURCE_MESH || !res->u.mesh.name.value)
            continue;
        tx.may_flush = i == last_mtls;
        rc = reconcile_mesh(s, set, &res->u.mesh, now, opts ? opts->sign_workers : 0,
                            opts ? opts->ca_cache : NULL, &tx, &rep, diags);
    }
    manifest_set_free(set);
    /* A targeted pass that cannot decide alone writes nothing: reconcile_once runs a full one. */
    if (rc == 0 && (tx.n || tx.s || tx.flush_rc) && !rep.need_full)
        pass_commit(s, &tx, &fence, &rep, diags);
    /* Every mesh had its turn: CAs of meshes gone from the store leave the cache. */
    if (rc == 0 && !rep.store_error && opts && opts->ca_cache && !targeted)
        ca_cache_sweep(opts->ca_cache);
    pass_txn_free(&tx);
    pass_fence_free(&fence);
    rep.targeted = targeted;
    if (rc < 0) {
        reconcile_report_free(&rep);
        return rc;
    }
    for (size_t i = 0; i < rep.nmeshes; i++) {
        const reconcile_mesh_report *mr = &rep.meshes[i];
        rep.issued += mr->issued;
        rep.reissued += mr->reissued;
        rep.renewed += mr->renewed;
        rep.rebundled += mr->rebundled;
        rep.unchanged += mr->unchanged;
        rep.awaiting += mr->awaiting;
        rep.failed_meshes += mr->failed;
        rep.store_failures += mr->store_failed;
    }
    *ret = rep;
    return 0;
}

int reconcile_once(store *s, const reconcile_options *opts, reconcile_report *ret,
                   diag_list *diags)
{
    if (!opts || !opts->targets)
        return pass_once(s, opts, ret, diags);
    /* Targeted: what it said counts only when it decided alone. */
    diag_list own = DIAG_LIST_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    int rc = pass_once(s, opts, &rep, &own);
    if (rc < 0 || !rep.need_full) {
        diag_list_move(diags, &own);
        if (rc == 0)
            *ret = rep;
        return rc;
    }
    reconcile_report_free(&rep);
    diag_list_free(&own);
    reconcile_options full = *opts;
    full.targets = NULL;
    return pass_once(s, &full, ret, diags);
}

int reconcile_submit_key(store *s, const char *mesh_name, const char *dp_name,
                         const unsigned char *spki, size_t spki_len, const char *csr_pem,
                         char *errbuf)
{
    char *pem = NULL;
    int rc = pki_spki_to_pem(spki, spki_len, &pem, errbuf);
    if (rc < 0)
        return rc;
    /* Read again after a conflict: a pass may write the identity meanwhile. */
    rc = STORE_ECONFLICT;
    for (int attempt = 0; attempt < 8 && rc == STORE_ECONFLICT; attempt++) {
        char *text = NULL;
        uint64_t version = 0, dp_version = 0;
        store_op ops[2];
        if ((rc = identity_with_pending_key(s, mesh_name, dp_name, IDENTITY_NO_CERT, pem, csr_pem,
                                            &text, &version, &dp_version, errbuf)) < 0) {
            free(pem);
            return rc;
        }
        /* The Dataplane checked too: deleted meanwhile, the key is not left behind it. */
        rc = store_txn_at(s, "csr.submit", ops,
                          identity_pending_key_ops(mesh_name, dp_name, text, version, dp_version,
                                                   ops));
        free(text);
    }
    free(pem);
    if (rc < 0)
        return meshca_fail(errbuf, rc, "cannot store the key of '%s/%s': %s", mesh_name, dp_name,
                           store_strerror(rc));
    return 0;
}
