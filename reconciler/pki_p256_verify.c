/* pki_p256_verify.c - proof of possession of an EC P-256 CSR on a key and context made once. */
#include "reconciler/pki_p256_verify.h"

#include <stdlib.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

struct pki_p256_verifier {
    EVP_PKEY *key;       /* public only; takes each CSR's point in turn */
    EVP_PKEY_CTX *ctx;
    EVP_MD *sha256;      /* fetched once: an implicit fetch per digest takes a shared lock */
};

/* A public-only P-256 key (of a throwaway key pair) that takes each CSR's point in turn. */
static EVP_PKEY *make_key(void)
{
    EVP_PKEY *pair = EVP_EC_gen("P-256"), *pub = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    unsigned char point[133];
    size_t plen = 0;
    OSSL_PARAM params[3];

    if (pair && ctx &&
        EVP_PKEY_get_octet_string_param(pair, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                        sizeof(point), &plen) == 1) {
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                     (char *)"prime256v1", 0);
        params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, plen);
        params[2] = OSSL_PARAM_construct_end();
        if (EVP_PKEY_fromdata_init(ctx) != 1 ||
            EVP_PKEY_fromdata(ctx, &pub, EVP_PKEY_PUBLIC_KEY, params) != 1)
            pub = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pair);
    return pub;
}

pki_p256_verifier *pki_p256_verifier_new(void)
{
    pki_p256_verifier *v = calloc(1, sizeof(*v));

    if (!v)
        return NULL;
    v->key = make_key();
    v->ctx = v->key ? EVP_PKEY_CTX_new_from_pkey(NULL, v->key, NULL) : NULL;
    v->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    ERR_clear_error();
    if (!v->ctx || !v->sha256) {
        pki_p256_verifier_free(v);
        return NULL;
    }
    return v;
}

void pki_p256_verifier_free(pki_p256_verifier *v)
{
    if (!v)
        return;
    EVP_PKEY_CTX_free(v->ctx);
    EVP_PKEY_free(v->key);
    EVP_MD_free(v->sha256);
    free(v);
}

bool pki_p256_verify_csr(pki_p256_verifier *v, const pki_csr_p256 *csr)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    bool ok;

    if (!v || !csr)
        return false;
    /* The point is checked to be on the curve when it is set (EC_KEY_oct2key). verify_init
     * after it: the context then holds this CSR's key, never the last one's. No digest is set on
     * the context: the SHA-256 is computed here, and its 32 bytes are what is verified. */
    ok = EVP_PKEY_set1_encoded_public_key(v->key, csr->point, csr->point_len) == 1 &&
         EVP_PKEY_verify_init(v->ctx) == 1 &&
         EVP_Digest(csr->info, csr->info_len, md, &mdlen, v->sha256, NULL) &&
         EVP_PKEY_verify(v->ctx, csr->sig, csr->sig_len, md, mdlen) == 1;
    ERR_clear_error();
    return ok;
}
