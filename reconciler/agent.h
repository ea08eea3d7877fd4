/* agent.h - the dataplane side over the API: its own key, CSRs, blocking queries, files, reload, ack. */
#ifndef MESHCA_AGENT_H
#define MESHCA_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifests/error.h"
#include "reconciler/reload.h"

#define AGENT_CERT_FILE "cert.pem"
#define AGENT_KEY_FILE "key.pem"
#define AGENT_BUNDLE_FILE "ca-bundle.pem"
/* A fresh key whose CSR is with the controller: kept (0600) so a restarted agent still holds the
 * key of the certificate it will be sent. Never sent anywhere. */
#define AGENT_NEXT_KEY_FILE "key.next.pem"
/* The generation last acknowledged: a restarted agent whose files are that generation does not
 * reload its proxy again. */
#define AGENT_ACKED_FILE "acked-generation"
#define AGENT_DEFAULT_WAIT_S 60   /* blocking query wait */
#define AGENT_MAX_BACKOFF_MS 30000

/* Lines the agent says (progress and trouble); never key material or tokens. */
typedef void (*agent_log_fn)(void *ctx, bool error, const char *line);

typedef struct agent_options {
    const char *mesh;
    const char *dataplane;
    const char *out_dir;            /* made ready with atomic_dir_prepare (atomic_dir.h) */
    const char *const *servers;     /* base URLs, tried in turn (failover); borrowed */
    size_t nservers;
    const char *ca_file;            /* the control-plane CA (`meshca cp-ca -o pem`) */
    const char *token;              /* bearer token for the first contact (may be NULL once the
                                     * agent holds a certificate); borrowed */
    const char *reload_cmd;         /* /bin/sh -c after the files changed; NULL: none */
    int64_t reload_timeout_ms;      /* <= 0: RELOAD_DEFAULT_TIMEOUT_MS */
    reload_stop_fn stop_requested;  /* may be NULL; true ends the loop (and a running reload) */
    bool once;                      /* return after the first acknowledged generation */
    bool renew;                     /* send a CSR for a fresh key at start, whatever renewAt says
                                     * (a suspected key compromise, or a test) */
    int wait_s;                     /* blocking query wait; 0 = AGENT_DEFAULT_WAIT_S */
    agent_log_fn log;               /* may be NULL */
    void *log_ctx;
    bool out_created;               /* this run created out_dir (atomic_dir_prepare): an agent
                                     * that fails before the controller accepted anything removes
                                     * it again, so a refused agent leaves nothing behind */
} agent_options;

#define AGENT_OPTIONS_INIT                                                                         \
    {                                                                                              \
        NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, RELOAD_DEFAULT_TIMEOUT_MS, NULL, false,       \
            false, 0, NULL, NULL, false                                                            \
    }

/*
 * Runs the agent (S8, S13) until stop_requested() (0), or with `once` until its proxy loaded and
 * the controller acknowledged one generation (0). It never opens the store. Keys: EC P-256 or
 * RSA 2048 as the mesh asks, generated here, fresh at every renewal, kept 0600 in out_dir, only
 * a CSR is sent. Auth: its own certificate (mTLS) once it has one, the token before that (and
 * when the controller refuses the certificate). Files: key.pem, cert.pem (leaf + chain),
 * ca-bundle.pem switched together (atomic_dir.h), then reload_cmd; the ack only when it exits 0
 * in time. While no controller answers, the files stay as they are and requests are retried with
 * backoff over every server. Renewal at the identity's renewAt.
 * Returns 0; with `once`: MESHCA_ESTATE when the reload failed, MESHCA_EINVAL when the
 * controller refused (bad token, unknown dataplane), MESHCA_EUNAVAILABLE when none answered;
 * MESHCA_EIO when out_dir cannot be written. errbuf: one line, no secret.
 * A load that fails (files, reload_cmd, ack) is retried for the same generation with the backoff
 * (0.5 s doubling to AGENT_MAX_BACKOFF_MS), never acknowledged before reload_cmd exits 0.
 * On a failure with out_created, before the controller accepted a CSR and while no certificate
 * is loaded, out_dir is removed again when it holds nothing but the refused next key.
 */
int agent_run(const agent_options *opts, char *errbuf);

#endif
