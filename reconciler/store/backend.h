/* backend.h - the vtable a store backend implements; only the store front (store.c) and backends include it. */
#ifndef MESHCA_STORE_BACKEND_H
#define MESHCA_STORE_BACKEND_H

#include <poll.h>

#include "reconciler/store.h"

/*
 * store.c validates every URL, key, kind, mesh and argument before calling a backend, passes
 * canonical keys (mesh == name for "meshes"/"meshstatus"), and gives each call a message buffer
 * of MESHCA_ERRBUF bytes (err) for the cause of a failure, which store_errmsg() returns.
 * Backends return STORE_* codes and write their outputs only on success, like the public API.
 */
struct store_ops {
    const char *name;
    int (*get)(void *impl, const store_key *key, char **ret_value, size_t *ret_len, uint64_t *ret_version,
               char *err);
    int (*list)(void *impl, const char *kind, const char *mesh, store_entry **ret_entries, size_t *ret_count,
                char *err);
    /* store_list_keys (value NULL, len 0); NULL: the front scans and drops the values. */
    int (*list_keys)(void *impl, const char *kind, const char *mesh, store_entry **ret_entries,
                     size_t *ret_count, char *err);
    /* store_scan; NULL: the front lists, then calls fn for each entry. */
    int (*scan)(void *impl, const char *kind, const char *mesh, store_scan_fn fn, void *userdata,
                char *err);
    /* store_scan_range (mesh never NULL, from <= to); every backend has it. */
    int (*scan_range)(void *impl, const char *kind, const char *mesh, const char *from,
                      const char *to, store_scan_fn fn, void *userdata, char *err);
    /* Every write (put, delete) reaches the backend as a txn. */
    int (*txn)(void *impl, const store_op *ops, size_t nops, uint64_t *ret_version, char *err);
    int (*revision)(void *impl, uint64_t *ret, char *err);
    int (*watch)(void *impl, uint64_t after, int timeout_ms, store_event **ret_events, size_t *ret_count, char *err);
    /* store_watch_pollfds; NULL = no change descriptor (the caller polls). */
    size_t (*watch_pollfds)(void *impl, struct pollfd *fds, size_t max, long *ret_timeout_ms);
    int (*lease_grant)(void *impl, int64_t ttl_seconds, store_lease_id *ret_id, char *err);
    int (*lease_keepalive)(void *impl, store_lease_id id, char *err);
    int (*lease_revoke)(void *impl, store_lease_id id, char *err);
    /* Most ops one atomic transaction holds (store_txn_limit); NULL = STORE_TXN_MAX. */
    size_t (*txn_limit)(void *impl);
    /* store_txn_open, _add, _close (store.h); NULL: not supported (STORE_EUNSUPPORTED). The front
     * validates each part's ops as for txn and adds the fence's check to each part. */
    /* since: store_txn_open_since's revision, or STORE_NO_REVISION (store_txn_open). */
    int (*txn_open)(void *impl, uint64_t since, char *err);
    int (*txn_add)(void *impl, const store_op *ops, size_t nops, char *err);
    int (*txn_close)(void *impl, int commit, char *err);
    void (*close)(void *impl);
};

/* store_list_keys through the backend's list_keys (arguments checked as store_scan does), or 1
 * when the backend has none (store/list_keys.c then scans). */
int store_backend_list_keys(store *s, const char *kind, const char *mesh_name,
                            store_entry **ret_entries, size_t *ret_count);

/*
 * Opens a backend from the rest of the URL after "scheme://" (borrowed) and the open options
 * (borrowed, never NULL: the front fills them from the environment). Writes the reason to err
 * (MESHCA_ERRBUF bytes) on failure.
 */
typedef int (*store_open_fn)(const char *rest, const store_open_options *opts, const struct store_ops **ret_ops,
                             void **ret_impl, char *err);

/* sqlite://PATH (store_sqlite.c). */
int store_sqlite_open(const char *path, const struct store_ops **ret_ops, void **ret_impl, char *err);

/* etcd://HOST:PORT[,...][?max-txn-ops=N] (tls 0) and etcds:// (tls 1) (store_etcd.c). */
int store_etcd_open(const char *rest, int tls, const store_open_options *opts, const struct store_ops **ret_ops,
                    void **ret_impl, char *err);

#endif
