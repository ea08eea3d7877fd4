/* csr.h - checks a dataplane's certificate request and keeps only its public key. */
#ifndef MESHCA_API_CSR_H
#define MESHCA_API_CSR_H

#include <stddef.h>

#include "manifests/error.h"
#include "reconciler/pki_p256_verify.h"

/* The largest PEM CSR accepted (S13). */
#define CSR_MAX_PEM_BYTES (16 * 1024)

/* The key type a mesh's dpCert.keyType asks for. */
typedef enum csr_key_type {
    CSR_KEY_EC_P256 = 0, /* keyType: ecdsa (default) */
    CSR_KEY_RSA_2048,    /* keyType: rsa */
} csr_key_type;

/* "ecdsa P-256" or "rsa 2048" (static). */
const char *csr_key_type_name(csr_key_type type);

/*
 * Parses one PEM certificate request (at most CSR_MAX_PEM_BYTES), checks its self-signature
 * (proof that the sender holds the private key) and that its key is of type `want`, and returns
 * the public key as SubjectPublicKeyInfo DER in *ret_spki (caller frees with free()), *ret_len
 * its length. Nothing else is taken from the request: subject, SANs, extensions and lifetime
 * are the controller's. Every refusal is MESHCA_EINVAL with a one-line reason in errbuf
 * ("csr: ..."); MESHCA_ENOMEM when out of memory. Outputs written only on success.
 */
int csr_check(const char *pem, size_t len, csr_key_type want, unsigned char **ret_spki,
              size_t *ret_len, char *errbuf);

/*
 * csr_check with a fast path for what agents send (an EC P-256 CSR in pki_csr_read_p256's strict
 * shape, when `want` is CSR_KEY_EC_P256): read as DER spans and verified with v, without OpenSSL's
 * PEM/X509_REQ decoders and the SPKI encoder (the POST path's provider look-ups in perf). Its
 * *ret_spki is the CSR's SPKI as it stands, the bytes csr_check's i2d_PUBKEY writes for it.
 * Anything else, a NULL v, or a signature that does not verify goes to csr_check, which gives
 * the same verdicts and messages. v is used by one thread at a time.
 */
int csr_check_fast(pki_p256_verifier *v, const char *pem, size_t len, csr_key_type want,
                   unsigned char **ret_spki, size_t *ret_len, char *errbuf);

#endif
