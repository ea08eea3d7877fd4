/* store.h - the state store shared by controller, agent and CLI: versioned objects behind a backend vtable. */
#ifndef MESHCA_STORE_H
#define MESHCA_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifests/error.h"
#include "manifests/model.h"

/*
 * Contract
 * --------
 * A store holds opaque byte values (JSON by convention) under keys (kind, mesh, name).
 * Every write gets a version taken from one store-wide revision counter that only grows, so
 * a version is per object, strictly increasing, and comparable across objects - the same
 * meaning as etcd's mod_revision, so an etcd backend plugs in without changing callers.
 *
 * Concurrency: every call is its own transaction (a writer takes the store's write lock,
 * SQLite's BEGIN IMMEDIATE), so there is no separate lock/unlock API. Read-modify-write
 * sequences are made safe with compare-and-swap (expected_version), not with a long-held
 * lock: get, compute, put with the version from get, retry on STORE_ECONFLICT.
 * STORE_EUNAVAILABLE means the store was busy (another process held the write lock past the
 * busy timeout) or unreachable for now: retry with backoff; nothing was written.
 *
 * Errors: every call returns 0 or a STORE_* code, and a failed call leaves a one-line message
 * naming the object and the cause (e.g. sqlite's "attempt to write a readonly database") in
 * store_errmsg(s). Messages never hold values.
 *
 * A store handle belongs to one process: after fork() the child opens its own handle.
 * A handle is not safe for concurrent use by several threads.
 *
 * Outputs (ret_*) are written only on success.
 */

/* Error codes: 0 or negative. */
enum {
    STORE_OK = 0,
    STORE_EINVAL = MESHCA_EINVAL,      /* bad URL, kind, mesh or name, or bad argument */
    STORE_ENOTFOUND = MESHCA_ENOTFOUND,    /* no such object */
    STORE_ECONFLICT = MESHCA_ECONFLICT,    /* compare-and-swap failed: version differs */
    STORE_EIO = MESHCA_EIO,        /* I/O failure or a corrupt object in the backend */
    STORE_EUNSUPPORTED = MESHCA_EUNSUPPORTED, /* backend known but not available in this build */
    STORE_ENOMEM = MESHCA_ENOMEM,
    STORE_EUNAVAILABLE = MESHCA_EUNAVAILABLE, /* busy or unreachable for now: retry with backoff */
    STORE_ECOMPACTED = MESHCA_ECOMPACTED, /* store_watch: revision older than the change log: re-list */
    STORE_EINSECURE = MESHCA_EINSECURE, /* store directory or file open to other users: refused */
};

/* expected_version for an unconditional write. */
#define STORE_ANY_VERSION UINT64_MAX

/*
 * Limits. Names are the resource names of the model (a DNS subdomain), so whatever validate
 * accepts the store can hold. STORE_TXN_MAX bounds one transaction: a reconcile pass or an
 * apply over 100,000 dataplanes is one transaction (SPEC S6). A backend with a smaller native
 * limit (etcd's --max-txn-ops) splits a transaction into several and documents what it keeps.
 */
#define STORE_NAME_MAX MODEL_MAX_RESOURCE_NAME
#define STORE_VALUE_MAX (64u * 1024u * 1024u)
#define STORE_TXN_MAX (1024u * 1024u)

/*
 * Kinds: "meshes", "dataplanes", "secrets", "identities", "dpstatus", "meshstatus", "tokens"
 * (dataplane tokens, hashes only), "controlplane" (the control-plane CA), "bundles" (one
 * trust bundle per mesh).
 * mesh and name: [a-z0-9]([-a-z0-9.]*[a-z0-9])?, at most STORE_NAME_MAX, no "..".
 * For "meshes", "meshstatus" and "bundles" the object is the mesh itself: mesh may be NULL or must equal
 * name. All strings are borrowed for the duration of the call.
 */
typedef struct store_key {
    const char *kind;
    const char *mesh;
    const char *name;
} store_key;

