/* cmd_apply.c - `meshca apply`: validate against the store (S4, full gating) and store all or nothing. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include "manifests/manifest.h"
#include "reconciler/apply.h"


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
    "A value printed as <redacted> by 'meshca get' keeps the stored value. Everything is stored\n"
    "in one transaction, compare-and-swap on what was read before checking: when someone else\n"
    "changed a resource meanwhile, nothing is stored and apply says which (re-run it).\n"
    "\n"
    "Exit codes: 0 applied; 1 invalid, refused or changed meanwhile (nothing stored), or no\n"
    "            resource in the -f paths;\n"
    "            2 usage, file or store error.\n";

typedef struct apply_args {
    const char *files[CLI_MAX_PATHS];
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
            if (cli_add_path(args->files, &args->nfiles, optarg) < 0)
                return -1;
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
        default:
            cli_flag_error(c, argc, argv);
            return -1;
        }
    }
    return cli_require_paths(argc, argv, args->nfiles, "apply", "apply");
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

int cmd_apply(int argc, char **argv)
{
    apply_args args = {0};
    diag_list diags = DIAG_LIST_INIT;
    apply_result result = {0};
    manifest_set *next = manifest_set_new();
    store *s = NULL;
    int exit_code = EXIT_TROUBLE, unreadable = 0;

    if (parse_args(argc, argv, &args) < 0)
        goto out;
    /* The files first: a file that does not parse must not create a store (the first apply in
     * a directory with a typo would leave an empty .meshca/ behind). */
    if (cli_load_paths(next, args.files, args.nfiles, &diags) < 0)
        unreadable = 1;
    if (unreadable) {
        output_diagnostics(args.format == OUTPUT_JSON ? stdout : stderr, args.format, &diags, 0);
        cli_diagnostics_out_of_memory(&diags);
        goto out;
    }
    if (manifest_set_count(next) == 0 && !diag_has_errors(&diags)) {
        /* A wrong directory or an empty file: "applied" in silence, exit 0, would hide it.
         * (A file refused as a whole, too large or an alias bomb, has its own diagnostic.) */
        cli_error("nothing to apply: no Mesh, Dataplane or Secret in %s%s (a directory is read "
                  "for *.yaml and *.yml)",
                  args.files[0], args.nfiles > 1 ? " and the other -f paths" : "");
        exit_code = EXIT_INVALID;
        goto out;
    }
    /* Input already refused (it will not be stored) is checked against the store read-only:
     * no store is created for it. */
    bool refused_input = diag_has_errors(&diags);
    if (!(s = args.dry_run ? cli_open_store_to_read(NULL)
              : refused_input ? cli_open_store_to_check() : cli_open_store()))
        goto out;
    apply_options opts = APPLY_OPTIONS_INIT;
    opts.dry_run = args.dry_run;
    opts.force = args.force;
    opts.cross_sign = !args.no_cross_sign;
    /* Thousands of resources take a while: a progress line when someone watches a terminal. */
    cli_progress progress;
    cli_progress_start(&progress, args.dry_run ? "checking" : "applying", manifest_set_count(next));
    opts.progress = cli_progress_callback;
    opts.progress_userdata = &progress;
    int rc = apply_set(s, next, &opts, &diags, &result);
    cli_progress_end(&progress);
    if (rc == STORE_ECONFLICT) {
        /* Someone else changed what this apply read: refused like any check, exit 1. */
        diag_list_sort(&diags);
        output_diagnostics(args.format == OUTPUT_JSON ? stdout : stderr, args.format, &diags, 0);
        exit_code = EXIT_INVALID;
        goto out;
    }
    if (cli_diagnostics_out_of_memory(&diags))
        goto out;
    if (rc == MESHCA_EUNAVAILABLE && diag_has_errors(&diags)) {
        /* An external CA did not answer the backend checks: its diagnostics say which. */
        diag_list_sort(&diags);
        output_diagnostics(args.format == OUTPUT_JSON ? stdout : stderr, args.format, &diags, 0);
        goto out;
    }
    if (rc < 0) {
        cli_error("cannot use the store: %s", store_errmsg(s)[0] ? store_errmsg(s) : store_strerror(rc));
        goto out;
    }
    diag_list_sort(&diags);
    output_diagnostics(args.format == OUTPUT_JSON ? stdout : stderr, args.format, &diags,
                       !result.refused);
    if (result.refused) {
        if (args.format == OUTPUT_TEXT)
            fprintf(stderr, "nothing applied: %zu error%s\n", diag_count(&diags, DIAG_ERROR),
                    diag_count(&diags, DIAG_ERROR) == 1 ? "" : "s");
        exit_code = EXIT_INVALID;
        goto out;
    }
    size_t created = 0, configured = 0;
    for (size_t i = 0; i < result.nchanges; i++) {
        char label[600];
        const char *what = result.changes[i].what;
        created += strcmp(what, "created") == 0;
        configured += strcmp(what, "configured") == 0;
        if (args.format == OUTPUT_TEXT)
            cli_info("%s %s%s\n", resource_label(result.changes[i].res, label, sizeof(label)), what,
                     args.dry_run ? " (dry run)" : "");
    }
    /* Not the store URL: one may carry credentials. */
    cli_detail("%zu resource%s checked against the store: %zu created, %zu configured, "
               "%zu unchanged%s, %zu warning%s",
               result.nchanges, result.nchanges == 1 ? "" : "s", created, configured,
               result.nchanges - created - configured,
               args.dry_run ? " (dry run: nothing stored)" : "", diag_count(&diags, DIAG_WARNING),
               diag_count(&diags, DIAG_WARNING) == 1 ? "" : "s");
    exit_code = EXIT_OK;
out:
    apply_result_free(&result);
    manifest_set_free(next);
    diag_list_free(&diags);
    store_close(s);
    return exit_code;
}
