/* agent.h - the dataplane side: writes the issued identity to files, reloads, acknowledges. */
#ifndef MESHCA_AGENT_H
#define MESHCA_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifests/error.h"
#include "reconciler/store.h"

/* Error codes of agent_sync (0 or negative). */
enum {
    AGENT_OK = 0,
    AGENT_ESTORE = MESHCA_EIO,    /* the store could not be read or written */
    AGENT_ENOTISSUED = MESHCA_ENOTFOUND, /* no identity issued to this dataplane yet (retry later) */
    AGENT_EIO = MESHCA_EIO,      /* the files could not be written */
    AGENT_ERELOAD = MESHCA_ESTATE,   /* the reload command failed: nothing acknowledged */
    AGENT_EINVAL = MESHCA_EINVAL,    /* bad argument, or an identity without a key */
};

#define AGENT_CERT_FILE "cert.pem"
#define AGENT_KEY_FILE "key.pem"
#define AGENT_BUNDLE_FILE "ca-bundle.pem"
#define AGENT_STATUS_RETRIES 8   /* compare-and-swap retries of the status write */

/*
 * One sync of dataplane `dp` of `mesh_name`. Reads its identity; when the identity's generation is
 * not the status' acknowledgedGeneration, or a file is missing, writes cert.pem, key.pem (0600)
 * and ca-bundle.pem into out_dir (each atomically: temp file, fsync, rename, fsync of the
 * directory; the bundle is renamed first so the new CA is trusted before the new certificate is
 * served), runs reload_cmd with /bin/sh -c (when not NULL), and only when it exits 0 records in
 * the dataplane status (S7) what is now loaded: issuedBackend, supportedBackends,
 * certificate fields, generation, acknowledgedGeneration, lastSeen = now, tags.
 *
 * now: seconds since the epoch (0 = time(NULL)). *ret_changed (may be NULL) tells whether files
 * were written and acknowledged. Returns 0 or an AGENT_* code with a one-line reason in errbuf
 * (may be NULL), never key material.
 */
int agent_sync(store *s, const char *mesh_name, const char *dp, const char *out_dir,
               const char *reload_cmd, int64_t now, bool *ret_changed, char *errbuf, size_t errlen);

#endif
