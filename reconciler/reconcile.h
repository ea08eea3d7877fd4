/* reconcile.h - one reconcile pass: every mTLS mesh's dataplanes get a current leaf and trust bundle. */
#ifndef MESHCA_RECONCILE_H
#define MESHCA_RECONCILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifests/diag.h"
#include "manifests/error.h"
#include "reconciler/store.h"

/* A cross-signed CA expires at most this long after the last leaf it is served with (S5). */
#define RECONCILE_CROSS_SIGN_SLACK_S (7 * 86400LL)

struct ca_cache;
typedef struct reconcile_options {
    int64_t now;   /* injected clock, seconds since the epoch; 0 = time(NULL) */
    /* Called after each dataplane of an mTLS mesh was handled (done of total, every mesh's
     * dataplanes), for a progress display; may be NULL. Called on the caller's thread. */
    void (*progress)(void *userdata, size_t done, size_t total);
    void *progress_userdata;
    /* Threads that sign a pass's leaves for a CA whose key is local (sign_pool.c); 0: the
     * online CPUs. */
    unsigned sign_workers;
    /* The controller's opened CAs across passes (reconciler/ca/ca_cache.h), or NULL: every CA is
     * opened for this pass only (`reconcile --once`). With a cache, a failing CA is retried with
     * backoff rather than every pass. */
    struct ca_cache *ca_cache;
    /* A targeted pass (reconciler/pass_targets.h), or NULL: every dataplane of every mesh.
     * Targeted, the pass reads and decides only these dataplanes (their Dataplane, identity,
     * the Mesh and its CAs) and writes only their identities; when it cannot decide alone (the
     * mesh's bundle or status would change, a forced switch is under way) it writes nothing
     * and runs a full pass instead (report->targeted false). Sorted and de-duplicated in place. */
    struct pass_targets *targets;
} reconcile_options;

#define RECONCILE_OPTIONS_INIT {0, NULL, NULL, 0, NULL, NULL}

/* What a pass did to one dataplane. */
typedef enum reconcile_verb {
    RECONCILE_ISSUED = 0,   /* first certificate */
    RECONCILE_REISSUED,     /* new certificate: backend, CA, tags or keyType changed */
    RECONCILE_RENEWED,      /* new certificate: past the renewal point */
    RECONCILE_REBUNDLED,    /* same certificate, new trust bundle */
} reconcile_verb;

/* "issued", "reissued", "renewed", "rebundled" (static). */
const char *reconcile_verb_name(reconcile_verb verb);

/* One change written to the store. Strings owned by the report. */
typedef struct reconcile_action {
    char *mesh;
    char *dataplane;
    char *backend;        /* signing backend */
    char *reason;         /* why, e.g. "tags changed"; static text copied */
    reconcile_verb verb;
    int64_t not_after;    /* of the certificate */
    long long generation; /* of the identity written */
} reconcile_action;

/* Counts for one mesh. */
typedef struct reconcile_mesh_report {
    char *mesh;
    bool mtls;            /* false: mTLS off, nothing done */
    bool failed;          /* a CA could not be used: see diags (code "ca-expired", "ca-unavailable") */
    bool store_failed;    /* the store failed under this mesh's pass (diag "store-error") */
    size_t issued, reissued, renewed, rebundled, unchanged, skipped;
    size_t awaiting;      /* dataplanes whose agent has sent no CSR yet */
} reconcile_mesh_report;

typedef struct reconcile_report {
    reconcile_mesh_report *meshes;
    size_t nmeshes;
    reconcile_action *actions;
    size_t nactions;
    /* totals over every mesh */
    size_t issued, reissued, renewed, rebundled, unchanged, failed_meshes;
    size_t awaiting;   /* dataplanes whose agent has sent no CSR yet */
    /* Meshes whose pass stopped because the store failed (read-only, vanished, I/O): the pass
     * did not do its job (`reconcile --once` exits 2). store_error is the first failure's code,
     * store_cause its cause without the object ("I/O error"), for logging each cause once. */
    size_t store_failures;
    int store_error;
    char store_cause[MESHCA_ERRBUF];
    /* The pass visited only opts->targets (false: every dataplane, also after a fallback);
     * need_full: internal, a targeted mesh that cannot be decided alone. */
    bool targeted, need_full;
} reconcile_report;

#define RECONCILE_REPORT_INIT {NULL, 0, NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "", false, false}

/* Frees what a report holds (not the struct). Accepts NULL. */
void reconcile_report_free(reconcile_report *report);

/*
 * One pass over every mesh of the store. For a mesh with mTLS on: opens every backend (a builtin
 * root is generated once and kept as mesh secrets), builds the trust bundle (CA certificates of
 * all backends, enabled first, de-duplicated by DER), and for each dataplane issues a new
 * certificate when it has none, when its issuer is not the enabled backend, the signing CA
 * certificate changed, its tags or keyType changed, dpCert.rotation.expiration was shortened so
 * that it outlives now + the new lifetime, or `now` is past its stable renewal point;
 * when only the bundle changed it rewrites the identity with the same certificate. Identities are
 * written with compare-and-swap; a dataplane whose identity changed meanwhile is left to the next
 * pass (warning "conflict"). A pass with nothing to do writes nothing.
 *
 * Forced switch (S5): while the mesh status holds {"crossSign":{"from":A,"to":B}}, B is enabled
 * and some dataplane's status does not list B in supportedBackends, new leaves carry B's CA
 * certificate re-signed by A's key after the leaf (identity.cross_signed), valid at most
 * RECONCILE_CROSS_SIGN_SLACK_S past the leaf. Once every dataplane trusts B, those leaves are
 * reissued without it and the flag is removed from the mesh status.
 *
 * A mesh whose enabled CA cannot be used is reported in diags (error "ca-expired" or
 * "ca-unavailable", file NULL, path "mtls.backends[i]" with the mesh named in the message),
 * marked failed in the report, and does not stop the other meshes. Another backend of the mesh
 * that cannot be used is left out of the bundle, reported as a warning with the same codes and
 * as a condition {"type":"BackendUnavailable","backend","reason"} in the mesh status
 * ("conditions"), removed once it works again; the enabled backend keeps signing.
 *
 * Corrupt objects (MESHCA_ECORRUPT, state.h): a dataplane's identity is replaced by a fresh
 * issue (warning "corrupt-object" naming identities/<mesh>/<name>); a corrupt mesh status skips
 * that mesh (error "corrupt-object", the mesh failed). A Mesh that does not decode is reported
 * by state_load_resources (as a warning here) and skipped.
 *
 * Store failures during the pass (not conflicts): the mesh stops at the first one, reported once
 * as error "store-error" naming the object and the cause; see store_failures.
 *
 * Returns 0 (also when meshes failed: see report->failed_meshes and store_failures), a negative
 * STORE_* code when the store itself could not be read, or MESHCA_ENOMEM; *ret is filled on 0
 * (caller frees with reconcile_report_free()), left untouched otherwise.
 */
int reconcile_once(store *s, const reconcile_options *opts, reconcile_report *ret,
                   diag_list *diags);

/*
 * CSR mode (S5): a dataplane's new public key (SubjectPublicKeyInfo DER, from a CSR the API
 * checked) and the CSR itself (kept for backends that sign CSRs; may be NULL) become the pending
 * key of its identity record, signed by the next pass. MESHCA_ENOTFOUND for an unknown
 * dataplane; store codes passed up; one line in errbuf.
 */
int reconcile_submit_key(store *s, const char *mesh_name, const char *dp_name,
                         const unsigned char *spki, size_t spki_len, const char *csr_pem,
                         char *errbuf);

#endif
