/* pki.c - OpenSSL primitives: key generation, root/leaf/cross-signed certificates, PEM and descriptions. */
#include "reconciler/pki.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#define SERIAL_BITS 128
/* Issuer key id when the issuer has one (provided CAs may lack an SKI), else issuer+serial. */
#define AKI_OF_ISSUER "keyid,issuer"

/* Writes `what` and the whole OpenSSL error queue into errbuf, leaving the queue empty. */
static int fail(char *errbuf, int code, const char *what)
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
        return fail(errbuf, PKI_EINVAL, "invalid key parameters");
    key = rsa ? EVP_RSA_gen((unsigned)(bits ? bits : 2048)) : EVP_EC_gen("P-256");
    if (!key)
        return fail(errbuf, PKI_ECRYPTO, "key generation failed");
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
static int add_uri_sans(X509 *x, const char *const *uris, size_t n, bool critical)
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
    ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, critical ? 1 : 0, X509V3_ADD_DEFAULT) == 1;
out:
    GENERAL_NAMES_free(gens);
    return ok;
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
        return fail(errbuf, PKI_EINVAL, "CA certificate has unreadable validity");
    if (now < nb)
        return fail(errbuf, PKI_EEXPIRED, "ca-expired: CA certificate is not yet valid");
    if (now >= na)
        return fail(errbuf, PKI_EEXPIRED, "ca-expired: CA certificate has expired");
    *ret_not_after = na;
    return PKI_OK;
}

int pki_make_root(EVP_PKEY *key, const char *cn, const char *spiffe_uri, int64_t now,
                  int64_t lifetime_s, X509 **ret, char *errbuf)
{
    X509 *x = NULL;

    ERR_clear_error();
    if (!key || !cn || !*cn || lifetime_s <= 0 || !ret)
        return fail(errbuf, PKI_EINVAL, "invalid root parameters");
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
        return fail(errbuf, PKI_ECRYPTO, "cannot build root certificate");
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
        return fail(errbuf, PKI_EINVAL, "invalid leaf request");
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
        return fail(errbuf, PKI_ECRYPTO, "cannot issue leaf certificate");
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
        return fail(errbuf, PKI_EINVAL, "invalid leaf request");
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
        return fail(errbuf, PKI_EINVAL, "invalid argument");
    req = X509_REQ_new();
    /* The subject is left empty: the controller takes only the public key (S5). */
    bool ok = req && X509_REQ_set_version(req, 0) && X509_REQ_set_pubkey(req, key) &&
              X509_REQ_sign(req, key, EVP_sha256()) > 0;
    if (ok && (bio = BIO_new(BIO_s_mem())) && PEM_write_bio_X509_REQ(bio, req))
        s = bio_to_string(bio);
    BIO_free(bio);
    X509_REQ_free(req);
    if (!s)
        return fail(errbuf, ok ? PKI_ENOMEM : PKI_ECRYPTO, "cannot build the certificate request");
    *ret = s;
    return PKI_OK;
}

int pki_pubkey_from_der(const unsigned char *der, size_t len, EVP_PKEY **ret, char *errbuf)
{
    const unsigned char *p = der;
    EVP_PKEY *k;

    ERR_clear_error();
    if (!der || !ret || len == 0 || len > PKI_MAX_PEM_BYTES)
        return fail(errbuf, PKI_EINVAL, "invalid public key");
    k = d2i_PUBKEY(NULL, &p, (long)len);
    if (!k || p != der + len) {
        EVP_PKEY_free(k);
        return fail(errbuf, PKI_EINVAL, "cannot parse public key (SubjectPublicKeyInfo)");
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
        return fail(errbuf, PKI_EINVAL, "invalid public key");
    bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return fail(errbuf, PKI_ENOMEM, "out of memory");
    k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!k)
        return fail(errbuf, PKI_EINVAL, "cannot parse public key PEM");
    *ret = k;
    return PKI_OK;
}

