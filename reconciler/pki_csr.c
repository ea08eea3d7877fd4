/* pki_csr.c - EC P-256 certificate requests read as DER spans, in the one strict shape agents send. */
#include "reconciler/pki_csr.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "reconciler/pki_tbs.h"

#define PEM_BEGIN "-----BEGIN CERTIFICATE REQUEST-----\n"
#define PEM_END "-----END CERTIFICATE REQUEST-----"
#define PEM_COLUMNS 64
#define CSR_MAX_DER 4096   /* a P-256 CSR is about 200 bytes; a larger one is not this shape */

/* SEQUENCE { OID ecdsa-with-SHA256 } without parameters (RFC 5758 3.2) */
static const unsigned char ecdsa_sha256[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                             0xce, 0x3d, 0x04, 0x03, 0x02};
/* version INTEGER 0, subject: the empty Name */
static const unsigned char version_0_empty_subject[] = {0x02, 0x01, 0x00, 0x30, 0x00};
/* attributes [0] IMPLICIT SET OF Attribute: none */
static const unsigned char no_attributes[] = {0xa0, 0x00};

static bool is_base64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

/* The body of the PEM block, base64-decoded line by line: full lines of 64 columns, a last
 * line of 4..64 with '=' padding at its end only, then the END line (its newline optional). */
static bool pem_body(const char *pem, size_t len, unsigned char **ret, size_t *ret_len)
{
    const char *p = pem + strlen(PEM_BEGIN), *end = pem + len;
    unsigned char *der, *out;
    bool last = false;

    if (len < strlen(PEM_BEGIN) || memcmp(pem, PEM_BEGIN, strlen(PEM_BEGIN)) != 0 ||
        len - strlen(PEM_BEGIN) > CSR_MAX_DER * 2 || !(der = malloc(len / 4 * 3 + 3)))
        return false;
    out = der;
    while (!last) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : 0, pad = 0;
        int got;

        if (!nl || n == 0 || n > PEM_COLUMNS || n % 4 != 0)
            goto fail;
        last = n < PEM_COLUMNS;
        while (pad < 2 && p[n - 1 - pad] == '=')
            pad++;
        if (pad && !last)
            last = true;   /* padding ends the data: the END line must follow */
        for (size_t i = 0; i < n - pad; i++)
            if (!is_base64(p[i]))
                goto fail;
        got = EVP_DecodeBlock(out, (const unsigned char *)p, (int)n);
        if (got < 0 || (size_t)got < pad)
            goto fail;
        out += (size_t)got - pad;
        p = nl + 1;
        /* a body of full lines only ends at the END line */
        if (!last && (size_t)(end - p) >= strlen(PEM_END) && memcmp(p, PEM_END, strlen(PEM_END)) == 0)
            last = true;
    }
    if ((size_t)(end - p) < strlen(PEM_END) || memcmp(p, PEM_END, strlen(PEM_END)) != 0)
        goto fail;
    p += strlen(PEM_END);
    if (p != end && *p != '\n')
        goto fail;
    *ret = der;
    *ret_len = (size_t)(out - der);
    return true;
fail:
    free(der);
    return false;
}

/* One DER TLV of `tag` at *p with a definite, minimally encoded length of at most 2 octets
 * (what DER requires, and all a CSR of this shape needs): its content span; advances *p. */
static bool tlv(const unsigned char **p, const unsigned char *end, unsigned char tag,
                const unsigned char **ret_content, size_t *ret_len)
{
    const unsigned char *q = *p;
    size_t n;

    if (end - q < 2 || q[0] != tag)
        return false;
    if (q[1] < 0x80) {
        n = q[1];
        q += 2;
    } else if (q[1] == 0x81 && end - q >= 3 && q[2] >= 0x80) {
        n = q[2];
        q += 3;
    } else if (q[1] == 0x82 && end - q >= 4 && q[2] != 0) {
        n = ((size_t)q[2] << 8) | q[3];
        q += 4;
    } else {
        return false;
    }
    if ((size_t)(end - q) < n)
        return false;
    *ret_content = q;
    *ret_len = n;
    *p = q + n;
    return true;
}

/* BIT STRING with no unused bits: its bits. */
static bool bits(const unsigned char **p, const unsigned char *end, const unsigned char **ret,
                 size_t *ret_len)
{
    const unsigned char *c;
    size_t n;

    if (!tlv(p, end, 0x03, &c, &n) || n < 2 || c[0] != 0x00)
        return false;
    *ret = c + 1;
    *ret_len = n - 1;
    return true;
}

static bool take(const unsigned char **p, const unsigned char *end, const unsigned char *want,
                 size_t n)
{
    if ((size_t)(end - *p) < n || memcmp(*p, want, n) != 0)
        return false;
    *p += n;
    return true;
}

bool pki_csr_read_p256(const char *pem, size_t len, pki_csr_p256 *ret)
{
    pki_csr_p256 c = {0};
    const unsigned char *p, *end, *body, *info, *spki, *start;
    size_t derlen = 0, n, info_n, spki_n;

    if (!pem || !pem_body(pem, len, &c.der, &derlen))
        return false;
    p = c.der;
    end = c.der + derlen;
    /* CertificationRequest ::= SEQUENCE { info, signatureAlgorithm, signature BIT STRING } */
    if (!tlv(&p, end, 0x30, &body, &n) || p != end)
        goto fail;
    p = body;
    end = body + n;
    start = p;
    /* CertificationRequestInfo ::= SEQUENCE { version, subject, subjectPKInfo, attributes } */
    if (!tlv(&p, end, 0x30, &info, &info_n))
        goto fail;
    c.info = start;
    c.info_len = (size_t)(p - start);
    if (!take(&p, end, ecdsa_sha256, sizeof(ecdsa_sha256)) || !bits(&p, end, &c.sig, &c.sig_len) ||
        p != end)
        goto fail;
    p = info;
    end = info + info_n;
    if (!take(&p, end, version_0_empty_subject, sizeof(version_0_empty_subject)))
        goto fail;
    start = p;
    /* SubjectPublicKeyInfo ::= SEQUENCE { algorithm (id-ecPublicKey, prime256v1), key BIT STRING } */
    if (!tlv(&p, end, 0x30, &spki, &spki_n))
        goto fail;
    c.spki = start;
    c.spki_len = (size_t)(p - start);
    if (!take(&p, end, no_attributes, sizeof(no_attributes)) || p != end)
        goto fail;
    p = spki;
    end = spki + spki_n;
    if (!take(&p, end, pki_tbs_p256_alg, sizeof(pki_tbs_p256_alg)) ||
        !bits(&p, end, &c.point, &c.point_len) || p != end)
        goto fail;
    *ret = c;
    return true;
fail:
    free(c.der);
    return false;
}

void pki_csr_p256_clear(pki_csr_p256 *csr)
{
    if (!csr)
        return;
    free(csr->der);
    memset(csr, 0, sizeof(*csr));
}
