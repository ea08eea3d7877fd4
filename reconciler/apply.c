/* apply.c - checking resources against the store (S4 gating, CA checks) and storing them all or nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "reconciler/apply.h"
#include "reconciler/ca_backend.h"
#include "reconciler/state.h"
#include "validators/validators.h"

/* Refusals that pass by themselves once the dataplanes catch up (R3 propagation, R4 in use). */
static bool is_waiting_code(const char *code)
{
    return strcmp(code, "switch-not-propagated") == 0 || strcmp(code, "remove-still-in-use") == 0;
}

/* Checks every backend of a new Mesh: conf and CA material (provided certificates and keys,
 * expiry against the leaf lifetime). Read-only: nothing is generated or stored. */
static void check_backends(store *s, const manifest_set *next, const mesh *m, int64_t now,
                           diag_list *diags)
{
    state_secrets secrets = {s, m->name.value, next};
    for (size_t b = 0; b < m->nbackends; b++) {
        if (!m->backends[b].type.value || !ca_backend_for_type(m->backends[b].type.value))
            continue;   /* unknown types are already reported by the static rules */
        ca_context ctx = {
            .mesh = m->name.value, .backend = &m->backends[b], .backend_index = b,
            .secret_lookup = state_secret_lookup, .secret_store = NULL,
            .secret_userdata = &secrets, .now = now,
        };
        ca_backend_check(&ctx, diags);
    }
}

