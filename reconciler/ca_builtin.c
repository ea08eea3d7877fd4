/* ca_builtin.c - the builtin CA backend: a root generated once and kept as two mesh secrets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "reconciler/ca_backend.h"

/* Reads of the secrets when concurrent creators keep conflicting (each retry sees a winner). */
#define BUILTIN_CREATE_ATTEMPTS 3
/* Longest root lifetime: an X.509 time ends at 9999-12-31, and the root is created only once,
 * so a notAfter past it would be stored broken for good (found by the hostile corpus). */
#define BUILTIN_MAX_LIFETIME_MS (1000LL * 365 * 86400 * 1000)

typedef struct builtin_conf {
    int64_t lifetime_s;
    int rsa_bits;   /* 0: EC P-256 */
} builtin_conf;

/* Reads conf.caCert; reports problems to diags when given, else returns PKI_EINVAL. */
static int read_conf(const ca_context *ctx, builtin_conf *ret, diag_list *diags, char *errbuf)
{
    const mnode *ca_cert = mnode_get(ctx->backend->conf, "caCert");
    const mnode *exp = mnode_get(ca_cert, "expiration");
    const mnode *bits = mnode_get(ca_cert, "RSAbits");
    builtin_conf conf = {CA_BUILTIN_DEFAULT_LIFETIME_S, 0};
    char path[128];
    int r = PKI_OK;

    if (exp) {
        int64_t ms;

        if (!mnode_is_string(exp) || model_parse_duration(exp->scalar, &ms) < 0 || ms < 1000 ||
            ms > BUILTIN_MAX_LIFETIME_MS) {
            ca_conf_path(ctx, ".caCert.expiration", path, sizeof(path));
            if (diags)
                diag_error(diags, "ca-conf", &exp->mark, path,
                           "caCert.expiration must be a duration such as 10y, at most 1000y");
            if (errbuf)
                snprintf(errbuf, PKI_ERRBUF, "%s: invalid caCert.expiration", path);
            r = PKI_EINVAL;
        } else {
            conf.lifetime_s = ms / 1000;
        }
    }
    if (bits) {
        long long b = 0;

        if (!mnode_as_int(bits, &b) || (b != 2048 && b != 3072 && b != 4096)) {
            ca_conf_path(ctx, ".caCert.RSAbits", path, sizeof(path));
            if (diags)
                diag_error(diags, "ca-conf", &bits->mark, path,
                           "caCert.RSAbits must be 2048, 3072 or 4096");
            if (errbuf)
                snprintf(errbuf, PKI_ERRBUF, "%s: invalid caCert.RSAbits", path);
            r = PKI_EINVAL;
        } else {
            conf.rsa_bits = (int)b;
        }
    }
    if (r == PKI_OK)
        *ret = conf;
    return r;
}

static int secret_names(const ca_context *ctx, char *cert, char *key, size_t size)
{
    const char *b = ctx->backend->name.value ? ctx->backend->name.value : "";

    if ((size_t)snprintf(cert, size, "%s.ca-builtin-cert-%s", ctx->mesh, b) >= size ||
        (size_t)snprintf(key, size, "%s.ca-builtin-key-%s", ctx->mesh, b) >= size)
        return PKI_EINVAL;
    return PKI_OK;
}

static int builtin_check(const ca_context *ctx, diag_list *diags)
{
    builtin_conf conf;

    read_conf(ctx, &conf, diags, NULL);
    return PKI_OK;
}

static int lookup(const ca_context *ctx, const char *name, char **ret, size_t *ret_len)
{
    if (!ctx->secret_lookup)
        return PKI_ENOENT;
    return ctx->secret_lookup(ctx->secret_userdata, name, ret, ret_len);
}

static int load_existing(const ca_context *ctx, const char *cert_pem, size_t cert_len,
                         const char *key_pem, size_t key_len, ca_backend **ret, char *errbuf)
{
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    int r;

    if ((r = pki_chain_from_pem(cert_pem, cert_len, &chain, errbuf)) < 0 ||
        (r = pki_key_from_pem(key_pem, key_len, &key, errbuf)) < 0)
        goto fail;
    if (!pki_key_matches(sk_X509_value(chain, 0), key)) {
        if (errbuf)
            snprintf(errbuf, PKI_ERRBUF, "builtin CA secrets of '%s': key does not match cert",
                     ctx->backend->name.value);
        r = PKI_EINVAL;
        goto fail;
    }
    if ((r = ca_local_new(&ca_builtin_ops, chain, key, ret)) < 0)
        goto fail;
    return PKI_OK;
fail:
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    return r;
}

