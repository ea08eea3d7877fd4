/* agent.h - the dataplane side: writes the issued identity to files, reloads, acknowledges. */
#ifndef MESHCA_AGENT_H
#define MESHCA_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifests/error.h"
#include "reconciler/reload.h"
#include "reconciler/store.h"

/* Error codes of agent_sync (0 or negative). */
enum {
    AGENT_OK = 0,
    AGENT_ESTORE = MESHCA_EIO,    /* the store could not be read or written */
    AGENT_ENOTISSUED = MESHCA_ENOTFOUND, /* no identity issued to this dataplane yet (retry later) */
    AGENT_EIO = MESHCA_EIO,      /* the files could not be written */
    AGENT_ERELOAD = MESHCA_ESTATE,   /* the reload command failed, timed out or was interrupted:
                                      * nothing acknowledged */
    AGENT_ENOMEM = MESHCA_ENOMEM,
    AGENT_EINVAL = MESHCA_EINVAL,    /* bad argument, or an identity without a key */
};

#define AGENT_CERT_FILE "cert.pem"
#define AGENT_KEY_FILE "key.pem"
#define AGENT_BUNDLE_FILE "ca-bundle.pem"
#define AGENT_STATUS_RETRIES 8   /* compare-and-swap retries of the status write */

/* What one sync does besides reading the store. */
typedef struct agent_options {
    const char *out_dir;          /* made ready with atomic_dir_prepare (atomic_dir.h) */
    const char *reload_cmd;       /* run with /bin/sh -c after the files changed; NULL: none */
    int64_t reload_timeout_ms;    /* <= 0: RELOAD_DEFAULT_TIMEOUT_MS */
    reload_stop_fn stop_requested; /* may be NULL; true ends a running reload (no ack) */
    int64_t now;                  /* seconds since the epoch; 0 = time(NULL) */
} agent_options;
#define AGENT_OPTIONS_INIT {NULL, NULL, RELOAD_DEFAULT_TIMEOUT_MS, NULL, 0}

/*
 * One sync of dataplane `dp` of `mesh_name`. Reads its identity; when the identity's generation is
 * not the status' acknowledgedGeneration, or a file is missing, writes cert.pem, key.pem (0600)
 * and ca-bundle.pem into opts->out_dir as one generation (atomic_dir.h: a fresh directory, one
 * symlink rename, so a proxy never reads a key beside another key's certificate), runs
 * opts->reload_cmd (reload.h: own process group, killed past its timeout or on stop), and only
 * when it exits 0 in time records in the dataplane status (S7) what is now loaded:
 * issuedBackend, supportedBackends, certificate fields, generation, acknowledgedGeneration,
 * lastSeen = now, tags.
 *
 * *ret_changed (may be NULL) tells whether files were written and acknowledged. Returns 0 or an
 * AGENT_* code with a one-line reason in errbuf (MESHCA_ERRBUF bytes, may be NULL), never key
 * material.
 */
int agent_sync_with(store *s, const char *mesh_name, const char *dp, const agent_options *opts,
                    bool *ret_changed, char *errbuf);

/* agent_sync_with with the default reload timeout and no stop check; errbuf of errlen bytes. */
int agent_sync(store *s, const char *mesh_name, const char *dp, const char *out_dir,
               const char *reload_cmd, int64_t now, bool *ret_changed, char *errbuf, size_t errlen);

#endif
