/* ca_cfssl.c - the cfssl CA backend: a meshca intermediate signed by cfssl, kept as mesh secrets, signing leaves locally. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "reconciler/ca/ca_cfssl.h"
#include "reconciler/ca/cfssl_client.h"
#include "reconciler/ca/extca_pki.h"
#include "reconciler/ca_backend.h"

/* Reads of the secrets when concurrent minters keep conflicting (each retry sees a winner), or
 * a reader meets a renewal half-way (the cert of one generation, the key of the next). */
#define CFSSL_OPEN_ATTEMPTS 3
#define CFSSL_DEFAULT_EXPIRATION_S (7 * 86400LL)
/* The lifetime cfssl's profile gives is compared with intermediateExpiration to this slack. */
#define CFSSL_EXPIRY_SLACK_S 3600

typedef struct cfssl_names {
    char cert[CA_MAX_SECRET_NAME], key[CA_MAX_SECRET_NAME], root[CA_MAX_SECRET_NAME];
} cfssl_names;

static int secret_names(const ca_context *ctx, cfssl_names *n)
{
    const char *b = ctx->backend->name.value ? ctx->backend->name.value : "";

    if ((size_t)snprintf(n->cert, sizeof(n->cert), "%s.ca-cfssl-cert-%s", ctx->mesh, b) >=
            sizeof(n->cert) ||
        (size_t)snprintf(n->key, sizeof(n->key), "%s.ca-cfssl-key-%s", ctx->mesh, b) >=
            sizeof(n->key) ||
        (size_t)snprintf(n->root, sizeof(n->root), "%s.ca-cfssl-root-%s", ctx->mesh, b) >=
            sizeof(n->root))
        return PKI_EINVAL;
    return PKI_OK;
}

/* conf.intermediateExpiration in seconds (default 7d); reports to diags when given. */
static int read_expiration(const ca_context *ctx, int64_t *ret, diag_list *diags, char *errbuf)
{
    const mnode *exp = mnode_get(ctx->backend->conf, "intermediateExpiration");
    int64_t ms;
    char path[128];

    *ret = CFSSL_DEFAULT_EXPIRATION_S;
    if (!exp || mnode_is_null(exp))
        return PKI_OK;
    if (!mnode_is_string(exp) || model_parse_duration(exp->scalar, &ms) < 0 || ms < 3600 * 1000LL ||
        ms > 10 * 365 * 86400 * 1000LL) {
        ca_conf_path(ctx, ".intermediateExpiration", path, sizeof(path));
        if (diags)
            diag_error(diags, "ca-conf", &exp->mark, path,
                       "intermediateExpiration must be a duration such as 7d, from 1h to 10y");
        return meshca_fail(errbuf, PKI_EINVAL, "%s: invalid intermediateExpiration", path);
    }
    *ret = ms / 1000;
    return PKI_OK;
}

size_t ca_cfssl_check_conf(const ca_context *ctx, diag_list *diags)
{
    size_t before = diag_count(diags, DIAG_ERROR);
    int64_t want;

    read_expiration(ctx, &want, diags, NULL);
    return diag_count(diags, DIAG_ERROR) - before;
}

/*
 * Apply-time check (S2): the conf, then a throwaway intermediate made through cfssl, which proves
 * that cfssl answers, takes the auth key and that the profile signs a proper CA. cfssl down, a
 * 5xx or a malformed answer: MESHCA_EUNAVAILABLE (apply exits 2) with a ca-unreachable error;
 * refused (authentication, profile, not a CA with pathlen 0): a ca-refused error (exit 1).
 * Every message names the backend and carries cfssl's own; the auth key never appears.
 */
