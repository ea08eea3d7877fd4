/* cmd_token.c - `meshca token issue|revoke|list`: dataplane tokens for an agent's first contact. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include "manifests/model.h"
#include "reconciler/api/token.h"
#include "reconciler/pki.h"
#include "reconciler/state.h"
#include "reconciler/store.h"

const char cmd_token_usage[] =
    "Usage: meshca token issue -m MESH -d DATAPLANE [--ttl D] [--out FILE]\n"
    "       meshca token revoke -m MESH -d DATAPLANE\n"
    "       meshca token list [-m MESH] [-o text|json]\n"
    "\n"
    "Dataplane tokens authenticate an agent's first contact with the dataplane API\n"
    "(Authorization: Bearer); afterwards the agent uses its own certificate.\n"
    "\n"
    "  issue    prints a new token, and only the token, on stdout. It is shown once: the\n"
    "           store keeps its SHA-256 only. --ttl: how long it is valid (default 24h,\n"
    "           at most 366d). The dataplane must exist in the store. --out FILE: write\n"
    "           it to FILE instead (mode 0600, replaced whole), for the agent's\n"
    "           --token-file; `>FILE` would leave it readable by every user.\n"
    "  revoke   revokes every token of the dataplane, at once. A dataplane that is not in\n"
    "           the store and has no token is an error (a mistyped name revokes nothing).\n"
    "  list     mesh, dataplane, issue and expiry time of each token (never the token).\n"
    "\n"
    "Flags:\n"
    "  -m, --mesh MESH        the dataplane's mesh\n"
    "  -d, --dataplane NAME   the dataplane\n"
    "      --ttl D            validity of an issued token, e.g. 1h, 24h, 7d\n"
    "      --out FILE         issue: write the token to FILE (0600) instead of stdout\n"
    "  -o, --output FORMAT    list: text (default) or json\n"
    "\n"
    "Exit codes: 0 ok; 1 invalid name or ttl, or no such dataplane; 2 usage error or store\n"
    "unreachable.\n";

/* Store codes that mean "the store failed" exit 2; the rest is the user's input. */
static int exit_for(int rc)
{
    return rc == MESHCA_EINVAL || rc == MESHCA_ENOTFOUND ? EXIT_INVALID : EXIT_TROUBLE;
}

/* A temporary file beside path, created 0600 (mkstemp) before the token exists, so that a path
 * that cannot be written fails before a token is issued. *ret_tmp: its name (caller frees). */
static int out_open(const char *path, char **ret_tmp)
{
    size_t n = strlen(path) + sizeof(".tmp.XXXXXX");
    char *tmp = malloc(n);
    if (!tmp) {
        cli_error("out of memory");
        return -1;
    }
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        cli_error("--out %s: cannot create a file there: %s", path, strerror(errno));
        free(tmp);
        return -1;
    }
    *ret_tmp = tmp;
    return fd;
}

/* Writes the token and a newline to fd, makes it durable and renames tmp over path; on
 * failure removes tmp. The token goes straight from its buffer to the file: no stdio copy. */
static int out_finish(int fd, char *tmp, const char *path, const char *token)
{
    size_t len = strlen(token), off = 0;
    int ok = 1;
    while (ok && off <= len) {
        /* the token, then its newline */
        const char *p = off < len ? token + off : "\n";
        size_t left = off < len ? len - off : 1;
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            ok = 0;
        else
            off += (size_t)w;
    }
    if (ok && fsync(fd) < 0)
        ok = 0;
    int err = errno;
    if (close(fd) < 0 && ok) {
        ok = 0;
        err = errno;
    }
    if (ok && rename(tmp, path) < 0) {
        ok = 0;
        err = errno;
    }
    if (!ok) {
        unlink(tmp);
        cli_error("--out %s: cannot write the token: %s (the token issued is not saved "
                  "anywhere and expires unused)", path, strerror(err));
    }
    free(tmp);
    return ok ? 0 : -1;
}

