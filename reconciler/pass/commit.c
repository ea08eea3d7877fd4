/* commit.c - a pass's writes, queued, then committed as one transaction fenced by the resources they were computed from. */
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
#include "reconciler/failpoint.h"
#include "reconciler/mesh_ca.h"
#include "reconciler/pass/pass.h"
#include "reconciler/reconcile.h"
#include "reconciler/sign_pool.h"
#include "reconciler/state.h"
#include "reconciler/store/identity_json.h"
#include "reconciler/store/identity_peek.h"

/* Frees the queued writes, keeping the array. */
static void txn_clear_writes(pass_txn *tx)
{
    for (size_t i = 0; i < tx->n; i++) {
        free(tx->w[i].mesh);
        free(tx->w[i].name);
        free(tx->w[i].value);
    }
    tx->n = 0;
}

/* A transaction still open (the pass stopped before its commit) is rolled back. */
void pass_txn_free(pass_txn *tx)
{
    if (tx->s)
        (void)store_txn_close(tx->s, NULL, false);
    txn_clear_writes(tx);
    free(tx->w);
    memset(tx, 0, sizeof(*tx));
}

/* Queues one write of the pass (SPEC S6: a pass's writes are one transaction). */
int pass_queue_write(pass_txn *tx, const char *kind, const char *mesh_name, const char *name,
                     char *value, uint64_t version, bool del)
{
    if (tx->n == tx->cap) {
        size_t cap = tx->cap ? tx->cap * 2 : 16;
        pass_write *w = realloc(tx->w, cap * sizeof(*w));
        if (!w) {
            free(value);
            return MESHCA_ENOMEM;
        }
        tx->w = w;
        tx->cap = cap;
    }
    pass_write *w = &tx->w[tx->n];
    memset(w, 0, sizeof(*w));
    w->kind = kind;
    w->mesh = strdup(mesh_name);
    w->name = strdup(name);
    w->value = value;
    w->version = version;
    w->del = del;
    if (!w->mesh || !w->name) {
        free(w->mesh);
        free(w->name);
        free(value);
        return MESHCA_ENOMEM;
    }
    tx->n++;
    return 0;
}

int pass_queue_identity(pass_txn *tx, const identity *id, uint64_t version)
{
    char *text = identity_encode(id);
    if (!text)
        return MESHCA_ENOMEM;
    return pass_queue_write(tx, STATE_IDENTITIES, id->mesh, id->dataplane, text, version, false);
}

int pass_fence_load(store *s, pass_fence *f)
{
    /* First: nothing written after it can hide behind the versions read below. */
    if (store_revision(s, &f->revision) < 0)
        f->revision = STORE_NO_REVISION;   /* the transaction then checks every version */
    /* Only versions are needed: the values are read again by state_load_resources. */
    int rc = store_list_keys(s, STATE_MESHES, NULL, &f->meshes, &f->nmeshes);
    if (rc == 0)
        rc = store_list_keys(s, STATE_DATAPLANES, NULL, &f->dps, &f->ndps);
    return rc;
}

void pass_fence_free(pass_fence *f)
{
    store_entries_free(f->meshes, f->nmeshes);
    store_entries_free(f->dps, f->ndps);
    memset(f, 0, sizeof(*f));
}