/* One listed object; every pointer owned by the array, freed with store_entries_free(). */
typedef struct store_entry {
    char *kind;
    char *mesh;
    char *name;
    char *value; /* len bytes followed by a NUL not counted in len */
    size_t len;
    uint64_t version;
} store_entry;

typedef enum store_op_type {
    STORE_OP_PUT,
    STORE_OP_DELETE,
    STORE_OP_CHECK, /* compare only, writes nothing: fences a txn on a key's version (leadership) */
} store_op_type;

/* A lease id (as etcd's); 0 = no lease. */
typedef int64_t store_lease_id;

/*
 * One operation of a transaction; value/len/lease only for STORE_OP_PUT. Fields borrowed.
 * expected_version: as for store_put / store_delete; for STORE_OP_CHECK 0 = must not exist,
 * N = must be at version N (STORE_ANY_VERSION is STORE_EINVAL: it would check nothing).
 * lease: the put object is deleted when that lease expires or is revoked; 0 = no lease. A put
 * without a lease detaches the object from any lease it had.
 */
typedef struct store_op {
    store_op_type type;
    store_key key;
    const char *value;
    size_t len;
    uint64_t expected_version;
    store_lease_id lease;
} store_op;

typedef struct store store;

/* The store used when neither --store nor $MESHCA_STORE names one. */
#define STORE_DEFAULT_URL "sqlite://.meshca/meshca.db"
/* sqlite://:memory: is an empty store in memory, gone with its handle: no file is made. */
#define SQLITE_MEMORY_PATH ":memory:"

/*
 * Open a store. url: "sqlite://PATH" (the directory of PATH is created 0700 if missing, but
 * its parent must exist; the database file is 0600; "sqlite://:memory:" an empty store in
 * memory), "etcd://HOST:PORT[,HOST:PORT...]"
 * (plain HTTP) or "etcds://..." (TLS), optionally followed by "?max-txn-ops=N" (the cluster's
 * --max-txn-ops, default 128), NULL = $MESHCA_STORE or STORE_DEFAULT_URL. Opening an etcd
 * store connects to nothing: an unreachable cluster shows at the first call. "file://" was
 * retired: STORE_EINVAL saying so. Unknown scheme: STORE_EINVAL. An existing store directory
 * writable by other users, or a database file open to them, is refused with STORE_EINSECURE
 * (as ssh refuses a private key others can read). On failure a one-line reason is written to
 * errbuf (MESHCA_ERRBUF bytes, may be NULL). Caller frees *ret with store_close().
 * store_open(url, ...) is store_open_with(url, NULL, ...).
 */
int store_open(const char *url, store **ret, char *errbuf);

/*
 * Options of store_open_with; strings borrowed for the call. A NULL string (or 0) takes the
 * environment: $MESHCA_ETCD_CACERT, $MESHCA_ETCD_CERT, $MESHCA_ETCD_KEY (the CLI's
 * --etcd-cacert, --etcd-cert, --etcd-key set them). The TLS files are used by etcds:// only.
 * etcd_max_txn_ops: ops in one etcd txn (2..100000), 0 = the URL's max-txn-ops or 128.
 */
typedef struct store_open_options {
    const char *etcd_cacert; /* PEM CA that signed the members (NULL: the system's CAs) */
    const char *etcd_cert;   /* client certificate PEM (with etcd_key) */
    const char *etcd_key;    /* its private key PEM */
    unsigned etcd_max_txn_ops;
} store_open_options;

#define STORE_OPEN_OPTIONS_INIT { NULL, NULL, NULL, 0 }

/* store_open with options (NULL = STORE_OPEN_OPTIONS_INIT). */
int store_open_with(const char *url, const store_open_options *opts, store **ret, char *errbuf);

/* Accepts NULL. */
void store_close(store *s);

/*
 * The message of the last failed call on s: one line naming the object and the cause, ""
 * when there was none. Borrowed: valid until the next call on s.
 */
const char *store_errmsg(const store *s);

