/* apply.c - checking resources against the store (S4 gating, CA checks) and storing them all or nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "manifests/encode.h"
#include "reconciler/apply.h"
#include "reconciler/ca_backend.h"
#include "reconciler/lifetime.h"
#include "reconciler/state.h"
#include "reconciler/status_readd.h"
#include "validators/validators.h"

/* Refusals that pass by themselves once the dataplanes catch up (R3 propagation, R4 in use). */
static bool is_waiting_code(const char *code)
{
    return strcmp(code, "switch-not-propagated") == 0 || strcmp(code, "remove-still-in-use") == 0;
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static void free_secret_text(char *text)
{
    if (text) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
}

static void resource_key(const resource *res, store_key *ret)
{
    switch (res->kind) {
    case RESOURCE_MESH:
        *ret = (store_key){STATE_MESHES, res->u.mesh.name.value, res->u.mesh.name.value};
        return;
    case RESOURCE_DATAPLANE:
        *ret = (store_key){STATE_DATAPLANES, res->u.dataplane.mesh.value,
                           res->u.dataplane.name.value};
        return;
    case RESOURCE_SECRET:
        *ret = (store_key){STATE_SECRETS, res->u.secret.mesh.value, res->u.secret.name.value};
        return;
    }
}

/* One resource of the set as the store held it when this apply started, before any check: the
 * write must find it at this version, or someone else changed it meanwhile. */
typedef struct seen {
    char *value;        /* stored text, NULL when absent; may hold a secret (wiped on free) */
    uint64_t version;   /* 0 when absent */
} seen;

static void seen_free(seen *all, size_t n)
{
    for (size_t i = 0; all && i < n; i++)
        free_secret_text(all[i].value);
    free(all);
}

static int read_seen(store *s, const manifest_set *next, seen **ret)
{
    size_t n = manifest_set_count(next);
    seen *all = calloc(n + 1, sizeof(*all));
    if (!all)
        return STORE_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        store_key key;
        size_t len = 0;
        resource_key(manifest_set_get(next, i), &key);
        int rc = store_get(s, &key, &all[i].value, &len, &all[i].version);
        /* A name the store cannot hold is reported by the static checks. */
        if (rc == STORE_ENOTFOUND || rc == STORE_EINVAL)
            continue;
        if (rc < 0) {
            seen_free(all, n);
            return rc;
        }
    }
    *ret = all;
    return 0;
}

/* --- values `get` printed as <redacted> --- */

static bool is_redacted_text(const char *text)
{
    return text && strcmp(text, ENCODE_REDACTED) == 0;
}

static bool is_redacted(const mnode *n)
{
    return n && n->kind == MNODE_SCALAR && is_redacted_text(n->scalar);
}

/* Puts the stored value `old` in place of a redacted one: `get -o yaml` then `apply -f` of the
 * output keeps the key it could not print, as kubectl users expect a round trip to. */
static int keep_stored(mnode *v, const mnode *old, const char *path, diag_list *diags)
{
    if (!old || old->kind != MNODE_SCALAR || !old->scalar || is_redacted(old)) {
        diag_error(diags, "redacted-value", &v->mark, path,
                   "this value was printed as %s by 'meshca get' and the store holds no value "
                   "here to keep; write the material back, or refer to it with 'secret: NAME'",
                   ENCODE_REDACTED);
        return 0;
    }
    char *copy = malloc(old->scalar_len + 1);
    if (!copy)
        return STORE_ENOMEM;
    memcpy(copy, old->scalar, old->scalar_len + 1);
    free(v->scalar);
    v->scalar = copy;
    v->scalar_len = old->scalar_len;
    v->style = old->style;
    return 0;
}

/* Walks a new conf tree beside the stored one; `old` is the node at the same place, or NULL. */
static int unredact_tree(mnode *node, const mnode *old, const char *path, diag_list *diags)
{
    char sub[256];
    int rc = 0;
    if (node->kind == MNODE_MAP) {
        for (size_t i = 0; i < node->npairs && rc == 0; i++) {
            const char *key = node->pairs[i].key->scalar;
            mnode *v = node->pairs[i].value;
            const mnode *ov = old && old->kind == MNODE_MAP ? mnode_get(old, key) : NULL;
            snprintf(sub, sizeof(sub), "%s.%s", path, key);
            rc = encode_is_inline_key(key) && is_redacted(v) ? keep_stored(v, ov, sub, diags)
                                                             : unredact_tree(v, ov, sub, diags);
        }
    } else if (node->kind == MNODE_SEQ) {
        for (size_t i = 0; i < node->nitems && rc == 0; i++) {
            snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
            rc = unredact_tree(node->items[i],
                               old && old->kind == MNODE_SEQ && i < old->nitems ? old->items[i]
                                                                                : NULL,
                               sub, diags);
        }
    }
    return rc;
}

