/* extca_pki.c - OpenSSL helpers shared by the external CA clients: CSRs and checks of what a CA returns. */
#include "reconciler/ca/extca_pki.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

static int add_uri_sans(STACK_OF(X509_EXTENSION) *exts, const char *const *uris, size_t nuris)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    X509_EXTENSION *ext = NULL;
    int ok = 0;

    if (!names)
        return 0;
    for (size_t i = 0; i < nuris; i++) {
        GENERAL_NAME *gn = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();

        if (!gn || !s || !ASN1_STRING_set(s, uris[i], (int)strlen(uris[i]))) {
            GENERAL_NAME_free(gn);
            ASN1_IA5STRING_free(s);
            goto out;
        }
        GENERAL_NAME_set0_value(gn, GEN_URI, s);
        if (!sk_GENERAL_NAME_push(names, gn)) {
            GENERAL_NAME_free(gn);
            goto out;
        }
    }
    ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, names);
    ok = ext && sk_X509_EXTENSION_push(exts, ext);
    if (!ok)
        X509_EXTENSION_free(ext);
out:
    GENERAL_NAMES_free(names);
    return ok;
}

int extca_pki_make_csr(EVP_PKEY *key, const char *cn, const char *const *uris, size_t nuris,
                       bool is_ca, char **ret_pem, char *errbuf)
{
    STACK_OF(X509_EXTENSION) *exts = NULL;
    X509_REQ *req = NULL;
    BIO *bio = NULL;
    char *pem = NULL, *data;
    long len;
    int rc;

    if (!key || !ret_pem || nuris > PKI_MAX_SANS || (nuris && !uris))
        return meshca_fail(errbuf, PKI_EINVAL, "invalid CSR parameters");
    ERR_clear_error();
    req = X509_REQ_new();
    exts = sk_X509_EXTENSION_new_null();
    if (!req || !exts || !X509_REQ_set_version(req, 0) || !X509_REQ_set_pubkey(req, key)) {
        rc = pki_fail(errbuf, PKI_ECRYPTO, "cannot build CSR");
        goto out;
    }
    if (cn && !X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
                                          (const unsigned char *)cn, -1, -1, 0)) {
        rc = pki_fail(errbuf, PKI_EINVAL, "cannot set the CSR's common name");
        goto out;
    }
    if (is_ca) {
        X509_EXTENSION *bc = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints,
                                                 "critical,CA:TRUE,pathlen:0");
        if (!bc || !sk_X509_EXTENSION_push(exts, bc)) {
            X509_EXTENSION_free(bc);
            rc = pki_fail(errbuf, PKI_ECRYPTO, "cannot build CSR extensions");
            goto out;
        }
    }
    if ((nuris && !add_uri_sans(exts, uris, nuris)) ||
        (sk_X509_EXTENSION_num(exts) > 0 && !X509_REQ_add_extensions(req, exts)) ||
        !X509_REQ_sign(req, key, EVP_sha256())) {
        rc = pki_fail(errbuf, PKI_ECRYPTO, "cannot sign CSR");
        goto out;
    }
    bio = BIO_new(BIO_s_mem());
    if (!bio || !PEM_write_bio_X509_REQ(bio, req)) {
        rc = pki_fail(errbuf, PKI_ECRYPTO, "cannot encode CSR");
        goto out;
    }
    len = BIO_get_mem_data(bio, &data);
    pem = malloc((size_t)len + 1);
    if (!pem) {
        rc = meshca_fail(errbuf, PKI_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(pem, data, (size_t)len);
    pem[len] = '\0';
    *ret_pem = pem;
    rc = 0;
out:
    BIO_free(bio);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    ERR_clear_error();
    return rc;
}

int64_t extca_pki_intermediate_renewal(int64_t not_before, int64_t not_after)
{
    return not_before + (not_after - not_before) * 2 / 3;
}

int extca_pki_check_intermediate(X509 *cert, EVP_PKEY *key, X509 *root, int64_t now,
                                 char *errbuf)
{
    X509_STORE *store = NULL;
    X509_STORE_CTX *vctx = NULL;
    uint32_t flags;
    int rc = PKI_EINVAL, verr;

    ERR_clear_error();
    flags = X509_get_extension_flags(cert);
    if (!(flags & EXFLAG_CA))
        return meshca_fail(errbuf, rc, "the signed intermediate is not a CA (basicConstraints "
                                       "CA:TRUE missing): use a profile with ca_constraint "
                                       "is_ca true");
    if (X509_get_pathlen(cert) != 0)
        return meshca_fail(errbuf, rc, "the signed intermediate's path length is %ld, not 0: "
                                       "set max_path_len 0 (and max_path_len_zero) in the "
                                       "profile's ca_constraint",
                           X509_get_pathlen(cert));
    if (!(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN))
        return meshca_fail(errbuf, rc, "the signed intermediate lacks keyUsage keyCertSign: add "
                                       "\"cert sign\" to the profile's usages");
    if (key && !pki_key_matches(cert, key)) {
        ERR_clear_error();
        return meshca_fail(errbuf, rc, "the signed intermediate is not for the key sent");
    }
    store = X509_STORE_new();
    vctx = X509_STORE_CTX_new();
    if (!store || !vctx || !X509_STORE_add_cert(store, root) ||
        !X509_STORE_CTX_init(vctx, store, cert, NULL)) {
        rc = pki_fail(errbuf, PKI_ECRYPTO, "cannot verify the intermediate");
        goto out;
    }
    X509_STORE_CTX_set_flags(vctx, X509_V_FLAG_X509_STRICT | X509_V_FLAG_USE_CHECK_TIME);
    X509_STORE_CTX_set_time(vctx, 0, (time_t)now);
    if (X509_verify_cert(vctx) != 1) {
        verr = X509_STORE_CTX_get_error(vctx);
        meshca_fail(errbuf, rc, "the signed intermediate does not chain to the CA's root: %s",
                    X509_verify_cert_error_string(verr));
        goto out;
    }
    rc = 0;
out:
    X509_STORE_CTX_free(vctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return rc;
}
