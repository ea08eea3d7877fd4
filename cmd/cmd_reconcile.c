/* cmd_reconcile.c - `meshca reconcile --once`: one reconcile pass over every mesh, printing what it issued. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include "reconciler/pki.h"
#include "reconciler/reconcile.h"
#include "reconciler/sign_pool.h"
#include "reconciler/store.h"

const char cmd_reconcile_usage[] =
    "Usage: meshca reconcile --once [--now TIME] [--sign-workers N]\n"
    "\n"
    "Runs one reconcile pass over every mesh of the store: generates builtin CA roots that do\n"
    "not exist yet, builds each mesh's trust bundle (the CA certificates of all its backends,\n"
    "enabled one first), and issues each dataplane a certificate when it has none, when it was\n"
    "issued by another backend or CA, when its tags or keyType changed, when a shortened\n"
    "dpCert.rotation.expiration leaves it outliving the new lifetime, or when it is past its\n"
    "renewal point (70-85 % of its lifetime). Prints one line per change, then a summary.\n"
    "A pass with nothing to do changes nothing. When standard error is a terminal, a progress\n"
    "line counts the dataplanes handled (not with --quiet, nor in a pipe, log or CI).\n"
    "\n"
    "Flags:\n"
    "      --once        one pass, then exit (the only mode; 'meshca run' loops)\n"
    "      --now TIME    the clock, for tests: RFC 3339 UTC (2026-11-24T17:00:00Z) or epoch seconds\n"
    "      --sign-workers N  threads signing leaves of builtin and provided CAs (default: online CPUs)\n"
    "  -h, --help        show this help\n"
    "\n"
    "Exit codes: 0 done; 1 a mesh's CA could not be used (expired, unreadable; other meshes were\n"
    "still reconciled); 2 usage error, or the store could not be read or written (read-only,\n"
    "vanished: the error names the object and the cause).\n";

void cli_print_reconcile(FILE *out, const struct reconcile_report *rep, const diag_list *diags)
{
    /* What was issued is informational (--quiet drops it); problems never are. */
    for (size_t i = 0; i < rep->nactions && cli_verbosity >= 0; i++) {
        const reconcile_action *a = &rep->actions[i];
        char when[32] = "";
        pki_format_time(a->not_after, when, sizeof(when));
        fprintf(out, "%s/%s: %s (%s, expires %s, generation %lld: %s)\n", a->mesh, a->dataplane,
                reconcile_verb_name(a->verb), a->backend, when, a->generation, a->reason);
    }
    for (size_t i = 0; i < diags->count; i++) {
        const diag *d = &diags->items[i];
        char where[700] = "";
        /* A stored object that does not decode is named by its file, store:<kind>/<mesh>/<name>. */
        if (d->file)
            snprintf(where, sizeof(where), "%s:%u:%u: ", d->file, d->line, d->column);
        fprintf(stderr, "meshca: %s: %s%s%s%s [%s]\n",
                d->severity == DIAG_ERROR ? "error" : "warning", where,
                d->path && d->path[0] ? d->path : "", d->path && d->path[0] ? ": " : "", d->message,
                d->code);
    }
    /* A targeted pass (run: the dataplanes whose agent just sent a CSR or an ack) looked at
     * those dataplanes only: the mesh-wide counts would depend on which requests happened to
     * share a pass. Its action lines say what it did. */
    if (cli_verbosity < 0 || rep->targeted)
        return;
    fprintf(out, "%zu mesh%s: %zu issued, %zu reissued, %zu renewed, %zu rebundled, %zu unchanged, "
            "%zu failed mesh%s\n",
            rep->nmeshes, rep->nmeshes == 1 ? "" : "es", rep->issued, rep->reissued, rep->renewed,
            rep->rebundled, rep->unchanged, rep->failed_meshes, rep->failed_meshes == 1 ? "" : "es");
    /* CSR mode: nothing is issued before a dataplane's agent sends its CSR; say who waits. */
    if (rep->awaiting)
        fprintf(out, "%zu dataplane%s awaiting a CSR from %s agent\n", rep->awaiting,
                rep->awaiting == 1 ? "" : "s", rep->awaiting == 1 ? "its" : "their");
}

/* The pass knows how many dataplanes it handles only once it loaded them: the line starts at
 * the first callback. */
static void reconcile_progress(void *userdata, size_t done, size_t total)
{
    cli_progress *p = userdata;
    if (!p->what)
        cli_progress_start(p, "reconciling", total);
    cli_progress_update(p, done);
}

int cmd_reconcile(int argc, char **argv)
{
    enum { OPT_ONCE = 256, OPT_NOW, OPT_WORKERS };
    static const struct option options[] = {
        {"once", no_argument, NULL, OPT_ONCE}, {"now", required_argument, NULL, OPT_NOW},
        {"sign-workers", required_argument, NULL, OPT_WORKERS},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    int c;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (c) {
        case OPT_ONCE:
            break;
        case OPT_NOW:
            if (cli_parse_time(optarg, &opts.now) < 0) {
                cli_error("--now: '%s' is not RFC 3339 UTC or epoch seconds", optarg);
                return EXIT_TROUBLE;
            }
            break;
        case OPT_WORKERS:
            if (cli_parse_workers(optarg, &opts.sign_workers) < 0) {
                cli_error("--sign-workers: '%s' is not a number of threads from 1 to %d", optarg,
                          SIGN_POOL_MAX_THREADS);
                return EXIT_TROUBLE;
            }
            break;
        case 'h':
            fputs(cmd_reconcile_usage, stdout);
            return EXIT_OK;
        default:
            cli_flag_error(c, argc, argv);
            return EXIT_TROUBLE;
        }
    }
    if (optind < argc) {
        cli_error("unexpected argument '%s'; run 'meshca help reconcile'", argv[optind]);
        return EXIT_TROUBLE;
    }

    store *s = cli_open_store();
    if (!s)
        return EXIT_TROUBLE;
    int rc;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    diag_list diags = DIAG_LIST_INIT;
    /* A pass over thousands of dataplanes takes a while: a progress line on a terminal. */
    cli_progress progress = {0};
    opts.progress = reconcile_progress;
    opts.progress_userdata = &progress;
    rc = reconcile_once(s, &opts, &rep, &diags);
    cli_progress_end(&progress);
    int exit_code;
    if (rc < 0) {
        cli_error("cannot read the store: %s", store_strerror(rc));
        exit_code = EXIT_TROUBLE;
    } else {
        cli_print_reconcile(stdout, &rep, &diags);
        /* A pass whose store writes failed did not do its job: that is trouble, not input. */
        exit_code = rep.store_failures ? EXIT_TROUBLE : rep.failed_meshes ? EXIT_INVALID : EXIT_OK;
        if (cli_diagnostics_out_of_memory(&diags))
            exit_code = EXIT_TROUBLE;
    }
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    store_close(s);
    return exit_code;
}
