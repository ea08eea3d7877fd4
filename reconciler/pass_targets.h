/* pass_targets.h - the (mesh, dataplane) pairs the API wrote since the controller's last pass, which a targeted pass visits alone. */
#ifndef MESHCA_PASS_TARGETS_H
#define MESHCA_PASS_TARGETS_H

#include <stddef.h>

#include "manifests/diag.h"
#include "manifests/manifest.h"
#include "reconciler/store.h"

/* Past this many pairs a full pass costs less than the lookups: the caller runs one instead. */
#define PASS_TARGETS_MAX 4096

typedef struct pass_target {
    char *mesh;
    char *dataplane;
} pass_target;

typedef struct pass_targets {
    pass_target *items;
    size_t n, cap;
} pass_targets;

#define PASS_TARGETS_INIT {NULL, 0, 0}

/* Adds a pair (duplicates are dropped by pass_targets_load). 0 or MESHCA_ENOMEM (nothing added). */
int pass_targets_add(pass_targets *t, const char *mesh_name, const char *dp_name);

/* Moves every pair of from into to (from emptied); to's pairs are freed first. */
void pass_targets_take(pass_targets *to, pass_targets *from);

/* Frees the pairs; the struct stays usable (empty). */
void pass_targets_clear(pass_targets *t);

/*
 * Sorts and de-duplicates t, then loads into set the Mesh of each mesh named and each pair's
 * Dataplane (absent ones skipped), one store read each, and returns their versions as fence
 * entries sorted by (mesh, name) as store_list gives them (*ret_meshes, *ret_dps: values NULL;
 * caller frees with store_entries_free). Objects that do not decode are in diags as
 * state_load_resources reports them. 0, a STORE_* code, or MESHCA_ENOMEM.
 */
int pass_targets_load(store *s, pass_targets *t, manifest_set *set, store_entry **ret_meshes,
                      size_t *ret_nmeshes, store_entry **ret_dps, size_t *ret_ndps,
                      diag_list *diags);

/* One stored resource (kind STATE_MESHES or STATE_DATAPLANES) decoded into set, as
 * state_load_resources would: absent is 0 with nothing added. For the API's look-ups of one
 * Mesh, which must not cost every Dataplane of it. */
int pass_targets_load_object(store *s, const char *kind, const char *mesh_name, const char *name,
                             manifest_set *set, diag_list *diags);

#endif
