/* vault_client.c - a client of Vault's PKI secrets engine: signs CSRs and reads the CA chain over HTTPS. */
#include "reconciler/ca/vault_client.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "reconciler/ca/extca_pki.h"
#include "reconciler/ca/http_client.h"
#include "reconciler/datasource.h"

#define VAULT_MAX_PATH 256      /* pki mount path, role, namespace */
#define ERRBUF MESHCA_ERRBUF

struct vault_client {
    http_client *http;
    char who[160];            /* "vault backend 'NAME' (mesh M)": the prefix of every message */
    char *address;            /* without a trailing '/' */
    char *namespace;          /* NULL: none */
    char *pki, *role, *common_name;
    char *mesh;
    char *token;              /* secret; wiped on free */
    bool cert_auth;
    int64_t token_renew_at;   /* cert auth: log in again from this time (0: never logged in) */
    unsigned logins;
    int64_t (*clock)(void *userdata);
    void *clock_userdata;
};

static int64_t now_of(const vault_client *c)
{
    return c->clock ? c->clock(c->clock_userdata) : (int64_t)time(NULL);
}

static void free_secret_str(char *s)
{
    if (!s)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

void vault_client_free(vault_client *c)
{
    if (!c)
        return;
    http_client_free(c->http);
    free(c->address);
    free(c->namespace);
    free(c->pki);
    free(c->role);
    free(c->common_name);
    free(c->mesh);
    free_secret_str(c->token);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

unsigned vault_client_logins(const vault_client *c)
{
    return c->logins;
}

/* ---- the commonName template ---- */

static const model_tag *find_tag(const model_tag *tags, size_t ntags, const char *key, size_t klen)
{
    for (size_t i = 0; i < ntags; i++)
        if (strlen(tags[i].key) == klen && memcmp(tags[i].key, key, klen) == 0)
            return &tags[i];
    return NULL;
}

/* Parses `{{ tag "NAME" }}` starting at p (just after "{{"). Sets name/len and the end (after
 * "}}"). Returns false on any other expression. */
static bool parse_expr(const char *p, const char **ret_name, size_t *ret_len, const char **ret_end)
{
    const char *name;

    while (*p == ' ' || *p == '\t')
        p++;
    if (strncmp(p, "tag", 3) != 0 || (p[3] != ' ' && p[3] != '\t'))
        return false;
    p += 3;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '"')
        return false;
    name = ++p;
    while (*p && *p != '"' && *p != '\\' && *p != '{' && *p != '}')
        p++;
    if (*p != '"' || p == name)
        return false;
    *ret_name = name;
    *ret_len = (size_t)(p - name);
    p++;
    while (*p == ' ' || *p == '\t')
        p++;
    if (p[0] != '}' || p[1] != '}')
        return false;
    *ret_end = p + 2;
    return true;
}

/* Renders tmpl; with check_only, only the syntax is checked (tags are not looked up). */
static int render(const char *tmpl, const model_tag *tags, size_t ntags, bool check_only,
                  char **ret, char *errbuf)
{
    char out[VAULT_MAX_COMMON_NAME + 1];
    size_t used = 0;
    const char *p = tmpl;

    if (strlen(tmpl) > VAULT_MAX_TEMPLATE)
        return meshca_fail(errbuf, MESHCA_EINVAL, "commonName template longer than %d bytes",
                           VAULT_MAX_TEMPLATE);
    while (*p) {
        const char *piece;
        size_t plen;

        if (p[0] == '{' && p[1] == '{') {
            const char *name, *end, *close = strstr(p + 2, "}}");
            size_t nlen;

            if (!close)
                return meshca_fail(errbuf, MESHCA_EINVAL,
                                   "commonName template: '{{' at offset %zu is never closed",
                                   (size_t)(p - tmpl));
            if (!parse_expr(p + 2, &name, &nlen, &end)) {
                int elen = (int)(close + 2 - p);
                return meshca_fail(errbuf, MESHCA_EINVAL,
                                   "commonName template: unsupported expression '%.*s' (only "
                                   "{{ tag \"NAME\" }} and literal text are supported)",
                                   elen > 80 ? 80 : elen, p);
            }
            p = end;
            if (check_only)
                continue;
            const model_tag *t = find_tag(tags, ntags, name, nlen);
            if (!t)
                return meshca_fail(errbuf, MESHCA_EINVAL,
                                   "commonName template: the dataplane has no tag '%.*s'",
                                   (int)nlen, name);
            piece = t->value;
            plen = strlen(t->value);
        } else if (p[0] == '}' && p[1] == '}') {
            return meshca_fail(errbuf, MESHCA_EINVAL,
                               "commonName template: '}}' at offset %zu without '{{'",
                               (size_t)(p - tmpl));
        } else {
            piece = p++;
            plen = 1;
            if ((unsigned char)*piece < 0x20 || *piece == 0x7f)
                return meshca_fail(errbuf, MESHCA_EINVAL,
                                   "commonName template holds a control character");
        }
        if (check_only)
            continue;
        if (plen > VAULT_MAX_COMMON_NAME - used)
            return meshca_fail(errbuf, MESHCA_EINVAL,
                               "common name from the template is longer than %d bytes",
                               VAULT_MAX_COMMON_NAME);
        memcpy(out + used, piece, plen);
        used += plen;
    }
    if (check_only)
        return 0;
    if (used == 0)
        return meshca_fail(errbuf, MESHCA_EINVAL, "common name from the template is empty");
    out[used] = '\0';
    *ret = strdup(out);
    return *ret ? 0 : meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
}

int vault_render_common_name(const char *tmpl, const model_tag *tags, size_t ntags, char **ret,
                             char *errbuf)
{
    return render(tmpl, tags, ntags, false, ret, errbuf);
}

int vault_client_common_name(vault_client *c, const model_tag *tags, size_t ntags, char **ret,
                             char *errbuf)
{
    char why[ERRBUF];
    int rc = render(c->common_name, tags, ntags, false, ret, why);

    return rc < 0 ? meshca_fail(errbuf, rc, "%s: %s", c->who, why) : 0;
}

/* ---- configuration ---- */

static const char *conf_string(const mnode *map, const char *key)
{
    const mnode *n = mnode_get(map, key);

    return n && n->kind == MNODE_SCALAR && !mnode_is_null(n) ? n->scalar : NULL;
}

/* A pki mount path ("pki", "pki/int") or role: letters, digits, '-', '_', '.', and for mounts
 * '/', never an empty segment or "..": it becomes part of a URL path. */
static bool path_ok(const char *s, bool slashes)
{
    size_t n = strlen(s);

    if (n == 0 || n > VAULT_MAX_PATH || s[0] == '/' || s[n - 1] == '/' || strstr(s, "..") ||
        strstr(s, "//"))
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.' &&
            !(slashes && *p == '/'))
            return false;
    return true;
}

