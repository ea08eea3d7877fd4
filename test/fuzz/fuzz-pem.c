/* fuzz-pem.c - libFuzzer target for PEM parsing (SPEC S12): certificate chains (provided CAs,
 * Secrets, stored identities) and private keys; any byte string must parse or be refused with
 * a message, never crash, leak or reach undefined behaviour. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "reconciler/pki.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char errbuf[MESHCA_ERRBUF];
    STACK_OF(X509) *chain = NULL;
    if (pki_chain_from_pem((const char *)data, size, &chain, errbuf) == 0) {
        int n = sk_X509_num(chain);
        if (n < 1 || n > PKI_MAX_CHAIN)
            abort(); /* the documented bounds of a parsed chain */
        /* What roots and inspect print of each certificate. */
        for (int i = 0; i < n; i++) {
            X509 *c = sk_X509_value(chain, i);
            char fp[64], serial[80], ski[128];
            int64_t t;
            (void)pki_fingerprint_sha1(c, fp, sizeof(fp));
            (void)pki_serial_hex(c, serial, sizeof(serial));
            (void)pki_ski_hex(c, ski, sizeof(ski));
            (void)pki_cert_not_before(c, &t);
            (void)pki_cert_not_after(c, &t);
        }
        sk_X509_pop_free(chain, X509_free);
    }
    EVP_PKEY *key = NULL;
    if (pki_key_from_pem((const char *)data, size, &key, errbuf) == 0) {
        (void)pki_key_type(key);
        (void)pki_key_bits(key);
        EVP_PKEY_free(key);
    }
    /* A refusal must leave OpenSSL's error queue empty (STYLE: drain it into the message). */
    if (ERR_peek_error() != 0)
        abort();
    return 0;
}
