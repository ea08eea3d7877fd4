/* cfssl_client.c - a client of cfssl's API and the meshca intermediate CA that cfssl signs. */
#include "reconciler/ca/cfssl_client.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "reconciler/ca/extca_pki.h"
#include "reconciler/ca/http_client.h"
#include "reconciler/datasource.h"

#define ERRBUF MESHCA_ERRBUF

struct cfssl_client {
    http_client *http;
    char who[160];                 /* "cfssl backend 'NAME' (mesh M)" */
    char *url;                     /* without a trailing '/' */
    char *profile;                 /* NULL: cfssl's default profile */
    char *mesh;
    unsigned char key[CFSSL_MAX_AUTH_KEY];   /* secret; wiped on free */
    size_t key_len;                /* 0: no authKey, /sign is used */
};

void cfssl_client_free(cfssl_client *c)
{
    if (!c)
        return;
    http_client_free(c->http);
    free(c->url);
    free(c->profile);
    free(c->mesh);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

const char *cfssl_client_profile(const cfssl_client *c)
{
    return c->profile;
}

static const char *conf_string(const mnode *map, const char *key)
{
    const mnode *n = mnode_get(map, key);

    return n && n->kind == MNODE_SCALAR && !mnode_is_null(n) ? n->scalar : NULL;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower(ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* cfssl's standard auth provider takes the key as hex; surrounding whitespace is dropped. */
static int take_key(cfssl_client *c, const char *data, size_t len, const char *path, char *errbuf)
{
    size_t b = 0, e = len;

    while (b < e && isspace((unsigned char)data[b]))
        b++;
    while (e > b && isspace((unsigned char)data[e - 1]))
        e--;
    if (e == b || (e - b) % 2 != 0)
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s: the auth key must be hex digits (an even "
                                                  "number, as cfssl's auth_keys)", path);
    if ((e - b) / 2 > CFSSL_MAX_AUTH_KEY)
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s: the auth key is longer than %d bytes",
                           path, CFSSL_MAX_AUTH_KEY);
    for (size_t i = b; i < e; i += 2) {
        int hi = hexval((unsigned char)data[i]), lo = hexval((unsigned char)data[i + 1]);

        if (hi < 0 || lo < 0) {
            OPENSSL_cleanse(c->key, sizeof(c->key));
            return meshca_fail(errbuf, MESHCA_EINVAL, "%s: the auth key is not hex", path);
        }
        c->key[(i - b) / 2] = (unsigned char)(hi << 4 | lo);
    }
    c->key_len = (e - b) / 2;
    return 0;
}

int cfssl_client_open(const ca_context *ctx, const cfssl_client_options *opts,
                      cfssl_client **ret, char *errbuf)
{
    static const cfssl_client_options defaults = CFSSL_CLIENT_OPTIONS_INIT;
    http_client_options hopts = HTTP_CLIENT_OPTIONS_INIT;
    const mnode *conf = ctx->backend->conf, *ak;
    const char *url, *profile;
    char path[256], why[ERRBUF], *key = NULL;
    size_t key_len = 0;
    cfssl_client *c;
    int rc;

    if (!opts)
        opts = &defaults;
    ca_conf_path(ctx, "", path, sizeof(path));
    url = conf_string(conf, "url");
    profile = conf_string(conf, "profile");
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s.url: an http:// or https:// URL is required",
                           path);
    if (profile && (strlen(profile) == 0 || strlen(profile) > CFSSL_MAX_PROFILE))
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s.profile: 1 to %d bytes", path,
                           CFSSL_MAX_PROFILE);
    c = calloc(1, sizeof(*c));
    if (!c)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    snprintf(c->who, sizeof(c->who), "cfssl backend '%.60s' (mesh %.63s)",
             ctx->backend->name.value ? ctx->backend->name.value : "?", ctx->mesh ? ctx->mesh : "?");
    c->url = strdup(url);
    c->profile = profile ? strdup(profile) : NULL;
    c->mesh = strdup(ctx->mesh ? ctx->mesh : "mesh");
    if (!c->url || (profile && !c->profile) || !c->mesh) {
        rc = meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t n = strlen(c->url); n > 0 && c->url[n - 1] == '/'; n--)
        c->url[n - 1] = '\0';
    ak = mnode_get(conf, "authKey");
    if (ak && !mnode_is_null(ak)) {
        char kpath[300];

        snprintf(kpath, sizeof(kpath), "%s.authKey", path);
        rc = datasource_read(ak, ctx, &key, &key_len, why);
        if (rc < 0) {
            meshca_fail(errbuf, rc, "%s: %s", kpath, why);
            goto out;
        }
        if ((rc = take_key(c, key, key_len, kpath, errbuf)) < 0)
            goto out;
    }
    hopts.connect_timeout_ms = opts->connect_timeout_ms;
    hopts.timeout_ms = opts->timeout_ms;
    hopts.max_response = opts->max_response;
    rc = http_client_new(&hopts, &c->http, why);
    if (rc < 0) {
        meshca_fail(errbuf, rc, "%s: %s", c->who, why);
        goto out;
    }
    *ret = c;
    c = NULL;
    rc = 0;
out:
    datasource_free(key, key_len);
    cfssl_client_free(c);
    return rc;
}