static int generate(const ca_context *ctx, const builtin_conf *conf, const char *cert_name,
                    const char *key_name, ca_backend **ret, char *errbuf)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *chain = NULL;
    char *cert_pem = NULL, *key_pem = NULL, uri[128];
    int r;

    if ((size_t)snprintf(uri, sizeof(uri), "spiffe://%s", ctx->mesh) >= sizeof(uri))
        return PKI_EINVAL;
    if ((r = pki_generate_key(conf->rsa_bits != 0, conf->rsa_bits, &key, errbuf)) < 0 ||
        (r = pki_make_root(key, ctx->mesh, uri, ctx->now, conf->lifetime_s, &cert, errbuf)) < 0 ||
        (r = pki_cert_to_pem(cert, &cert_pem, errbuf)) < 0 ||
        (r = pki_key_to_pem(key, &key_pem, errbuf)) < 0)
        goto out;
    /* Key and cert in one create-only transaction, the cert last: concurrent passes on a fresh
     * mesh each generate a root, and only the first pair written may stand (the others re-read
     * it), so a key never meets another generation's cert and a root in use is never replaced. */
    const ca_secret pair[] = {
        {key_name, key_pem, strlen(key_pem)},
        {cert_name, cert_pem, strlen(cert_pem)},
    };
    if ((r = ctx->secret_store(ctx->secret_userdata, pair, 2)) < 0) {
        if (r != MESHCA_ECONFLICT)
            meshca_fail(errbuf, r, "cannot store builtin CA secrets %s and %s: %s", key_name,
                        cert_name, meshca_strerror(r));
        goto out;
    }
    chain = sk_X509_new_null();
    if (!chain || !sk_X509_push(chain, cert)) {
        r = PKI_ENOMEM;
        goto out;
    }
    cert = NULL;
    if ((r = ca_local_new(&ca_builtin_ops, chain, key, ret)) < 0)
        goto out;
    chain = NULL;
    key = NULL;
out:
    sk_X509_pop_free(chain, X509_free);
    X509_free(cert);
    EVP_PKEY_free(key);
    free(cert_pem);
    pki_free_secret(key_pem);
    return r;
}

/* One read of the secrets: loads the root, or generates it when there is none. */
static int open_once(const ca_context *ctx, const builtin_conf *conf, const char *cert_name,
                     const char *key_name, ca_backend **ret, char *errbuf)
{
    char *cert_pem = NULL, *key_pem = NULL;
    size_t cert_len = 0, key_len = 0;
    int rc, rk, r;

    /* The cert is read first: it is written last, so a cert seen means its key is there. */
    rc = lookup(ctx, cert_name, &cert_pem, &cert_len);
    rk = lookup(ctx, key_name, &key_pem, &key_len);
    if (rc == PKI_OK && rk == PKI_OK) {
        r = load_existing(ctx, cert_pem, cert_len, key_pem, key_len, ret, errbuf);
    } else if (rc == PKI_OK) {
        if (errbuf)
            snprintf(errbuf, PKI_ERRBUF, "secret %.200s exists but its key secret is missing",
                     cert_name);
        r = rk == PKI_ENOENT ? PKI_EINVAL : rk;
    } else if (rc != PKI_ENOENT) {
        r = rc;
    } else if (!ctx->secret_store) {
        if (errbuf)
            snprintf(errbuf, PKI_ERRBUF, "builtin CA '%s' has not been generated yet",
                     ctx->backend->name.value);
        r = PKI_ENOENT;
    } else {
        /* No cert: a key left alone by an interrupted generation was never used; replace it. */
        r = generate(ctx, conf, cert_name, key_name, ret, errbuf);
    }
    free(cert_pem);
    if (key_pem) {
        OPENSSL_cleanse(key_pem, key_len);
        free(key_pem);
    }
    return r;
}

static int builtin_ensure_ca(const ca_context *ctx, ca_backend **ret, char *errbuf)
{
    char cert_name[CA_MAX_SECRET_NAME], key_name[CA_MAX_SECRET_NAME];
    builtin_conf conf;
    int r;

    if (!ctx || !ctx->mesh || !ctx->backend || !ret)
        return PKI_EINVAL;
    if ((r = read_conf(ctx, &conf, NULL, errbuf)) < 0)
        return r;
    if ((r = secret_names(ctx, cert_name, key_name, sizeof(cert_name))) < 0)
        return r;
    /* A conflict means another pass created the root between our read and our write: the
     * loser re-reads and uses the winner's root. */
    for (int attempt = 0; attempt < BUILTIN_CREATE_ATTEMPTS; attempt++)
        if ((r = open_once(ctx, &conf, cert_name, key_name, ret, errbuf)) != MESHCA_ECONFLICT)
            return r;
    return meshca_fail(errbuf, r, "builtin CA '%s' changed under every attempt to read it",
                       ctx->backend->name.value);
}

const ca_backend_ops ca_builtin_ops = {
    .type = "builtin",
    .check = builtin_check,
    .ensure_ca = builtin_ensure_ca,
    .sign_leaf = ca_local_sign_leaf,
    .cross_sign = ca_local_cross_sign,
    .free = ca_local_free,
};
