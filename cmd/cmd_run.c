/* cmd_run.c - `meshca run`: the controller, reconciling on every store change and on a timer for renewals. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include "cmd/manifest_sync.h"
#include "reconciler/reconcile.h"
#include "reconciler/store.h"

/* How often the store revision is polled between full passes. */
#define RUN_POLL_MS 200
/* While the store fails, passes are retried after a delay that doubles from the first to the
 * cap: a read-only or vanished store is not hammered, and recovers within the cap. */
#define RUN_BACKOFF_FIRST_MS 500
#define RUN_BACKOFF_MAX_MS 30000

const char cmd_run_usage[] =
    "Usage: meshca run [--manifests DIR] [--interval D]\n"
    "\n"
    "The controller: runs a reconcile pass (see 'meshca help reconcile') whenever the store\n"
    "changes and at least every interval, so certificates are renewed on time. Prints what each\n"
    "pass changed. SIGTERM or SIGINT stops it after the current pass.\n"
    "\n"
    "With --manifests DIR it also keeps the store in line with DIR (a GitOps checkout; *.yaml\n"
    "and *.yml, watched with inotify): valid changes are applied as 'meshca apply' would; a\n"
    "switch or removal refused only because dataplanes have not caught up is held as pending,\n"
    "with the reason in the mesh status ('meshca inspect meshes'), and applied as soon as they\n"
    "have; other refusals (several steps at once, in-place changes, disabling mTLS, invalid\n"
    "manifests) stay refused until DIR changes.\n"
    "\n"
    "Flags:\n"
    "      --interval D    longest time between passes (default 2s; e.g. 500ms, 1m)\n"
    "  -h, --help          show this help\n"
    "\n"
    "While the store cannot be read or written (read-only, vanished), the error is printed once\n"
    "per cause (naming the object) and passes are retried with a backoff that doubles from\n"
    "500ms to 30s; a line says when the store works again.\n"
    "\n"
    "Exit codes: 0 stopped by a signal; 2 usage error or store unreachable at start.\n";

int cmd_run(int argc, char **argv)
{
    enum { OPT_INTERVAL = 256, OPT_MANIFESTS };
    static const struct option options[] = {
        {"interval", required_argument, NULL, OPT_INTERVAL},
        {"manifests", required_argument, NULL, OPT_MANIFESTS}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int64_t interval_ms = 2000;
    const char *manifests_dir = NULL;
    char *last_said = NULL;
    int watch_fd = -1;
    int c;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (c) {
        case OPT_INTERVAL:
            if (cli_parse_interval(optarg, &interval_ms) < 0) {
                cli_error("--interval: '%s' is not a duration like 2s or 500ms (at most 24h)", optarg);
                return EXIT_TROUBLE;
            }
            break;
        case OPT_MANIFESTS:
            manifests_dir = optarg;
            break;
        case 'h':
            fputs(cmd_run_usage, stdout);
            return EXIT_OK;
        default:
            cli_flag_error(c, argc, argv);
            return EXIT_TROUBLE;
        }
    }
    if (optind < argc) {
        cli_error("unexpected argument '%s'; run 'meshca help run'", argv[optind]);
        return EXIT_TROUBLE;
    }

    store *s = cli_open_store();
    if (!s)
        return EXIT_TROUBLE;
    int rc;
    if (manifests_dir && (watch_fd = manifest_watch_open(manifests_dir)) < 0) {
        cli_error("cannot watch %s: %s", manifests_dir, strerror(errno));
        store_close(s);
        return EXIT_TROUBLE;
    }
    cli_install_stop_handler();

    uint64_t seen = 0;
    bool first = true;
    char failing[MESHCA_ERRBUF] = "";   /* the store failure last logged; "" while it works */
    int64_t backoff_ms = 0;
    while (!cli_stop_requested()) {
        if (manifests_dir)
            manifest_sync(s, manifests_dir, &last_said);
        reconcile_options opts = RECONCILE_OPTIONS_INIT;
        reconcile_report rep = RECONCILE_REPORT_INIT;
        diag_list diags = DIAG_LIST_INIT;
        rc = reconcile_once(s, &opts, &rep, &diags);
        /* One store failure fails every pass (and every dataplane) the same way: log it once
         * per cause, then back off, instead of a warning per dataplane per pass. */
        const char *cause = rc < 0 ? store_strerror(rc) : rep.store_failures ? rep.store_cause : "";
        bool repeated = cause[0] && strcmp(cause, failing) == 0;
        if (rc < 0) {
            if (!repeated)
                cli_error("reconcile: cannot read the store: %s; retrying with backoff", cause);
        } else if (!repeated && (first || rep.nactions || diags.count)) {
            cli_print_reconcile(stdout, &rep, &diags);
            if (cause[0])
                cli_error("reconcile: the store failed (%s); retrying with backoff", cause);
        }
        if (!cause[0] && failing[0])
            fprintf(stderr, "meshca: the store works again\n");
        snprintf(failing, sizeof(failing), "%s", cause);
        backoff_ms = !cause[0] ? 0 : !backoff_ms ? RUN_BACKOFF_FIRST_MS
                     : backoff_ms * 2 > RUN_BACKOFF_MAX_MS ? RUN_BACKOFF_MAX_MS : backoff_ms * 2;
        fflush(stdout);
        first = false;
        reconcile_report_free(&rep);
        diag_list_free(&diags);
        if (backoff_ms) {
            /* The revision cannot be trusted to move (or to be read) while the store fails. */
            cli_sleep_ms(backoff_ms);
            continue;
        }
        /* Our own writes move the revision too: take it after the pass. */
        if (store_revision(s, &seen) < 0)
            seen = 0;

        /* Wait for a change or the interval, whichever comes first. */
        for (int64_t waited = 0; waited < interval_ms && !cli_stop_requested(); waited += RUN_POLL_MS) {
            cli_sleep_ms(interval_ms - waited < RUN_POLL_MS ? interval_ms - waited : RUN_POLL_MS);
            uint64_t rev = 0;
            if (store_revision(s, &rev) == 0 && rev != seen)
                break;
            if (manifest_watch_changed(watch_fd))
                break;
        }
    }
    if (watch_fd >= 0)
        close(watch_fd);
    free(last_said);
    store_close(s);
    return EXIT_OK;
}
