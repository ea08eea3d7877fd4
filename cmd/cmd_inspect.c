/* cmd_inspect.c - `meshca inspect meshes|dataplanes`: what each CA and each proxy has, from the store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include "reconciler/lifetime.h"
#include "reconciler/mesh_ca.h"
#include "reconciler/state.h"

const char cmd_inspect_usage[] =
    "Usage: meshca inspect meshes|dataplanes|leader [-m MESH] [-o text|json|yaml]\n"
    "\n"
    "meshes: per mesh, each backend's CA subject and expiry, how many dataplanes trust it\n"
    "(have it in the bundle they loaded) and hold its certificates, and any pending change\n"
    "with its reason.\n"
    "dataplanes: per dataplane, what its agent acknowledged: CERT BACKEND (issuer of the\n"
    "loaded certificate), SUPPORTED (CAs in the loaded bundle), EXPIRES, REGENERATIONS and\n"
    "ACKED (acknowledged/issued generation). -o json prints the status format that\n"
    "'meshca validate --status' reads; -o yaml the same as YAML.\n"
    "leader: which 'meshca run' replica leads (runs the passes): its identity (HOST:PID) and\n"
    "API URL, or that none does.\n"
    "\n"
    "Flags:\n"
    "  -m, --mesh MESH       only this mesh\n"
    "  -o, --output FORMAT   text (default), json or yaml\n";

/* The S7 object of a dataplane: its acknowledged status, with the generation issued. */
static json_t *dataplane_json(store *s, const dataplane *dp, const dataplane_status *st)
{
    dataplane_status merged = {0};
    if (st)
        dataplane_status_copy(&merged, st);
    else {
        merged.mesh = strdup(dp->mesh.value);
        merged.name = strdup(dp->name.value);
    }
    identity id;
    if (identity_get(s, dp->mesh.value, dp->name.value, &id, NULL) == 0) {
        merged.generation = id.generation;
        identity_clear(&id);
    }
    char *text = status_to_json(&merged);
    dataplane_status_clear(&merged);
    json_error_t err;
    json_t *obj = text ? json_loads(text, 0, &err) : NULL;
    free(text);
    return obj;
}

static void print_dataplane_row(const json_t *obj)
{
    json_t *mtls = json_object_get(obj, "mtls");
    json_t *supported = json_object_get(mtls, "supportedBackends");
    char sup[256] = "";
    size_t i;
    json_t *v;
    json_array_foreach(supported, i, v) {
        size_t used = strlen(sup);
        snprintf(sup + used, sizeof(sup) - used, "%s%s", i ? "," : "", json_string_value(v));
    }
    const char *issued = json_string_value(json_object_get(mtls, "issuedBackend"));
    const char *expires = json_string_value(json_object_get(mtls, "certificateExpirationTime"));
    char acked[64];
    snprintf(acked, sizeof(acked), "%lld/%lld",
             (long long)json_integer_value(json_object_get(mtls, "acknowledgedGeneration")),
             (long long)json_integer_value(json_object_get(mtls, "generation")));
    printf("%-12s %-16s %-13s %-20s %-21s %-13lld %s\n",
           json_string_value(json_object_get(obj, "mesh")),
           json_string_value(json_object_get(obj, "name")), issued && *issued ? issued : "-",
           sup[0] ? sup : "-", expires && *expires ? expires : "-",
           (long long)json_integer_value(json_object_get(mtls, "certificateRegenerations")), acked);
}

static int inspect_dataplanes(store *s, const manifest_set *set, const status_set *status,
                              output_format format)
{
    json_t *items = json_array();
    for (size_t i = 0; i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind != RESOURCE_DATAPLANE)
            continue;
        const dataplane *dp = &res->u.dataplane;
        json_t *obj = dataplane_json(s, dp, cli_find_status(status, dp->mesh.value,
                                                            dp->name.value));
        if (obj)
            json_array_append_new(items, obj);
    }
    if (format == OUTPUT_JSON || format == OUTPUT_YAML) {
        cli_print_structured(items, format);
    } else {
        printf("%-12s %-16s %-13s %-20s %-21s %-13s %s\n", "MESH", "NAME", "CERT BACKEND",
               "SUPPORTED", "EXPIRES", "REGENERATIONS", "ACKED");
        size_t i;
        json_t *obj;
        json_array_foreach(items, i, obj)
            print_dataplane_row(obj);
    }
    json_decref(items);
    return EXIT_OK;
}

