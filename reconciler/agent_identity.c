/* agent_identity.c - what an agent checks in an identity answer before it installs it. */
#include "reconciler/agent_identity.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "reconciler/pki.h"

#define URN_PREFIX "urn:meshca:dataplane:"

/* 0 when the leaf's URI SANs are this dataplane's (see the header), else EINVAL. */
static int check_names(const char *mesh_name, const char *dp_name, X509 *leaf, char *errbuf)
{
    char want_urn[512], want_spiffe[300];
    snprintf(want_urn, sizeof(want_urn), URN_PREFIX "%s:%s", mesh_name, dp_name);
    snprintf(want_spiffe, sizeof(want_spiffe), "spiffe://%s/", mesh_name);
    GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    int ours = 0, rc = 0;
    for (int i = 0; rc == 0 && sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type != GEN_URI)
            continue;
        const char *uri = (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        int n = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        if (!uri || n <= 0)
            continue;
        size_t len = (size_t)n;
        if (len >= strlen(URN_PREFIX) && memcmp(uri, URN_PREFIX, strlen(URN_PREFIX)) == 0) {
            if (len == strlen(want_urn) && memcmp(uri, want_urn, len) == 0)
                ours = 1;
            else
                rc = meshca_fail(errbuf, MESHCA_EINVAL,
                                 "the certificate names another dataplane (%.*s), not %s/%s",
                                 n > 300 ? 300 : n, uri, mesh_name, dp_name);
        } else if (len >= 9 && memcmp(uri, "spiffe://", 9) == 0 &&
                   (len <= strlen(want_spiffe) ||
                    memcmp(uri, want_spiffe, strlen(want_spiffe)) != 0)) {
            rc = meshca_fail(errbuf, MESHCA_EINVAL,
                             "the certificate's SAN %.*s is not of mesh '%s' (spiffe://%s/...)",
                             n > 300 ? 300 : n, uri, mesh_name, mesh_name);
        }
    }
    GENERAL_NAMES_free(sans);
    if (rc == 0 && !ours)
        rc = meshca_fail(errbuf, MESHCA_EINVAL,
                         "the certificate does not name this dataplane (no URI SAN %s)", want_urn);
    return rc;
}

int agent_identity_check(const char *mesh_name, const char *dp_name, X509 *leaf,
                         const char *chain_pem, const char *bundle_pem, char *errbuf)
{
    if (!mesh_name || !dp_name || !leaf || !bundle_pem)
        return meshca_fail(errbuf, MESHCA_EINVAL,
                           "identity answer without certificate or caBundle");
    int rc = check_names(mesh_name, dp_name, leaf, errbuf);
    if (rc < 0)
        return rc;
    STACK_OF(X509) *bundle = NULL, *chain = NULL;
    char why[MESHCA_ERRBUF] = "";
    if (pki_chain_from_pem(bundle_pem, strlen(bundle_pem), &bundle, why) < 0)
        return meshca_fail(errbuf, MESHCA_EINVAL, "caBundle: %s", why);
    if (chain_pem && *chain_pem &&
        pki_chain_from_pem(chain_pem, strlen(chain_pem), &chain, why) < 0) {
        sk_X509_pop_free(bundle, X509_free);
        return meshca_fail(errbuf, MESHCA_EINVAL, "chain: %s", why);
    }
    ERR_clear_error();
    X509_STORE *trust = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    rc = trust && ctx ? 0 : meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    for (int i = 0; rc == 0 && i < sk_X509_num(bundle); i++)
        if (X509_STORE_add_cert(trust, sk_X509_value(bundle, i)) != 1)
            rc = meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    if (rc == 0 && X509_STORE_CTX_init(ctx, trust, leaf, chain) != 1)
        rc = meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    if (rc == 0) {
        X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
        X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_NO_CHECK_TIME);
        if (X509_verify_cert(ctx) != 1)
            rc = meshca_fail(
                errbuf, MESHCA_EINVAL,
                "the certificate does not verify against the caBundle sent with it: %s",
                X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    }
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(trust);
    sk_X509_pop_free(bundle, X509_free);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

int agent_identity_check_leaf_pem(const char *leaf_pem, char *errbuf)
{
    STACK_OF(X509) *certs = NULL;
    char why[MESHCA_ERRBUF] = "";
    if (!leaf_pem || pki_chain_from_pem(leaf_pem, strlen(leaf_pem), &certs, why) < 0)
        return meshca_fail(errbuf, MESHCA_EINVAL, "certificate: %s", why[0] ? why : "missing");
    int n = sk_X509_num(certs);
    sk_X509_pop_free(certs, X509_free);
    if (n != 1)
        return meshca_fail(errbuf, MESHCA_EINVAL,
                           "certificate: %d certificates where one leaf is expected", n);
    return 0;
}
