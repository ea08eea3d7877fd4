/* ca_backend.c - dispatch to the CA backend vtables and what local-key backends share. */
#include "reconciler/ca_backend.h"
#include "reconciler/sign_pool.h"

/* The handle behind ca_backend: private to this file, so no caller reaches a CA's key. */
struct ca_backend {
    const ca_backend_ops *ops;
    STACK_OF(X509) *chain;   /* [0] signs leaves, then intermediates (owned) */
    EVP_PKEY *key;           /* private key of chain[0], NULL for remote backends (owned) */
    void *state;             /* a remote backend's own state (its ops free it) */
    char warning[PKI_ERRBUF];   /* "" when none */
    struct sign_pool *pool;  /* ca_backend_sign_pool's workers, kept with the CA (owned) */
    unsigned pool_threads;   /* the nthreads it was asked for */
};

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every backend type of S2 and its implementation in this build; NULL: not yet, so the type
 * validates offline but `apply` refuses it (nothing would sign its leaves). */
static const struct {
    const char *type;
    const ca_backend_ops *ops;
} all_backends[] = {
    {"builtin", &ca_builtin_ops},
    {"provided", &ca_provided_ops},
    {"vault", &ca_vault_ops},
    {"cfssl", &ca_cfssl_ops},
};

const ca_backend_ops *ca_backend_for_type(const char *type)
{
    if (!type)
        return NULL;
    for (size_t i = 0; i < sizeof(all_backends) / sizeof(all_backends[0]); i++)
        if (strcmp(all_backends[i].type, type) == 0)
            return all_backends[i].ops;
    return NULL;
}

ca_type_support ca_backend_support(const char *type)
{
    for (size_t i = 0; type && i < sizeof(all_backends) / sizeof(all_backends[0]); i++)
        if (strcmp(all_backends[i].type, type) == 0)
            return all_backends[i].ops ? CA_TYPE_SIGNS : CA_TYPE_CANNOT_SIGN;
    return CA_TYPE_UNKNOWN;
}

static const ca_backend_ops *ops_of(const ca_context *ctx)
{
    return ctx && ctx->backend ? ca_backend_for_type(ctx->backend->type.value) : NULL;
}

int ca_backend_check(const ca_context *ctx, diag_list *diags)
{
    const ca_backend_ops *ops = ops_of(ctx);

    if (!ops)
        return PKI_EINVAL;
    return ops->check(ctx, diags);
}

int ca_backend_open(const ca_context *ctx, ca_backend **ret, char *errbuf)
{
    const ca_backend_ops *ops = ops_of(ctx);

    if (!ops) {
        if (errbuf)
            snprintf(errbuf, PKI_ERRBUF, "unsupported CA backend type '%s'",
                     ctx && ctx->backend && ctx->backend->type.value ? ctx->backend->type.value
                                                                     : "");
        return PKI_EINVAL;
    }
    return ops->ensure_ca(ctx, ret, errbuf);
}

int ca_backend_sign_leaf(ca_backend *ca, const pki_leaf_request *req, EVP_PKEY *pub, int64_t now,
                         X509 **ret_cert, char *errbuf)
{
    return ca->ops->sign_leaf(ca, req, pub, now, ret_cert, errbuf);
}

bool ca_backend_can_cross_sign(const ca_backend *ca)
{
    return ca && ca->ops->cross_sign && ca->key;
}

bool ca_backend_type_is_remote(const char *type)
{
    const ca_backend_ops *ops = ca_backend_for_type(type);
    return ops && ops->remote;
}

bool ca_backend_signs_csr(const ca_backend *ca)
{
    return ca && ca->ops->signs_csr;
}

int ca_backend_cross_sign(ca_backend *ca, X509 *other_ca, int64_t now, int64_t not_after_max,
                          X509 **ret, char *errbuf)
{
    if (!ca_backend_can_cross_sign(ca)) {
        if (errbuf)
            snprintf(errbuf, PKI_ERRBUF, "its key is not local");
        return PKI_EINVAL;
    }
    return ca->ops->cross_sign(ca, other_ca, now, not_after_max, ret, errbuf);
}

void ca_backend_free(ca_backend *ca)
{
    if (!ca)
        return;
    sign_pool_free(ca->pool);   /* the workers' copies of the key are wiped */
    ca->ops->free(ca);
}

bool ca_backend_signs_locally(const ca_backend *ca)
{
    return ca && ca->key && ca->chain && sk_X509_num(ca->chain) > 0;
}

int ca_backend_sign_pool(ca_backend *ca, unsigned nthreads, struct sign_pool **ret,
                         char *errbuf)
{
    if (!ret)
        return PKI_EINVAL;
    *ret = NULL;
    if (!ca_backend_signs_locally(ca))
        return PKI_OK;
    if (ca->pool && ca->pool_threads == nthreads) {
        *ret = ca->pool;
        return PKI_OK;
    }
    sign_pool_free(ca->pool);
    ca->pool = NULL;
    int r = sign_pool_new(ca_backend_cert(ca), ca->key, nthreads, &ca->pool, errbuf);
    if (r < 0)
        return r;
    ca->pool_threads = nthreads;
    *ret = ca->pool;
    return PKI_OK;
}

