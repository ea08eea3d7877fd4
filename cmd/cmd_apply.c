/* cmd_apply.c - `meshca apply`: validate against the store (S4, full gating) and store all or nothing. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include "manifests/manifest.h"
#include "reconciler/ca_backend.h"
#include "reconciler/state.h"
#include "validators/validators.h"

#define MAX_PATHS 256

const char cmd_apply_usage[] =
    "Usage: meshca apply -f PATH... [--dry-run] [--force] [--force-without-cross-signing]\n"
    "                    [-o text|json]\n"
    "\n"
    "Checks every resource in PATH, each Mesh's change against the Mesh in the store (the CA\n"
    "rotation rules, gated on what every dataplane has loaded) and each CA backend (provided\n"
    "certificates, keys, expiry), then stores everything, or nothing when anything is refused.\n"
    "\n"
    "Flags:\n"
    "  -f, --filename PATH              manifests to apply (repeatable; - reads stdin)\n"
    "      --dry-run                    run every check, store nothing\n"
    "      --force                      let a switch or removal through before the dataplanes\n"
    "                                   caught up (recorded in the mesh status); a forced\n"
    "                                   switch cross-signs the new CA with the old one\n"
    "      --force-without-cross-signing  as --force, without cross-signing: dataplanes that\n"
    "                                   do not trust the new CA yet will fail their connections\n"
    "  -o, --output FORMAT              text (default) or json\n"
    "\n"
    "Exit codes: 0 applied; 1 invalid or refused (nothing stored); 2 usage, file or store error.\n";

typedef struct apply_args {
    const char *files[MAX_PATHS];
    size_t nfiles;
    int dry_run, force, no_cross_sign;
    output_format format;
} apply_args;

static int parse_args(int argc, char **argv, apply_args *args)
{
    enum { OPT_DRY = 256, OPT_FORCE, OPT_NO_XSIGN };
    static const struct option options[] = {
        {"filename", required_argument, NULL, 'f'}, {"dry-run", no_argument, NULL, OPT_DRY},
        {"force", no_argument, NULL, OPT_FORCE},
        {"force-without-cross-signing", no_argument, NULL, OPT_NO_XSIGN},
        {"output", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:o:h", options, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (args->nfiles >= MAX_PATHS) {
                cli_error("too many paths (at most %d)", MAX_PATHS);
                return -1;
            }
            args->files[args->nfiles++] = optarg;
            break;
        case OPT_DRY:
            args->dry_run = 1;
            break;
        case OPT_FORCE:
            args->force = 1;
            break;
        case OPT_NO_XSIGN:
            args->force = 1;
            args->no_cross_sign = 1;
            break;
        case 'o':
            if (output_parse_format(optarg, 1u << OUTPUT_TEXT | 1u << OUTPUT_JSON,
                                    &args->format) < 0)
                return -1;
            break;
        case 'h':
            fputs(cmd_apply_usage, stdout);
            exit(EXIT_OK);
        case ':':
            cli_error("flag '%s' needs a value; run 'meshca help apply'", argv[optind - 1]);
            return -1;
        default:
            cli_error("unknown flag '%s'; run 'meshca help apply'", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        cli_error("unexpected argument '%s' (use -f PATH)", argv[optind]);
        return -1;
    }
    if (args->nfiles == 0) {
        cli_error("nothing to apply: give -f PATH; run 'meshca help apply'");
        return -1;
    }
    return 0;
}

/* Checks every backend of a new Mesh: conf and CA material (provided certificates and keys,
 * expiry against the leaf lifetime). Read-only: nothing is generated or stored. */
static void check_backends(store *s, const manifest_set *next, const mesh *m, diag_list *diags)
{
    state_secrets secrets = {s, m->name.value, next};
    for (size_t b = 0; b < m->nbackends; b++) {
        if (!m->backends[b].type.value || !ca_backend_for_type(m->backends[b].type.value))
            continue;   /* unknown types are already reported by the static rules */
        ca_context ctx = {
            .mesh = m->name.value, .backend = &m->backends[b], .backend_index = b,
            .secret_lookup = state_secret_lookup, .secret_store = NULL,
            .secret_userdata = &secrets, .now = time(NULL),
        };
        ca_backend_check(&ctx, diags);
    }
}

