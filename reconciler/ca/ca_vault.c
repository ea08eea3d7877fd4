/* ca_vault.c - the `vault` CA backend: Vault's PKI engine signs the dataplanes' CSRs (vault_client.c does the HTTP). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "manifests/diag.h"
#include "reconciler/ca/vault_client.h"
#include "reconciler/ca_backend.h"

/* The client's timeouts: dpCert.requestTimeout bounds each request to Vault when set (Kuma's
 * field for how long a certificate request may take); otherwise the client's defaults. */
static void client_options(const ca_context *ctx, vault_client_options *o)
{
    *o = (vault_client_options)VAULT_CLIENT_OPTIONS_INIT;
    if (ctx->backend->dp_cert.request_timeout.set && ctx->backend->dp_cert.request_timeout.ms > 0) {
        o->timeout_ms = (long)ctx->backend->dp_cert.request_timeout.ms;
        if (o->connect_timeout_ms > o->timeout_ms)
            o->connect_timeout_ms = o->timeout_ms;
    }
}

static int64_t leaf_ttl_s(const mesh_backend *b)
{
    int64_t s = mesh_backend_leaf_lifetime_ms(b) / 1000;
    return s > 0 ? s : 1;
}

/* Vault's answer class as a diagnostic (the convention of ca_backend.h). */
static int report(const ca_context *ctx, int rc, const char *msg, diag_list *diags)
{
    char path[64];

    snprintf(path, sizeof(path), "mtls.backends[%zu]", ctx->backend_index);
    if (rc == MESHCA_ENOMEM)
        return rc;
    if (rc == MESHCA_EUNAVAILABLE || rc == MESHCA_EIO) {
        diag_error(diags, rc == MESHCA_EIO ? CA_DIAG_BAD_ANSWER : CA_DIAG_UNREACHABLE,
                   &ctx->backend->mark, path, "%s", msg);
        return MESHCA_EUNAVAILABLE;
    }
    diag_error(diags, CA_DIAG_REFUSED, &ctx->backend->mark, path, "%s", msg);
    return 0;
}

/* Conf through the client (every field path), then, unless skipValidation, a throwaway CSR
 * signed for the leaf lifetime: reachable, authenticated, role allows it, ttl within max_ttl. */
static int vault_backend_check(const ca_context *ctx, diag_list *diags)
{
    vault_client_options o;
    vault_client *c = NULL;
    char errbuf[MESHCA_ERRBUF] = "";
    int rc;

    client_options(ctx, &o);
    rc = vault_client_open(ctx, &o, &c, errbuf);
    if (rc == MESHCA_ENOMEM)
        return rc;
    if (rc < 0) {
        char path[64];

        ca_conf_path(ctx, "", path, sizeof(path));
        /* The message starts with the field path; a missing datasource is a conf problem too. */
        diag_error(diags, "ca-conf", &ctx->backend->mark, path, "backend '%s': %s",
                   ctx->backend->name.value ? ctx->backend->name.value : "", errbuf);
        return 0;
    }
    if (!ctx->skip_validation) {
        rc = vault_check(c, leaf_ttl_s(ctx->backend), errbuf);
        if (rc < 0)
            rc = report(ctx, rc, errbuf, diags);
    }
    vault_client_free(c);
    return rc;
}

static int vault_ensure_ca(const ca_context *ctx, ca_backend **ret, char *errbuf)
{
    vault_client_options o;
    vault_client *c = NULL;
    STACK_OF(X509) *chain = NULL;
    char *pem = NULL, why[MESHCA_ERRBUF];
    int rc;

    client_options(ctx, &o);
    if ((rc = vault_client_open(ctx, &o, &c, errbuf)) < 0)
        return rc;
    if ((rc = vault_ca_chain(c, &pem, errbuf)) < 0)
        goto fail;
    if ((rc = pki_chain_from_pem(pem, strlen(pem), &chain, why)) < 0) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "vault backend '%s' (mesh %s): the CA chain does "
                         "not parse: %s", ctx->backend->name.value, ctx->mesh, why);
        goto fail;
    }
    free(pem);
    pem = NULL;
    if ((rc = ca_remote_new(&ca_vault_ops, chain, c, ret)) < 0) {
        rc = meshca_fail(errbuf, rc, "out of memory");
        goto fail;
    }
    return 0;
fail:
    sk_X509_pop_free(chain, X509_free);
    free(pem);
    vault_client_free(c);
    return rc;
}

/* What Vault returned must be what was asked: for the key held, exactly the URI SANs asked
 * (plus, as Vault adds by default, a DNS name equal to the common name), issued by the CA whose
 * chain the mesh serves. Anything else is refused before it is stored. */