static int dup_to(char **dst, const char *src, char *errbuf)
{
    *dst = strdup(src);
    return *dst ? 0 : meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
}

/* Reads a datasource at conf path `suffix` with the path in any message. */
static int read_ds(const ca_context *ctx, const mnode *ds, const char *suffix, char **ret,
                   size_t *ret_len, char *errbuf)
{
    char path[256], why[ERRBUF];
    int rc = datasource_read(ds, ctx, ret, ret_len, why);

    if (rc < 0) {
        ca_conf_path(ctx, suffix, path, sizeof(path));
        return meshca_fail(errbuf, rc, "%s: %s", path, why);
    }
    return 0;
}

/* The token from a datasource: surrounding whitespace dropped (files end with a newline); no
 * control characters, since it goes into an HTTP header. */
static int take_token(vault_client *c, char *data, size_t len, const char *path, char *errbuf)
{
    size_t b = 0, e = len;

    while (b < e && isspace((unsigned char)data[b]))
        b++;
    while (e > b && isspace((unsigned char)data[e - 1]))
        e--;
    if (e == b)
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s: the token is empty", path);
    if (e - b > VAULT_MAX_TOKEN)
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s: the token is longer than %d bytes", path,
                           VAULT_MAX_TOKEN);
    for (size_t i = b; i < e; i++)
        if ((unsigned char)data[i] < 0x21 || data[i] == 0x7f)
            return meshca_fail(errbuf, MESHCA_EINVAL,
                               "%s: the token holds whitespace or a control character", path);
    c->token = malloc(e - b + 1);
    if (!c->token)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    memcpy(c->token, data + b, e - b);
    c->token[e - b] = '\0';
    return 0;
}

