/* pki_p256_verify.h - proof of possession of an EC P-256 CSR on a key and context made once. */
#ifndef MESHCA_PKI_P256_VERIFY_H
#define MESHCA_PKI_P256_VERIFY_H

#include <stdbool.h>

#include "reconciler/pki_csr.h"

/*
 * A P-256 public key and a verify context on it, made once: each CSR's point is set into the key
 * and the context re-initialised. A copy of a key per CSR (EVP_PKEY_dup), a context per CSR and
 * the digest fetch behind EVP_PKEY_CTX_set_signature_md cost 10 us a CSR, 1/8 of a verify + sign
 * (perf, bench-all); re-keying costs 2 us; reading the CSR with PEM_read_bio_X509_REQ builds the
 * key through the provider decoders (41 % of a CSR signing). One thread at a time per verifier.
 */
typedef struct pki_p256_verifier pki_p256_verifier;

/* NULL when out of memory or when OpenSSL cannot make the key. Free with pki_p256_verifier_free. */
pki_p256_verifier *pki_p256_verifier_new(void);
void pki_p256_verifier_free(pki_p256_verifier *v);

/* True when csr's ecdsa-with-SHA256 signature over its CertificationRequestInfo verifies with
 * its own point (checked to be on the curve). False for anything else, with OpenSSL's error
 * queue left empty: the caller's generic path then judges the CSR and says what is wrong. */
bool pki_p256_verify_csr(pki_p256_verifier *v, const pki_csr_p256 *csr);

#endif