static int check_leaf(ca_backend *ca, X509 *leaf, const pki_leaf_request *req, EVP_PKEY *pub,
                      const char *cn, int64_t now, char *why, size_t size)
{
    STACK_OF(X509) *chain = ca_backend_chain(ca), *untrusted = NULL;
    GENERAL_NAMES *names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    X509_STORE *store = NULL;
    X509_STORE_CTX *vctx = NULL;
    size_t found = 0;
    int rc = -1;

    if (EVP_PKEY_eq(X509_get0_pubkey(leaf), pub) != 1) {
        snprintf(why, size, "the certificate is not for the dataplane's key");
        goto out;
    }
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        const ASN1_IA5STRING *s = g->type == GEN_URI || g->type == GEN_DNS ? g->d.ia5 : NULL;
        size_t len = s ? (size_t)ASN1_STRING_length(s) : 0;
        const char *text = s ? (const char *)ASN1_STRING_get0_data(s) : "";
        bool known = false;

        if (g->type == GEN_DNS && cn && strlen(cn) == len && memcmp(text, cn, len) == 0)
            continue;
        for (size_t k = 0; g->type == GEN_URI && k < req->nuris && !known; k++)
            known = strlen(req->uris[k]) == len && memcmp(req->uris[k], text, len) == 0;
        if (!known) {
            snprintf(why, size, "the certificate carries a SAN that was not asked for (%s%.*s)",
                     g->type == GEN_URI ? "URI:" : g->type == GEN_DNS ? "DNS:" : "type ",
                     s ? (int)(len > 200 ? 200 : len) : 0, text);
            goto out;
        }
        found++;
    }
    if (found != req->nuris) {
        snprintf(why, size, "the certificate carries %zu of the %zu URI SANs asked for", found,
                 req->nuris);
        goto out;
    }
    if (!chain || sk_X509_num(chain) < 1 || !(untrusted = sk_X509_new_null()) ||
        !(store = X509_STORE_new()) || !(vctx = X509_STORE_CTX_new())) {
        snprintf(why, size, "out of memory");
        goto out;
    }
    /* The chain's last certificate is the anchor; the others travel as intermediates. */
    for (int i = 0; i + 1 < sk_X509_num(chain); i++)
        if (!sk_X509_push(untrusted, sk_X509_value(chain, i))) {
            snprintf(why, size, "out of memory");
            goto out;
        }
    if (!X509_STORE_add_cert(store, sk_X509_value(chain, sk_X509_num(chain) - 1)) ||
        !X509_STORE_CTX_init(vctx, store, leaf, untrusted)) {
        snprintf(why, size, "cannot verify the certificate");
        goto out;
    }
    X509_STORE_CTX_set_flags(vctx, X509_V_FLAG_X509_STRICT | X509_V_FLAG_USE_CHECK_TIME |
                                       X509_V_FLAG_PARTIAL_CHAIN);
    X509_STORE_CTX_set_time(vctx, 0, (time_t)now);
    if (X509_verify_cert(vctx) != 1) {
        snprintf(why, size, "the certificate does not chain to the backend's CA: %s",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx)));
        goto out;
    }
    rc = 0;
out:
    GENERAL_NAMES_free(names);
    X509_STORE_CTX_free(vctx);
    X509_STORE_free(store);
    sk_X509_free(untrusted);
    ERR_clear_error();
    return rc;
}

static int vault_sign_leaf(ca_backend *ca, const pki_leaf_request *req, EVP_PKEY *pub,
                           int64_t now, X509 **ret_cert, char *errbuf)
{
    vault_client *c = ca_backend_state(ca);
    char *cn = NULL, *cert_pem = NULL, *chain_pem = NULL, why[MESHCA_ERRBUF];
    X509 *leaf = NULL;
    int rc;

    /* What this one dataplane lacks is MESHCA_ENOTFOUND (ca_backend.h): it is skipped, the
     * mesh goes on. */
    if (!req->csr_pem)
        return meshca_fail(errbuf, MESHCA_ENOTFOUND, "Vault signs CSRs and no CSR is kept for "
                                                     "this key; the agent's next CSR is signed");
    if ((rc = vault_client_common_name(c, req->tags, req->ntags, &cn, why)) < 0)
        return meshca_fail(errbuf, rc == MESHCA_ENOMEM ? rc : MESHCA_ENOTFOUND,
                           "commonName: %s", why);
    rc = vault_sign_csr(c, req->csr_pem, cn, req->uris, req->nuris, req->lifetime_s, &cert_pem,
                        &chain_pem, errbuf);
    if (rc < 0)
        goto out;
    if ((rc = pki_cert_from_pem(cert_pem, strlen(cert_pem), &leaf, why)) < 0) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "Vault's certificate does not parse: %s", why);
        goto out;
    }
    if (check_leaf(ca, leaf, req, pub, cn, now, why, sizeof(why)) < 0) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "Vault's certificate refused: %s", why);
        goto out;
    }
    *ret_cert = leaf;
    leaf = NULL;
out:
    X509_free(leaf);
    free(cn);
    free(cert_pem);
    free(chain_pem);
    return rc;
}

static void vault_free(ca_backend *ca)
{
    vault_client_free(ca_backend_state(ca));   /* wipes the token */
    ca_remote_free(ca);
}

/* cross_sign NULL: Vault keeps its key, so a forced switch away from it cannot cross-sign. */
const ca_backend_ops ca_vault_ops = {
    .type = "vault",
    .check = vault_backend_check,
    .ensure_ca = vault_ensure_ca,
    .sign_leaf = vault_sign_leaf,
    .cross_sign = NULL,
    .free = vault_free,
    .signs_csr = true,
    .remote = true,
};
