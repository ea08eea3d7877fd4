/* reconcile.c - one reconcile pass: every mTLS mesh's dataplanes get a current leaf and trust bundle. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "manifests/manifest.h"
#include "reconciler/bundle.h"
#include "reconciler/ca_backend.h"
#include "reconciler/reconcile.h"
#include "reconciler/state.h"

#define SERVICE_TAG "kuma.io/service"

const char *reconcile_verb_name(reconcile_verb verb)
{
    switch (verb) {
    case RECONCILE_ISSUED:
        return "issued";
    case RECONCILE_REISSUED:
        return "reissued";
    case RECONCILE_RENEWED:
        return "renewed";
    case RECONCILE_REBUNDLED:
        return "rebundled";
    }
    return "?";
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort();
    return d;
}

void reconcile_report_free(reconcile_report *report)
{
    if (!report)
        return;
    for (size_t i = 0; i < report->nmeshes; i++)
        free(report->meshes[i].mesh);
    free(report->meshes);
    for (size_t i = 0; i < report->nactions; i++) {
        free(report->actions[i].mesh);
        free(report->actions[i].dataplane);
        free(report->actions[i].backend);
        free(report->actions[i].reason);
    }
    free(report->actions);
    memset(report, 0, sizeof(*report));
}


/* --- per mesh --- */

static const char *pki_code_text(int code)
{
    switch (code) {
    case PKI_EEXPIRED:
        return "CA expired or not yet valid";
    case PKI_ENOENT:
        return "CA material absent";
    case PKI_EIO:
        return "I/O error";
    case PKI_ECRYPTO:
        return "cryptographic error";
    default:
        return "invalid CA configuration";
    }
}

/* The loaded CAs and the bundle of one mesh. */
typedef struct mesh_cas {
    ca_backend **cas;          /* per backend, manifest order */
    size_t enabled;            /* index of the enabled backend */
    char *bundle_pem;
    char **bundle_backends;    /* borrowed names, enabled first */
    size_t nbundle;
    char fingerprint[64];      /* of the enabled backend's signing certificate */
    char *chain_extra_pem;     /* intermediates served after the leaf (may be "") */
    char *cross_pem;           /* forced switch: the new CA signed by the old one, or NULL */
} mesh_cas;

static void mesh_cas_free(mesh_cas *mc, size_t nbackends)
{
    if (mc->cas)
        for (size_t i = 0; i < nbackends; i++)
            ca_backend_free(mc->cas[i]);
    free(mc->cas);
    free(mc->bundle_pem);
    free(mc->bundle_backends);
    free(mc->chain_extra_pem);
    free(mc->cross_pem);
    memset(mc, 0, sizeof(*mc));
}

static void append(char **buf, size_t *len, const char *text)
{
    size_t n = strlen(text);
    char *p = realloc(*buf, *len + n + 1);
    if (!p)
        abort();
    memcpy(p + *len, text, n + 1);
    *buf = p;
    *len += n;
}

static void backend_path(size_t i, char *buf, size_t size)
{
    snprintf(buf, size, "mtls.backends[%zu]", i);
}

