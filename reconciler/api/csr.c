/* csr.c - proof of possession and key type of a dataplane's CSR; only the public key survives. */
#define _GNU_SOURCE
#include "reconciler/api/csr.h"

#include <stdio.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

const char *csr_key_type_name(csr_key_type type)
{
    return type == CSR_KEY_RSA_2048 ? "rsa 2048" : "ecdsa P-256";
}

/* The key's type in csr_key_type's words, or a description of what it is instead. */
static int key_type_of(EVP_PKEY *key, csr_key_type *ret, char *desc, size_t size)
{
    int id = EVP_PKEY_get_base_id(key);
    int bits = EVP_PKEY_get_bits(key);
    if (id == EVP_PKEY_RSA) {
        snprintf(desc, size, "rsa %d", bits);
        if (bits != 2048)
            return -1;
        *ret = CSR_KEY_RSA_2048;
        return 0;
    }
    if (id == EVP_PKEY_EC) {
        char group[64] = "";
        size_t glen = 0;
        if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                            &glen))
            snprintf(group, sizeof(group), "unknown curve");
        snprintf(desc, size, "ecdsa %s", group);
        if (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)
            return -1;
        snprintf(desc, size, "ecdsa P-256");
        *ret = CSR_KEY_EC_P256;
        return 0;
    }
    snprintf(desc, size, "%s", id == EVP_PKEY_ED25519 ? "ed25519" : "an unsupported key type");
    return -1;
}

int csr_check(const char *pem, size_t len, csr_key_type want, unsigned char **ret_spki,
              size_t *ret_len, char *errbuf)
{
    if (!pem || !ret_spki || !ret_len)
        return meshca_fail(errbuf, MESHCA_EINVAL, "csr: missing");
    if (len > CSR_MAX_PEM_BYTES)
        return meshca_fail(errbuf, MESHCA_EINVAL, "csr: %zu bytes, larger than the limit of %d",
                           len, CSR_MAX_PEM_BYTES);
    if (!memmem(pem, len, "-----BEGIN CERTIFICATE REQUEST-----", 35))
        return meshca_fail(errbuf, MESHCA_EINVAL,
                           "csr: not a PEM certificate request (no 'BEGIN CERTIFICATE REQUEST')");

    int rc = 0;
    X509_REQ *req = NULL;
    unsigned char *der = NULL;
    ERR_clear_error();
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) {
        rc = meshca_fail(errbuf, MESHCA_ENOMEM, "csr: out of memory");
        goto out;
    }
    req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    if (!req) {
        rc = meshca_fail(errbuf, MESHCA_EINVAL, "csr: cannot parse the certificate request");
        goto out;
    }
    EVP_PKEY *key = X509_REQ_get0_pubkey(req); /* borrowed from req */
    if (!key) {
        rc = meshca_fail(errbuf, MESHCA_EINVAL, "csr: no public key in the request");
        goto out;
    }
    /* Proof of possession: only the holder of the private key can sign the request. */
    if (X509_REQ_verify(req, key) != 1) {
        rc = meshca_fail(errbuf, MESHCA_EINVAL,
                         "csr: signature does not verify with the request's own key "
                         "(no proof of possession of the private key)");
        goto out;
    }
    csr_key_type got;
    char desc[96];
    if (key_type_of(key, &got, desc, sizeof(desc)) < 0 || got != want) {
        rc = meshca_fail(errbuf, MESHCA_EINVAL,
                         "csr: key is %s, but the mesh's dpCert.keyType asks for %s", desc,
                         csr_key_type_name(want));
        goto out;
    }
    int n = i2d_PUBKEY(key, &der);
    if (n <= 0) {
        rc = meshca_fail(errbuf, MESHCA_ENOMEM, "csr: cannot encode the public key");
        goto out;
    }
    unsigned char *copy = malloc((size_t)n);
    if (!copy) {
        rc = meshca_fail(errbuf, MESHCA_ENOMEM, "csr: out of memory");
        goto out;
    }
    memcpy(copy, der, (size_t)n);
    *ret_spki = copy;
    *ret_len = (size_t)n;
out:
    /* The queue's details add nothing the messages above do not say; leave it empty. */
    ERR_clear_error();
    OPENSSL_free(der);
    X509_REQ_free(req);
    BIO_free(bio);
    return rc;
}

int csr_check_fast(pki_p256_verifier *v, const char *pem, size_t len, csr_key_type want,
                   unsigned char **ret_spki, size_t *ret_len, char *errbuf)
{
    pki_csr_p256 csr;
    if (v && pem && ret_spki && ret_len && want == CSR_KEY_EC_P256 && len <= CSR_MAX_PEM_BYTES &&
        pki_csr_read_p256(pem, len, &csr)) {
        unsigned char *copy = NULL;
        if (pki_p256_verify_csr(v, &csr) && (copy = malloc(csr.spki_len)) != NULL) {
            memcpy(copy, csr.spki, csr.spki_len);
            *ret_spki = copy;
            *ret_len = csr.spki_len;
            pki_csr_p256_clear(&csr);
            return 0;
        }
        pki_csr_p256_clear(&csr);
    }
    return csr_check(pem, len, want, ret_spki, ret_len, errbuf);
}