int vault_client_open(const ca_context *ctx, const vault_client_options *opts,
                      vault_client **ret, char *errbuf)
{
    static const vault_client_options defaults = VAULT_CLIENT_OPTIONS_INIT;
    http_client_options hopts = HTTP_CLIENT_OPTIONS_INIT;
    const mnode *conf = ctx->backend->conf, *cp, *tls, *auth, *token_ds, *atls;
    const char *address, *ns, *pki, *role, *cn, *server_name;
    char *ca_pem = NULL, *token = NULL, *ccert = NULL, *ckey = NULL, path[256], why[ERRBUF];
    size_t ca_len = 0, token_len = 0, ccert_len = 0, ckey_len = 0;
    bool skip_verify = false;
    vault_client *c;
    int rc;

    if (!opts)
        opts = &defaults;
    cp = mnode_get(conf, "fromCp");
    ca_conf_path(ctx, ".fromCp", path, sizeof(path));
    if (!cp || cp->kind != MNODE_MAP)
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s: required mapping is missing", path);
    address = conf_string(cp, "address");
    pki = conf_string(cp, "pki");
    role = conf_string(cp, "role");
    ns = conf_string(cp, "namespace");
    cn = conf_string(cp, "commonName");
    if (!address || (strncmp(address, "https://", 8) != 0 && strncmp(address, "http://", 7) != 0))
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s.address: an http:// or https:// URL is "
                                                  "required", path);
    if (!pki || !path_ok(pki, true))
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s.pki: a mount path such as 'pki' or "
                                                  "'pki/int' is required", path);
    if (!role || !path_ok(role, false))
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s.role: a role name (letters, digits, "
                                                  "'-', '_', '.') is required", path);
    if (ns && !path_ok(ns, true))
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s.namespace: not a namespace path", path);
    if (!cn)
        cn = VAULT_DEFAULT_COMMON_NAME;
    rc = render(cn, NULL, 0, true, NULL, why);
    if (rc < 0)
        return meshca_fail(errbuf, rc, "%s.commonName: %s", path, why);

    c = calloc(1, sizeof(*c));
    if (!c)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    snprintf(c->who, sizeof(c->who), "vault backend '%.60s' (mesh %.63s)",
             ctx->backend->name.value ? ctx->backend->name.value : "?", ctx->mesh ? ctx->mesh : "?");
    c->clock = opts->clock;
    c->clock_userdata = opts->clock_userdata;
    if ((rc = dup_to(&c->address, address, errbuf)) < 0 || (rc = dup_to(&c->pki, pki, errbuf)) < 0 ||
        (rc = dup_to(&c->role, role, errbuf)) < 0 || (rc = dup_to(&c->common_name, cn, errbuf)) < 0 ||
        (rc = dup_to(&c->mesh, ctx->mesh ? ctx->mesh : "mesh", errbuf)) < 0 ||
        (ns && (rc = dup_to(&c->namespace, ns, errbuf)) < 0))
        goto out;
    for (size_t n = strlen(c->address); n > 0 && c->address[n - 1] == '/'; n--)
        c->address[n - 1] = '\0';

    tls = mnode_get(cp, "tls");
    server_name = NULL;
    if (tls && tls->kind == MNODE_MAP) {
        const mnode *skip = mnode_get(tls, "skipVerify"), *ca = mnode_get(tls, "caCert");

        if (skip && !mnode_is_null(skip) && !mnode_as_bool(skip, &skip_verify)) {
            rc = meshca_fail(errbuf, MESHCA_EINVAL, "%s.tls.skipVerify: expected a boolean", path);
            goto out;
        }
        server_name = conf_string(tls, "serverName");
        if (ca && !mnode_is_null(ca) &&
            (rc = read_ds(ctx, ca, ".fromCp.tls.caCert", &ca_pem, &ca_len, errbuf)) < 0)
            goto out;
    }

    auth = mnode_get(cp, "auth");
    token_ds = auth ? mnode_get(auth, "token") : NULL;
    atls = auth ? mnode_get(auth, "tls") : NULL;
    if (!auth || (token_ds == NULL) == (atls == NULL)) {
        rc = meshca_fail(errbuf, MESHCA_EINVAL, "%s.auth: exactly one of 'token' or 'tls' is "
                                                "required", path);
        goto out;
    }
    if (token_ds) {
        char tpath[300];

        snprintf(tpath, sizeof(tpath), "%s.auth.token", path);
        if ((rc = read_ds(ctx, token_ds, ".fromCp.auth.token", &token, &token_len, errbuf)) < 0 ||
            (rc = take_token(c, token, token_len, tpath, errbuf)) < 0)
            goto out;
    } else {
        if ((rc = read_ds(ctx, mnode_get(atls, "clientCert"), ".fromCp.auth.tls.clientCert",
                          &ccert, &ccert_len, errbuf)) < 0 ||
            (rc = read_ds(ctx, mnode_get(atls, "clientKey"), ".fromCp.auth.tls.clientKey", &ckey,
                          &ckey_len, errbuf)) < 0)
            goto out;
        c->cert_auth = true;
        hopts.client_cert_pem = ccert;
        hopts.client_cert_len = ccert_len;
        hopts.client_key_pem = ckey;
        hopts.client_key_len = ckey_len;
    }
    hopts.connect_timeout_ms = opts->connect_timeout_ms;
    hopts.timeout_ms = opts->timeout_ms;
    hopts.max_response = opts->max_response;
    hopts.ca_pem = ca_pem;
    hopts.ca_pem_len = ca_len;
    hopts.server_name = server_name;
    hopts.skip_verify = skip_verify;
    rc = http_client_new(&hopts, &c->http, why);
    if (rc < 0) {
        meshca_fail(errbuf, rc, "%s: %s", c->who, why);
        goto out;
    }
    *ret = c;
    c = NULL;
    rc = 0;
