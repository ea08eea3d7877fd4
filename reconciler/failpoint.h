/* failpoint.h - test-only failpoints: $MESHCA_FAILPOINTS makes a point kill, fail or sleep. */
#ifndef MESHCA_FAILPOINT_H
#define MESHCA_FAILPOINT_H

/*
 * A test facility (doc/reliability.md), compiled in always so the shipped binary is the one the
 * crash tests kill: $MESHCA_FAILPOINTS="NAME=ACTION[,NAME=ACTION...]", read once at start-up.
 * ACTION is
 *   kill       SIGKILL this process at the point (a crash at exactly that instant)
 *   error      the point returns MESHCA_EIO with "failpoint NAME: injected I/O error"
 *   sleep(MS)  wait MS milliseconds (0..600000), then go on; says
 *              "meshca: failpoint NAME: sleeping MS ms" on stderr first
 *   hook       call the function a unit test set with failpoint_set_hook (nothing when none is
 *              set), which may write the store from another handle at exactly that instant
 * optionally prefixed by "N*" to act on the N-th time the point is reached only (1-based;
 * default: every time). Unset or empty, FAILPOINT() costs one predictable branch on a flag.
 * A malformed value is reported once on stderr and arms nothing (so a typo is seen, not silent).
 *
 * The points (see where each is used):
 *   sqlite.commit.before / sqlite.commit.after   around each COMMIT of a SQLite write
 *   etcd.txn.before / etcd.txn.after             around each etcd txn of a store write
 *   etcd.txn.between                             between the parts of a split etcd txn
 *   pass.commit                                  a reconcile pass computed, not yet committed
 *   pass.flush                                   a finished batch's writes about to be added to
 *                                                the pass's open transaction (error: it fails)
 *   pass.sign.batch                              a signing batch signed, not yet finished: its
 *                                                CA refuses it (error), the mesh stops
 *   store.scan.range                             each store_scan_range (a pass reads its
 *                                                identities range by range): it fails (error)
 *   apply.commit                                 an apply validated, not yet committed
 *   csr.commit                                   CSR submissions (a group commit) ready, not
 *                                                yet committed: none was answered 202 yet
 *   csr.submit                                   one CSR's key ready, not yet committed
 *                                                (reconcile_submit_key: the API without the
 *                                                group commit)
 */

/* Most configured points; the names and values are short. */
#define FAILPOINT_MAX 16
#define FAILPOINT_NAME_MAX 48
#define FAILPOINT_SLEEP_MAX_MS 600000

/* Nonzero when $MESHCA_FAILPOINTS armed at least one point. Written only by failpoint_configure. */
extern int failpoint_armed;

/*
 * Replaces the configuration with spec (NULL or "" = none). 0, or MESHCA_EINVAL with the reason
 * in errbuf (MESHCA_ERRBUF bytes, may be NULL) and nothing armed. Not thread-safe: called at
 * start-up (a constructor reads the environment) and by unit tests.
 */
int failpoint_configure(const char *spec, char *errbuf);

/*
 * The function the "hook" action calls (unit tests only: another writer between a read and
 * its commit, deterministically). It returns 0 to go on, or a negative code (and a line in
 * errbuf, which may be NULL) that the point returns. NULL fn unsets it. Not thread-safe: set
 * before the code under test runs.
 */
typedef int (*failpoint_hook_fn)(const char *name, void *ctx, char *errbuf);
void failpoint_set_hook(failpoint_hook_fn fn, void *ctx);

/* The slow path of FAILPOINT: acts when name is configured; 0 otherwise. */
int failpoint_hit(const char *name, char *errbuf);

/* Nonzero while this thread's store writes are not data commits (the leader election of run,
 * reconciler/leader.c): the points neither act nor count there, so "the N-th commit" stays the
 * N-th data commit whatever the election writes meanwhile. */
extern _Thread_local int failpoint_muted;

/* 0, or MESHCA_EIO with a message in errbuf (may be NULL) when the point is set to "error". */
#define FAILPOINT(name, errbuf)                                                                    \
    (__builtin_expect(failpoint_armed, 0) && !failpoint_muted ? failpoint_hit((name), (errbuf)) : 0)

#endif