/* Records a forced step in the mesh status: the force log, and what to cross-sign. */
static int record_force(store *s, const mesh *prev, const mesh *next, int cross_sign)
{
    json_t *status = NULL;
    uint64_t version = 0;
    int rc = state_get_mesh_status(s, next->name.value, &status, &version);
    if (rc < 0)
        return rc;
    char when[32];
    time_t now = time(NULL);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
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

/* What storing `res` would do: "created", "configured" or "unchanged", with its CAS version. */
static const char *plan_put(store *s, const resource *res, char **ret_value, uint64_t *ret_version,
                            store_key *ret_key)
{
    const char *kind = state_kind_of(res->kind);
    const char *name = res->kind == RESOURCE_MESH ? res->u.mesh.name.value
                       : res->kind == RESOURCE_DATAPLANE ? res->u.dataplane.name.value
                                                         : res->u.secret.name.value;
    const char *mesh_name = res->kind == RESOURCE_MESH ? name
                            : res->kind == RESOURCE_DATAPLANE ? res->u.dataplane.mesh.value
                                                              : res->u.secret.mesh.value;
    char *value = state_encode_resource(res);
    char *old = NULL;
    size_t old_len = 0;
    uint64_t version = 0;
    *ret_key = (store_key){kind, mesh_name, name};
    int rc = store_get(s, ret_key, &old, &old_len, &version);
    const char *what = rc == STORE_ENOTFOUND ? "created"
                       : rc == 0 && strcmp(old, value) == 0 ? "unchanged" : "configured";
    if (old) {
        OPENSSL_cleanse(old, old_len);
        free(old);
    }
    *ret_value = value;
    *ret_version = rc == STORE_ENOTFOUND ? 0 : version;
    return what;
}

static const char *resource_label(const resource *res, char *buf, size_t size)
{
    if (res->kind == RESOURCE_MESH)
        snprintf(buf, size, "mesh/%s", res->u.mesh.name.value);
    else if (res->kind == RESOURCE_DATAPLANE)
        snprintf(buf, size, "dataplane/%s/%s", res->u.dataplane.mesh.value,
                 res->u.dataplane.name.value);
    else
        snprintf(buf, size, "secret/%s/%s", res->u.secret.mesh.value, res->u.secret.name.value);
    return buf;
}

/* Stores every resource in one transaction with compare-and-swap on what was read. */
static int store_all(store *s, const manifest_set *next, int dry_run, output_format format)
{
    size_t n = manifest_set_count(next);
    store_op *ops = calloc(n + 1, sizeof(*ops));
    char **values = calloc(n + 1, sizeof(*values));
    const char **whats = calloc(n + 1, sizeof(*whats));
    size_t nops = 0;
    int rc = 0;
    if (!ops || !values || !whats)
        abort();
    for (size_t i = 0; i < n; i++) {
        uint64_t version;
        store_key key;
        whats[i] = plan_put(s, manifest_set_get(next, i), &values[i], &version, &key);
        if (strcmp(whats[i], "unchanged") != 0)
            ops[nops++] = (store_op){STORE_OP_PUT, key, values[i], strlen(values[i]), version};
    }
    if (!dry_run && nops > 0)
        rc = store_txn(s, ops, nops);
    if (rc == 0 && format == OUTPUT_TEXT) {
        for (size_t i = 0; i < n; i++) {
            char label[600];
            printf("%s %s%s\n", resource_label(manifest_set_get(next, i), label, sizeof(label)),
                   whats[i], dry_run ? " (dry run)" : "");
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (values[i]) {
            OPENSSL_cleanse(values[i], strlen(values[i]));
            free(values[i]);
        }
    }
    free(values);
    free(whats);
    free(ops);
    return rc;
}

int cmd_apply(int argc, char **argv)
{
    apply_args args = {0};
    diag_list diags = DIAG_LIST_INIT;
    status_set status = STATUS_SET_INIT;
    manifest_set *next = NULL, *current = NULL;
    store *s = NULL;
    int exit_code = EXIT_TROUBLE, unreadable = 0;

    if (parse_args(argc, argv, &args) < 0)
        return EXIT_TROUBLE;
    if (!(s = cli_open_store()))
        return EXIT_TROUBLE;
    next = manifest_set_new();
    current = manifest_set_new();
    for (size_t i = 0; i < args.nfiles; i++)
        if (manifest_load_path(next, args.files[i], &diags) != MANIFEST_OK)
            unreadable = 1;
    int rc = state_load_resources(s, NULL, current, &diags);
    if (rc == 0)
        rc = state_load_status(s, NULL, &status);
    if (rc < 0) {
        cli_error("cannot read the store: %s", store_strerror(rc));
        goto out;
    }

    validate_set(next, &diags);
    transition_options opts = {.force = args.force, .have_status = true};
    /* Each mesh is checked against the store; pending force records wait for success. */
    const mesh *forced_prev[64];
    const mesh *forced_next[64];
    size_t nforced = 0;
    for (size_t i = 0; i < manifest_set_count(next); i++) {
        const resource *res = manifest_set_get(next, i);
        if (res->kind != RESOURCE_MESH || !res->u.mesh.name.value)
            continue;
        const mesh *n = &res->u.mesh;
        const mesh *p = manifest_set_find_mesh(current, n->name.value);
        size_t ndps = 0;
        /* The mesh's dataplanes: those stored and those in this apply. */
        const dataplane **stored = cli_dataplanes_of(current, n->name.value, &ndps);
        transition_result result;
        validate_transition(p, n, status.items, status.count, stored, ndps, &opts, &diags,
                            &result);
        free(stored);
        check_backends(s, next, n, &diags);
        if (result.forced && nforced < 64) {
            forced_prev[nforced] = p;
            forced_next[nforced++] = n;
        }
    }

    diag_list_sort(&diags);
    int ok = !unreadable && !diag_has_errors(&diags);
    output_diagnostics(args.format == OUTPUT_JSON ? stdout : stderr, args.format, &diags, ok);
    if (!ok) {
        exit_code = unreadable ? EXIT_TROUBLE : EXIT_INVALID;
        if (args.format == OUTPUT_TEXT)
            fprintf(stderr, "nothing applied: %zu error%s\n", diag_count(&diags, DIAG_ERROR),
                    diag_count(&diags, DIAG_ERROR) == 1 ? "" : "s");
        goto out;
    }
    rc = store_all(s, next, args.dry_run, args.format);
    if (rc == STORE_ECONFLICT) {
        cli_error("the store changed while applying; nothing applied, run apply again");
        goto out;
    }
    if (rc < 0) {
        cli_error("cannot write the store: %s", store_strerror(rc));
        goto out;
    }
    for (size_t i = 0; i < nforced && !args.dry_run; i++)
        if (record_force(s, forced_prev[i], forced_next[i], !args.no_cross_sign) < 0)
            cli_error("applied, but the force record of mesh '%s' could not be written",
                      forced_next[i]->name.value);
    exit_code = EXIT_OK;
out:
    manifest_set_free(next);
    manifest_set_free(current);
    status_set_free(&status);
    diag_list_free(&diags);
    store_close(s);
    return exit_code;
}