static const store_entry *fence_find(const store_entry *e, size_t n, const char *mesh_name,
                                     const char *name)
{
    size_t lo = 0, hi = n;   /* store_list sorts by (mesh, name) */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(e[mid].mesh, mesh_name);
        if (c == 0)
            c = strcmp(e[mid].name, name);
        if (c == 0)
            return &e[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The queued writes as store ops (caller frees; NULL when out of memory): each write, then a
 * check of the Dataplane (or Mesh) it was computed from. */
static store_op *queued_ops(const pass_txn *tx, const pass_fence *f, size_t *ret_n)
{
    store_op *ops = calloc(2 * tx->n + 1, sizeof(*ops));
    size_t n = 0;
    for (size_t i = 0; ops && i < tx->n; i++) {
        const pass_write *w = &tx->w[i];
        ops[n++] = (store_op){
            .type = w->del ? STORE_OP_DELETE : STORE_OP_PUT,
            .key = {w->kind, w->mesh, w->name},
            .value = w->value,
            .len = w->value ? strlen(w->value) : 0,
            .expected_version = w->version,
        };
        const store_entry *e = NULL;
        const char *kind = NULL;
        if (strcmp(w->kind, STATE_IDENTITIES) == 0) {
            e = fence_find(f->dps, f->ndps, w->mesh, w->name);
            kind = STATE_DATAPLANES;
        } else if (strcmp(w->kind, STATE_BUNDLES) == 0) {
            /* One bundle write per mesh: it fences the Mesh. */
            e = fence_find(f->meshes, f->nmeshes, w->mesh, w->mesh);
            kind = STATE_MESHES;
        }
        if (e && e->version)
            ops[n++] = (store_op){.type = STORE_OP_CHECK, .key = {kind, e->mesh, e->name},
                                  .expected_version = e->version};
    }
    *ret_n = n;
    return ops;
}

/* Applies the queued writes to the pass's open transaction (opened by the first flush), when
 * this mesh may flush and the store holds one open; else leaves them queued for pass_commit.
 * A failed flush rolls the transaction back: the pass writes nothing, and its commit reports
 * why. Returns 0 or MESHCA_ENOMEM. */
int pass_flush(store *s, pass_txn *tx)
{
    if (!tx->may_flush || tx->no_flush || tx->n == 0)
        return 0;
    if (tx->flush_rc) {
        txn_clear_writes(tx);   /* nothing of this pass will be written */
        return 0;
    }
    if (!tx->s) {
        /* Unchanged since the pass read the store: the version checks are not made again. */
        int rc = store_txn_open_since(s, tx->fence ? tx->fence->revision : STORE_NO_REVISION);
        if (rc < 0) {
            /* Not supported (etcd), or the store busy now: the commit writes everything. */
            tx->no_flush = true;
            return 0;
        }
        tx->s = s;
    }
    size_t n = 0;
    store_op *ops = queued_ops(tx, tx->fence, &n);
    if (!ops)
        return MESHCA_ENOMEM;
    /* Test-only (failpoint.h): this part fails as a full disk would. */
    char fperr[MESHCA_ERRBUF] = "";
    int rc = FAILPOINT("pass.flush", fperr);
    if (rc == 0)
        rc = store_txn_add(s, ops, n);
    free(ops);
    if (rc < 0) {
        tx->flush_rc = rc;
        snprintf(tx->flush_err, sizeof(tx->flush_err), "%s", fperr[0] ? fperr : store_errmsg(s));
        (void)store_txn_close(s, NULL, false);
        tx->s = NULL;
    }
    tx->flushed += tx->n;
    txn_clear_writes(tx);
    return 0;
}

/* Whether identity write op (a put or delete the pass computed) no longer matches the stored
 * object: ids holds the mesh's identity keys and versions as they are now. */
static bool identity_write_stale(const store_op *op, const store_entry *ids, size_t nids)
{
    const store_entry *e = fence_find(ids, nids, op->key.mesh, op->key.name);
    if (op->expected_version == STORE_ANY_VERSION)
        return false;
    if (op->expected_version == 0)
        return e != NULL;   /* created meanwhile (an agent's first CSR) */
    return !e || e->version != op->expected_version;
}

/* The report no longer counts dataplane dp of mesh_name as changed: its write was left to the
 * next pass. */
static void report_left_out(reconcile_report *rep, const char *mesh_name, const char *dp)
{
    reconcile_mesh_report *mr = NULL;
    for (size_t i = 0; i < rep->nmeshes && !mr; i++)
        if (rep->meshes[i].mesh && strcmp(rep->meshes[i].mesh, mesh_name) == 0)
            mr = &rep->meshes[i];
    for (size_t i = 0; i < rep->nactions; i++) {
        reconcile_action *a = &rep->actions[i];
        if (!a->mesh || !a->dataplane || strcmp(a->mesh, mesh_name) != 0 ||
            strcmp(a->dataplane, dp) != 0)
            continue;
        if (mr) {
            size_t *count = a->verb == RECONCILE_ISSUED     ? &mr->issued
                            : a->verb == RECONCILE_REISSUED ? &mr->reissued
                            : a->verb == RECONCILE_RENEWED  ? &mr->renewed
                                                            : &mr->rebundled;
            if (*count)
                (*count)--;
            mr->skipped++;
        }
        free(a->mesh);
        free(a->dataplane);
        free(a->backend);
        free(a->reason);
        memmove(a, a + 1, (rep->nactions - i - 1) * sizeof(*a));
        rep->nactions--;
        i--;
    }
}

/* A part of the commit refused for a conflict: drops from ops[0, *n) the identity writes whose
 * object another writer changed since the pass read it (with the check that follows each), and
 * takes them out of the report. Agents' CSRs change identities all the time in a large mesh,
 * and one of them must not cost a whole pass's signatures: those dataplanes are left to the
 * next pass (the CSR's own targeted pass signs them). Returns how many were dropped (0: the
 * conflict is elsewhere, e.g. a Dataplane or Mesh changed, and the whole pass waits), or a
 * negative store code. */
static int drop_stale_identity_writes(store *s, store_op *ops, size_t *n, reconcile_report *rep,
                                      char *names, size_t names_len)
{
    store_entry *ids = NULL;
    size_t nids = 0, out = 0;
    const char *ids_mesh = NULL;
    int dropped = 0, rc = 0;
    for (size_t i = 0; i < *n; i++) {
        store_op *op = &ops[i];
        size_t unit = i + 1 < *n && ops[i + 1].type == STORE_OP_CHECK ? 2 : 1;
        bool stale = false;
        if (op->type != STORE_OP_CHECK && strcmp(op->key.kind, STATE_IDENTITIES) == 0) {
            if (!ids_mesh || strcmp(ids_mesh, op->key.mesh) != 0) {
                store_entries_free(ids, nids);
                ids = NULL;
                nids = 0;
                if ((rc = store_list_keys(s, STATE_IDENTITIES, op->key.mesh, &ids, &nids)) < 0)
                    break;
                ids_mesh = op->key.mesh;
            }
            stale = identity_write_stale(op, ids, nids);
        }
        if (stale) {
            size_t used = strlen(names);
            if (dropped < 5 && used + strlen(op->key.name) + 3 < names_len)
                snprintf(names + used, names_len - used, "%s%s", used ? ", " : "", op->key.name);
            report_left_out(rep, op->key.mesh, op->key.name);
            dropped++;
        } else {
            for (size_t k = 0; k < unit; k++)
                ops[out++] = ops[i + k];
        }
        i += unit - 1;
    }
    store_entries_free(ids, nids);
    if (rc < 0)
        return rc;
    *n = out;
    return dropped;
}

/* Commits the pass's writes as one transaction (SPEC S6): all or none. When another writer
 * changed one of its identities meanwhile (an agent's CSR), that dataplane's write is left to
 * the next pass and the rest commits (warning "conflict" naming them); when anything else
 * changed (a Dataplane, a Mesh, another pass's bundle), nothing is written and the whole pass is
 * left to the next one (warning "conflict"); a store failure fails every mesh of the pass. */
void pass_commit(store *s, pass_txn *tx, const pass_fence *f, reconcile_report *rep,
                 diag_list *diags)
{
    size_t n = 0;
    store_op *ops = NULL;
    int rc = 0;
    const char *why = NULL;
    if (tx->s || tx->flush_rc) {
        /* Writes flushed to the open transaction: the rest, then its one commit. */
        tx->may_flush = true;
        rc = pass_flush(s, tx);
        if (rc == 0 && tx->flush_rc)
            rc = tx->flush_rc;
        else if (rc == 0)
            rc = store_txn_close(s, "pass.commit", true);
        else
            (void)store_txn_close(s, NULL, false);
        tx->s = NULL;
        why = tx->flush_rc ? tx->flush_err : NULL;
        goto done;
    }
    ops = queued_ops(tx, f, &n);
    rc = ops ? 0 : MESHCA_ENOMEM;
    /* Over the store's atomic limit (etcd: --max-txn-ops) the pass commits in parts, each a
     * whole number of (write, its check) pairs: the store would put every check into every part
     * and run out of room. A stop between parts leaves what the next pass recomputes (store.h). */
    size_t limit = store_txn_limit(s), left_out = 0;
    char left_names[256] = "";
    for (size_t from = 0, to; ops && rc == 0 && from < n; from = to) {
        for (to = from; to < n;) {
            size_t unit = to + 1 < n && ops[to + 1].type == STORE_OP_CHECK ? 2 : 1;
            if (to > from && to + unit - from > limit)
                break;
            to += unit;
        }
        size_t part = to - from;
        rc = store_txn_at(s, "pass.commit", ops + from, part);
        /* Bounded: each retry drops at least one write; a conflict elsewhere ends it. */
        for (int attempt = 0; attempt < 3 && rc == STORE_ECONFLICT && part > 0; attempt++) {
            int d = drop_stale_identity_writes(s, ops + from, &part, rep, left_names,
                                               sizeof(left_names));
            if (d <= 0) {
                rc = d < 0 ? d : rc;
                break;
            }
            left_out += (size_t)d;
            rc = part ? store_txn_at(s, "pass.commit", ops + from, part) : 0;
        }
    }
    free(ops);
    if (rc == 0 && left_out)
        diag_warning(diags, "conflict", NULL, "", "%zu dataplane%s changed while this pass worked "
                     "(%s%s: an agent's CSR, most often); their writes were left to the next "
                     "pass, the rest written", left_out, left_out == 1 ? "" : "s", left_names,
                     left_out > 5 ? ", ..." : "");
done:
    if (rc == 0)
        return;
    if (!why)
        why = rc == MESHCA_ENOMEM ? "out of memory" : store_errmsg(s);
    /* Nothing of this pass was written: what it did is not what the store holds. */
    for (size_t i = 0; i < rep->nactions; i++) {
        free(rep->actions[i].mesh);
        free(rep->actions[i].dataplane);
        free(rep->actions[i].backend);
        free(rep->actions[i].reason);
    }
    free(rep->actions);
    rep->actions = NULL;
    rep->nactions = 0;
    for (size_t i = 0; i < rep->nmeshes; i++) {
        reconcile_mesh_report *mr = &rep->meshes[i];
        mr->skipped += mr->issued + mr->reissued + mr->renewed + mr->rebundled;
        mr->issued = mr->reissued = mr->renewed = mr->rebundled = 0;
    }
    if (rc == STORE_ECONFLICT || rc == STORE_ENOTFOUND) {
        diag_warning(diags, "conflict", NULL, "", "the store changed while this pass worked "
                     "(%s); nothing written, left to the next pass", why);
        return;
    }
    for (size_t i = 0; i < rep->nmeshes; i++) {
        if (!rep->meshes[i].mtls)
            continue;
        rep->meshes[i].failed = true;
        rep->meshes[i].store_failed = true;
    }
    if (!rep->store_error) {
        rep->store_error = rc;
        snprintf(rep->store_cause, sizeof(rep->store_cause), "%s", store_strerror(rc));
    }
    diag_error(diags, "store-error", NULL, "", "cannot write the pass's changes: %s; retried on the "
               "next pass", why);
}
