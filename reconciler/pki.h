/* pki.h - OpenSSL primitives for keys, CA and leaf certificates, with plain parameters only. */
#ifndef MESHCA_PKI_H
#define MESHCA_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifests/error.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

/* Error codes of every pki_* function. */
enum {
    PKI_OK = 0,
    PKI_EINVAL = MESHCA_EINVAL,   /* bad argument or unparsable input */
    PKI_ECRYPTO = MESHCA_ECRYPTO,  /* OpenSSL failed; the drained error queue is in errbuf */
    PKI_EEXPIRED = MESHCA_EEXPIRED,  /* the signing CA is expired or not yet valid ("ca-expired") */
    PKI_ENOMEM = MESHCA_ENOMEM,
    PKI_EIO = MESHCA_EIO,     /* file could not be read or written */
    PKI_EEXIST = MESHCA_EEXIST,   /* refusing to overwrite */
    PKI_ENOENT = MESHCA_ENOTFOUND,   /* a secret, file or datasource is absent */
};

/* Size of every errbuf parameter. errbuf may be NULL. Never holds key material. */
#define PKI_ERRBUF MESHCA_ERRBUF

/* Writes `what` and the whole drained OpenSSL error queue ("what: err1: err2") into errbuf
 * (may be NULL) and returns code; leaves the queue empty. Every module's OpenSSL failures go
 * through it, so messages are drained and shaped alike. */
int pki_fail(char *errbuf, int code, const char *what);

#define PKI_MAX_SANS 64         /* URI SANs per leaf */
#define PKI_MAX_CHAIN 8         /* certificates in a PEM chain */
#define PKI_MAX_PEM_BYTES (1024 * 1024)
#define PKI_LEAF_BACKDATE_S 60  /* notBefore = now - 1 min */

/* Generates an EC P-256 key (rsa false) or an RSA key of `bits` (rsa true; 0 means 2048).
 * Caller frees *ret with EVP_PKEY_free(). */
int pki_generate_key(bool rsa, int bits, EVP_PKEY **ret, char *errbuf);

/* Self-signed CA: subject CN=cn, random 128-bit serial, URI SAN spiffe_uri (may be NULL),
 * keyUsage keyCertSign+cRLSign (critical), basicConstraints CA:TRUE (critical), SKI/AKI,
 * validity [now - PKI_LEAF_BACKDATE_S, now + lifetime_s]. Caller frees *ret with X509_free(). */
int pki_make_root(EVP_PKEY *key, const char *cn, const char *spiffe_uri, int64_t now,
                  int64_t lifetime_s, X509 **ret, char *errbuf);

struct model_tag;
typedef struct pki_leaf_request {
    const char *const *uris;  /* URI SANs, borrowed */
    size_t nuris;             /* 1..PKI_MAX_SANS */
    const char *cn;           /* subject CN; NULL: none (SANs identify the leaf) */
    bool rsa;                 /* RSA-2048 instead of EC P-256 */
    int64_t lifetime_s;       /* > 0 */
    /* For a backend that signs the dataplane's CSR itself (vault: Vault's sign/:role takes the
     * CSR, not a public key): the CSR kept for the key being signed, NULL when none is kept,
     * and the dataplane's tags (commonName templates). Borrowed; local signers ignore them. */
    const char *csr_pem;
    const struct model_tag *tags;
    size_t ntags;
} pki_leaf_request;

#define PKI_LEAF_REQUEST_INIT {NULL, 0, NULL, false, 86400}

/* Signs a leaf for the public key `pub` (the dataplane's: its private key never reaches the
 * signer), signed by ca_key. notBefore = now - 60s, notAfter = now + lifetime clamped to the CA's
 * notAfter. PKI_EEXPIRED when the CA is not valid at `now`. Caller frees *ret_cert (X509_free). */
int pki_sign_leaf(const pki_leaf_request *req, EVP_PKEY *pub, X509 *ca_cert, EVP_PKEY *ca_key,
                  int64_t now, X509 **ret_cert, char *errbuf);

