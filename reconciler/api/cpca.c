/* cpca.c - control-plane CA kept in the store, the API server certificate, TLS contexts. */
#include "reconciler/api/cpca.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "reconciler/pki.h"

#define SAN_TEXT_MAX 4096

/* OpenSSL failures of the control-plane CA: prefixed, with the drained error queue. */
static int crypto_fail(char *errbuf, const char *what)
{
    char prefixed[MESHCA_ERRBUF];
    snprintf(prefixed, sizeof(prefixed), "cp-ca: %s", what);
    return pki_fail(errbuf, MESHCA_ECRYPTO, prefixed);
}

void cpca_free(cpca *ca)
{
    if (!ca)
        return;
    free(ca->cert_pem);
    pki_free_secret(ca->key_pem);
    ca->cert_pem = NULL;
    ca->key_pem = NULL;
}

static int decode_ca(const char *value, size_t len, cpca *ret, char *errbuf)
{
    json_t *doc = json_loadb(value, len, 0, NULL);
    const char *cert = json_string_value(json_object_get(doc, "cert"));
    const char *key = json_string_value(json_object_get(doc, "key"));
    int rc = 0;
    if (!cert || !key) {
        rc = meshca_fail(errbuf, MESHCA_ECORRUPT,
                         "cp-ca: the stored control-plane CA (%s/%s/%s) "
                         "is not {\"cert\",\"key\"}",
                         CPCA_KIND, CPCA_MESH, CPCA_NAME);
    } else {
        ret->cert_pem = strdup(cert);
        ret->key_pem = strdup(key);
        if (!ret->cert_pem || !ret->key_pem) {
            cpca_free(ret);
            rc = meshca_fail(errbuf, MESHCA_ENOMEM, "cp-ca: out of memory");
        }
    }
    /* The document holds the key: wipe its copy of the string before it is freed. */
    if (key)
        OPENSSL_cleanse((char *)key, strlen(key));
    json_decref(doc);
    return rc;
}