static const secret *find_secret(const manifest_set *set, const char *mesh_name, const char *name)
{
    for (size_t i = 0; set && i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind == RESOURCE_SECRET && str_eq(res->u.secret.mesh.value, mesh_name) &&
            str_eq(res->u.secret.name.value, name))
            return &res->u.secret;
    }
    return NULL;
}

/* Replaces, in `next`, every ENCODE_REDACTED value (an inline datasource of a backend, a
 * Secret's data) by the value stored at the same place: same mesh, same backend name and type,
 * same conf path. Where there is none, "redacted-value". */
static int unredact(manifest_set *next, const manifest_set *current, diag_list *diags)
{
    int rc = 0;
    for (size_t i = 0; i < manifest_set_count(next) && rc == 0; i++) {
        /* The caller's set: apply fills in what `get` could not print. */
        resource *res = (resource *)manifest_set_get(next, i);
        if (res->kind == RESOURCE_SECRET && is_redacted_text(res->u.secret.data.value)) {
            const secret *old = find_secret(current, res->u.secret.mesh.value,
                                            res->u.secret.name.value);
            if (!old || !old->data.value || is_redacted_text(old->data.value)) {
                diag_error(diags, "redacted-value", &res->u.secret.data.mark, "data",
                           "this value was printed as %s by 'meshca get' and the store has no "
                           "Secret '%s' to keep it from; write the data back",
                           ENCODE_REDACTED, res->u.secret.name.value ? res->u.secret.name.value : "");
                continue;
            }
            char *copy = strdup(old->data.value);
            if (!copy)
                return STORE_ENOMEM;
            free(res->u.secret.data.value);
            res->u.secret.data.value = copy;
            continue;
        }
        if (res->kind != RESOURCE_MESH)
            continue;
        mesh *m = &res->u.mesh;
        const mesh *stored = m->name.value ? manifest_set_find_mesh(current, m->name.value) : NULL;
        for (size_t b = 0; b < m->nbackends && rc == 0; b++) {
            mesh_backend *nb = &m->backends[b];
            const mesh_backend *ob = stored && nb->name.value
                                         ? mesh_find_backend(stored, nb->name.value) : NULL;
            char path[64];
            if (!nb->conf)
                continue;
            if (ob && !str_eq(ob->type.value, nb->type.value))
                ob = NULL;   /* material of another type of backend is not "the same place" */
            snprintf(path, sizeof(path), "mtls.backends[%zu].conf", b);
            rc = unredact_tree(nb->conf, ob ? ob->conf : NULL, path, diags);
        }
    }
    return rc;
}

/* --- checks --- */

/* A Dataplane belongs to a Mesh that exists, in the store or in the same apply. */
static void check_dataplane_meshes(const manifest_set *next, const manifest_set *current,
                                   diag_list *diags)
{
    for (size_t i = 0; i < manifest_set_count(next); i++) {
        const resource *res = manifest_set_get(next, i);
        const char *mesh_name = res->u.dataplane.mesh.value;
        if (res->kind != RESOURCE_DATAPLANE || !mesh_name || !*mesh_name)
            continue;   /* a missing mesh field is a static error */
        if (manifest_set_find_mesh(next, mesh_name) || manifest_set_find_mesh(current, mesh_name))
            continue;
        diag_error(diags, "mesh-not-found", &res->u.dataplane.mesh.mark, "mesh",
                   "mesh '%s' does not exist: apply the Mesh first, or in the same apply",
                   mesh_name);
    }
}

/* The first Secret of `mesh_name` in the set that differs from the store (new or changed), or
 * NULL. values[i] is resource i as it would be stored. */
static const secret *changed_secret(const manifest_set *next, const seen *before,
                                    char *const *values, const char *mesh_name)
{
    for (size_t i = 0; i < manifest_set_count(next); i++) {
        const resource *res = manifest_set_get(next, i);
        if (res->kind == RESOURCE_SECRET && str_eq(res->u.secret.mesh.value, mesh_name) &&
            (!before[i].value || strcmp(before[i].value, values[i]) != 0))
            return &res->u.secret;
    }
    return NULL;
}

/* Whether a conf tree reads a Secret of the set that changed (`secret: NAME` in any datasource). */
static bool conf_reads_changed(const mnode *node, const manifest_set *next, const seen *before,
                               char *const *values, const char *mesh_name)
{
    if (!node)
        return false;
    if (node->kind == MNODE_SEQ) {
        for (size_t i = 0; i < node->nitems; i++)
            if (conf_reads_changed(node->items[i], next, before, values, mesh_name))
                return true;
        return false;
    }
    if (node->kind != MNODE_MAP)
        return false;
    for (size_t i = 0; i < node->npairs; i++) {
        const mnode *v = node->pairs[i].value;
        if (strcmp(node->pairs[i].key->scalar, "secret") == 0 && v->kind == MNODE_SCALAR) {
            for (size_t r = 0; r < manifest_set_count(next); r++) {
                const resource *res = manifest_set_get(next, r);
                if (res->kind == RESOURCE_SECRET && str_eq(res->u.secret.mesh.value, mesh_name) &&
                    str_eq(res->u.secret.name.value, v->scalar) &&
                    (!before[r].value || strcmp(before[r].value, values[r]) != 0))
                    return true;
            }
        } else if (conf_reads_changed(v, next, before, values, mesh_name)) {
            return true;
        }
    }
    return false;
}