/* Public keys as SubjectPublicKeyInfo (DER as the API's csr_check returns it, or PEM
 * "PUBLIC KEY" as the identity record keeps it). Caller frees *ret with EVP_PKEY_free() or the
 * string with free(). */
int pki_pubkey_from_der(const unsigned char *der, size_t len, EVP_PKEY **ret, char *errbuf);
int pki_pubkey_from_pem(const char *pem, size_t len, EVP_PKEY **ret, char *errbuf);
int pki_pubkey_to_pem(EVP_PKEY *key, char **ret, char *errbuf);
/* A PEM certificate request for key (empty subject, signed by the key: proof of possession).
 * Caller frees *ret with free(). */
int pki_make_csr(EVP_PKEY *key, char **ret, char *errbuf);

/* Tests and benchmarks: pki_sign_leaf for a fresh key generated here. Issues a leaf with a fresh key, signed by ca_key. notBefore = now - 60s, notAfter = now +
 * lifetime clamped to the CA's notAfter. PKI_EEXPIRED when the CA is not valid at `now`.
 * Caller frees *ret_cert (X509_free) and *ret_key (EVP_PKEY_free); outputs set only on success. */
int pki_issue_leaf(const pki_leaf_request *req, X509 *ca_cert, EVP_PKEY *ca_key, int64_t now,
                   X509 **ret_cert, EVP_PKEY **ret_key, char *errbuf);

/* Re-signs new_ca's subject and public key with old_ca/old_key (Consul cross-signing). Validity
 * [now - 60s, min(old_ca notAfter, new_ca notAfter, not_after_max)]. Extensions as a CA.
 * PKI_EEXPIRED when old_ca is not valid at `now`. Caller frees *ret. */
int pki_cross_sign(X509 *new_ca, X509 *old_ca, EVP_PKEY *old_key, int64_t now,
                   int64_t not_after_max, X509 **ret, char *errbuf);

/* PEM encoding. Strings are NUL-terminated; caller frees with free(). Key PEM strings hold
 * secret material: free them with pki_free_secret(). */
int pki_cert_to_pem(X509 *cert, char **ret, char *errbuf);
int pki_key_to_pem(EVP_PKEY *key, char **ret, char *errbuf);
int pki_cert_from_pem(const char *pem, size_t len, X509 **ret, char *errbuf);
int pki_key_from_pem(const char *pem, size_t len, EVP_PKEY **ret, char *errbuf);
/* Parses every certificate of a PEM chain, in order (1..PKI_MAX_CHAIN). Caller frees with
 * sk_X509_pop_free(*ret, X509_free). */
int pki_chain_from_pem(const char *pem, size_t len, STACK_OF(X509) **ret, char *errbuf);
/* Wipes and frees a secret string. Accepts NULL. */
void pki_free_secret(char *s);

/* Descriptions. Buffers: fingerprint >= 60, serial >= 80, time >= 21 bytes. */
int pki_fingerprint_sha1(X509 *cert, char *buf, size_t size);   /* "AB:CD:..." */
int pki_serial_hex(X509 *cert, char *buf, size_t size);         /* lowercase, colon-free */
int pki_ski_hex(X509 *cert, char *buf, size_t size);            /* "ab:cd:..." or "" */
int pki_format_time(int64_t t, char *buf, size_t size);         /* RFC 3339 UTC */
int pki_cert_not_before(X509 *cert, int64_t *ret);
int pki_cert_not_after(X509 *cert, int64_t *ret);
/* "ec" or "rsa" (borrowed static string, "unknown" otherwise) and the key size in bits. */
const char *pki_key_type(EVP_PKEY *key);
int pki_key_bits(EVP_PKEY *key);

/* True when `key` is the private key of `cert`'s public key. */
bool pki_key_matches(X509 *cert, EVP_PKEY *key);

