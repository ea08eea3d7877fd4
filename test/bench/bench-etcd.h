/* bench-etcd.h - bench-all's reconcile figures on etcd: throwaway members, etcd's own put rate as the bound. */
#ifndef MESHCA_BENCH_ETCD_H
#define MESHCA_BENCH_ETCD_H

#include <stdbool.h>

#include <jansson.h>

/*
 * Starts a one-member etcd (test/etcd-harness.c: 127.0.0.1, free ports, a temporary data dir,
 * etcd's defaults: --max-txn-ops 128, 2 GiB quota) and measures its put rate through the store
 * (store_txn of full-size txns of 2 KiB values, new keys: what a full pass writes), then for
 * each size (10,000, and 100,000 when large) a fresh member with `bench-reconcile N` run against
 * it (BENCH_STORE), each member stopped and removed after. bench_dir: where bench-reconcile is.
 * Returns the JSON object, or NULL with a one-line reason in why (etcd not installed, a member
 * that did not start, bench-reconcile failing).
 */
json_t *bench_etcd(const char *bench_dir, const char *tmpdir, bool large, char *why, size_t whylen);

#endif
