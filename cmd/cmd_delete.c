/* cmd_delete.c - `meshca delete`: remove Meshes, Dataplanes and Secrets by name or by file, refused while needed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include "manifests/manifest.h"
#include "reconciler/delete.h"


const char cmd_delete_usage[] =
    "Usage: meshca delete mesh|dataplane|secret NAME... [-m MESH] [--dry-run] [--ignore-not-found]\n"
    "       meshca delete -f PATH... [--dry-run] [--ignore-not-found]\n"
    "\n"
    "Deletes the named resources, or those the manifests in PATH describe, with what belongs to\n"
    "them, all in one transaction or nothing:\n"
    "  a Dataplane takes its issued identity, its status and its tokens along;\n"
    "  a Mesh takes its mesh status and its Secrets (the builtin CA keys and applied Secrets).\n"
    "Refused while something else needs a resource: a Mesh that still has Dataplanes (delete\n"
    "them first), a Secret that a backend of its Mesh reads or that holds a builtin CA (remove\n"
    "the backend first). A resource that does not exist is an error unless --ignore-not-found.\n"
    "\n"
    "Flags:\n"
    "  -f, --filename PATH       manifests naming what to delete (repeatable; - reads stdin)\n"
    "  -m, --mesh MESH           the mesh of the named dataplanes or secrets (default: the one\n"
    "                            mesh that has the name)\n"
    "      --dry-run             run every check, delete nothing\n"
    "      --ignore-not-found    a resource that does not exist is not an error\n"
    "\n"
    "Exit codes: 0 deleted; 1 not found, refused or changed meanwhile (nothing deleted);\n"
    "            2 usage, file or store error.\n";

typedef struct delete_args {
    const char *files[CLI_MAX_PATHS];
    size_t nfiles;
    const char *mesh;
    int dry_run, ignore_not_found;
} delete_args;

static int parse_args(int argc, char **argv, delete_args *args)
{
    enum { OPT_DRY = 256, OPT_IGNORE };
    static const struct option options[] = {
        {"filename", required_argument, NULL, 'f'}, {"mesh", required_argument, NULL, 'm'},
        {"dry-run", no_argument, NULL, OPT_DRY},
        {"ignore-not-found", no_argument, NULL, OPT_IGNORE},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:m:h", options, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (cli_add_path(args->files, &args->nfiles, optarg) < 0)
                return -1;
            break;
        case 'm':
            args->mesh = optarg;
            break;
        case OPT_DRY:
            args->dry_run = 1;
            break;
        case OPT_IGNORE:
            args->ignore_not_found = 1;
            break;
        case 'h':
            fputs(cmd_delete_usage, stdout);
            exit(EXIT_OK);
        default:
            cli_flag_error(c, argc, argv);
            return -1;
        }
    }
    if (args->nfiles > 0 && optind < argc) {
        cli_error("give either -f PATH or KIND NAME..., not both");
        return -1;
    }
    if (args->nfiles > 0 && args->mesh) {
        cli_error("-m MESH names the mesh of KIND NAME...; with -f the manifests say it");
        return -1;
    }
    if (args->nfiles == 0 && argc - optind < 2) {
        cli_error("%s", optind >= argc ? "say what to delete: KIND NAME... or -f PATH"
                                       : "say which: a NAME after the kind");
        fputs(cmd_delete_usage, stderr);
        return -1;
    }
    return 0;
}

/* "mesh", "meshes", ... to a kind; -1 when none. */
static int parse_kind(const char *word)
{
    if (strcmp(word, "mesh") == 0 || strcmp(word, "meshes") == 0)
        return RESOURCE_MESH;
    if (strcmp(word, "dataplane") == 0 || strcmp(word, "dataplanes") == 0)
        return RESOURCE_DATAPLANE;
    if (strcmp(word, "secret") == 0 || strcmp(word, "secrets") == 0)
        return RESOURCE_SECRET;
    return -1;
}

static delete_target target_of(const resource *res)
{
    switch (res->kind) {
    case RESOURCE_MESH:
        return (delete_target){RESOURCE_MESH, NULL, res->u.mesh.name.value, res->mark};
    case RESOURCE_DATAPLANE:
        return (delete_target){RESOURCE_DATAPLANE, res->u.dataplane.mesh.value,
                               res->u.dataplane.name.value, res->mark};
    case RESOURCE_SECRET:
        break;
    }
    return (delete_target){RESOURCE_SECRET, res->u.secret.mesh.value, res->u.secret.name.value,
                           res->mark};
}