out:
    datasource_free(ca_pem, ca_len);
    datasource_free(token, token_len);
    datasource_free(ccert, ccert_len);
    datasource_free(ckey, ckey_len);
    vault_client_free(c);
    return rc;
}

/* ---- requests and Vault's answers ---- */

/* Copies `in` into out as one line: control characters become spaces, runs of spaces collapse
 * (Vault's multi-error messages are "1 error occurred:\n\t* ..."). */
static void one_line(const char *in, char *out, size_t size)
{
    size_t n = 0;
    bool space = true;

    for (const char *p = in; *p && n + 1 < size; p++) {
        unsigned char ch = (unsigned char)*p;

        if (ch < 0x20 || ch == 0x7f || ch == ' ') {
            if (!space)
                out[n++] = ' ';
            space = true;
            continue;
        }
        out[n++] = (char)ch;
        space = false;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

/* Joins the strings of a JSON array ("errors" or "warnings") as one line. */
static void join_messages(json_t *arr, char *out, size_t size)
{
    char line[ERRBUF];
    size_t used = 0;
    size_t i;
    json_t *v;

    out[0] = '\0';
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v))
            continue;
        one_line(json_string_value(v), line, sizeof(line));
        int n = snprintf(out + used, size - used, "%s%s", used ? "; " : "", line);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
}