int cpca_generate(const char *cn, int64_t now, cpca *ret, char *errbuf)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char *cert_pem = NULL, *key_pem = NULL;
    if (!cn || !ret)
        return meshca_fail(errbuf, MESHCA_EINVAL, "cp-ca: missing argument");
    int rc = pki_generate_key(false, 0, &key, errbuf);
    if (rc == 0)
        rc = pki_make_root(key, cn, NULL, now, (int64_t)CPCA_CA_DAYS * 86400, &cert, errbuf);
    if (rc == 0)
        rc = pki_cert_to_pem(cert, &cert_pem, errbuf);
    if (rc == 0)
        rc = pki_key_to_pem(key, &key_pem, errbuf);
    if (rc == 0) {
        ret->cert_pem = cert_pem;
        ret->key_pem = key_pem;
    } else {
        free(cert_pem);
        pki_free_secret(key_pem);
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

static int create_ca(store *s, int64_t now, char *errbuf)
{
    cpca ca = {NULL, NULL};
    char *value = NULL;
    json_t *doc = NULL;
    int rc = cpca_generate(CPCA_CN, now, &ca, errbuf);
    if (rc < 0)
        goto out;
    char created[32];
    pki_format_time(now, created, sizeof(created));
    doc = json_pack("{s:s, s:s, s:s}", "cert", ca.cert_pem, "key", ca.key_pem, "createdAt", created);
    value = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (!value) {
        rc = meshca_fail(errbuf, MESHCA_ENOMEM, "cp-ca: out of memory");
        goto out;
    }
    const store_key k = {CPCA_KIND, CPCA_MESH, CPCA_NAME};
    rc = store_put(s, &k, value, strlen(value), 0, NULL);
    if (rc == STORE_ECONFLICT)
        rc = 0; /* another process created it first: theirs is the CA, read it back */
    else if (rc < 0)
        rc = meshca_fail(errbuf, rc, "cp-ca: cannot store the control-plane CA: %s",
                         store_strerror(rc));
out:
    if (doc) {
        const char *k2 = json_string_value(json_object_get(doc, "key"));
        if (k2)
            OPENSSL_cleanse((char *)k2, strlen(k2));
    }
    json_decref(doc);
    pki_free_secret(value);
    cpca_free(&ca);
    return rc;
}

int cpca_load(store *s, int create, int64_t now, cpca *ret, char *errbuf)
{
    if (!s || !ret)
        return meshca_fail(errbuf, MESHCA_EINVAL, "cp-ca: missing argument");
    const store_key k = {CPCA_KIND, CPCA_MESH, CPCA_NAME};
    for (int attempt = 0; attempt < 2; attempt++) {
        char *value = NULL;
        size_t len = 0;
        int rc = store_get(s, &k, &value, &len, NULL);
        if (rc == 0) {
            cpca ca = {NULL, NULL};
            rc = decode_ca(value, len, &ca, errbuf);
            pki_free_secret(value);
            if (rc == 0)
                *ret = ca;
            return rc;
        }
        if (rc != STORE_ENOTFOUND)   /* the store's message names the URL and the cause */
            return meshca_fail(errbuf, rc, "cp-ca: cannot read the control-plane CA: %s",
                               store_errmsg(s)[0] ? store_errmsg(s) : store_strerror(rc));
        if (!create)
            return meshca_fail(errbuf, MESHCA_ENOTFOUND, "cp-ca: no control-plane CA yet");
        rc = create_ca(s, now, errbuf);
        if (rc < 0)
            return rc;
    }
    return meshca_fail(errbuf, MESHCA_EIO, "cp-ca: the control-plane CA vanished after creation");
}

/* The host part of "host", "host:port", "[v6]" or "[v6]:port" into buf. */
static int host_of(const char *name, char *buf, size_t size)
{
    const char *start = name, *end;
    if (name[0] == '[') {
        start = name + 1;
        end = strchr(start, ']');
        if (!end)
            return -1;
    } else {
        const char *colon = strchr(name, ':');
        /* Several colons without brackets: a bare IPv6 address. */
        end = colon && !strchr(colon + 1, ':') ? colon : name + strlen(name);
    }
    size_t n = (size_t)(end - start);
    if (n == 0 || n >= size)
        return -1;
    memcpy(buf, start, n);
    buf[n] = '\0';
    return 0;
}

/* Appends "IP:x" or "DNS:x" for one name; -1 when it is neither. Validated here because the
 * text goes through OpenSSL's configuration syntax, where ',' would start another name. */
static int append_san(char *text, size_t size, const char *name)
{
    char host[256];
    unsigned char addr[16];
    if (host_of(name, host, sizeof(host)) < 0)
        return -1;
    int ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    if (!ip) {
        for (const char *p = host; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '*')
                return -1;
    }
    size_t used = strlen(text);
    int n = snprintf(text + used, size - used, "%s%s:%s", used ? "," : "", ip ? "IP" : "DNS", host);
    return n < 0 || (size_t)n >= size - used ? -1 : 0;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return 0;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

int cpca_server_cert(const cpca *ca, const char *listen, const char *const *sans, size_t nsans,
                     int64_t now, char **ret_chain_pem, char **ret_key_pem, char *errbuf)
{
    if (!ca || !listen || !ret_chain_pem || !ret_key_pem || nsans > CPCA_MAX_SANS)
        return meshca_fail(errbuf, MESHCA_EINVAL, "cp-ca: bad server certificate request");
    char san_text[SAN_TEXT_MAX] = "";
    if (append_san(san_text, sizeof(san_text), listen) < 0)
        return meshca_fail(errbuf, MESHCA_EINVAL, "--listen: '%s' is not an address", listen);
    for (size_t i = 0; i < nsans; i++)
        if (append_san(san_text, sizeof(san_text), sans[i]) < 0)
            return meshca_fail(errbuf, MESHCA_EINVAL,
                               "--tls-san: '%s' is neither an IP address nor a DNS name", sans[i]);

    int rc;
    X509 *ca_cert = NULL, *cert = NULL;
    EVP_PKEY *ca_key = NULL, *key = NULL;
    char *cert_pem = NULL, *key_pem = NULL, *chain = NULL;
    rc = pki_cert_from_pem(ca->cert_pem, strlen(ca->cert_pem), &ca_cert, errbuf);
    if (rc == 0)
        rc = pki_key_from_pem(ca->key_pem, strlen(ca->key_pem), &ca_key, errbuf);
    if (rc == 0)
        rc = pki_generate_key(false, 0, &key, errbuf);
    if (rc < 0)
        goto out;

    ERR_clear_error();
    cert = X509_new();
    ASN1_INTEGER *serial = NULL;
    BIGNUM *bn = BN_new();
    int ok = cert && bn && BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
             (serial = BN_to_ASN1_INTEGER(bn, NULL)) && X509_set_version(cert, 2) &&
             X509_set_serialNumber(cert, serial);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    X509_NAME *subject = X509_NAME_new();
    ok = ok && subject &&
         X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                    (const unsigned char *)"meshca control plane", -1, -1, 0) &&
         X509_set_subject_name(cert, subject) &&
         X509_set_issuer_name(cert, X509_get_subject_name(ca_cert)) &&
         X509_time_adj_ex(X509_getm_notBefore(cert), 0, -60, &(time_t){(time_t)now}) &&
         X509_time_adj_ex(X509_getm_notAfter(cert), CPCA_SERVER_DAYS, 0, &(time_t){(time_t)now}) &&
         X509_set_pubkey(cert, key) &&
         add_ext(cert, ca_cert, NID_basic_constraints, "critical,CA:FALSE") &&
         add_ext(cert, ca_cert, NID_key_usage, "critical,digitalSignature,keyEncipherment") &&
         add_ext(cert, ca_cert, NID_ext_key_usage, "serverAuth") &&
         add_ext(cert, ca_cert, NID_subject_alt_name, san_text) &&
         add_ext(cert, ca_cert, NID_subject_key_identifier, "hash") &&
         add_ext(cert, ca_cert, NID_authority_key_identifier, "keyid:always") &&
         X509_sign(cert, ca_key, EVP_sha256()) > 0;
    X509_NAME_free(subject);
    if (!ok) {
        rc = crypto_fail(errbuf, "cannot sign the server certificate");
        goto out;
    }
    rc = pki_cert_to_pem(cert, &cert_pem, errbuf);
    if (rc == 0)
        rc = pki_key_to_pem(key, &key_pem, errbuf);
    if (rc < 0)
        goto out;
    size_t n = strlen(cert_pem) + strlen(ca->cert_pem) + 1;
    chain = malloc(n);
    if (!chain) {
        rc = meshca_fail(errbuf, MESHCA_ENOMEM, "cp-ca: out of memory");
        goto out;
    }
    snprintf(chain, n, "%s%s", cert_pem, ca->cert_pem);
    *ret_chain_pem = chain;
    *ret_key_pem = key_pem;
    chain = NULL;
    key_pem = NULL;
out:
    free(chain);
    pki_free_secret(key_pem);
    free(cert_pem);
    X509_free(cert);
    X509_free(ca_cert);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    return rc;
}

/* The TLS layer accepts any client certificate; server.c verifies it against the mesh named in
 * it, once the request says which mesh it is about. */
static int accept_any_client_cert(int preverify_ok, X509_STORE_CTX *ctx)
{
    return 1;
}

/* Loads a PEM chain (leaf first) and key into ctx. */
static int use_chain_and_key(SSL_CTX *ctx, const char *chain_pem, const char *key_pem, char *errbuf)
{
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    int rc = pki_chain_from_pem(chain_pem, strlen(chain_pem), &chain, errbuf);
    if (rc == 0)
        rc = pki_key_from_pem(key_pem, strlen(key_pem), &key, errbuf);
    if (rc == 0) {
        ERR_clear_error();
        X509 *leaf = sk_X509_shift(chain);
        if (SSL_CTX_use_certificate(ctx, leaf) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1)
            rc = crypto_fail(errbuf, "certificate and key do not go together");
        for (int i = 0; rc == 0 && i < sk_X509_num(chain); i++)
            if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i)) != 1)
                rc = crypto_fail(errbuf, "cannot add the certificate chain");
        X509_free(leaf);
    }
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    return rc;
}