static int issue(store *s, const char *mesh_name, const char *dp_name, int64_t ttl_s,
                 const char *out_path)
{
    char errbuf[MESHCA_ERRBUF] = "";
    const store_key key = {STATE_DATAPLANES, mesh_name, dp_name};
    char *value = NULL;
    int rc = store_get(s, &key, &value, NULL, NULL);
    free(value);
    if (rc == STORE_ENOTFOUND) {
        cli_error("no dataplane '%s' in mesh '%s' in the store", dp_name, mesh_name);
        return EXIT_INVALID;
    }
    if (rc < 0) {
        cli_error("cannot read the store: %s", store_strerror(rc));
        return EXIT_TROUBLE;
    }
    char *token = NULL, *tmp = NULL;
    int fd = -1;
    if (out_path && (fd = out_open(out_path, &tmp)) < 0)
        return EXIT_TROUBLE;
    rc = token_issue(s, mesh_name, dp_name, (int64_t)time(NULL), ttl_s, &token, errbuf);
    if (rc < 0) {
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
            free(tmp);
        }
        cli_error("%s", errbuf);
        return exit_for(rc);
    }
    int code = EXIT_OK;
    if (fd >= 0) {
        if (out_finish(fd, tmp, out_path, token) < 0)
            code = EXIT_TROUBLE;
    } else {
        puts(token);
        fflush(stdout);
    }
    token_free(token);
    return code;
}

static int revoke_tokens(store *s, const char *mesh_name, const char *dp_name)
{
    char errbuf[MESHCA_ERRBUF] = "";
    size_t n = 0;
    int rc = token_revoke(s, mesh_name, dp_name, &n, errbuf);
    if (rc < 0) {
        cli_error("%s", errbuf);
        return exit_for(rc);
    }
    if (n == 0) {
        /* A mistyped name revokes nothing: exit 0 would read as "that agent is locked out".
         * Tokens of a dataplane no longer stored are still revoked above (n > 0). */
        const store_key key = {STATE_DATAPLANES, mesh_name, dp_name};
        char *value = NULL;
        rc = store_get(s, &key, &value, NULL, NULL);
        free(value);
        if (rc == STORE_ENOTFOUND) {
            cli_error("no dataplane '%s' in mesh '%s' in the store, and no token of it: nothing "
                      "revoked",
                      dp_name, mesh_name);
            return EXIT_INVALID;
        }
        if (rc < 0) {
            cli_error("cannot read the store: %s", store_strerror(rc));
            return EXIT_TROUBLE;
        }
    }
    printf("revoked %zu token%s of %s/%s\n", n, n == 1 ? "" : "s", mesh_name, dp_name);
    return EXIT_OK;
}

static int list(store *s, const char *mesh_name, output_format format)
{
    char errbuf[MESHCA_ERRBUF] = "";
    token_info *items = NULL;
    size_t n = 0;
    int rc = token_list(s, mesh_name, &items, &n, errbuf);
    if (rc < 0) {
        cli_error("%s", errbuf);
        return exit_for(rc);
    }
    int64_t now = (int64_t)time(NULL);
    json_t *doc = format == OUTPUT_JSON ? json_array() : NULL;
    if (format == OUTPUT_TEXT)
        printf("%-20s %-30s %-21s %-21s %s\n", "MESH", "DATAPLANE", "ISSUED", "EXPIRES", "STATUS");
    for (size_t i = 0; i < n; i++) {
        char issued[32] = "", expires[32] = "";
        pki_format_time(items[i].issued_at, issued, sizeof(issued));
        pki_format_time(items[i].expires_at, expires, sizeof(expires));
        const char *status = now >= items[i].expires_at ? "expired" : "valid";
        if (doc) {
            json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "mesh", items[i].mesh, "dataplane",
                                  items[i].dataplane, "issuedAt", issued, "expiresAt", expires,
                                  "status", status);
            if (!o || json_array_append_new(doc, o) < 0) {
                json_decref(doc);
                free(items);
                cli_error("out of memory");
                return EXIT_TROUBLE;
            }
        } else {
            printf("%-20s %-30s %-21s %-21s %s\n", items[i].mesh, items[i].dataplane, issued,
                   expires, status);
        }
    }
    free(items);
    if (doc) {
        cli_print_structured(doc, OUTPUT_JSON);
        json_decref(doc);
    }
    return EXIT_OK;
}

