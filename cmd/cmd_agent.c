/* cmd_agent.c - `meshca agent`: keeps one dataplane's cert, key and bundle files current and acknowledged. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "reconciler/agent.h"
#include "reconciler/store.h"

const char cmd_agent_usage[] =
    "Usage: meshca agent -m MESH -d DATAPLANE --out DIR [--reload CMD] [--once] [--interval D]\n"
    "\n"
    "The dataplane side. Whenever the controller has issued DATAPLANE a new generation (new\n"
    "certificate or new trust bundle), writes cert.pem, key.pem (mode 0600) and ca-bundle.pem\n"
    "into DIR, each atomically, then runs CMD with /bin/sh -c (e.g. 'nginx -s reload'). Only\n"
    "when CMD exits 0 does it acknowledge the generation in the dataplane status, which is what\n"
    "'meshca apply' checks before a CA switch or removal. A failed CMD is retried on the next\n"
    "sync. Without --once it syncs every interval until SIGTERM or SIGINT.\n"
    "\n"
    "Flags:\n"
    "  -m, --mesh MESH         the mesh\n"
    "  -d, --dataplane NAME    the dataplane\n"
    "      --out DIR           directory for cert.pem, key.pem, ca-bundle.pem (must exist)\n"
    "      --reload CMD        command run after the files changed; must exit 0 to acknowledge\n"
    "      --once              sync once and exit\n"
    "      --interval D        time between syncs (default 1s; e.g. 500ms, 5s)\n"
    "  -h, --help              show this help\n"
    "\n"
    "Exit codes: 0 done (or stopped by a signal); 1 nothing issued yet (--once) or the reload\n"
    "command failed (--once); 2 usage error, store unreachable, files not writable.\n";

int cmd_agent(int argc, char **argv)
{
    enum { OPT_OUT = 256, OPT_RELOAD, OPT_ONCE, OPT_INTERVAL };
    static const struct option options[] = {
        {"mesh", required_argument, NULL, 'm'}, {"dataplane", required_argument, NULL, 'd'},
        {"out", required_argument, NULL, OPT_OUT}, {"reload", required_argument, NULL, OPT_RELOAD},
        {"once", no_argument, NULL, OPT_ONCE}, {"interval", required_argument, NULL, OPT_INTERVAL},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    const char *mesh_name = NULL, *dp = NULL, *out = NULL, *reload = NULL;
    bool once = false;
    int64_t interval_ms = 1000;
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

    char err[512] = "";
    store *s = NULL;
    int rc = store_open(NULL, &s, err, sizeof(err));
    if (rc < 0) {
        cli_error("cannot open the store: %s", err[0] ? err : store_strerror(rc));
        return EXIT_TROUBLE;
    }
    if (!once)
        cli_install_stop_handler();

    int exit_code = EXIT_OK;
    int last_rc = 1;   /* report a problem once, not every interval */
    do {
        bool changed = false;
        err[0] = '\0';
        rc = agent_sync(s, mesh_name, dp, out, reload, 0, &changed, err, sizeof(err));
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
