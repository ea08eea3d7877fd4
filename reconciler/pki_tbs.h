/* pki_tbs.h - a leaf's TBSCertificate written as DER from the parts every leaf of a CA shares. */
#ifndef MESHCA_PKI_TBS_H
#define MESHCA_PKI_TBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * What pki.c's leaf signer writes per leaf without building an X509 (issue 13: setting fields
 * of an X509 and i2d_re_X509_tbs re-encoding it cost a quarter of a re-sign). The bytes are the
 * ones i2d_re_X509_tbs writes for the same leaf: test-pki compares them with pki_sign_leaf's.
 * All pointers are borrowed for the call.
 */
typedef struct pki_tbs_fixed {
    const unsigned char *sigalg;   /* AlgorithmIdentifier of the CA's signature */
    size_t sigalg_len;
    const unsigned char *issuer;   /* the CA's subject Name */
    size_t issuer_len;
    const unsigned char *exts_before_ski;   /* Extension DERs before the SKI (BC, KU, EKU) */
    size_t exts_before_ski_len;
    const unsigned char *exts_after_ski;    /* between the SKI and the SANs (AKI) */
    size_t exts_after_ski_len;
} pki_tbs_fixed;

typedef struct pki_tbs_leaf {
    const unsigned char *serial;   /* unsigned big-endian, no leading zero byte, 1..20 bytes */
    size_t serial_len;
    int64_t not_before, not_after;
    const unsigned char *subject;  /* Name DER ("30 00" when empty) */
    size_t subject_len;
    const unsigned char *key_alg;  /* the key's AlgorithmIdentifier DER */
    size_t key_alg_len;
    const unsigned char *key;      /* the subjectPublicKey bits (no unused bits) */
    size_t key_len;
    const unsigned char *ski;      /* subjectKeyIdentifier value */
    size_t ski_len;
    const char *const *uris;       /* URI SANs, 1..n */
    size_t nuris;
    bool san_critical;
} pki_tbs_leaf;

/* Writes the TBSCertificate into a malloc'd buffer (caller frees with free()). Returns 0,
 * MESHCA_EINVAL when a time is outside the years 0..9999 or a length is out of range, or
 * MESHCA_ENOMEM. */
int pki_tbs_write(const pki_tbs_fixed *fixed, const pki_tbs_leaf *leaf, unsigned char **ret,
                  size_t *ret_len);

/* How many length octets DER writes for n content bytes (n < 2^24: a leaf is a few KiB): 1 to
 * 4. Shared with pki.c, which wraps the signed TBSCertificate into the Certificate. */
size_t pki_der_len_size(size_t n);

/* Writes a TLV's tag and length octets (n content bytes) at p; returns where the content goes. */
unsigned char *pki_der_put_header(unsigned char *p, unsigned char tag, size_t n);

/* The AlgorithmIdentifier of an EC P-256 key (id-ecPublicKey, prime256v1), 21 bytes. */
extern const unsigned char pki_tbs_p256_alg[21];

#endif
