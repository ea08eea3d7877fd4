/* validators.h - pure checks: static rules of one resource (S2) and rotation transitions (S4).
 * No I/O: every function takes values and appends diagnostics. */
#ifndef MESHCA_VALIDATORS_H
#define MESHCA_VALIDATORS_H

#include <stdbool.h>
#include <stddef.h>

#include "manifests/diag.h"
#include "manifests/manifest.h"
#include "manifests/model.h"
#include "manifests/status.h"

/* Static rules of S2 for one resource: names, duplicates within the resource, enabledBackend
 * exists, backend types and modes, each type's conf (unknown conf fields with did-you-mean,
 * datasources), durations, keyType, Dataplane service tags, Secret fields. */
void validate_mesh(const mesh *m, diag_list *out);
void validate_dataplane(const dataplane *dp, diag_list *out);
void validate_secret(const secret *s, diag_list *out);
void validate_resource(const resource *res, diag_list *out);

/* Static rules over a whole set: every resource, plus cross-resource rules (duplicate resource
 * names of one kind in one mesh). */
void validate_set(const manifest_set *set, diag_list *out);

/* For a mesh name given on a command line (-m): NULL when it is a valid Mesh name (a DNS label
 * of at most MODEL_MAX_NAME_LEN characters), else a static one-line reason to show after it. */
const char *validate_mesh_name_problem(const char *name);

/* The backend types the manifests accept (SPEC S2), NULL-terminated. */
extern const char *const validate_backend_types[];

/* Steps of a transition P -> N, in rotation order. */
typedef enum transition_step {
    STEP_CREATE = 1 << 0,          /* R1: no P */
    STEP_ENABLE = 1 << 1,          /* mTLS off -> on */
    STEP_ADD = 1 << 2,             /* R2 */
    STEP_CHANGE = 1 << 3,          /* R5: backend changed in place */
    STEP_SWITCH = 1 << 4,          /* R3 */
    STEP_REMOVE = 1 << 5,          /* R4 */
    STEP_DISABLE = 1 << 6,         /* R6 */
} transition_step;

typedef struct transition_options {
    bool force;                    /* lets R3/R4 gating and R6 through */
    bool have_status;              /* false: propagation/in-use checks cannot be made */
    /* The status is a snapshot given offline (validate --status FILE), not the store's own:
     * one that holds none of a mesh's dataplanes may be of another store, so a switch or a
     * removal checked against no dataplane at all is warned about (status-unknown). */
    bool status_snapshot;
    /* Backends whose CA changed although type and conf did not (a Secret they read now holds
     * another CA): checked as an in-place change (R5) like a conf change. Borrowed; may be NULL. */
    const char *const *ca_changed;
    size_t nca_changed;
} transition_options;

#define TRANSITION_OPTIONS_INIT {false, false, false, NULL, 0}

/* Dataplanes named in transition_result.bypassed; the rest are only counted. */
#define TRANSITION_MAX_BYPASSED 32

typedef struct transition_result {
    unsigned steps;                /* bitmask of transition_step */
    bool refused;                  /* at least one error */
    bool waiting_only;             /* refused only by R3 propagation / R4 in-use: may pass later */
    bool forced;                   /* --force let a gating refusal through */
    unsigned forced_steps;         /* which: STEP_SWITCH, STEP_REMOVE or STEP_DISABLE */
    /* The dataplanes the force went past: a forced switch, those not trusting the new backend;
     * a forced removal, those holding its certificates; a forced disable, every dataplane of the
     * mesh. Names borrowed from the `status` and `dataplanes` arguments. */
    const char *bypassed[TRANSITION_MAX_BYPASSED];
    size_t nbypassed;              /* entries of bypassed */
    size_t nbypassed_total;        /* all of them, named or not */
} transition_result;

/* Checks the transition of one mesh from `prev` (NULL: create) to `next` given the status of the
 * dataplanes of that mesh (`status` entries of other meshes are ignored). Appends diagnostics
 * with the codes of S4 (switch-not-added, switch-drops-old, switch-not-propagated,
 * remove-enabled, remove-still-in-use, backend-changed-in-place, disable-mtls, multi-step,
 * status-unknown) marked at the relevant field of `next`. `dataplanes`: the dataplanes of the
 * mesh that exist (a dataplane in the set but absent from status never acknowledged anything).
 * May be NULL/0 when only the status is known. */
void validate_transition(const mesh *prev, const mesh *next, const dataplane_status *status,
                         size_t nstatus, const dataplane *const *dataplanes, size_t ndataplanes,
                         const transition_options *opts, diag_list *out,
                         transition_result *ret_result);

/* Lifetime lint (warnings, doc/diagnostics.md). */

/* A CA expiring within this many seconds gets ca-expires-soon. */
#define LIFETIME_EXPIRING_S (30 * 86400LL)
/* A leaf is renewed at the earliest at this percentage of its lifetime (pki_renewal_point). */
#define LIFETIME_RENEWAL_PERCENT 70

/* From the manifest alone: a builtin backend whose conf.caCert.expiration (default 10y) is
 * shorter than its dpCert.rotation.expiration (default 24h): ca-shorter-than-leaf, at the
 * caCert.expiration value. Part of validate_mesh(). */
void validate_lifetime_conf(const mesh *m, diag_list *out);

/* Checks the `conf` tree of backend number `index` against the schema of its type (conf.c;
 * part of validate_mesh()). Does nothing for an unknown type: the mesh's checks report that.
 * apply uses it alone to leave a conf with static errors out of the CA backend checks. */
void validate_backend_conf(const mesh_backend *b, size_t index, diag_list *out);

/* From a known CA certificate: backend `index` of `m` has a CA that expires at `ca_not_after`
 * (seconds since the epoch; the caller reads it, this stays pure), checked at `now`. One warning
 * at most, the worst: ca-expired (already expired), renewal-after-ca-expiry (it expires before
 * the earliest renewal point of a leaf issued now), ca-expires-soon (within
 * LIFETIME_EXPIRING_S). */
void validate_ca_lifetime(const mesh *m, size_t index, int64_t ca_not_after, int64_t now,
                          diag_list *out);

/* "add", "switch", ... for messages. */
const char *transition_step_name(transition_step step);

#endif