/* Opens a backend's CA read-only, with the Secrets of `pending` over the store's (NULL: the
 * store's alone, as before this apply). Writes the CA's SHA-1 fingerprint. */
static int open_fingerprint(store *s, const char *mesh_name, const manifest_set *pending,
                            const mesh_backend *b, size_t index, int64_t now, char *ret_fp,
                            size_t size, char *errbuf)
{
    state_secrets secrets = {s, mesh_name, pending};
    ca_context ctx = {
        .mesh = mesh_name, .backend = b, .backend_index = index,
        .secret_lookup = state_secret_lookup, .secret_store = NULL,
        .secret_userdata = &secrets, .now = now,
    };
    ca_backend *ca = NULL;
    int rc = ca_backend_open(&ctx, &ca, errbuf);
    if (rc == 0)
        rc = pki_fingerprint_sha1(ca_backend_cert(ca), ret_fp, size);
    ca_backend_free(ca);
    return rc;
}

/* The backend names next brings in whose CA is the one the mesh's last bundle served under that
 * name (mTLS off and on again, a removal undone before any pass): their statuses still hold
 * (status_readd.h). Into keep[] (MODEL_MAX_BACKENDS + 1 entries, borrowed from next). */
static size_t readd_keep(store *s, const manifest_set *set, const mesh *prev, const mesh *next,
                         const status_set *status, int64_t now, const char **keep)
{
    size_t n = 0;
    for (size_t b = 0; b < next->nbackends && n < MODEL_MAX_BACKENDS; b++) {
        const mesh_backend *nb = &next->backends[b];
        char fp[64] = "", errbuf[PKI_ERRBUF] = "";
        if (!nb->name.value || !status_readd_is_added(prev, next, nb->name.value))
            continue;
        /* Opening a CA may cost a request (vault, cfssl): only for a name some status lists. */
        bool listed = false;
        for (size_t i = 0; i < status->count && !listed; i++)
            listed = str_eq(status->items[i].mesh, next->name.value) &&
                     status_supports(&status->items[i], nb->name.value);
        if (!listed)
            continue;
        if (open_fingerprint(s, next->name.value, set, nb, b, now, fp, sizeof(fp), errbuf) == 0 &&
            status_readd_bundle_serves(s, next->name.value, nb->name.value, fp))
            keep[n++] = nb->name.value;
    }
    return n;
}

/* Everything one mesh's change needs checked. */
typedef struct mesh_check {
    const mesh *prev;                 /* as last applied, NULL: created */
    const mesh *next;
    bool in_set;                      /* the Mesh is in this apply (else a Secret changed) */
    const manifest_set *set;          /* the resources of this apply */
    const seen *before;
    char *const *values;
    const manifest_set *current;      /* the store's resources */
    const status_set *status;
    const apply_options *opts;
    int64_t now;
} mesh_check;

/* Checks the CA backends of a new Mesh: types this build cannot sign with, conf and CA
 * material (provided certificates and keys, expiry against the leaf lifetime), and backends
 * whose CA a Secret of this apply replaces (names into ret_changed for R5). Read-only. A Mesh
 * that is not in the apply has only the backends a changed Secret touches checked. */