static int cfssl_backend_check(const ca_context *ctx, diag_list *diags)
{
    const mesh_backend *b = ctx->backend;
    cfssl_intermediate im = {0};
    cfssl_client *c = NULL;
    char path[128], errbuf[PKI_ERRBUF] = "";
    int64_t want;
    int rc;

    ca_conf_path(ctx, "", path, sizeof(path));
    if (read_expiration(ctx, &want, diags, NULL) < 0)
        return PKI_OK;
    rc = cfssl_client_open(ctx, NULL, &c, errbuf);
    if (rc == MESHCA_ENOMEM)
        return rc;
    if (rc < 0) {
        /* The client names the conf field in its message (url, profile, authKey). */
        diag_error(diags, "ca-conf", &b->mark, path, "cfssl backend '%s': %s", b->name.value,
                   errbuf);
        return PKI_OK;
    }
    rc = cfssl_make_intermediate(c, ctx->now, &im, errbuf);
    if (rc == MESHCA_ENOMEM) {
        /* nothing to report: the caller fails on memory */
    } else if (rc == MESHCA_EUNAVAILABLE || rc == MESHCA_EIO) {
        diag_error(diags, "ca-unreachable", &b->mark, path, "%s", errbuf);
        rc = MESHCA_EUNAVAILABLE;
    } else if (rc < 0) {
        diag_error(diags, "ca-refused", &b->mark, path, "%s", errbuf);
        rc = PKI_OK;
    } else {
        /* cfssl 1.2.0's sign request carries no lifetime: the profile's expiry decides. */
        int64_t got = im.not_after - im.not_before;
        if (got + CFSSL_EXPIRY_SLACK_S < want || got > want + CFSSL_EXPIRY_SLACK_S) {
            char exp_path[160];
            ca_conf_path(ctx, ".intermediateExpiration", exp_path, sizeof(exp_path));
            diag_warning(diags, "cfssl-expiry-differs", &b->mark, exp_path,
                         "cfssl backend '%s': profile '%s' signs intermediates for %lldh, not "
                         "the %lldh of intermediateExpiration (cfssl 1.2.0 takes the lifetime "
                         "from the profile's expiry); renewal happens two thirds into what "
                         "cfssl signs", b->name.value,
                         cfssl_client_profile(c) ? cfssl_client_profile(c) : "(default)",
                         (long long)(got / 3600), (long long)(want / 3600));
        }
        rc = PKI_OK;
    }
    cfssl_intermediate_clear(&im);
    cfssl_client_free(c);
    return rc;
}

static int lookup(const ca_context *ctx, const char *name, char **ret, size_t *ret_len)
{
    if (!ctx->secret_lookup)
        return PKI_ENOENT;
    return ctx->secret_lookup(ctx->secret_userdata, name, ret, ret_len);
}

static void free_secret(char *data, size_t len)
{
    if (data) {
        OPENSSL_cleanse(data, len);
        free(data);
    }
}

/* The stored intermediate: [cert, root] and its key, or PKI_EINVAL (with why) when the three
 * secrets do not belong together (a renewal read half-way, or damage). */
static int load_stored(const char *cert_pem, size_t cert_len, const char *key_pem,
                       size_t key_len, const char *root_pem, size_t root_len, cfssl_intermediate *ret,
                       char *errbuf)
{
    cfssl_intermediate im = {0};
    int rc;

    if ((rc = pki_cert_from_pem(cert_pem, cert_len, &im.cert, errbuf)) < 0 ||
        (rc = pki_key_from_pem(key_pem, key_len, &im.key, errbuf)) < 0 ||
        (rc = pki_cert_from_pem(root_pem, root_len, &im.root, errbuf)) < 0)
        goto out;
    if (!pki_key_matches(im.cert, im.key)) {
        rc = meshca_fail(errbuf, PKI_EINVAL, "the stored intermediate's key does not match it");
        goto out;
    }
    if ((rc = pki_cert_not_before(im.cert, &im.not_before)) < 0 ||
        (rc = pki_cert_not_after(im.cert, &im.not_after)) < 0)
        goto out;
    im.renew_at = extca_pki_intermediate_renewal(im.not_before, im.not_after);
    *ret = im;
    return PKI_OK;
out:
    cfssl_intermediate_clear(&im);
    return rc;
}

/* Takes im's certificates and key into a local CA whose chain is [intermediate, root]. */
static int to_backend(cfssl_intermediate *im, ca_backend **ret)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    int rc;

    if (!chain || !sk_X509_push(chain, im->cert)) {
        sk_X509_free(chain);
        return PKI_ENOMEM;
    }
    if (!sk_X509_push(chain, im->root)) {
        sk_X509_free(chain);
        return PKI_ENOMEM;
    }
    if ((rc = ca_local_new(&ca_cfssl_ops, chain, im->key, ret)) < 0) {
        sk_X509_free(chain);
        return rc;
    }
    im->cert = im->root = NULL;
    im->key = NULL;
    return PKI_OK;
}

