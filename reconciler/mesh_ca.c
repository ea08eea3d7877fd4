/* mesh_ca.c - the CAs of a mesh opened read-only, for describing them (inspect, roots). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "reconciler/mesh_ca.h"
#include "reconciler/ca/ca_cache.h"
#include "reconciler/state.h"

static void describe(mesh_ca *mc)
{
    X509 *cert = ca_backend_cert(mc->ca);
    if (!cert)
        return;
    X509_NAME_oneline(X509_get_subject_name(cert), mc->subject, sizeof(mc->subject));
    pki_fingerprint_sha1(cert, mc->fingerprint, sizeof(mc->fingerprint));
    pki_cert_not_after(cert, &mc->not_after);
}

static int open_all(store *s, const mesh *m, int64_t now, bool create, ca_cache *cache,
                    mesh_ca **ret)
{
    mesh_ca *cas = calloc(m->nbackends + 1, sizeof(*cas));
    if (!cas)
        return PKI_ENOMEM;
    state_secrets secrets = {s, m->name.value, NULL};
    for (size_t i = 0; i < m->nbackends; i++) {
        mesh_ca *mc = &cas[i];
        ca_context ctx = {
            .mesh = m->name.value, .backend = &m->backends[i], .backend_index = i,
            .secret_lookup = state_secret_lookup,
            .secret_store = create ? state_secret_store : NULL,
            .secret_userdata = &secrets, .now = now,
        };
        mc->backend = &m->backends[i];
        mc->borrowed = cache != NULL;
        mc->code = cache ? ca_cache_open(cache, &ctx, &mc->ca, mc->error)
                         : ca_backend_open(&ctx, &mc->ca, mc->error);
        if (mc->code < 0) {
            mc->ca = NULL;
            continue;
        }
        if (ca_backend_chain_pem(mc->ca, &mc->chain_pem, mc->error) < 0)
            mc->chain_pem = NULL;
        if (mc->chain_pem && ca_backend_bundle_pem(mc->ca, &mc->bundle_pem, mc->error) < 0) {
            free(mc->chain_pem);
            mc->chain_pem = mc->bundle_pem = NULL;
        }
        describe(mc);
    }
    *ret = cas;
    return 0;
}

int mesh_cas_open(store *s, const mesh *m, int64_t now, mesh_ca **ret)
{
    return open_all(s, m, now, false, NULL, ret);
}

int mesh_cas_open_creating(store *s, const mesh *m, int64_t now, mesh_ca **ret)
{
    return open_all(s, m, now, true, NULL, ret);
}

int mesh_cas_open_cached(store *s, const mesh *m, int64_t now, ca_cache *cache, mesh_ca **ret)
{
    return open_all(s, m, now, true, cache, ret);
}

void mesh_cas_free(mesh_ca *cas, size_t n)
{
    if (!cas)
        return;
    for (size_t i = 0; i < n; i++) {
        if (!cas[i].borrowed)
            ca_backend_free(cas[i].ca);
        free(cas[i].chain_pem);
        free(cas[i].bundle_pem);
    }
    free(cas);
}
