/* apply.h - checking a set of resources against the store (S4 gating, CA checks) and storing it
 * all or nothing. Used by `meshca apply` and by `meshca run --manifests`. */
#ifndef MESHCA_APPLY_H
#define MESHCA_APPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "manifests/manifest.h"
#include "manifests/status.h"
#include "reconciler/store.h"

typedef struct apply_options {
    bool dry_run;       /* every check, nothing stored */
    bool force;         /* lets R3/R4 gating and R6 through, recorded in the mesh status */
    bool cross_sign;    /* with force: a forced switch cross-signs (the default) */
    int64_t now;        /* clock, seconds; 0 = time(NULL) */
    /* `validate --store`: the Meshes as last applied come from these manifests (--from)
     * instead of the store, and the dataplane status from this snapshot (--status) instead of
     * the store. Borrowed; NULL = the store's. Only with dry_run. */
    const manifest_set *prev;
    const status_set *status;
    /* Called once per resource as apply prepares it (done of total), for a progress display;
     * may be NULL. Never called with a store transaction open. */
    void (*progress)(void *userdata, size_t done, size_t total);
    void *progress_userdata;
} apply_options;

#define APPLY_OPTIONS_INIT {false, false, true, 0, NULL, NULL, NULL, NULL}

/* How often apply re-reads and re-checks everything when only what it does not write (the
 * dataplane status, the mesh status) changed under it. */
#define APPLY_MAX_ATTEMPTS 5

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

/* Checks `next` (every resource: static rules, a Dataplane's mesh exists, transitions against
 * the store with the stored dataplane status, CA backends and what they can sign, every backend
 * whose CA a changed Secret replaces) and stores it, with the force log of a forced step, in one
 * transaction, unless refused or dry_run. The transaction is compare-and-swap on the versions
 * read before checking, so a change made meanwhile by someone else is never overwritten.
 * A value that `get` printed as ENCODE_REDACTED is replaced in `next` by the stored value (or
 * refused with "redacted-value" when there is none). Diagnostics go to `diags`.
 * Returns 0 (see ret->refused) or a negative code: STORE_ECONFLICT (a resource of `next` was
 * changed meanwhile; a "conflict" diagnostic names it; nothing stored), or a store error. */
int apply_set(store *s, manifest_set *next, const apply_options *opts, diag_list *diags,
              apply_result *ret);
void apply_result_free(apply_result *result);

/* "add 'ca-2'", "switch to 'ca-2'", ... of a Mesh's change, for the pending record. Caller frees. */
char *apply_describe_steps(unsigned steps);

#endif
