/* leader.h - leader election of `meshca run` replicas on any store: a leader key with a lease, renewed, fencing writes. */
#ifndef MESHCA_LEADER_H
#define MESHCA_LEADER_H

#include <stdbool.h>
#include <stdint.h>

#include "manifests/error.h"
#include "reconciler/store.h"

/* The leader key: one per store, put create-only with the leader's lease. */
#define LEADER_KIND "controlplane"
#define LEADER_MESH "meshca"
#define LEADER_NAME "leader"

#define LEADER_DEFAULT_TTL_S 10

/* A follower steps at least this often, so that it sees a dead leader's key vanish soon. */
#define LEADER_FOLLOW_STEP_MS 250

/*
 * The lease a replica asks for, given the takeover bound `--lease-ttl` promises (a dead leader
 * is replaced within takeover_s): shorter by a third, at least a second. That margin covers the
 * time followers take to notice the lease ended: their step (LEADER_FOLLOW_STEP_MS) and the
 * store's own expiry (etcd ends leases on a 500 ms timer). At least 1.
 */
int64_t leader_lease_for_takeover(int64_t takeover_s);

/*
 * How it works (doc/controller.md): a replica that finds no leader key grants a lease of ttl
 * seconds and puts the key create-only with it (its identity: "host:pid" and its API URL); the
 * one whose put lands leads. The leader renews the lease every ttl/3 (the caller's timer) and
 * fences each pass's writes on the key's version (leader_fence); it stops leading, and its
 * writes are refused, from ttl*9/10 after the start of its last successful renewal by its own
 * clock, before the store can end the lease. When the lease ends the key vanishes and the next
 * step of a follower takes it.
 *
 * Clocks: every now_ms is CLOCK_MONOTONIC milliseconds (leader_now_ms), injectable by tests.
 */
typedef struct leader_elector leader_elector;

/* Renewal failures and losses beyond this fraction (in 1/10s of the ttl) stop the leader. */
#define LEADER_DEADLINE_TENTHS 9

/* CLOCK_MONOTONIC in milliseconds. */
int64_t leader_now_ms(void);

/*
 * A new elector on store s (borrowed; must outlive it). id: this replica ("host:pid", at most
 * 255 bytes), api: its dataplane API URL (or NULL); ttl_s 1..STORE_LEASE_TTL_MAX. Does not touch
 * the store. MESHCA_EINVAL / MESHCA_ENOMEM with a line in errbuf.
 */
int leader_new(store *s, const char *id, const char *api, int64_t ttl_s, leader_elector **ret,
               char *errbuf);

/*
 * One election step at now_ms: a leader renews its lease (and checks its key is still its own);
 * a follower reads the key and takes it when it is absent. *ret_changed (may be NULL) is set
 * when the role or the leader seen changed since the last step. Returns 0, or the store's code
 * when it could not be reached (STORE_EUNAVAILABLE, STORE_EIO) with a line in errbuf; a leader
 * stays leader through failed renewals until its deadline.
 */
int leader_step(leader_elector *e, int64_t now_ms, bool *ret_changed, char *errbuf);

/* Whether this replica leads at now_ms (false past the deadline even before the next step). */
bool leader_leading(const leader_elector *e, int64_t now_ms);

/* The identity of the leader as last seen ("" when unknown or none); borrowed. */
const char *leader_holder(const leader_elector *e);
/* Its API URL as last seen ("" when unknown); borrowed. */
const char *leader_holder_api(const leader_elector *e);

/* The leader key's version while leading (the fence), else 0. */
uint64_t leader_version(const leader_elector *e);

/*
 * Fences every following write on the store handle on leadership (store_fence with the key's
 * version and the deadline). STORE_ECONFLICT when not leading at now_ms (nothing set). Clear
 * with leader_unfence after the writes.
 */
int leader_fence(leader_elector *e, int64_t now_ms);
void leader_unfence(leader_elector *e);
/* leader_fence on another handle on the same store (the controller's pass thread), which must
 * outlive the fence; cleared with store_fence(s, NULL, 0, NULL). Any thread. */
int leader_fence_store(leader_elector *e, store *s, int64_t now_ms);

/*
 * Renews the lease on a thread of its own every ttl/3, on rs (a second handle on the same store,
 * borrowed, used by that thread only, outliving the elector), so that a pass longer than the ttl
 * on the caller's thread keeps the leadership; the fence's deadline moves with each renewal. The
 * caller's own steps go on as before (they also check the key). Stopped by leader_free.
 */
int leader_renewer_start(leader_elector *e, store *rs, char *errbuf);
/* How many keepalives the renewer thread has sent (one per ttl/3 while leading). */
unsigned long leader_renewals(const leader_elector *e);

/* Resigns (revokes the lease, so the key vanishes at once: a follower takes over without
 * waiting for the ttl) and frees. Accepts NULL. */
void leader_free(leader_elector *e);

/*
 * Who leads the store now, for inspect: *ret_id and *ret_api (malloc'ed, caller frees; api may
 * be "") of the leader key. STORE_ENOTFOUND when nobody leads; other store codes; MESHCA_ECORRUPT
 * when the key does not hold what leader_step writes.
 */
int leader_read(store *s, char **ret_id, char **ret_api, char *errbuf);

#endif