static bool mentions_max_ttl(const char *msg)
{
    return strstr(msg, "maxTTL") || strstr(msg, "max_ttl") || strstr(msg, "max TTL");
}

/* Turns a non-2xx answer into a code and message. */
static int refuse(vault_client *c, const char *op, long status, const char *body, int64_t ttl_s,
                  char *errbuf)
{
    char msg[ERRBUF] = "";
    json_t *root = json_loads(body, 0, NULL);
    json_t *errs = json_object_get(root, "errors");

    if (json_is_array(errs))
        join_messages(errs, msg, sizeof(msg));
    json_decref(root);
    if (!msg[0])
        snprintf(msg, sizeof(msg), "no error message (body is not Vault's {\"errors\":[...]})");
    if (status == 401 || status == 403)
        return meshca_fail(errbuf, MESHCA_EINVAL,
                           "%s: %s: authentication refused (HTTP %ld): Vault: %s", c->who, op,
                           status, msg);
    if (status == 429 || status >= 500)
        return meshca_fail(errbuf, MESHCA_EUNAVAILABLE,
                           "%s: %s: Vault unavailable (HTTP %ld): Vault: %s", c->who, op, status,
                           msg);
    if (ttl_s > 0 && mentions_max_ttl(msg))
        return meshca_fail(errbuf, MESHCA_EINVAL,
                           "%s: %s: ttl %llds is above the max_ttl of role '%s': Vault: %s",
                           c->who, op, (long long)ttl_s, c->role, msg);
    return meshca_fail(errbuf, MESHCA_EINVAL, "%s: %s: refused (HTTP %ld): Vault: %s", c->who, op,
                       status, msg);
}

static int transport(vault_client *c, const char *op, int rc, const char *why, char *errbuf)
{
    if (rc == MESHCA_EUNAVAILABLE)
        return meshca_fail(errbuf, rc, "%s: %s: Vault at %.200s unreachable: %s", c->who, op,
                           c->address, why);
    return meshca_fail(errbuf, rc, "%s: %s: %s", c->who, op, why);
}

/* Sends one request with the namespace and token headers. */
static int call(vault_client *c, const char *method, const char *path, const char *body,
                bool with_token, http_response *resp, char *why)
{
    char url[HTTP_CLIENT_MAX_URL], nsh[VAULT_MAX_PATH + 32];
    char *tokh = NULL;
    const char *headers[3];
    size_t nh = 0;
    int rc;

    if ((size_t)snprintf(url, sizeof(url), "%s/v1/%s", c->address, path) >= sizeof(url))
        return meshca_fail(why, MESHCA_EINVAL, "URL too long");
    if (c->namespace) {
        snprintf(nsh, sizeof(nsh), "X-Vault-Namespace: %s", c->namespace);
        headers[nh++] = nsh;
    }
    if (with_token && c->token) {
        size_t n = strlen(c->token) + sizeof("X-Vault-Token: ");
        tokh = malloc(n);
        if (!tokh)
            return meshca_fail(why, MESHCA_ENOMEM, "out of memory");
        snprintf(tokh, n, "X-Vault-Token: %s", c->token);
        headers[nh++] = tokh;
    }
    headers[nh] = NULL;
    rc = http_client_request(c->http, method, url, headers, body, body ? strlen(body) : 0, resp,
                             why);
    free_secret_str(tokh);
    return rc;
}

/* TLS certificate auth: POST /v1/auth/cert/login when there is no token or it is two thirds
 * into its lease (so it is renewed before Vault lets it expire). */