/* Renewal point of a certificate: not_before + lifetime * (0.70 + 0.15 * h), h a stable hash of
 * stable_id in [0, 1), so a fleet renews spread over 70-85 % of its lifetime. */
int64_t pki_renewal_point(int64_t not_before, int64_t not_after, const char *stable_id);

/*
 * Leaves for a public key the agent already proved it holds (S5: CSR mode, and re-signing a
 * known public key when only the CA changes). A pki_leaf_signer holds, per CA, what every leaf
 * of that CA shares, built once: issuer name, validity bounds, the fixed extensions, the
 * authority key id and a prepared sign context. It is not thread-safe: a signing thread owns
 * its own signer (sign_pool.c makes one per worker), so no OpenSSL object is shared.
 */
typedef struct pki_leaf_signer pki_leaf_signer;

#define PKI_SERIAL_HEX_MAX 80

/* What a signed leaf is stored and reported as. */
typedef struct pki_signed_leaf {
    char *pem;                             /* certificate PEM; caller frees with free() */
    char serial_hex[PKI_SERIAL_HEX_MAX];   /* as pki_serial_hex */
    int64_t not_before;
    int64_t not_after;
} pki_signed_leaf;

/* Builds a signer for ca_cert/ca_key; both stay owned by the caller (the signer keeps its own
 * copy of the key). PKI_EINVAL when ca_cert's validity is unreadable. Caller frees *ret with
 * pki_leaf_signer_free(). */
int pki_leaf_signer_new(X509 *ca_cert, EVP_PKEY *ca_key, pki_leaf_signer **ret, char *errbuf);
void pki_leaf_signer_free(pki_leaf_signer *s);

/* Signs a leaf for a SubjectPublicKeyInfo DER (as i2d_PUBKEY writes it and the store keeps it),
 * with req's SANs, CN and lifetime; its key type must be req->rsa's (PKI_EINVAL otherwise).
 * Same certificate profile and validity rules as pki_issue_leaf (PKI_EEXPIRED when the CA is not
 * valid at `now`). *ret is written only on success; free ret->pem with free(). */
int pki_sign_public_key(pki_leaf_signer *s, const unsigned char *spki_der, size_t spki_len,
                        const pki_leaf_request *req, int64_t now, pki_signed_leaf *ret,
                        char *errbuf);
/* Verifies a PEM CSR's signature (proof of possession) and key type against req->rsa, then signs
 * its public key as pki_sign_public_key does; nothing else is taken from the CSR. PKI_EINVAL for a
 * bad CSR. When ret_spki is not NULL it receives the key's SPKI DER (caller frees with free()),
 * for a later re-sign. */
int pki_sign_csr(pki_leaf_signer *s, const char *csr_pem, size_t csr_len,
                 const pki_leaf_request *req, int64_t now, pki_signed_leaf *ret,
                 unsigned char **ret_spki, size_t *ret_spki_len, char *errbuf);
void pki_signed_leaf_clear(pki_signed_leaf *leaf);

/* The SPKI DER of a PEM "PUBLIC KEY" (as the identity record keeps it) for pki_sign_public_key,
 * and whether it is RSA (else EC P-256), without building an EVP_PKEY. PKI_EINVAL for anything
 * else or a malformed block. Caller frees *ret with free(). */
int pki_spki_from_pem(const char *pem, size_t len, unsigned char **ret, size_t *ret_len,
                      bool *ret_rsa, char *errbuf);

/* The PEM "PUBLIC KEY" of an EC P-256 or RSA SubjectPublicKeyInfo DER, written as
 * PEM_write_bio_PUBKEY writes it for this DER, without building an EVP_PKEY. The DER is checked
 * as ASN.1 (a single SPKI of one of those two algorithms, nothing after it), not as a key: the
 * point or modulus is checked where the key is used. PKI_EINVAL for anything else. Caller frees
 * *ret with free(). */
int pki_spki_to_pem(const unsigned char *der, size_t len, char **ret, char *errbuf);

#endif
