/* cmd_run.c - `meshca run`: flags and output of the controller (reconciler/controller.c). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include "reconciler/controller.h"
#include "reconciler/reconcile.h"
#include "reconciler/sign_pool.h"
#include "reconciler/store.h"

/* How often the store revision is polled between full passes. */
#define RUN_POLL_MS 200
/* While the store fails, passes are retried after a delay that doubles from the first to the
 * cap: a read-only or vanished store is not hammered, and recovers within the cap. */
#define RUN_BACKOFF_FIRST_MS 500
#define RUN_BACKOFF_MAX_MS 30000

const char cmd_run_usage[] =
    "Usage: meshca run [--listen ADDR] [--tls-cert F --tls-key F] [--tls-san NAME]...\n"
    "                  [--manifests DIR [--no-prune]] [--interval D] [--metrics ADDR:PORT]\n"
    "                  [--sign-workers N] [--lease-ttl D]\n"
    "\n"
    "The controller: serves the dataplane API (HTTPS) to agents, and runs a reconcile pass (see\n"
    "'meshca help reconcile') whenever the store changes, whenever an agent sends a CSR, and at\n"
    "least every interval. A pass signs the CSRs agents sent, re-signs the public keys it holds\n"
    "when only the CA changed (switch, CA change, cross-signing), and answers every agent's\n"
    "blocking query whose identity changed. Prints what each pass changed. SIGTERM or SIGINT\n"
    "stop it. SIGHUP renews the API's certificate (re-signed, or --tls-cert/--tls-key re-read);\n"
    "the signed one is also renewed by itself at two thirds of its 90 days.\n"
    "\n"
    "With --manifests DIR it also keeps the store in line with DIR (a GitOps checkout; *.yaml\n"
    "and *.yml, watched with inotify): valid changes are applied as 'meshca apply' would; a\n"
    "switch or removal refused only because dataplanes have not caught up is held as pending,\n"
    "with the reason in the mesh status ('meshca inspect meshes'), and applied as soon as they\n"
    "have; other refusals (several steps at once, in-place changes, disabling mTLS, invalid\n"
    "manifests) stay refused until DIR changes. A resource that an earlier sync applied from DIR\n"
    "and whose document is gone from DIR is deleted (pruned) under the checks of 'meshca\n"
    "delete': one still needed (a Mesh with other Dataplanes, a Secret a backend reads) is\n"
    "kept and the refusal shown in 'meshca inspect meshes'. Resources applied by hand are never\n"
    "pruned; an empty DIR prunes nothing.\n"
    "\n"
    "Prometheus metrics (CA and certificate expiry, trust per backend, pending changes,\n"
    "signatures, errors, pass durations, API requests; doc/metrics.md) are served without\n"
    "authentication as GET /metrics on the dataplane API port, or with --metrics on a\n"
    "separate plain-HTTP port (then not on the API port). They hold names and dates, never a\n"
    "key or token.\n"
    "\n"
    "Several 'meshca run' on one store (etcd, or one SQLite file) elect one leader through a\n"
    "key with a lease: it alone runs passes, each pass's writes fenced on its leadership; every\n"
    "replica serves the API (a CSR sent to a follower is signed by the leader). Each prints\n"
    "'leading' or 'following HOST:PID at URL' once per change; 'meshca inspect leader' shows who\n"
    "leads. Agents should list every replica in --server.\n"
    "\n"
    "Flags:\n"
    "      --listen ADDR    address of the dataplane API (default 127.0.0.1:5690; port 0: any)\n"
    "      --tls-cert F     server certificate chain (PEM) instead of one from the\n"
    "                       control-plane CA (created once in the store; 'meshca cp-ca -o pem'\n"
    "                       prints it)\n"
    "      --tls-key F      the private key of --tls-cert\n"
    "      --tls-san NAME   another name (DNS or IP) for the control-plane server certificate\n"
    "      --manifests DIR  keep the store in line with DIR\n"
    "      --no-prune       with --manifests: never delete what left DIR\n"
    "      --interval D     longest time between passes (default 2s; e.g. 500ms, 1m)\n"
    "      --metrics ADDR:PORT\n"
    "                       serve Prometheus metrics over plain HTTP on ADDR:PORT/metrics\n"
    "                       (e.g. 127.0.0.1:5691; not 9090, Prometheus's own port) instead\n"
    "                       of on the API port (see above)\n"
    "      --sign-workers N  threads signing leaves of builtin and provided CAs\n"
    "                       (default: the online CPUs)\n"
    "      --lease-ttl D    leader lease of this replica (default 10s, whole seconds): several\n"
    "                       'meshca run' on one store elect one leader, which alone runs passes;\n"
    "                       another takes over within D when it dies (see doc/controller.md)\n"
    "  -h, --help           show this help\n"
    "\n"
    "While the store cannot be read or written (read-only, vanished), the error is printed once\n"
    "per cause (naming the object) and passes are retried with a backoff that doubles from\n"
    "500ms to 30s; a line says when the store works again.\n"
    "\n"
    "Exit codes: 0 stopped by a signal; 2 usage error, store unreachable at start, address in\n"
    "use or TLS files unreadable.\n";

static void run_pass_out(void *ctx, const reconcile_report *rep, const diag_list *diags)
{
    (void)ctx;
    cli_print_reconcile(stdout, rep, diags);
    fflush(stdout);
}

static void run_line_out(void *ctx, bool error, const char *text)
{
    (void)ctx;
    if (error) {
        fprintf(stderr, "meshca: %s\n", text);
        fflush(stderr);
    } else {
        printf("%s\n", text);
        fflush(stdout);
    }
}