static int ensure_token(vault_client *c, char *errbuf)
{
    static const char op[] = "login (POST /v1/auth/cert/login)";
    http_response resp = {0};
    char why[ERRBUF];
    json_t *root = NULL, *auth, *tok, *lease;
    int64_t now = now_of(c);
    int rc;

    if (!c->cert_auth || (c->token && now < c->token_renew_at))
        return 0;
    rc = call(c, "POST", "auth/cert/login", "{}", false, &resp, why);
    c->logins++;
    if (rc < 0)
        return transport(c, op, rc, why, errbuf);
    if (resp.status < 200 || resp.status > 299) {
        rc = refuse(c, op, resp.status, resp.body, 0, errbuf);
        goto out;
    }
    root = json_loads(resp.body, 0, NULL);
    auth = json_object_get(root, "auth");
    tok = json_object_get(auth, "client_token");
    lease = json_object_get(auth, "lease_duration");
    if (!json_is_string(tok) || json_string_length(tok) == 0 ||
        json_string_length(tok) > VAULT_MAX_TOKEN || (lease && !json_is_integer(lease))) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "%s: %s: malformed answer (no auth.client_token)",
                         c->who, op);
        goto out;
    }
    for (const char *p = json_string_value(tok); *p; p++)
        if ((unsigned char)*p < 0x21 || *p == 0x7f) {
            rc = meshca_fail(errbuf, MESHCA_EIO, "%s: %s: malformed token in the answer", c->who,
                             op);
            goto out;
        }
    free_secret_str(c->token);
    c->token = strdup(json_string_value(tok));
    if (!c->token) {
        rc = meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
        goto out;
    }
    {
        json_int_t l = lease ? json_integer_value(lease) : 0;
        /* lease 0: a token that does not expire (root-like); renew once a day anyway. */
        c->token_renew_at = now + (l > 0 ? (int64_t)l * 2 / 3 : 86400);
    }
    rc = 0;
out:
    if (root) {
        /* jansson holds a copy of the token in the parsed tree: wipe it before it is freed. */
        json_t *t = json_object_get(json_object_get(root, "auth"), "client_token");
        if (json_is_string(t))
            OPENSSL_cleanse((char *)json_string_value(t), json_string_length(t));
    }
    json_decref(root);
    http_response_clear(&resp);
    return rc;
}

static int pem_dup(const char *pem, char **ret)
{
    *ret = strdup(pem);
    return *ret ? 0 : MESHCA_ENOMEM;
}

/* The leaf must be for the CSR's key: Vault signing something else is a broken answer. */
static bool cert_matches_csr(X509 *cert, const char *csr_pem)
{
    BIO *b = BIO_new_mem_buf(csr_pem, -1);
    X509_REQ *req = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
    bool ok = req && EVP_PKEY_eq(X509_get0_pubkey(cert), X509_REQ_get0_pubkey(req)) == 1;

    X509_REQ_free(req);
    BIO_free(b);
    ERR_clear_error();
    return ok;
}