/*
 * Read one object. *ret_value is malloc'ed, NUL-terminated (NUL not counted in *ret_len),
 * caller frees. ret_len and ret_version may be NULL. STORE_ENOTFOUND when absent.
 */
int store_get(store *s, const store_key *key, char **ret_value, size_t *ret_len, uint64_t *ret_version);

/*
 * Write one object with compare-and-swap. expected_version: STORE_ANY_VERSION =
 * unconditional, 0 = must not exist, N = must currently be at version N; otherwise
 * STORE_ECONFLICT. len at most STORE_VALUE_MAX. *ret_version (may be NULL) gets the new version.
 */
int store_put(store *s, const store_key *key, const char *value, size_t len, uint64_t expected_version,
              uint64_t *ret_version);

/*
 * Delete one object. expected_version: STORE_ANY_VERSION or the current version
 * (STORE_ECONFLICT if it differs); 0 is STORE_EINVAL. STORE_ENOTFOUND when absent.
 */
int store_delete(store *s, const store_key *key, uint64_t expected_version);

/*
 * List the objects of one kind, of one mesh (mesh NULL = every mesh), sorted by (mesh, name).
 * Empty result: *ret_entries NULL, *ret_count 0. Caller frees with store_entries_free().
 */
int store_list(store *s, const char *kind, const char *mesh, store_entry **ret_entries, size_t *ret_count);

/* Accepts NULL. */
void store_entries_free(store_entry *entries, size_t count);

/* store_list without the values (value NULL, len 0): keys and versions only, read in one
 * store_scan, so a caller that needs only versions does not copy every object. */
int store_list_keys(store *s, const char *kind, const char *mesh_name, store_entry **ret_entries,
                    size_t *ret_count);

/*
 * store_list without holding every object at once: calls fn for each object of the kind (and
 * mesh), sorted by (mesh, name). The entry and its value are valid during the call only; fn must
 * not call the store. fn returns 0 to go on, or a negative code that stops the scan and is
 * returned. (A pass reads 100,000 identities this way instead of one SELECT each.)
 */
typedef int (*store_scan_fn)(void *userdata, const store_entry *entry);
int store_scan(store *s, const char *kind, const char *mesh, store_scan_fn fn, void *userdata);

/*
 * store_scan over the objects of one kind in one mesh (mesh not NULL) whose names are in
 * [from, to] (byte order, as the listing's): SQLite seeks its primary key, etcd asks the key
 * range. from after to: no object. A reconcile pass reads its identities this way, one range
 * of dataplanes at a time, so the scan of the later ones overlaps the signing of the first.
 */
int store_scan_range(store *s, const char *kind, const char *mesh, const char *from,
                     const char *to, store_scan_fn fn, void *userdata);

/*
 * Apply up to STORE_TXN_MAX puts, deletes and checks atomically: every key and every version
 * check is verified inside one write transaction; if one fails, nothing is written and its code
 * is returned (STORE_ECONFLICT, or STORE_ENOTFOUND for a delete of an absent object or a put
 * on an expired lease). A key may appear only once (STORE_EINVAL). All writes of one
 * transaction get the same new version. All or nothing across a crash too: a kill -9 or power
 * loss at any point leaves every object as before or every object as after. A transaction of
 * checks only writes nothing and does not change the revision.
 *
 * Atomic only up to store_txn_limit(s) ops. On etcd a larger transaction (or one larger than
 * the cluster's request size) is applied as several consecutive transactions, each atomic and
 * each carrying every STORE_OP_CHECK of the call (so a fenced write stays fenced); when one
 * fails, the ones before it stay applied (the message says how many) and the writes get
 * several versions. A caller that needs all or nothing stays within store_txn_limit(s); a
 * reconcile pass may exceed it because it recomputes from the store and converges.
 */
int store_txn(store *s, const store_op *ops, size_t nops);

