/* server_tls.c - the API's server certificate in a live TLS context: made at start, renewed in place. */
#include "reconciler/api/server_tls.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>

#include "manifests/error.h"
#include "reconciler/api/cpca.h"
#include "reconciler/api/cpca_rotate.h"
#include "reconciler/pki.h"

struct server_tls {
    SSL_CTX *ctx;
    store *s;
    const char *listen;
    const char *const *sans;
    size_t nsans;
    const char *cert_file, *key_file;
    int64_t renew_at;   /* signed certificate: when to re-sign; 0 for files */
    int64_t not_after;  /* of the certificate served */
    char *ca_cert;      /* the control-plane CA that signed it (NULL for files) */
    int64_t ca_retry_at; /* a re-sign for a changed CA failed: not again before this */
};

/* The chain and key to serve now: the files, or a certificate the control-plane CA signs
 * (*ca_cert: that CA's certificate, to free; NULL for files). */
static int make_pems(server_tls *t, int64_t now, char **chain, char **key, char **ca_cert,
                     char *errbuf)
{
    *ca_cert = NULL;
    if (t->cert_file)
        return cpca_read_server_files(t->cert_file, t->key_file, chain, key, errbuf);
    cpca ca = {0};
    int rc = cpca_load(t->s, 1, now, &ca, errbuf);
    if (rc == 0)
        rc = cpca_server_cert(&ca, t->listen, t->sans, t->nsans, now, chain, key, errbuf);
    if (rc == 0) {
        *ca_cert = ca.cert_pem;
        ca.cert_pem = NULL;
    }
    cpca_free(&ca);
    return rc;
}

/* The leaf's notAfter (0 when it cannot be read). */
static int64_t leaf_not_after(const char *chain)
{
    X509 *leaf = NULL;
    int64_t t = 0;
    char err[MESHCA_ERRBUF];
    if (pki_cert_from_pem(chain, strlen(chain), &leaf, err) == 0 && pki_cert_not_after(leaf, &t) < 0)
        t = 0;
    X509_free(leaf);
    return t;
}

/* Builds (ctx NULL) or reloads t->ctx; *not_after of what it now serves. */
static int load(server_tls *t, int64_t now, int64_t *not_after, char *errbuf)
{
    char *chain = NULL, *key = NULL, *ca_cert = NULL;
    int rc = make_pems(t, now, &chain, &key, &ca_cert, errbuf);
    if (rc == 0)
        rc = t->ctx ? cpca_server_ctx_reload(t->ctx, chain, key, errbuf)
                    : cpca_server_ctx(chain, key, &t->ctx, errbuf);
    if (rc == 0) {
        free(t->ca_cert);
        t->ca_cert = ca_cert;
        ca_cert = NULL;
        t->ca_retry_at = 0;
        int64_t na = leaf_not_after(chain);
        t->not_after = na;
        if (not_after)
            *not_after = na;
        /* Two thirds of its life, as the agents renew theirs: a month left to retry. */
        t->renew_at = t->cert_file || na <= now ? 0 : now + (na - now) * 2 / 3;
    }
    free(chain);
    free(ca_cert);
    pki_free_secret(key);
    return rc;
}

int server_tls_new(store *s, const char *listen, const char *const *sans, size_t nsans,
                   const char *cert_file, const char *key_file, server_tls **ret, char *errbuf)
{
    if (cert_file || key_file) {
        if (!cert_file || !key_file)
            return meshca_fail(errbuf, MESHCA_EINVAL, "--tls-cert and --tls-key go together");
    }
    server_tls *t = calloc(1, sizeof(*t));
    if (!t)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    *t = (server_tls){NULL, s, listen, sans, nsans, cert_file, key_file, 0, 0, NULL, 0};
    int rc = load(t, (int64_t)time(NULL), NULL, errbuf);
    if (rc < 0) {
        free(t);
        return rc;
    }
    *ret = t;
    return 0;
}

SSL_CTX *server_tls_ctx(const server_tls *t)
{
    return t ? t->ctx : NULL;
}

int server_tls_due(const server_tls *t, int64_t now)
{
    return t && t->renew_at > 0 && now >= t->renew_at;
}

int server_tls_reload(server_tls *t, int64_t now, int64_t *not_after, char *errbuf)
{
    if (!t)
        return meshca_fail(errbuf, MESHCA_EINVAL, "no TLS context");
    int rc = load(t, now, not_after, errbuf);
    if (rc < 0 && t->renew_at > 0)
        t->renew_at = now + 3600; /* the store or the CA failed: again in an hour, not every pass */
    if (rc < 0 && t->ca_cert)
        t->ca_retry_at = now + SERVER_TLS_CA_RETRY_S;
    return rc;
}

int server_tls_ca_changed(server_tls *t, int64_t now, char *errbuf)
{
    if (!t || !t->ca_cert || now < t->ca_retry_at)
        return 0;
    cpca_rotation r = {0};
    int rc = cpca_rotation_read(t->s, &r, errbuf);
    if (rc == MESHCA_ENOTFOUND)
        return 0; /* nothing to switch to: a reload would make a CA, SIGHUP does that */
    if (rc < 0)
        return rc;
    rc = server_tls_ca_differs(t, r.current_cert, now);
    cpca_rotation_free(&r);
    return rc;
}

int server_tls_ca_differs(const server_tls *t, const char *current_cert, int64_t now)
{
    if (!t || !t->ca_cert || !current_cert || now < t->ca_retry_at)
        return 0;
    return strcmp(current_cert, t->ca_cert) != 0;
}

int64_t server_tls_not_after(const server_tls *t)
{
    return t ? t->not_after : 0;
}

void server_tls_free(server_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t->ca_cert);
    free(t);
}