/* Per backend: how many dataplanes trust it and how many hold its certificates. */
static json_t *backend_json(store *s, const mesh *m, const mesh_ca *mc,
                            const status_set *status, size_t ndataplanes)
{
    size_t trusting = 0, holding = 0;
    const char *name = mc->backend->name.value;
    for (size_t i = 0; i < status->count; i++) {
        const dataplane_status *st = &status->items[i];
        if (!st->mesh || strcmp(st->mesh, m->name.value) != 0)
            continue;
        trusting += status_supports(st, name);
        holding += st->issued_backend && strcmp(st->issued_backend, name) == 0;
    }
    const char *enabled = mesh_enabled_backend(m);
    char expires[32] = "";
    bool have_expiry = mc->ca != NULL;
    int64_t not_after = mc->not_after, now = time(NULL);
    bool expired = have_expiry && not_after <= now;
    /* A CA that refuses to open as expired: a builtin root's date is still in its secret. */
    if (mc->code == PKI_EEXPIRED) {
        expired = true;
        state_secrets secrets = {s, m->name.value, NULL};
        ca_context ctx = {.mesh = m->name.value, .backend = mc->backend,
                          .secret_lookup = state_secret_lookup, .secret_userdata = &secrets,
                          .now = now};
        if (mc->backend->type.value && strcmp(mc->backend->type.value, "builtin") == 0 &&
            lifetime_builtin_not_after(&ctx, &not_after) == 0) {
            have_expiry = true;
            expired = not_after <= now;   /* the same code says "not yet valid" too */
        }
    }
    if (have_expiry)
        pki_format_time(not_after, expires, sizeof(expires));
    return json_pack("{s:s, s:s, s:b, s:s?, s:s?, s:b, s:s?, s:I, s:I, s:I, s:s?}",
                     "name", name, "type", mc->backend->type.value,
                     "enabled", enabled && strcmp(enabled, name) == 0,
                     "caSubject", mc->ca ? mc->subject : NULL,
                     "caExpirationTime", have_expiry ? expires : NULL,
                     "caExpired", expired,
                     "caFingerprint", mc->ca ? mc->fingerprint : NULL,
                     "dataplanes", (json_int_t)ndataplanes, "trustedBy", (json_int_t)trusting,
                     "certificatesHeld", (json_int_t)holding,
                     "error", mc->ca ? NULL : mc->error);
}

static int inspect_meshes(store *s, const manifest_set *set, const status_set *status,
                          output_format format)
{
    json_t *items = json_array();
    for (size_t i = 0; i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind != RESOURCE_MESH)
            continue;
        const mesh *m = &res->u.mesh;
        size_t ndps = 0;
        const dataplane **dps = cli_dataplanes_of(set, m->name.value, &ndps);
        if (!dps) {
            cli_error("out of memory");
            json_decref(items);
            return EXIT_TROUBLE;
        }
        free(dps);
        mesh_ca *cas = NULL;
        json_t *backends = json_array();
        if (mesh_cas_open(s, m, time(NULL), &cas) == 0) {
            for (size_t b = 0; b < m->nbackends; b++)
                json_array_append_new(backends, backend_json(s, m, &cas[b], status, ndps));
            mesh_cas_free(cas, m->nbackends);
        }
        json_t *mstatus = NULL;
        if (state_get_mesh_status(s, m->name.value, &mstatus, NULL) < 0)
            mstatus = json_object();
        const char *enabled = mesh_enabled_backend(m);
        json_array_append_new(items, json_pack("{s:s, s:s?, s:o, s:O}", "name", m->name.value,
                                               "enabledBackend", enabled, "backends", backends,
                                               "status", mstatus));
        json_decref(mstatus);
    }
    if (format == OUTPUT_JSON || format == OUTPUT_YAML) {
        cli_print_structured(items, format);
        json_decref(items);
        return EXIT_OK;
    }
    size_t i;
    json_t *mj;
    json_array_foreach(items, i, mj) {
        const char *enabled = json_string_value(json_object_get(mj, "enabledBackend"));
        printf("%sMESH %s (mTLS: %s)\n", i ? "\n" : "",
               json_string_value(json_object_get(mj, "name")), enabled ? enabled : "off");
        printf("  %-10s %-9s %-7s %-34s %-21s %-10s %s\n", "BACKEND", "TYPE", "ENABLED",
               "CA SUBJECT", "CA EXPIRES", "TRUSTED BY", "CERTS HELD");
        size_t b;
        json_t *bj;
        json_array_foreach(json_object_get(mj, "backends"), b, bj) {
            char trusted[32];
            const char *subject = json_string_value(json_object_get(bj, "caSubject"));
            const char *expires = json_string_value(json_object_get(bj, "caExpirationTime"));
            if (json_is_true(json_object_get(bj, "caExpired")))
                expires = "EXPIRED";
            snprintf(trusted, sizeof(trusted), "%lld/%lld",
                     (long long)json_integer_value(json_object_get(bj, "trustedBy")),
                     (long long)json_integer_value(json_object_get(bj, "dataplanes")));
            printf("  %-10s %-9s %-7s %-34.34s %-21s %-10s %lld\n",
                   json_string_value(json_object_get(bj, "name")),
                   json_string_value(json_object_get(bj, "type")),
                   json_is_true(json_object_get(bj, "enabled")) ? "yes" : "no",
                   subject ? subject : json_string_value(json_object_get(bj, "error")),
                   expires ? expires : "-", trusted,
                   (long long)json_integer_value(json_object_get(bj, "certificatesHeld")));
        }
        /* A CA that cannot be used: its whole message (the table's column cuts it). */
        json_array_foreach(json_object_get(mj, "backends"), b, bj) {
            const char *error = json_string_value(json_object_get(bj, "error"));
            if (error && !json_string_value(json_object_get(bj, "caSubject")))
                printf("  CA ERROR %s: %s\n", json_string_value(json_object_get(bj, "name")), error);
        }
        /* The controller's last word on a failing backend (mesh status, BackendUnavailable). */
        size_t c;
        json_t *cj;
        json_array_foreach(json_object_get(json_object_get(mj, "status"), "conditions"), c, cj)
            printf("  UNAVAILABLE %s: %s\n", json_string_value(json_object_get(cj, "backend")),
                   json_string_value(json_object_get(cj, "reason")));
        json_t *pending = json_object_get(json_object_get(mj, "status"), "pending");
        if (pending)
            printf("  PENDING: %s\n  REASON:  %s\n",
                   json_string_value(json_object_get(pending, "change")),
                   json_string_value(json_object_get(pending, "reason")));
        json_t *refused = json_object_get(json_object_get(mj, "status"), "refused");
        if (refused)
            printf("  REFUSED: %s (from --manifests)\n  REASON:  %s\n",
                   json_string_value(json_object_get(refused, "change")),
                   json_string_value(json_object_get(refused, "reason")));
        json_t *prune = json_object_get(json_object_get(mj, "status"), "pruneRefused");
        if (prune)
            printf("  PRUNE REFUSED: %s (from --manifests)\n  REASON:  %s\n",
                   json_string_value(json_object_get(prune, "change")),
                   json_string_value(json_object_get(prune, "reason")));
        json_t *cross = json_object_get(json_object_get(mj, "status"), "crossSign");
        if (cross)
            printf("  CROSS-SIGNING: %s by %s until every dataplane trusts %s\n",
                   json_string_value(json_object_get(cross, "to")),
                   json_string_value(json_object_get(cross, "from")),
                   json_string_value(json_object_get(cross, "to")));
    }
    json_decref(items);
    return EXIT_OK;
}

