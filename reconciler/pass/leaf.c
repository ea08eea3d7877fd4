/* leaf.c - one dataplane in a pass: what must change, the leaf request, the signed leaf recorded in its identity. */
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
#include "reconciler/pass/pass.h"
#include "reconciler/reconcile.h"
#include "reconciler/sign_pool.h"
#include "reconciler/state.h"
#include "reconciler/store/identity_json.h"
#include "reconciler/store/identity_peek.h"

/* Replaces *dst with a copy of s ("" for NULL). Returns 0 or MESHCA_ENOMEM (*dst unchanged). */
int pass_set_str(char **dst, const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        return MESHCA_ENOMEM;
    free(*dst);
    *dst = d;
    return 0;
}

/* The identity's tags in one canonical string: sorted "key=value" joined by newlines. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Returns the digest (caller frees) or NULL when out of memory. */
char *pass_tags_digest(const dataplane *dp)
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
        if ((olen && pass_append(&out, &olen, "\n") < 0) || pass_append(&out, &olen, items[i]) < 0)
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

static int add_action(reconcile_report *rep, const char *mesh_name, const identity *id,
                      reconcile_verb verb, const char *reason)
{
    reconcile_action *a = realloc(rep->actions, (rep->nactions + 1) * sizeof(*a));
    if (!a)
        return MESHCA_ENOMEM;
    rep->actions = a;
    a = &rep->actions[rep->nactions];
    memset(a, 0, sizeof(*a));
    if (pass_set_str(&a->mesh, mesh_name) < 0 || pass_set_str(&a->dataplane, id->dataplane) < 0 ||
        pass_set_str(&a->backend, id->backend) < 0 || pass_set_str(&a->reason, reason) < 0) {
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
int64_t pass_leaf_lifetime_s(const mesh_backend *b)
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
int pass_issue_request(const mesh *m, const dataplane *dp, const pass_cas *pc, bool rsa,
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
    req->lifetime_s = pass_leaf_lifetime_s(&m->backends[pc->enabled]);
    return 0;
}

/* The enabled CA could not sign for dp (code r): reported; the mesh stops. */
int pass_sign_refused(const mesh *m, const dataplane *dp, const pass_cas *pc, int r,
                      const char *why, diag_list *diags)
{
    char path[64];
    pass_backend_path(pc->enabled, path, sizeof(path));
    diag_error(diags, r == PKI_EEXPIRED ? "ca-expired" : "ca-unavailable", NULL, path,
               "mesh '%s': backend '%s' could not sign for '%s': %s", m->name.value,
               m->backends[pc->enabled].name.value, dp->name.value,
               why && why[0] ? why : meshca_strerror(r));
    return ISSUE_REFUSED;
}

/* Records a signed leaf in *id (keeping generation/regeneration counters); takes cert_pem and
 * digest (dp's pass_tags_digest, already computed by the pass; NULL: computed here).
 * Returns 0 or MESHCA_ENOMEM. */
int pass_issue_store(const mesh *m, const dataplane *dp, const pass_cas *pc, int64_t now,
                     identity *id, bool rsa, char *cert_pem, const char *serial, int64_t nb,
                     int64_t na, char *digest)
{
    const mesh_backend *b = &m->backends[pc->enabled];
    char when[32], stable[600];
    size_t clen = strlen(cert_pem);
    int r = MESHCA_ENOMEM;
    /* The cross-signed CA goes before the backend's own intermediates: it has the same subject
     * as the first of them, and OpenSSL takes the first matching issuer from the chain it is
     * sent, so a dataplane that trusts only the old CA must meet the cross-signed one first.
     * A dataplane with the new bundle finds the intermediate among its trusted certificates. */
    if ((pc->cross_pem && pass_append(&cert_pem, &clen, pc->cross_pem) < 0) ||
        pass_append(&cert_pem, &clen, pc->chain_extra_pem) < 0 ||
        (!digest && !(digest = pass_tags_digest(dp))) ||
        pass_set_str(&id->backend, b->name.value) < 0 ||
        pass_set_str(&id->serial, serial) < 0 ||
        pass_set_str(&id->ca_fingerprint, pc->cas[pc->enabled].fingerprint) < 0)
        goto out;
    pki_format_time(now, when, sizeof(when));
    if (pass_set_str(&id->last_regeneration, when) < 0)
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
int pass_issue(const mesh *m, const dataplane *dp, const pass_cas *pc, int64_t now, identity *id,
               EVP_PKEY *pub, diag_list *diags)
{
    char *uris[PKI_MAX_SANS];
    pki_leaf_request req;
    int r = pass_issue_request(m, dp, pc, strcmp(pki_key_type(pub), "rsa") == 0, uris, &req, diags);
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
        return pass_sign_refused(m, dp, pc, r, errbuf, diags);
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
        r = pass_issue_store(m, dp, pc, now, id, req.rsa, cert_pem, serial, nb, na, NULL);
    }
    X509_free(cert);
    return r;
}

/* Why a dataplane's identity must change, or NULL. *ret_verb says how; *ret_ask = ASK_RENEW
 * when the change is the agent's to make (a fresh key and CSR): the controller only moves
 * renewAt forward (S5: renewal is a new key, which never leaves the dataplane). */
const char *pass_why_change(const mesh *m, const pass_cas *pc, const identity *id,
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
    if (id->not_after > now + pass_leaf_lifetime_s(b) + PKI_LEAF_BACKDATE_S) {
        *ret_ask = ASK_RENEW;
        return "dpCert expiration shortened: the certificate outlives the new lifetime";
    }
    if (!str_eq(id->bundle_digest, pc->bundle_digest) || !same_backends(id, pc)) {
        *ret_verb = RECONCILE_REBUNDLED;
        return "trust bundle changed";
    }
    return NULL;
}

/* The pending key is used up: signed (r == 0: it becomes the key held), or refused until a new
 * CSR (ISSUE_SKIPPED). */
void pass_pending_done(identity *id, int r)
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

/* The clock a leaf for *id is signed at: the pass's now, or the record's since when that is
 * later (a first CSR committed after the pass read its clock, or by a replica whose clock is
 * ahead): a notBefore below since less the backdating is one identity_since.c refuses, and the
 * new host's own certificate would be refused. Not when since is more than the backdating
 * ahead of this host's clock: that certificate would start in the future (a replica's clock
 * far off; doc/api.md asks for them within the minute). */
int64_t pass_sign_time(const identity *id, int64_t now)
{
    if (id->since <= now || id->since > (int64_t)time(NULL) + PKI_LEAF_BACKDATE_S)
        return now;
    return id->since;
}

/* Signs a pending key (the agent's CSR): 0 with *id filled, ISSUE_DEFERRED (*id moved into the
 * batch), ISSUE_SKIPPED, ISSUE_REFUSED or MESHCA_ENOMEM. A pending key of the wrong type
 * (keyType changed after the CSR) is dropped: the agent sends another. */
int pass_sign_pending(const mesh *m, const dataplane *dp, const pass_cas *pc, int64_t now,
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
        r = sign_batch_defer(batch, m, dp, pc, id, version, verb, reason, true, true, spki,
                             spki_len, rsa, NULL, diags);   /* takes spki */
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
            r = pass_issue(m, dp, pc, pass_sign_time(id, now), id, pub, diags);
        }
        EVP_PKEY_free(pub);
    }
    free(spki);
    pass_pending_done(id, r);
    return r;
}

/* A pending key refused (or used up without a certificate): nothing issued yet means no record
 * until the next CSR; else the record stays without its pending key. Clears *id. */
int pass_pending_skipped(pass_txn *tx, const char *mesh_name, const char *dp_name,
                         identity *id, uint64_t version, reconcile_mesh_report *mr, char *errbuf)
{
    mr->skipped++;
    int rc = id->generation > 0 ? pass_queue_identity(tx, id, version)
                                : pass_queue_write(tx, STATE_IDENTITIES, mesh_name, dp_name, NULL,
                                                   version, true);
    identity_clear(id);
    return rc < 0 ? meshca_fail(errbuf, rc, "out of memory") : 0;
}

/* Writes what a pass decided for one dataplane (rc: 0, ISSUE_SKIPPED or ISSUE_REFUSED from its
 * signing) and reports it. Clears *id. Returns 0, ISSUE_REFUSED or MESHCA_ENOMEM (errbuf). */
int pass_finish_dataplane(const char *mesh_name, const pass_cas *pc, identity *id,
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
    rc = pass_queue_identity(tx, id, version);
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