static int check_backends(store *s, const mesh_check *mc, diag_list *diags,
                          const char **ret_changed, size_t *ret_nchanged)
{
    const mesh *m = mc->next;
    const char *mesh_name = m->name.value;
    bool secrets_changed = changed_secret(mc->set, mc->before, mc->values, mesh_name) != NULL;
    state_secrets secrets = {s, mesh_name, mc->set};
    int unreachable = 0;   /* an external CA did not answer: exit 2 once all are checked */
    for (size_t b = 0; b < m->nbackends; b++) {
        const mesh_backend *nb = &m->backends[b];
        ca_type_support support = ca_backend_support(nb->type.value);
        if (support == CA_TYPE_UNKNOWN)
            continue;   /* the static rules report it */
        if (support == CA_TYPE_CANNOT_SIGN) {
            char path[64];
            snprintf(path, sizeof(path), "mtls.backends[%zu].type", b);
            if (mc->in_set)
                diag_error(diags, "backend-unsupported", &nb->type.mark, path,
                           "backend '%s' is of type '%s', which this build of meshca cannot "
                           "sign with yet; use a builtin or provided backend",
                           nb->name.value ? nb->name.value : "", nb->type.value);
            continue;
        }
        bool check = mc->in_set, old_ok = false, new_ok = false;
        char old_fp[64] = "", new_fp[64] = "", errbuf[PKI_ERRBUF] = "";
        if (secrets_changed) {
            const mesh_backend *ob = mc->prev && nb->name.value
                                         ? mesh_find_backend(mc->prev, nb->name.value) : NULL;
            old_ok = ob && mesh_backend_same_ca(ob, nb) &&
                     open_fingerprint(s, mesh_name, NULL, ob, b, mc->now, old_fp, sizeof(old_fp),
                                      errbuf) == 0;
            new_ok = open_fingerprint(s, mesh_name, mc->set, nb, b, mc->now, new_fp,
                                      sizeof(new_fp), errbuf) == 0;
            if (old_ok && new_ok && strcmp(old_fp, new_fp) != 0)
                ret_changed[(*ret_nchanged)++] = nb->name.value;
            if ((old_ok && (!new_ok || strcmp(old_fp, new_fp) != 0)) ||
                conf_reads_changed(nb->conf, mc->set, mc->before, mc->values, mesh_name))
                check = true;
        }
        if (!check)
            continue;
        /* A conf the static checks refuse is reported there, at its field: the CA check would
         * say the same again, at the conf. */
        diag_list conf_diags = DIAG_LIST_INIT;
        validate_backend_conf(nb, b, &conf_diags);
        bool conf_refused = diag_has_errors(&conf_diags) || conf_diags.out_of_memory;
        diag_list_free(&conf_diags);
        if (conf_refused)
            continue;
        ca_context ctx = {
            .mesh = mesh_name, .backend = nb, .backend_index = b,
            .secret_lookup = state_secret_lookup, .secret_store = NULL,
            .secret_userdata = &secrets, .now = mc->now, .skip_validation = m->skip_validation,
        };
        size_t errors = diag_count(diags, DIAG_ERROR);
        /* skipValidation (S2): no backend check, so no request to an external CA either. */
        int rc = m->skip_validation ? 0 : ca_backend_check(&ctx, diags);
        if (rc == STORE_ENOMEM)
            return rc;
        if (rc == MESHCA_EUNAVAILABLE)
            unreachable = rc;
        /* Lifetime lint: a builtin root already in the store has a known expiry. */
        int64_t not_after = 0;
        if (mc->in_set && strcmp(nb->type.value, ca_builtin_ops.type) == 0) {
            rc = lifetime_builtin_not_after(&ctx, &not_after);
            if (rc == STORE_ENOMEM)
                return rc;
            if (rc == 0)
                validate_ca_lifetime(m, b, not_after, mc->now, diags);
        }
        /* A builtin CA's Secrets replaced by something unusable: its check reads no Secret. */
        if (old_ok && !new_ok && diag_count(diags, DIAG_ERROR) == errors) {
            char path[64];
            snprintf(path, sizeof(path), "mtls.backends[%zu]", b);
            diag_error(diags, "ca-unusable", &nb->mark, path,
                       "backend '%s' cannot load its CA from the Secrets of this apply: %s",
                       nb->name.value, errbuf);
        }
    }
    return unreachable;
}

/* The stored dataplanes of a mesh: one that never acknowledged anything blocks a switch. */
static const dataplane **dataplanes_of(const manifest_set *current, const char *mesh_name,
                                       size_t *ret_n)
{
    const dataplane **dps = calloc(manifest_set_count(current) + 1, sizeof(*dps));
    size_t n = 0;
    for (size_t d = 0; dps && d < manifest_set_count(current); d++) {
        const resource *c = manifest_set_get(current, d);
        if (c->kind == RESOURCE_DATAPLANE && str_eq(c->u.dataplane.mesh.value, mesh_name))
            dps[n++] = &c->u.dataplane;
    }
    *ret_n = n;
    return dps;
}

/* Runs every check of one mesh's change into `out`. */
static int check_mesh(store *s, const mesh_check *mc, diag_list *out, transition_result *ret)
{
    const char *changed[MODEL_MAX_BACKENDS + 1];
    size_t nchanged = 0, ndps = 0;
    diag_list backend_diags = DIAG_LIST_INIT;
    /* More backends than the limit are a static error: nothing to compare then. */
    int rc = mc->next->nbackends <= MODEL_MAX_BACKENDS
                 ? check_backends(s, mc, &backend_diags, changed, &nchanged) : 0;
    const dataplane **dps = dataplanes_of(mc->current, mc->next->name.value, &ndps);
    if (rc == MESHCA_EUNAVAILABLE) {
        /* A CA that did not answer: its diagnostics are the report, apply exits 2. */
        diag_list_move(out, &backend_diags);
        diag_list_free(&backend_diags);
        free(dps);
        return rc;
    }
    if (rc < 0 || !dps) {
        diag_list_free(&backend_diags);
        free(dps);
        return rc < 0 ? rc : STORE_ENOMEM;
    }
    transition_options topts = {.force = mc->opts->force, .have_status = true,
                                .ca_changed = changed, .nca_changed = nchanged};
    validate_transition(mc->prev, mc->next, mc->status->items, mc->status->count, dps, ndps,
                        &topts, out, ret);
    diag_list_move(out, &backend_diags);
    diag_list_free(&backend_diags);
    free(dps);
    return 0;
}

