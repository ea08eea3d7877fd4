/* pki_tbs.c - a leaf's TBSCertificate written as DER from the parts every leaf of a CA shares. */
#include "reconciler/pki_tbs.h"

#include "manifests/error.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

const unsigned char pki_tbs_p256_alg[21] = {
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,   /* id-ecPublicKey */
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,         /* prime256v1 */
};

/* DER tags used here */
#define T_BOOLEAN 0x01
#define T_INTEGER 0x02
#define T_BIT_STRING 0x03
#define T_OCTET_STRING 0x04
#define T_SEQUENCE 0x30
#define T_UTCTIME 0x17
#define T_GENERALIZEDTIME 0x18
#define T_URI 0x86        /* GeneralName uniformResourceIdentifier: [6] IMPLICIT IA5String */
#define T_VERSION 0xa0    /* [0] EXPLICIT Version */
#define T_EXTENSIONS 0xa3 /* [3] EXPLICIT Extensions */

#define MAX_CONTENT (1u << 24)   /* length octets written: 1 to 4; a leaf is a few KiB */

static const unsigned char version_v3[] = {T_VERSION, 0x03, T_INTEGER, 0x01, 0x02};
static const unsigned char oid_ski[] = {0x06, 0x03, 0x55, 0x1d, 0x0e};
static const unsigned char oid_san[] = {0x06, 0x03, 0x55, 0x1d, 0x11};
static const unsigned char bool_true[] = {T_BOOLEAN, 0x01, 0xff};

size_t pki_der_len_size(size_t n)
{
    return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 4;
}

/* Size of a whole TLV whose content is n bytes. */
static size_t tlv(size_t n)
{
    return 1 + pki_der_len_size(n) + n;
}

unsigned char *pki_der_put_header(unsigned char *p, unsigned char tag, size_t n)
{
    size_t k = pki_der_len_size(n);

    *p++ = tag;
    if (k == 1) {
        *p++ = (unsigned char)n;
        return p;
    }
    *p++ = (unsigned char)(0x80 | (k - 1));
    for (size_t i = k - 1; i > 0; i--)
        *p++ = (unsigned char)(n >> (8 * (i - 1)));
    return p;
}

static unsigned char *put(unsigned char *p, const void *src, size_t n)
{
    memcpy(p, src, n);
    return p + n;
}

static char *digits(char *p, int v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
    return p + n;
}

/* Time as ASN1_TIME_set writes it (RFC 5280 4.1.2.5): UTCTime "YYMMDDHHMMSSZ" for the years
 * 1950-2049, GeneralizedTime "YYYYMMDDHHMMSSZ" otherwise. Returns the content length, 0 when
 * the time cannot be written. */
static size_t format_time(int64_t t, char buf[16], unsigned char *ret_tag)
{
    time_t tt = (time_t)t;
    struct tm tm;
    int year;
    bool utc;
    char *p = buf;

    if ((int64_t)tt != t || !gmtime_r(&tt, &tm))
        return 0;
    year = tm.tm_year + 1900;
    if (year < 0 || year > 9999)
        return 0;
    utc = year >= 1950 && year < 2050;
    *ret_tag = utc ? T_UTCTIME : T_GENERALIZEDTIME;
    p = utc ? digits(p, year % 100, 2) : digits(p, year, 4);
    p = digits(p, tm.tm_mon + 1, 2);
    p = digits(p, tm.tm_mday, 2);
    p = digits(p, tm.tm_hour, 2);
    p = digits(p, tm.tm_min, 2);
    p = digits(p, tm.tm_sec, 2);
    *p++ = 'Z';
    return (size_t)(p - buf);
}

