/* ca_provided.c - the provided CA backend: operator-supplied cert chain and key, checked for hygiene. */
#include "reconciler/ca_provided.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "reconciler/ca_backend.h"
#include "reconciler/datasource.h"

/* Returns a reason when the public key is too weak or unsupported, else NULL. */
static const char *weak_key_reason(EVP_PKEY *pkey, char *buf, size_t size)
{
    char group[64] = "";

    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
        if (EVP_PKEY_get_bits(pkey) >= 2048)
            return NULL;
        snprintf(buf, size, "RSA key of %d bits (at least 2048 required)", EVP_PKEY_get_bits(pkey));
        return buf;
    case EVP_PKEY_EC:
        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), NULL) == 1 &&
            (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0 ||
             strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0))
            return NULL;
        ERR_clear_error();
        snprintf(buf, size, "EC curve '%s' (P-256 or P-384 required)", group[0] ? group : "?");
        return buf;
    default:
        snprintf(buf, size, "unsupported key type (RSA >= 2048 or EC P-256/P-384 required)");
        return buf;
    }
}

static void check_cert(const ca_provided_material *m, X509 *x, int i, diag_list *diags)
{
    uint32_t flags = X509_get_extension_flags(x);
    uint32_t ku = X509_get_key_usage(x);
    char subject[256], reason[128];
    const char *weak;
    int64_t nb, na;
    long pathlen;

    X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
    if (!(flags & EXFLAG_CA) || !(flags & EXFLAG_KUSAGE) || !(ku & KU_KEY_CERT_SIGN))
        diag_error(diags, "ca-not-ca", m->cert_mark, m->cert_path,
                   "certificate %d (%s) is not a CA: it needs basicConstraints CA:TRUE and "
                   "keyUsage keyCertSign", i, subject);
    if ((flags & EXFLAG_KUSAGE) && (ku & KU_KEY_AGREEMENT))
        diag_error(diags, "ca-key-agreement", m->cert_mark, m->cert_path,
                   "certificate %d (%s) has keyUsage keyAgreement, not allowed for a CA", i,
                   subject);
    if (pki_cert_not_before(x, &nb) < 0 || pki_cert_not_after(x, &na) < 0) {
        diag_error(diags, "ca-unparsable", m->cert_mark, m->cert_path,
                   "certificate %d (%s) has an unreadable validity period", i, subject);
    } else {
        char when[32];

        pki_format_time(na, when, sizeof(when));
        if (m->now < nb) {
            pki_format_time(nb, when, sizeof(when));
            diag_error(diags, "ca-not-yet-valid", m->cert_mark, m->cert_path,
                       "certificate %d (%s) is not valid before %s", i, subject, when);
        } else if (na <= m->now) {
            diag_error(diags, "ca-expired", m->cert_mark, m->cert_path,
                       "certificate %d (%s) expired at %s", i, subject, when);
        } else if (na < m->now + m->leaf_lifetime_s) {
            diag_error(diags, "ca-expires-before-leaf", m->cert_mark, m->cert_path,
                       "certificate %d (%s) expires at %s, before a leaf issued now would", i,
                       subject, when);
        } else if (na < m->now + CA_EXPIRES_SOON_S) {
            diag_warning(diags, "ca-expires-soon", m->cert_mark, m->cert_path,
                         "certificate %d (%s) expires within 30 days, at %s", i, subject, when);
        }
    }
    if ((weak = weak_key_reason(X509_get0_pubkey(x), reason, sizeof(reason))) != NULL)
        diag_error(diags, "ca-weak-key", m->cert_mark, m->cert_path, "certificate %d (%s): %s",
                   i, subject, weak);
    /* chain[i] has i CA certificates below it: its pathLenConstraint must allow them. */
    pathlen = X509_get_pathlen(x);
    if (pathlen >= 0 && pathlen < i)
        diag_error(diags, "ca-path-length", m->cert_mark, m->cert_path,
                   "certificate %d (%s) has pathlen %ld but %d CA certificate(s) below it", i,
                   subject, pathlen, i);
}

/* OpenSSL's PEM reader stops at the last block and ignores what follows, so a file with a
 * truncated or pasted-over tail would be accepted. Returns the 1-based line of the first
 * non-blank text after the last "-----END ...-----" line, or 0 when there is none. The text
 * itself is never reported: it may be key material. */