int vault_sign_csr(vault_client *c, const char *csr_pem, const char *common_name,
                   const char *const *uri_sans, size_t nuris, int64_t ttl_s, char **ret_cert_pem,
                   char **ret_chain_pem, char *errbuf)
{
    char op[VAULT_MAX_PATH * 2 + 64], path[VAULT_MAX_PATH * 2 + 16], ttl[32], why[ERRBUF];
    char *body = NULL, *cert_pem = NULL, *chain_pem = NULL;
    json_t *req = NULL, *sans = NULL, *root = NULL, *data, *cert, *chain, *issuing, *warn;
    http_response resp = {0};
    X509 *x = NULL;
    int rc;

    snprintf(path, sizeof(path), "%s/sign/%s", c->pki, c->role);
    snprintf(op, sizeof(op), "sign (POST /v1/%s)", path);
    if (!csr_pem || !common_name || ttl_s <= 0 || nuris > PKI_MAX_SANS || (nuris && !uri_sans))
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s: %s: invalid request", c->who, op);
    if ((rc = ensure_token(c, errbuf)) < 0)
        return rc;
    /* Vault's uri_sans is a comma-separated list; a comma inside a URI would split it. */
    sans = json_array();
    for (size_t i = 0; sans && i < nuris; i++) {
        if (strchr(uri_sans[i], ',')) {
            rc = meshca_fail(errbuf, MESHCA_EINVAL, "%s: %s: URI SAN '%.200s' holds a comma",
                             c->who, op, uri_sans[i]);
            goto out;
        }
        if (json_array_append_new(sans, json_string(uri_sans[i])) < 0) {
            rc = meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
            goto out;
        }
    }
    snprintf(ttl, sizeof(ttl), "%llds", (long long)ttl_s);
    req = sans ? json_pack("{s:s, s:s, s:O, s:s, s:s}", "csr", csr_pem, "common_name", common_name,
                           "uri_sans", sans, "ttl", ttl, "format", "pem")
               : NULL;
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    if (!body) {
        rc = meshca_fail(errbuf, MESHCA_ENOMEM, "%s: %s: cannot encode the request", c->who, op);
        goto out;
    }
    rc = call(c, "POST", path, body, true, &resp, why);
    if (rc < 0) {
        rc = transport(c, op, rc, why, errbuf);
        goto out;
    }
    if (resp.status < 200 || resp.status > 299) {
        /* A cert-auth token Vault no longer honours (revoked, expired early): log in again on
         * the next attempt instead of failing until the renewal point. */
        if (c->cert_auth && (resp.status == 401 || resp.status == 403))
            c->token_renew_at = 0;
        rc = refuse(c, op, resp.status, resp.body, ttl_s, errbuf);
        goto out;
    }
    root = json_loads(resp.body, 0, NULL);
    data = json_object_get(root, "data");
    cert = json_object_get(data, "certificate");
    if (!json_is_string(cert)) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "%s: %s: malformed answer from Vault (%s)", c->who,
                         op, root ? "no data.certificate" : "not JSON");
        goto out;
    }
    /* Vault does not fail a ttl above max_ttl: it signs for max_ttl and warns. A shorter leaf
     * than asked breaks the rotation arithmetic (S5), so it is refused here, by name. */
    warn = json_object_get(root, "warnings");
    if (json_is_array(warn)) {
        char msg[ERRBUF];

        join_messages(warn, msg, sizeof(msg));
        if (mentions_max_ttl(msg)) {
            rc = meshca_fail(errbuf, MESHCA_EINVAL,
                             "%s: %s: ttl %llds is above the max_ttl of role '%s': Vault: %s",
                             c->who, op, (long long)ttl_s, c->role, msg);
            goto out;
        }
    }
    rc = pki_cert_from_pem(json_string_value(cert), json_string_length(cert), &x, why);
    if (rc < 0 || !cert_matches_csr(x, csr_pem)) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "%s: %s: malformed answer from Vault (%s)", c->who,
                         op, rc < 0 ? "data.certificate is not a certificate"
                                    : "the certificate is not for the CSR's key");
        goto out;
    }
    chain = json_object_get(data, "ca_chain");
    issuing = json_object_get(data, "issuing_ca");
    if (json_is_array(chain) && json_array_size(chain) > 0) {
        size_t total = 1, i;
        json_t *v;

        json_array_foreach(chain, i, v) total += json_is_string(v) ? json_string_length(v) + 1 : 0;
        chain_pem = malloc(total);
        if (chain_pem) {
            size_t used = 0;

            json_array_foreach(chain, i, v) {
                size_t n = json_is_string(v) ? json_string_length(v) : 0;

                if (n == 0)
                    continue;
                memcpy(chain_pem + used, json_string_value(v), n);
                used += n;
                if (chain_pem[used - 1] != '\n')
                    chain_pem[used++] = '\n';
            }
            chain_pem[used] = '\0';
        }
    } else if (json_is_string(issuing)) {
        chain_pem = strdup(json_string_value(issuing));
    } else {
        rc = meshca_fail(errbuf, MESHCA_EIO, "%s: %s: malformed answer from Vault (no "
                                             "data.ca_chain or data.issuing_ca)", c->who, op);
        goto out;
    }
    if (!chain_pem || pem_dup(json_string_value(cert), &cert_pem) < 0) {
        rc = meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
        goto out;
    }
    *ret_cert_pem = cert_pem;
    *ret_chain_pem = chain_pem;
    cert_pem = chain_pem = NULL;
    rc = 0;