/* Diagnostics about a stored Mesh that only a Secret of this apply changes are reported at that
 * Secret's data, where the user can act, with the mesh's field named in the message. */
static void move_to_secret(diag_list *to, diag_list *from, const secret *sec, const char *mesh_name)
{
    for (size_t i = 0; i < from->count; i++) {
        const diag *d = &from->items[i];
        diag_add(to, d->severity, d->code, &sec->data.mark, "data",
                 "Secret '%s' is used by mesh '%s' (%s): %s", sec->name.value, mesh_name,
                 d->path, d->message);
    }
    if (from->out_of_memory)
        to->out_of_memory = true;
    diag_list_free(from);
}

/* --- the force log --- */

/* What cross-signing a forced switch will do: "enabled" when the old CA can sign (its key is
 * here and it is valid), else "skipped" (--force-without-cross-signing) or "unavailable", with
 * the reason in `why`. */
static const char *cross_sign_plan(store *s, const manifest_set *set, const mesh *m,
                                   const char *from, bool requested, int64_t now, char *why,
                                   size_t size)
{
    if (!requested) {
        snprintf(why, size, "--force-without-cross-signing");
        return "skipped";
    }
    const mesh_backend *fb = mesh_find_backend(m, from);
    size_t index = fb ? (size_t)(fb - m->backends) : 0;
    state_secrets secrets = {s, m->name.value, set};
    ca_context ctx = {
        .mesh = m->name.value, .backend = fb, .backend_index = index,
        .secret_lookup = state_secret_lookup, .secret_store = NULL,
        .secret_userdata = &secrets, .now = now,
    };
    ca_backend *ca = NULL;
    char errbuf[PKI_ERRBUF] = "";
    ca_info info;
    const char *plan = "unavailable";
    if (!fb || ca_backend_open(&ctx, &ca, errbuf) < 0) {
        snprintf(why, size, "'%s' cannot be opened: %s", from, errbuf);
    } else if (!ca_backend_can_cross_sign(ca)) {
        snprintf(why, size, "the key of '%s' is not local", from);
    } else if (ca_backend_info(ca, &info) < 0) {
        snprintf(why, size, "the certificate of '%s' is unreadable", from);
    } else if (info.not_after <= now || info.not_before > now) {
        char when[32];
        pki_format_time(info.not_after, when, sizeof(when));
        snprintf(why, size, "'%s' is not valid now (it expires at %s)", from, when);
    } else {
        snprintf(why, size, "'%s' re-signed by '%s' until every dataplane trusts it",
                 mesh_enabled_backend(m), from);
        plan = "enabled";
    }
    ca_backend_free(ca);
    return plan;
}

/* The mesh status after a forced step: a force log entry saying which step was forced, what
 * cross-signing does, and which dataplanes the force went past; and the crossSign request the
 * controller acts on. Returns the new status (caller decrefs) or NULL on out of memory. */
