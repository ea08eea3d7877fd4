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
#include "reconciler/ca/ca_cache.h"
#include "reconciler/mesh_ca.h"
#include "reconciler/reconcile.h"
#include "reconciler/sign_pool.h"
#include "reconciler/state.h"
#include "reconciler/store/identity_json.h"
#include "reconciler/store/identity_peek.h"

/* Mesh status condition for a backend left out of the pass (reported, not fatal to the mesh). */
#define CONDITION_BACKEND_UNAVAILABLE "BackendUnavailable"

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

/* Replaces *dst with a copy of s ("" for NULL). Returns 0 or MESHCA_ENOMEM (*dst unchanged). */
static int set_str(char **dst, const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        return MESHCA_ENOMEM;
    free(*dst);
    *dst = d;
    return 0;
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

/* A store operation failed (not a conflict): the mesh's pass stops, the pass exits 2. The first
 * failure's cause is kept apart from its object so that `run` can log each cause once. */
static void store_failed(reconcile_report *rep, reconcile_mesh_report *mr, int rc,
                         const char *mesh_name, const char *what, diag_list *diags)
{
    mr->failed = true;
    mr->store_failed = true;
    if (!rep->store_error) {
        rep->store_error = rc;
        snprintf(rep->store_cause, sizeof(rep->store_cause), "%s", store_strerror(rc));
    }
    diag_error(diags, "store-error", NULL, "", "mesh '%s': %s; the rest of this mesh waits for "
               "the next pass", mesh_name, what);
}

/* Store trouble rather than a problem of the CA itself. */
static bool is_store_code(int rc)
{
    return rc == MESHCA_EIO || rc == MESHCA_EUNAVAILABLE || rc == MESHCA_ENOMEM;
}

/* --- per mesh --- */

/* Outcomes besides 0 and negative (store, memory) codes. */
enum {
    ISSUE_SKIPPED = 1,   /* issue(): no certificate for this dataplane (warned), the mesh goes on */
    ISSUE_REFUSED = 2,   /* the CA could not sign, or cannot be used (reported): the mesh stops */
    ISSUE_DEFERRED = 3,  /* queued for the signing workers: the batch finishes it (sign_batch) */
};

/* The CAs and the bundle one pass of a mesh signs with. */
typedef struct pass_cas {
    mesh_ca *cas;              /* per backend, manifest order (mesh_ca.h); ca NULL: unavailable */
    size_t ncas;
    size_t enabled;            /* index of the enabled backend */
    char *bundle_pem;
    const char **bundle_backends;   /* borrowed names, enabled first */
    size_t nbundle;
    char *chain_extra_pem;     /* intermediates served after the leaf (may be "") */
    char *cross_pem;           /* forced switch: the new CA signed by the old one, or NULL */
    char bundle_digest[65];    /* SHA-256 of bundle_pem */
} pass_cas;

/* The writes of one pass, committed together at its end (SPEC S6). */
typedef struct pass_write {
    const char *kind;   /* static */
    char *mesh, *name;
    char *value;        /* NULL for a delete */
    uint64_t version;   /* expected version (0: must not exist) */
    bool del;
} pass_write;

typedef struct pass_txn {
    pass_write *w;
    size_t n, cap;
    const reconcile_options *opts;   /* its progress callback */
    size_t done, total;              /* dataplanes handled / of every mesh */
} pass_txn;

static void pass_txn_free(pass_txn *tx)
{
    for (size_t i = 0; i < tx->n; i++) {
        free(tx->w[i].mesh);
        free(tx->w[i].name);
        free(tx->w[i].value);
    }
    free(tx->w);
    memset(tx, 0, sizeof(*tx));
}

static void pass_cas_free(pass_cas *pc)
{
    mesh_cas_free(pc->cas, pc->ncas);
    free(pc->bundle_pem);
    free(pc->bundle_backends);
    free(pc->chain_extra_pem);
    free(pc->cross_pem);
    memset(pc, 0, sizeof(*pc));
}

static int append(char **buf, size_t *len, const char *text)
{
    size_t n = strlen(text);
    char *p = realloc(*buf, *len + n + 1);
    if (!p)
        return MESHCA_ENOMEM;
    memcpy(p + *len, text, n + 1);
    *buf = p;
    *len += n;
    return 0;
}

static void backend_path(size_t i, char *buf, size_t size)
{
    snprintf(buf, size, "mtls.backends[%zu]", i);
}

/* Records (or clears, reason NULL) the BackendUnavailable condition of `backend` in `conditions`
 * (a JSON array of {"type","backend","reason"}). Returns whether it changed. */
static bool set_condition(json_t *conditions, const char *backend, const char *reason)
{
    size_t i;
    json_t *c;
    json_array_foreach(conditions, i, c) {
        if (strcmp(json_string_value(json_object_get(c, "type")) ?: "",
                   CONDITION_BACKEND_UNAVAILABLE) != 0 ||
            strcmp(json_string_value(json_object_get(c, "backend")) ?: "", backend) != 0)
            continue;
        if (!reason) {
            json_array_remove(conditions, i);
            return true;
        }
        if (strcmp(json_string_value(json_object_get(c, "reason")) ?: "", reason) == 0)
            return false;
        json_object_set_new(c, "reason", json_string(reason));
        return true;
    }
    if (!reason)
        return false;
    json_array_append_new(conditions, json_pack("{s:s, s:s, s:s}", "type",
                                                CONDITION_BACKEND_UNAVAILABLE, "backend", backend,
                                                "reason", reason));
    return true;
}

/*
 * Opens every backend (creating a builtin root once) and builds the bundle. The enabled backend
 * must work; another one that does not (corrupt secrets, a bad provided CA) is left out of the
 * bundle, reported as a warning and as a BackendUnavailable condition in `conditions`, and the
 * mesh goes on with the enabled one. Store trouble stops the mesh instead: a backend that is
 * merely unreachable must not be dropped from every dataplane's bundle.
 * Returns 0, ISSUE_REFUSED (reported in diags; the mesh fails), or a store or memory code (the
 * caller reports it).
 */
static int open_cas(store *s, const mesh *m, int64_t now, ca_cache *cache, pass_cas *pc,
                    json_t *conditions, bool *ret_conditions_changed, diag_list *diags)
{
    const char *mesh_name = m->name.value;
    const char *enabled = mesh_enabled_backend(m);
    char path[64], errbuf[PKI_ERRBUF] = "";
    int r;

    pc->ncas = m->nbackends;
    if ((r = cache ? mesh_cas_open_cached(s, m, now, cache, &pc->cas)
                   : mesh_cas_open_creating(s, m, now, &pc->cas)) < 0)
        return r;
    pc->bundle_backends = calloc(m->nbackends + 1, sizeof(char *));
    if (!pc->bundle_backends)
        return MESHCA_ENOMEM;
    pc->enabled = SIZE_MAX;
    for (size_t i = 0; i < m->nbackends; i++)
        if (enabled && m->backends[i].name.value && strcmp(m->backends[i].name.value, enabled) == 0)
            pc->enabled = i;
    if (pc->enabled == SIZE_MAX) {
        diag_error(diags, "ca-unavailable", NULL, "mtls.enabledBackend",
                   "mesh '%s': enabled backend '%s' is not among the backends", mesh_name, enabled);
        return ISSUE_REFUSED;
    }
    for (size_t i = 0; i < m->nbackends; i++) {
        const mesh_ca *mc = &pc->cas[i];
        const char *name = m->backends[i].name.value;
        if (mc->ca && mc->chain_pem) {
            /* Opened despite a problem (cfssl down at its intermediate's renewal point): it
             * signs on, and the mesh status says why it will stop if the problem stays. */
            const char *warning = ca_backend_warning(mc->ca);
            if (warning) {
                backend_path(i, path, sizeof(path));
                diag_warning(diags, "ca-unavailable", NULL, path, "mesh '%s': backend '%s': %s",
                             mesh_name, name, warning);
            }
            /* The enabled backend's condition is settled once it has signed (reconcile_mesh). */
            if (warning || i != pc->enabled)
                *ret_conditions_changed |= set_condition(conditions, name, warning);
            continue;
        }
        int code = mc->code < 0 ? mc->code : MESHCA_ECRYPTO;
        /* A remote CA (Vault) unreachable is the CA's trouble, reported on this mesh only. */
        if (is_store_code(code) &&
            (code == MESHCA_ENOMEM || !ca_backend_type_is_remote(m->backends[i].type.value)))
            return code;
        backend_path(i, path, sizeof(path));
        /* A remote CA that does not answer now is not dropped from the bundle (every dataplane
         * would stop trusting it): the mesh waits, as for store trouble. */
        bool transient = code == MESHCA_EUNAVAILABLE || code == MESHCA_EIO;
        if (i == pc->enabled || transient) {
            diag_error(diags, code == PKI_EEXPIRED ? "ca-expired" : "ca-unavailable", NULL, path,
                       "mesh '%s': backend '%s' cannot be used: %s", mesh_name, name,
                       mc->error[0] ? mc->error : meshca_strerror(code));
            /* The mesh status says why nothing is signed (inspect shows the whole message). */
            *ret_conditions_changed |= set_condition(
                conditions, name, diags->count ? diags->items[diags->count - 1].message : "");
            return ISSUE_REFUSED;
        }
        diag_warning(diags, code == PKI_EEXPIRED ? "ca-expired" : "ca-unavailable", NULL, path,
                     "mesh '%s': backend '%s' cannot be used and is left out of the trust bundle: "
                     "%s; enabled backend '%s' keeps signing", mesh_name, name,
                     mc->error[0] ? mc->error : meshca_strerror(code), enabled);
        *ret_conditions_changed |= set_condition(conditions, name,
                                                 mc->error[0] ? mc->error : meshca_strerror(code));
    }
    /* Never sign with an expired or not-yet-valid CA. */
    ca_info info;
    if (ca_backend_info(pc->cas[pc->enabled].ca, &info) < 0 || now < info.not_before ||
        now >= info.not_after) {
        backend_path(pc->enabled, path, sizeof(path));
        diag_error(diags, "ca-expired", NULL, path,
                   "mesh '%s': CA of enabled backend '%s' is expired or not yet valid", mesh_name,
                   m->backends[pc->enabled].name.value);
        return ISSUE_REFUSED;
    }

    /* Bundle: every usable backend's trusted certificates (its chain, or cfssl's root), enabled
     * first, each DER once. */
    const char **chains = calloc(m->nbackends + 1, sizeof(char *));
    if (!chains)
        return MESHCA_ENOMEM;
    pc->bundle_backends[pc->nbundle] = m->backends[pc->enabled].name.value;
    chains[pc->nbundle++] = pc->cas[pc->enabled].bundle_pem;
    for (size_t i = 0; i < m->nbackends; i++)
        if (i != pc->enabled && pc->cas[i].ca && pc->cas[i].bundle_pem) {
            pc->bundle_backends[pc->nbundle] = m->backends[i].name.value;
            chains[pc->nbundle++] = pc->cas[i].bundle_pem;
        }
    r = bundle_build(chains, pc->nbundle, 0, &pc->bundle_pem, errbuf);
    free(chains);
    if (r < 0) {
        if (r == MESHCA_ENOMEM)
            return r;
        diag_error(diags, "ca-unavailable", NULL, "mtls.backends",
                   "mesh '%s': cannot build the trust bundle: %s", mesh_name, errbuf);
        return ISSUE_REFUSED;
    }
    state_sha256_hex(pc->bundle_pem, pc->bundle_digest);
    /* Intermediates of the enabled backend travel with each leaf: chain[0..n-2]. */
    size_t elen = 0;
    if (!(pc->chain_extra_pem = strdup("")))
        return MESHCA_ENOMEM;
    STACK_OF(X509) *chain = ca_backend_chain(pc->cas[pc->enabled].ca);
    for (int c = 0; c + 1 < sk_X509_num(chain); c++) {
        char *pem = NULL;
        if ((r = pki_cert_to_pem(sk_X509_value(chain, c), &pem, errbuf)) < 0) {
            if (r == MESHCA_ENOMEM)
                return r;
            diag_error(diags, "ca-unavailable", NULL, "", "mesh '%s': cannot encode the "
                       "intermediates of '%s': %s", mesh_name, enabled, errbuf);
            return ISSUE_REFUSED;
        }
        r = append(&pc->chain_extra_pem, &elen, pem);
        free(pem);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The identity's tags in one canonical string: sorted "key=value" joined by newlines. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Returns the digest (caller frees) or NULL when out of memory. */
static char *tags_digest(const dataplane *dp)
{
    size_t n = dataplane_tag_count(dp), k = 0, olen = 0;
    char **items = calloc(n + 1, sizeof(char *));
    char *out = strdup("");
    if (!items || !out)
        goto fail;
    dataplane_tag_iter it = DATAPLANE_TAG_ITER_INIT(dp);
    for (const model_tag *tag; (tag = dataplane_tag_next(&it)) != NULL;) {
        size_t len = strlen(tag->key) + strlen(tag->value) + 2;
        if (!(items[k] = malloc(len)))
            goto fail;
        snprintf(items[k++], len, "%s=%s", tag->key, tag->value);
    }
    qsort(items, k, sizeof(char *), cmp_str);
    for (size_t i = 0; i < k; i++) {
        if (i > 0 && strcmp(items[i], items[i - 1]) == 0)
            continue;
        if ((olen && append(&out, &olen, "\n") < 0) || append(&out, &olen, items[i]) < 0)
            goto fail;
    }
    for (size_t i = 0; i < k; i++)
        free(items[i]);
    free(items);
    return out;
fail:
    for (size_t i = 0; items && i < k; i++)
        free(items[i]);
    free(items);
    free(out);
    return NULL;
}

/* URI SANs: spiffe://<mesh>/<service> per kuma.io/service value, kuma://<tag>/<value> per tag,
 * then urn:meshca:dataplane:<mesh>:<dp>.
 * Returns the count, -1 when over PKI_MAX_SANS or MESHCA_ENOMEM. Caller frees each string. */
static int leaf_sans(const char *mesh_name, const dataplane *dp, char **uris)
{
    size_t n = 0;
    int rc = -1;
    for (int pass = 0; pass < 2; pass++) {
        dataplane_tag_iter it = DATAPLANE_TAG_ITER_INIT(dp);
        for (const model_tag *tag; (tag = dataplane_tag_next(&it)) != NULL;) {
            if (pass == 0 && strcmp(tag->key, MODEL_SERVICE_TAG) != 0)
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
            if (!(uris[n] = strdup(buf))) {
                rc = MESHCA_ENOMEM;
                goto fail;
            }
            n++;
        }
    }
    /* The dataplane itself (doc/api.md): the API authenticates an agent by this SAN after its
     * first certificate. Only when the leaf names a service at all (no service, no leaf). */
    if (n > 0) {
        char buf[2048];
        int w = snprintf(buf, sizeof(buf), "urn:meshca:dataplane:%s:%s", mesh_name, dp->name.value);
        if (w < 0 || (size_t)w >= sizeof(buf) || n >= PKI_MAX_SANS)
            goto fail;
        if (!(uris[n] = strdup(buf))) {
            rc = MESHCA_ENOMEM;
            goto fail;
        }
        n++;
    }
    return (int)n;
fail:
    for (size_t j = 0; j < n; j++)
        free(uris[j]);
    return rc;
}

static bool same_backends(const identity *id, const pass_cas *pc)
{
    if (id->nbundle_backends != pc->nbundle)
        return false;
    for (size_t i = 0; i < pc->nbundle; i++)
        if (!id->bundle_backends[i] || strcmp(id->bundle_backends[i], pc->bundle_backends[i]) != 0)
            return false;
    return true;
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static bool same_names(const mesh_bundle *b, const pass_cas *pc)
{
    if (b->nbackends != pc->nbundle)
        return false;
    for (size_t i = 0; i < pc->nbundle; i++)
        if (!str_eq(b->backends[i], pc->bundle_backends[i]))
            return false;
    return true;
}

static int add_action(reconcile_report *rep, const char *mesh_name, const identity *id,
                      reconcile_verb verb, const char *reason)
{
    reconcile_action *a = realloc(rep->actions, (rep->nactions + 1) * sizeof(*a));
    if (!a)
        return MESHCA_ENOMEM;
    rep->actions = a;
    a = &rep->actions[rep->nactions];
    memset(a, 0, sizeof(*a));
    if (set_str(&a->mesh, mesh_name) < 0 || set_str(&a->dataplane, id->dataplane) < 0 ||
        set_str(&a->backend, id->backend) < 0 || set_str(&a->reason, reason) < 0) {
        free(a->mesh), free(a->dataplane), free(a->backend), free(a->reason);
        return MESHCA_ENOMEM;
    }
    a->verb = verb;
    a->not_after = id->not_after;
    a->generation = id->generation;
    rep->nactions++;
    return 0;
}

/* The identity names the mesh bundle it was issued with (the PEM lives once per mesh). */
static int set_bundle(identity *id, const pass_cas *pc)
{
    char **names = calloc(pc->nbundle + 1, sizeof(char *));
    char *digest = strdup(pc->bundle_digest);
    bool ok = names && digest;
    for (size_t i = 0; ok && i < pc->nbundle; i++)
        ok = (names[i] = strdup(pc->bundle_backends[i])) != NULL;
    if (!ok) {
        for (size_t i = 0; names && i < pc->nbundle; i++)
            free(names[i]);
        free(names);
        free(digest);
        return MESHCA_ENOMEM;
    }
    free(id->bundle_digest);
    for (size_t i = 0; i < id->nbundle_backends; i++)
        free(id->bundle_backends[i]);
    free(id->bundle_backends);
    id->bundle_digest = digest;
    id->bundle_backends = names;
    id->nbundle_backends = pc->nbundle;
    return 0;
}

/* The leaf lifetime the backend asks for, in seconds (at least 1). */
static int64_t leaf_lifetime_s(const mesh_backend *b)
{
    int64_t s = mesh_backend_leaf_lifetime_ms(b) / 1000;
    return s > 0 ? s : 1;
}

/* The dataplane's tags as one array (strings borrowed from dp), first of each key wins as in
 * leaf_sans. NULL when out of memory. Caller frees the array. */
static model_tag *dp_tags(const dataplane *dp, size_t *ret_n)
{
    model_tag *tags = calloc(dataplane_tag_count(dp) + 1, sizeof(*tags));
    size_t n = 0;
    dataplane_tag_iter it = DATAPLANE_TAG_ITER_INIT(dp);
    for (const model_tag *tag; tags && (tag = dataplane_tag_next(&it)) != NULL;)
        tags[n++] = *tag;
    *ret_n = n;
    return tags;
}

/* The leaf request for dp (SANs into uris, which the caller frees: req->nuris of them).
 * Returns 0, ISSUE_SKIPPED (warned) or MESHCA_ENOMEM. */
static int issue_request(const mesh *m, const dataplane *dp, const pass_cas *pc, bool rsa,
                         char **uris, pki_leaf_request *req, diag_list *diags)
{
    int nuris = leaf_sans(m->name.value, dp, uris);
    if (nuris == MESHCA_ENOMEM)
        return nuris;
    if (nuris <= 0) {
        diag_warning(diags, nuris < 0 ? "too-many-sans" : "no-service", NULL, "networking.inbound",
                     "dataplane '%s/%s': %s; no certificate issued", m->name.value, dp->name.value,
                     nuris < 0 ? "too many tags for one certificate" : "no kuma.io/service tag");
        return ISSUE_SKIPPED;
    }
    *req = (pki_leaf_request)PKI_LEAF_REQUEST_INIT;
    req->uris = (const char *const *)uris;
    req->nuris = (size_t)nuris;
    req->rsa = rsa;
    req->lifetime_s = leaf_lifetime_s(&m->backends[pc->enabled]);
    return 0;
}

/* The enabled CA could not sign for dp (code r): reported; the mesh stops. */
static int sign_refused(const mesh *m, const dataplane *dp, const pass_cas *pc, int r,
                        const char *why, diag_list *diags)
{
    char path[64];
    backend_path(pc->enabled, path, sizeof(path));
    diag_error(diags, r == PKI_EEXPIRED ? "ca-expired" : "ca-unavailable", NULL, path,
               "mesh '%s': backend '%s' could not sign for '%s': %s", m->name.value,
               m->backends[pc->enabled].name.value, dp->name.value,
               why && why[0] ? why : meshca_strerror(r));
    return ISSUE_REFUSED;
}

/* Records a signed leaf in *id (keeping generation/regeneration counters); takes cert_pem.
 * Returns 0 or MESHCA_ENOMEM. */
static int issue_store(const mesh *m, const dataplane *dp, const pass_cas *pc, int64_t now,
                       identity *id, bool rsa, char *cert_pem, const char *serial, int64_t nb,
                       int64_t na)
{
    const mesh_backend *b = &m->backends[pc->enabled];
    char *digest = NULL, when[32], stable[600];
    size_t clen = strlen(cert_pem);
    int r = MESHCA_ENOMEM;
    /* The cross-signed CA goes before the backend's own intermediates: it has the same subject
     * as the first of them, and OpenSSL takes the first matching issuer from the chain it is
     * sent, so a dataplane that trusts only the old CA must meet the cross-signed one first.
     * A dataplane with the new bundle finds the intermediate among its trusted certificates. */
    if ((pc->cross_pem && append(&cert_pem, &clen, pc->cross_pem) < 0) ||
        append(&cert_pem, &clen, pc->chain_extra_pem) < 0 ||
        !(digest = tags_digest(dp)) || set_str(&id->backend, b->name.value) < 0 ||
        set_str(&id->serial, serial) < 0 ||
        set_str(&id->ca_fingerprint, pc->cas[pc->enabled].fingerprint) < 0)
        goto out;
    pki_format_time(now, when, sizeof(when));
    if (set_str(&id->last_regeneration, when) < 0)
        goto out;
    r = 0;
    free(id->cert_pem);
    id->cert_pem = cert_pem;
    cert_pem = NULL;
    free(id->tags_digest);
    id->tags_digest = digest;
    digest = NULL;
    id->not_before = nb;
    id->not_after = na;
    snprintf(stable, sizeof(stable), "%s/%s", m->name.value, dp->name.value);
    /* The lifetime is what was asked for, from now: notBefore is backdated a minute for clock
     * skew, and counting that minute would renew a short-lived certificate far too early. */
    id->renew_at = pki_renewal_point(now < na ? now : nb, na, stable);
    id->rsa = rsa;
    id->cross_signed = pc->cross_pem != NULL;
    id->regenerations++;
out:
    free(cert_pem);
    free(digest);
    return r;
}

/* Signs a new certificate for the public key `pub` into *id through the backend, one at a time
 * (a CA that signs remotely). Returns 0, ISSUE_SKIPPED, ISSUE_REFUSED or MESHCA_ENOMEM. */
static int issue(const mesh *m, const dataplane *dp, const pass_cas *pc, int64_t now, identity *id,
                 EVP_PKEY *pub, diag_list *diags)
{
    char *uris[PKI_MAX_SANS];
    pki_leaf_request req;
    int r = issue_request(m, dp, pc, strcmp(pki_key_type(pub), "rsa") == 0, uris, &req, diags);
    if (r != 0)
        return r;
    const mesh_backend *b = &m->backends[pc->enabled];
    /* A backend that signs CSRs (vault) gets the CSR of the key being signed and the tags. */
    bool csr_mode = ca_backend_signs_csr(pc->cas[pc->enabled].ca);
    req.csr_pem = id->pending_key_pem ? id->pending_csr_pem : id->csr_pem;
    model_tag *tags = csr_mode ? dp_tags(dp, &req.ntags) : NULL;
    req.tags = tags;
    X509 *cert = NULL;
    char errbuf[PKI_ERRBUF] = "", *cert_pem = NULL;
    char serial[80];
    r = csr_mode && (!req.csr_pem || !tags)
            ? (tags ? ISSUE_SKIPPED : MESHCA_ENOMEM)
            : ca_backend_sign_leaf(pc->cas[pc->enabled].ca, &req, pub, now, &cert, errbuf);
    for (size_t i = 0; i < req.nuris; i++)
        free(uris[i]);
    free(tags);
    if (r == MESHCA_ENOTFOUND) {
        /* The backend cannot sign this one dataplane (ca_backend.h): the others go on. */
        diag_warning(diags, "leaf-unsignable", NULL, "", "dataplane '%s/%s': backend '%s' cannot "
                     "sign its leaf: %s", m->name.value, dp->name.value, b->name.value, errbuf);
        return ISSUE_SKIPPED;
    }
    if (r == ISSUE_SKIPPED || r == MESHCA_ENOMEM) {
        /* An identity kept from before CSR mode holds only a public key: a CSR-signing backend
         * cannot sign it; the agent's next CSR (at renewal) is signed. */
        if (r == ISSUE_SKIPPED)
            diag_warning(diags, "csr-missing", NULL, "", "dataplane '%s/%s': backend '%s' signs "
                         "CSRs and no CSR is kept for its key; waiting for the agent's next CSR",
                         m->name.value, dp->name.value, b->name.value);
        return r;
    }
    if (r < 0)
        return sign_refused(m, dp, pc, r, errbuf, diags);
    int64_t nb = 0, na = 0;
    if ((r = pki_cert_to_pem(cert, &cert_pem, errbuf)) < 0 ||
        (r = pki_serial_hex(cert, serial, sizeof(serial))) < 0 ||
        (r = pki_cert_not_before(cert, &nb)) < 0 || (r = pki_cert_not_after(cert, &na)) < 0) {
        if (r != MESHCA_ENOMEM) {
            diag_error(diags, "ca-unavailable", NULL, "", "mesh '%s': the certificate signed for "
                       "'%s' cannot be encoded: %s", m->name.value, dp->name.value,
                       errbuf[0] ? errbuf : meshca_strerror(r));
            r = ISSUE_REFUSED;
        }
        free(cert_pem);
    } else {
        r = issue_store(m, dp, pc, now, id, req.rsa, cert_pem, serial, nb, na);
    }
    X509_free(cert);
    return r;
}

/*
 * Leaves of a CA whose key is local are signed on the signing workers (sign_pool.c), a batch at
 * a time: the pass decides for each dataplane and queues what to sign, then finishes the batch
 * in dataplane order, so the writes and the report are those of signing one at a time. A batch
 * bounds the memory of a full pass (identities held until signed), and is large enough that the
 * workers stay busy. Two batches are under way at once: while the workers sign one, the pass
 * finishes the one before (its certificates recorded, its identities encoded) and decides the
 * next, so that with fewer workers than cores the pass's own work does not wait for the
 * signing, nor the signing for it.
 */
#define SIGN_BATCH 1024

typedef struct deferred {
    const dataplane *dp;
    identity id;             /* owned: moved in from the pass */
    uint64_t version;
    reconcile_verb verb;
    const char *reason;      /* static */
    bool pending;            /* the agent's pending key: its CSR (or key) is used up */
    bool sign;               /* false: rebundled only, queued to keep the order */
    unsigned char *spki;     /* SPKI DER to re-sign (owned), or NULL with the CSR of id */
    size_t spki_len;
    char *uris[PKI_MAX_SANS];   /* req.nuris of them, owned */
    pki_leaf_request req;
} deferred;

typedef struct sign_batch {
    ca_backend *ca;          /* borrowed; NULL: the CA signs remotely and nothing is deferred */
    unsigned workers;        /* 0: the online CPUs */
    sign_pool *pool;         /* made for the first batch that signs */
    /* The batch being filled (by defer), then, once started, the one the workers sign (fl_*):
     * sign_batch_cycle swaps them. */
    deferred *items;         /* SIGN_BATCH of them, allocated once (req.uris points inside) */
    sign_pool_job *jobs;
    size_t n;
    int stop;                /* the batch cannot be signed (ISSUE_REFUSED, MESHCA_ENOMEM) */
    deferred *fl_items;
    sign_pool_job *fl_jobs;
    size_t fl_n;
    int fl_stop;
    bool signing;            /* fl_* posted to the pool, not waited for yet */
} sign_batch;

static void deferred_clear(deferred *d)
{
    identity_clear(&d->id);
    free(d->spki);
    for (size_t i = 0; i < d->req.nuris; i++)
        free(d->uris[i]);
    memset(d, 0, sizeof(*d));
}

/* Drops n items of a batch unfinished, with the leaves signed for them. */
static void batch_drop(deferred *items, sign_pool_job *jobs, size_t n)
{
    for (size_t i = 0, k = 0; items && i < n; i++) {
        if (items[i].sign)
            pki_signed_leaf_clear(&jobs[k++].leaf);
        deferred_clear(&items[i]);
    }
}

/* Waits for the batch the workers sign, if any. */
static void sign_batch_wait(sign_batch *b)
{
    if (b->signing)
        (void)sign_pool_wait(b->pool, NULL);   /* per-job results are read when finishing */
    b->signing = false;
}

/* Both batches dropped unfinished (the mesh stops). */
static void sign_batch_drop(sign_batch *b)
{
    sign_batch_wait(b);
    batch_drop(b->fl_items, b->fl_jobs, b->fl_n);
    batch_drop(b->items, b->jobs, b->n);
    b->fl_n = b->n = 0;
    b->fl_stop = b->stop = 0;
}

static void sign_batch_free(sign_batch *b)
{
    sign_batch_drop(b);
    free(b->items);
    free(b->jobs);
    free(b->fl_items);
    free(b->fl_jobs);
    sign_pool_free(b->pool);
    memset(b, 0, sizeof(*b));
}

/* Queues *id (moved out: *id is left empty) to be finished by the batch, signed when spki (taken
 * over) or csr_pem of id is given. Returns ISSUE_DEFERRED, ISSUE_SKIPPED (no SANs: warned, *id
 * kept) or MESHCA_ENOMEM. */
static int defer(sign_batch *b, const mesh *m, const dataplane *dp, const pass_cas *pc,
                 identity *id, uint64_t version, reconcile_verb verb, const char *reason,
                 bool sign, bool pending, unsigned char *spki, size_t spki_len, bool rsa,
                 diag_list *diags)
{
    if ((!b->items && !(b->items = calloc(SIGN_BATCH, sizeof(*b->items)))) ||
        (!b->jobs && !(b->jobs = calloc(SIGN_BATCH, sizeof(*b->jobs))))) {
        free(spki);
        return MESHCA_ENOMEM;
    }
    deferred *d = &b->items[b->n];
    memset(d, 0, sizeof(*d));
    if (sign) {
        int r = issue_request(m, dp, pc, rsa, d->uris, &d->req, diags);
        if (r != 0) {
            free(spki);
            memset(d, 0, sizeof(*d));
            return r;
        }
    }
    d->dp = dp;
    d->id = *id;
    memset(id, 0, sizeof(*id));
    d->version = version;
    d->verb = verb;
    d->reason = reason;
    d->sign = sign;
    d->pending = pending;
    d->spki = spki;
    d->spki_len = spki_len;
    b->n++;
    return ISSUE_DEFERRED;
}

/* What a pass does to an issued identity besides re-signing or rebundling. */
enum { ASK_NOTHING = 0, ASK_RENEW = 1 };

/* Why a dataplane's identity must change, or NULL. *ret_verb says how; *ret_ask = ASK_RENEW
 * when the change is the agent's to make (a fresh key and CSR): the controller only moves
 * renewAt forward (S5: renewal is a new key, which never leaves the dataplane). */
static const char *why_change(const mesh *m, const pass_cas *pc, const identity *id,
                              const char *digest, int64_t now, reconcile_verb *ret_verb,
                              int *ret_ask)
{
    const mesh_backend *b = &m->backends[pc->enabled];
    *ret_verb = RECONCILE_REISSUED;
    *ret_ask = ASK_NOTHING;
    /* The held key is of the wrong type: only the agent can make a new one. */
    if (id->rsa != mesh_backend_leaf_is_rsa(b)) {
        *ret_ask = ASK_RENEW;
        return "keyType changed: the agent sends a CSR for a new key";
    }
    /* When only the CA side changed, the public key already held is re-signed: a rotation
     * needs no round trip to the agents. */
    if (!str_eq(id->backend, b->name.value))
        return "issuer is not the enabled backend";
    if (!str_eq(id->ca_fingerprint, pc->cas[pc->enabled].fingerprint))
        return "signing CA certificate changed";
    if (!str_eq(id->tags_digest, digest))
        return "tags changed";
    if (id->cross_signed != (pc->cross_pem != NULL))
        return id->cross_signed ? "every dataplane trusts the new CA: cross-signed CA dropped"
                                : "forced switch: serving the new CA cross-signed by the old";
    /* dpCert.rotation.expiration was shortened: the certificate would outlive the new lifetime.
     * The agent renews at once (renewAt = now). The minute of slack keeps controllers whose
     * clocks differ a little from asking each other's agents to renew. */
    if (id->not_after > now + leaf_lifetime_s(b) + PKI_LEAF_BACKDATE_S) {
        *ret_ask = ASK_RENEW;
        return "dpCert expiration shortened: the certificate outlives the new lifetime";
    }
    if (!str_eq(id->bundle_digest, pc->bundle_digest) || !same_backends(id, pc)) {
        *ret_verb = RECONCILE_REBUNDLED;
        return "trust bundle changed";
    }
    return NULL;
}

/* Queues one write of the pass (SPEC S6: a pass's writes are one transaction). */
static int queue_write(pass_txn *tx, const char *kind, const char *mesh_name, const char *name,
                       char *value, uint64_t version, bool del)
{
    if (tx->n == tx->cap) {
        size_t cap = tx->cap ? tx->cap * 2 : 16;
        pass_write *w = realloc(tx->w, cap * sizeof(*w));
        if (!w) {
            free(value);
            return MESHCA_ENOMEM;
        }
        tx->w = w;
        tx->cap = cap;
    }
    pass_write *w = &tx->w[tx->n];
    memset(w, 0, sizeof(*w));
    w->kind = kind;
    w->mesh = strdup(mesh_name);
    w->name = strdup(name);
    w->value = value;
    w->version = version;
    w->del = del;
    if (!w->mesh || !w->name) {
        free(w->mesh);
        free(w->name);
        free(value);
        return MESHCA_ENOMEM;
    }
    tx->n++;
    return 0;
}

static int queue_identity(pass_txn *tx, const identity *id, uint64_t version)
{
    char *text = identity_encode(id);
    if (!text)
        return MESHCA_ENOMEM;
    return queue_write(tx, STATE_IDENTITIES, id->mesh, id->dataplane, text, version, false);
}

/* The pending key is used up: signed (r == 0: it becomes the key held), or refused until a new
 * CSR (ISSUE_SKIPPED). */
static void pending_done(identity *id, int r)
{
    if (r != ISSUE_SKIPPED && r != 0)
        return;
    if (r == 0) {
        free(id->public_key_pem);
        id->public_key_pem = id->pending_key_pem;
        free(id->csr_pem);
        id->csr_pem = id->pending_csr_pem;
    } else {
        free(id->pending_key_pem);
        free(id->pending_csr_pem);
    }
    id->pending_key_pem = NULL;
    id->pending_csr_pem = NULL;
}

/* Signs a pending key (the agent's CSR): 0 with *id filled, ISSUE_DEFERRED (*id moved into the
 * batch), ISSUE_SKIPPED, ISSUE_REFUSED or MESHCA_ENOMEM. A pending key of the wrong type
 * (keyType changed after the CSR) is dropped: the agent sends another. */
static int sign_pending(const mesh *m, const dataplane *dp, const pass_cas *pc, int64_t now,
                        identity *id, uint64_t version, reconcile_verb verb, const char *reason,
                        sign_batch *batch, diag_list *diags)
{
    unsigned char *spki = NULL;
    size_t spki_len = 0;
    bool rsa = false;
    char errbuf[PKI_ERRBUF] = "";
    const mesh_backend *b = &m->backends[pc->enabled];
    int r = pki_spki_from_pem(id->pending_key_pem, strlen(id->pending_key_pem), &spki, &spki_len,
                              &rsa, errbuf);
    if (r == 0 && rsa != mesh_backend_leaf_is_rsa(b)) {
        diag_warning(diags, "csr-key-type", NULL, "", "dataplane '%s/%s': the pending key is %s but "
                     "dpCert.keyType asks for %s; waiting for a new CSR", m->name.value,
                     dp->name.value, rsa ? "rsa" : "ecdsa",
                     mesh_backend_leaf_is_rsa(b) ? "rsa" : "ecdsa");
        r = ISSUE_SKIPPED;
    } else if (r < 0) {
        diag_warning(diags, "corrupt-object", NULL, "", "dataplane '%s/%s': pending public key "
                     "dropped: %s", m->name.value, dp->name.value, errbuf);
        r = ISSUE_SKIPPED;
    } else if (batch->ca) {
        /* The CSR, when the record holds one, is verified again by the worker that signs it. */
        if (id->pending_csr_pem) {
            free(spki);
            spki = NULL;
        }
        r = defer(batch, m, dp, pc, id, version, verb, reason, true, true, spki, spki_len, rsa,
                  diags);   /* takes spki */
        spki = NULL;
        if (r == ISSUE_DEFERRED || r < 0)
            return r;
    } else {
        EVP_PKEY *pub = NULL;
        r = pki_pubkey_from_der(spki, spki_len, &pub, errbuf);
        if (r < 0) {
            diag_warning(diags, "corrupt-object", NULL, "", "dataplane '%s/%s': pending public "
                         "key dropped: %s", m->name.value, dp->name.value, errbuf);
            r = ISSUE_SKIPPED;
        } else {
            r = issue(m, dp, pc, now, id, pub, diags);
        }
        EVP_PKEY_free(pub);
    }
    free(spki);
    pending_done(id, r);
    return r;
}

/* A pending key refused (or used up without a certificate): nothing issued yet means no record
 * until the next CSR; else the record stays without its pending key. Clears *id. */
static int pending_skipped(pass_txn *tx, const char *mesh_name, const char *dp_name,
                           identity *id, uint64_t version, reconcile_mesh_report *mr, char *errbuf)
{
    mr->skipped++;
    int rc = id->generation > 0 ? queue_identity(tx, id, version)
                                : queue_write(tx, STATE_IDENTITIES, mesh_name, dp_name, NULL,
                                              version, true);
    identity_clear(id);
    return rc < 0 ? meshca_fail(errbuf, rc, "out of memory") : 0;
}

/* Writes what a pass decided for one dataplane (rc: 0, ISSUE_SKIPPED or ISSUE_REFUSED from its
 * signing) and reports it. Clears *id. Returns 0, ISSUE_REFUSED or MESHCA_ENOMEM (errbuf). */
static int finish_dataplane(const char *mesh_name, const pass_cas *pc, identity *id,
                            uint64_t version,
                            reconcile_verb verb, const char *reason, int rc, pass_txn *tx,
                            reconcile_report *rep, reconcile_mesh_report *mr, char *errbuf)
{
    if (rc == 0)
        rc = set_bundle(id, pc);
    if (rc != 0) {
        identity_clear(id);
        if (rc < 0)
            return meshca_fail(errbuf, rc, "out of memory");
        mr->skipped++;
        return rc == ISSUE_SKIPPED ? 0 : rc;
    }
    id->generation++;
    rc = queue_identity(tx, id, version);
    if (rc == 0)
        rc = add_action(rep, mesh_name, id, verb, reason);
    identity_clear(id);
    if (rc < 0)
        return meshca_fail(errbuf, rc, "out of memory");
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
    return 0;
}

/* Posts the batch being filled to the workers (a pool is made for the first batch that signs);
 * a pool that cannot be made sets the batch's stop (reported). */
static void sign_batch_start(sign_batch *b, const mesh *m, const pass_cas *pc, int64_t now,
                             diag_list *diags)
{
    char perr[PKI_ERRBUF] = "";
    size_t nj = 0;
    for (size_t i = 0; i < b->n; i++) {
        deferred *d = &b->items[i];
        if (!d->sign)
            continue;
        b->jobs[nj] = (sign_pool_job){.req = d->req};
        if (d->spki) {
            b->jobs[nj].spki_der = d->spki;
            b->jobs[nj].spki_len = d->spki_len;
        } else {
            b->jobs[nj].csr_pem = d->id.pending_csr_pem;
            b->jobs[nj].csr_len = strlen(d->id.pending_csr_pem);
        }
        nj++;
    }
    if (nj && !b->pool && !b->stop) {
        int r = ca_backend_sign_pool_new(b->ca, b->workers, &b->pool, perr);
        if (r < 0 || !b->pool)
            b->stop = r == MESHCA_ENOMEM ? r
                                         : sign_refused(m, b->items[0].dp, pc,
                                                        r < 0 ? r : PKI_EINVAL, perr, diags);
    }
    /* Per-job results are read when finishing: the first failure's summary is not needed. */
    if (nj && !b->stop)
        b->signing = sign_pool_start(b->pool, b->jobs, nj, now, perr) == 0;
    if (nj && !b->stop && !b->signing)
        b->stop = MESHCA_ENOMEM;   /* cannot happen: the pool has no batch posted here */
}

/* Finishes the batch in items (signed: the workers are done with it) in dataplane order.
 * Returns 0, ISSUE_REFUSED (reported: the CA could not sign; the rest of the batch is dropped)
 * or MESHCA_ENOMEM. */
static int sign_batch_finish(sign_batch *b, const mesh *m, const pass_cas *pc, int64_t now,
                             pass_txn *tx, reconcile_report *rep, reconcile_mesh_report *mr,
                             diag_list *diags, char *errbuf)
{
    int stop = b->stop;
    for (size_t i = 0, k = 0; i < b->n; i++) {
        deferred *d = &b->items[i];
        sign_pool_job *job = d->sign ? &b->jobs[k++] : NULL;
        int r = 0;
        if (stop) {
            if (job)
                pki_signed_leaf_clear(&job->leaf);
            deferred_clear(d);
            continue;
        }
        if (job && job->result == 0) {
            r = issue_store(m, d->dp, pc, now, &d->id, d->req.rsa, job->leaf.pem,
                            job->leaf.serial_hex, job->leaf.not_before, job->leaf.not_after);
            job->leaf.pem = NULL;
        } else if (job && job->result == PKI_EINVAL) {
            /* The key held, or the CSR, does not parse or verify: only a new CSR helps. */
            diag_warning(diags, "corrupt-object", NULL, "", "dataplane '%s/%s': %s; waiting for "
                         "a new CSR", m->name.value, d->dp->name.value,
                         d->pending ? "the pending key (CSR) does not verify and is dropped"
                                    : "the public key held cannot be read");
            r = ISSUE_SKIPPED;
        } else if (job) {
            r = job->result == MESHCA_ENOMEM ? MESHCA_ENOMEM
                                             : sign_refused(m, d->dp, pc, job->result, NULL, diags);
        }
        if (job)
            pki_signed_leaf_clear(&job->leaf);
        if (d->pending)
            pending_done(&d->id, r);
        if (r == MESHCA_ENOMEM)
            stop = meshca_fail(errbuf, r, "out of memory");
        else if (d->pending && r == ISSUE_SKIPPED)
            stop = pending_skipped(tx, m->name.value, d->dp->name.value, &d->id, d->version, mr,
                                   errbuf);
        else
            stop = finish_dataplane(m->name.value, pc, &d->id, d->version, d->verb, d->reason, r,
                                    tx, rep, mr, errbuf);
        deferred_clear(d);
    }
    b->n = 0;
    b->stop = 0;
    return stop;
}

/* One turn of the two batches: waits for the one being signed, posts the one filled, and
 * finishes the one signed meanwhile (the workers sign while the pass records, encodes and
 * decides). Returns sign_batch_finish's result. */
static int sign_batch_cycle(sign_batch *b, const mesh *m, const pass_cas *pc, int64_t now,
                            pass_txn *tx, reconcile_report *rep, reconcile_mesh_report *mr,
                            diag_list *diags, char *errbuf)
{
    sign_batch_wait(b);
    sign_batch_start(b, m, pc, now, diags);
    deferred *items = b->items;
    sign_pool_job *jobs = b->jobs;
    size_t n = b->n;
    int stop = b->stop;
    b->items = b->fl_items;
    b->jobs = b->fl_jobs;
    b->n = b->fl_n;
    b->stop = b->fl_stop;
    b->fl_items = items;
    b->fl_jobs = jobs;
    b->fl_n = n;
    b->fl_stop = stop;
    return sign_batch_finish(b, m, pc, now, tx, rep, mr, diags, errbuf);
}

/* Both batches signed and finished (the end of a mesh). Returns as sign_batch_finish. */
static int sign_batch_drain(sign_batch *b, const mesh *m, const pass_cas *pc, int64_t now,
                            pass_txn *tx, reconcile_report *rep, reconcile_mesh_report *mr,
                            diag_list *diags, char *errbuf)
{
    int rc = sign_batch_cycle(b, m, pc, now, tx, rep, mr, diags, errbuf);
    return rc == 0 ? sign_batch_cycle(b, m, pc, now, tx, rep, mr, diags, errbuf) : rc;
}

/*
 * The common case of a pass, decided from the identity records' small fields (identity_peek)
 * in one scan of the mesh's identities (store_scan: one statement, not one SELECT per
 * dataplane): no identity yet (awaiting its agent's CSR), or an issued one with nothing to
 * change. Anything else goes through the full decision, from the record the scan read (kept
 * as text, decoded by identity_json_decode: a full pass decodes every record, and one SELECT
 * and jansson tree each was a fifth of it); a record that decoder does not take, a corrupt one
 * included, is read again by identity_read, which reports it.
 */
enum { QUICK_ABSENT = 0, QUICK_UNCHANGED = 1, QUICK_FULL = 2 };

typedef struct quick_name {
    const char *name;
    size_t index;   /* in the pass's dataplanes */
} quick_name;

/* A record the full decision needs, as the scan read it. */
typedef struct quick_record {
    char *value;   /* owned, NUL-terminated; NULL: not read (identity_read reads it) */
    size_t len;
    uint64_t version;
} quick_record;

typedef struct quick_scan {
    const mesh *m;
    const pass_cas *pc;
    int64_t now;
    const dataplane *const *dps;
    quick_name *names;         /* sorted by name */
    size_t n;
    unsigned char *verdict;    /* QUICK_* per dataplane of the pass */
    quick_record *records;     /* per dataplane of the pass: the QUICK_FULL ones' records */
} quick_scan;

static int cmp_quick_name(const void *a, const void *b)
{
    return strcmp(((const quick_name *)a)->name, ((const quick_name *)b)->name);
}

/* Whether the record says the dataplane has nothing to change. */
static bool quick_unchanged(const mesh *m, const dataplane *dp, const pass_cas *pc, int64_t now,
                            const char *value, size_t len)
{
    identity id = {0};
    unsigned flags = 0;
    reconcile_verb verb;
    int ask;
    char *digest = NULL;
    bool same = identity_peek(value, len, &id, &flags) == 0 &&
                !(flags & PEEK_PENDING_KEY) && id.generation > 0 && (flags & PEEK_PUBLIC_KEY) &&
                (flags & PEEK_CERTIFICATE) && (digest = tags_digest(dp)) != NULL &&
                !why_change(m, pc, &id, digest, now, &verb, &ask);
    free(digest);
    identity_clear(&id);
    return same;
}

static int quick_scan_one(void *userdata, const store_entry *e)
{
    quick_scan *q = userdata;
    quick_name key = {e->name, 0};
    const quick_name *hit = bsearch(&key, q->names, q->n, sizeof(*q->names), cmp_quick_name);
    if (!hit)
        return 0;
    if (quick_unchanged(q->m, q->dps[hit->index], q->pc, q->now, e->value, e->len)) {
        q->verdict[hit->index] = QUICK_UNCHANGED;
        return 0;
    }
    q->verdict[hit->index] = QUICK_FULL;
    /* Kept for the full decision; out of memory leaves it to identity_read. */
    quick_record *rec = &q->records[hit->index];
    if (!rec->value && (rec->value = malloc(e->len + 1)) != NULL) {
        memcpy(rec->value, e->value, e->len);
        rec->value[e->len] = '\0';
        rec->len = e->len;
        rec->version = e->version;
    }
    return 0;
}

static void quick_records_free(quick_record *records, size_t n)
{
    for (size_t i = 0; records && i < n; i++)
        free(records[i].value);
    free(records);
}

/* Verdicts for the pass's dataplanes (caller frees), or NULL when out of memory: then every
 * dataplane takes the full path. A scan the store fails leaves them all to the full path.
 * *ret_records: the records of the QUICK_FULL ones (caller frees with quick_records_free), or
 * NULL. */
static unsigned char *quick_verdicts(store *s, const mesh *m, const pass_cas *pc, int64_t now,
                                     const dataplane *const *dps, size_t ndps,
                                     quick_record **ret_records)
{
    quick_scan q = {m, pc, now, dps, calloc(ndps + 1, sizeof(quick_name)), 0,
                    calloc(ndps + 1, 1), calloc(ndps + 1, sizeof(quick_record))};
    *ret_records = NULL;
    if (!q.names || !q.verdict || !q.records) {
        free(q.names);
        free(q.verdict);
        free(q.records);
        return NULL;
    }
    for (size_t i = 0; i < ndps; i++)
        if (dps[i]->name.value)
            q.names[q.n++] = (quick_name){dps[i]->name.value, i};
    qsort(q.names, q.n, sizeof(*q.names), cmp_quick_name);
    if (store_scan(s, STATE_IDENTITIES, m->name.value, quick_scan_one, &q) < 0) {
        memset(q.verdict, QUICK_FULL, ndps);
        quick_records_free(q.records, ndps);
        q.records = NULL;
    }
    free(q.names);
    *ret_records = q.records;
    return q.verdict;
}

/* Returns 0 (done, skipped or warned), ISSUE_REFUSED (reported; the mesh stops), or a store or
 * memory code with errbuf naming the object and the cause (the caller reports it; the mesh
 * stops). Writes are queued in tx. */
static int reconcile_dataplane(store *s, const mesh *m, const dataplane *dp, const pass_cas *pc,
                               int64_t now, int quick, quick_record *rec, sign_batch *batch,
                               pass_txn *tx, reconcile_report *rep, reconcile_mesh_report *mr,
                               diag_list *diags, char *errbuf)
{
    const char *mesh_name = m->name.value;
    identity id = {0};
    uint64_t version = 0;
    if (quick == QUICK_ABSENT) {
        mr->awaiting++;   /* no CSR from its agent yet */
        return 0;
    }
    if (quick == QUICK_UNCHANGED) {
        mr->unchanged++;
        return 0;
    }
    int rc = -1;
    if (rec && rec->value) {
        /* The record the scan read; its version guards the write as identity_read's would. */
        if (identity_json_decode(rec->value, rec->len, &id) == 0) {
            version = rec->version;
            rc = 0;
        }
        free(rec->value);
        rec->value = NULL;
    }
    if (rc != 0)
        rc = identity_read(s, mesh_name, dp->name.value, &id, &version, errbuf);
    if (rc == MESHCA_ECORRUPT) {
        /* A corrupt record holds no key we could trust: it is removed (compare-and-swap on its
         * version, so a concurrent writer still wins), and the agent's next CSR issues anew. */
        store_key key = {STATE_IDENTITIES, mesh_name, dp->name.value};
        int got = state_object_version(s, &key, &version);
        if (got < 0) {
            snprintf(errbuf, MESHCA_ERRBUF, "cannot read %s/%s/%s: %s", key.kind, key.mesh,
                     key.name, store_strerror(got));
            return got;
        }
        diag_warning(diags, "corrupt-object", NULL, "", "%s; removed, the agent's next CSR "
                     "issues a new identity", errbuf);
        mr->skipped++;
        return queue_write(tx, STATE_IDENTITIES, mesh_name, dp->name.value, NULL, version, true) < 0
                   ? meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory")
                   : 0;
    }
    if (rc == STORE_ENOTFOUND) {
        mr->awaiting++;   /* no CSR from its agent yet */
        return 0;
    }
    if (rc < 0)
        return rc;   /* errbuf names the object and the cause */

    reconcile_verb verb = RECONCILE_ISSUED;
    const char *reason = NULL;
    int ask = ASK_NOTHING;
    if (id.pending_key_pem) {
        verb = id.generation > 0 ? RECONCILE_RENEWED : RECONCILE_ISSUED;
        reason = id.generation > 0 ? "new key from the agent (CSR)" : "first CSR";
        rc = sign_pending(m, dp, pc, now, &id, version, verb, reason, batch, diags);
        if (rc == ISSUE_DEFERRED)
            return 0;
        if (rc == ISSUE_SKIPPED)
            return pending_skipped(tx, mesh_name, dp->name.value, &id, version, mr, errbuf);
    } else if (id.generation <= 0 || !id.public_key_pem) {
        mr->awaiting++;
        identity_clear(&id);
        return 0;
    } else {
        char *digest = tags_digest(dp);
        if (!digest) {
            identity_clear(&id);
            return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
        }
        reason = why_change(m, pc, &id, digest, now, &verb, &ask);
        free(digest);
        if (!reason) {
            mr->unchanged++;
            identity_clear(&id);
            return 0;
        }
        if (ask == ASK_RENEW) {
            /* The agent's to do: tell it through renewAt, once. */
            mr->unchanged++;
            if (id.renew_at <= now) {
                identity_clear(&id);
                return 0;
            }
            id.renew_at = now;
            rc = queue_identity(tx, &id, version);
            identity_clear(&id);
            return rc < 0 ? meshca_fail(errbuf, rc, "out of memory") : 0;
        }
        rc = 0;
        if (verb != RECONCILE_REBUNDLED) {
            /* Re-signing the public key held: as SPKI DER, no EVP_PKEY built for a local CA. */
            unsigned char *spki = NULL;
            size_t spki_len = 0;
            bool rsa = false;
            EVP_PKEY *pub = NULL;
            char perr[PKI_ERRBUF] = "";
            rc = pki_spki_from_pem(id.public_key_pem, strlen(id.public_key_pem), &spki, &spki_len,
                                   &rsa, perr);
            if (rc == 0 && !batch->ca)
                rc = pki_pubkey_from_der(spki, spki_len, &pub, perr);
            if (rc < 0) {
                diag_warning(diags, "corrupt-object", NULL, "", "dataplane '%s/%s': the public key "
                             "held cannot be read (%s); waiting for a new CSR", mesh_name,
                             dp->name.value, perr);
                rc = ISSUE_SKIPPED;
            } else if (batch->ca) {
                rc = defer(batch, m, dp, pc, &id, version, verb, reason, true, false, spki,
                           spki_len, rsa, diags);   /* takes spki */
                spki = NULL;
            } else {
                rc = issue(m, dp, pc, now, &id, pub, diags);
            }
            free(spki);
            EVP_PKEY_free(pub);
        } else if (batch->n > 0 || batch->fl_n > 0) {
            /* Rebundled only, queued behind the leaves being signed to keep the order. */
            rc = defer(batch, m, dp, pc, &id, version, verb, reason, false, false, NULL, 0, false,
                       diags);
        }
        if (rc == ISSUE_DEFERRED)
            return 0;
    }
    return finish_dataplane(mesh_name, pc, &id, version, verb, reason, rc, tx, rep, mr, errbuf);
}

/* Forced switch (S5): while the mesh status holds crossSign {from, to} with `to` enabled and a
 * dataplane does not trust `to` yet, leaves carry `to` re-signed by `from`'s key (pc->cross_pem).
 * Returns whether the flag is set (1), 0, or MESHCA_ENOMEM. */
static int prepare_cross_sign(store *s, const mesh *m, const dataplane *const *dps, size_t ndps,
                              json_t *mstatus, int64_t now, pass_cas *pc, diag_list *diags)
{
    json_t *cs = json_object_get(mstatus, "crossSign");
    const char *from = json_string_value(json_object_get(cs, "from"));
    const char *to = json_string_value(json_object_get(cs, "to"));
    if (!from || !to || !str_eq(to, m->backends[pc->enabled].name.value))
        return 0;
    size_t fi = SIZE_MAX;
    for (size_t i = 0; i < m->nbackends; i++)
        if (str_eq(m->backends[i].name.value, from))
            fi = i;
    if (fi == SIZE_MAX || fi == pc->enabled)
        return 0;

    /* Does every dataplane trust `to`? One sorted index of the statuses (shared with the
     * validators' gates), one lookup per dataplane. */
    status_set st = STATUS_SET_INIT;
    status_index idx = STATUS_INDEX_INIT;
    bool all_trust = state_load_status(s, m->name.value, &st) == 0;
    if (all_trust && status_index_build(st.items, st.count, m->name.value, &idx) < 0) {
        status_set_free(&st);
        return MESHCA_ENOMEM;
    }
    for (size_t i = 0; all_trust && i < ndps; i++) {
        const dataplane_status *const *hit = status_index_find(&idx, dps[i]->name.value);
        all_trust = hit && status_supports(*hit, to);
    }
    status_index_free(&idx);
    status_set_free(&st);
    if (all_trust)
        return 1;

    ca_backend *from_ca = pc->cas[fi].ca;
    X509 *cross = NULL;
    char errbuf[PKI_ERRBUF] = "";
    int64_t lifetime_s = leaf_lifetime_s(&m->backends[pc->enabled]);
    int r = from_ca ? ca_backend_cross_sign(from_ca, ca_backend_cert(pc->cas[pc->enabled].ca), now,
                                            now + lifetime_s + RECONCILE_CROSS_SIGN_SLACK_S,
                                            &cross, errbuf)
                    : PKI_EINVAL;
    if (r == 0)
        r = pki_cert_to_pem(cross, &pc->cross_pem, errbuf);
    X509_free(cross);
    if (r < 0)
        diag_warning(diags, "cross-sign-unavailable", NULL, "mtls.enabledBackend",
                     "mesh '%s': cannot cross-sign '%s' with '%s' (%s); dataplanes that do not "
                     "trust '%s' yet will reject the new certificates", m->name.value, to, from,
                     from_ca ? errbuf : "it cannot be used", to);
    return 1;
}

/* Queues the mesh bundle when it differs from the stored one. 0, MESHCA_ENOMEM, or a store
 * code with errbuf. */
static int queue_bundle(store *s, const char *mesh_name, const pass_cas *pc, pass_txn *tx,
                        char *errbuf)
{
    mesh_bundle cur = {0};
    uint64_t version = 0;
    int rc = state_read_bundle(s, mesh_name, &cur, &version, errbuf);
    if (rc == MESHCA_ECORRUPT || rc == STORE_ENOTFOUND) {
        if (rc == STORE_ENOTFOUND)
            version = 0;
        else if (state_object_version(s, &(store_key){STATE_BUNDLES, mesh_name, mesh_name}, &version) < 0)
            version = STORE_ANY_VERSION;
    } else if (rc < 0) {
        return rc;
    } else if (str_eq(cur.digest, pc->bundle_digest) && same_names(&cur, pc) &&
               /* Presence only: a cross-signed CA is signed afresh (new serial) each pass. */
               !cur.cross_signed_pem == !pc->cross_pem) {
        mesh_bundle_clear(&cur);
        return 0;
    }
    mesh_bundle_clear(&cur);
    mesh_bundle b = {
        .pem = pc->bundle_pem, .backends = (char **)pc->bundle_backends, .nbackends = pc->nbundle,
        .digest = (char *)pc->bundle_digest, .cross_signed_pem = pc->cross_pem,
    };
    char *text = state_encode_bundle(&b);
    if (!text)
        return MESHCA_ENOMEM;
    return queue_write(tx, STATE_BUNDLES, mesh_name, mesh_name, text, version, false);
}

/* Returns 0 or MESHCA_ENOMEM; everything else is in the report and diags. */
static int reconcile_mesh(store *s, const manifest_set *set, const mesh *m, int64_t now,
                          unsigned workers, ca_cache *cache, pass_txn *tx, reconcile_report *rep,
                          diag_list *diags)
{
    const char *mesh_name = m->name.value;
    reconcile_mesh_report *mr = realloc(rep->meshes, (rep->nmeshes + 1) * sizeof(*mr));
    if (!mr)
        return MESHCA_ENOMEM;
    rep->meshes = mr;
    mr = &rep->meshes[rep->nmeshes];
    memset(mr, 0, sizeof(*mr));
    if (set_str(&mr->mesh, mesh_name) < 0)
        return MESHCA_ENOMEM;
    rep->nmeshes++;
    if (cache) {
        /* Backends no longer in the mesh (or every one, mTLS off) leave the cache. */
        const char *names[MODEL_MAX_BACKENDS + 1];
        size_t n = 0;
        for (size_t i = 0; mesh_enabled_backend(m) && i < m->nbackends && n < MODEL_MAX_BACKENDS; i++)
            if (m->backends[i].name.value)
                names[n++] = m->backends[i].name.value;
        ca_cache_prune(cache, mesh_name, names, n);
    }
    if (!mesh_enabled_backend(m))
        return 0;
    mr->mtls = true;

    pass_cas pc = {0};
    sign_batch batch = {.workers = workers};
    unsigned char *quick = NULL;
    quick_record *records = NULL;
    json_t *mstatus = NULL;
    uint64_t mstatus_version = 0;
    const dataplane **dps = NULL;
    size_t ndps = 0;
    char errbuf[MESHCA_ERRBUF] = "";
    int rc = state_read_mesh_status(s, mesh_name, &mstatus, &mstatus_version, errbuf);
    if (rc == MESHCA_ECORRUPT) {
        /* It may hold a forced switch's cross-signing request: going on without it could issue
         * leaves that dataplanes reject. Skip the mesh until it is repaired. */
        diag_error(diags, "corrupt-object", NULL, "", "mesh '%s' skipped: %s", mesh_name, errbuf);
        mr->failed = true;
        return 0;
    }
    if (rc < 0) {
        if (rc == MESHCA_ENOMEM)
            return rc;
        store_failed(rep, mr, rc, mesh_name, errbuf, diags);
        return 0;
    }
    json_t *conditions = json_object_get(mstatus, "conditions");
    if (!json_is_array(conditions)) {
        conditions = json_array();
        if (!conditions || json_object_set_new(mstatus, "conditions", conditions) < 0) {
            json_decref(mstatus);
            return MESHCA_ENOMEM;
        }
    }
    bool status_changed = false;
    rc = open_cas(s, m, now, cache, &pc, conditions, &status_changed, diags);
    if (rc == ISSUE_REFUSED) {
        mr->failed = true;
        rc = 0;
        goto status;
    }
    /* The enabled CA failed to sign lately: wait for its backoff rather than ask every pass. */
    if (rc == 0 && cache && ca_cache_sign_wait(cache, mesh_name, m->backends[pc.enabled].name.value,
                                               now, errbuf)) {
        char path[64];
        backend_path(pc.enabled, path, sizeof(path));
        diag_error(diags, "ca-unavailable", NULL, path, "%s (retried with backoff)", errbuf);
        mr->failed = true;
        goto status;
    }
    if (rc < 0) {
        if (rc != MESHCA_ENOMEM) {
            snprintf(errbuf, sizeof(errbuf), "cannot open its CAs: %s", store_strerror(rc));
            store_failed(rep, mr, rc, mesh_name, errbuf, diags);
            rc = 0;
        }
        goto out;
    }
    if ((rc = manifest_set_dataplanes_of(set, mesh_name, &dps, &ndps)) < 0)
        goto out;
    int cross_flag = prepare_cross_sign(s, m, dps, ndps, mstatus, now, &pc, diags);
    if ((rc = cross_flag) < 0)
        goto out;
    if (ca_backend_signs_locally(pc.cas[pc.enabled].ca))
        batch.ca = pc.cas[pc.enabled].ca;
    quick = quick_verdicts(s, m, &pc, now, dps, ndps, &records);
    for (size_t i = 0; i < ndps; i++) {
        if (!dps[i]->name.value)
            continue;
        rc = reconcile_dataplane(s, m, dps[i], &pc, now, quick ? quick[i] : QUICK_FULL,
                                 records ? &records[i] : NULL, &batch, tx, rep, mr, diags, errbuf);
        if (rc == 0 && batch.n == SIGN_BATCH)
            rc = sign_batch_cycle(&batch, m, &pc, now, tx, rep, mr, diags, errbuf);
        if (tx->opts && tx->opts->progress)
            tx->opts->progress(tx->opts->progress_userdata, ++tx->done, tx->total);
        if (rc == ISSUE_REFUSED) {
            /* The CA refused to sign (e.g. expired meanwhile, Vault down): stop this mesh, and
             * say why in its status (the diagnostic just reported). */
            mr->failed = true;
            rc = 0;
            const char *why = diags->count ? diags->items[diags->count - 1].message : "";
            status_changed |= set_condition(conditions, m->backends[pc.enabled].name.value, why);
            if (cache)
                ca_cache_sign_failed(cache, mesh_name, m->backends[pc.enabled].name.value, why, now);
            /* The batches under way are dropped: the mesh stops here. */
            sign_batch_drop(&batch);
            break;
        }
        if (rc == MESHCA_ENOMEM)
            goto out;
        if (rc < 0) {
            /* One failure per mesh, not one per dataplane: a read-only or lost store fails
             * every write the same way. */
            store_failed(rep, mr, rc, mesh_name, errbuf, diags);
            rc = 0;
            break;
        }
    }
    /* The last batches, or what was decided before a store failure stopped the mesh. */
    if (batch.n > 0 || batch.fl_n > 0) {
        rc = sign_batch_drain(&batch, m, &pc, now, tx, rep, mr, diags, errbuf);
        if (rc == ISSUE_REFUSED) {
            mr->failed = true;
            rc = 0;
        } else if (rc < 0) {
            goto out;
        }
    }
    /* Every dataplane trusts the new CA and no leaf carries the cross-signed CA any more. */
    if (cross_flag && !pc.cross_pem && !mr->failed && !mr->skipped) {
        json_object_del(mstatus, "crossSign");
        status_changed = true;
    }
    /* The enabled backend signed what there was to sign: no longer unavailable. */
    if (!mr->failed && !mr->store_failed) {
        status_changed |= set_condition(conditions, m->backends[pc.enabled].name.value,
                                        ca_backend_warning(pc.cas[pc.enabled].ca));
        if (cache)
            ca_cache_sign_ok(cache, mesh_name, m->backends[pc.enabled].name.value);
    }
status:
    if (json_array_size(conditions) == 0)
        json_object_del(mstatus, "conditions");
    if (status_changed && !mr->store_failed) {
        char *text = json_dumps(mstatus, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!text || (rc = queue_write(tx, STATE_MESHSTATUS, mesh_name, mesh_name, text,
                                       mstatus_version, false)) < 0) {
            rc = MESHCA_ENOMEM;
            goto out;
        }
    }
    /* The mesh's one trust bundle (and the cross-signed CA, for roots), when it changed. */
    if (!mr->store_failed && pc.bundle_pem && (rc = queue_bundle(s, mesh_name, &pc, tx, errbuf)) < 0) {
        if (rc == MESHCA_ENOMEM)
            goto out;
        store_failed(rep, mr, rc, mesh_name, errbuf, diags);
    }
    rc = 0;
out:
    free(quick);
    quick_records_free(records, ndps);
    sign_batch_free(&batch);
    free(dps);
    json_decref(mstatus);
    pass_cas_free(&pc);
    return rc;
}

/* The versions a pass computed from: meshes and dataplanes listed before they are loaded, so
 * that a change made while the pass works fails its transaction instead of being overwritten by
 * results computed from the old resources. */
typedef struct pass_fence {
    store_entry *meshes, *dps;
    size_t nmeshes, ndps;
} pass_fence;

static int fence_load(store *s, pass_fence *f)
{
    int rc = store_list(s, STATE_MESHES, NULL, &f->meshes, &f->nmeshes);
    if (rc == 0)
        rc = store_list(s, STATE_DATAPLANES, NULL, &f->dps, &f->ndps);
    /* Only versions are needed: the values are read again by state_load_resources. */
    return rc;
}

static void fence_free(pass_fence *f)
{
    store_entries_free(f->meshes, f->nmeshes);
    store_entries_free(f->dps, f->ndps);
    memset(f, 0, sizeof(*f));
}

static const store_entry *fence_find(const store_entry *e, size_t n, const char *mesh_name,
                                     const char *name)
{
    size_t lo = 0, hi = n;   /* store_list sorts by (mesh, name) */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(e[mid].mesh, mesh_name);
        if (c == 0)
            c = strcmp(e[mid].name, name);
        if (c == 0)
            return &e[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Commits the pass's writes as one transaction (SPEC S6): all or none. When another writer
 * changed one of the objects meanwhile, nothing is written and the whole pass is left to the
 * next one (warning "conflict"); a store failure fails every mesh of the pass. */
static void commit_pass(store *s, pass_txn *tx, const pass_fence *f, reconcile_report *rep,
                        diag_list *diags)
{
    /* Each write, then a check of the Dataplane (or Mesh) it was computed from; each Mesh once. */
    store_op *ops = calloc(2 * tx->n + 1, sizeof(*ops));
    size_t n = 0;
    int rc = ops ? 0 : MESHCA_ENOMEM;
    for (size_t i = 0; ops && i < tx->n; i++) {
        const pass_write *w = &tx->w[i];
        ops[n++] = (store_op){
            .type = w->del ? STORE_OP_DELETE : STORE_OP_PUT,
            .key = {w->kind, w->mesh, w->name},
            .value = w->value,
            .len = w->value ? strlen(w->value) : 0,
            .expected_version = w->version,
        };
        const store_entry *e = NULL;
        const char *kind = NULL;
        if (strcmp(w->kind, STATE_IDENTITIES) == 0) {
            e = fence_find(f->dps, f->ndps, w->mesh, w->name);
            kind = STATE_DATAPLANES;
        } else if (strcmp(w->kind, STATE_BUNDLES) == 0) {
            /* One bundle write per mesh: it fences the Mesh. */
            e = fence_find(f->meshes, f->nmeshes, w->mesh, w->mesh);
            kind = STATE_MESHES;
        }
        if (e && e->version)
            ops[n++] = (store_op){.type = STORE_OP_CHECK, .key = {kind, e->mesh, e->name},
                                  .expected_version = e->version};
    }
    /* Over the store's atomic limit (etcd: --max-txn-ops) the pass commits in parts, each a
     * whole number of (write, its check) pairs: the store would put every check into every part
     * and run out of room. A stop between parts leaves what the next pass recomputes (store.h). */
    size_t limit = store_txn_limit(s);
    for (size_t from = 0, to; ops && rc == 0 && from < n; from = to) {
        for (to = from; to < n;) {
            size_t unit = to + 1 < n && ops[to + 1].type == STORE_OP_CHECK ? 2 : 1;
            if (to > from && to + unit - from > limit)
                break;
            to += unit;
        }
        rc = store_txn_at(s, "pass.commit", ops + from, to - from);
    }
    free(ops);
    if (rc == 0)
        return;
    /* Nothing of this pass was written: what it did is not what the store holds. */
    for (size_t i = 0; i < rep->nactions; i++) {
        free(rep->actions[i].mesh);
        free(rep->actions[i].dataplane);
        free(rep->actions[i].backend);
        free(rep->actions[i].reason);
    }
    free(rep->actions);
    rep->actions = NULL;
    rep->nactions = 0;
    for (size_t i = 0; i < rep->nmeshes; i++) {
        reconcile_mesh_report *mr = &rep->meshes[i];
        mr->skipped += mr->issued + mr->reissued + mr->renewed + mr->rebundled;
        mr->issued = mr->reissued = mr->renewed = mr->rebundled = 0;
    }
    if (rc == STORE_ECONFLICT || rc == STORE_ENOTFOUND) {
        diag_warning(diags, "conflict", NULL, "", "the store changed while this pass worked "
                     "(%s); nothing written, left to the next pass", store_errmsg(s));
        return;
    }
    for (size_t i = 0; i < rep->nmeshes; i++) {
        if (!rep->meshes[i].mtls)
            continue;
        rep->meshes[i].failed = true;
        rep->meshes[i].store_failed = true;
    }
    if (!rep->store_error) {
        rep->store_error = rc;
        snprintf(rep->store_cause, sizeof(rep->store_cause), "%s", store_strerror(rc));
    }
    diag_error(diags, "store-error", NULL, "", "cannot write the pass's changes: %s; retried on the "
               "next pass", rc == MESHCA_ENOMEM ? "out of memory" : store_errmsg(s));
}

int reconcile_once(store *s, const reconcile_options *opts, reconcile_report *ret,
                   diag_list *diags)
{
    int64_t now = opts && opts->now ? opts->now : (int64_t)time(NULL);
    pass_fence fence = {0};
    int frc = fence_load(s, &fence);
    if (frc < 0) {
        fence_free(&fence);
        return frc;
    }
    manifest_set *set = manifest_set_new();
    if (!set) {
        fence_free(&fence);
        return STORE_ENOMEM;
    }
    diag_list load_diags = DIAG_LIST_INIT;
    int rc = state_load_resources(s, NULL, set, &load_diags);
    /* Store objects that do not decode are reported as warnings: they are skipped, not fatal. */
    for (size_t i = 0; i < load_diags.count; i++)
        load_diags.items[i].severity = DIAG_WARNING;
    diag_list_move(diags, &load_diags);
    if (rc < 0) {
        manifest_set_free(set);
        fence_free(&fence);
        return rc;
    }
    reconcile_report rep = RECONCILE_REPORT_INIT;
    pass_txn tx = {0};
    tx.opts = opts;
    for (size_t i = 0; opts && opts->progress && i < manifest_set_count(set); i++)
        tx.total += manifest_set_get(set, i)->kind == RESOURCE_DATAPLANE;
    for (size_t i = 0; i < manifest_set_count(set) && rc == 0; i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind != RESOURCE_MESH || !res->u.mesh.name.value)
            continue;
        rc = reconcile_mesh(s, set, &res->u.mesh, now, opts ? opts->sign_workers : 0,
                            opts ? opts->ca_cache : NULL, &tx, &rep, diags);
    }
    manifest_set_free(set);
    if (rc == 0 && tx.n)
        commit_pass(s, &tx, &fence, &rep, diags);
    /* Every mesh had its turn: CAs of meshes gone from the store leave the cache. */
    if (rc == 0 && !rep.store_error && opts && opts->ca_cache)
        ca_cache_sweep(opts->ca_cache);
    pass_txn_free(&tx);
    fence_free(&fence);
    if (rc < 0) {
        reconcile_report_free(&rep);
        return rc;
    }
    for (size_t i = 0; i < rep.nmeshes; i++) {
        const reconcile_mesh_report *mr = &rep.meshes[i];
        rep.issued += mr->issued;
        rep.reissued += mr->reissued;
        rep.renewed += mr->renewed;
        rep.rebundled += mr->rebundled;
        rep.unchanged += mr->unchanged;
        rep.awaiting += mr->awaiting;
        rep.failed_meshes += mr->failed;
        rep.store_failures += mr->store_failed;
    }
    *ret = rep;
    return 0;
}

int reconcile_submit_key(store *s, const char *mesh_name, const char *dp_name,
                         const unsigned char *spki, size_t spki_len, const char *csr_pem,
                         char *errbuf)
{
    EVP_PKEY *pub = NULL;
    char *pem = NULL, *csr = NULL;
    int rc = pki_pubkey_from_der(spki, spki_len, &pub, errbuf);
    if (rc < 0)
        return rc;
    rc = pki_pubkey_to_pem(pub, &pem, errbuf);
    EVP_PKEY_free(pub);
    if (rc < 0)
        return rc;
    if (csr_pem && !(csr = strdup(csr_pem))) {
        free(pem);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    }
    /* Only a dataplane that exists gets an identity. */
    store_key dkey = {STATE_DATAPLANES, mesh_name, dp_name};
    rc = state_object_version(s, &dkey, NULL);
    if (rc < 0) {
        free(pem);
        free(csr);
        return rc == STORE_ENOTFOUND
                   ? meshca_fail(errbuf, MESHCA_ENOTFOUND, "no dataplane '%s' in mesh '%s'",
                                 dp_name, mesh_name)
                   : meshca_fail(errbuf, rc, "cannot read dataplane '%s/%s': %s", mesh_name,
                                 dp_name, store_strerror(rc));
    }
    rc = STORE_ECONFLICT;
    for (int attempt = 0; attempt < 8 && rc == STORE_ECONFLICT; attempt++) {
        identity id = {0};
        uint64_t version = 0;
        rc = identity_read(s, mesh_name, dp_name, &id, &version, errbuf);
        if (rc == STORE_ENOTFOUND || rc == MESHCA_ECORRUPT) {
            /* A corrupt record is replaced, as the pass would (its version still checked). */
            if (rc == STORE_ENOTFOUND)
                version = 0;
            else if (state_object_version(s, &(store_key){STATE_IDENTITIES, mesh_name, dp_name}, &version) < 0)
                version = STORE_ANY_VERSION;
            identity_clear(&id);
            rc = set_str(&id.mesh, mesh_name) < 0 || set_str(&id.dataplane, dp_name) < 0
                     ? MESHCA_ENOMEM
                     : 0;
        }
        if (rc == 0) {
            free(id.pending_key_pem);
            free(id.pending_csr_pem);
            id.pending_key_pem = strdup(pem);
            id.pending_csr_pem = csr ? strdup(csr) : NULL;
            rc = !id.pending_key_pem || (csr && !id.pending_csr_pem)
                     ? MESHCA_ENOMEM
                     : identity_put(s, &id, version, NULL);
        }
        identity_clear(&id);
    }
    free(pem);
    free(csr);
    if (rc < 0 && rc != MESHCA_ENOMEM)
        return meshca_fail(errbuf, rc, "cannot store the key of '%s/%s': %s", mesh_name, dp_name,
                           store_strerror(rc));
    return rc < 0 ? meshca_fail(errbuf, rc, "out of memory") : 0;
}
