/* cmd_agent.c - `meshca agent`: keeps one dataplane's cert, key and bundle files current and acknowledged. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "reconciler/agent.h"
#include "reconciler/atomic_dir.h"
#include "reconciler/store.h"

const char cmd_agent_usage[] =
    "Usage: meshca agent -m MESH -d DATAPLANE --out DIR [--reload CMD] [--reload-timeout D]\n"
    "                    [--once] [--interval D]\n"
    "\n"
    "The dataplane side. Whenever the controller has issued DATAPLANE a new generation (new\n"
    "certificate or new trust bundle), writes cert.pem, key.pem (mode 0600) and ca-bundle.pem\n"
    "into DIR so that the three change together: into a fresh directory DIR/..<timestamp>, then\n"
    "one rename of the symlink DIR/..data; DIR/cert.pem etc. are symlinks to ..data/cert.pem\n"
    "(Kubernetes' atomic-writer layout). Then it runs CMD with /bin/sh -c (e.g. 'nginx -s\n"
    "reload'). Only when CMD exits 0 within its timeout does it acknowledge the generation in\n"
    "the dataplane status, which is what 'meshca apply' checks before a CA switch or removal.\n"
    "A failed or timed-out CMD is retried on the next sync. Without --once it syncs every\n"
    "interval until SIGTERM or SIGINT, which end it at once, a running CMD included.\n"
    "\n"
    "Flags:\n"
    "  -m, --mesh MESH         the mesh\n"
    "  -d, --dataplane NAME    the dataplane\n"
    "      --out DIR           directory for cert.pem, key.pem, ca-bundle.pem; created 0700 when\n"
    "                          missing (its parent must exist); a symlink or a non-directory is\n"
    "                          refused; an existing DIR open to group or others is warned about\n"
    "      --reload CMD        command run after the files changed; must exit 0 to acknowledge\n"
    "      --reload-timeout D  how long CMD may run (default 30s): past it, CMD's process group\n"
    "                          gets SIGTERM, then SIGKILL 2s later, and nothing is acknowledged\n"
    "      --once              sync once and exit\n"
    "      --interval D        time between syncs (default 1s; e.g. 500ms, 5s)\n"
    "  -h, --help              show this help\n"
    "\n"
    "Exit codes: 0 done (or stopped by a signal while waiting); 1 nothing issued yet (--once) or\n"
    "the reload command failed, timed out or was interrupted (--once); 2 usage error, DIR\n"
    "refused or not writable, store unreachable.\n";

int cmd_agent(int argc, char **argv)
{
    enum { OPT_OUT = 256, OPT_RELOAD, OPT_RELOAD_TIMEOUT, OPT_ONCE, OPT_INTERVAL };
    static const struct option options[] = {
        {"mesh", required_argument, NULL, 'm'}, {"dataplane", required_argument, NULL, 'd'},
        {"out", required_argument, NULL, OPT_OUT}, {"reload", required_argument, NULL, OPT_RELOAD},
        {"reload-timeout", required_argument, NULL, OPT_RELOAD_TIMEOUT},
        {"once", no_argument, NULL, OPT_ONCE}, {"interval", required_argument, NULL, OPT_INTERVAL},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    const char *mesh_name = NULL, *dp = NULL, *out = NULL, *reload = NULL;
    bool once = false;
    int64_t interval_ms = 1000, reload_timeout_ms = RELOAD_DEFAULT_TIMEOUT_MS;
    int c;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:d:h", options, NULL)) != -1) {
        switch (c) {
        case 'm':
            mesh_name = optarg;
            break;
        case 'd':
            dp = optarg;
            break;
        case OPT_OUT:
            out = optarg;
            break;
        case OPT_RELOAD:
            reload = optarg;
            break;
        case OPT_RELOAD_TIMEOUT:
            if (cli_parse_interval(optarg, &reload_timeout_ms) < 0) {
                cli_error("--reload-timeout: '%s' is not a duration like 30s or 500ms (at most 24h)",
                          optarg);
                return EXIT_TROUBLE;
            }
            break;
        case OPT_ONCE:
            once = true;
            break;
        case OPT_INTERVAL:
            if (cli_parse_interval(optarg, &interval_ms) < 0) {
                cli_error("--interval: '%s' is not a duration like 1s or 500ms (at most 24h)", optarg);
                return EXIT_TROUBLE;
            }
            break;
        case 'h':
            fputs(cmd_agent_usage, stdout);
            return EXIT_OK;
        default:
            cli_flag_error(c, argc, argv);
            return EXIT_TROUBLE;
        }
    }
    if (optind < argc) {
        cli_error("unexpected argument '%s'; run 'meshca help agent'", argv[optind]);
        return EXIT_TROUBLE;
    }
    if (!mesh_name || !dp || !out) {
        cli_error("agent needs -m MESH, -d DATAPLANE and --out DIR; run 'meshca help agent'");
        return EXIT_TROUBLE;
    }
    if (!store_name_valid(mesh_name) || !store_name_valid(dp)) {
        cli_error("'%s/%s' is not a valid mesh/dataplane name", mesh_name, dp);
        return EXIT_TROUBLE;
    }

    char err[MESHCA_ERRBUF] = "", warn[MESHCA_ERRBUF] = "";
    bool created = false;
    int rc = atomic_dir_prepare(out, &created, warn, err);
    if (rc < 0) {
        cli_error("--out: %s", err);
        return EXIT_TROUBLE;
    }
    if (warn[0])
        fprintf(stderr, "meshca: warning: --out: %s\n", warn);
    if (created)
        printf("created %s (mode 0700)\n", out);

    store *s = NULL;
    rc = store_open(NULL, &s, err, sizeof(err));
    if (rc < 0) {
        cli_error("cannot open the store: %s", err[0] ? err : store_strerror(rc));
        return EXIT_TROUBLE;
    }
    /* Also with --once: a signal must reach a running reload command's group, not orphan it. */
    cli_install_stop_handler();
    agent_options opts = AGENT_OPTIONS_INIT;
    opts.out_dir = out;
    opts.reload_cmd = reload;
    opts.reload_timeout_ms = reload_timeout_ms;
    opts.stop_requested = cli_stop_requested;

    int exit_code = EXIT_OK;
    int last_rc = 1;   /* report a problem once, not every interval */
    do {
        bool changed = false;
        err[0] = '\0';
        rc = agent_sync_with(s, mesh_name, dp, &opts, &changed, err);
        if (rc == 0 && changed)
            printf("%s/%s: loaded new certificate and bundle into %s\n", mesh_name, dp, out);
        else if (rc < 0 && (once || rc != last_rc))
            cli_error("%s", err);
        fflush(stdout);
        last_rc = rc;
        if (once) {
            exit_code = rc == 0 ? EXIT_OK
                        : rc == AGENT_ENOTISSUED || rc == AGENT_ERELOAD ? EXIT_INVALID
                                                                        : EXIT_TROUBLE;
            break;
        }
        cli_sleep_ms(interval_ms);
    } while (!cli_stop_requested());
    store_close(s);
    return exit_code;
}
