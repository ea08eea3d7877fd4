/* cmd_agent.c - `meshca agent`: keeps one dataplane's cert, key and bundle files current and acknowledged. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd/cli.h"
#include "reconciler/agent.h"
#include "reconciler/api/ca_file.h"
#include "reconciler/atomic_dir.h"
#include "reconciler/api/client.h"
#include "reconciler/store.h"

const char cmd_agent_usage[] =
    "Usage: meshca agent -m MESH -d DATAPLANE --out DIR --server URL[,URL...] --ca-file FILE\n"
    "                    --token-file FILE [--reload CMD] [--reload-timeout D] [--once] [--renew]\n"
    "\n"
    "The dataplane side. It talks to controllers over HTTPS only (the dataplane API, see\n"
    "'meshca help run'), never to the store. It generates its own key in DIR (0600; EC P-256, or\n"
    "RSA 2048 when the mesh's dpCert.keyType says rsa), sends only a certificate request, and\n"
    "waits for the certificate with blocking queries. It writes cert.pem (leaf + chain), key.pem\n"
    "and ca-bundle.pem into DIR so that the three change together: into a fresh directory\n"
    "DIR/..<timestamp>, then one rename of the symlink DIR/..data; DIR/cert.pem etc. are\n"
    "symlinks to ..data/cert.pem (Kubernetes' atomic-writer layout). Then it runs CMD with\n"
    "/bin/sh -c (e.g. 'nginx -s reload'), and only when CMD exits 0 within its timeout does it\n"
    "acknowledge the generation, which is what 'meshca apply' checks before a CA switch or\n"
    "removal. A failed CMD is run again for the same generation with backoff (0.5s doubling\n"
    "to 30s) until it exits 0. At the certificate's renewal point it sends a CSR for a fresh\n"
    "key. The first contact uses the token; after that the agent authenticates with its own\n"
    "certificate.\n"
    "While no controller answers it keeps its files as they are and retries with backoff,\n"
    "trying every --server in turn. SIGTERM or SIGINT end it at once, a running CMD included.\n"
    "\n"
    "Flags:\n"
    "  -m, --mesh MESH         the mesh\n"
    "  -d, --dataplane NAME    the dataplane\n"
    "      --out DIR           directory for cert.pem, key.pem, ca-bundle.pem; created 0700 when\n"
    "                          missing (its parent must exist), and removed again when the agent\n"
    "                          is refused before anything was accepted; a symlink or a\n"
    "                          non-directory is refused; an existing DIR open to group or others\n"
    "                          is warned about\n"
    "      --server URLS       controller base URLs, comma-separated (https://127.0.0.1:5690)\n"
    "      --ca-file FILE      the control-plane CA certificate ('meshca cp-ca -o pem')\n"
    "      --token-file FILE   the dataplane token ('meshca token issue'); needed until the agent\n"
    "                          holds a certificate, and when the controller refuses it (the\n"
    "                          dataplane deleted and applied again, a store restored from an\n"
    "                          older backup)\n"
    "      --reload CMD        command run after the files changed; must exit 0 to acknowledge\n"
    "      --reload-timeout D  how long CMD may run (default 30s): past it, CMD's process group\n"
    "                          gets SIGTERM, then SIGKILL 2s later, and nothing is acknowledged\n"
    "      --once              return once a generation is loaded and acknowledged; while no\n"
    "                          controller answers, retry for about a minute, then exit 2\n"
    "      --renew             send a CSR for a fresh key now, whatever the renewal point says\n"
    "  -h, --help              show this help\n"
    "\n"
    "Exit codes: 0 done (or stopped by a signal, without --once); 1 the controller refused (bad\n"
    "token, unknown dataplane) or the reload command failed (--once); 2 usage error, DIR refused\n"
    "or not writable, --ca-file unreadable or without a certificate, no controller reachable\n"
    "(--once, after about a minute), stopped by a signal before anything loaded (--once).\n";

/* The API says why a token is refused (expired, revoked, malformed), not how to go on. */
static const char *token_hint(const char *line)
{
    return strstr(line, "HTTP 401: token:")
               ? " (a new token: 'meshca token issue' against the controller's store, then "
                 "--token-file)"
               : "";
}

/* The agent's lines: progress to stdout, trouble to stderr. */
static void agent_say(void *ctx, bool error, const char *line)
{
    const char *who = ctx;
    if (error)
        fprintf(stderr, "meshca: %s: %s%s\n", who, line, token_hint(line));
    else
        printf("%s: %s\n", who, line);
    fflush(error ? stderr : stdout);
}

/* The token file's first line, without surrounding blanks; NULL when unreadable. */
static char *read_token(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char buf[512];
    char *line = fgets(buf, sizeof(buf), f);
    fclose(f);
    if (!line) {
        explicit_bzero(buf, sizeof(buf));
        return NULL;
    }
    size_t n = strcspn(buf, "\r\n");
    while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    char *tok = n ? strdup(buf) : NULL;
    explicit_bzero(buf, sizeof(buf));
    return tok;
}

