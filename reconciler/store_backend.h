/* store_backend.h - the vtable a store backend implements; only store.c and backends include it. */
#ifndef MESHCA_STORE_BACKEND_H
#define MESHCA_STORE_BACKEND_H

#include "reconciler/store.h"

/*
 * store.c validates every key, kind, mesh and argument before calling a backend, and for
 * "meshes"/"meshstatus" passes mesh == name. Backends return STORE_* codes and write their
 * outputs only on success, like the public API.
 */
struct store_ops {
    const char *name;
    int (*get)(void *impl, const store_key *key, char **ret_value, size_t *ret_len, uint64_t *ret_version);
    int (*put)(void *impl, const store_key *key, const char *value, size_t len, uint64_t expected_version,
               uint64_t *ret_version);
    int (*del)(void *impl, const store_key *key, uint64_t expected_version);
    int (*list)(void *impl, const char *kind, const char *mesh, store_entry **ret_entries, size_t *ret_count);
    int (*txn)(void *impl, const store_op *ops, size_t nops);
    int (*revision)(void *impl, uint64_t *ret);
    void (*close)(void *impl);
};

/* file://DIR backend (store_file.c). dir borrowed. */
extern const struct store_ops store_file_ops;
int store_file_open(const char *dir, void **ret_impl, char *errbuf, size_t errlen);

#endif