int cmd_run(int argc, char **argv)
{
    enum { OPT_INTERVAL = 256, OPT_MANIFESTS, OPT_LISTEN, OPT_TLS_CERT, OPT_TLS_KEY, OPT_TLS_SAN,
           OPT_METRICS, OPT_NO_PRUNE, OPT_WORKERS, OPT_LEASE_TTL };
    static const struct option options[] = {
        {"interval", required_argument, NULL, OPT_INTERVAL},
        {"manifests", required_argument, NULL, OPT_MANIFESTS},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"tls-san", required_argument, NULL, OPT_TLS_SAN},
        {"metrics", required_argument, NULL, OPT_METRICS},
        {"no-prune", no_argument, NULL, OPT_NO_PRUNE},
        {"sign-workers", required_argument, NULL, OPT_WORKERS},
        {"lease-ttl", required_argument, NULL, OPT_LEASE_TTL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    controller_options opts = CONTROLLER_OPTIONS_INIT;
    const char *sans[CONTROLLER_MAX_SANS];
    int64_t interval_ms = 2000;
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
        case OPT_LEASE_TTL: {
            int64_t ttl_ms = 0;
            if (cli_parse_interval(optarg, &ttl_ms) < 0 || ttl_ms % 1000 != 0) {
                cli_error("--lease-ttl: '%s' is not a whole number of seconds like 10s (at most 24h)",
                          optarg);
                return EXIT_TROUBLE;
            }
            opts.lease_ttl_s = ttl_ms / 1000;
            break;
        }
        case OPT_MANIFESTS:
            opts.manifests_dir = optarg;
            break;
        case OPT_LISTEN:
            opts.listen = optarg;
            break;
        case OPT_TLS_CERT:
            opts.tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            opts.tls_key = optarg;
            break;
        case OPT_NO_PRUNE:
            opts.no_prune = true;
            break;
        case OPT_METRICS:
            opts.metrics_listen = optarg;
            break;
        case OPT_TLS_SAN:
            if (opts.nsans == CONTROLLER_MAX_SANS) {
                cli_error("--tls-san: at most %d names", CONTROLLER_MAX_SANS);
                return EXIT_TROUBLE;
            }
            sans[opts.nsans++] = optarg;
            break;
        case OPT_WORKERS:
            if (cli_parse_workers(optarg, &opts.sign_workers) < 0) {
                cli_error("--sign-workers: '%s' is not a number of threads from 1 to %d", optarg,
                          SIGN_POOL_MAX_THREADS);
                return EXIT_TROUBLE;
            }
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
    /* The certificate names the --listen address: 0.0.0.0 or [::] is no address an agent
     * dials, so every agent on another host would fail verification. */
    const char *l = opts.listen ? opts.listen : "";
    if (!opts.tls_cert && opts.nsans == 0 &&
        (strncmp(l, "0.0.0.0:", 8) == 0 || strncmp(l, "[::]:", 5) == 0))
        fprintf(stderr, "meshca: warning: --listen %s: the server certificate names only %s, "
                        "which no agent dials; give --tls-san with this host's name or address "
                        "(as agents' --server says it)\n",
                l, l[0] == '[' ? "::" : "0.0.0.0");
    opts.sans = sans;
    opts.interval_ms = interval_ms;
    opts.out.pass = run_pass_out;
    opts.out.line = run_line_out;

    /* Before the store is opened: a mistyped address must not leave a new store behind. */
    char addr_err[MESHCA_ERRBUF] = "";
    if (controller_check_addresses(&opts, addr_err) < 0) {
        cli_error("%s", addr_err);
        return EXIT_TROUBLE;
    }
    /* Also before the store: a mistyped checkout path is refused, not watched later. */
    struct stat dir_st;
    if (opts.manifests_dir && stat(opts.manifests_dir, &dir_st) != 0) {
        cli_error("--manifests: cannot read %s: %s", opts.manifests_dir, strerror(errno));
        return EXIT_TROUBLE;
    }

    store *s = cli_open_store();
    if (!s)
        return EXIT_TROUBLE;
    /* The lease is renewed on a thread with its own handle: a long pass keeps the leadership. */
    store *lease_store = cli_open_store();
    if (!lease_store) {
        store_close(s);
        return EXIT_TROUBLE;
    }
    opts.lease_store = lease_store;
    /* Passes run on a thread with a handle of their own: the API answers while one signs or
     * waits on a slow CA or store. */
    store *pass_store = cli_open_store();
    if (!pass_store) {
        store_close(lease_store);
        store_close(s);
        return EXIT_TROUBLE;
    }
    opts.pass_store = pass_store;
    /* CSR submissions are committed on a thread with a handle of its own, several per
     * transaction: the loop never waits on a commit's fsync. */
    store *submit_store = cli_open_store();
    if (!submit_store) {
        store_close(pass_store);
        store_close(lease_store);
        store_close(s);
        return EXIT_TROUBLE;
    }
    opts.submit_store = submit_store;
    /* An answer written to an agent that hung up must fail with EPIPE, not end the controller. */
    signal(SIGPIPE, SIG_IGN);
    char err[MESHCA_ERRBUF] = "";
    int rc = controller_run(s, &opts, err);
    store_close(s);
    store_close(lease_store);
    store_close(pass_store);
    store_close(submit_store);
    if (rc < 0) {
        cli_error("%s", err);
        return EXIT_TROUBLE;
    }
    return EXIT_OK;
}