static unsigned trailing_text_line(const char *pem, size_t len)
{
    static const char end_marker[] = "-----END ";
    size_t after = 0;
    bool found = false;

    for (size_t i = 0; i + sizeof(end_marker) - 1 <= len; i++)
        if (memcmp(pem + i, end_marker, sizeof(end_marker) - 1) == 0) {
            found = true;
            after = i;
        }
    if (!found)
        return 0;   /* no block at all: the parser reports that */
    while (after < len && pem[after] != '\n')
        after++;    /* the END line itself */
    for (size_t i = after; i < len; i++) {
        if (pem[i] == ' ' || pem[i] == '\t' || pem[i] == '\r' || pem[i] == '\n')
            continue;
        unsigned line = 1;
        for (size_t j = 0; j < i; j++)
            line += pem[j] == '\n';
        return line;
    }
    return 0;
}

size_t ca_provided_check_material(const ca_provided_material *m, diag_list *diags)
{
    size_t before = diag_count(diags, DIAG_ERROR);
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    char err[PKI_ERRBUF];
    unsigned line;

    if ((line = trailing_text_line(m->cert_pem, m->cert_len)) != 0)
        diag_error(diags, "ca-unparsable", m->cert_mark, m->cert_path,
                   "the CA certificate has text after its last PEM block (line %u); remove it", line);
    if (m->key_pem && (line = trailing_text_line(m->key_pem, m->key_len)) != 0)
        diag_error(diags, "ca-unparsable", m->key_mark, m->key_path,
                   "the CA private key has text after its last PEM block (line %u); remove it", line);
    if (pki_chain_from_pem(m->cert_pem, m->cert_len, &chain, err) < 0) {
        diag_error(diags, "ca-unparsable", m->cert_mark, m->cert_path,
                   "cannot parse the CA certificate: %s", err);
        goto out;
    }
    if (m->key_pem && pki_key_from_pem(m->key_pem, m->key_len, &key, err) < 0)
        /* errbuf names only the failure, never the key text */
        diag_error(diags, "ca-unparsable", m->key_mark, m->key_path,
                   "cannot parse the CA private key (PEM, unencrypted)");
    for (int i = 0; i < sk_X509_num(chain); i++)
        check_cert(m, sk_X509_value(chain, i), i, diags);
    for (int i = 0; i + 1 < sk_X509_num(chain); i++) {
        X509 *child = sk_X509_value(chain, i), *parent = sk_X509_value(chain, i + 1);

        if (X509_NAME_cmp(X509_get_issuer_name(child), X509_get_subject_name(parent)) != 0 ||
            X509_verify(child, X509_get0_pubkey(parent)) != 1) {
            ERR_clear_error();
            diag_error(diags, "ca-chain-order", m->cert_mark, m->cert_path,
                       "certificate %d is not signed by certificate %d: the chain must start "
                       "with the signing CA, each followed by its issuer", i, i + 1);
            break;
        }
    }
    if (key && !pki_key_matches(sk_X509_value(chain, 0), key))
        diag_error(diags, "ca-key-mismatch", m->key_mark, m->key_path,
                   "the private key does not match the first certificate of conf.cert");
out:
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    ERR_clear_error();
    return diag_count(diags, DIAG_ERROR) - before;
}

/* Reads one datasource. With `inline_only`, a source that is not in the manifest (secret, file)
 * is skipped, and one that does not decode is left to the static validators (bad-datasource),
 * which report it already: *ret stays NULL and nothing is reported. */
static int read_source(const ca_context *ctx, const mnode *ds, bool inline_only, const char *what,
                       const char *path, char **ret, size_t *ret_len, diag_list *diags)
{
    char err[PKI_ERRBUF];

    *ret = NULL;
    *ret_len = 0;
    if (inline_only && !datasource_is_inline(ds))
        return 0;
    if (datasource_read(ds, ctx, ret, ret_len, err) < 0) {
        if (inline_only)
            return 0;
        diag_error(diags, "ca-unparsable", ds ? &ds->mark : NULL, path, "cannot read the CA %s: %s",
                   what, err);
        return 1;
    }
    return 0;
}

