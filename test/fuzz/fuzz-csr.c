/* fuzz-csr.c - libFuzzer target for the dataplane API's CSR check and the signer's CSR paths (SPEC S12): any byte string must
 * be refused with a message or accepted, never crash, leak or reach undefined behaviour. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reconciler/api/csr.h"
#include "reconciler/pki.h"
#include "reconciler/pki_csr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One signer for the whole run (a CA made at the first input): pki_sign_csr's strict P-256
 * reader (pki_csr.c) and OpenSSL's parser behind it both see every input. */
static pki_leaf_signer *signer(void)
{
    static pki_leaf_signer *s;
    EVP_PKEY *key = NULL;
    X509 *ca = NULL;

    if (!s && pki_generate_key(false, 0, &key, NULL) == 0 &&
        pki_make_root(key, "fuzz", NULL, time(NULL), 86400, &ca, NULL) == 0 &&
        pki_leaf_signer_new(ca, key, &s, NULL) != 0)
        abort();
    X509_free(ca);
    EVP_PKEY_free(key);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const uris[] = {"spiffe://default/web"};
    char errbuf[MESHCA_ERRBUF];
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    pki_csr_p256 csr;

    static pki_p256_verifier *v;
    if (!v && !(v = pki_p256_verifier_new()))
        abort();
    for (int type = CSR_KEY_EC_P256; type <= CSR_KEY_RSA_2048; type++) {
        unsigned char *spki = NULL, *fast = NULL;
        size_t len = 0, flen = 0;
        char ferr[MESHCA_ERRBUF] = "";
        errbuf[0] = '\0';
        int rc = csr_check((const char *)data, size, (csr_key_type)type, &spki, &len, errbuf);
        /* The POST path's fast check must give the same verdict, message and key. */
        int frc = csr_check_fast(v, (const char *)data, size, (csr_key_type)type, &fast, &flen, ferr);
        if (rc != frc || strcmp(errbuf, ferr) != 0 ||
            (rc == 0 && (len != flen || memcmp(spki, fast, len) != 0)))
            abort();
        if (rc == 0)
            free(spki), free(fast);
    }
    if (pki_csr_read_p256((const char *)data, size, &csr)) {
        /* every span lies inside the decoded DER */
        if (csr.point_len == 0 || csr.sig_len == 0 || csr.info_len == 0 || csr.spki_len == 0)
            abort();
        pki_csr_p256_clear(&csr);
    }
    req.uris = uris;
    req.nuris = 1;
    for (int rsa = 0; rsa <= 1; rsa++) {
        pki_signed_leaf leaf;
        unsigned char *spki = NULL;
        size_t len = 0;

        req.rsa = rsa;
        if (pki_sign_csr(signer(), (const char *)data, size, &req, time(NULL), &leaf, &spki, &len,
                         errbuf) == 0) {
            pki_signed_leaf_clear(&leaf);
            free(spki);
        }
    }
    return 0;
}