/* cfssl's errors: [{"code": N, "message": "..."}] as one line. */
static void join_errors(json_t *errs, char *out, size_t size)
{
    size_t used = 0, i;
    json_t *e;

    out[0] = '\0';
    json_array_foreach(errs, i, e) {
        const char *m = json_string_value(json_object_get(e, "message"));
        json_t *code = json_object_get(e, "code");
        char line[300];
        size_t n = 0;

        for (const char *p = m ? m : "?"; *p && n + 1 < sizeof(line); p++)
            line[n++] = (unsigned char)*p < 0x20 ? ' ' : *p;
        line[n] = '\0';
        int w = json_is_integer(code)
                    ? snprintf(out + used, size - used, "%s%s (code %lld)", used ? "; " : "",
                               line, (long long)json_integer_value(code))
                    : snprintf(out + used, size - used, "%s%s", used ? "; " : "", line);
        if (w < 0 || (size_t)w >= size - used)
            break;
        used += (size_t)w;
    }
}

/* POSTs `body` to /api/v1/cfssl/<endpoint> and returns result.certificate, checked to parse. */
static int post_for_certificate(cfssl_client *c, const char *op, const char *endpoint,
                                const char *body, char **ret_pem, char *errbuf)
{
    char url[HTTP_CLIENT_MAX_URL], why[ERRBUF], msg[ERRBUF];
    http_response resp = {0};
    json_t *root = NULL, *ok, *errs, *cert;
    X509 *x = NULL;
    int rc;

    if ((size_t)snprintf(url, sizeof(url), "%s/api/v1/cfssl/%s", c->url, endpoint) >= sizeof(url))
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s: %s: URL too long", c->who, op);
    rc = http_client_request(c->http, "POST", url, NULL, body, strlen(body), &resp, why);
    if (rc == MESHCA_EUNAVAILABLE)
        return meshca_fail(errbuf, rc, "%s: %s: cfssl at %.200s unreachable: %s", c->who, op,
                           c->url, why);
    if (rc < 0)
        return meshca_fail(errbuf, rc, "%s: %s: %s", c->who, op, why);
    root = json_loads(resp.body, 0, NULL);
    ok = json_object_get(root, "success");
    errs = json_object_get(root, "errors");
    if (json_is_false(ok) || (resp.status >= 400 && root)) {
        join_errors(errs, msg, sizeof(msg));
        if (!msg[0])
            snprintf(msg, sizeof(msg), "no error message");
        if (resp.status >= 500)
            rc = meshca_fail(errbuf, MESHCA_EUNAVAILABLE, "%s: %s: cfssl failed (HTTP %ld): "
                                                          "cfssl: %s", c->who, op, resp.status, msg);
        else if (strstr(msg, "authentication") || strstr(msg, "invalid token"))
            rc = meshca_fail(errbuf, MESHCA_EINVAL, "%s: %s: authentication refused (%s): "
                                                    "cfssl: %s", c->who, op,
                             c->key_len ? "check authKey against the profile's auth_key"
                                        : "the profile needs an authKey",
                             msg);
        else
            rc = meshca_fail(errbuf, MESHCA_EINVAL, "%s: %s: refused (HTTP %ld): cfssl: %s",
                             c->who, op, resp.status, msg);
        goto out;
    }
    if (resp.status >= 500) {
        rc = meshca_fail(errbuf, MESHCA_EUNAVAILABLE, "%s: %s: cfssl failed (HTTP %ld)", c->who,
                         op, resp.status);
        goto out;
    }
    cert = json_object_get(json_object_get(root, "result"), "certificate");
    if (!json_is_true(ok) || !json_is_string(cert)) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "%s: %s: malformed answer from cfssl (HTTP %ld, %s)",
                         c->who, op, resp.status,
                         root ? "no result.certificate" : "not JSON");
        goto out;
    }
    rc = pki_cert_from_pem(json_string_value(cert), json_string_length(cert), &x, why);
    if (rc < 0) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "%s: %s: malformed answer from cfssl: %s", c->who,
                         op, why);
        goto out;
    }
    *ret_pem = strdup(json_string_value(cert));
    rc = *ret_pem ? 0 : meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
out:
    X509_free(x);
    json_decref(root);
    http_response_clear(&resp);
    return rc;
}

int cfssl_info(cfssl_client *c, const char *profile, char **ret_root_pem, char *errbuf)
{
    json_t *req;
    char *body;
    int rc;

    if (!profile)
        profile = c->profile;
    req = json_pack("{s:s, s:s}", "label", "", "profile", profile ? profile : "");
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    rc = post_for_certificate(c, "info (POST /api/v1/cfssl/info)", "info", body, ret_root_pem,
                              errbuf);
    free(body);
    return rc;
}

