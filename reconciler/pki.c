/* pki.c - OpenSSL primitives: key generation, root/leaf/cross-signed certificates, PEM and descriptions. */
#define _GNU_SOURCE 1 /* memmem */
#include "reconciler/pki.h"
#include "reconciler/pki_csr.h"
#include "reconciler/pki_p256_verify.h"
#include "reconciler/pki_tbs.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1t.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#define SERIAL_BITS 128
#define SERIAL_POOL 64   /* leaves' serials drawn from the DRBG at once (pki_leaf_signer) */
/* Issuer key id when the issuer has one (provided CAs may lack an SKI), else issuer+serial. */
#define AKI_OF_ISSUER "keyid,issuer"

int pki_fail(char *errbuf, int code, const char *what)
{
    size_t used = 0;
    unsigned long e;

    if (errbuf) {
        int n = snprintf(errbuf, PKI_ERRBUF, "%s", what);
        used = n < 0 ? 0 : (size_t)n >= PKI_ERRBUF ? PKI_ERRBUF - 1 : (size_t)n;
    }
    while ((e = ERR_get_error()) != 0) {
        char one[256];

        if (!errbuf || used + 3 >= PKI_ERRBUF)
            continue;
        ERR_error_string_n(e, one, sizeof(one));
        int n = snprintf(errbuf + used, PKI_ERRBUF - used, ": %s", one);
        used = n < 0 ? used : used + (size_t)n >= PKI_ERRBUF ? PKI_ERRBUF - 1 : used + (size_t)n;
    }
    return code;
}

int pki_generate_key(bool rsa, int bits, EVP_PKEY **ret, char *errbuf)
{
    EVP_PKEY *key;

    /* First: a stale error of an earlier call must not reach this one's message. */
    ERR_clear_error();
    if (!ret || (rsa && bits != 0 && (bits < 1024 || bits > 16384)))
        return pki_fail(errbuf, PKI_EINVAL, "invalid key parameters");
    key = rsa ? EVP_RSA_gen((unsigned)(bits ? bits : 2048)) : EVP_EC_gen("P-256");
    if (!key)
        return pki_fail(errbuf, PKI_ECRYPTO, "key generation failed");
    *ret = key;
    return PKI_OK;
}

static int set_random_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int ok = 0;

    if (!bn)
        return 0;
    do {
        if (!BN_rand(bn, SERIAL_BITS, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY))
            goto out;
    } while (BN_is_zero(bn));
    ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
out:
    BN_free(bn);
    return ok;
}

static int set_validity(X509 *x, int64_t not_before, int64_t not_after)
{
    return ASN1_TIME_set(X509_getm_notBefore(x), (time_t)not_before) != NULL &&
           ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after) != NULL;
}

/* Adds one extension from its config text (fixed strings only: SANs are built by add_uri_sans). */
static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return 0;
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* URI SANs are built as GENERAL_NAMEs, not config text, so commas in tag values stay literal.
 * `critical` when the subject is empty: then the SANs are the only name (RFC 5280 4.2.1.6), and
 * `openssl verify -x509_strict` rejects such a certificate with a non-critical SAN. */
static int add_uri_sans_flags(X509 *x, const char *const *uris, size_t n, bool critical,
                              unsigned long flags)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    int ok = 0;

    if (!gens)
        return 0;
    for (size_t i = 0; i < n; i++) {
        GENERAL_NAME *gen = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();

        if (!gen || !s || !ASN1_STRING_set(s, uris[i], (int)strlen(uris[i]))) {
            GENERAL_NAME_free(gen);
            ASN1_IA5STRING_free(s);
            goto out;
        }
        GENERAL_NAME_set0_value(gen, GEN_URI, s);
        if (!sk_GENERAL_NAME_push(gens, gen)) {
            GENERAL_NAME_free(gen);
            goto out;
        }
    }
    ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, critical ? 1 : 0, flags) == 1;
out:
    GENERAL_NAMES_free(gens);
    return ok;
}

static int add_uri_sans(X509 *x, const char *const *uris, size_t n, bool critical)
{
    return add_uri_sans_flags(x, uris, n, critical, X509V3_ADD_DEFAULT);
}

static int set_cn(X509_NAME *name, const char *cn)
{
    return X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                      -1, 0);
}

int pki_cert_not_before(X509 *cert, int64_t *ret)
{
    struct tm tm;

    if (!cert || !ASN1_TIME_to_tm(X509_get0_notBefore(cert), &tm))
        return PKI_EINVAL;
    *ret = (int64_t)timegm(&tm);
    return PKI_OK;
}

int pki_cert_not_after(X509 *cert, int64_t *ret)
{
    struct tm tm;

    if (!cert || !ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm))
        return PKI_EINVAL;
    *ret = (int64_t)timegm(&tm);
    return PKI_OK;
}

/* A CA may sign only inside its own validity (S5: never sign with an expired CA). */
static int check_ca_valid(X509 *ca, int64_t now, int64_t *ret_not_after, char *errbuf)
{
    int64_t nb, na;

    if (pki_cert_not_before(ca, &nb) < 0 || pki_cert_not_after(ca, &na) < 0)
        return pki_fail(errbuf, PKI_EINVAL, "CA certificate has unreadable validity");
    if (now < nb)
        return pki_fail(errbuf, PKI_EEXPIRED, "ca-expired: CA certificate is not yet valid");
    if (now >= na)
        return pki_fail(errbuf, PKI_EEXPIRED, "ca-expired: CA certificate has expired");
    *ret_not_after = na;
    return PKI_OK;
}

int pki_make_root(EVP_PKEY *key, const char *cn, const char *spiffe_uri, int64_t now,
                  int64_t lifetime_s, X509 **ret, char *errbuf)
{
    X509 *x = NULL;

    ERR_clear_error();
    if (!key || !cn || !*cn || lifetime_s <= 0 || !ret)
        return pki_fail(errbuf, PKI_EINVAL, "invalid root parameters");
    x = X509_new();
    if (!x || !X509_set_version(x, 2) || !set_random_serial(x) ||
        !set_cn(X509_get_subject_name(x), cn) ||
        !X509_set_issuer_name(x, X509_get_subject_name(x)) ||
        /* Backdated as leaves are: a pass of another process (or host) whose clock, or whose
         * pass start, is a little behind must not find a fresh root "not yet valid". */
        !set_validity(x, now - PKI_LEAF_BACKDATE_S, now + lifetime_s) || !X509_set_pubkey(x, key) ||
        !add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") ||
        !add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !add_ext(x, x, NID_subject_key_identifier, "hash") ||
        !add_ext(x, x, NID_authority_key_identifier, "keyid:always") ||
        (spiffe_uri && !add_uri_sans(x, &spiffe_uri, 1, false)) ||
        !X509_sign(x, key, EVP_sha256())) {
        X509_free(x);
        return pki_fail(errbuf, PKI_ECRYPTO, "cannot build root certificate");
    }
    *ret = x;
    return PKI_OK;
}

static char *bio_to_string(BIO *bio);

