/* controller.h - `meshca run`: one event loop carrying the dataplane API, the manifests watch,
 * timers and store changes, with reconcile passes triggered by them. */
#ifndef MESHCA_CONTROLLER_H
#define MESHCA_CONTROLLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifests/diag.h"
#include "manifests/error.h"
#include "reconciler/reconcile.h"
#include "reconciler/store.h"

#define CONTROLLER_DEFAULT_LISTEN "127.0.0.1:5690"
#define CONTROLLER_POLL_MS 100             /* store revision poll (SQLite has no change fd) */
#define CONTROLLER_WATCH_SAFETY_MS 1000    /* etcd: woken by the watch stream, and at least this often */
#define CONTROLLER_WATCH_FDS 4
#define CONTROLLER_BACKOFF_FIRST_MS 500    /* a failing store: passes back off from this ... */
#define CONTROLLER_BACKOFF_MAX_MS 30000    /* ... doubling up to this */
#define CONTROLLER_MAX_SANS 32

/* What the controller says; cmd/ prints it. Borrowed for the call. */
typedef struct controller_output {
    void *ctx;
    /* A pass worth telling (first pass, changes, diagnostics): cmd prints it. */
    void (*pass)(void *ctx, const reconcile_report *rep, const diag_list *diags);
    /* One line (error = to stderr); never a secret. */
    void (*line)(void *ctx, bool error, const char *text);
} controller_output;

typedef struct controller_options {
    const char *listen;              /* "ADDR:PORT", "[v6]:PORT"; NULL = default; port 0 = any */
    const char *tls_cert, *tls_key;  /* the server certificate, or NULL: the control-plane CA */
    const char *const *sans;         /* extra server certificate names (--tls-san); borrowed */
    size_t nsans;
    const char *manifests_dir;       /* --manifests, or NULL */
    int64_t interval_ms;             /* longest time between passes; 0 = 2000 */
    controller_output out;
    /* --metrics "ADDR:PORT": /metrics over plain HTTP there (and not on the API port); NULL:
     * GET /metrics on the dataplane API port (doc/metrics.md). */
    const char *metrics_listen;
    bool no_prune;                   /* --no-prune: --manifests never deletes what left DIR */
    unsigned sign_workers;           /* threads signing a pass's leaves; 0 = the online CPUs */
    int64_t lease_ttl_s;             /* leader lease (--lease-ttl); 0 = LEADER_DEFAULT_TTL_S */
    const char *replica_id;          /* this replica in the leader key; NULL = "HOST:PID" */
    store *lease_store;              /* a second handle on the store for the lease renewer
                                      * thread (leader_renewer_start), or NULL: renewed from
                                      * the loop only, so a pass must end within the ttl */
    store *pass_store;               /* a third handle for the pass thread (with lease_store):
                                      * passes run off the loop, which keeps serving the API
                                      * meanwhile; NULL: passes run on the loop */
    store *submit_store;             /* a fourth for the CSR committer thread (csr_commit.h):
                                      * the keys agents POST are written in group commits off
                                      * the loop, each answered 202 once durable; NULL: each
                                      * POST commits on the loop */
} controller_options;

#define CONTROLLER_OPTIONS_INIT                                                                    \
    {                                                                                              \
        NULL, NULL, NULL, NULL, 0, NULL, 0, { NULL, NULL, NULL }, NULL, false, 0, 0, NULL, NULL,   \
            NULL, NULL                                                                             \
    }

/*
 * Runs the controller on store s (borrowed) until SIGTERM or SIGINT (0). The process must
 * ignore SIGPIPE (cmd/ does). Serves the dataplane API on opts->listen (reconciler/api/), runs a
 * full reconcile pass at start, on leadership, whenever another writer changes the store, and at
 * least every interval; a targeted pass (only those dataplanes) when an agent sends a CSR or an
 * ack, or another replica stores a CSR; after a pass, every parked blocking query whose identity
 * changed is answered. With pass_store, passes run one at a time on a thread of their own while
 * the loop keeps serving; what arrives during a pass is coalesced into the next one.
 * With manifests_dir, syncs it (manifest_sync.h) before each pass and on every inotify event.
 * Replicas: only the replica holding the leader key (leader.h) runs passes and syncs, each
 * pass's writes fenced on its leadership; every replica serves the API (a CSR sent to a follower
 * is stored for the leader's next pass). "leading" / "following ID" is said once per change.
 * Returns MESHCA_EINVAL (bad listen or metrics address, unreadable TLS files) or MESHCA_EIO (cannot bind,
 * cannot watch) with a line in errbuf, before serving.
 */
int controller_run(store *s, const controller_options *opts, char *errbuf);
/* The --listen and --metrics addresses of opts, checked as controller_run checks them, for a
 * caller that must refuse them before it opens (and so creates) a store: 0 or MESHCA_EINVAL
 * with the same line in errbuf. */
int controller_check_addresses(const controller_options *opts, char *errbuf);

#endif
