/* etcd_keys.h - how the store maps onto etcd: key layout, versions as compares, leader fencing, txn
 * splitting (pure). */
#ifndef MESHCA_ETCD_KEYS_H
#define MESHCA_ETCD_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "reconciler/store/etcd_client.h"

/*
 * Layout (doc/store-etcd.md): every object is the key "/meshca/<kind>/<mesh>/<name>"; for the
 * kinds whose object is a mesh ("meshes", "meshstatus") mesh = name, so every kind lists the
 * same way. The store-wide revision is etcd's revision; an object's version is its
 * mod_revision. The leader of the `meshca run` replicas holds "/meshca/leader", attached to
 * its lease. Nothing here does I/O.
 *
 * Names are checked again here (the store front end checks them first): a component is
 * [a-z0-9.-], 1..ETCD_KEYS_NAME_MAX bytes, with no "..", and a kind [a-z]+ - so no '/'
 * can ever make one object's key look like another's.
 */

#define ETCD_KEYS_PREFIX "/meshca/"
#define ETCD_KEYS_LEADER "/meshca/leader"
#define ETCD_KEYS_NAME_MAX 253
#define ETCD_KEYS_KIND_MAX 31
/* Room for the longest key, with its NUL. */
#define ETCD_KEYS_KEY_MAX                                                                          \
    (sizeof(ETCD_KEYS_PREFIX) + ETCD_KEYS_KIND_MAX + 2 * ETCD_KEYS_NAME_MAX + 3)

/* The store's expected_version for "no check" (STORE_ANY_VERSION). */
#define ETCD_KEYS_ANY_VERSION UINT64_MAX

/* ETCD_EINVAL for a bad kind, mesh or name; else 0 and buf holds the NUL-terminated key,
 * *ret_len (may be NULL) its length. buf: ETCD_KEYS_KEY_MAX bytes. */
int etcd_keys_object(const char *kind, const char *mesh, const char *name, char *buf,
                     size_t *ret_len);

/* The prefix of a listing: every object of kind (mesh NULL) or of kind in one mesh. */
int etcd_keys_list_prefix(const char *kind, const char *mesh, char *buf, size_t *ret_len);

typedef struct etcd_keys_parsed {
    char kind[ETCD_KEYS_KIND_MAX + 1];
    char mesh[ETCD_KEYS_NAME_MAX + 1];
    char name[ETCD_KEYS_NAME_MAX + 1];
} etcd_keys_parsed;

/* Back from a key to (kind, mesh, name). ETCD_EINVAL when key is not an object key of this
 * layout (the leader key, a foreign key, a bad name): a listing reports it as corrupt. */
int etcd_keys_parse(const char *key, size_t key_len, etcd_keys_parsed *ret);

/*
 * The compare that enforces a store expected_version on key (borrowed by *ret):
 *   put,    ETCD_KEYS_ANY_VERSION -> none (returns 0)
 *   put,    0                     -> create_revision == 0  (must not exist)
 *   put/delete, N                 -> mod_revision == N
 *   delete, ETCD_KEYS_ANY_VERSION -> create_revision > 0   (must exist)
 * Returns 1 when *ret was filled, 0 when no compare is needed, ETCD_EINVAL for delete with
 * 0 or a version above INT64_MAX.
 */
int etcd_keys_expect(const char *key, size_t key_len, uint64_t expected_version, int is_delete,
                     etcd_compare *ret);

/* Leader fencing: the compare every write txn of the leader carries, "/meshca/leader" is still
 * attached to its lease. When the lease expires etcd deletes the key, so the compare fails at
 * once, even if another replica has not taken over yet. */
void etcd_keys_fence(int64_t lease, etcd_compare *ret);

/*
 * The txn that takes leadership: if "/meshca/leader" does not exist (create_revision == 0),
 * put it = id, attached to lease; else read it (who leads). Fills one compare, one success op
 * and one failure op; id is borrowed.
 */
void etcd_keys_campaign(const char *id, size_t id_len, int64_t lease, etcd_compare *ret_cmp,
                        etcd_op *ret_put, etcd_op *ret_get);

/*
 * Why a store txn's etcd txn failed, from a read of its keys (store_etcd reads them back in one
 * txn after the failure): the leader key first (when fenced) and then every op's key in order. checks[i] is op i's expected version
 * and whether it is a delete; gets the txn result's gets. Returns the store's answer for the
 * first op whose check failed - ETCD_ENOTFOUND (a delete of an absent object), ETCD_ECONFLICT
 * (any other version mismatch) - with *ret_index set; or MESHCA_ESTATE with *ret_index
 * SIZE_MAX when the fence failed (this replica no longer leads: it must stop writing);
 * ETCD_EIO when gets do not explain the failure (malformed, or changed in between - retry).
 */
typedef struct etcd_keys_check {
    uint64_t expected_version;
    int is_delete;
} etcd_keys_check;

int etcd_keys_explain_failure(const etcd_keys_check *checks, size_t n, const etcd_txn_get *gets,
                              size_t ngets, int fenced, int64_t lease, size_t *ret_index);

/* What one store op costs in a txn (compare + put or delete + a read of its key: store_etcd
 * sends no failure branch, so this sizing is on the safe side), in the units of
 * etcd_txn_request_size. */
size_t etcd_keys_op_bytes(size_t key_len, size_t value_len);

/*
 * Cut n ops (op_bytes[i] from etcd_keys_op_bytes) into consecutive txns within etcd's limits:
 * at most max_txn_ops - fenced ops each (one compare per op, plus the fence), at most
 * max_request_bytes each. ret_ends (n entries) gets each batch's end index, *ret_batches the
 * count; batch b is [ret_ends[b-1], ret_ends[b]). ETCD_EINVAL, *ret_index = the op, when one
 * op alone exceeds the size limit. Each txn is atomic; a pass split in several is not, so the
 * store applies batches in order and a reconcile pass converges on a retry.
 */
int etcd_keys_plan(const size_t *op_bytes, size_t n, unsigned max_txn_ops, size_t max_request_bytes,
                   int fenced, size_t *ret_ends, size_t *ret_batches, size_t *ret_index);

#endif
