/* cmd_validate.c - `meshca validate`: static checks and, with --from, the S4 rotation rules, offline;
 * with --store, every check of `apply --dry-run` against the store. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include "manifests/manifest.h"
#include "manifests/status.h"
#include "reconciler/apply.h"
#include "reconciler/ca_offline.h"
#include "validators/validators.h"


const char cmd_validate_usage[] =
    "Usage: meshca validate -f PATH... [--from PATH...] [--status FILE] [--store URL]\n"
    "                       [--force] [-o text|json|github]\n"
    "\n"
    "Checks every Mesh, Dataplane and Secret in PATH (files, directories of *.yaml/*.yml,\n"
    "or - for standard input) and reports every problem with file:line:column and field path.\n"
    "With --from, also checks each Mesh's change from the manifests in --from (the state as\n"
    "last applied) against the CA rotation rules: add a backend, switch enabledBackend, remove\n"
    "the old backend, one step at a time. With --status (a snapshot of 'meshca inspect\n"
    "dataplanes -o json'), also checks that every dataplane has caught up before a switch or a\n"
    "removal; without it those checks are reported as unknown. With --store (or the global\n"
    "'meshca --store URL validate'), every check 'apply --dry-run' makes: each Mesh's change\n"
    "from the store's Mesh (or from --from), gated on the store's dataplane status (or\n"
    "--status), and the CA backends. Changes nothing.\n"
    "\n"
    "Flags:\n"
    "  -f, --filename PATH   manifests to check (repeatable)\n"
    "      --from PATH       manifests as last applied (repeatable)\n"
    "      --status FILE     dataplane status JSON (S7 format: an array, or {\"items\": [...]})\n"
    "      --store URL       check against this store, as 'apply --dry-run' does\n"
    "      --force           check as 'apply --force' would: let propagation gating through\n"
    "  -o, --output FORMAT   text (default), json or github (GitHub Actions annotations)\n"
    "  -h, --help            show this help\n"
    "\n"
    "Exit codes: 0 valid; 1 invalid or refused; 2 usage error, unreadable file or store.\n";

typedef struct validate_args {
    const char *files[CLI_MAX_PATHS];
    size_t nfiles;
    const char *from[CLI_MAX_PATHS];
    size_t nfrom;
    const char *status_file;
    const char *store_url;
    int force;
    output_format format;
} validate_args;

static int parse_args(int argc, char **argv, validate_args *args)
{
    enum { OPT_FROM = 256, OPT_STATUS, OPT_FORCE, OPT_STORE };
    static const struct option options[] = {
        {"filename", required_argument, NULL, 'f'}, {"from", required_argument, NULL, OPT_FROM},
        {"status", required_argument, NULL, OPT_STATUS}, {"force", no_argument, NULL, OPT_FORCE},
        {"store", required_argument, NULL, OPT_STORE},
        {"output", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:o:h", options, NULL)) != -1) {
        switch (c) {
        case 'f':
        case OPT_FROM: {
            if ((c == 'f' ? cli_add_path(args->files, &args->nfiles, optarg)
                          : cli_add_path(args->from, &args->nfrom, optarg)) < 0)
                return -1;
            break;
        }
        case OPT_STATUS:
            args->status_file = optarg;
            break;
        case OPT_FORCE:
            args->force = 1;
            break;
        case OPT_STORE:
            args->store_url = optarg;
            break;
        case 'o':
            if (output_parse_format(optarg, 1u << OUTPUT_TEXT | 1u << OUTPUT_JSON |
                                    1u << OUTPUT_GITHUB, &args->format) < 0)
                return -1;
            break;
        case 'h':
            fputs(cmd_validate_usage, stdout);
            exit(EXIT_OK);
        default:
            cli_flag_error(c, argc, argv);
            return -1;
        }
    }
    return cli_require_paths(argc, argv, args->nfiles, "validate", "validate");
}

/* Applies the S4 rules to every Mesh of `next`, against its namesake in `prev`. */
static void check_transitions(const manifest_set *prev, const manifest_set *next,
                              const status_set *status, int force, diag_list *diags)
{
    transition_options opts = TRANSITION_OPTIONS_INIT;
    opts.force = force;
    opts.have_status = status != NULL;
    opts.status_snapshot = status != NULL;   /* a --status FILE: a snapshot, maybe of another store */

    for (size_t i = 0; i < manifest_set_count(next); i++) {
        const resource *res = manifest_set_get(next, i);
        if (res->kind != RESOURCE_MESH || !res->u.mesh.name.value)
            continue;
        const mesh *n = &res->u.mesh;
        const mesh *p = manifest_set_find_mesh(prev, n->name.value);
        size_t ndps = 0;
        transition_result result;

        /* Dataplanes named in the new manifests are the mesh's; status adds the live ones. */
        const dataplane **dps = cli_dataplanes_of(next, n->name.value, &ndps);
        if (!dps) {
            diags->out_of_memory = true;   /* the transition is left unchecked: exit 2 */
            return;
        }
        validate_transition(p, n, status ? status->items : NULL, status ? status->count : 0,
                            dps, ndps, &opts, diags, &result);
        free(dps);
    }
}

/* --store: exactly the checks of `apply --dry-run` (one function, apply_set), with --from and
 * --status standing in for the store's Meshes and status when given. Returns 0, 1 when an
 * external CA did not answer (in diags), or -1 when the store could not be used (reported). */