int cmd_agent(int argc, char **argv)
{
    enum { OPT_OUT = 256, OPT_RELOAD, OPT_RELOAD_TIMEOUT, OPT_ONCE, OPT_SERVER, OPT_CA_FILE,
           OPT_TOKEN_FILE, OPT_RENEW };
    static const struct option options[] = {
        {"mesh", required_argument, NULL, 'm'}, {"dataplane", required_argument, NULL, 'd'},
        {"out", required_argument, NULL, OPT_OUT}, {"reload", required_argument, NULL, OPT_RELOAD},
        {"reload-timeout", required_argument, NULL, OPT_RELOAD_TIMEOUT},
        {"once", no_argument, NULL, OPT_ONCE}, {"server", required_argument, NULL, OPT_SERVER},
        {"ca-file", required_argument, NULL, OPT_CA_FILE},
        {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
        {"renew", no_argument, NULL, OPT_RENEW},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    const char *mesh_name = NULL, *dp = NULL, *out = NULL, *reload = NULL;
    const char *servers_arg = NULL, *ca_file = NULL, *token_file = NULL;
    bool once = false, renew = false;
    int64_t reload_timeout_ms = RELOAD_DEFAULT_TIMEOUT_MS;
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
        case OPT_SERVER:
            servers_arg = optarg;
            break;
        case OPT_CA_FILE:
            ca_file = optarg;
            break;
        case OPT_TOKEN_FILE:
            token_file = optarg;
            break;
        case OPT_RENEW:
            renew = true;
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
    if (!mesh_name || !dp || !out || !servers_arg || !ca_file) {
        cli_error("agent needs -m MESH, -d DATAPLANE, --out DIR, --server URL and --ca-file FILE; "
                  "run 'meshca help agent'");
        return EXIT_TROUBLE;
    }
    if (!store_name_valid(mesh_name) || !store_name_valid(dp)) {
        cli_error("'%s/%s' is not a valid mesh/dataplane name", mesh_name, dp);
        return EXIT_TROUBLE;
    }

    char err[MESHCA_ERRBUF] = "", warn[MESHCA_ERRBUF] = "";
    /* Every flag is checked before --out is created: an agent that cannot start leaves
     * nothing behind. */
    if (api_ca_file_check(ca_file, err) < 0) {
        cli_error("--ca-file: %s", err);
        return EXIT_TROUBLE;
    }
    /* --server a,b,c: failover in this order. */
    char *list = strdup(servers_arg);
    const char *servers[API_CLIENT_MAX_SERVERS];
    size_t nservers = 0;
    if (!list) {
        cli_error("out of memory");
        return EXIT_TROUBLE;
    }
    for (char *tok = list, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next)
            *next++ = '\0';
        if (!*tok)
            continue;
        if (strncmp(tok, "https://", 8) != 0) {
            cli_error("--server: '%s' is not an https:// URL (the controller's API is served "
                      "over HTTPS only, e.g. https://127.0.0.1:5690)", tok);
            free(list);
            return EXIT_TROUBLE;
        }
        if (nservers == API_CLIENT_MAX_SERVERS) {
            cli_error("--server: more than %d URLs", API_CLIENT_MAX_SERVERS);
            free(list);
            return EXIT_TROUBLE;
        }
        servers[nservers++] = tok;
    }
    if (!nservers) {
        cli_error("--server: no URL");
        free(list);
        return EXIT_TROUBLE;
    }
    char *token = NULL;
    if (token_file && !(token = read_token(token_file))) {
        cli_error("--token-file: cannot read a token from %s", token_file);
        free(list);
        return EXIT_TROUBLE;
    }
    /* A --out that does not exist holds no certificate: without a token the controller
     * cannot be reached at all, said before the directory is made (agent.c says the same
     * for a DIR without a certificate). */
    struct stat out_st;
    if (!token && stat(out, &out_st) != 0 && errno == ENOENT) {
        cli_error("no certificate yet and no token: pass --token-file (meshca token issue -m %s "
                  "-d %s)", mesh_name, dp);
        free(list);
        return EXIT_INVALID;
    }
    /* Only now, with every flag checked: a usage error leaves no --out behind. */
    bool created = false;
    int rc = atomic_dir_prepare(out, &created, warn, err);
    if (rc < 0) {
        cli_error("--out: %s", err);
        if (token) {
            explicit_bzero(token, strlen(token));
            free(token);
        }
        free(list);
        return EXIT_TROUBLE;
    }
    if (warn[0])
        fprintf(stderr, "meshca: warning: --out: %s\n", warn);
    if (created)
        printf("created %s (mode 0700)\n", out);
    /* Also with --once: a signal must reach a running reload command's group, not orphan it. */
    cli_install_stop_handler();
    char who[600];
    snprintf(who, sizeof(who), "%s/%s", mesh_name, dp);
    agent_options opts = AGENT_OPTIONS_INIT;
    opts.mesh = mesh_name;
    opts.dataplane = dp;
    opts.out_dir = out;
    opts.servers = servers;
    opts.nservers = nservers;
    opts.ca_file = ca_file;
    opts.token = token;
    opts.reload_cmd = reload;
    opts.reload_timeout_ms = reload_timeout_ms;
    opts.stop_requested = cli_stop_requested;
    opts.once = once;
    opts.renew = renew;
    opts.log = agent_say;
    opts.log_ctx = who;
    opts.out_created = created;
    rc = agent_run(&opts, err);
    if (token) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    free(list);
    if (rc < 0) {
        cli_error("%s%s", err, token_hint(err));
        return rc == MESHCA_EINVAL || rc == MESHCA_ESTATE || rc == MESHCA_ENOTFOUND ||
                       rc == MESHCA_ECONFLICT
                   ? EXIT_INVALID
                   : EXIT_TROUBLE;
    }
    return EXIT_OK;
}