static char *base64(const unsigned char *data, size_t len)
{
    size_t cap = 4 * ((len + 2) / 3) + 1;
    char *out = malloc(cap);

    if (out && EVP_EncodeBlock((unsigned char *)out, data, (int)len) < 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* cfssl's authenticated request: {"token": base64(HMAC-SHA256(key, request)), "request":
 * base64(request)} (cfssl auth.AuthenticatedRequest; []byte fields are base64 in JSON). */
static char *wrap_authenticated(cfssl_client *c, const char *request)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    char *tok = NULL, *req64 = NULL, *body = NULL;
    json_t *o = NULL;

    if (!HMAC(EVP_sha256(), c->key, (int)c->key_len, (const unsigned char *)request,
              strlen(request), mac, &mac_len))
        goto out;
    tok = base64(mac, mac_len);
    req64 = base64((const unsigned char *)request, strlen(request));
    if (!tok || !req64)
        goto out;
    o = json_pack("{s:s, s:s}", "token", tok, "request", req64);
    body = o ? json_dumps(o, JSON_COMPACT) : NULL;
out:
    OPENSSL_cleanse(mac, sizeof(mac));
    free(tok);
    free(req64);
    json_decref(o);
    return body;
}

int cfssl_sign_ca(cfssl_client *c, const char *csr_pem, const char *profile, char **ret_cert_pem,
                  char *errbuf)
{
    json_t *req;
    char *inner, *body;
    int rc;

    if (!csr_pem)
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s: sign: no CSR", c->who);
    if (!profile)
        profile = c->profile;
    req = json_pack("{s:s, s:s}", "certificate_request", csr_pem, "profile",
                    profile ? profile : "");
    inner = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!inner)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    if (c->key_len) {
        ERR_clear_error();
        body = wrap_authenticated(c, inner);
        free(inner);
        if (!body)
            return pki_fail(errbuf, MESHCA_ENOMEM, "cannot build the authenticated request");
        rc = post_for_certificate(c, "sign (POST /api/v1/cfssl/authsign)", "authsign", body,
                                  ret_cert_pem, errbuf);
    } else {
        body = inner;
        rc = post_for_certificate(c, "sign (POST /api/v1/cfssl/sign)", "sign", body,
                                  ret_cert_pem, errbuf);
    }
    free(body);
    return rc;
}

void cfssl_intermediate_clear(cfssl_intermediate *im)
{
    if (!im)
        return;
    X509_free(im->cert);
    EVP_PKEY_free(im->key);   /* OpenSSL wipes key material when it frees a key */
    X509_free(im->root);
    memset(im, 0, sizeof(*im));
}

bool cfssl_intermediate_due(const cfssl_intermediate *im, int64_t now)
{
    return !im->cert || now >= im->renew_at;
}

int cfssl_make_intermediate(cfssl_client *c, int64_t now, cfssl_intermediate *ret, char *errbuf)
{
    cfssl_intermediate im = {0};
    char *root_pem = NULL, *csr = NULL, *cert_pem = NULL, cn[65], why[ERRBUF];
    int rc;

    snprintf(cn, sizeof(cn), "meshca %s intermediate", c->mesh);
    if ((rc = cfssl_info(c, NULL, &root_pem, errbuf)) < 0)
        goto out;
    if ((rc = pki_cert_from_pem(root_pem, strlen(root_pem), &im.root, why)) < 0 ||
        (rc = pki_generate_key(false, 0, &im.key, why)) < 0 ||
        (rc = extca_pki_make_csr(im.key, cn, NULL, 0, true, &csr, why)) < 0) {
        rc = meshca_fail(errbuf, rc, "%s: intermediate: %s", c->who, why);
        goto out;
    }
    if ((rc = cfssl_sign_ca(c, csr, NULL, &cert_pem, errbuf)) < 0)
        goto out;
    if ((rc = pki_cert_from_pem(cert_pem, strlen(cert_pem), &im.cert, why)) < 0) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "%s: intermediate: %s", c->who, why);
        goto out;
    }
    rc = extca_pki_check_intermediate(im.cert, im.key, im.root, now, why);
    if (rc < 0) {
        rc = meshca_fail(errbuf, rc, "%s: intermediate from profile '%s': %s", c->who,
                         c->profile ? c->profile : "(default)", why);
        goto out;
    }
    if (pki_cert_not_before(im.cert, &im.not_before) < 0 ||
        pki_cert_not_after(im.cert, &im.not_after) < 0 || im.not_after <= now) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "%s: intermediate: unreadable or past validity",
                         c->who);
        goto out;
    }
    im.renew_at = extca_pki_intermediate_renewal(im.not_before, im.not_after);
    *ret = im;
    memset(&im, 0, sizeof(im));
    rc = 0;
out:
    cfssl_intermediate_clear(&im);
    free(root_pem);
    free(csr);
    free(cert_pem);
    return rc;
}

int cfssl_check(cfssl_client *c, int64_t now, char *errbuf)
{
    cfssl_intermediate im = {0};
    int rc = cfssl_make_intermediate(c, now, &im, errbuf);

    cfssl_intermediate_clear(&im);
    return rc;
}