int pki_sign_leaf(const pki_leaf_request *req, EVP_PKEY *pub, X509 *ca_cert, EVP_PKEY *ca_key,
                  int64_t now, X509 **ret_cert, char *errbuf)
{
    X509 *x = NULL;
    int64_t ca_not_after, not_after;
    int r;

    ERR_clear_error();
    if (!req || !pub || !ca_cert || !ca_key || !ret_cert || !req->uris || req->nuris == 0 ||
        req->nuris > PKI_MAX_SANS || req->lifetime_s <= 0)
        return pki_fail(errbuf, PKI_EINVAL, "invalid leaf request");
    r = check_ca_valid(ca_cert, now, &ca_not_after, errbuf);
    if (r < 0)
        return r;
    not_after = now + req->lifetime_s;
    if (not_after > ca_not_after)
        not_after = ca_not_after;
    x = X509_new();
    if (!x || !X509_set_version(x, 2) || !set_random_serial(x) ||
        (req->cn && !set_cn(X509_get_subject_name(x), req->cn)) ||
        !X509_set_issuer_name(x, X509_get_subject_name(ca_cert)) ||
        !set_validity(x, now - PKI_LEAF_BACKDATE_S, not_after) || !X509_set_pubkey(x, pub) ||
        !add_ext(x, ca_cert, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_ext(x, ca_cert, NID_key_usage, "critical,digitalSignature,keyEncipherment") ||
        !add_ext(x, ca_cert, NID_ext_key_usage, "serverAuth,clientAuth") ||
        !add_ext(x, ca_cert, NID_subject_key_identifier, "hash") ||
        !add_ext(x, ca_cert, NID_authority_key_identifier, AKI_OF_ISSUER) ||
        !add_uri_sans(x, req->uris, req->nuris, req->cn == NULL) || !X509_sign(x, ca_key, EVP_sha256())) {
        X509_free(x);
        return pki_fail(errbuf, PKI_ECRYPTO, "cannot issue leaf certificate");
    }
    *ret_cert = x;
    return PKI_OK;
}

int pki_issue_leaf(const pki_leaf_request *req, X509 *ca_cert, EVP_PKEY *ca_key, int64_t now,
                   X509 **ret_cert, EVP_PKEY **ret_key, char *errbuf)
{
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    int r;

    if (!req || !ret_key)
        return pki_fail(errbuf, PKI_EINVAL, "invalid leaf request");
    r = pki_generate_key(req->rsa, 2048, &key, errbuf);
    if (r < 0)
        return r;
    r = pki_sign_leaf(req, key, ca_cert, ca_key, now, &x, errbuf);
    if (r < 0) {
        EVP_PKEY_free(key);
        return r;
    }
    *ret_cert = x;
    *ret_key = key;
    return PKI_OK;
}

int pki_make_csr(EVP_PKEY *key, char **ret, char *errbuf)
{
    X509_REQ *req = NULL;
    BIO *bio = NULL;
    char *s = NULL;

    ERR_clear_error();
    if (!key || !ret)
        return pki_fail(errbuf, PKI_EINVAL, "invalid argument");
    req = X509_REQ_new();
    /* The subject is left empty: the controller takes only the public key (S5). */
    bool ok = req && X509_REQ_set_version(req, 0) && X509_REQ_set_pubkey(req, key) &&
              X509_REQ_sign(req, key, EVP_sha256()) > 0;
    if (ok && (bio = BIO_new(BIO_s_mem())) && PEM_write_bio_X509_REQ(bio, req))
        s = bio_to_string(bio);
    BIO_free(bio);
    X509_REQ_free(req);
    if (!s)
        return pki_fail(errbuf, ok ? PKI_ENOMEM : PKI_ECRYPTO, "cannot build the certificate request");
    *ret = s;
    return PKI_OK;
}

int pki_pubkey_from_der(const unsigned char *der, size_t len, EVP_PKEY **ret, char *errbuf)
{
    const unsigned char *p = der;
    EVP_PKEY *k;

    ERR_clear_error();
    if (!der || !ret || len == 0 || len > PKI_MAX_PEM_BYTES)
        return pki_fail(errbuf, PKI_EINVAL, "invalid public key");
    k = d2i_PUBKEY(NULL, &p, (long)len);
    if (!k || p != der + len) {
        EVP_PKEY_free(k);
        return pki_fail(errbuf, PKI_EINVAL, "cannot parse public key (SubjectPublicKeyInfo)");
    }
    *ret = k;
    return PKI_OK;
}

int pki_pubkey_from_pem(const char *pem, size_t len, EVP_PKEY **ret, char *errbuf)
{
    BIO *bio;
    EVP_PKEY *k;

    ERR_clear_error();
    if (!pem || !ret || len > PKI_MAX_PEM_BYTES)
        return pki_fail(errbuf, PKI_EINVAL, "invalid public key");
    bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return pki_fail(errbuf, PKI_ENOMEM, "out of memory");
    k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!k)
        return pki_fail(errbuf, PKI_EINVAL, "cannot parse public key PEM");
    *ret = k;
    return PKI_OK;
}

int pki_pubkey_to_pem(EVP_PKEY *key, char **ret, char *errbuf)
{
    BIO *bio;
    char *s = NULL;

    ERR_clear_error();
    if (!key || !ret)
        return pki_fail(errbuf, PKI_EINVAL, "invalid argument");
    bio = BIO_new(BIO_s_mem());
    bool encoded = bio && PEM_write_bio_PUBKEY(bio, key);
    if (encoded)
        s = bio_to_string(bio);
    BIO_free(bio);
    if (!s)
        return pki_fail(errbuf, encoded ? PKI_ENOMEM : PKI_ECRYPTO, "cannot encode public key");
    *ret = s;
    return PKI_OK;
}

int pki_cross_sign(X509 *new_ca, X509 *old_ca, EVP_PKEY *old_key, int64_t now,
                   int64_t not_after_max, X509 **ret, char *errbuf)
{
    X509 *x = NULL;
    int64_t old_na, new_na, not_after;
    int r;

    ERR_clear_error();
    if (!new_ca || !old_ca || !old_key || !ret)
        return pki_fail(errbuf, PKI_EINVAL, "invalid cross-sign parameters");
    r = check_ca_valid(old_ca, now, &old_na, errbuf);
    if (r < 0)
        return r;
    if (pki_cert_not_after(new_ca, &new_na) < 0)
        return pki_fail(errbuf, PKI_EINVAL, "new CA certificate has unreadable validity");
    not_after = old_na;
    if (new_na < not_after)
        not_after = new_na;
    if (not_after_max < not_after)
        not_after = not_after_max;
    if (not_after <= now)
        return pki_fail(errbuf, PKI_EINVAL, "cross-signed certificate would be expired");
    x = X509_new();
    if (!x || !X509_set_version(x, 2) || !set_random_serial(x) ||
        !X509_set_subject_name(x, X509_get_subject_name(new_ca)) ||
        !X509_set_issuer_name(x, X509_get_subject_name(old_ca)) ||
        !set_validity(x, now - PKI_LEAF_BACKDATE_S, not_after) ||
        !X509_set_pubkey(x, X509_get0_pubkey(new_ca)))
        goto crypto;
    /* Same subject, key and CA extensions as new_ca; only the authority key id changes. */
    for (int i = 0; i < X509_get_ext_count(new_ca); i++) {
        X509_EXTENSION *ext = X509_get_ext(new_ca, i);

        if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) == NID_authority_key_identifier)
            continue;
        if (!X509_add_ext(x, ext, -1))
            goto crypto;
    }
    if (!add_ext(x, old_ca, NID_authority_key_identifier, AKI_OF_ISSUER) ||
        !X509_sign(x, old_key, EVP_sha256()))
        goto crypto;
    *ret = x;
    return PKI_OK;