static json_t *forced_status(store *s, const manifest_set *set, json_t *status, const mesh *prev,
                             const mesh *next, const transition_result *tr,
                             const apply_options *opts, int64_t now, diag_list *diags)
{
    char when[32], why[PKI_ERRBUF + 128];
    time_t t = (time_t)now;
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    const char *from = prev ? mesh_enabled_backend(prev) : NULL;
    const char *to = mesh_enabled_backend(next);
    json_t *bypassed = json_array(), *removed = json_array();
    json_t *entry = json_pack("{s:s}", "time", when);
    if (!bypassed || !removed || !entry)
        goto fail;
    for (size_t i = 0; i < tr->nbypassed; i++)
        json_array_append_new(bypassed, json_string(tr->bypassed[i]));
    for (size_t i = 0; prev && i < prev->nbackends; i++)
        if (prev->backends[i].name.value && !mesh_find_backend(next, prev->backends[i].name.value))
            json_array_append_new(removed, json_string(prev->backends[i].name.value));

    if (tr->forced_steps & STEP_DISABLE) {
        json_object_set_new(entry, "step", json_string("disable"));
        json_object_set_new(entry, "from", json_string(from));
        json_object_set(entry, "removed", removed);
        json_object_del(status, "crossSign");   /* nothing is signed any more */
    } else if (tr->forced_steps & STEP_SWITCH) {
        const char *plan = cross_sign_plan(s, set, next, from, opts->cross_sign, now, why,
                                           sizeof(why));
        json_object_set_new(entry, "step", json_string("switch"));
        json_object_set_new(entry, "from", json_string(from));
        json_object_set_new(entry, "to", json_string(to));
        json_object_set_new(entry, "crossSigning", json_string(plan));
        json_object_set_new(entry, "crossSigningDetail", json_string(why));
        if (strcmp(plan, "enabled") == 0) {
            json_object_set_new(status, "crossSign", json_pack("{s:s, s:s}", "from", from,
                                                               "to", to));
        } else {
            json_object_del(status, "crossSign");
            if (strcmp(plan, "unavailable") == 0)
                diag_warning(diags, "cross-sign-unavailable", &next->enabled_backend.mark,
                             "mtls.enabledBackend",
                             "forced switch to '%s' without cross-signing: %s; the %zu "
                             "dataplane%s that do not trust '%s' yet will reject its "
                             "certificates", to, why, tr->nbypassed_total,
                             tr->nbypassed_total == 1 ? "" : "s", to);
        }
    } else {
        json_object_set_new(entry, "step", json_string("remove"));
        json_object_set(entry, "removed", removed);
    }
    json_object_set(entry, "bypassed", bypassed);
    json_object_set_new(entry, "bypassedCount", json_integer((json_int_t)tr->nbypassed_total));

    json_t *log = json_object_get(status, "forceLog");
    if (!json_is_array(log)) {
        log = json_array();
        json_object_set_new(status, "forceLog", log);
    }
    if (!log || json_array_append(log, entry) < 0)
        goto fail;
    json_decref(entry);
    json_decref(bypassed);
    json_decref(removed);
    return status;
fail:
    json_decref(entry);
    json_decref(bypassed);
    json_decref(removed);
    return NULL;
}

/* --- one attempt --- */

typedef struct attempt {
    seen *before;
    char **values;            /* resource i as stored */
    size_t n;
    manifest_set *current;
    status_set status;
    transition_result *trs;   /* per result.meshes entry */
    const mesh **prevs;
    char **status_texts;      /* mesh status values to write */
    status_readd *readds;     /* per result.meshes entry: trust in re-added names forgotten */
    store_op *ops;
} attempt;

static void attempt_free(attempt *a)
{
    seen_free(a->before, a->n);
    for (size_t i = 0; a->values && i < a->n; i++)
        free_secret_text(a->values[i]);
    free(a->values);
    manifest_set_free(a->current);
    status_set_free(&a->status);
    free(a->trs);
    free(a->prevs);
    for (size_t i = 0; a->status_texts && i < a->n; i++)
        free(a->status_texts[i]);
    free(a->status_texts);
    for (size_t i = 0; a->readds && i < a->n; i++)
        status_readd_free(&a->readds[i]);
    free(a->readds);
    free(a->ops);
}


/* After a failed compare-and-swap: names each resource of the set that someone else changed
 * since it was read. Returns how many. */
static size_t report_conflicts(store *s, const manifest_set *next, const seen *before,
                               diag_list *diags)
{
    size_t named = 0;
    for (size_t i = 0; i < manifest_set_count(next); i++) {
        const resource *res = manifest_set_get(next, i);
        store_key key;
        char *value = NULL;
        size_t len = 0;
        uint64_t version = 0;
        resource_key(res, &key);
        int rc = store_get(s, &key, &value, &len, &version);
        free_secret_text(value);
        if (rc < 0 && rc != STORE_ENOTFOUND)
            continue;
        if (version == before[i].version)
            continue;
        diag_error(diags, "conflict", &res->mark, "",
                   "%s '%s' was changed by someone else since this apply read it; nothing "
                   "applied, re-run apply", res->kind == RESOURCE_MESH ? "mesh"
                   : res->kind == RESOURCE_DATAPLANE ? "dataplane" : "secret", resource_name(res));
        named++;
    }
    return named;
}

/* One read-check-write. *ret_retry: the write lost a race only on objects this apply does
 * not change (status), so checking again may pass. */
