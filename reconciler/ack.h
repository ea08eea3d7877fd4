/* ack.h - a dataplane's acknowledgement: what its proxy loaded, recorded as its status (S7). */
#ifndef MESHCA_ACK_H
#define MESHCA_ACK_H

#include <stdint.h>

#include "manifests/error.h"
#include "reconciler/store.h"

#define ACK_STATUS_RETRIES 8 /* compare-and-swap retries of the status write */

/*
 * The agent of (mesh, dp) loaded the files of `generation` (its reload exited 0). Records in the
 * dataplane status what that generation carries: issuedBackend, supportedBackends (the backends
 * of the bundle it was issued with), certificate fields, generation, acknowledgedGeneration,
 * lastSeen = now, tags. MESHCA_ENOTFOUND when nothing was issued, MESHCA_ECONFLICT when
 * `generation` is not the identity's current one (a newer one is on its way to the agent);
 * store codes passed up. errbuf: one line, no secret.
 */
int ack_record(store *s, const char *mesh_name, const char *dp, uint64_t generation, int64_t now,
               char *errbuf);

#endif