static int check_against_store(const validate_args *args, manifest_set *next,
                               const manifest_set *prev, const status_set *status,
                               diag_list *diags)
{
    store *s = cli_open_store_to_read(args->store_url);
    if (!s)
        return -1;
    apply_options opts = APPLY_OPTIONS_INIT;
    apply_result result = {0};
    opts.dry_run = true;
    opts.force = args->force;
    opts.prev = args->nfrom > 0 ? prev : NULL;
    opts.status = args->status_file ? status : NULL;
    int rc = apply_set(s, next, &opts, diags, &result);
    apply_result_free(&result);
    store_close(s);
    if (rc == MESHCA_EUNAVAILABLE && diag_has_errors(diags))
        return 1;   /* an external CA did not answer: its diagnostics say which (exit 2) */
    if (rc < 0 && rc != STORE_ECONFLICT) {
        cli_error("cannot use the store: %s", store_strerror(rc));
        return -1;
    }
    return 0;
}

static void print_summary(const manifest_set *set, const diag_list *diags)
{
    size_t counts[3] = {0, 0, 0};
    for (size_t i = 0; i < manifest_set_count(set); i++)
        counts[manifest_set_get(set, i)->kind]++;
    size_t errors = diag_count(diags, DIAG_ERROR), warnings = diag_count(diags, DIAG_WARNING);
    size_t n = manifest_set_count(set);
    printf("%s: %zu resource%s (%zu Mesh, %zu Dataplane, %zu Secret), %zu error%s, %zu warning%s\n",
           errors ? "invalid" : "valid", n, n == 1 ? "" : "s", counts[RESOURCE_MESH],
           counts[RESOURCE_DATAPLANE], counts[RESOURCE_SECRET], errors, errors == 1 ? "" : "s",
           warnings, warnings == 1 ? "" : "s");
}

int cmd_validate(int argc, char **argv)
{
    validate_args args = {0};
    diag_list diags = DIAG_LIST_INIT;
    status_set status = STATUS_SET_INIT;
    manifest_set *next = NULL, *prev = NULL;
    int unreadable = 0, exit_code, ca_unreachable = 0;

    if (parse_args(argc, argv, &args) < 0)
        return EXIT_TROUBLE;
    if (!args.store_url)
        args.store_url = cli_store_flag;

    next = manifest_set_new();
    prev = manifest_set_new();
    if (!next || !prev) {
        cli_error("out of memory");
        exit_code = EXIT_TROUBLE;
        goto out;
    }
    if (cli_load_paths(next, args.files, args.nfiles, &diags) < 0)
        unreadable = 1;
    if (cli_load_paths(prev, args.from, args.nfrom, &diags) < 0)
        unreadable = 1;
    if (args.status_file) {
        int rc = status_load_file(args.status_file, &status, &diags);
        if (rc == -2)
            unreadable = 1;
    }

    if (args.store_url && !unreadable) {
        /* apply_set runs the static checks and the CA checks too */
        int rc = check_against_store(&args, next, prev, &status, &diags);
        if (rc < 0) {
            exit_code = EXIT_TROUBLE;
            goto out;
        }
        ca_unreachable = rc > 0;
    } else {
        validate_set(next, &diags);
        /* CA material in the manifest (builtin conf, inline certs and keys): apply's own checks. */
        for (size_t i = 0; i < manifest_set_count(next); i++)
            if (manifest_set_get(next, i)->kind == RESOURCE_MESH)
                ca_check_offline(&manifest_set_get(next, i)->u.mesh, time(NULL), &diags);
        if (args.nfrom > 0 && !unreadable)
            check_transitions(prev, next, args.status_file ? &status : NULL, args.force, &diags);
        else if (args.status_file && args.nfrom == 0)
            diag_warning(&diags, "status-unused", NULL, NULL,
                         "--status is only used with --from (the state the change starts from)");
    }

    diag_list_sort(&diags);
    /* A check that ran out of memory is unfinished: never "ok". */
    int ok = !unreadable && !diag_has_errors(&diags) && !diags.out_of_memory;
    output_diagnostics(stdout, args.format, &diags, ok);
    /* -o github and -o json print nothing else when all is fine: a CI job whose -f names the
     * wrong directory would pass having checked nothing. Standard error, so the formats stay
     * as they are; the exit code too (an empty change is not invalid). */
    if (ok && manifest_set_count(next) == 0)
        fprintf(stderr, "meshca: warning: no Mesh, Dataplane or Secret in the -f paths (a "
                        "directory is read for *.yaml and *.yml): nothing was checked\n");
    if (args.format == OUTPUT_TEXT && cli_verbosity >= 0)
        print_summary(next, &diags);
    cli_detail("%zu path%s read, %zu resource%s checked%s%s", args.nfiles, args.nfiles == 1 ? "" : "s",
               manifest_set_count(next), manifest_set_count(next) == 1 ? "" : "s",
               args.nfrom ? ", transitions from --from" : "",
               args.store_url ? ", against the store" : "");
    exit_code = unreadable || ca_unreachable ? EXIT_TROUBLE : ok ? EXIT_OK : EXIT_INVALID;
    if (cli_diagnostics_out_of_memory(&diags))
        exit_code = EXIT_TROUBLE;
out:
    manifest_set_free(next);
    manifest_set_free(prev);
    status_set_free(&status);
    diag_list_free(&diags);
    return exit_code;
}
