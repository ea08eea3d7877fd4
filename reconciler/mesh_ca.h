/* mesh_ca.h - the CAs of a mesh opened read-only, for describing them (inspect, roots). */
#ifndef MESHCA_MESH_CA_H
#define MESHCA_MESH_CA_H

#include <stddef.h>
#include <stdint.h>

#include "manifests/model.h"
#include "reconciler/ca_backend.h"
#include "reconciler/store.h"

typedef struct mesh_ca {
    const mesh_backend *backend;   /* borrowed from the mesh */
    ca_backend *ca;                /* NULL when it could not be opened (see error) */
    char *chain_pem;               /* signing CA first */
    char *bundle_pem;              /* what the trust bundle takes (ca_backend_bundle_pem) */
    char subject[256];
    char fingerprint[64];
    int64_t not_after;
    char error[PKI_ERRBUF];        /* why ca is NULL, e.g. "not created yet" */
    int code;                      /* why ca is NULL, a MESHCA_* code; 0 when it is open */
    bool borrowed;                 /* ca belongs to a ca_cache: mesh_cas_free leaves it */
} mesh_ca;

/* Opens every backend of `m` without creating anything (a builtin CA the controller has not
 * generated yet is reported in `error`). Returns 0 and an array of m->nbackends entries
 * (caller frees with mesh_cas_free) or a negative PKI_* code. */
int mesh_cas_open(store *s, const mesh *m, int64_t now, mesh_ca **ret);
/* The same for the controller's reconcile pass: also creates what a backend creates on first
 * use (a builtin root, kept as mesh secrets). */
int mesh_cas_open_creating(store *s, const mesh *m, int64_t now, mesh_ca **ret);
/* The same through a cache kept across passes (reconciler/ca/ca_cache.h): the CAs are the
 * cache's (borrowed until its next open of the same backend). */
struct ca_cache;
int mesh_cas_open_cached(store *s, const mesh *m, int64_t now, struct ca_cache *cache,
                         mesh_ca **ret);
void mesh_cas_free(mesh_ca *cas, size_t n);

#endif