crypto:
    X509_free(x);
    return pki_fail(errbuf, PKI_ECRYPTO, "cannot cross-sign CA certificate");
}

/* Copies a memory BIO's content into a NUL-terminated malloc'd string. */
static char *bio_to_string(BIO *bio)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *s;

    if (n < 0 || !(s = malloc((size_t)n + 1)))
        return NULL;
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    return s;
}

static char *der_to_pem(const unsigned char *der, size_t n, const char *label);

/* The same text as PEM_write_bio_X509, without a memory BIO and its copies (issue 13: a pass
 * writes several PEM certificates per dataplane). */
int pki_cert_to_pem(X509 *cert, char **ret, char *errbuf)
{
    unsigned char *der = NULL;
    char *s = NULL;
    int n;

    ERR_clear_error();
    if (!cert || !ret)
        return pki_fail(errbuf, PKI_EINVAL, "invalid argument");
    n = i2d_X509(cert, &der);
    if (n > 0)
        s = der_to_pem(der, (size_t)n, "CERTIFICATE");
    OPENSSL_free(der);
    if (!s)
        return pki_fail(errbuf, n > 0 ? PKI_ENOMEM : PKI_ECRYPTO, "cannot encode certificate");
    *ret = s;
    return PKI_OK;
}

int pki_key_to_pem(EVP_PKEY *key, char **ret, char *errbuf)
{
    BIO *bio;
    char *s = NULL;

    ERR_clear_error();
    if (!key || !ret)
        return pki_fail(errbuf, PKI_EINVAL, "invalid argument");
    /* secmem BIO: its buffer is wiped when freed */
    bio = BIO_new(BIO_s_secmem());
    bool encoded = bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
    if (encoded)
        s = bio_to_string(bio);
    BIO_free(bio);
    if (!s)
        return pki_fail(errbuf, encoded ? PKI_ENOMEM : PKI_ECRYPTO, "cannot encode private key");
    *ret = s;
    return PKI_OK;
}

void pki_free_secret(char *s)
{
    if (!s)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

static BIO *mem_bio(const char *pem, size_t len)
{
    if (!pem || len == 0 || len > PKI_MAX_PEM_BYTES)
        return NULL;
    return BIO_new_mem_buf(pem, (int)len);
}

int pki_cert_from_pem(const char *pem, size_t len, X509 **ret, char *errbuf)
{
    BIO *bio;
    X509 *x;

    ERR_clear_error();
    if (!ret)
        return pki_fail(errbuf, PKI_EINVAL, "invalid argument");
    bio = mem_bio(pem, len);
    if (!bio)
        return pki_fail(errbuf, PKI_EINVAL, "empty or oversized certificate PEM");
    x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!x)
        return pki_fail(errbuf, PKI_EINVAL, "cannot parse certificate PEM");
    *ret = x;
    return PKI_OK;
}

/* Encrypted keys are not supported: refuse instead of prompting on a terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

int pki_key_from_pem(const char *pem, size_t len, EVP_PKEY **ret, char *errbuf)
{
    BIO *bio;
    EVP_PKEY *key;

    ERR_clear_error();
    if (!ret)
        return pki_fail(errbuf, PKI_EINVAL, "invalid argument");
    bio = mem_bio(pem, len);
    if (!bio)
        return pki_fail(errbuf, PKI_EINVAL, "empty or oversized key PEM");
    key = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
    BIO_free(bio);
    if (!key)
        return pki_fail(errbuf, PKI_EINVAL, "cannot parse private key PEM");
    *ret = key;
    return PKI_OK;
}

int pki_chain_from_pem(const char *pem, size_t len, STACK_OF(X509) **ret, char *errbuf)
{
    STACK_OF(X509) *chain;
    BIO *bio;
    X509 *x;
    unsigned long e;

    ERR_clear_error();
    if (!ret)
        return pki_fail(errbuf, PKI_EINVAL, "invalid argument");
    bio = mem_bio(pem, len);
    if (!bio)
        return pki_fail(errbuf, PKI_EINVAL, "empty or oversized certificate PEM");
    chain = sk_X509_new_null();
    while (chain && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_num(chain) >= PKI_MAX_CHAIN || !sk_X509_push(chain, x)) {
            X509_free(x);
            BIO_free(bio);
            sk_X509_pop_free(chain, X509_free);
            return pki_fail(errbuf, PKI_EINVAL, "too many certificates in chain");
        }
    }
    BIO_free(bio);
    /* The loop ends with "no start line" at the end of the data; anything else is garbage. */
    e = ERR_peek_last_error();
    if (!chain || sk_X509_num(chain) == 0 ||
        (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))) {
        sk_X509_pop_free(chain, X509_free);
        return pki_fail(errbuf, PKI_EINVAL, "cannot parse certificate chain PEM");
    }
    ERR_clear_error();
    *ret = chain;
    return PKI_OK;
}

static int hex_colon(const unsigned char *p, size_t n, bool upper, char *buf, size_t size)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    size_t need = n ? n * 3 : 1;

    if (!buf || size < need)
        return PKI_EINVAL;
    for (size_t i = 0; i < n; i++) {
        buf[i * 3] = digits[p[i] >> 4];
        buf[i * 3 + 1] = digits[p[i] & 15];
        buf[i * 3 + 2] = ':';
    }
    buf[n ? n * 3 - 1 : 0] = '\0';
    return PKI_OK;
}

int pki_fingerprint_sha1(X509 *cert, char *buf, size_t size)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (!cert || !X509_digest(cert, EVP_sha1(), md, &n)) {
        ERR_clear_error();
        return PKI_ECRYPTO;
    }
    return hex_colon(md, n, false, buf, size);
}

int pki_serial_hex(X509 *cert, char *buf, size_t size)
{
    BIGNUM *bn;
    char *hex;
    int r = PKI_OK;

    if (!cert || !(bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL)))
        return PKI_ECRYPTO;
    hex = BN_bn2hex(bn);
    BN_free(bn);
    if (!hex)
        return PKI_ENOMEM;
    for (char *p = hex; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    if ((size_t)snprintf(buf, size, "%s", hex) >= size)
        r = PKI_EINVAL;
    OPENSSL_free(hex);
    return r;
}

int pki_ski_hex(X509 *cert, char *buf, size_t size)
{
    const ASN1_OCTET_STRING *ski = cert ? X509_get0_subject_key_id(cert) : NULL;

    if (!buf || size == 0)
        return PKI_EINVAL;
    if (!ski) {
        buf[0] = '\0';
        return PKI_OK;
    }
    return hex_colon(ASN1_STRING_get0_data(ski), (size_t)ASN1_STRING_length(ski), false, buf,
                     size);
}