/* Opens every backend and builds the bundle. Returns 0 or -1 with a diagnostic. */
static int open_cas(store *s, const mesh *m, int64_t now, mesh_cas *mc, diag_list *diags)
{
    const char *mesh_name = m->name.value;
    const char *enabled = mesh_enabled_backend(m);
    state_secrets sc = {s, mesh_name, NULL};
    char path[64], errbuf[PKI_ERRBUF];

    mc->cas = calloc(m->nbackends + 1, sizeof(*mc->cas));
    mc->bundle_backends = calloc(m->nbackends + 1, sizeof(char *));
    if (!mc->cas || !mc->bundle_backends)
        abort();
    mc->enabled = SIZE_MAX;
    for (size_t i = 0; i < m->nbackends; i++) {
        const mesh_backend *b = &m->backends[i];
        ca_context ctx = {mesh_name, b, i, state_secret_lookup, state_secret_store, &sc, now};
        errbuf[0] = '\0';
        backend_path(i, path, sizeof(path));
        int r = ca_backend_open(&ctx, &mc->cas[i], errbuf);
        if (r < 0) {
            diag_error(diags, r == PKI_EEXPIRED ? "ca-expired" : "ca-unavailable", NULL, path,
                       "mesh '%s': backend '%s' cannot be used: %s", mesh_name, b->name.value,
                       errbuf[0] ? errbuf : pki_code_text(r));
            return -1;
        }
        if (enabled && b->name.value && strcmp(b->name.value, enabled) == 0)
            mc->enabled = i;
    }
    if (mc->enabled == SIZE_MAX) {
        diag_error(diags, "ca-unavailable", NULL, "mtls.enabledBackend",
                   "mesh '%s': enabled backend '%s' is not among the backends", mesh_name, enabled);
        return -1;
    }
    /* Never sign with an expired or not-yet-valid CA. */
    ca_info info;
    if (ca_backend_info(mc->cas[mc->enabled], &info) < 0 || now < info.not_before ||
        now >= info.not_after) {
        backend_path(mc->enabled, path, sizeof(path));
        diag_error(diags, "ca-expired", NULL, path,
                   "mesh '%s': CA of enabled backend '%s' is expired or not yet valid", mesh_name,
                   m->backends[mc->enabled].name.value);
        return -1;
    }
    X509 *signer = ca_backend_cert(mc->cas[mc->enabled]);
    if (pki_fingerprint_sha1(signer, mc->fingerprint, sizeof(mc->fingerprint)) < 0)
        mc->fingerprint[0] = '\0';

    /* Bundle: every certificate of every backend's chain, enabled backend first, each DER once. */
    char **chains = calloc(m->nbackends + 1, sizeof(char *));
    if (!chains)
        abort();
    int r = 0;
    for (size_t i = 0; i < m->nbackends && r == 0; i++)
        r = ca_backend_chain_pem(mc->cas[i], &chains[i], errbuf);
    if (r == 0)
        r = bundle_build((const char *const *)chains, m->nbackends, mc->enabled, &mc->bundle_pem,
                         errbuf);
    for (size_t i = 0; i < m->nbackends; i++)
        free(chains[i]);
    free(chains);
    if (r < 0) {
        diag_error(diags, "ca-unavailable", NULL, "mtls.backends",
                   "mesh '%s': cannot build the trust bundle: %s", mesh_name, errbuf);
        return -1;
    }
    mc->bundle_backends[mc->nbundle++] = m->backends[mc->enabled].name.value;
    for (size_t i = 0; i < m->nbackends; i++)
        if (i != mc->enabled)
            mc->bundle_backends[mc->nbundle++] = m->backends[i].name.value;
    /* Intermediates of the enabled backend travel with each leaf: chain[0..n-2]. */
    size_t elen = 0;
    mc->chain_extra_pem = xstrdup("");
    STACK_OF(X509) *chain = mc->cas[mc->enabled]->chain;
    for (int c = 0; c + 1 < sk_X509_num(chain); c++) {
        char *pem = NULL;
        if (pki_cert_to_pem(sk_X509_value(chain, c), &pem, NULL) < 0)
            abort();
        append(&mc->chain_extra_pem, &elen, pem);
        free(pem);
    }
    return 0;
}

/* The identity's tags in one canonical string: sorted "key=value" joined by newlines. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *tags_digest(const dataplane *dp)
{
    size_t n = 0;
    for (size_t i = 0; i < dp->ninbounds; i++)
        n += dp->inbounds[i].ntags;
    char **items = calloc(n + 1, sizeof(char *));
    if (!items)
        abort();
    size_t k = 0;
    for (size_t i = 0; i < dp->ninbounds; i++)
        for (size_t t = 0; t < dp->inbounds[i].ntags; t++) {
            const model_tag *tag = &dp->inbounds[i].tags[t];
            size_t len = strlen(tag->key) + strlen(tag->value) + 2;
            items[k] = malloc(len);
            if (!items[k])
                abort();
            snprintf(items[k++], len, "%s=%s", tag->key, tag->value);
        }
    qsort(items, k, sizeof(char *), cmp_str);
    char *out = xstrdup("");
    size_t olen = 0;
    for (size_t i = 0; i < k; i++) {
        if (i > 0 && strcmp(items[i], items[i - 1]) == 0)
            continue;
        if (olen)
            append(&out, &olen, "\n");
        append(&out, &olen, items[i]);
    }
    for (size_t i = 0; i < k; i++)
        free(items[i]);
    free(items);
    return out;
}

/* URI SANs: spiffe://<mesh>/<service> per kuma.io/service value, kuma://<tag>/<value> per tag.
 * Returns the count, or -1 when over PKI_MAX_SANS. Caller frees each string. */