static int new_ctx(const SSL_METHOD *method, SSL_CTX **ret, char *errbuf)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        SSL_CTX_free(ctx);
        return crypto_fail(errbuf, "cannot create a TLS context");
    }
    *ret = ctx;
    return 0;
}

int cpca_server_ctx(const char *chain_pem, const char *key_pem, SSL_CTX **ret, char *errbuf)
{
    if (!chain_pem || !key_pem || !ret)
        return meshca_fail(errbuf, MESHCA_EINVAL, "cp-ca: missing certificate or key");
    SSL_CTX *ctx = NULL;
    int rc = new_ctx(TLS_server_method(), &ctx, errbuf);
    if (rc < 0)
        return rc;
    rc = use_chain_and_key(ctx, chain_pem, key_pem, errbuf);
    if (rc < 0) {
        SSL_CTX_free(ctx);
        return rc;
    }
    /* Request, do not require: an agent's first contact carries a token, not a certificate. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_client_cert);
    /* With SSL_VERIFY_PEER and no session id context OpenSSL ends every resumption attempt
     * (session id or ticket) with a fatal internal_error alert. Resuming is safe here: the
     * certificate a session carries is verified again on every request (server.c). */
    static const unsigned char sid_ctx[] = "meshca-api";
    if (SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1) != 1) {
        SSL_CTX_free(ctx);
        return crypto_fail(errbuf, "cannot set the TLS session id context");
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Most connections sit in a blocking query: let idle ones give their TLS buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    *ret = ctx;
    return 0;
}