/* Records a forced step in the mesh status: the force log, and what to cross-sign. */
static int record_force(store *s, const mesh *prev, const mesh *next, bool cross_sign,
                        int64_t now)
{
    json_t *status = NULL;
    uint64_t version = 0;
    int rc = state_get_mesh_status(s, next->name.value, &status, &version);
    if (rc < 0)
        return rc;
    char when[32];
    time_t t = (time_t)now;
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    json_t *log = json_object_get(status, "forceLog");
    if (!json_is_array(log)) {
        log = json_array();
        json_object_set_new(status, "forceLog", log);
    }
    const char *from = prev ? mesh_enabled_backend(prev) : NULL;
    const char *to = mesh_enabled_backend(next);
    json_array_append_new(log, json_pack("{s:s, s:s?, s:s?, s:b}", "time", when, "from", from,
                                         "to", to, "crossSigning", cross_sign));
    if (cross_sign && from && to && strcmp(from, to) != 0)
        json_object_set_new(status, "crossSign", json_pack("{s:s, s:s}", "from", from, "to", to));
    else if (!cross_sign)
        json_object_del(status, "crossSign");
    rc = state_put_mesh_status(s, next->name.value, status, version);
    json_decref(status);
    return rc;
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

static void free_secret_text(char *text)
{
    if (text) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
}

/* Stores every changed resource in one transaction, with compare-and-swap on the version read. */
static int store_all(store *s, const manifest_set *next, bool dry_run, apply_result *result)
{
    size_t n = manifest_set_count(next);
    store_op *ops = calloc(n + 1, sizeof(*ops));
    char **values = calloc(n + 1, sizeof(*values));
    size_t nops = 0;
    int rc = 0;
    result->changes = calloc(n + 1, sizeof(*result->changes));
    if (!ops || !values || !result->changes)
        abort();
    for (size_t i = 0; i < n && rc == 0; i++) {
        const resource *res = manifest_set_get(next, i);
        store_key key;
        char *old = NULL;
        size_t old_len = 0;
        uint64_t version = 0;
        resource_key(res, &key);
        values[i] = state_encode_resource(res);
        int got = store_get(s, &key, &old, &old_len, &version);
        const char *what = got == STORE_ENOTFOUND ? "created"
                           : got == 0 && strcmp(old, values[i]) == 0 ? "unchanged" : "configured";
        if (got < 0 && got != STORE_ENOTFOUND)
            rc = got;
        free_secret_text(old);
        result->changes[result->nchanges++] = (apply_change){res, what};
        if (strcmp(what, "unchanged") != 0)
            ops[nops++] = (store_op){STORE_OP_PUT, key, values[i], strlen(values[i]),
                                     got == STORE_ENOTFOUND ? 0 : version};
    }
    if (rc == 0 && !dry_run && nops > 0)
        rc = store_txn(s, ops, nops);
    for (size_t i = 0; i < n; i++)
        free_secret_text(values[i]);
    free(values);
    free(ops);
    return rc;
}

int apply_set(store *s, const manifest_set *next, const apply_options *opts, diag_list *diags,
              apply_result *ret)
{
    apply_result result = {0};
    manifest_set *current = manifest_set_new();
    status_set status = STATUS_SET_INIT;
    int64_t now = opts->now ? opts->now : (int64_t)time(NULL);
    size_t nmeshes = 0;
    int rc = state_load_resources(s, NULL, current, diags);
    if (rc == 0)
        rc = state_load_status(s, NULL, &status);
    if (rc < 0)
        goto out;

    validate_set(next, diags);
    result.meshes = calloc(manifest_set_count(next) + 1, sizeof(*result.meshes));
    const mesh **prevs = calloc(manifest_set_count(next) + 1, sizeof(*prevs));
    const mesh **nexts = calloc(manifest_set_count(next) + 1, sizeof(*nexts));
    bool *forced = calloc(manifest_set_count(next) + 1, sizeof(*forced));
    if (!result.meshes || !prevs || !nexts || !forced)
        abort();
    transition_options topts = {.force = opts->force, .have_status = true};
    for (size_t i = 0; i < manifest_set_count(next); i++) {
        const resource *res = manifest_set_get(next, i);
        if (res->kind != RESOURCE_MESH || !res->u.mesh.name.value)
            continue;
        const mesh *n = &res->u.mesh;
        const mesh *p = manifest_set_find_mesh(current, n->name.value);
        diag_list mesh_diags = DIAG_LIST_INIT;
        transition_result tr;
        /* The mesh's dataplanes as stored: one never acknowledged blocks a switch. */
        const dataplane **dps = calloc(manifest_set_count(current) + 1, sizeof(*dps));
        size_t ndps = 0;
        if (!dps)
            abort();
        for (size_t d = 0; d < manifest_set_count(current); d++) {
            const resource *c = manifest_set_get(current, d);
            if (c->kind == RESOURCE_DATAPLANE && c->u.dataplane.mesh.value &&
                strcmp(c->u.dataplane.mesh.value, n->name.value) == 0)
                dps[ndps++] = &c->u.dataplane;
        }
        validate_transition(p, n, status.items, status.count, dps, ndps, &topts, &mesh_diags, &tr);
        free(dps);
        check_backends(s, next, n, now, &mesh_diags);

        apply_mesh_result *mr = &result.meshes[nmeshes];
        mr->mesh = n->name.value;
        mr->steps = tr.steps;
        mr->waiting_only = true;
        for (size_t d = 0; d < mesh_diags.count; d++) {
            const diag *dg = &mesh_diags.items[d];
            if (dg->severity != DIAG_ERROR)
                continue;
            if (!mr->refused)
                mr->reason = strdup(dg->message);
            mr->refused = true;
            if (!is_waiting_code(dg->code))
                mr->waiting_only = false;
        }
        if (!mr->refused)
            mr->waiting_only = false;
        prevs[nmeshes] = p;
        nexts[nmeshes] = n;
        forced[nmeshes] = tr.forced;
        nmeshes++;
        diag_list_move(diags, &mesh_diags);
        diag_list_free(&mesh_diags);
    }
    result.nmeshes = nmeshes;

    result.refused = diag_has_errors(diags);
    /* Waiting only when every error is one the dataplanes will clear by catching up. */
    result.waiting_only = result.refused;
    for (size_t d = 0; d < diags->count; d++)
        if (diags->items[d].severity == DIAG_ERROR && !is_waiting_code(diags->items[d].code))
            result.waiting_only = false;
    if (!result.refused) {
        rc = store_all(s, next, opts->dry_run, &result);
        for (size_t m = 0; rc == 0 && m < nmeshes && !opts->dry_run; m++)
            if (forced[m])
                rc = record_force(s, prevs[m], nexts[m], opts->cross_sign, now);
    }
    free(prevs);
    free(nexts);
    free(forced);
out:
    manifest_set_free(current);
    status_set_free(&status);
    if (rc < 0) {
        apply_result_free(&result);
        return rc;
    }
    *ret = result;
    return 0;
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