static int leaf_sans(const char *mesh_name, const dataplane *dp, char **uris)
{
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < dp->ninbounds; i++)
            for (size_t t = 0; t < dp->inbounds[i].ntags; t++) {
                const model_tag *tag = &dp->inbounds[i].tags[t];
                if (pass == 0 && strcmp(tag->key, SERVICE_TAG) != 0)
                    continue;
                char buf[2048];
                int w = pass == 0 ? snprintf(buf, sizeof(buf), "spiffe://%s/%s", mesh_name, tag->value)
                                  : snprintf(buf, sizeof(buf), "kuma://%s/%s", tag->key, tag->value);
                if (w < 0 || (size_t)w >= sizeof(buf))
                    goto fail;
                bool dup = false;
                for (size_t j = 0; j < n && !dup; j++)
                    dup = strcmp(uris[j], buf) == 0;
                if (dup)
                    continue;
                if (n >= PKI_MAX_SANS)
                    goto fail;
                uris[n++] = xstrdup(buf);
            }
    return (int)n;
fail:
    for (size_t j = 0; j < n; j++)
        free(uris[j]);
    return -1;
}

static bool same_backends(const identity *id, const mesh_cas *mc)
{
    if (id->nbundle_backends != mc->nbundle)
        return false;
    for (size_t i = 0; i < mc->nbundle; i++)
        if (!id->bundle_backends[i] || strcmp(id->bundle_backends[i], mc->bundle_backends[i]) != 0)
            return false;
    return true;
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static void add_action(reconcile_report *rep, const char *mesh_name, const identity *id,
                       reconcile_verb verb, const char *reason)
{
    reconcile_action *a = realloc(rep->actions, (rep->nactions + 1) * sizeof(*a));
    if (!a)
        abort();
    rep->actions = a;
    a = &rep->actions[rep->nactions++];
    a->mesh = xstrdup(mesh_name);
    a->dataplane = xstrdup(id->dataplane);
    a->backend = xstrdup(id->backend);
    a->reason = xstrdup(reason);
    a->verb = verb;
    a->not_after = id->not_after;
    a->generation = id->generation;
}

static void set_bundle(identity *id, const mesh_cas *mc)
{
    free(id->bundle_pem);
    for (size_t i = 0; i < id->nbundle_backends; i++)
        free(id->bundle_backends[i]);
    free(id->bundle_backends);
    id->bundle_pem = xstrdup(mc->bundle_pem);
    id->bundle_backends = calloc(mc->nbundle + 1, sizeof(char *));
    if (!id->bundle_backends)
        abort();
    for (size_t i = 0; i < mc->nbundle; i++)
        id->bundle_backends[i] = xstrdup(mc->bundle_backends[i]);
    id->nbundle_backends = mc->nbundle;
}

/* Issues a new certificate into *id (keeping generation/regeneration counters). */
static int issue(const mesh *m, const dataplane *dp, const mesh_cas *mc, int64_t now, identity *id,
                 diag_list *diags)
{
    const mesh_backend *b = &m->backends[mc->enabled];
    char *uris[PKI_MAX_SANS];
    int nuris = leaf_sans(m->name.value, dp, uris);
    if (nuris <= 0) {
        diag_warning(diags, nuris < 0 ? "too-many-sans" : "no-service", NULL, "networking.inbound",
                     "dataplane '%s/%s': %s; no certificate issued", m->name.value, dp->name.value,
                     nuris < 0 ? "too many tags for one certificate" : "no kuma.io/service tag");
        return -1;
    }
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    req.uris = (const char *const *)uris;
    req.nuris = (size_t)nuris;
    req.rsa = mesh_backend_leaf_is_rsa(b);
    req.lifetime_s = mesh_backend_leaf_lifetime_ms(b) / 1000;
    if (req.lifetime_s <= 0)
        req.lifetime_s = 1;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    char errbuf[PKI_ERRBUF] = "", *cert_pem = NULL, *key_pem = NULL;
    char serial[80], when[32], stable[600];
    int r = ca_backend_sign_leaf(mc->cas[mc->enabled], &req, now, &cert, &key, errbuf);
    for (int i = 0; i < nuris; i++)
        free(uris[i]);
    if (r < 0) {
        char path[64];
        backend_path(mc->enabled, path, sizeof(path));
        diag_error(diags, r == PKI_EEXPIRED ? "ca-expired" : "ca-unavailable", NULL, path,
                   "mesh '%s': backend '%s' could not sign for '%s': %s", m->name.value,
                   b->name.value, dp->name.value, errbuf);
        return r;
    }
    int64_t nb = 0, na = 0;
    if (pki_cert_to_pem(cert, &cert_pem, errbuf) < 0 || pki_key_to_pem(key, &key_pem, errbuf) < 0 ||
        pki_serial_hex(cert, serial, sizeof(serial)) < 0 || pki_cert_not_before(cert, &nb) < 0 ||
        pki_cert_not_after(cert, &na) < 0) {
        X509_free(cert);
        EVP_PKEY_free(key);
        free(cert_pem);
        pki_free_secret(key_pem);
        return PKI_ECRYPTO;
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    size_t clen = strlen(cert_pem);
    append(&cert_pem, &clen, mc->chain_extra_pem);
    if (mc->cross_pem)
        append(&cert_pem, &clen, mc->cross_pem);

    free(id->backend);
    id->backend = xstrdup(b->name.value);
    free(id->cert_pem);
    id->cert_pem = cert_pem;
    pki_free_secret(id->key_pem);
    id->key_pem = key_pem;
    free(id->serial);
    id->serial = xstrdup(serial);
    id->not_before = nb;
    id->not_after = na;
    snprintf(stable, sizeof(stable), "%s/%s", m->name.value, dp->name.value);
    /* The lifetime is what was asked for, from now: notBefore is backdated a minute for clock
     * skew, and counting that minute would renew a short-lived certificate far too early. */
    id->renew_at = pki_renewal_point(now < na ? now : nb, na, stable);
    free(id->ca_fingerprint);
    id->ca_fingerprint = xstrdup(mc->fingerprint);
    free(id->tags_digest);
    id->tags_digest = tags_digest(dp);
    id->rsa = req.rsa;
    id->cross_signed = mc->cross_pem != NULL;
    id->regenerations++;
    pki_format_time(now, when, sizeof(when));
    free(id->last_regeneration);
    id->last_regeneration = xstrdup(when);
    return 0;
}

static void reconcile_dataplane(store *s, const mesh *m, const dataplane *dp, const mesh_cas *mc,
                                int64_t now, reconcile_report *rep, reconcile_mesh_report *mr,
                                diag_list *diags)
{
    const char *mesh_name = m->name.value;
    const mesh_backend *b = &m->backends[mc->enabled];
    identity id = {0};
    uint64_t version = 0;
    int rc = identity_get(s, mesh_name, dp->name.value, &id, &version);
    bool have = rc == 0;
    if (rc < 0 && rc != STORE_ENOTFOUND) {
        /* A corrupt record is replaced by a fresh issue; the CAS still protects writers. */
        store_key key = {STATE_IDENTITIES, mesh_name, dp->name.value};
        char *v = NULL;
        if (store_get(s, &key, &v, NULL, &version) < 0)
            version = 0;
        if (v) {
            OPENSSL_cleanse(v, strlen(v));
            free(v);
        }
    }

    reconcile_verb verb = RECONCILE_REISSUED;
    const char *reason = NULL;
    char *digest = tags_digest(dp);
    if (!have) {
        verb = RECONCILE_ISSUED;
        reason = "no certificate";
    } else if (!str_eq(id.backend, b->name.value)) {
        reason = "issuer is not the enabled backend";
    } else if (!str_eq(id.ca_fingerprint, mc->fingerprint)) {
        reason = "signing CA certificate changed";
    } else if (!str_eq(id.tags_digest, digest)) {
        reason = "tags changed";
    } else if (id.rsa != mesh_backend_leaf_is_rsa(b)) {
        reason = "keyType changed";
    } else if (id.cross_signed != (mc->cross_pem != NULL)) {
        reason = id.cross_signed ? "every dataplane trusts the new CA: cross-signed CA dropped"
                                 : "forced switch: serving the new CA cross-signed by the old";
    } else if (now >= id.renew_at || now >= id.not_after) {
        verb = RECONCILE_RENEWED;
        reason = "past the renewal point";
    } else if (!str_eq(id.bundle_pem, mc->bundle_pem) || !same_backends(&id, mc)) {
        verb = RECONCILE_REBUNDLED;
        reason = "trust bundle changed";
    }
    free(digest);
    if (!reason) {
        mr->unchanged++;
        identity_clear(&id);
        return;
    }
    if (!have) {
        identity_clear(&id);
        id.mesh = xstrdup(mesh_name);
        id.dataplane = xstrdup(dp->name.value);
    }
    if (verb != RECONCILE_REBUNDLED && issue(m, dp, mc, now, &id, diags) < 0) {
        mr->skipped++;
        identity_clear(&id);
        return;
    }
    set_bundle(&id, mc);
    id.generation++;
    rc = identity_put(s, &id, version, NULL);
    if (rc < 0) {
        diag_warning(diags, rc == STORE_ECONFLICT ? "conflict" : "store-error", NULL, "",
                     "dataplane '%s/%s': identity not written: %s", mesh_name, dp->name.value,
                     store_strerror(rc));
        mr->skipped++;
        identity_clear(&id);
        return;
    }
    add_action(rep, mesh_name, &id, verb, reason);
    switch (verb) {
    case RECONCILE_ISSUED:
        mr->issued++;
        break;
    case RECONCILE_REISSUED:
        mr->reissued++;
        break;
    case RECONCILE_RENEWED:
        mr->renewed++;
        break;
    case RECONCILE_REBUNDLED:
        mr->rebundled++;
        break;
    }
    identity_clear(&id);
}

/* Forced switch (S5): while the mesh status holds crossSign {from, to} with `to` enabled and a
 * dataplane does not trust `to` yet, leaves carry `to` re-signed by `from`'s key (mc->cross_pem).
 * Returns whether the flag is set; *ret_status (caller decrefs) is the mesh status read. */
static bool prepare_cross_sign(store *s, const manifest_set *set, const mesh *m, int64_t now,
                               mesh_cas *mc, json_t **ret_status, uint64_t *ret_version,
                               diag_list *diags)
{
    *ret_status = NULL;
    if (state_get_mesh_status(s, m->name.value, ret_status, ret_version) < 0)
        return false;
    json_t *cs = json_object_get(*ret_status, "crossSign");
    const char *from = json_string_value(json_object_get(cs, "from"));
    const char *to = json_string_value(json_object_get(cs, "to"));
    if (!from || !to || !str_eq(to, m->backends[mc->enabled].name.value))
        return false;
    size_t fi = SIZE_MAX;
    for (size_t i = 0; i < m->nbackends; i++)
        if (str_eq(m->backends[i].name.value, from))
            fi = i;
    if (fi == SIZE_MAX || fi == mc->enabled)
        return false;

    status_set st = STATUS_SET_INIT;
    bool all_trust = state_load_status(s, m->name.value, &st) == 0;
    for (size_t i = 0; all_trust && i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind != RESOURCE_DATAPLANE || !str_eq(res->u.dataplane.mesh.value, m->name.value))
            continue;
        bool trusts = false;
        for (size_t j = 0; j < st.count; j++)
            if (str_eq(st.items[j].name, res->u.dataplane.name.value))
                trusts = status_supports(&st.items[j], to);
        all_trust = trusts;
    }
    status_set_free(&st);
    if (all_trust)
        return true;

    EVP_PKEY *old_key = ca_backend_key(mc->cas[fi]);
    X509 *cross = NULL;
    char errbuf[PKI_ERRBUF] = "";
    int64_t lifetime_s = mesh_backend_leaf_lifetime_ms(&m->backends[mc->enabled]) / 1000;
    int r = old_key ? pki_cross_sign(ca_backend_cert(mc->cas[mc->enabled]),
                                     ca_backend_cert(mc->cas[fi]), old_key, now,
                                     now + lifetime_s + RECONCILE_CROSS_SIGN_SLACK_S, &cross, errbuf)
                    : PKI_EINVAL;
    if (r == 0)
        r = pki_cert_to_pem(cross, &mc->cross_pem, errbuf);
    X509_free(cross);
    if (r < 0)
        diag_warning(diags, "cross-sign-unavailable", NULL, "mtls.enabledBackend",
                     "mesh '%s': cannot cross-sign '%s' with '%s' (%s); dataplanes that do not "
                     "trust '%s' yet will reject the new certificates", m->name.value, to, from,
                     old_key ? errbuf : "its key is not local", to);
    return true;
}

static void reconcile_mesh(store *s, const manifest_set *set, const mesh *m, int64_t now,
                           reconcile_report *rep, diag_list *diags)
{
    reconcile_mesh_report *mr = realloc(rep->meshes, (rep->nmeshes + 1) * sizeof(*mr));
    if (!mr)
        abort();
    rep->meshes = mr;
    mr = &rep->meshes[rep->nmeshes++];
    memset(mr, 0, sizeof(*mr));
    mr->mesh = xstrdup(m->name.value);
    if (!mesh_enabled_backend(m))
        return;
    mr->mtls = true;

    mesh_cas mc = {0};
    if (open_cas(s, m, now, &mc, diags) < 0) {
        mr->failed = true;
        mesh_cas_free(&mc, m->nbackends);
        return;
    }
    json_t *mstatus = NULL;
    uint64_t mstatus_version = 0;
    bool cross_flag = prepare_cross_sign(s, set, m, now, &mc, &mstatus, &mstatus_version, diags);
    for (size_t i = 0; i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind != RESOURCE_DATAPLANE || !str_eq(res->u.dataplane.mesh.value, m->name.value) ||
            !res->u.dataplane.name.value)
            continue;
        size_t before = diag_count(diags, DIAG_ERROR);
        reconcile_dataplane(s, m, &res->u.dataplane, &mc, now, rep, mr, diags);
        if (diag_count(diags, DIAG_ERROR) > before) {
            /* The CA refused to sign (e.g. expired meanwhile): stop this mesh. */
            mr->failed = true;
            break;
        }
    }
    /* Every dataplane trusts the new CA and no leaf carries the cross-signed CA any more. */
    if (cross_flag && !mc.cross_pem && !mr->failed && !mr->skipped) {
        json_object_del(mstatus, "crossSign");
        int rc = state_put_mesh_status(s, m->name.value, mstatus, mstatus_version);
        if (rc < 0)
            diag_warning(diags, "conflict", NULL, "", "mesh '%s': crossSign flag not cleared: %s",
                         m->name.value, store_strerror(rc));
    }
    json_decref(mstatus);
    mesh_cas_free(&mc, m->nbackends);
}