int cmd_delete(int argc, char **argv)
{
    delete_args args = {0};
    diag_list diags = DIAG_LIST_INIT;
    delete_result result = {0};
    manifest_set *set = manifest_set_new();
    delete_target *targets = NULL;
    size_t ntargets = 0;
    store *s = NULL;
    int exit_code = EXIT_TROUBLE;

    if (!set) {
        cli_error("out of memory");
        goto out;
    }
    if (parse_args(argc, argv, &args) < 0)
        goto out;
    if (args.nfiles > 0) {
        int unreadable = cli_load_paths(set, args.files, args.nfiles, &diags) < 0;
        if (diags.out_of_memory)
            goto out;   /* reported at out: nothing is deleted on a partial load */
        if (unreadable || diag_has_errors(&diags)) {
            diag_list_sort(&diags);
            output_diagnostics(stderr, OUTPUT_TEXT, &diags, 0);
            if (!unreadable)
                fputs("nothing deleted: the manifests have errors\n", stderr);
            exit_code = unreadable ? EXIT_TROUBLE : EXIT_INVALID;
            goto out;
        }
        ntargets = manifest_set_count(set);
        targets = calloc(ntargets + 1, sizeof(*targets));
        for (size_t i = 0; targets && i < ntargets; i++)
            targets[i] = target_of(manifest_set_get(set, i));
    } else {
        int kind = parse_kind(argv[optind]);
        if (kind < 0) {
            cli_error("cannot delete '%s': expected mesh, dataplane or secret", argv[optind]);
            goto out;
        }
        if (kind == RESOURCE_MESH && args.mesh) {
            cli_error("-m MESH is for dataplanes and secrets; a mesh is named by itself");
            goto out;
        }
        ntargets = (size_t)(argc - optind - 1);
        targets = calloc(ntargets + 1, sizeof(*targets));
        for (size_t i = 0; targets && i < ntargets; i++)
            targets[i] = (delete_target){(resource_kind)kind, args.mesh, argv[optind + 1 + i],
                                         SOURCE_MARK_NONE};
    }
    if (!targets) {
        cli_error("out of memory");
        goto out;
    }
    if (!(s = args.dry_run ? cli_open_store_to_read(NULL) : cli_open_store()))
        goto out;
    delete_options opts = DELETE_OPTIONS_INIT;
    opts.dry_run = args.dry_run;
    opts.ignore_not_found = args.ignore_not_found;
    int rc = delete_resources(s, targets, ntargets, &opts, &diags, &result);
    diag_list_sort(&diags);
    if (rc == STORE_ECONFLICT) {
        output_diagnostics(stderr, OUTPUT_TEXT, &diags, 0);
        exit_code = EXIT_INVALID;
        goto out;
    }
    if (rc < 0) {
        cli_error("cannot use the store: %s (%s)", store_strerror(rc), store_errmsg(s));
        goto out;
    }
    output_diagnostics(stderr, OUTPUT_TEXT, &diags, !result.refused);
    if (result.refused) {
        size_t n = diag_count(&diags, DIAG_ERROR);
        fprintf(stderr, "nothing deleted: %zu error%s\n", n, n == 1 ? "" : "s");
        exit_code = EXIT_INVALID;
        goto out;
    }
    for (size_t i = 0; i < result.nremoved; i++) {
        const delete_removed *d = &result.removed[i];
        if (d->kind == RESOURCE_MESH)
            cli_info("mesh/%s deleted", d->name);
        else
            cli_info("%s/%s/%s deleted", delete_kind_word(d->kind), d->mesh, d->name);
        if (d->owner)
            cli_info(" (with %s)", d->owner);
        cli_info("%s\n", args.dry_run ? " (dry run)" : "");
    }
    exit_code = EXIT_OK;
out:
    if (cli_diagnostics_out_of_memory(&diags))
        exit_code = EXIT_TROUBLE;
    delete_result_free(&result);
    free(targets);
    manifest_set_free(set);
    diag_list_free(&diags);
    store_close(s);
    return exit_code;
}
