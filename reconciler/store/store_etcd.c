/* store_etcd.c - the etcd://, etcds:// store: a thin adapter from the store vtable to the etcd
 * client and key layout. */
#define _GNU_SOURCE 1
#include "reconciler/store/backend.h"
#include "reconciler/store/etcd_client.h"
#include "reconciler/store/etcd_keys.h"
#include "reconciler/failpoint.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * Layout and txn mapping: doc/store-etcd.md. What this file adds to the client:
 *  - a store txn over one etcd txn's limit (--max-txn-ops, --max-request-bytes) is cut by
 *    etcd_keys_plan into consecutive txns, each atomic; its STORE_OP_CHECK ops go into every
 *    one of them, so a fenced write stays fenced in each part (store_txn_limit says how many
 *    ops fit one txn);
 *  - store_watch keeps one etcd watch stream open between calls and continues it while the
 *    caller asks for the revision after the last event it was given.
 */

/* Retries of a paginated listing whose revision was compacted between two pages. */
#define LIST_RETRIES 3
/* store_watch(..., 0) on a stream not connected yet: how long it may wait for changes it knows
 * are there (the store revision moved past the caller's), so "do not wait" still sees them. */
#define WATCH_CATCH_UP_MS 3000
/* Upper bound for ?max-txn-ops=N: etcd's own flag has no hard limit, but a txn is one raft entry.
 */
#define MAX_TXN_OPS_LIMIT 100000u

typedef struct etcd_store {
    etcd_client *c;
    char shown[96];       /* "etcd://HOST:PORT,..." for messages, cut if long */
    etcd_watch *w;        /* the stream store_watch continues, or NULL */
    uint64_t given;       /* the caller was given every event of w up to this revision */
    store_event *pending; /* converted events of w not handed out yet (after the per-call cap) */
    size_t npending;
    uint64_t quiet; /* w was waited on (catch-up) up to this store revision and had no object
                     * event: other prefixes' writes do not make every later call wait */
} etcd_store;