/*
 * Stores a freshly minted intermediate: root, key and cert in one transaction. A first mint
 * makes the cert create-only (the first of two controllers wins, the other re-reads); a renewal
 * replaces them and makes a marker named after the serial of the intermediate it replaces
 * create-only, so two controllers renewing the same intermediate store one successor.
 */
static int store_minted(const ca_context *ctx, const cfssl_names *n, cfssl_intermediate *im,
                        X509 *replaced, char *errbuf)
{
    char *cert_pem = NULL, *key_pem = NULL, *root_pem = NULL, serial[80], marker[CA_MAX_SECRET_NAME];
    int rc;

    if ((rc = pki_cert_to_pem(im->cert, &cert_pem, errbuf)) < 0 ||
        (rc = pki_key_to_pem(im->key, &key_pem, errbuf)) < 0 ||
        (rc = pki_cert_to_pem(im->root, &root_pem, errbuf)) < 0)
        goto out;
    ca_secret set[4] = {
        {n->root, root_pem, strlen(root_pem)},
        {n->key, key_pem, strlen(key_pem)},
        {n->cert, cert_pem, strlen(cert_pem)},
    };
    size_t count = 3;
    if (replaced) {
        if (pki_serial_hex(replaced, serial, sizeof(serial)) < 0 ||
            (size_t)snprintf(marker, sizeof(marker), "%s.ca-cfssl-renewed-%s-%s", ctx->mesh,
                             ctx->backend->name.value, serial) >= sizeof(marker)) {
            rc = meshca_fail(errbuf, PKI_EINVAL, "cannot name the renewal of the intermediate");
            goto out;
        }
        set[count++] = (ca_secret){marker, cert_pem, strlen(cert_pem)};
    }
    rc = ctx->secret_store(ctx->secret_userdata, set, count);
    if (rc < 0 && rc != MESHCA_ECONFLICT)
        meshca_fail(errbuf, rc, "cannot store the cfssl intermediate of '%s' (%s, %s, %s): %s",
                    ctx->backend->name.value, n->root, n->key, n->cert, meshca_strerror(rc));
out:
    free(cert_pem);
    free(root_pem);
    pki_free_secret(key_pem);
    return rc;
}

/* cfssl's failure as the backend reports it: refusals keep their code (the mesh reports
 * ca-unavailable), and an unreachable cfssl becomes MESHCA_ESTATE, so a down cfssl fails this
 * mesh only: MESHCA_EUNAVAILABLE and MESHCA_EIO stop a whole reconcile pass as store failures. */
static int mesh_code(int rc)
{
    return rc == MESHCA_EUNAVAILABLE || rc == MESHCA_EIO ? MESHCA_ESTATE : rc;
}

/* Mints an intermediate through cfssl. */
static int mint(const ca_context *ctx, cfssl_intermediate *ret, char *errbuf)
{
    cfssl_client *c = NULL;
    int rc = cfssl_client_open(ctx, NULL, &c, errbuf);

    if (rc == 0)
        rc = cfssl_make_intermediate(c, ctx->now, ret, errbuf);
    cfssl_client_free(c);
    return rc;
}