int pki_format_time(int64_t t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (!gmtime_r(&tt, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return PKI_EINVAL;
    return PKI_OK;
}

const char *pki_key_type(EVP_PKEY *key)
{
    switch (key ? EVP_PKEY_get_base_id(key) : 0) {
    case EVP_PKEY_EC:
        return "ec";
    case EVP_PKEY_RSA:
        return "rsa";
    default:
        return "unknown";
    }
}

int pki_key_bits(EVP_PKEY *key)
{
    return key ? EVP_PKEY_get_bits(key) : 0;
}

bool pki_key_matches(X509 *cert, EVP_PKEY *key)
{
    EVP_PKEY *pub = cert ? X509_get0_pubkey(cert) : NULL;
    bool ok = pub && key && EVP_PKEY_eq(pub, key) == 1;

    ERR_clear_error();
    return ok;
}

int64_t pki_renewal_point(int64_t not_before, int64_t not_after, const char *stable_id)
{
    uint64_t h = 1469598103934665603ULL;   /* FNV-1a: stable across runs and hosts */
    double frac;

    for (const unsigned char *p = (const unsigned char *)(stable_id ? stable_id : ""); *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    frac = (double)(h >> 11) / 9007199254740992.0;   /* [0, 1) from the top 53 bits */
    if (not_after <= not_before)
        return not_before;
    return not_before + (int64_t)((double)(not_after - not_before) * (0.70 + 0.15 * frac));
}

/*
 * CSR mode and re-signing (S5). What this path avoids, measured with bench-all and perf: the
 * provider encoder behind X509_set_pubkey (the SPKI is copied from the CSR or the stored DER as
 * it is), parsing extension config text per leaf (the fixed ones and the AKI are built once per
 * CA), fetching the signature algorithm per leaf (the TBS is signed with EVP_PKEY_sign on a
 * context prepared once), and a BIO per PEM.
 */

/* SubjectPublicKeyInfo read without decoding the key: d2i_PUBKEY would build an EVP_PKEY through
 * the provider decoder, which costs more than the rest of a re-sign outside the signature. */
typedef struct spki_raw {
    X509_ALGOR *algor;
    ASN1_BIT_STRING *public_key;
} SPKI_RAW;

ASN1_SEQUENCE(SPKI_RAW) = {
    ASN1_SIMPLE(SPKI_RAW, algor, X509_ALGOR),
    ASN1_SIMPLE(SPKI_RAW, public_key, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(SPKI_RAW)

/*
 * The signer builds one leaf (the template) when it is made and keeps the DER of what every
 * leaf of the CA shares: the signature algorithm (set by signing the template), the issuer, the
 * fixed extensions and the AKI. Each leaf is then its TBS written by pki_tbs_write with only
 * serial, validity, subject, key, SKI and SANs of its own, one SHA-256 and one EVP_PKEY_sign on
 * a context prepared once, assembled as DER. X509_sign_ctx would add a fetch, a context copy and
 * a second encoding per leaf (perf: 35 % of a re-sign outside the signature); rewriting the
 * template's fields and re-encoding it with i2d_re_X509_tbs cost another 8 us a leaf (perf:
 * ASN1_item_ex_i2d, X509V3_add1_i2d, BN and ASN1_TIME conversions), a quarter of a re-sign.
 */
struct pki_leaf_signer {
    EVP_PKEY *key;               /* own copy of the CA key: no reference count shared across threads */
    EVP_PKEY_CTX *sign_ctx;      /* EVP_PKEY_sign_init and the digest set once */
    EVP_MD *sha256, *sha1;       /* fetched once: an implicit fetch per digest takes a shared lock */
    pki_p256_verifier *ec_verifier;  /* the CSR fast path's proof of possession, made once */
    unsigned char *sigalg_der;   /* the Certificate's signatureAlgorithm, as X509_sign wrote it */
    int sigalg_len;
    /* DER shared by every TBS (pki_tbs_fixed points into these): the TBS's signature algorithm,
     * the issuer, the extensions before the SKI (BC, KU, EKU) and the one after it (AKI). */
    unsigned char *tbs_sigalg, *issuer, *exts_before_ski, *exts_after_ski;
    pki_tbs_fixed fixed;
    unsigned char *sig;          /* EVP_PKEY_get_size(key) bytes: any signature of this CA key */
    size_t sig_cap;
    int64_t ca_not_before, ca_not_after;
    /* Serials are drawn from the DRBG SERIAL_POOL leaves at a time: one RAND_bytes per leaf was
     * 1.5 us (its per-call cost, not the bytes), 2 % of a CSR signing. Refilled when used up, or
     * in a forked child (serial_pid), so two processes never take the same serials. */
    unsigned char serial_pool[SERIAL_POOL * SERIAL_BITS / 8];
    size_t serial_used;
    pid_t serial_pid;
};

void pki_leaf_signer_free(pki_leaf_signer *s)
{
    if (!s)
        return;
    EVP_PKEY_free(s->key);   /* EVP_PKEY_free wipes the private key material */
    EVP_PKEY_CTX_free(s->sign_ctx);
    pki_p256_verifier_free(s->ec_verifier);
    EVP_MD_free(s->sha256);
    EVP_MD_free(s->sha1);
    OPENSSL_free(s->sigalg_der);
    OPENSSL_free(s->tbs_sigalg);
    OPENSSL_free(s->issuer);
    free(s->exts_before_ski);
    free(s->exts_after_ski);
    free(s->sig);
    OPENSSL_cleanse(s->serial_pool, sizeof(s->serial_pool));
    free(s);
}

/* Copies the algorithm and key bits into the leaf as they are: no EVP_PKEY, no encoder. */
static int set_spki(X509 *x, const X509_ALGOR *alg, const unsigned char *pk, int pklen)
{
    const ASN1_OBJECT *obj;
    const void *pval;
    int ptype;
    void *param = NULL;
    ASN1_OBJECT *aobj;
    unsigned char *penc;

    X509_ALGOR_get0(&obj, &ptype, &pval, alg);
    if (ptype == V_ASN1_OBJECT)
        param = OBJ_dup(pval);
    else if (ptype == V_ASN1_SEQUENCE)
        param = ASN1_STRING_dup(pval);
    else if (ptype != V_ASN1_NULL && ptype != V_ASN1_UNDEF)
        return 0;
    aobj = OBJ_dup(obj);
    penc = pklen > 0 ? OPENSSL_memdup(pk, (size_t)pklen) : NULL;
    if (!aobj || !penc || (ptype != V_ASN1_NULL && ptype != V_ASN1_UNDEF && !param) ||
        !X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), aobj, ptype, param, penc, pklen)) {
        ASN1_OBJECT_free(aobj);
        OPENSSL_free(penc);
        if (ptype == V_ASN1_OBJECT)
            ASN1_OBJECT_free(param);
        else
            ASN1_STRING_free(param);
        return 0;
    }
    return 1;
}

/* subjectKeyIdentifier "hash" (RFC 5280 4.2.1.2 method 1): SHA-1 of the key bits. In place of
 * the template's (X509V3_ADD_REPLACE keeps its position). */
static int set_ski(X509 *x, const EVP_MD *sha1, const unsigned char *pk, int pklen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    ASN1_OCTET_STRING *ski = ASN1_OCTET_STRING_new();
    int ok = ski && EVP_Digest(pk, (size_t)pklen, md, &mdlen, sha1, NULL) &&
             ASN1_OCTET_STRING_set(ski, md, (int)mdlen) &&
             X509_add1_ext_i2d(x, NID_subject_key_identifier, ski, 0, X509V3_ADD_REPLACE) == 1;

    ASN1_OCTET_STRING_free(ski);
    return ok;
}

/* The DER of extensions [from, to) of x, concatenated, into a malloc'd buffer. */
static unsigned char *exts_der(X509 *x, int from, int to, size_t *ret_len)
{
    size_t total = 0;
    unsigned char *der, *p;

    for (int i = from; i < to; i++) {
        int n = i2d_X509_EXTENSION(X509_get_ext(x, i), NULL);

        if (n <= 0)
            return NULL;
        total += (size_t)n;
    }
    if (!(der = malloc(total ? total : 1)))
        return NULL;
    p = der;
    for (int i = from; i < to; i++)
        i2d_X509_EXTENSION(X509_get_ext(x, i), &p);
    *ret_len = total;
    return der;
}

/* Keeps what every leaf of the CA shares, from the signed template: its extensions must be in
 * pki_issue_leaf's order (BC, KU, EKU, SKI, AKI, SAN), as pki_tbs_write puts the SKI and SANs. */
static int keep_fixed_parts(pki_leaf_signer *s, X509 *x)
{
    static const int order[] = {NID_basic_constraints, NID_key_usage, NID_ext_key_usage,
                                NID_subject_key_identifier, NID_authority_key_identifier,
                                NID_subject_alt_name};
    int n;

    if (X509_get_ext_count(x) != (int)(sizeof(order) / sizeof(order[0])))
        return 0;
    for (int i = 0; i < X509_get_ext_count(x); i++)
        if (OBJ_obj2nid(X509_EXTENSION_get_object(X509_get_ext(x, i))) != order[i])
            return 0;
    n = i2d_X509_ALGOR(X509_get0_tbs_sigalg(x), &s->tbs_sigalg);
    if (n <= 0)
        return 0;
    s->fixed.sigalg = s->tbs_sigalg;
    s->fixed.sigalg_len = (size_t)n;
    n = i2d_X509_NAME(X509_get_issuer_name(x), &s->issuer);
    if (n <= 0)
        return 0;
    s->fixed.issuer = s->issuer;
    s->fixed.issuer_len = (size_t)n;
    s->exts_before_ski = exts_der(x, 0, 3, &s->fixed.exts_before_ski_len);
    s->exts_after_ski = exts_der(x, 4, 5, &s->fixed.exts_after_ski_len);
    s->fixed.exts_before_ski = s->exts_before_ski;
    s->fixed.exts_after_ski = s->exts_after_ski;
    return s->exts_before_ski && s->exts_after_ski;
}

/* The template: pki_issue_leaf's profile, in its order (BC, KU, EKU, SKI, AKI, SAN), with the
 * CA's own key as a placeholder, signed once so its signature algorithm fields are set. */
static int build_template(pki_leaf_signer *s, X509 *ca_cert)
{
    static const char *const placeholder_uri = "spiffe://placeholder";
    X509_PUBKEY *ca_pub = X509_get_X509_PUBKEY(ca_cert);
    X509_ALGOR *alg = NULL;
    const X509_ALGOR *sigalg = NULL;
    const unsigned char *pk = NULL;
    int pklen = 0, ok = 0;
    X509 *x = X509_new();

    if (!x || !ca_pub || !X509_PUBKEY_get0_param(NULL, &pk, &pklen, &alg, ca_pub) ||
        !X509_set_version(x, 2) || !set_random_serial(x) ||
        !X509_set_issuer_name(x, X509_get_subject_name(ca_cert)) ||
        !set_validity(x, s->ca_not_before, s->ca_not_after) || !set_spki(x, alg, pk, pklen) ||
        !add_ext(x, ca_cert, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_ext(x, ca_cert, NID_key_usage, "critical,digitalSignature,keyEncipherment") ||
        !add_ext(x, ca_cert, NID_ext_key_usage, "serverAuth,clientAuth") ||
        !set_ski(x, s->sha1, pk, pklen) ||
        !add_ext(x, ca_cert, NID_authority_key_identifier, AKI_OF_ISSUER) ||
        !add_uri_sans(x, &placeholder_uri, 1, true) || !X509_sign(x, s->key, s->sha256))
        goto out;
    X509_get0_signature(NULL, &sigalg, x);
    s->sigalg_len = sigalg ? i2d_X509_ALGOR(sigalg, &s->sigalg_der) : 0;
    ok = s->sigalg_len > 0 && keep_fixed_parts(s, x);
out:
    X509_free(x);
    return ok;
}

int pki_leaf_signer_new(X509 *ca_cert, EVP_PKEY *ca_key, pki_leaf_signer **ret, char *errbuf)
{
    pki_leaf_signer *s;
    int type;

    ERR_clear_error();
    if (!ca_cert || !ca_key || !ret)
        return pki_fail(errbuf, PKI_EINVAL, "invalid signer parameters");
    /* EVP_PKEY_sign with a digest set is the whole signature for these two; anything else
     * (RSA-PSS parameters, EdDSA) would need the generic X509_sign path. */
    type = EVP_PKEY_get_base_id(ca_key);
    if (type != EVP_PKEY_EC && type != EVP_PKEY_RSA)
        return pki_fail(errbuf, PKI_EINVAL, "CA key type not supported for leaf signing (EC or RSA)");
    s = calloc(1, sizeof(*s));
    if (!s)
        return pki_fail(errbuf, PKI_ENOMEM, "out of memory");
    if (pki_cert_not_before(ca_cert, &s->ca_not_before) < 0 ||
        pki_cert_not_after(ca_cert, &s->ca_not_after) < 0) {
        pki_leaf_signer_free(s);
        return pki_fail(errbuf, PKI_EINVAL, "CA certificate has unreadable validity");
    }
    s->key = EVP_PKEY_dup(ca_key);
    s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    s->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    s->sign_ctx = s->key ? EVP_PKEY_CTX_new(s->key, NULL) : NULL;
    s->ec_verifier = pki_p256_verifier_new();
    s->sig_cap = s->key && EVP_PKEY_get_size(s->key) > 0 ? (size_t)EVP_PKEY_get_size(s->key) : 0;
    s->sig = s->sig_cap ? malloc(s->sig_cap) : NULL;
    if (!s->key || !s->sha256 || !s->sha1 || !s->sign_ctx || !s->ec_verifier ||
        !s->sig ||
        EVP_PKEY_sign_init(s->sign_ctx) != 1 ||
        (type == EVP_PKEY_RSA && EVP_PKEY_CTX_set_rsa_padding(s->sign_ctx, RSA_PKCS1_PADDING) != 1) ||
        EVP_PKEY_CTX_set_signature_md(s->sign_ctx, s->sha256) != 1 || !build_template(s, ca_cert)) {
        pki_leaf_signer_free(s);
        return pki_fail(errbuf, PKI_ECRYPTO, "cannot prepare the CA's leaf signer");
    }
    *ret = s;
    return PKI_OK;
}

void pki_signed_leaf_clear(pki_signed_leaf *leaf)
{
    if (!leaf)
        return;
    free(leaf->pem);
    memset(leaf, 0, sizeof(*leaf));
}

/* True when the SPKI's algorithm is the one the request asks for (S5: EC P-256 or RSA). */
static bool spki_type_ok(const X509_ALGOR *alg, bool rsa)
{
    const ASN1_OBJECT *obj;
    const void *pval;
    int ptype;

    X509_ALGOR_get0(&obj, &ptype, &pval, alg);
    if (rsa)
        return OBJ_obj2nid(obj) == NID_rsaEncryption;
    return OBJ_obj2nid(obj) == NID_X9_62_id_ecPublicKey && ptype == V_ASN1_OBJECT &&
           OBJ_obj2nid(pval) == NID_X9_62_prime256v1;
}

/* DER to PEM with EVP_EncodeBlock: 64 columns as PEM_write_bio writes, without a BIO. */
static char *der_to_pem(const unsigned char *der, size_t n, const char *label)
{
    size_t lines = (n + 47) / 48, cap = lines * 65 + 2 * (strlen(label) + 17) + 1, off;
    char *pem = malloc(cap);

    if (!pem)
        return NULL;
    off = (size_t)snprintf(pem, cap, "-----BEGIN %s-----\n", label);
    for (size_t i = 0; i < n; i += 48) {
        size_t chunk = n - i < 48 ? n - i : 48;

        off += (size_t)EVP_EncodeBlock((unsigned char *)pem + off, der + i, (int)chunk);
        pem[off++] = '\n';
    }
    snprintf(pem + off, cap - off, "-----END %s-----\n", label);
    return pem;
}

/* Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature BIT STRING }. */
static unsigned char *assemble_cert(const unsigned char *tbs, size_t tbslen, const unsigned char *alg,
                                    size_t alglen, const unsigned char *sig, size_t siglen,
                                    size_t *ret_len)
{
    size_t bits = siglen + 1, body = tbslen + alglen + 1 + pki_der_len_size(bits) + bits;
    size_t total = 1 + pki_der_len_size(body) + body;
    unsigned char *der = malloc(total), *p;

    if (!der)
        return NULL;
    p = pki_der_put_header(der, 0x30, body);
    memcpy(p, tbs, tbslen);
    p += tbslen;
    memcpy(p, alg, alglen);
    p += alglen;
    p = pki_der_put_header(p, 0x03, bits);
    *p++ = 0;   /* no unused bits */
    memcpy(p, sig, siglen);
    *ret_len = total;
    return der;
}

/* A random serial of SERIAL_BITS bits, non-zero, as an unsigned big-endian number without
 * leading zero bytes (as BN_rand and BN_to_ASN1_INTEGER made it): *ret points into buf. */
static int random_serial(pki_leaf_signer *s, unsigned char buf[SERIAL_BITS / 8],
                         const unsigned char **ret, size_t *ret_len)
{
    size_t skip;

    do {
        if (s->serial_used == 0 || s->serial_used >= sizeof(s->serial_pool) ||
            s->serial_pid != getpid()) {
            if (RAND_bytes(s->serial_pool, sizeof(s->serial_pool)) != 1)
                return 0;
            s->serial_used = 0;
            s->serial_pid = getpid();
        }
        memcpy(buf, s->serial_pool + s->serial_used, SERIAL_BITS / 8);
        /* taken bytes are not kept: a later leaf cannot see another's serial in the pool */
        OPENSSL_cleanse(s->serial_pool + s->serial_used, SERIAL_BITS / 8);
        s->serial_used += SERIAL_BITS / 8;
        for (skip = 0; skip < SERIAL_BITS / 8 && buf[skip] == 0; skip++)
            ;
    } while (skip == SERIAL_BITS / 8);
    *ret = buf + skip;
    *ret_len = SERIAL_BITS / 8 - skip;
    return 1;
}

/* Lowercase hex of the serial's bytes, as pki_serial_hex prints it. */
static void serial_hex(const unsigned char *serial, size_t n, char *buf)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        buf[2 * i] = digits[serial[i] >> 4];
        buf[2 * i + 1] = digits[serial[i] & 15];
    }
    buf[2 * n] = '\0';
}

/* The subject Name DER of a leaf: CN=cn, built as pki_sign_leaf does (its checks: length, UTF-8). */
static int subject_der(const char *cn, unsigned char **ret, size_t *ret_len)
{
    X509_NAME *name = X509_NAME_new();
    int n = name && set_cn(name, cn) ? i2d_X509_NAME(name, ret) : 0;

    X509_NAME_free(name);
    if (n <= 0)
        return 0;
    *ret_len = (size_t)n;
    return 1;
}

static int sign_spki(pki_leaf_signer *s, const X509_ALGOR *alg, const unsigned char *pk, int pklen,
                     const pki_leaf_request *req, int64_t now, pki_signed_leaf *ret, char *errbuf)
{
    static const unsigned char empty_name[] = {0x30, 0x00};
    pki_signed_leaf out = {0};
    pki_tbs_leaf leaf = {0};
    unsigned char *tbs = NULL, *der = NULL, *subject = NULL, *key_alg = NULL;
    unsigned char md[EVP_MAX_MD_SIZE], ski[EVP_MAX_MD_SIZE], serial[SERIAL_BITS / 8];
    unsigned int mdlen = 0, skilen = 0;
    size_t siglen = s->sig_cap, derlen = 0, tbslen = 0;
    int64_t not_after;
    int r = PKI_ECRYPTO, ptype, n;
    const void *pval;

    if (!req->uris || req->nuris == 0 || req->nuris > PKI_MAX_SANS || req->lifetime_s <= 0)
        return pki_fail(errbuf, PKI_EINVAL, "invalid leaf request");
    if (alg ? !spki_type_ok(alg, req->rsa) : req->rsa)
        return pki_fail(errbuf, PKI_EINVAL, req->rsa ? "public key is not RSA as dpCert.keyType asks"
                                                 : "public key is not EC P-256 as dpCert.keyType asks");
    if (now < s->ca_not_before)
        return pki_fail(errbuf, PKI_EEXPIRED, "ca-expired: CA certificate is not yet valid");
    if (now >= s->ca_not_after)
        return pki_fail(errbuf, PKI_EEXPIRED, "ca-expired: CA certificate has expired");
    not_after = now + req->lifetime_s;
    if (not_after > s->ca_not_after)
        not_after = s->ca_not_after;
    if (!random_serial(s, serial, &leaf.serial, &leaf.serial_len))
        goto out;
    leaf.not_before = now - PKI_LEAF_BACKDATE_S;
    leaf.not_after = not_after;
    leaf.subject = empty_name;
    leaf.subject_len = sizeof(empty_name);
    if (req->cn) {
        if (!subject_der(req->cn, &subject, &leaf.subject_len))
            goto out;
        leaf.subject = subject;
    }
    /* The key's algorithm as the CSR or stored SPKI has it; an EC P-256 one is always the same
     * 21 bytes. Parameters of another ASN.1 type than these are refused, as X509_PUBKEY takes. */
    if (!req->rsa) {
        leaf.key_alg = pki_tbs_p256_alg;
        leaf.key_alg_len = sizeof(pki_tbs_p256_alg);
    } else {
        X509_ALGOR_get0(NULL, &ptype, &pval, alg);
        if ((ptype != V_ASN1_OBJECT && ptype != V_ASN1_SEQUENCE && ptype != V_ASN1_NULL &&
             ptype != V_ASN1_UNDEF) || (n = i2d_X509_ALGOR(alg, &key_alg)) <= 0)
            goto out;
        leaf.key_alg = key_alg;
        leaf.key_alg_len = (size_t)n;
    }
    if (pklen <= 0)
        goto out;
    leaf.key = pk;
    leaf.key_len = (size_t)pklen;
    /* subjectKeyIdentifier "hash" (RFC 5280 4.2.1.2 method 1): SHA-1 of the key bits */
    if (!EVP_Digest(pk, (size_t)pklen, ski, &skilen, s->sha1, NULL))
        goto out;
    leaf.ski = ski;
    leaf.ski_len = skilen;
    leaf.uris = req->uris;
    leaf.nuris = req->nuris;
    leaf.san_critical = req->cn == NULL;
    r = pki_tbs_write(&s->fixed, &leaf, &tbs, &tbslen);
    if (r < 0)
        goto out;
    r = PKI_ECRYPTO;
    if (!EVP_Digest(tbs, tbslen, md, &mdlen, s->sha256, NULL) ||
        EVP_PKEY_sign(s->sign_ctx, s->sig, &siglen, md, mdlen) != 1)
        goto out;
    r = PKI_ENOMEM;
    der = assemble_cert(tbs, tbslen, s->sigalg_der, (size_t)s->sigalg_len, s->sig, siglen, &derlen);
    if (!der || !(out.pem = der_to_pem(der, derlen, "CERTIFICATE")))
        goto out;
    serial_hex(leaf.serial, leaf.serial_len, out.serial_hex);
    out.not_before = leaf.not_before;
    out.not_after = not_after;
    *ret = out;
    out.pem = NULL;
    r = PKI_OK;
out:
    free(tbs);
    free(der);
    free(out.pem);
    OPENSSL_free(subject);
    OPENSSL_free(key_alg);
    if (r == PKI_ENOMEM)
        return pki_fail(errbuf, r, "out of memory");
    if (r < 0)
        return pki_fail(errbuf, PKI_ECRYPTO, "cannot sign leaf certificate");
    return r;
}

int pki_sign_public_key(pki_leaf_signer *s, const unsigned char *spki_der, size_t spki_len,
                        const pki_leaf_request *req, int64_t now, pki_signed_leaf *ret,
                        char *errbuf)
{
    const unsigned char *p = spki_der;
    SPKI_RAW *spki;
    int r;

    ERR_clear_error();
    if (!s || !spki_der || spki_len == 0 || spki_len > PKI_MAX_PEM_BYTES || !req || !ret)
        return pki_fail(errbuf, PKI_EINVAL, "invalid re-sign parameters");
    spki = (SPKI_RAW *)ASN1_item_d2i(NULL, &p, (long)spki_len, ASN1_ITEM_rptr(SPKI_RAW));
    if (!spki || p != spki_der + spki_len) {
        ASN1_item_free((ASN1_VALUE *)spki, ASN1_ITEM_rptr(SPKI_RAW));
        return pki_fail(errbuf, PKI_EINVAL, "cannot parse the stored public key (SubjectPublicKeyInfo DER)");
    }
    r = sign_spki(s, spki->algor, ASN1_STRING_get0_data(spki->public_key),
                  ASN1_STRING_length(spki->public_key), req, now, ret, errbuf);
    ASN1_item_free((ASN1_VALUE *)spki, ASN1_ITEM_rptr(SPKI_RAW));
    return r;
}

/*
 * CSR fast path for EC P-256 keys with ecdsa-with-SHA256 (what agents send): the request is read
 * as DER spans by pki_csr_read_p256 and verified with the signer's P-256 key set to its point.
 * Parsing with PEM_read_bio_X509_REQ builds the key through OSSL_DECODER_CTX_new_for_pkey, which
 * perf shows as 41 % of a CSR signing on one thread and behind a shared lock with two. Anything
 * else (RSA, other algorithms or shapes, a signature that does not verify) takes the generic
 * path, which reports the error.
 */
static bool verify_ec_p256(pki_leaf_signer *s, const pki_csr_p256 *csr)
{
    /* A CSR the fast path does not take is judged by the generic one, with its own errors. */
    return pki_p256_verify_csr(s->ec_verifier, csr);
}

/* Hands the SPKI DER out for a later re-sign; free() frees it. */
static int copy_spki(X509_PUBKEY *pub, unsigned char **ret, size_t *ret_len)
{
    unsigned char *der = NULL, *copy;
    int n = i2d_X509_PUBKEY(pub, &der);

    if (n <= 0 || !(copy = malloc((size_t)n))) {
        OPENSSL_free(der);
        return PKI_ENOMEM;
    }
    memcpy(copy, der, (size_t)n);
    OPENSSL_free(der);
    *ret = copy;
    *ret_len = (size_t)n;
    return PKI_OK;
}

int pki_sign_csr(pki_leaf_signer *s, const char *csr_pem, size_t csr_len,
                 const pki_leaf_request *req, int64_t now, pki_signed_leaf *ret,
                 unsigned char **ret_spki, size_t *ret_spki_len, char *errbuf)
{
    X509_REQ *csr = NULL;
    BIO *bio;
    X509_PUBKEY *pub;
    X509_ALGOR *alg = NULL;
    const unsigned char *pk = NULL;
    unsigned char *spki = NULL;
    size_t spki_len = 0;
    int pklen = 0, r;
    EVP_PKEY *key;
    pki_signed_leaf out;
    pki_csr_p256 fast;

    ERR_clear_error();
    if (!s || !req || !ret || (ret_spki && !ret_spki_len))
        return pki_fail(errbuf, PKI_EINVAL, "invalid CSR signing parameters");
    if (!req->rsa && csr_len <= PKI_MAX_PEM_BYTES && pki_csr_read_p256(csr_pem, csr_len, &fast)) {
        if (verify_ec_p256(s, &fast)) {
            /* the SPKI as the CSR has it: its strict shape is DER, as i2d_PUBKEY writes it */
            if (ret_spki && !(spki = malloc(fast.spki_len)))
                r = pki_fail(errbuf, PKI_ENOMEM, "cannot encode the CSR's public key");
            else {
                if (ret_spki) {
                    memcpy(spki, fast.spki, fast.spki_len);
                    spki_len = fast.spki_len;
                }
                r = sign_spki(s, NULL, fast.point, (int)fast.point_len, req, now, &out, errbuf);
            }
            pki_csr_p256_clear(&fast);
            goto done;
        }
        pki_csr_p256_clear(&fast);
    }
    bio = mem_bio(csr_pem, csr_len);
    if (!bio)
        return pki_fail(errbuf, PKI_EINVAL, "empty or oversized CSR PEM");
    csr = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!csr)
        return pki_fail(errbuf, PKI_EINVAL, "cannot parse the CSR PEM");
    pub = X509_REQ_get_X509_PUBKEY(csr);
    key = X509_REQ_get0_pubkey(csr);
    if (!pub || !key || !X509_PUBKEY_get0_param(NULL, &pk, &pklen, &alg, pub)) {
        r = pki_fail(errbuf, PKI_EINVAL, "CSR has no usable public key");
        goto done;
    }
    /* Proof of possession: only the holder of the private key can sign the request. */
    if (X509_REQ_verify(csr, key) != 1) {
        r = pki_fail(errbuf, PKI_EINVAL, "CSR signature does not verify with its own key");
        goto done;
    }
    if (req->rsa && EVP_PKEY_get_bits(key) < 2048) {
        r = pki_fail(errbuf, PKI_EINVAL, "CSR key is RSA smaller than 2048 bits");
        goto done;
    }
    if (ret_spki && copy_spki(pub, &spki, &spki_len) < 0) {
        r = pki_fail(errbuf, PKI_ENOMEM, "cannot encode the CSR's public key");
        goto done;
    }
    r = sign_spki(s, alg, pk, pklen, req, now, &out, errbuf);
done:
    X509_REQ_free(csr);
    if (r < 0) {
        free(spki);
        return r;
    }
    if (ret_spki) {
        *ret_spki = spki;
        *ret_spki_len = spki_len;
    }
    *ret = out;
    return PKI_OK;
}

/* The body of a PEM block with this label, base64-decoded; false when there is none. */
static bool pem_block_der(const char *pem, size_t len, const char *label, unsigned char **ret,
                          size_t *ret_len)
{
    char begin[64], end[64];
    int blen = snprintf(begin, sizeof(begin), "-----BEGIN %s-----", label);
    int elen = snprintf(end, sizeof(end), "-----END %s-----", label);
    const char *b = memmem(pem, len, begin, (size_t)blen), *e;
    EVP_ENCODE_CTX *ctx;
    unsigned char *der;
    int outl = 0, finl = 0;
    bool ok;

    if (!b)
        return false;
    b += blen;
    e = memmem(b, len - (size_t)(b - pem), end, (size_t)elen);
    if (!e || e - b > INT_MAX || !(der = malloc((size_t)(e - b) + 1)))
        return false;
    ctx = EVP_ENCODE_CTX_new();
    ok = ctx && (EVP_DecodeInit(ctx), EVP_DecodeUpdate(ctx, der, &outl, (const unsigned char *)b,
                                                       (int)(e - b)) >= 0) &&
         EVP_DecodeFinal(ctx, der + outl, &finl) >= 0 && outl + finl > 0;
    EVP_ENCODE_CTX_free(ctx);
    if (!ok) {
        free(der);
        return false;
    }
    *ret = der;
    *ret_len = (size_t)(outl + finl);
    return true;
}

int pki_spki_from_pem(const char *pem, size_t len, unsigned char **ret, size_t *ret_len,
                      bool *ret_rsa, char *errbuf)
{
    unsigned char *der = NULL;
    size_t n = 0;
    const unsigned char *p;
    SPKI_RAW *spki;
    bool rsa;

    ERR_clear_error();
    if (!pem || len == 0 || len > PKI_MAX_PEM_BYTES || !ret || !ret_len || !ret_rsa)
        return pki_fail(errbuf, PKI_EINVAL, "invalid public key parameters");
    /* The PEM body is the SPKI DER itself: decoding it builds no EVP_PKEY (no provider decoder). */
    if (!pem_block_der(pem, len, "PUBLIC KEY", &der, &n))
        return pki_fail(errbuf, PKI_EINVAL, "no PUBLIC KEY PEM block");
    /* An EC P-256 key as every agent sends it: SEQUENCE (91 bytes) { id-ecPublicKey prime256v1,
     * BIT STRING of 66 bytes, none unused }. The parse below takes these bytes whatever the
     * point and reads the same verdict; building and freeing its ASN.1 objects cost a full pass
     * as much as the PEM's base64 (doc/performance.md). */
    if (n == 91 && der[0] == 0x30 && der[1] == 0x59 &&
        memcmp(der + 2, pki_tbs_p256_alg, sizeof(pki_tbs_p256_alg)) == 0 && der[23] == 0x03 &&
        der[24] == 0x42 && der[25] == 0x00) {
        *ret = der;
        *ret_len = n;
        *ret_rsa = false;
        return PKI_OK;
    }
    p = der;
    spki = (SPKI_RAW *)ASN1_item_d2i(NULL, &p, (long)n, ASN1_ITEM_rptr(SPKI_RAW));
    if (!spki || p != der + n || !(spki_type_ok(spki->algor, true) || spki_type_ok(spki->algor, false))) {
        ASN1_item_free((ASN1_VALUE *)spki, ASN1_ITEM_rptr(SPKI_RAW));
        free(der);
        return pki_fail(errbuf, PKI_EINVAL, "not an EC P-256 or RSA SubjectPublicKeyInfo");
    }
    rsa = spki_type_ok(spki->algor, true);
    ASN1_item_free((ASN1_VALUE *)spki, ASN1_ITEM_rptr(SPKI_RAW));
    *ret = der;
    *ret_len = n;
    *ret_rsa = rsa;
    return PKI_OK;
}

int pki_spki_to_pem(const unsigned char *der, size_t len, char **ret, char *errbuf)
{
    const unsigned char *p = der;
    SPKI_RAW *spki;
    char *pem;
    bool ok;

    ERR_clear_error();
    if (!der || !ret || len == 0 || len > PKI_MAX_PEM_BYTES)
        return pki_fail(errbuf, PKI_EINVAL, "invalid public key");
    /* The shape is checked as ASN.1 alone: building an EVP_PKEY (d2i_PUBKEY) and writing it back
     * (PEM_write_bio_PUBKEY) went through the provider decoder and encoder look-ups, the most
     * of a CSR POST's OpenSSL time after the signature check. */
    spki = (SPKI_RAW *)ASN1_item_d2i(NULL, &p, (long)len, ASN1_ITEM_rptr(SPKI_RAW));
    ok = spki && p == der + len && (spki_type_ok(spki->algor, true) || spki_type_ok(spki->algor, false));
    ASN1_item_free((ASN1_VALUE *)spki, ASN1_ITEM_rptr(SPKI_RAW));
    ERR_clear_error();
    if (!ok)
        return pki_fail(errbuf, PKI_EINVAL, "not an EC P-256 or RSA SubjectPublicKeyInfo");
    pem = der_to_pem(der, len, "PUBLIC KEY");
    if (!pem)
        return pki_fail(errbuf, PKI_ENOMEM, "out of memory");
    *ret = pem;
    return PKI_OK;
}