static int apply_once(store *s, manifest_set *next, const apply_options *opts, int64_t now,
                      bool prior_errors, diag_list *diags, apply_result *result, bool *ret_retry)
{
    attempt a = {0};
    a.n = manifest_set_count(next);
    a.status = (status_set)STATUS_SET_INIT;
    size_t nops = 0;
    *ret_retry = false;

    /* First what the write will compare against, then everything the checks read. */
    int rc = read_seen(s, next, &a.before);
    a.current = manifest_set_new();
    if (rc == 0 && !a.current)
        rc = STORE_ENOMEM;
    if (rc == 0)
        rc = state_load_resources(s, NULL, a.current, diags);
    if (rc == 0 && !opts->status)
        rc = state_load_status(s, NULL, &a.status);
    if (rc == 0)
        rc = unredact(next, a.current, diags);
    a.values = calloc(a.n + 1, sizeof(*a.values));
    a.trs = calloc(a.n + 1, sizeof(*a.trs));
    a.prevs = calloc(a.n + 1, sizeof(*a.prevs));
    a.status_texts = calloc(a.n + 1, sizeof(*a.status_texts));
    a.ops = calloc(2 * a.n + 1, sizeof(*a.ops));
    a.readds = calloc(a.n + 1, sizeof(*a.readds));
    result->meshes = calloc(a.n + 1, sizeof(*result->meshes));
    result->changes = calloc(a.n + 1, sizeof(*result->changes));
    if (rc == 0 && (!a.values || !a.trs || !a.prevs || !a.status_texts || !a.ops || !a.readds ||
                    !result->meshes || !result->changes))
        rc = STORE_ENOMEM;
    for (size_t i = 0; rc == 0 && i < a.n; i++) {
        if (!(a.values[i] = state_encode_resource(manifest_set_get(next, i))))
            rc = STORE_ENOMEM;
        if (opts->progress)
            opts->progress(opts->progress_userdata, i + 1, a.n);
    }
    if (rc < 0)
        goto out;
    const status_set *status = opts->status ? opts->status : &a.status;

    validate_set(next, diags);
    check_dataplane_meshes(next, a.current, diags);

    mesh_check mc = {.set = next, .before = a.before, .values = a.values, .current = a.current,
                     .status = status, .opts = opts, .now = now};
    for (size_t i = 0; i < a.n && rc == 0; i++) {
        const resource *res = manifest_set_get(next, i);
        if (res->kind != RESOURCE_MESH || !res->u.mesh.name.value)
            continue;
        const mesh *n = &res->u.mesh;
        diag_list mesh_diags = DIAG_LIST_INIT;
        size_t k = result->nmeshes;
        mc.prev = manifest_set_find_mesh(opts->prev ? opts->prev : a.current, n->name.value);
        mc.next = n;
        mc.in_set = true;
        rc = check_mesh(s, &mc, &mesh_diags, &a.trs[k]);

        apply_mesh_result *mr = &result->meshes[k];
        mr->mesh = n->name.value;
        mr->steps = a.trs[k].steps;
        for (size_t d = 0; d < mesh_diags.count; d++) {
            const diag *dg = &mesh_diags.items[d];
            if (dg->severity != DIAG_ERROR)
                continue;
            if (!mr->refused && !(mr->reason = strdup(dg->message)))
                rc = STORE_ENOMEM;
            mr->refused = true;
        }
        a.prevs[k] = mc.prev;
        result->nmeshes++;
        diag_list_move(diags, &mesh_diags);
        diag_list_free(&mesh_diags);
    }
    /* Stored Meshes whose CA a Secret of this apply changes, though the Mesh is not applied. */
    for (size_t i = 0; i < manifest_set_count(a.current) && rc == 0; i++) {
        const resource *res = manifest_set_get(a.current, i);
        if (res->kind != RESOURCE_MESH || !res->u.mesh.name.value ||
            manifest_set_find_mesh(next, res->u.mesh.name.value))
            continue;
        const secret *sec = changed_secret(next, a.before, a.values, res->u.mesh.name.value);
        if (!sec)
            continue;
        diag_list mesh_diags = DIAG_LIST_INIT;
        transition_result tr;
        mc.prev = mc.next = &res->u.mesh;
        mc.in_set = false;
        rc = check_mesh(s, &mc, &mesh_diags, &tr);
        move_to_secret(diags, &mesh_diags, sec, res->u.mesh.name.value);
    }
    /* A check that could not allocate is unfinished: nothing is stored on its word. */
    if (rc == 0 && diags->out_of_memory)
        rc = STORE_ENOMEM;
    if (rc < 0)
        goto out;

    result->refused = prior_errors || diag_has_errors(diags);
    /* Waiting only when every error is one the dataplanes will clear by catching up. */
    result->waiting_only = result->refused && !prior_errors;
    for (size_t d = 0; d < diags->count; d++)
        if (diags->items[d].severity == DIAG_ERROR && !is_waiting_code(diags->items[d].code))
            result->waiting_only = false;
    for (size_t m = 0; m < result->nmeshes; m++)
        result->meshes[m].waiting_only = result->meshes[m].refused && result->waiting_only;
    if (result->refused)
        goto out;

    /* A backend name added (again) is trusted by no dataplane yet: forget what statuses say of
     * it, first in the transaction (status_readd.h). */
    size_t nreadd = 0;
    for (size_t m = 0; m < result->nmeshes && !opts->dry_run; m++) {
        const mesh *n = manifest_set_find_mesh(next, result->meshes[m].mesh);
        const char *keep[MODEL_MAX_BACKENDS + 1];
        size_t nkeep = readd_keep(s, next, a.prevs[m], n, status, now, keep);
        if ((rc = status_readd_plan(s, a.prevs[m], n, status, keep, nkeep, &a.readds[m])) < 0)
            goto out;
        nreadd += a.readds[m].n;
    }
    if (nreadd > 0) {
        store_op *ops = calloc(2 * a.n + 1 + nreadd, sizeof(*ops));
        if (!ops) {
            rc = STORE_ENOMEM;
            goto out;
        }
        free(a.ops);
        a.ops = ops;
        for (size_t m = 0; m < result->nmeshes; m++)
            for (size_t k = 0; k < a.readds[m].n; k++)
                a.ops[nops++] = a.readds[m].ops[k];
    }

    for (size_t i = 0; i < a.n; i++) {
        const resource *res = manifest_set_get(next, i);
        bool unchanged = a.before[i].value && strcmp(a.before[i].value, a.values[i]) == 0;
        result->changes[result->nchanges++] =
            (apply_change){res, !a.before[i].value ? "created" : unchanged ? "unchanged"
                                                                            : "configured"};
        if (unchanged)
            continue;
        store_key key;
        resource_key(res, &key);
        a.ops[nops++] = (store_op){STORE_OP_PUT, key, a.values[i], strlen(a.values[i]),
                                   a.before[i].version};
    }
    /* A forced step is recorded in the same transaction as the change it forced. */
    for (size_t m = 0; m < result->nmeshes && !opts->dry_run; m++) {
        if (!a.trs[m].forced)
            continue;
        const mesh *n = manifest_set_find_mesh(next, result->meshes[m].mesh);
        json_t *status_obj = NULL;
        uint64_t version = 0;
        if ((rc = state_get_mesh_status(s, n->name.value, &status_obj, &version)) < 0)
            goto out;
        json_t *updated = forced_status(s, next, status_obj, a.prevs[m], n, &a.trs[m], opts, now,
                                        diags);
        a.status_texts[m] = updated ? json_dumps(updated, JSON_COMPACT | JSON_PRESERVE_ORDER)
                                    : NULL;
        json_decref(status_obj);
        if (!a.status_texts[m]) {
            rc = STORE_ENOMEM;
            goto out;
        }
        a.ops[nops++] = (store_op){STORE_OP_PUT, {STATE_MESHSTATUS, n->name.value, n->name.value},
                                   a.status_texts[m], strlen(a.status_texts[m]), version};
    }
    if (!opts->dry_run && nops > 0) {
        rc = store_txn_at(s, "apply.commit", a.ops, nops);
        if (rc == STORE_ECONFLICT && report_conflicts(s, next, a.before, diags) == 0)
            *ret_retry = true;
    }
out:
    attempt_free(&a);
    return rc;
}