out:
    X509_free(x);
    free(cert_pem);
    free(chain_pem);
    free(body);
    json_decref(req);
    json_decref(sans);
    json_decref(root);
    http_response_clear(&resp);
    return rc;
}

/* GET one raw-PEM endpoint. *ret NULL (and 0) when it answered 404 or with an empty body. */
static int get_pem(vault_client *c, const char *suffix, char **ret, char *errbuf)
{
    char path[VAULT_MAX_PATH + 32], op[VAULT_MAX_PATH + 64], why[ERRBUF];
    http_response resp = {0};
    STACK_OF(X509) *chain = NULL;
    int rc;

    snprintf(path, sizeof(path), "%s/%s", c->pki, suffix);
    snprintf(op, sizeof(op), "CA chain (GET /v1/%s)", path);
    *ret = NULL;
    rc = call(c, "GET", path, NULL, true, &resp, why);
    if (rc < 0)
        return transport(c, op, rc, why, errbuf);
    if (resp.status == 404 || (resp.status == 200 && resp.body_len == 0) ||
        (resp.status == 204)) {
        rc = 0;
        goto out;
    }
    if (resp.status < 200 || resp.status > 299) {
        rc = refuse(c, op, resp.status, resp.body, 0, errbuf);
        goto out;
    }
    rc = pki_chain_from_pem(resp.body, resp.body_len, &chain, why);
    if (rc < 0) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "%s: %s: malformed answer from Vault: %s", c->who,
                         op, why);
        goto out;
    }
    *ret = strdup(resp.body);
    rc = *ret ? 0 : meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
out:
    sk_X509_pop_free(chain, X509_free);
    http_response_clear(&resp);
    return rc;
}

int vault_ca_chain(vault_client *c, char **ret_pem, char *errbuf)
{
    char *pem = NULL;
    int rc;

    if ((rc = ensure_token(c, errbuf)) < 0)
        return rc;
    if ((rc = get_pem(c, "ca_chain", &pem, errbuf)) < 0)
        return rc;
    if (!pem && (rc = get_pem(c, "ca/pem", &pem, errbuf)) < 0)
        return rc;
    if (!pem)
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s: CA chain: mount '%s' has no CA (both "
                                                  "ca_chain and ca/pem are empty)", c->who, c->pki);
    *ret_pem = pem;
    return 0;
}

int vault_check(vault_client *c, int64_t ttl_s, char *errbuf)
{
    char uri[128 + VAULT_MAX_PATH], *csr = NULL, *cert = NULL, *chain = NULL, why[ERRBUF];
    const char *uris[1] = {uri};
    EVP_PKEY *key = NULL;
    int rc;

    snprintf(uri, sizeof(uri), "spiffe://%s/%s", c->mesh, VAULT_CHECK_CN);
    rc = pki_generate_key(false, 0, &key, why);
    if (rc == 0)
        rc = extca_pki_make_csr(key, VAULT_CHECK_CN, NULL, 0, false, &csr, why);
    if (rc < 0) {
        rc = meshca_fail(errbuf, rc, "%s: check: %s", c->who, why);
        goto out;
    }
    rc = vault_sign_csr(c, csr, VAULT_CHECK_CN, uris, 1, ttl_s, &cert, &chain, errbuf);
out:
    EVP_PKEY_free(key);
    free(csr);
    free(cert);
    free(chain);
    return rc;
}
