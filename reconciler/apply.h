/* apply.h - checking a set of resources against the store (S4 gating, CA checks) and storing it
 * all or nothing. Used by `meshca apply` and by `meshca run --manifests`. */
#ifndef MESHCA_APPLY_H
#define MESHCA_APPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "manifests/manifest.h"
#include "reconciler/store.h"

typedef struct apply_options {
    bool dry_run;       /* every check, nothing stored */
    bool force;         /* lets R3/R4 gating and R6 through, recorded in the mesh status */
    bool cross_sign;    /* with force: a forced switch cross-signs (the default) */
    int64_t now;        /* clock, seconds; 0 = time(NULL) */
} apply_options;

#define APPLY_OPTIONS_INIT {false, false, true, 0}

/* What happened to one resource: "created", "configured" or "unchanged". */
typedef struct apply_change {
    const resource *res;    /* borrowed from the applied set */
    const char *what;       /* static string */
} apply_change;

/* The outcome for one Mesh of the set. */
typedef struct apply_mesh_result {
    const char *mesh;       /* borrowed from the applied set */
    unsigned steps;         /* transition_step bitmask */
    bool refused;
    bool waiting_only;      /* refused only until dataplanes catch up (R3/R4 gating) */
    char *reason;           /* first refusal message, or NULL; owned */
} apply_mesh_result;

typedef struct apply_result {
    bool refused;           /* nothing was stored */
    bool waiting_only;      /* every refusal is R3/R4 gating: the same set may pass later */
    apply_change *changes;  /* one per resource when not refused */
    size_t nchanges;
    apply_mesh_result *meshes;
    size_t nmeshes;
} apply_result;

/* Checks `next` (every resource: static rules, transitions against the store with the stored
 * dataplane status, CA backends) and stores it in one transaction with compare-and-swap on
 * what was read, unless refused or dry_run. Diagnostics go to `diags`. Returns 0 (see
 * ret->refused) or a negative STORE_* code (STORE_ECONFLICT: the store changed meanwhile). */
int apply_set(store *s, const manifest_set *next, const apply_options *opts, diag_list *diags,
              apply_result *ret);
void apply_result_free(apply_result *result);

/* "add 'ca-2'", "switch to 'ca-2'", ... of a Mesh's change, for the pending record. Caller frees. */
char *apply_describe_steps(unsigned steps);

#endif