int apply_set(store *s, manifest_set *next, const apply_options *opts, diag_list *diags,
              apply_result *ret)
{
    int64_t now = opts->now ? opts->now : (int64_t)time(NULL);
    /* Problems the caller found already (a document that did not load) refuse the set too. */
    bool prior_errors = diag_has_errors(diags) || diags->out_of_memory;
    int rc = 0;
    for (int round = 1; round <= APPLY_MAX_ATTEMPTS; round++) {
        apply_result result = {0};
        diag_list these = DIAG_LIST_INIT;
        bool retry = false;
        rc = apply_once(s, next, opts, now, prior_errors, &these, &result, &retry);
        if (retry && round < APPLY_MAX_ATTEMPTS) {
            diag_list_free(&these);
            apply_result_free(&result);
            continue;
        }
        if (retry)
            diag_error(&these, "conflict", NULL, "",
                       "the dataplane or mesh status kept changing while this apply ran; "
                       "nothing applied, re-run apply");
        diag_list_move(diags, &these);
        diag_list_free(&these);
        if (rc < 0) {
            apply_result_free(&result);
            return rc;
        }
        *ret = result;
        return 0;
    }
    return rc;
}

void apply_result_free(apply_result *result)
{
    if (!result)
        return;
    for (size_t i = 0; i < result->nmeshes; i++)
        free(result->meshes[i].reason);
    free(result->meshes);
    free(result->changes);
    memset(result, 0, sizeof(*result));
}

char *apply_describe_steps(unsigned steps)
{
    static const unsigned order[] = {STEP_CREATE, STEP_ENABLE, STEP_ADD, STEP_CHANGE,
                                     STEP_SWITCH, STEP_REMOVE, STEP_DISABLE};
    char buf[256] = "";
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        if (!(steps & order[i]))
            continue;
        size_t used = strlen(buf);
        snprintf(buf + used, sizeof(buf) - used, "%s%s", used ? "+" : "",
                 transition_step_name((transition_step)order[i]));
    }
    return strdup(buf[0] ? buf : "none");
}
