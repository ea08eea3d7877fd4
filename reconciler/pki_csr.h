/* pki_csr.h - EC P-256 certificate requests read as DER spans, in the one strict shape agents send. */
#ifndef MESHCA_PKI_CSR_H
#define MESHCA_PKI_CSR_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The spans of a PEM CSR as pki_make_csr (and OpenSSL's X509_REQ_sign) writes it for an EC P-256
 * key: PEM at the start of the input, 64-column base64, DER with minimal lengths, version 0, an
 * empty subject, no attributes, an id-ecPublicKey/prime256v1 key, ecdsa-with-SHA256. Reading it
 * takes no OpenSSL parser (issue 13: PEM_read_bio_X509_REQ decodes the key through the provider
 * decoders, 41 % of a CSR signing in perf). Anything else is not taken (false) and is left to
 * OpenSSL's parser, so whatever this reads OpenSSL reads the same way: test-pki compares their
 * verdicts over a corpus. Nothing here checks the point or the signature.
 */
typedef struct pki_csr_p256 {
    unsigned char *der;            /* the decoded DER; free with pki_csr_p256_clear() */
    const unsigned char *info;     /* CertificationRequestInfo TLV: what the signature covers */
    size_t info_len;
    const unsigned char *spki;     /* SubjectPublicKeyInfo TLV */
    size_t spki_len;
    const unsigned char *point;    /* the key's encoded point (the BIT STRING's bits) */
    size_t point_len;
    const unsigned char *sig;      /* ECDSA-Sig-Value DER (the signature BIT STRING's bits) */
    size_t sig_len;
} pki_csr_p256;

/* True and *ret filled when pem is such a CSR; false (nothing to free) otherwise. */
bool pki_csr_read_p256(const char *pem, size_t len, pki_csr_p256 *ret);
void pki_csr_p256_clear(pki_csr_p256 *csr);

#endif