int cmd_token(int argc, char **argv)
{
    enum { OPT_TTL = 256, OPT_OUT }; /* long only: no -t, and -o is --output */
    static const struct option options[] = {
        {"mesh", required_argument, NULL, 'm'}, {"dataplane", required_argument, NULL, 'd'},
        {"ttl", required_argument, NULL, OPT_TTL},  {"output", required_argument, NULL, 'o'},
        {"out", required_argument, NULL, OPT_OUT},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    const char *mesh_name = NULL, *dp_name = NULL, *ttl = NULL, *out_path = NULL;
    output_format format = OUTPUT_TEXT;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:d:o:h", options, NULL)) != -1) {
        switch (c) {
        case 'm':
            mesh_name = optarg;
            break;
        case 'd':
            dp_name = optarg;
            break;
        case OPT_TTL:
            ttl = optarg;
            break;
        case OPT_OUT:
            out_path = optarg;
            break;
        case 'o':
            if (output_parse_format(optarg, 1u << OUTPUT_TEXT | 1u << OUTPUT_JSON, &format) < 0)
                return EXIT_TROUBLE;
            break;
        case 'h':
            fputs(cmd_token_usage, stdout);
            return EXIT_OK;
        default:
            cli_flag_error(c, argc, argv);
            return EXIT_TROUBLE;
        }
    }
    if (optind + 1 != argc) {
        cli_error("give one of issue, revoke, list; run 'meshca help token'");
        return EXIT_TROUBLE;
    }
    const char *what = argv[optind];
    int is_list = strcmp(what, "list") == 0;
    if (!is_list && strcmp(what, "issue") != 0 && strcmp(what, "revoke") != 0) {
        cli_error("unknown token command '%s'; expected issue, revoke or list", what);
        return EXIT_TROUBLE;
    }
    if (!is_list && (!mesh_name || !dp_name)) {
        cli_error("token %s needs -m MESH and -d DATAPLANE", what);
        return EXIT_TROUBLE;
    }
    if (((ttl || out_path) && strcmp(what, "issue") != 0) || (dp_name && is_list)) {
        cli_error("token %s does not take %s", what, ttl ? "--ttl" : out_path ? "--out" : "-d");
        return EXIT_TROUBLE;
    }
    if (out_path && !out_path[0]) {
        cli_error("--out needs a file name");
        return EXIT_TROUBLE;
    }
    if ((mesh_name && !store_name_valid(mesh_name)) || (dp_name && !store_name_valid(dp_name))) {
        cli_error("invalid %s name '%s'",
                  mesh_name && !store_name_valid(mesh_name) ? "mesh" : "dataplane",
                  mesh_name && !store_name_valid(mesh_name) ? mesh_name : dp_name);
        return EXIT_INVALID;
    }
    int64_t ttl_s = TOKEN_DEFAULT_TTL_S;
    if (ttl) {
        int64_t ms = 0;
        if (model_parse_duration(ttl, &ms) < 0 || ms < 1000 || ms / 1000 > TOKEN_MAX_TTL_S) {
            cli_error("--ttl: '%s' is not a duration between 1s and 366d (e.g. 24h)", ttl);
            return EXIT_INVALID;
        }
        ttl_s = ms / 1000;
    }

    store *s = cli_open_store();
    if (!s)
        return EXIT_TROUBLE;
    int code = is_list                      ? list(s, mesh_name, format)
               : strcmp(what, "issue") == 0 ? issue(s, mesh_name, dp_name, ttl_s, out_path)
                                            : revoke_tokens(s, mesh_name, dp_name);
    store_close(s);
    return code;
}