int cmd_inspect(int argc, char **argv)
{
    const char *what = NULL, *mesh_name = NULL;
    output_format format = OUTPUT_TEXT;
    if (cli_parse_listing(argc, argv, cmd_inspect_usage,
                          1u << OUTPUT_TEXT | 1u << OUTPUT_JSON | 1u << OUTPUT_YAML, &what,
                          &mesh_name, &format, NULL, NULL) < 0)
        return EXIT_TROUBLE;
    int meshes = strcmp(what, "meshes") == 0 || strcmp(what, "mesh") == 0;
    if (strcmp(what, "leader") == 0) {
        store *ls = cli_open_store_to_read(NULL);
        if (!ls)
            return EXIT_TROUBLE;
        int code = cli_inspect_leader(ls, format);
        store_close(ls);
        return code;
    }
    if (!meshes && strcmp(what, "dataplanes") != 0 && strcmp(what, "dataplane") != 0) {
        cli_error("cannot inspect '%s': expected meshes, dataplanes or leader", what);
        return EXIT_TROUBLE;
    }
    store *s = cli_open_store_to_read(NULL);
    if (!s)
        return EXIT_TROUBLE;
    manifest_set *set = manifest_set_new();
    status_set status = STATUS_SET_INIT;
    diag_list diags = DIAG_LIST_INIT;
    int rc = state_load_resources(s, mesh_name, set, &diags);
    if (rc == 0)
        rc = state_load_status(s, mesh_name, &status);
    int exit_code = EXIT_TROUBLE;
    if (rc < 0)
        cli_error("cannot read the store: %s", store_errmsg(s)[0] ? store_errmsg(s) : store_strerror(rc));
    else
        cli_note_unknown_mesh(set, mesh_name);
    if (rc == 0)
        exit_code = meshes ? inspect_meshes(s, set, &status, format)
                           : inspect_dataplanes(s, set, &status, format);
    if (cli_diagnostics_out_of_memory(&diags))
        exit_code = EXIT_TROUBLE;   /* the listing may lack resources */
    manifest_set_free(set);
    status_set_free(&status);
    diag_list_free(&diags);
    store_close(s);
    return exit_code;
}