/* One read of the secrets: the stored intermediate, renewed when due, or a first one. */
static int open_once(const ca_context *ctx, const cfssl_names *n, ca_backend **ret, char *errbuf)
{
    char *cert_pem = NULL, *key_pem = NULL, *root_pem = NULL, why[PKI_ERRBUF] = "";
    size_t cert_len = 0, key_len = 0, root_len = 0;
    cfssl_intermediate stored = {0}, fresh = {0};
    const char *bname = ctx->backend->name.value;
    bool have = false;
    int rc, rk, rr, r;

    /* The cert is read first: it is written last, so a cert seen means its key and root are. */
    rc = lookup(ctx, n->cert, &cert_pem, &cert_len);
    rk = lookup(ctx, n->key, &key_pem, &key_len);
    rr = lookup(ctx, n->root, &root_pem, &root_len);
    if (rc == PKI_OK && rk == PKI_OK && rr == PKI_OK) {
        r = load_stored(cert_pem, cert_len, key_pem, key_len, root_pem, root_len, &stored, why);
        if (r < 0) {
            r = meshca_fail(errbuf, r == MESHCA_ENOMEM ? r : PKI_EINVAL,
                            "cfssl intermediate of '%s' (secrets %s, %s, %s): %s", bname,
                            n->cert, n->key, n->root, why);
            goto out;
        }
        have = true;
    } else if (rc == PKI_OK) {
        r = meshca_fail(errbuf, rk != PKI_OK && rk != PKI_ENOENT ? rk
                                : rr != PKI_OK && rr != PKI_ENOENT ? rr : PKI_EINVAL,
                        "secret %.200s exists but %s missing", n->cert,
                        rk != PKI_OK ? "its key secret is" : "its root secret is");
        goto out;
    } else if (rc != PKI_ENOENT) {
        r = rc;
        goto out;
    }
    /* Read-only opens (inspect, roots, apply's checks) describe what is stored, as it is. */
    if (have && (!ctx->secret_store || ctx->now < stored.renew_at)) {
        r = to_backend(&stored, ret);
        goto out;
    }
    if (!have && !ctx->secret_store) {
        r = meshca_fail(errbuf, PKI_ENOENT, "cfssl backend '%s' has no intermediate yet (the "
                        "controller has cfssl sign one on its first pass)", bname);
        goto out;
    }
    r = mint(ctx, &fresh, why);
    if (r == MESHCA_ENOMEM) {
        meshca_fail(errbuf, r, "out of memory");
        goto out;
    }
    if (r < 0) {
        char when[32];
        if (!have) {
            r = meshca_fail(errbuf, mesh_code(r), "%s", why);
            goto out;
        }
        pki_format_time(stored.not_after, when, sizeof(when));
        if (ctx->now >= stored.not_after) {
            r = meshca_fail(errbuf, mesh_code(r), "the intermediate expired at %s and cannot be "
                            "renewed: %s", when, why);
            goto out;
        }
        /* Past its renewal point but still valid: leaves are signed on with it; the warning
         * says until when. */
        char warning[PKI_ERRBUF];
        snprintf(warning, sizeof(warning), "cannot renew the intermediate (signing goes on "
                 "with the stored one, valid until %s): %s", when, why);
        if ((r = to_backend(&stored, ret)) == 0)
            ca_local_set_warning(*ret, warning);
        goto out;
    }
    r = store_minted(ctx, n, &fresh, have ? stored.cert : NULL, errbuf);
    if (r == 0)
        r = to_backend(&fresh, ret);
out:
    cfssl_intermediate_clear(&stored);
    cfssl_intermediate_clear(&fresh);
    free(cert_pem);
    free(root_pem);
    free_secret(key_pem, key_len);
    return r;
}

static int cfssl_ensure_ca(const ca_context *ctx, ca_backend **ret, char *errbuf)
{
    cfssl_names n;
    int64_t want;
    int r;

    if (!ctx || !ctx->mesh || !ctx->backend || !ret)
        return PKI_EINVAL;
    if ((r = read_expiration(ctx, &want, NULL, errbuf)) < 0)
        return r;
    if ((r = secret_names(ctx, &n)) < 0)
        return meshca_fail(errbuf, r, "cfssl backend '%s': secret names too long",
                           ctx->backend->name.value);
    /* A conflict: another pass stored an intermediate between our read and our write, and a
     * key that does not match: we read a renewal half-way. Either way, read again. */
    for (int attempt = 0; attempt < CFSSL_OPEN_ATTEMPTS; attempt++)
        if ((r = open_once(ctx, &n, ret, errbuf)) != MESHCA_ECONFLICT &&
            !(r == PKI_EINVAL && strstr(errbuf, "does not match")))
            return r;
    if (r == MESHCA_ECONFLICT)
        return meshca_fail(errbuf, r, "cfssl intermediate of '%s' changed under every attempt "
                           "to read it", ctx->backend->name.value);
    return r;
}

/* No cross-signing: the intermediate has path length 0, so a CA certificate it signed could
 * not sign leaves (a chain leaf -> cross-signed CA -> intermediate breaks pathlen 0). A forced
 * switch away from cfssl goes without it (the force log says so). */
const ca_backend_ops ca_cfssl_ops = {
    .type = "cfssl",
    .check = cfssl_backend_check,
    .ensure_ca = cfssl_ensure_ca,
    .sign_leaf = ca_local_sign_leaf,
    .cross_sign = NULL,
    .free = ca_local_free,
    .trust_root_only = true,
};