/* Reads conf.cert and conf.key; a source that cannot be read is reported as ca-unparsable. */
static int read_material(const ca_context *ctx, bool inline_only, char **cert, size_t *cert_len,
                         char **key, size_t *key_len, ca_provided_material *m, char *cert_path,
                         char *key_path, diag_list *diags)
{
    const mnode *cert_ds = mnode_get(ctx->backend->conf, "cert");
    const mnode *key_ds = mnode_get(ctx->backend->conf, "key");
    int bad = 0;

    ca_conf_path(ctx, ".cert", cert_path, 128);
    ca_conf_path(ctx, ".key", key_path, 128);
    bad |= read_source(ctx, cert_ds, inline_only, "certificate", cert_path, cert, cert_len, diags);
    bad |= read_source(ctx, key_ds, inline_only, "private key", key_path, key, key_len, diags);
    memset(m, 0, sizeof(*m));
    m->cert_pem = *cert;
    m->cert_len = *cert_len;
    m->key_pem = *key;
    m->key_len = *key_len;
    m->cert_path = cert_path;
    m->key_path = key_path;
    m->cert_mark = cert_ds ? &cert_ds->mark : NULL;
    m->key_mark = key_ds ? &key_ds->mark : NULL;
    m->now = ctx->now;
    m->leaf_lifetime_s = mesh_backend_leaf_lifetime_ms(ctx->backend) / 1000;
    return bad;
}

static int provided_check(const ca_context *ctx, diag_list *diags)
{
    char *cert = NULL, *key = NULL, cert_path[128], key_path[128];
    size_t cert_len = 0, key_len = 0;
    ca_provided_material m;

    /* a readable cert is checked even when the key is not */
    read_material(ctx, false, &cert, &cert_len, &key, &key_len, &m, cert_path, key_path, diags);
    if (cert)
        ca_provided_check_material(&m, diags);
    datasource_free(cert, cert_len);
    datasource_free(key, key_len);
    return PKI_OK;
}

static int provided_ensure_ca(const ca_context *ctx, ca_backend **ret, char *errbuf)
{
    char *cert = NULL, *key = NULL, cert_path[128], key_path[128];
    size_t cert_len = 0, key_len = 0;
    diag_list diags = DIAG_LIST_INIT;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *pkey = NULL;
    ca_provided_material m;
    int r = PKI_OK;

    if (read_material(ctx, false, &cert, &cert_len, &key, &key_len, &m, cert_path, key_path, &diags) == 0)
        ca_provided_check_material(&m, &diags);
    for (size_t i = 0; i < diags.count; i++) {
        const diag *d = &diags.items[i];

        if (d->severity != DIAG_ERROR)
            continue;
        if (errbuf)
            snprintf(errbuf, PKI_ERRBUF, "%s: %s: %s", d->path, d->code, d->message);
        r = strcmp(d->code, "ca-expired") == 0 || strcmp(d->code, "ca-not-yet-valid") == 0
                ? PKI_EEXPIRED
                : PKI_EINVAL;
        goto out;
    }
    if ((r = pki_chain_from_pem(cert, cert_len, &chain, errbuf)) < 0 ||
        (r = pki_key_from_pem(key, key_len, &pkey, errbuf)) < 0 ||
        (r = ca_local_new(&ca_provided_ops, chain, pkey, ret)) < 0)
        goto out;
    chain = NULL;
    pkey = NULL;
out:
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(pkey);
    datasource_free(cert, cert_len);
    datasource_free(key, key_len);
    diag_list_free(&diags);
    return r;
}

size_t ca_provided_check_inline(const mesh_backend *b, const ca_context *ctx, diag_list *diags)
{
    size_t before = diag_count(diags, DIAG_ERROR);
    char *cert = NULL, *key = NULL, cert_path[128], key_path[128];
    size_t cert_len = 0, key_len = 0;
    ca_provided_material m;

    if (!b->conf || b->conf->kind != MNODE_MAP)
        return 0;
    read_material(ctx, true, &cert, &cert_len, &key, &key_len, &m, cert_path, key_path, diags);
    if (cert)
        ca_provided_check_material(&m, diags);   /* key_pem NULL: key checks skipped */
    datasource_free(cert, cert_len);
    datasource_free(key, key_len);
    return diag_count(diags, DIAG_ERROR) - before;
}

const ca_backend_ops ca_provided_ops = {
    .type = "provided",
    .check = provided_check,
    .ensure_ca = provided_ensure_ca,
    .sign_leaf = ca_local_sign_leaf,
    .cross_sign = ca_local_cross_sign,
    .free = ca_local_free,
};