int pki_pubkey_to_pem(EVP_PKEY *key, char **ret, char *errbuf)
{
    BIO *bio;
    char *s = NULL;

    ERR_clear_error();
    if (!key || !ret)
        return fail(errbuf, PKI_EINVAL, "invalid argument");
    bio = BIO_new(BIO_s_mem());
    bool encoded = bio && PEM_write_bio_PUBKEY(bio, key);
    if (encoded)
        s = bio_to_string(bio);
    BIO_free(bio);
    if (!s)
        return fail(errbuf, encoded ? PKI_ENOMEM : PKI_ECRYPTO, "cannot encode public key");
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
        return fail(errbuf, PKI_EINVAL, "invalid cross-sign parameters");
    r = check_ca_valid(old_ca, now, &old_na, errbuf);
    if (r < 0)
        return r;
    if (pki_cert_not_after(new_ca, &new_na) < 0)
        return fail(errbuf, PKI_EINVAL, "new CA certificate has unreadable validity");
    not_after = old_na;
    if (new_na < not_after)
        not_after = new_na;
    if (not_after_max < not_after)
        not_after = not_after_max;
    if (not_after <= now)
        return fail(errbuf, PKI_EINVAL, "cross-signed certificate would be expired");
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
    return fail(errbuf, PKI_ECRYPTO, "cannot cross-sign CA certificate");
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

int pki_cert_to_pem(X509 *cert, char **ret, char *errbuf)
{
    BIO *bio;
    char *s = NULL;

    ERR_clear_error();
    if (!cert || !ret)
        return fail(errbuf, PKI_EINVAL, "invalid argument");
    bio = BIO_new(BIO_s_mem());
    bool encoded = bio && PEM_write_bio_X509(bio, cert);
    if (encoded)
        s = bio_to_string(bio);
    BIO_free(bio);
    if (!s)
        return fail(errbuf, encoded ? PKI_ENOMEM : PKI_ECRYPTO, "cannot encode certificate");
    *ret = s;
    return PKI_OK;
}

int pki_key_to_pem(EVP_PKEY *key, char **ret, char *errbuf)
{
    BIO *bio;
    char *s = NULL;

    ERR_clear_error();
    if (!key || !ret)
        return fail(errbuf, PKI_EINVAL, "invalid argument");
    /* secmem BIO: its buffer is wiped when freed */
    bio = BIO_new(BIO_s_secmem());
    bool encoded = bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
    if (encoded)
        s = bio_to_string(bio);
    BIO_free(bio);
    if (!s)
        return fail(errbuf, encoded ? PKI_ENOMEM : PKI_ECRYPTO, "cannot encode private key");
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
        return fail(errbuf, PKI_EINVAL, "invalid argument");
    bio = mem_bio(pem, len);
    if (!bio)
        return fail(errbuf, PKI_EINVAL, "empty or oversized certificate PEM");
    x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!x)
        return fail(errbuf, PKI_EINVAL, "cannot parse certificate PEM");
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
        return fail(errbuf, PKI_EINVAL, "invalid argument");
    bio = mem_bio(pem, len);
    if (!bio)
        return fail(errbuf, PKI_EINVAL, "empty or oversized key PEM");
    key = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
    BIO_free(bio);
    if (!key)
        return fail(errbuf, PKI_EINVAL, "cannot parse private key PEM");
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
        return fail(errbuf, PKI_EINVAL, "invalid argument");
    bio = mem_bio(pem, len);
    if (!bio)
        return fail(errbuf, PKI_EINVAL, "empty or oversized certificate PEM");
    chain = sk_X509_new_null();
    while (chain && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_num(chain) >= PKI_MAX_CHAIN || !sk_X509_push(chain, x)) {
            X509_free(x);
            BIO_free(bio);
            sk_X509_pop_free(chain, X509_free);
            return fail(errbuf, PKI_EINVAL, "too many certificates in chain");
        }
    }
    BIO_free(bio);
    /* The loop ends with "no start line" at the end of the data; anything else is garbage. */
    e = ERR_peek_last_error();
    if (!chain || sk_X509_num(chain) == 0 ||
        (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))) {
        sk_X509_pop_free(chain, X509_free);
        return fail(errbuf, PKI_EINVAL, "cannot parse certificate chain PEM");
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