int reconcile_once(store *s, const reconcile_options *opts, reconcile_report *ret,
                   diag_list *diags)
{
    int64_t now = opts && opts->now ? opts->now : (int64_t)time(NULL);
    manifest_set *set = manifest_set_new();
    if (!set)
        return STORE_ENOMEM;
    diag_list load_diags = DIAG_LIST_INIT;
    int rc = state_load_resources(s, NULL, set, &load_diags);
    /* Store objects that do not decode are reported as warnings: they are skipped, not fatal. */
    for (size_t i = 0; i < load_diags.count; i++)
        load_diags.items[i].severity = DIAG_WARNING;
    diag_list_move(diags, &load_diags);
    if (rc < 0) {
        manifest_set_free(set);
        return rc;
    }
    reconcile_report rep = RECONCILE_REPORT_INIT;
    for (size_t i = 0; i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind != RESOURCE_MESH || !res->u.mesh.name.value)
            continue;
        reconcile_mesh(s, set, &res->u.mesh, now, &rep, diags);
    }
    for (size_t i = 0; i < rep.nmeshes; i++) {
        const reconcile_mesh_report *mr = &rep.meshes[i];
        rep.issued += mr->issued;
        rep.reissued += mr->reissued;
        rep.renewed += mr->renewed;
        rep.rebundled += mr->rebundled;
        rep.unchanged += mr->unchanged;
        rep.failed_meshes += mr->failed;
    }
    manifest_set_free(set);
    *ret = rep;
    return 0;
}