/*
 * store_txn preceded by the test failpoint named failpoint (reconciler/failpoint.h): the place
 * where a caller has computed its writes and is about to commit them ("pass.commit",
 * "apply.commit"). Unarmed it is store_txn; armed with "error" it fails with MESHCA_EIO and the
 * failpoint's message in store_errmsg(s), having written nothing.
 */
int store_txn_at(store *s, const char *failpoint, const store_op *ops, size_t nops);

/*
 * One transaction built in parts, so that a large writer (a reconcile pass) applies its writes
 * while it still computes the rest, and commits once: all or nothing across a crash, as
 * store_txn. store_txn_open takes the store's write lock (SQLite: BEGIN IMMEDIATE; other
 * writers wait for it up to the busy timeout) and returns STORE_EUNSUPPORTED where the backend
 * cannot hold a transaction open (etcd: use store_txn), and while a store_fence with a deadline
 * is set (a leader: its lease renewal, a write too, would wait for the lock past its deadline). Each store_txn_add checks and applies
 * its ops as store_txn would, against the store as this transaction has left it so far: a key
 * must appear once in the whole transaction, not only in one part. A failed add leaves the
 * transaction to be closed with commit false. store_txn_close commits (commit true, after the
 * test failpoint named failpoint, when not NULL) or rolls back; either way the transaction is
 * over. While one is open on s, reads of s see its writes, and store_txn on s is refused
 * (STORE_EINVAL): every write of s goes through the open transaction.
 */
int store_txn_open(store *s);
int store_txn_add(store *s, const store_op *ops, size_t nops);
int store_txn_close(store *s, const char *failpoint, bool commit);

/*
 * store_txn_open for a writer whose ops all expect the versions their keys had at revision
 * `since` (it read store_revision, then what it computed from): when the store is still at that
 * revision once this transaction holds the write lock, nothing has changed since and no other
 * writer can change anything before the close, so the version checks of its puts without a
 * lease and of its checks are not made again (a pass of 100,000 dataplanes made 200,000 of
 * them: a read of the objects' B-tree each). Deletes and leases are checked as always. A store
 * that moved on, or STORE_NO_REVISION, checks everything as store_txn_open. The caller's
 * promise is store_txn_add's rule made strict: each key appears once in the whole transaction,
 * at the version it had at `since` (0: absent). A fenced handle (store_fence) checks every op,
 * its fence's too; store_fence is refused while such a transaction is open.
 */
#define STORE_NO_REVISION UINT64_MAX
int store_txn_open_since(store *s, uint64_t since);

/*
 * Most ops (puts, deletes and checks) one store_txn applies atomically (one fewer while a
 * store_fence is set, for its check): STORE_TXN_MAX on
 * sqlite://, the cluster's --max-txn-ops (the URL's max-txn-ops, default 128) on etcd, minus
 * nothing: etcd's request size (1.5 MiB by default) bounds the values too.
 */
size_t store_txn_limit(const store *s);

/* What happened to an object at event.version. */
typedef enum store_event_op {
    STORE_EVENT_PUT,
    STORE_EVENT_DELETE, /* by store_delete, a txn delete, or its lease's expiry or revocation */
} store_event_op;

/* One change; pointers owned by the array, freed with store_events_free(). */
typedef struct store_event {
    char *kind;
    char *mesh;
    char *name;
    store_event_op op;
    uint64_t version; /* the revision of the write */
} store_event;

/* Most revisions the store keeps for store_watch (fewer if they hold very many changes). */
#define STORE_WATCH_WINDOW 10000
/* Most events one store_watch call returns (it never splits one revision's events). */
#define STORE_WATCH_MAX_EVENTS 10000

