/* cas.c - a mesh's pass: its CAs opened, its trust bundle, the forced switch's cross-signed CA, the BackendUnavailable conditions. */
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

/* Mesh status condition for a backend left out of the pass (reported, not fatal to the mesh). */
#define CONDITION_BACKEND_UNAVAILABLE "BackendUnavailable"

/* Store trouble rather than a problem of the CA itself. */
static bool is_store_code(int rc)
{
    return rc == MESHCA_EIO || rc == MESHCA_EUNAVAILABLE || rc == MESHCA_ENOMEM;
}

void pass_cas_free(pass_cas *pc)
{
    mesh_cas_free(pc->cas, pc->ncas);
    free(pc->bundle_pem);
    free(pc->bundle_backends);
    free(pc->chain_extra_pem);
    free(pc->cross_pem);
    memset(pc, 0, sizeof(*pc));
}

int pass_append(char **buf, size_t *len, const char *text)
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

void pass_backend_path(size_t i, char *buf, size_t size)
{
    snprintf(buf, size, "mtls.backends[%zu]", i);
}

/* Records (or clears, reason NULL) the BackendUnavailable condition of `backend` in `conditions`
 * (a JSON array of {"type","backend","reason"}). Returns whether it changed. */
bool pass_set_condition(json_t *conditions, const char *backend, const char *reason)
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
int pass_open_cas(store *s, const mesh *m, int64_t now, ca_cache *cache, pass_cas *pc,
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
                pass_backend_path(i, path, sizeof(path));
                diag_warning(diags, "ca-unavailable", NULL, path, "mesh '%s': backend '%s': %s",
                             mesh_name, name, warning);
            }
            /* The enabled backend's condition is settled once it has signed (reconcile_mesh). */
            if (warning || i != pc->enabled)
                *ret_conditions_changed |= pass_set_condition(conditions, name, warning);
            continue;
        }
        int code = mc->code < 0 ? mc->code : MESHCA_ECRYPTO;
        /* A remote CA (Vault) unreachable is the CA's trouble, reported on this mesh only. */
        if (is_store_code(code) &&
            (code == MESHCA_ENOMEM || !ca_backend_type_is_remote(m->backends[i].type.value)))
            return code;
        pass_backend_path(i, path, sizeof(path));
        /* A remote CA that does not answer now is not dropped from the bundle (every dataplane
         * would stop trusting it): the mesh waits, as for store trouble. */
        bool transient = code == MESHCA_EUNAVAILABLE || code == MESHCA_EIO;
        if (i == pc->enabled || transient) {
            diag_error(diags, code == PKI_EEXPIRED ? "ca-expired" : "ca-unavailable", NULL, path,
                       "mesh '%s': backend '%s' cannot be used: %s", mesh_name, name,
                       mc->error[0] ? mc->error : meshca_strerror(code));
            /* The mesh status says why nothing is signed (inspect shows the whole message). */
            *ret_conditions_changed |= pass_set_condition(
                conditions, name, diags->count ? diags->items[diags->count - 1].message : "");
            return ISSUE_REFUSED;
        }
        diag_warning(diags, code == PKI_EEXPIRED ? "ca-expired" : "ca-unavailable", NULL, path,
                     "mesh '%s': backend '%s' cannot be used and is left out of the trust bundle: "
                     "%s; enabled backend '%s' keeps signing", mesh_name, name,
                     mc->error[0] ? mc->error : meshca_strerror(code), enabled);
        *ret_conditions_changed |= pass_set_condition(
            conditions, name, mc->error[0] ? mc->error : meshca_strerror(code));
    }
    /* Never sign with an expired or not-yet-valid CA. */
    ca_info info;
    if (ca_backend_info(pc->cas[pc->enabled].ca, &info) < 0 || now < info.not_before ||
        now >= info.not_after) {
        pass_backend_path(pc->enabled, path, sizeof(path));
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
    r = ca_cache_bundle(cache, mesh_name, enabled, chains, pc->nbundle, &pc->bundle_pem, errbuf);
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
        r = pass_append(&pc->chain_extra_pem, &elen, pem);
        free(pem);
        if (r < 0)
            return r;
    }
    return 0;
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

/* Forced switch (S5): while the mesh status holds crossSign {from, to} with `to` enabled and a
 * dataplane does not trust `to` yet, leaves carry `to` re-signed by `from`'s key (pc->cross_pem).
 * Returns whether the flag is set (1), 0, or MESHCA_ENOMEM. */
int pass_prepare_cross_sign(store *s, const mesh *m, const dataplane *const *dps, size_t ndps,
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
    int64_t lifetime_s = pass_leaf_lifetime_s(&m->backends[pc->enabled]);
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
int pass_queue_bundle(store *s, const char *mesh_name, const pass_cas *pc, pass_txn *tx,
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
    return pass_queue_write(tx, STATE_BUNDLES, mesh_name, mesh_name, text, version, false);
}