static char *read_file(const char *path, size_t max, char *errbuf, const char *flag)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        meshca_fail(errbuf, MESHCA_EIO, "%s: cannot open %s", flag, path);
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad || n > max) {
        meshca_fail(errbuf, MESHCA_EIO, "%s: cannot read %s%s", flag, path,
                    n > max ? " (too large)" : "");
        if (buf)
            OPENSSL_cleanse(buf, n > max ? max + 1 : n); /* may be a key */
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int cpca_read_server_files(const char *cert_file, const char *key_file, char **ret_cert,
                           char **ret_key, char *errbuf)
{
    char *cert = read_file(cert_file, PKI_MAX_PEM_BYTES, errbuf, "--tls-cert");
    if (!cert)
        return MESHCA_EIO;
    char *key = read_file(key_file, PKI_MAX_PEM_BYTES, errbuf, "--tls-key");
    if (!key) {
        free(cert);
        return MESHCA_EIO;
    }
    *ret_cert = cert;
    *ret_key = key;
    return 0;
}

int cpca_server_ctx_from_files(const char *cert_file, const char *key_file, SSL_CTX **ret,
                               char *errbuf)
{
    char *cert = NULL, *key = NULL;
    int rc = cpca_read_server_files(cert_file, key_file, &cert, &key, errbuf);
    if (rc < 0)
        return rc;
    rc = cpca_server_ctx(cert, key, ret, errbuf);
    free(cert);
    pki_free_secret(key);
    return rc;
}

int cpca_server_ctx_reload(SSL_CTX *ctx, const char *chain_pem, const char *key_pem, char *errbuf)
{
    /* Checked on a scratch context first: a pair that does not load leaves ctx as it was. */
    SSL_CTX *check = NULL;
    int rc = cpca_server_ctx(chain_pem, key_pem, &check, errbuf);
    SSL_CTX_free(check);
    if (rc < 0)
        return rc;
    ERR_clear_error();
    if (SSL_CTX_clear_chain_certs(ctx) != 1)
        return crypto_fail(errbuf, "cannot replace the certificate chain");
    return use_chain_and_key(ctx, chain_pem, key_pem, errbuf);
}

int cpca_client_ctx(const char *ca_pem, const char *cert_pem, const char *key_pem, SSL_CTX **ret,
                    char *errbuf)
{
    if (!ca_pem || !ret || (!cert_pem != !key_pem))
        return meshca_fail(errbuf, MESHCA_EINVAL, "cp-ca: bad client TLS options");
    SSL_CTX *ctx = NULL;
    int rc = new_ctx(TLS_client_method(), &ctx, errbuf);
    if (rc < 0)
        return rc;
    STACK_OF(X509) *cas = NULL;
    rc = pki_chain_from_pem(ca_pem, strlen(ca_pem), &cas, errbuf);
    X509_STORE *st = SSL_CTX_get_cert_store(ctx);
    for (int i = 0; rc == 0 && i < sk_X509_num(cas); i++)
        if (X509_STORE_add_cert(st, sk_X509_value(cas, i)) != 1)
            rc = crypto_fail(errbuf, "cannot add the CA certificate");
    sk_X509_pop_free(cas, X509_free);
    if (rc == 0 && cert_pem)
        rc = use_chain_and_key(ctx, cert_pem, key_pem, errbuf);
    if (rc < 0) {
        SSL_CTX_free(ctx);
        return rc;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    *ret = ctx;
    return 0;
}