X509 *ca_backend_cert(ca_backend *ca)
{
    return ca && ca->chain && sk_X509_num(ca->chain) > 0 ? sk_X509_value(ca->chain, 0) : NULL;
}

STACK_OF(X509) *ca_backend_chain(ca_backend *ca)
{
    return ca ? ca->chain : NULL;
}

int ca_backend_info(ca_backend *ca, ca_info *ret)
{
    X509 *cert = ca_backend_cert(ca);
    ca_info info;

    if (!cert || !ret)
        return PKI_EINVAL;
    info.key_type = pki_key_type(X509_get0_pubkey(cert));
    info.key_bits = pki_key_bits(X509_get0_pubkey(cert));
    if (pki_cert_not_before(cert, &info.not_before) < 0 ||
        pki_cert_not_after(cert, &info.not_after) < 0)
        return PKI_EINVAL;
    *ret = info;
    return PKI_OK;
}

int ca_backend_chain_pem(ca_backend *ca, char **ret, char *errbuf)
{
    char *all = NULL;
    size_t len = 0;

    if (!ca || !ca->chain || !ret)
        return PKI_EINVAL;
    for (int i = 0; i < sk_X509_num(ca->chain); i++) {
        char *pem, *grown;
        int r = pki_cert_to_pem(sk_X509_value(ca->chain, i), &pem, errbuf);
        size_t n;

        if (r < 0) {
            free(all);
            return r;
        }
        n = strlen(pem);
        grown = realloc(all, len + n + 1);
        if (!grown) {
            free(pem);
            free(all);
            return PKI_ENOMEM;
        }
        all = grown;
        memcpy(all + len, pem, n + 1);
        len += n;
        free(pem);
    }
    if (!all)
        return PKI_EINVAL;
    *ret = all;
    return PKI_OK;
}

int ca_backend_bundle_pem(ca_backend *ca, char **ret, char *errbuf)
{
    int n = ca && ca->chain ? sk_X509_num(ca->chain) : 0;

    if (n == 0 || !ret)
        return PKI_EINVAL;
    if (!ca->ops->trust_root_only)
        return ca_backend_chain_pem(ca, ret, errbuf);
    return pki_cert_to_pem(sk_X509_value(ca->chain, n - 1), ret, errbuf);
}

const char *ca_backend_warning(const ca_backend *ca)
{
    return ca && ca->warning[0] ? ca->warning : NULL;
}

void ca_local_set_warning(ca_backend *ca, const char *warning)
{
    if (ca)
        snprintf(ca->warning, sizeof(ca->warning), "%s", warning ? warning : "");
}

int ca_local_new(const ca_backend_ops *ops, STACK_OF(X509) *chain, EVP_PKEY *key,
                 ca_backend **ret)
{
    ca_backend *ca = calloc(1, sizeof(*ca));

    if (!ca)
        return PKI_ENOMEM;
    ca->ops = ops;
    ca->chain = chain;
    ca->key = key;
    *ret = ca;
    return PKI_OK;
}

int ca_local_sign_leaf(ca_backend *ca, const pki_leaf_request *req, EVP_PKEY *pub, int64_t now,
                       X509 **ret_cert, char *errbuf)
{
    if (!ca || !ca->key) {
        if (errbuf)
            snprintf(errbuf, PKI_ERRBUF, "CA has no signing key");
        return PKI_EINVAL;
    }
    return pki_sign_leaf(req, pub, ca_backend_cert(ca), ca->key, now, ret_cert, errbuf);
}

int ca_local_cross_sign(ca_backend *ca, X509 *other_ca, int64_t now, int64_t not_after_max,
                        X509 **ret, char *errbuf)
{
    if (!ca || !ca->key) {
        if (errbuf)
            snprintf(errbuf, PKI_ERRBUF, "CA has no signing key");
        return PKI_EINVAL;
    }
    return pki_cross_sign(other_ca, ca_backend_cert(ca), ca->key, now, not_after_max, ret, errbuf);
}

void ca_local_free(ca_backend *ca)
{
    if (!ca)
        return;
    sk_X509_pop_free(ca->chain, X509_free);
    EVP_PKEY_free(ca->key);   /* OpenSSL wipes key material when freeing */
    free(ca);
}

int ca_remote_new(const ca_backend_ops *ops, STACK_OF(X509) *chain, void *state,
                  ca_backend **ret)
{
    ca_backend *ca = calloc(1, sizeof(*ca));

    if (!ca)
        return PKI_ENOMEM;
    ca->ops = ops;
    ca->chain = chain;
    ca->state = state;
    *ret = ca;
    return PKI_OK;
}

void *ca_backend_state(ca_backend *ca)
{
    return ca ? ca->state : NULL;
}

void ca_remote_free(ca_backend *ca)
{
    if (!ca)
        return;
    sk_X509_pop_free(ca->chain, X509_free);
    free(ca);
}

void ca_conf_path(const ca_context *ctx, const char *suffix, char *buf, size_t size)
{
    snprintf(buf, size, "mtls.backends[%zu].conf%s", ctx ? ctx->backend_index : 0,
             suffix ? suffix : "");
}