static int64_t now_ms(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The client's code is already a store code (both alias manifests/error.h); only the message
 * gains the store and the object, so a user sees which write failed where. */
static int fail_call(etcd_store *e, int r, const char *what, const char *cause, char *err)
{
    return meshca_fail(err, r, "store '%s': %s: %s", e->shown, what, cause);
}

static void key_text(const store_key *k, char *buf, size_t len)
{
    (void)snprintf(buf, len, "%s/%s/%s", k->kind, k->mesh, k->name);
}

static int object_key(etcd_store *e, const store_key *k, char *buf, size_t *ret_len, char *err)
{
    char what[3 * STORE_NAME_MAX + 8];

    if (etcd_keys_object(k->kind, k->mesh, k->name, buf, ret_len) == 0)
        return STORE_OK;
    key_text(k, what, sizeof(what));
    return fail_call(e, STORE_EINVAL, what, "no etcd key for this name", err);
}

static int ed_get(void *impl, const store_key *key, char **ret_value, size_t *ret_len,
                  uint64_t *ret_version, char *err)
{
    etcd_store *e = impl;
    char k[ETCD_KEYS_KEY_MAX], what[3 * STORE_NAME_MAX + 8], cause[MESHCA_ERRBUF];
    etcd_kv *kv = NULL;
    size_t klen = 0;
    int r = object_key(e, key, k, &klen, err);

    if (r < 0)
        return r;
    key_text(key, what, sizeof(what));
    r = etcd_get(e->c, k, klen, &kv, NULL, cause);
    if (r == ETCD_ENOTFOUND)
        return fail_call(e, STORE_ENOTFOUND, what, "not found", err);
    if (r < 0)
        return fail_call(e, r, what, cause, err);
    *ret_value = kv->value; /* NUL-terminated by the client; taken over */
    if (ret_len)
        *ret_len = kv->value_len;
    if (ret_version)
        *ret_version = (uint64_t)kv->mod_revision;
    kv->value = NULL;
    kv->value_len = 0;
    etcd_kvs_free(kv, 1);
    return STORE_OK;
}

static int entry_cmp(const void *a, const void *b)
{
    const store_entry *x = a, *y = b;
    int c = strcmp(x->mesh, y->mesh);

    return c ? c : strcmp(x->name, y->name);
}

/* store_list (values) or store_list_keys (keys_only: no value read from etcd). */
static int list(etcd_store *e, const char *kind, const char *mesh_name, int keys_only,
                store_entry **ret_entries, size_t *ret_count, char *err)
{
    char prefix[ETCD_KEYS_KEY_MAX], cause[MESHCA_ERRBUF], what[2 * STORE_NAME_MAX + 8];
    etcd_kv *kvs = NULL;
    store_entry *out = NULL;
    size_t plen = 0, n = 0;
    int r;

    (void)snprintf(what, sizeof(what), "%s/%s", kind, mesh_name ? mesh_name : "*");
    if (etcd_keys_list_prefix(kind, mesh_name, prefix, &plen) < 0)
        return fail_call(e, STORE_EINVAL, what, "no etcd key for this name", err);
    /* One snapshot: pages pinned to one revision; started again if it is compacted meanwhile. */
    for (int tries = 0;; tries++) {
        r = keys_only ? etcd_range_keys(e->c, prefix, plen, &kvs, &n, NULL, cause)
                      : etcd_range(e->c, prefix, plen, NULL, 0, &kvs, &n, NULL, cause);
        if (r != ETCD_ECOMPACTED || tries + 1 >= LIST_RETRIES)
            break;
    }
    if (r < 0)
        return fail_call(e, r, what, cause, err);
    if (n > 0) {
        out = calloc(n, sizeof(*out));
        if (!out) {
            etcd_kvs_free(kvs, n);
            return fail_call(e, STORE_ENOMEM, what, "out of memory", err);
        }
    }
    for (size_t i = 0; i < n; i++) {
        etcd_keys_parsed p;

        if (etcd_keys_parse(kvs[i].key, kvs[i].key_len, &p) < 0 || strcmp(p.kind, kind) != 0) {
            /* Never guessed at: a key of another shape under our prefix is corruption. */
            r = fail_call(e, STORE_EIO, what, "corrupt key under the store's prefix", err);
            break;
        }
        out[i].kind = strdup(p.kind);
        out[i].mesh = strdup(p.mesh);
        out[i].name = strdup(p.name);
        out[i].version = (uint64_t)kvs[i].mod_revision;
        if (!keys_only) {
            out[i].value = kvs[i].value;
            out[i].len = kvs[i].value_len;
            kvs[i].value = NULL;
            kvs[i].value_len = 0;
        }
        if (!out[i].kind || !out[i].mesh || !out[i].name) {
            r = fail_call(e, STORE_ENOMEM, what, "out of memory", err);
            break;
        }
    }
    etcd_kvs_free(kvs, n);
    if (r < 0) {
        store_entries_free(out, n);
        return r;
    }
    /* etcd's byte order puts mesh "a-b" before "a" ('-' < '/'); the contract is (mesh, name). */
    if (n > 1)
        qsort(out, n, sizeof(*out), entry_cmp);
    *ret_entries = out;
    *ret_count = n;
    return STORE_OK;
}

static int ed_list(void *impl, const char *kind, const char *mesh_name, store_entry **ret_entries,
                   size_t *ret_count, char *err)
{
    return list(impl, kind, mesh_name, 0, ret_entries, ret_count, err);
}

static int ed_list_keys(void *impl, const char *kind, const char *mesh_name,
                        store_entry **ret_entries, size_t *ret_count, char *err)
{
    return list(impl, kind, mesh_name, 1, ret_entries, ret_count, err);
}

/* store_scan_range: the keys [object(from), object(to) + "\0"), one snapshot. In one mesh the
 * key order is the name order (same prefix), so no sort is needed. */
static int ed_scan_range(void *impl, const char *kind, const char *mesh_name, const char *from,
                         const char *to, store_scan_fn fn, void *userdata, char *err)
{
    etcd_store *e = impl;
    char key[ETCD_KEYS_KEY_MAX], end[ETCD_KEYS_KEY_MAX + 1], cause[MESHCA_ERRBUF];
    char what[3 * STORE_NAME_MAX + 16];
    etcd_kv *kvs = NULL;
    size_t klen = 0, elen = 0, n = 0;
    int r;

    (void)snprintf(what, sizeof(what), "%s/%s/%s..%s", kind, mesh_name, from, to);
    if (etcd_keys_object(kind, mesh_name, from, key, &klen) < 0 ||
        etcd_keys_object(kind, mesh_name, to, end, &elen) < 0)
        return fail_call(e, STORE_EINVAL, what, "no etcd key for this name", err);
    end[elen++] = '\0';   /* the key right after to's: to is in the range */
    for (int tries = 0;; tries++) {
        r = etcd_range(e->c, key, klen, end, elen, &kvs, &n, NULL, cause);
        if (r != ETCD_ECOMPACTED || tries + 1 >= LIST_RETRIES)
            break;
    }
    if (r < 0)
        return fail_call(e, r, what, cause, err);
    for (size_t i = 0; r == STORE_OK && i < n; i++) {
        etcd_keys_parsed p;
        store_entry en;

        if (etcd_keys_parse(kvs[i].key, kvs[i].key_len, &p) < 0 || strcmp(p.kind, kind) != 0 ||
            strcmp(p.mesh, mesh_name) != 0) {
            r = fail_call(e, STORE_EIO, what, "corrupt key under the store's prefix", err);
            break;
        }
        en.kind = p.kind;
        en.mesh = p.mesh;
        en.name = p.name;
        /* etcd_kv values are NUL-terminated as store_entry's (etcd_client.h). */
        en.value = kvs[i].value ? kvs[i].value : "";
        en.len = kvs[i].value ? kvs[i].value_len : 0;
        en.version = (uint64_t)kvs[i].mod_revision;
        r = fn(userdata, &en);
    }
    etcd_kvs_free(kvs, n);
    return r;
}

static int ed_revision(void *impl, uint64_t *ret, char *err)
{
    etcd_store *e = impl;
    /* A range of exactly the key "/meshca/" (no object has it): the cheapest read with a header. */
    static const char probe[] = ETCD_KEYS_PREFIX, probe_end[] = ETCD_KEYS_PREFIX "\0";
    char cause[MESHCA_ERRBUF];
    etcd_kv *kvs = NULL;
    size_t n = 0;
    int64_t rev = 0;
    int r = etcd_range(e->c, probe, sizeof(probe) - 1, probe_end, sizeof(probe_end) - 1, &kvs, &n,
                       &rev, cause);

    etcd_kvs_free(kvs, n);
    if (r < 0)
        return fail_call(e, r, "revision", cause, err);
    *ret = (uint64_t)rev;
    return STORE_OK;
}

/* --- txn ---------------------------------------------------------------------------------- */

/* One store op as etcd parts. */
typedef struct op_parts {
    char key[ETCD_KEYS_KEY_MAX];
    size_t key_len;
    int has_cmp;
    etcd_compare cmp;
    etcd_keys_check check;
} op_parts;

static int build_parts(etcd_store *e, const store_op *op, op_parts *p, char *err)
{
    char what[3 * STORE_NAME_MAX + 8];
    int r = object_key(e, &op->key, p->key, &p->key_len, err);

    if (r < 0)
        return r;
    r = etcd_keys_expect(p->key, p->key_len, op->expected_version, op->type == STORE_OP_DELETE,
                         &p->cmp);
    if (r < 0) {
        key_text(&op->key, what, sizeof(what));
        return fail_call(e, STORE_EINVAL, what, "expected version out of etcd's range", err);
    }
    p->has_cmp = r;
    p->check.expected_version = op->expected_version;
    p->check.is_delete = op->type == STORE_OP_DELETE;
    return STORE_OK;
}

/* Runs ops idx[0..n) as one etcd txn. */
static int run_one(etcd_store *e, const store_op *ops, op_parts *parts, const size_t *idx, size_t n,
                   uint64_t *ret_rev, char *err)
{
    etcd_compare *cmps = calloc(n ? n : 1, sizeof(*cmps));
    etcd_op *succ = calloc(n ? n : 1, sizeof(*succ)), *fail = calloc(n ? n : 1, sizeof(*fail));
    etcd_keys_check *checks = calloc(n ? n : 1, sizeof(*checks));
    etcd_txn_request req = {0};
    etcd_txn_result res = {0};
    char cause[MESHCA_ERRBUF], what[3 * STORE_NAME_MAX + 64];
    size_t nc = 0, ns = 0, bad = 0;
    int r;

    if (!cmps || !succ || !fail || !checks) {
        r = fail_call(e, STORE_ENOMEM, "txn", "out of memory", err);
        goto out;
    }
    for (size_t j = 0; j < n; j++) {
        const store_op *op = &ops[idx[j]];
        op_parts *p = &parts[idx[j]];

        if (p->has_cmp)
            cmps[nc++] = p->cmp;
        if (op->type == STORE_OP_PUT)
            succ[ns++] = (etcd_op){.type = ETCD_OP_PUT,
                                   .key = p->key,
                                   .key_len = p->key_len,
                                   .value = op->value,
                                   .value_len = op->len,
                                   .lease = op->lease};
        else if (op->type == STORE_OP_DELETE)
            succ[ns++] = (etcd_op){.type = ETCD_OP_DELETE, .key = p->key, .key_len = p->key_len};
        /* Read back after a failed compare (below), so it is explained by name. */
        fail[j] = (etcd_op){.type = ETCD_OP_GET, .key = p->key, .key_len = p->key_len};
        checks[j] = p->check;
    }
    /* No failure branch: etcd's gateway decodes every op of a request, and a GET per key there
     * cost about 20 % of etcd's CPU per txn (doc/performance.md, "On etcd") for the rare
     * conflict, which reads the keys afterwards instead. */
    req = (etcd_txn_request){
        .compares = cmps, .ncompares = nc, .success = succ, .nsuccess = ns};
    /* Failpoints (test-only, reconciler/failpoint.h): before the txn reaches etcd, and after
     * etcd applied it but before the caller hears so (as a lost reply). */
    r = FAILPOINT("etcd.txn.before", err);
    if (r < 0)
        goto out;
    r = etcd_txn(e->c, &req, &res, cause);
    if (r == ETCD_OK) {
        *ret_rev = (uint64_t)res.revision;
        r = FAILPOINT("etcd.txn.after", err);
        goto out;
    }
    if (r == ETCD_ECONFLICT) {
        /* Every key at one revision (one txn of GETs, no compare): the state that refused the
         * compares, or a later one. Whatever it shows, the write was refused: a conflict. */
        etcd_txn_request rd = {.success = fail, .nsuccess = n};

        etcd_txn_result_free(&res);
        memset(&res, 0, sizeof(res));
        r = etcd_txn(e->c, &rd, &res, cause);
        if (r < 0) {
            key_text(&ops[idx[0]].key, what, sizeof(what));
            r = meshca_fail(err, STORE_ECONFLICT,
                            "store '%s': %s%s: version conflict (the objects could not be read "
                            "back: %s)",
                            e->shown, what, n > 1 ? " or another object of the txn" : "", cause);
            goto out;
        }
        r = etcd_keys_explain_failure(checks, n, res.gets, res.ngets, 0, 0, &bad);
        if (r == ETCD_ENOTFOUND || r == ETCD_ECONFLICT) {
            const store_op *op = &ops[idx[bad]];
            const etcd_txn_get *g = &res.gets[bad];
            char cur[64];

            key_text(&op->key, what, sizeof(what));
            if (r == ETCD_ENOTFOUND) {
                r = fail_call(e, STORE_ENOTFOUND, what, "cannot delete: not found", err);
                goto out;
            }
            if (g->n > 0)
                (void)snprintf(cur, sizeof(cur), "at version %" PRId64, g->kvs[0].mod_revision);
            else
                (void)snprintf(cur, sizeof(cur), "absent");
            if (op->expected_version == 0)
                r = meshca_fail(err, STORE_ECONFLICT,
                                "store '%s': %s: version conflict: %s, expected absent", e->shown,
                                what, cur);
            else
                r = meshca_fail(err, STORE_ECONFLICT,
                                "store '%s': %s: version conflict: %s, expected %" PRIu64, e->shown,
                                what, cur, op->expected_version);
            goto out;
        }
        /* Read back, every compare holds again (an object deleted and made again since). */
        key_text(&ops[idx[0]].key, what, sizeof(what));
        r = meshca_fail(err, STORE_ECONFLICT,
                        "store '%s': %s%s: version conflict (changed again since)", e->shown,
                        what, n > 1 ? " or another object of the txn" : "");
        goto out;
    }
    if (r == ETCD_ENOTFOUND) {
        /* etcd's only "not found" for a txn: a put on a lease that ended. */
        for (size_t j = 0; j < n; j++)
            if (ops[idx[j]].type == STORE_OP_PUT && ops[idx[j]].lease != 0) {
                key_text(&ops[idx[j]].key, what, sizeof(what));
                r = meshca_fail(err, STORE_ENOTFOUND,
                                "store '%s': %s: lease %lld has expired or was revoked", e->shown,
                                what, (long long)ops[idx[j]].lease);
                goto out;
            }
    }
    key_text(&ops[idx[0]].key, what, sizeof(what));
    if (n > 1)
        (void)snprintf(what + strlen(what), sizeof(what) - strlen(what), " and %zu more objects",
                       n - 1);
    r = fail_call(e, r, what, cause, err);
out:
    etcd_txn_result_free(&res);
    free(cmps);
    free(succ);
    free(fail);
    free(checks);
    return r;
}

static int ed_txn(void *impl, const store_op *ops, size_t nops, uint64_t *ret_version, char *err)
{
    etcd_store *e = impl;
    op_parts *parts = calloc(nops, sizeof(*parts));
    size_t *writes = calloc(nops, sizeof(*writes)), *bytes = calloc(nops, sizeof(*bytes));
    size_t *ends = calloc(nops, sizeof(*ends)), *idx = calloc(nops, sizeof(*idx));
    size_t nchecks = 0, nwrites = 0, nbatches = 0, check_bytes = 0, bad = 0;
    unsigned max_ops = etcd_client_max_txn_ops(e->c);
    size_t max_bytes = etcd_client_max_request_bytes(e->c);
    uint64_t rev = 0;
    int r = STORE_OK;

    if (!parts || !writes || !bytes || !ends || !idx) {
        r = fail_call(e, STORE_ENOMEM, "txn", "out of memory", err);
        goto out;
    }
    for (size_t i = 0; i < nops && r == STORE_OK; i++) {
        r = build_parts(e, &ops[i], &parts[i], err);
        if (r < 0)
            break;
        if (ops[i].type == STORE_OP_CHECK) {
            idx[nchecks++] = i;
            check_bytes += etcd_keys_op_bytes(parts[i].key_len, 0);
        } else {
            bytes[nwrites] = etcd_keys_op_bytes(parts[i].key_len, ops[i].len);
            writes[nwrites++] = i;
        }
    }
    if (r < 0)
        goto out;
    if (nchecks >= max_ops || check_bytes >= max_bytes) {
        r = meshca_fail(err, STORE_EINVAL,
                        "store '%s': txn: %zu checks leave no room for a write in one etcd txn "
                        "(--max-txn-ops %u)",
                        e->shown, nchecks, max_ops);
        goto out;
    }
    if (nwrites == 0) {
        r = run_one(e, ops, parts, idx, nchecks, &rev, err);
        goto out;
    }
    /* Every part carries the checks, so the room for writes is what they leave. */
    r = etcd_keys_plan(bytes, nwrites, max_ops - (unsigned)nchecks, max_bytes - check_bytes, 0,
                       ends, &nbatches, &bad);
    if (r < 0) {
        char what[3 * STORE_NAME_MAX + 8], cause[160];

        key_text(&ops[writes[bad]].key, what, sizeof(what));
        (void)snprintf(cause, sizeof(cause),
                       "value of %zu bytes is too large for one etcd request (%zu bytes)",
                       ops[writes[bad]].len, max_bytes);
        r = fail_call(e, STORE_EINVAL, what, cause, err);
        goto out;
    }
    for (size_t b = 0, from = 0; b < nbatches; from = ends[b++]) {
        size_t n = nchecks;

        for (size_t i = from; i < ends[b]; i++)
            idx[n++] = writes[i];
        /* Test-only: a crash or failure with the parts before this one applied. */
        if (b > 0)
            r = FAILPOINT("etcd.txn.between", err);
        if (r == STORE_OK)
            r = run_one(e, ops, parts, idx, n, &rev, err);
        if (r < 0) {
            if (b > 0) {
                /* Say what stayed: the parts before this one are in etcd. */
                size_t used = strlen(err);
                (void)snprintf(err + used, MESHCA_ERRBUF - used,
                               " (%zu of %zu etcd txns of this %zu-op write were applied; a write "
                               "over %u ops is not atomic on etcd)",
                               b, nbatches, nops, max_ops);
            }
            goto out;
        }
    }
out:
    if (r == STORE_OK && ret_version)
        *ret_version = rev;
    free(parts);
    free(writes);
    free(bytes);
    free(ends);
    free(idx);
    return r;
}

static size_t ed_txn_limit(void *impl)
{
    etcd_store *e = impl;

    return etcd_client_max_txn_ops(e->c);
}

/* --- watch -------------------------------------------------------------------------------- */

static int event_cmp(const void *a, const void *b)
{
    const store_event *x = a, *y = b;
    int c;

    if (x->version != y->version)
        return x->version < y->version ? -1 : 1;
    c = strcmp(x->kind, y->kind);
    if (!c)
        c = strcmp(x->mesh, y->mesh);
    return c ? c : strcmp(x->name, y->name);
}

static void watch_reset(etcd_store *e)
{
    etcd_watch_free(e->w);
    e->w = NULL;
    store_events_free(e->pending, e->npending);
    e->pending = NULL;
    e->npending = 0;
    e->quiet = 0;
}

/* Appends the object events of ev to e->pending (the leader key and foreign keys are not objects).
 */
static int take_events(etcd_store *e, etcd_event *ev, size_t n)
{
    store_event *v = realloc(e->pending, (e->npending + n + 1) * sizeof(*v));

    if (!v)
        return STORE_ENOMEM;
    e->pending = v;
    for (size_t i = 0; i < n; i++) {
        etcd_keys_parsed p;
        store_event *s;

        if (etcd_keys_parse(ev[i].kv.key, ev[i].kv.key_len, &p) < 0)
            continue;
        s = &e->pending[e->npending];
        s->kind = strdup(p.kind);
        s->mesh = strdup(p.mesh);
        s->name = strdup(p.name);
        s->op = ev[i].type == ETCD_EVENT_DELETE ? STORE_EVENT_DELETE : STORE_EVENT_PUT;
        s->version = (uint64_t)ev[i].kv.mod_revision;
        e->npending++;
        if (!s->kind || !s->mesh || !s->name)
            return STORE_ENOMEM;
    }
    return STORE_OK;
}

/* Hands out whole revisions from e->pending, at most STORE_WATCH_MAX_EVENTS unless one revision
 * alone holds more; the rest stays for the next call. */
static int hand_out(etcd_store *e, store_event **ret_events, size_t *ret_count)
{
    size_t n = 0;
    store_event *out;

    qsort(e->pending, e->npending, sizeof(*e->pending), event_cmp);
    while (n < e->npending &&
           (n < STORE_WATCH_MAX_EVENTS || e->pending[n].version == e->pending[n - 1].version))
        n++;
    if (n == e->npending) {
        out = e->pending;
        e->pending = NULL;
        e->npending = 0;
    } else {
        out = malloc(n * sizeof(*out));
        if (!out)
            return STORE_ENOMEM;
        memcpy(out, e->pending, n * sizeof(*out));
        memmove(e->pending, e->pending + n, (e->npending - n) * sizeof(*out));
        e->npending -= n;
    }
    e->given = out[n - 1].version;
    *ret_events = out;
    *ret_count = n;
    return STORE_OK;
}

static int ed_watch(void *impl, uint64_t after, int timeout_ms, store_event **ret_events,
                    size_t *ret_count, char *err)
{
    etcd_store *e = impl;
    char cause[MESHCA_ERRBUF], why[160];
    int64_t deadline, compact = 0;
    uint64_t current = 0;
    int r, catch_up = 0;

    if (after >= (uint64_t)INT64_MAX)
        return fail_call(e, STORE_EINVAL, "watch", "revision out of etcd's range", err);
    /* Continue the open stream only from where the caller stands. */
    if (e->w && after != e->given)
        watch_reset(e);
    if (!e->w) {
        r = etcd_watch_new(e->c, ETCD_KEYS_PREFIX, sizeof(ETCD_KEYS_PREFIX) - 1, NULL, 0,
                           (int64_t)after + 1, &e->w, cause);
        if (r < 0)
            return fail_call(e, r, "watch", cause, err);
        e->given = after;
    }
    if (e->npending == 0 && timeout_ms == 0) {
        /* A new stream connects on its first wait: if the store moved on, give it time. */
        r = ed_revision(e, &current, err);
        if (r < 0)
            return r;
        if (current > after && current > e->quiet) {
            timeout_ms = WATCH_CATCH_UP_MS;
            catch_up = 1;
        }
    }
    deadline = now_ms() + timeout_ms;
    while (e->npending == 0) {
        etcd_event *ev = NULL;
        size_t n = 0;
        int64_t left = deadline - now_ms();

        r = etcd_watch_next(e->w, left > 0 ? (long)left : 0, &ev, &n, &compact, cause);
        if (r == ETCD_ECOMPACTED) {
            watch_reset(e);
            (void)snprintf(why, sizeof(why),
                           "changes after revision %" PRIu64
                           " were compacted (etcd keeps them from %" PRId64 "): re-list",
                           after, compact);
            return fail_call(e, STORE_ECOMPACTED, "watch", why, err);
        }
        if (r < 0)
            return fail_call(e, r, "watch", cause, err);
        if (n == 0 && left <= 0)
            break;
        r = take_events(e, ev, n);
        etcd_events_free(ev, n);
        if (r < 0) {
            watch_reset(e);
            return fail_call(e, r, "watch", "out of memory", err);
        }
    }
    if (e->npending == 0) {
        if (catch_up)
            e->quiet = current;
        *ret_events = NULL;
        *ret_count = 0;
        return STORE_OK;
    }
    r = hand_out(e, ret_events, ret_count);
    if (r < 0) {
        watch_reset(e);
        return fail_call(e, r, "watch", "out of memory", err);
    }
    return STORE_OK;
}

/* No stream yet, or events already taken and not handed out: "call store_watch now". */
static size_t ed_watch_pollfds(void *impl, struct pollfd *fds, size_t max, long *ret_timeout_ms)
{
    etcd_store *e = impl;

    if (!e->w || e->npending > 0) {
        *ret_timeout_ms = 0;
        return 0;
    }
    return etcd_watch_pollfds(e->w, fds, max, ret_timeout_ms);
}

/* --- leases ------------------------------------------------------------------------------- */

static int ed_lease_grant(void *impl, int64_t ttl_seconds, store_lease_id *ret_id, char *err)
{
    etcd_store *e = impl;
    char cause[MESHCA_ERRBUF];
    int64_t id = 0;
    int r = etcd_lease_grant(e->c, ttl_seconds, &id, NULL, cause);

    if (r < 0)
        return fail_call(e, r, "lease grant", cause, err);
    *ret_id = id;
    return STORE_OK;
}

static int lease_call(etcd_store *e, store_lease_id id, int revoke, char *err)
{
    char cause[MESHCA_ERRBUF], what[64];
    int r =
        revoke ? etcd_lease_revoke(e->c, id, cause) : etcd_lease_keepalive(e->c, id, NULL, cause);

    if (r == STORE_OK)
        return r;
    (void)snprintf(what, sizeof(what), "lease %lld", (long long)id);
    if (r == ETCD_ENOTFOUND)
        return fail_call(e, STORE_ENOTFOUND, what, "has expired or was revoked", err);
    return fail_call(e, r, what, cause, err);
}

static int ed_lease_keepalive(void *impl, store_lease_id id, char *err)
{
    return lease_call(impl, id, 0, err);
}

static int ed_lease_revoke(void *impl, store_lease_id id, char *err)
{
    return lease_call(impl, id, 1, err);
}

static void ed_close(void *impl)
{
    etcd_store *e = impl;

    if (!e)
        return;
    watch_reset(e);
    etcd_client_free(e->c);
    free(e);
}

static const struct store_ops etcd_ops = {
    .name = "etcd",
    .get = ed_get,
    .list = ed_list,
    .list_keys = ed_list_keys,
    .scan_range = ed_scan_range,
    .txn = ed_txn,
    .revision = ed_revision,
    .watch = ed_watch,
    .watch_pollfds = ed_watch_pollfds,
    .lease_grant = ed_lease_grant,
    .lease_keepalive = ed_lease_keepalive,
    .lease_revoke = ed_lease_revoke,
    .txn_limit = ed_txn_limit,
    .close = ed_close,
};

/* "?max-txn-ops=N" after the endpoints: the only query parameter. */
static int parse_query(const char *q, unsigned *ret_max_ops, char *err)
{
    static const char name[] = "max-txn-ops=";
    unsigned long v;
    char *end;

    if (strncmp(q, name, sizeof(name) - 1) != 0)
        return meshca_fail(err, STORE_EINVAL,
                           "etcd store URL: unknown parameter '%.40s' (only max-txn-ops=N)", q);
    q += sizeof(name) - 1;
    if (*q < '0' || *q > '9')
        return meshca_fail(err, STORE_EINVAL, "etcd store URL: max-txn-ops wants a number");
    v = strtoul(q, &end, 10);
    if (*end || v < 2 || v > MAX_TXN_OPS_LIMIT)
        return meshca_fail(err, STORE_EINVAL,
                           "etcd store URL: max-txn-ops must be 2..%u (the cluster's "
                           "--max-txn-ops, 128 by default)",
                           MAX_TXN_OPS_LIMIT);
    *ret_max_ops = (unsigned)v;
    return STORE_OK;
}

/* "etcd://ENDPOINTS" into buf, cut with "..." when the list is long (messages stay one line). */
static void show_url(char *buf, size_t cap, int tls, const char *endpoints)
{
    const char *scheme = tls ? "etcds://" : "etcd://";
    size_t s = strlen(scheme), n = strlen(endpoints);

    memcpy(buf, scheme, s);
    if (s + n + 1 > cap) {
        n = cap - s - 4;
        memcpy(buf + s, endpoints, n);
        memcpy(buf + s + n, "...", 4);
        return;
    }
    memcpy(buf + s, endpoints, n + 1);
}

int store_etcd_open(const char *rest, int tls, const store_open_options *opts,
                    const struct store_ops **ret_ops, void **ret_impl, char *err)
{
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    const char *q = strchr(rest, '?');
    char endpoints[ETCD_ENDPOINTS_MAX * (ETCD_ENDPOINT_LEN_MAX + 1) + 1];
    unsigned max_ops = ETCD_DEFAULT_MAX_TXN_OPS;
    size_t len = q ? (size_t)(q - rest) : strlen(rest);
    etcd_store *e;
    int r;

    if (len == 0 || len >= sizeof(endpoints))
        return meshca_fail(err, STORE_EINVAL, "etcd store URL: want HOST:PORT[,HOST:PORT...]");
    memcpy(endpoints, rest, len);
    endpoints[len] = '\0';
    if (q) {
        r = parse_query(q + 1, &max_ops, err);
        if (r < 0)
            return r;
    }
    if (opts && opts->etcd_max_txn_ops) {
        if (opts->etcd_max_txn_ops < 2 || opts->etcd_max_txn_ops > MAX_TXN_OPS_LIMIT)
            return meshca_fail(err, STORE_EINVAL, "etcd store: max-txn-ops must be 2..%u",
                               MAX_TXN_OPS_LIMIT);
        max_ops = opts->etcd_max_txn_ops;
    }
    o.endpoints = endpoints;
    o.tls = tls;
    o.max_txn_ops = max_ops;
    if (tls && opts) {
        /* Files for etcds:// only: an etcd:// URL beside MESHCA_ETCD_* in the environment is
         * plain HTTP, as written. */
        o.cacert = opts->etcd_cacert;
        o.cert = opts->etcd_cert;
        o.key = opts->etcd_key;
    }
    e = calloc(1, sizeof(*e));
    if (!e)
        return meshca_fail(err, STORE_ENOMEM, "etcd store: out of memory");
    show_url(e->shown, sizeof(e->shown), tls, endpoints);
    r = etcd_client_new(&o, &e->c, err);
    if (r < 0) {
        free(e);
        return r;
    }
    *ret_ops = &etcd_ops;
    *ret_impl = e;
    return STORE_OK;
}
