/* store.h - the state store shared by controller, agent and CLI: versioned objects behind a backend vtable. */
#ifndef MESHCA_STORE_H
#define MESHCA_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "manifests/error.h"

/*
 * Contract
 * --------
 * A store holds opaque byte values (JSON by convention) under keys (kind, mesh, name).
 * Every write gets a version taken from one store-wide revision counter that only grows, so
 * a version is per object, strictly increasing, and comparable across objects - the same
 * meaning as etcd's mod_revision, so an etcd backend plugs in without changing callers.
 *
 * Concurrency: every call takes the store's lock itself (shared for reads, exclusive for
 * writes), so there is no separate lock/unlock API. Read-modify-write sequences are made safe
 * with compare-and-swap (expected_version), not with a long-held lock: get, compute, put
 * with the version from get, retry on STORE_ECONFLICT.
 *
 * A store handle belongs to one process: after fork() the child opens its own handle (the
 * file backend's flock is per open file description and would be shared otherwise).
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
};

/* expected_version for an unconditional write. */
#define STORE_ANY_VERSION UINT64_MAX

/* Limits. Names are DNS-like; 250 (not 253) because "<name>.json" must fit one file name. */
#define STORE_NAME_MAX 250
#define STORE_VALUE_MAX (64u * 1024u * 1024u)
#define STORE_TXN_MAX 1024

/*
 * Kinds: "meshes", "dataplanes", "secrets", "identities", "dpstatus", "meshstatus".
 * mesh and name: [a-z0-9]([-a-z0-9.]*[a-z0-9])?, at most STORE_NAME_MAX, no "..".
 * For "meshes" and "meshstatus" the object is the mesh itself: mesh may be NULL or must equal
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
} store_op_type;

/* One operation of a transaction; value/len only for STORE_OP_PUT. Fields borrowed. */
typedef struct store_op {
    store_op_type type;
    store_key key;
    const char *value;
    size_t len;
    uint64_t expected_version; /* as for store_put / store_delete */
} store_op;

typedef struct store store;

/*
 * Open a store. url: "file://DIR" (DIR created 0700 if missing; its parent must exist),
 * "etcd://HOST:PORT[,...]" (STORE_EUNSUPPORTED for now), NULL = $MESHCA_STORE or
 * "file://.meshca". Unknown scheme: STORE_EINVAL. On failure a one-line reason is written
 * to errbuf (may be NULL). Caller frees *ret with store_close().
 */
int store_open(const char *url, store **ret, char *errbuf, size_t errlen);

/* Accepts NULL. */
void store_close(store *s);

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

/*
 * Apply up to STORE_TXN_MAX puts/deletes. Every key and every version check is verified under
 * the exclusive lock before anything is written: if one fails, nothing is written and its
 * code is returned. A key may appear only once (STORE_EINVAL). All writes of one transaction
 * get the same new version. Atomic as far as the checks go: a crash in the middle of the
 * writes can leave some objects new and others old (each object is still whole).
 */
int store_txn(store *s, const store_op *ops, size_t nops);

/*
 * The store-wide revision: the highest version ever given out (0 for an empty store). It
 * changes on every successful write, so an unchanged revision means nothing changed.
 */
int store_revision(store *s, uint64_t *ret);

/* Static message for a STORE_* code. */
const char *store_strerror(int code);

/* 1 when kind is one of the fixed kinds, else 0. */
int store_kind_valid(const char *kind);

/* 1 when name is an acceptable mesh or object name, else 0. */
int store_name_valid(const char *name);

#endif