/*
 * Changes after a revision, for the controller loop and blocking queries (etcd's watch):
 * every put and delete with version > after_revision, in revision order (then kind, mesh,
 * name), whole revisions only, at most STORE_WATCH_MAX_EVENTS unless one revision alone holds
 * more. Waits up to timeout_ms (0 = do not wait) for the first change; on timeout returns
 * STORE_OK with *ret_events NULL and *ret_count 0. To follow the store: list (or get), note
 * store_revision, then watch from it, and continue from the last event's version.
 * STORE_ECOMPACTED when changes after after_revision are no longer kept (the window is at most
 * the last STORE_WATCH_WINDOW revisions): re-list and watch from the current revision.
 * On etcd the window is what the cluster keeps until its compaction, and a call with
 * timeout_ms 0 may wait up to 3 s for its stream to connect when the store revision is past
 * after_revision (so changes that are there are returned). Caller frees with store_events_free().
 */
int store_watch(store *s, uint64_t after_revision, int timeout_ms, store_event **ret_events, size_t *ret_count);

/* Accepts NULL. */
void store_events_free(store_event *events, size_t count);

struct pollfd;
/*
 * For an event loop that follows the store with store_watch(s, after, 0, ...): fills fds (at
 * most max) with the descriptors to wait on (their events field says for what) and
 * *ret_timeout_ms with the longest wait (-1: only for the descriptors) before that call may
 * have something; *ret_n gets how many fds were filled. Valid until the next call on s. A
 * count of 0 with timeout 0 means "call store_watch now" (no stream open yet, or changes
 * pending). STORE_EUNSUPPORTED when the backend has no change descriptor (sqlite://): poll.
 */
int store_watch_pollfds(store *s, struct pollfd *fds, size_t max, size_t *ret_n, long *ret_timeout_ms);

/* Longest lease a caller may ask for, in seconds. */
#define STORE_LEASE_TTL_MAX (24 * 3600)

/*
 * Leases (for leader election, as etcd's): grant a lease of ttl_seconds (1..STORE_LEASE_TTL_MAX)
 * and get its id; keepalive renews it to a full ttl from now; revoke ends it at once. When a
 * lease ends (revoked, or not kept alive within its ttl) every object put with it is deleted
 * at one new revision, with delete events. The backend may delete expired objects lazily, but
 * no read, list or check ever sees an object whose lease has expired. Keepalive and revoke of
 * an expired or unknown lease: STORE_ENOTFOUND. Granting does not change the revision.
 * On etcd the cluster ends leases itself: its leader notices an expired lease within about half
 * a second and deletes its keys at one revision (etcd may also raise a short ttl to its minimum,
 * about 1.5 election timeouts).
 */
int store_lease_grant(store *s, int64_t ttl_seconds, store_lease_id *ret_id);
int store_lease_keepalive(store *s, store_lease_id id);
int store_lease_revoke(store *s, store_lease_id id);

/*
 * Fence every later write on this handle (put, delete, txn) on key being at version (for
 * leadership: the leader key put with the leader's lease): each write carries a STORE_OP_CHECK
 * of it in the same transaction, so once the key is gone or rewritten (lease ended, another
 * leader) the write fails with STORE_ECONFLICT and nothing lands. *deadline_ms (CLOCK_MONOTONIC
 * milliseconds; NULL = none; borrowed until the fence is cleared, read atomically at every
 * write so another thread may move it): from then on writes are refused with STORE_ECONFLICT
 * without reaching the store, so a leader that could not renew its lease stops by its own
 * clock. A txn that
 * names the fence key itself is not given the check (it checks the key itself). key NULL clears
 * the fence. Reads are never fenced.
 */
int store_fence(store *s, const store_key *key, uint64_t version, const int64_t *deadline_ms);

/*
 * The store-wide revision: the highest version ever given out (0 for an empty store). It
 * changes on every successful write, so an unchanged revision means nothing changed.
 */
int store_revision(store *s, uint64_t *ret);

/* Static message for a STORE_* code; store_errmsg() has the details of a failed call. */
const char *store_strerror(int code);

/* 1 when kind is one of the fixed kinds, else 0. */
int store_kind_valid(const char *kind);

/* Every kind the store knows, in a fixed order (static; *ret_count of them). */
const char *const *store_kinds(size_t *ret_count);

/* 1 when name is an acceptable mesh or object name, else 0. */
int store_name_valid(const char *name);

#endif
