/* status_readd.h - a backend name added to a Mesh (again) is trusted by nobody yet: the status
 * writes that forget what dataplanes acknowledged under that name before. */
#ifndef MESHCA_STATUS_READD_H
#define MESHCA_STATUS_READD_H

#include "manifests/model.h"
#include "manifests/status.h"
#include "reconciler/store.h"

/*
 * A dataplane status says which backends it trusts by name (S7). A name removed from a Mesh and
 * added again (or re-added after mTLS was toggled off and on) may stand for another CA, and a
 * proxy that acknowledged nothing since (paused, cut off) still shows the old one in
 * supportedBackends: R3 would count it as trusting a CA it has never loaded. So when an apply
 * adds a backend name (absent from `prev`, or there with another type or conf), that name leaves
 * the supportedBackends of every stored status of the mesh that lists it; the next
 * acknowledgement of a generation issued with the new bundle puts it back.
 *
 * Not when the CA now behind the name is the one the mesh's last trust bundle served under it
 * (`keep`, from status_readd_bundle_serves): then the claims are still true, and no new
 * generation would come to renew them (mTLS turned off and on again, or a backend removed and
 * re-added before any pass): forgetting would hold a switch until the next renewal.
 *
 * The writes are compare-and-swap on the status versions read here (a concurrent ack makes the
 * apply retry). They go before the Mesh's own write in a transaction, so that a transaction
 * split into parts (etcd) never stores the Mesh without them.
 */
typedef struct status_readd {
    store_op *ops;    /* STORE_OP_PUT of dpstatus/<mesh>/<name> */
    char **texts;     /* the values the ops point to */
    size_t n;
} status_readd;

#define STATUS_READD_INIT {NULL, 0, 0}

/* Whether next brings in backend `name`: absent from prev (NULL: created), or there with
 * another type or conf. */
bool status_readd_is_added(const mesh *prev, const mesh *next, const char *name);

/* Whether the mesh's stored trust bundle (the last pass's) lists `name` with, at its place, the
 * CA certificate of SHA-1 fingerprint `fp` (pki_fingerprint_sha1 form). False when there is no
 * bundle, it cannot be read, or it was de-duplicated (its places unknown): the careful answer. */
bool status_readd_bundle_serves(store *s, const char *mesh_name, const char *name,
                                const char *fp);

/* Plans the writes for the change prev -> next (prev NULL: created) against `status` (the
 * stored statuses, any mesh; re-read here for their versions), leaving the names in `keep`
 * alone. 0, STORE_ENOMEM, or a store code. *ret holds the ops (none when nothing needs
 * forgetting); free with status_readd_free. */
int status_readd_plan(store *s, const mesh *prev, const mesh *next, const status_set *status,
                      const char *const *keep, size_t nkeep, status_readd *ret);
void status_readd_free(status_readd *r);

#endif