int pki_tbs_write(const pki_tbs_fixed *fixed, const pki_tbs_leaf *leaf, unsigned char **ret,
                  size_t *ret_len)
{
    char nb[16], na[16];
    unsigned char nb_tag, na_tag, *der, *p;
    size_t nb_len = format_time(leaf->not_before, nb, &nb_tag);
    size_t na_len = format_time(leaf->not_after, na, &na_tag);
    /* INTEGER: a 0x00 before a first byte with its top bit set keeps the serial positive */
    bool serial_pad = leaf->serial_len > 0 && (leaf->serial[0] & 0x80);
    size_t serial = leaf->serial_len + (serial_pad ? 1 : 0);
    size_t validity, spki, ski, names = 0, san_value, san, exts, tbs;

    if (!nb_len || !na_len || leaf->serial_len == 0 || leaf->serial_len > 20 || leaf->nuris == 0)
        return MESHCA_EINVAL;
    validity = tlv(nb_len) + tlv(na_len);
    spki = leaf->key_alg_len + tlv(leaf->key_len + 1);
    /* Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING } */
    ski = sizeof(oid_ski) + tlv(tlv(leaf->ski_len));
    for (size_t i = 0; i < leaf->nuris; i++) {
        size_t n = strlen(leaf->uris[i]);

        if (n >= MAX_CONTENT)
            return MESHCA_EINVAL;
        names += tlv(n);
    }
    if (names >= MAX_CONTENT)
        return MESHCA_EINVAL;
    san_value = tlv(names);
    san = sizeof(oid_san) + (leaf->san_critical ? sizeof(bool_true) : 0) + tlv(san_value);
    exts = fixed->exts_before_ski_len + tlv(ski) + fixed->exts_after_ski_len + tlv(san);
    tbs = sizeof(version_v3) + tlv(serial) + fixed->sigalg_len + fixed->issuer_len +
          tlv(validity) + leaf->subject_len + tlv(spki) + tlv(tlv(exts));
    if (tbs >= MAX_CONTENT)
        return MESHCA_EINVAL;
    if (!(der = malloc(tlv(tbs))))
        return MESHCA_ENOMEM;

    p = pki_der_put_header(der, T_SEQUENCE, tbs);
    p = put(p, version_v3, sizeof(version_v3));
    p = pki_der_put_header(p, T_INTEGER, serial);
    if (serial_pad)
        *p++ = 0x00;
    p = put(p, leaf->serial, leaf->serial_len);
    p = put(p, fixed->sigalg, fixed->sigalg_len);
    p = put(p, fixed->issuer, fixed->issuer_len);
    p = pki_der_put_header(p, T_SEQUENCE, validity);
    p = pki_der_put_header(p, nb_tag, nb_len);
    p = put(p, nb, nb_len);
    p = pki_der_put_header(p, na_tag, na_len);
    p = put(p, na, na_len);
    p = put(p, leaf->subject, leaf->subject_len);
    p = pki_der_put_header(p, T_SEQUENCE, spki);
    p = put(p, leaf->key_alg, leaf->key_alg_len);
    p = pki_der_put_header(p, T_BIT_STRING, leaf->key_len + 1);
    *p++ = 0x00;   /* no unused bits */
    p = put(p, leaf->key, leaf->key_len);
    p = pki_der_put_header(p, T_EXTENSIONS, tlv(exts));
    p = pki_der_put_header(p, T_SEQUENCE, exts);
    p = put(p, fixed->exts_before_ski, fixed->exts_before_ski_len);
    p = pki_der_put_header(p, T_SEQUENCE, ski);
    p = put(p, oid_ski, sizeof(oid_ski));
    p = pki_der_put_header(p, T_OCTET_STRING, tlv(leaf->ski_len));
    p = pki_der_put_header(p, T_OCTET_STRING, leaf->ski_len);
    p = put(p, leaf->ski, leaf->ski_len);
    p = put(p, fixed->exts_after_ski, fixed->exts_after_ski_len);
    p = pki_der_put_header(p, T_SEQUENCE, san);
    p = put(p, oid_san, sizeof(oid_san));
    if (leaf->san_critical)
        p = put(p, bool_true, sizeof(bool_true));
    p = pki_der_put_header(p, T_OCTET_STRING, san_value);
    p = pki_der_put_header(p, T_SEQUENCE, names);
    for (size_t i = 0; i < leaf->nuris; i++) {
        size_t n = strlen(leaf->uris[i]);

        p = pki_der_put_header(p, T_URI, n);
        p = put(p, leaf->uris[i], n);
    }
    *ret = der;
    *ret_len = (size_t)(p - der);
    return 0;
}
