/* test-etcd.c - Check suite for the etcd client against a real etcd: kv, pagination, txn, watch,
 * leases, failover. */
#define _GNU_SOURCE 1
#include "reconciler/store/etcd_client.h"
#include "reconciler/store/etcd_keys.h"

#include "etcd-harness.h"

#include <check.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static harness shared; /* one member for the tests that do not kill anything */
static harness own;    /* a member or cluster of the test's own, for the tests that do */

static void shared_up(void)
{
    if (harness_start(&shared, 1) < 0) {
        fprintf(stderr, "cannot start etcd\n");
        exit(2);
    }
}

static void shared_down(void)
{
    harness_stop(&shared);
}

static void one_up(void)
{
    ck_assert_int_eq(harness_start(&own, 1), 0);
}

static void three_up(void)
{
    ck_assert_int_eq(harness_start(&own, 3), 0);
}

static void own_down(void)
{
    harness_stop(&own);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static etcd_client *client_for(const char *endpoints, size_t page_limit)
{
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    char err[MESHCA_ERRBUF] = "";

    o.endpoints = endpoints;
    o.page_limit = page_limit;
    o.connect_timeout_ms = 500;
    o.request_timeout_ms = 10000; /* an election on a loaded machine can take seconds */
    o.rounds = 2;
    o.backoff_initial_ms = 50;
    o.backoff_max_ms = 200;
    ck_assert_msg(etcd_client_new(&o, &c, err) == 0, "etcd_client_new: %s", err);
    return c;
}

static int64_t put_s(etcd_client *c, const char *key, const char *value)
{
    char err[MESHCA_ERRBUF] = "";
    int64_t rev = 0;
    int r = etcd_put(c, key, strlen(key), value, strlen(value), 0, &rev, err);

    ck_assert_msg(r == 0, "put %s: %d %s", key, r, err);
    ck_assert_int_gt(rev, 0);
    return rev;
}

/* 1 when key exists. */
static int exists(etcd_client *c, const char *key)
{
    char err[MESHCA_ERRBUF] = "";
    etcd_kv *kv = NULL;
    int r = etcd_get(c, key, strlen(key), &kv, NULL, err);

    ck_assert_msg(r == 0 || r == ETCD_ENOTFOUND, "get %s: %d %s", key, r, err);
    etcd_kvs_free(kv, r == 0 ? 1 : 0);
    return r == 0;
}

/* Reads events until want have arrived or 10 s pass (bounded). */
static size_t collect(etcd_watch *w, etcd_event *out, size_t want)
{
    size_t got = 0;
    int64_t deadline = now_ms() + 10000;

    while (got < want && now_ms() < deadline) {
        etcd_event *ev = NULL;
        size_t n = 0;
        char err[MESHCA_ERRBUF] = "";
        int r = etcd_watch_next(w, 500, &ev, &n, NULL, err);

        ck_assert_msg(r == 0 || r == ETCD_EUNAVAILABLE, "watch: %d %s", r, err);
        for (size_t i = 0; i < n; i++) {
            ck_assert_msg(got < want, "more events than expected: extra %.*s",
                          (int)ev[i].kv.key_len, ev[i].kv.key);
            out[got] = ev[i];
            memset(&ev[i].kv, 0, sizeof(ev[i].kv)); /* moved to out */
            got++;
        }
        etcd_events_free(ev, n);
    }
    return got;
}

static void free_events(etcd_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(ev[i].kv.key);
        free(ev[i].kv.value);
    }
}

START_TEST(put_get_and_range_paginate_over_more_keys_than_the_page_limit)
{
    etcd_client *c = client_for(shared.endpoints, 7);
    char key[64], err[MESHCA_ERRBUF] = "";
    const char bin[] = "v\0with\0nul\xff";
    etcd_kv *kv = NULL, *kvs = NULL;
    size_t n = 0;
    int64_t rev = 0, last = 0, read_rev = 0;

    /* 50 keys, 7 per page: without pagination only the first page would come back. */
    for (int i = 49; i >= 0; i--) {
        snprintf(key, sizeof(key), "/t/page/k%03d", i);
        last = put_s(c, key, key);
    }
    put_s(c, "/t/page", "outside: the prefix itself is not under /t/page/");
    put_s(c, "/t/page0", "outside");
    ck_assert_int_eq(etcd_put(c, "/t/page/bin", 11, bin, sizeof(bin), 0, &rev, err), 0);
    ck_assert_int_gt(rev, last);

    ck_assert_int_eq(etcd_range(c, "/t/page/", 8, NULL, 0, &kvs, &n, &read_rev, err), 0);
    ck_assert_uint_eq(n, 51);
    ck_assert_int_ge(read_rev, rev);
    ck_assert_int_eq(kvs[0].key_len, 11);
    ck_assert_int_eq(memcmp(kvs[0].key, "/t/page/bin", 11), 0);
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "/t/page/k%03d", i);
        ck_assert_str_eq(kvs[i + 1].key, key);
        ck_assert_str_eq(kvs[i + 1].value, key);
        ck_assert_int_gt(kvs[i + 1].mod_revision, 0);
        ck_assert_int_eq(kvs[i + 1].version, 1);
    }
    etcd_kvs_free(kvs, n);

    /* Values are bytes: NUL and 0xff come back unchanged, with the put's revision. */
    ck_assert_int_eq(etcd_get(c, "/t/page/bin", 11, &kv, NULL, err), 0);
    ck_assert_uint_eq(kv->value_len, sizeof(bin));
    ck_assert_int_eq(memcmp(kv->value, bin, sizeof(bin)), 0);
    ck_assert_int_eq(kv->mod_revision, rev);
    ck_assert_int_eq(kv->create_revision, rev);
    etcd_kvs_free(kv, 1);
    kv = NULL;

    ck_assert_int_eq(etcd_get(c, "/t/page/absent", 14, &kv, NULL, err), ETCD_ENOTFOUND);
    ck_assert_ptr_null(kv);
    etcd_client_free(c);
}
END_TEST

/* etcd 3.4 collects every key of a range before applying its limit (the answer's "count"), so
 * pages that each run to the end of the prefix cost O(keys left): 64 + 60 + ... + 4 = 544 keys
 * for 64 keys in pages of 4. A listing bounded by its keys costs the first page, one keys-only
 * page and the value pages, 64 + 60 + 60 = 184: at most 3 keys per key listed. */
START_TEST(range_over_many_pages_costs_etcd_linear_work_and_reads_one_snapshot)
{
    etcd_client *c = client_for(shared.endpoints, 4), *small = NULL;
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    char key[64], value[64], err[MESHCA_ERRBUF] = "";
    etcd_kv *kvs = NULL;
    size_t n = 0;
    int64_t read_rev = 0, rev = 0;
    uint64_t before;

    for (int i = 0; i < 64; i++) {
        snprintf(key, sizeof(key), "/t/lin/k%03d", i);
        snprintf(value, sizeof(value), "v%d", i);
        rev = put_s(c, key, value);
    }
    put_s(c, "/t/lin0", "outside the prefix");
    before = etcd_client_range_keys(c);
    ck_assert_int_eq(etcd_range(c, "/t/lin/", 7, NULL, 0, &kvs, &n, &read_rev, err), 0);
    ck_assert_uint_eq(n, 64);
    ck_assert_int_gt(read_rev, rev); /* the put of /t/lin0 came after the last key */
    for (int i = 0; i < 64; i++) {
        snprintf(key, sizeof(key), "/t/lin/k%03d", i);
        snprintf(value, sizeof(value), "v%d", i);
        ck_assert_str_eq(kvs[i].key, key);
        ck_assert_str_eq(kvs[i].value, value);
        ck_assert_uint_eq(kvs[i].value_len, strlen(value));
        ck_assert_int_eq(kvs[i].version, 1);
    }
    etcd_kvs_free(kvs, n);
    ck_assert_uint_le(etcd_client_range_keys(c) - before, 3 * 64);
    ck_assert_uint_ge(etcd_client_range_keys(c) - before, 64);

    /* The keys listed in several keys-only pages (8 keys each) give the same snapshot; keys
     * written after it (a new one, a changed value) are not in it. */
    o.endpoints = shared.endpoints;
    o.page_limit = 4;
    o.keys_page_limit = 8;
    ck_assert_msg(etcd_client_new(&o, &small, err) == 0, "etcd_client_new: %s", err);
    ck_assert_int_eq(etcd_range(small, "/t/lin/", 7, NULL, 0, &kvs, &n, &read_rev, err), 0);
    ck_assert_uint_eq(n, 64);
    for (int i = 0; i < 64; i++) {
        snprintf(value, sizeof(value), "v%d", i);
        ck_assert_str_eq(kvs[i].value, value);
    }
    etcd_kvs_free(kvs, n);
    put_s(c, "/t/lin/k010", "changed");
    put_s(c, "/t/lin/k999", "new");
    ck_assert_int_eq(etcd_range(small, "/t/lin/", 7, NULL, 0, &kvs, &n, &read_rev, err), 0);
    ck_assert_uint_eq(n, 65);
    ck_assert_str_eq(kvs[10].value, "changed");
    ck_assert_str_eq(kvs[64].key, "/t/lin/k999");
    etcd_kvs_free(kvs, n);
    /* A listing that fits one page is that one request (etcd counts its 4 keys). */
    before = etcd_client_range_keys(small);
    ck_assert_int_eq(etcd_range(small, "/t/lin/k06", 10, NULL, 0, &kvs, &n, NULL, err), 0);
    ck_assert_uint_eq(n, 4);
    ck_assert_str_eq(kvs[3].key, "/t/lin/k063");
    etcd_kvs_free(kvs, n);
    ck_assert_uint_eq(etcd_client_range_keys(small) - before, 4);
    etcd_client_free(small);
    etcd_client_free(c);
}
END_TEST

/* A store txn as the etcd backend will send it: one compare per op from etcd_keys_expect,
 * failure branch reading every key so etcd_keys_explain_failure can say which op failed. */
static int store_txn(etcd_client *c, const char *key, const char *value, uint64_t expected,
                     int is_delete, size_t *ret_index, int64_t *ret_rev)
{
    etcd_compare cmp;
    etcd_op op = {.type = is_delete ? ETCD_OP_DELETE : ETCD_OP_PUT,
                  .key = key,
                  .key_len = strlen(key),
                  .value = value,
                  .value_len = value ? strlen(value) : 0};
    etcd_op get = {.type = ETCD_OP_GET, .key = key, .key_len = strlen(key)};
    etcd_keys_check check = {expected, is_delete};
    int ncmp = etcd_keys_expect(key, strlen(key), expected, is_delete, &cmp);
    etcd_txn_request t = {&cmp, (size_t)ncmp, &op, 1, &get, 1};
    etcd_txn_result res = {0};
    char err[MESHCA_ERRBUF] = "";
    int r;

    ck_assert_int_ge(ncmp, 0);
    r = etcd_txn(c, &t, &res, err);
    ck_assert_msg(r == 0 || r == ETCD_ECONFLICT, "txn: %d %s", r, err);
    if (r == ETCD_ECONFLICT) {
        ck_assert_int_eq(res.succeeded, 0);
        r = etcd_keys_explain_failure(&check, 1, res.gets, res.ngets, 0, 0, ret_index);
    } else {
        ck_assert_int_eq(res.succeeded, 1);
        *ret_rev = res.revision;
    }
    etcd_txn_result_free(&res);
    return r;
}

/* More keys than the listing's first allocation (256) read through value pages two at a time
 * (the default): the listing grows as the pairs' pages are moved into it, and holds every key
 * once, in order, with its value (the ASan build checks the growth). */
START_TEST(range_in_parallel_pages_over_more_keys_than_its_first_allocation)
{
    etcd_client *c = client_for(shared.endpoints, 4);
    char key[64], value[64], err[MESHCA_ERRBUF] = "";
    etcd_kv *kvs = NULL;
    size_t n = 0;
    int64_t read_rev = 0, rev = 0;

    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "/t/par/k%03d", i);
        snprintf(value, sizeof(value), "v%d", i);
        rev = put_s(c, key, value);
    }
    ck_assert_msg(etcd_range(c, "/t/par/", 7, NULL, 0, &kvs, &n, &read_rev, err) == 0, "%s", err);
    ck_assert_uint_eq(n, 300);
    ck_assert_int_ge(read_rev, rev);
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "/t/par/k%03d", i);
        snprintf(value, sizeof(value), "v%d", i);
        ck_assert_str_eq(kvs[i].key, key);
        ck_assert_str_eq(kvs[i].value, value);
    }
    etcd_kvs_free(kvs, n);
    etcd_client_free(c);
}
END_TEST

START_TEST(txn_cas_on_mod_revision_succeeds_then_conflicts_when_stale)
{
    etcd_client *c = client_for(shared.endpoints, 100);
    const char *k = "/meshca/dataplanes/default/web-01";
    size_t idx = 99;
    int64_t v1 = 0, v2 = 0, unused = 0;
    etcd_kv *kv = NULL;
    char err[MESHCA_ERRBUF];

    /* expected 0: create only when absent. */
    ck_assert_int_eq(store_txn(c, k, "one", 0, 0, &idx, &v1), 0);
    ck_assert_int_eq(store_txn(c, k, "again", 0, 0, &idx, &unused), ETCD_ECONFLICT);
    ck_assert_uint_eq(idx, 0);
    /* expected = the current mod_revision: the write goes through, with a new revision. */
    ck_assert_int_eq(store_txn(c, k, "two", (uint64_t)v1, 0, &idx, &v2), 0);
    ck_assert_int_gt(v2, v1);
    /* The version read before someone else wrote: conflict, nothing written. */
    idx = 99;
    ck_assert_int_eq(store_txn(c, k, "lost", (uint64_t)v1, 0, &idx, &unused), ETCD_ECONFLICT);
    ck_assert_uint_eq(idx, 0);
    ck_assert_int_eq(etcd_get(c, k, strlen(k), &kv, NULL, err), 0);
    ck_assert_str_eq(kv->value, "two");
    ck_assert_int_eq(kv->mod_revision, v2);
    etcd_kvs_free(kv, 1);
    /* Delete with a stale version conflicts; with the right one it deletes; then not found. */
    ck_assert_int_eq(store_txn(c, k, NULL, (uint64_t)v1, 1, &idx, &unused), ETCD_ECONFLICT);
    ck_assert_int_eq(store_txn(c, k, NULL, (uint64_t)v2, 1, &idx, &unused), 0);
    ck_assert_int_eq(store_txn(c, k, NULL, ETCD_KEYS_ANY_VERSION, 1, &idx, &unused),
                     ETCD_ENOTFOUND);
    ck_assert_int_eq(exists(c, k), 0);
    etcd_client_free(c);
}
END_TEST

START_TEST(fenced_write_is_refused_once_the_leader_key_is_not_on_our_lease)
{
    etcd_client *c = client_for(shared.endpoints, 100);
    char err[MESHCA_ERRBUF] = "";
    int64_t lease = 0, other = 0;
    etcd_compare cmp[2];
    etcd_op put, get, gets[2];
    etcd_txn_request campaign = {cmp, 1, &put, 1, &get, 1};
    etcd_txn_result res = {0};
    const char *k = "/meshca/secrets/default/s1";
    etcd_op w = {.type = ETCD_OP_PUT, .key = k, .key_len = strlen(k), .value = "x", .value_len = 1};
    etcd_keys_check check = {ETCD_KEYS_ANY_VERSION, 0};
    etcd_txn_request write = {cmp, 1, &w, 1, gets, 2};
    size_t idx = 0;

    ck_assert_int_eq(etcd_lease_grant(c, 30, &lease, NULL, err), 0);
    ck_assert_int_eq(etcd_lease_grant(c, 30, &other, NULL, err), 0);
    /* Campaign: the first replica takes the key, the second finds it taken. */
    etcd_keys_campaign("replica-a", 9, lease, &cmp[0], &put, &get);
    ck_assert_int_eq(etcd_txn(c, &campaign, NULL, err), 0);
    etcd_keys_campaign("replica-b", 9, other, &cmp[0], &put, &get);
    ck_assert_int_eq(etcd_txn(c, &campaign, &res, err), ETCD_ECONFLICT);
    ck_assert_uint_eq(res.ngets, 1);
    ck_assert_str_eq(res.gets[0].kvs[0].value, "replica-a");
    etcd_txn_result_free(&res);

    /* The leader's write carries the fence and goes through. */
    gets[0] = get;
    gets[1] = (etcd_op){.type = ETCD_OP_GET, .key = k, .key_len = strlen(k)};
    etcd_keys_fence(lease, &cmp[0]);
    ck_assert_int_eq(etcd_txn(c, &write, NULL, err), 0);
    /* Its lease gone (revoked here, expired in life), the same write is refused at once. */
    ck_assert_int_eq(etcd_lease_revoke(c, lease, err), 0);
    ck_assert_int_eq(etcd_txn(c, &write, &res, err), ETCD_ECONFLICT);
    ck_assert_int_eq(etcd_keys_explain_failure(&check, 1, res.gets, res.ngets, 1, lease, &idx),
                     MESHCA_ESTATE);
    ck_assert_uint_eq(idx, SIZE_MAX);
    etcd_txn_result_free(&res);
    ck_assert_int_eq(etcd_lease_revoke(c, other, err), 0);
    etcd_client_free(c);
}
END_TEST

START_TEST(deleterange_removes_exactly_the_prefix)
{
    etcd_client *c = client_for(shared.endpoints, 100);
    char key[64], err[MESHCA_ERRBUF] = "", end[64];
    int64_t deleted = 0;
    size_t end_len;

    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof(key), "/t/del/%d", i);
        put_s(c, key, "x");
    }
    put_s(c, "/t/del0", "sibling");
    end_len = etcd_prefix_end("/t/del/", 7, end);
    ck_assert_int_eq(etcd_delete_range(c, "/t/del/", 7, end, end_len, &deleted, NULL, err), 0);
    ck_assert_int_eq(deleted, 5);
    ck_assert_int_eq(exists(c, "/t/del/0"), 0);
    ck_assert_int_eq(exists(c, "/t/del0"), 1);
    /* Without range_end only the key itself goes. */
    ck_assert_int_eq(etcd_delete_range(c, "/t/del0", 7, NULL, 0, &deleted, NULL, err), 0);
    ck_assert_int_eq(deleted, 1);
    etcd_client_free(c);
}
END_TEST

START_TEST(watch_from_a_revision_receives_every_event_after_it_in_order)
{
    etcd_client *c = client_for(shared.endpoints, 100);
    char err[MESHCA_ERRBUF] = "";
    etcd_watch *w = NULL;
    etcd_event ev[4];
    int64_t r1, r2, r3, r4, deleted = 0;

    r1 = put_s(c, "/t/watch/a", "1");
    r2 = put_s(c, "/t/watch/b", "2");
    ck_assert_int_eq(etcd_delete_range(c, "/t/watch/a", 10, NULL, 0, &deleted, &r3, err), 0);
    put_s(c, "/t/watchx", "outside the prefix");
    ck_assert_int_eq(etcd_watch_new(c, "/t/watch/", 9, NULL, 0, r2, &w, err), 0);
    ck_assert_uint_eq(collect(w, ev, 2), 2);
    ck_assert_str_eq(ev[0].kv.key, "/t/watch/b");
    ck_assert_int_eq(ev[0].type, ETCD_EVENT_PUT);
    ck_assert_str_eq(ev[0].kv.value, "2");
    ck_assert_int_eq(ev[0].kv.mod_revision, r2);
    ck_assert_str_eq(ev[1].kv.key, "/t/watch/a");
    ck_assert_int_eq(ev[1].type, ETCD_EVENT_DELETE);
    ck_assert_int_eq(ev[1].kv.mod_revision, r3);
    ck_assert_int_eq(etcd_watch_next_revision(w), r3 + 1);
    free_events(ev, 2);
    /* A later write arrives on the open stream. */
    r4 = put_s(c, "/t/watch/c", "3");
    ck_assert_uint_eq(collect(w, ev, 1), 1);
    ck_assert_str_eq(ev[0].kv.key, "/t/watch/c");
    ck_assert_int_eq(ev[0].kv.mod_revision, r4);
    free_events(ev, 1);
    ck_assert_int_gt(r1, 0);
    etcd_watch_free(w);
    etcd_client_free(c);
}
END_TEST

START_TEST(watch_in_an_event_loop_waits_on_its_sockets_without_blocking)
{
    etcd_client *c = client_for(shared.endpoints, 100);
    char err[MESHCA_ERRBUF] = "";
    etcd_watch *w = NULL;
    etcd_event *ev = NULL;
    size_t n = 0, got = 0;
    int64_t start = put_s(c, "/t/loop/x", "0"), deadline;
    struct pollfd fds[4];
    long timeout = 0;
    int idle_polls = 0, readable = 0;

    ck_assert_int_eq(etcd_watch_new(c, "/t/loop/", 8, NULL, 0, start + 1, &w, err), 0);
    /* No stream yet: the loop is told to call at once. */
    ck_assert_uint_eq(etcd_watch_pollfds(w, fds, 4, &timeout), 0);
    ck_assert_int_eq(timeout, 0);
    /* Connect; then, with nothing written, the stream's socket stays quiet. */
    deadline = now_ms() + 10000;
    while (now_ms() < deadline && idle_polls < 3) {
        size_t nf = etcd_watch_pollfds(w, fds, 4, &timeout);
        int r = poll(fds, nf, timeout < 0 || timeout > 300 ? 300 : (int)timeout);

        ck_assert_int_ge(r, 0);
        if (nf > 0 && r == 0)
            idle_polls++;
        ck_assert_int_eq(etcd_watch_next(w, 0, &ev, &n, NULL, err), 0);
        ck_assert_uint_eq(n, 0);
    }
    ck_assert_int_eq(idle_polls, 3);
    /* A write makes the socket readable, and the non-blocking call delivers it. */
    put_s(c, "/t/loop/y", "1");
    deadline = now_ms() + 10000;
    while (got == 0 && now_ms() < deadline) {
        size_t nf = etcd_watch_pollfds(w, fds, 4, &timeout);
        int r = poll(fds, nf, timeout < 0 || timeout > 1000 ? 1000 : (int)timeout);
        int64_t t0 = now_ms();

        ck_assert_int_ge(r, 0);
        if (r > 0 && (fds[0].revents & POLLIN))
            readable = 1;
        ck_assert_int_eq(etcd_watch_next(w, 0, &ev, &n, NULL, err), 0);
        ck_assert_int_lt(now_ms() - t0, 200); /* the loop's call never waits */
        if (n > 0) {
            ck_assert_uint_eq(n, 1);
            ck_assert_str_eq(ev[0].kv.key, "/t/loop/y");
            got = n;
        }
        etcd_events_free(ev, n);
    }
    ck_assert_uint_eq(got, 1);
    ck_assert_msg(readable, "the event came without its socket turning readable");
    etcd_watch_free(w);
    etcd_client_free(c);
}
END_TEST

START_TEST(watch_from_a_compacted_revision_reports_compacted)
{
    etcd_client *c = client_for(shared.endpoints, 100);
    char err[MESHCA_ERRBUF] = "";
    etcd_watch *w = NULL;
    etcd_event *ev = NULL;
    size_t n = 0;
    int64_t old = put_s(c, "/t/compact/k", "1"), now, compact = 0;
    int64_t deadline = now_ms() + 10000;
    int r = 0;

    put_s(c, "/t/compact/k", "2");
    now = put_s(c, "/t/compact/k", "3");
    ck_assert_int_eq(etcd_compact(c, now, 1, err), 0);
    ck_assert_int_eq(etcd_watch_new(c, "/t/compact/", 11, NULL, 0, old, &w, err), 0);
    while (r == 0 && now_ms() < deadline) {
        r = etcd_watch_next(w, 500, &ev, &n, &compact, err);
        ck_assert_msg(r != 0 || n == 0, "events from a compacted revision");
    }
    ck_assert_int_eq(r, ETCD_ECOMPACTED);
    ck_assert_int_eq(compact, now);
    ck_assert_ptr_nonnull(strstr(err, "compacted"));
    /* It stays reported: the caller must re-read, not get silence. */
    ck_assert_int_eq(etcd_watch_next(w, 0, &ev, &n, NULL, err), ETCD_ECOMPACTED);
    etcd_watch_free(w);
    etcd_client_free(c);
}
END_TEST

START_TEST(lease_keepalive_keeps_keys_and_expiry_removes_them)
{
    etcd_client *c = client_for(shared.endpoints, 100);
    char err[MESHCA_ERRBUF] = "";
    int64_t lease = 0, ttl = 0, gone = 0;
    int64_t start, deadline;

    ck_assert_int_eq(etcd_lease_grant(c, 2, &lease, &ttl, err), 0);
    ck_assert_int_eq(ttl, 2);
    ck_assert_int_eq(etcd_put(c, "/t/lease/k", 10, "v", 1, lease, NULL, err), 0);
    /* Kept alive for twice its TTL: still there. */
    start = now_ms();
    while (now_ms() - start < 4000) {
        int64_t got = 0;
        ck_assert_msg(etcd_lease_keepalive(c, lease, &got, err) == 0, "keepalive: %s", err);
        ck_assert_int_gt(got, 0);
        usleep(500 * 1000);
    }
    ck_assert_int_eq(exists(c, "/t/lease/k"), 1);
    /* Left alone, it expires and takes its key with it (bounded wait). */
    deadline = now_ms() + 10000;
    while (exists(c, "/t/lease/k") && now_ms() < deadline)
        usleep(200 * 1000);
    ck_assert_int_eq(exists(c, "/t/lease/k"), 0);
    ck_assert_int_eq(etcd_lease_keepalive(c, lease, NULL, err), ETCD_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err, "expired"));
    /* Revoke removes attached keys at once. */
    ck_assert_int_eq(etcd_lease_grant(c, 60, &gone, NULL, err), 0);
    ck_assert_int_eq(etcd_put(c, "/t/lease/r", 10, "v", 1, gone, NULL, err), 0);
    ck_assert_int_eq(etcd_lease_revoke(c, gone, err), 0);
    ck_assert_int_eq(exists(c, "/t/lease/r"), 0);
    ck_assert_int_eq(etcd_lease_revoke(c, gone, err), ETCD_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err, "lease not found"));
    etcd_client_free(c);
}
END_TEST

START_TEST(etcd_refusals_keep_their_class_and_etcds_message)
{
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    char err[MESHCA_ERRBUF] = "", key[32][16];
    etcd_op ops[130];
    etcd_txn_request t = {NULL, 0, ops, 129, NULL, 0};

    for (int i = 0; i < 129; i++) {
        snprintf(key[i % 32], sizeof(key[0]), "/t/ops/%d", i % 32);
        ops[i] = (etcd_op){.type = ETCD_OP_GET, .key = key[i % 32], .key_len = strlen(key[i % 32])};
    }
    /* A client told the cluster allows more ops than it does: etcd's own refusal comes back. */
    o.endpoints = shared.endpoints;
    o.max_txn_ops = 1000;
    ck_assert_int_eq(etcd_client_new(&o, &c, err), 0);
    ck_assert_int_eq(etcd_txn(c, &t, NULL, err), ETCD_EINVAL);
    ck_assert_msg(strstr(err, "too many operations in txn request") &&
                      strstr(err, shared.endpoints),
                  "%s", err);
    /* Duplicate keys among puts: etcd refuses, same class. */
    ops[0] =
        (etcd_op){.type = ETCD_OP_PUT, .key = "/t/dup", .key_len = 6, .value = "a", .value_len = 1};
    ops[1] = ops[0];
    t.nsuccess = 2;
    ck_assert_int_eq(etcd_txn(c, &t, NULL, err), ETCD_EINVAL);
    ck_assert_msg(strstr(err, "duplicate key"), "%s", err);
    etcd_client_free(c);
}
END_TEST

START_TEST(watch_resumes_after_a_dropped_connection_without_loss_or_repeat)
{
    etcd_client *c = client_for(own.endpoints, 100);
    char err[MESHCA_ERRBUF] = "";
    etcd_watch *w = NULL;
    etcd_event ev[3];
    int64_t start = put_s(c, "/t/resume/before", "0");
    int64_t ra, rb, rc;

    ck_assert_int_eq(etcd_watch_new(c, "/t/resume/", 10, NULL, 0, start + 1, &w, err), 0);
    ra = put_s(c, "/t/resume/a", "1");
    ck_assert_uint_eq(collect(w, ev, 1), 1);
    ck_assert_str_eq(ev[0].kv.key, "/t/resume/a");
    free_events(ev, 1);
    /* The member dies under the open stream; writes happen before the watch is read again,
     * so only a resume from the last revision seen (not "now", not the start) gets exactly
     * b and c. */
    ck_assert_int_eq(harness_restart(&own, 0), 0);
    rb = put_s(c, "/t/resume/b", "2");
    rc = put_s(c, "/t/resume/c", "3");
    ck_assert_int_gt(rb, ra);
    ck_assert_uint_eq(collect(w, ev, 2), 2);
    ck_assert_str_eq(ev[0].kv.key, "/t/resume/b");
    ck_assert_int_eq(ev[0].kv.mod_revision, rb);
    ck_assert_str_eq(ev[1].kv.key, "/t/resume/c");
    ck_assert_int_eq(ev[1].kv.mod_revision, rc);
    free_events(ev, 2);
    /* And nothing else: no repeat of a. */
    {
        etcd_event *more = NULL;
        size_t n = 0;
        ck_assert_int_eq(etcd_watch_next(w, 300, &more, &n, NULL, err), 0);
        ck_assert_uint_eq(n, 0);
    }
    etcd_watch_free(w);
    etcd_client_free(c);
}
END_TEST

START_TEST(with_one_of_three_members_killed_ops_and_watch_go_through_another)
{
    etcd_client *c = client_for(own.endpoints, 2);
    char err[MESHCA_ERRBUF] = "";
    etcd_watch *w = NULL;
    etcd_event ev[3], *none = NULL;
    etcd_kv *kvs = NULL;
    size_t n = 0;
    int64_t r0 = put_s(c, "/t/fo/a", "1"), r1, t0;
    etcd_compare cmp;
    etcd_op op = {
        .type = ETCD_OP_PUT, .key = "/t/fo/a", .key_len = 7, .value = "2", .value_len = 1};
    etcd_txn_request t = {&cmp, 1, &op, 1, NULL, 0};

    /* The watch streams from member 0 (the first endpoint), which then dies. */
    ck_assert_int_eq(etcd_watch_new(c, "/t/fo/", 6, NULL, 0, r0 + 1, &w, err), 0);
    ck_assert_int_eq(etcd_watch_next(w, 500, &none, &n, NULL, err), 0);
    ck_assert_uint_eq(n, 0);
    /* If member 0 led, the others elect a new leader first; a write sent in between goes to
     * the dead leader and times out inside etcd (outcome unknown), which callers retry. Wait
     * until both survivors name a leader other than member 0, through a second client, so
     * that c itself still starts at the dead member and must fail over. */
    {
        etcd_client *probe = client_for(own.endpoints, 100);
        etcd_member_status st0, st;
        int64_t deadline = now_ms() + 20000;
        int settled = 0;

        ck_assert_int_eq(etcd_member_status_get(probe, 0, &st0, err), 0);
        harness_kill(&own, 0);
        while (!settled && now_ms() < deadline) {
            settled = 1;
            for (size_t i = 1; i < 3; i++)
                if (etcd_member_status_get(probe, i, &st, err) != 0 ||
                    st.leader_id == st0.member_id)
                    settled = 0;
            if (!settled)
                usleep(100 * 1000);
        }
        ck_assert_msg(settled, "no new leader after member 0 died: %s", err);
        etcd_client_free(probe);
    }
    t0 = now_ms();
    ck_assert_int_eq(etcd_keys_expect("/t/fo/a", 7, (uint64_t)r0, 0, &cmp), 1);
    ck_assert_msg(etcd_txn(c, &t, NULL, err) == 0, "txn after a member died: %s", err);
    r1 = put_s(c, "/t/fo/b", "3");
    put_s(c, "/t/fo/c", "4");
    ck_assert_msg(etcd_range(c, "/t/fo/", 6, NULL, 0, &kvs, &n, NULL, err) == 0, "range: %s", err);
    ck_assert_uint_eq(n, 3);
    etcd_kvs_free(kvs, n);
    ck_assert_int_lt(now_ms() - t0, 10000);
    ck_assert_int_eq(etcd_health(c, err), 0);
    /* The watch moved to a live member and resumed: every write since, in order. */
    ck_assert_uint_eq(collect(w, ev, 3), 3);
    ck_assert_str_eq(ev[0].kv.key, "/t/fo/a");
    ck_assert_str_eq(ev[0].kv.value, "2");
    ck_assert_int_lt(ev[0].kv.mod_revision, r1);
    ck_assert_str_eq(ev[1].kv.key, "/t/fo/b");
    ck_assert_int_eq(ev[1].kv.mod_revision, r1);
    ck_assert_str_eq(ev[2].kv.key, "/t/fo/c");
    free_events(ev, 3);
    etcd_watch_free(w);
    etcd_client_free(c);
}
END_TEST

START_TEST(with_every_member_killed_no_member_answered_names_them_in_bounded_time)
{
    etcd_client *c = client_for(own.endpoints, 100);
    char err[MESHCA_ERRBUF] = "";
    etcd_watch *w = NULL;
    etcd_event *ev = NULL;
    size_t n = 0;
    int64_t t0, rev = put_s(c, "/t/down/a", "1");
    int r;

    ck_assert_int_eq(etcd_watch_new(c, "/t/down/", 8, NULL, 0, rev + 1, &w, err), 0);
    for (int i = 0; i < 3; i++)
        harness_kill(&own, i);
    t0 = now_ms();
    r = etcd_put(c, "/t/down/b", 9, "2", 1, 0, NULL, err);
    ck_assert_int_eq(r, ETCD_EUNAVAILABLE);
    ck_assert_int_lt(now_ms() - t0, 10000);
    ck_assert_msg(strncmp(err, "no etcd member answered (", 25) == 0, "%s", err);
    for (int i = 0; i < 3; i++)
        ck_assert_msg(strstr(err, harness_endpoint(&own, i)), "endpoint %d missing: %s", i, err);
    /* A txn (never replayed blindly), a health check and a watch say the same. */
    {
        etcd_op op = {
            .type = ETCD_OP_PUT, .key = "/t/down/c", .key_len = 9, .value = "3", .value_len = 1};
        etcd_txn_request t = {NULL, 0, &op, 1, NULL, 0};
        ck_assert_int_eq(etcd_txn(c, &t, NULL, err), ETCD_EUNAVAILABLE);
        ck_assert_msg(strncmp(err, "no etcd member answered (", 25) == 0, "%s", err);
    }
    ck_assert_int_eq(etcd_health(c, err), ETCD_EUNAVAILABLE);
    t0 = now_ms();
    r = etcd_watch_next(w, 2000, &ev, &n, NULL, err);
    ck_assert_int_eq(r, ETCD_EUNAVAILABLE);
    ck_assert_msg(strncmp(err, "no etcd member answered (", 25) == 0, "%s", err);
    ck_assert_int_lt(now_ms() - t0, 5000);
    etcd_watch_free(w);
    etcd_client_free(c);
}
END_TEST

static void tls_up(void)
{
    ck_assert_int_eq(harness_start_tls(&own, 1), 0);
}

/* A TLS client for own's member; which of CA, certificate and key it gets is up to the test. */
static int tls_client(int with_ca, int with_cert, etcd_client **ret, char *err)
{
    static char ca[192], cert[192], key[192];
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;

    snprintf(ca, sizeof(ca), "%s", harness_file(&own, HARNESS_CA));
    snprintf(cert, sizeof(cert), "%s", harness_file(&own, HARNESS_CLIENT_CERT));
    snprintf(key, sizeof(key), "%s", harness_file(&own, HARNESS_CLIENT_KEY));
    o.endpoints = own.endpoints;
    o.tls = 1;
    o.cacert = with_ca ? ca : NULL;
    o.cert = with_cert ? cert : NULL;
    o.key = with_cert ? key : NULL;
    o.rounds = 1;
    return etcd_client_new(&o, ret, err);
}

START_TEST(etcds_needs_the_ca_and_a_client_certificate_and_never_skips_verification)
{
    etcd_client *c = NULL;
    char err[MESHCA_ERRBUF] = "";
    etcd_kv *kv = NULL;
    etcd_watch *w = NULL;
    etcd_event ev[1];
    int64_t rev = 0;

    /* CA and client certificate: everything works, the watch stream too. */
    ck_assert_msg(tls_client(1, 1, &c, err) == 0, "%s", err);
    ck_assert_msg(etcd_put(c, "/t/tls/k", 8, "v", 1, 0, &rev, err) == 0, "put over TLS: %s", err);
    ck_assert_int_eq(etcd_get(c, "/t/tls/k", 8, &kv, NULL, err), 0);
    ck_assert_str_eq(kv->value, "v");
    etcd_kvs_free(kv, 1);
    ck_assert_int_eq(etcd_watch_new(c, "/t/tls/", 7, NULL, 0, rev, &w, err), 0);
    ck_assert_uint_eq(collect(w, ev, 1), 1);
    ck_assert_str_eq(ev[0].kv.key, "/t/tls/k");
    free_events(ev, 1);
    etcd_watch_free(w);
    etcd_client_free(c);

    /* Without the CA, the member's certificate is not trusted: refused, not ignored. */
    ck_assert_int_eq(tls_client(0, 1, &c, err), 0);
    ck_assert_int_eq(etcd_put(c, "/t/tls/k", 8, "v", 1, 0, NULL, err), ETCD_EUNAVAILABLE);
    ck_assert_msg(strstr(err, "no etcd member answered (") && strstr(err, "certificate"), "%s",
                  err);
    ck_assert_ptr_nonnull(strstr(err, own.endpoints));
    etcd_client_free(c);

    /* Without a client certificate, the member refuses us. */
    ck_assert_int_eq(tls_client(1, 0, &c, err), 0);
    ck_assert_int_eq(etcd_put(c, "/t/tls/k", 8, "v", 1, 0, NULL, err), ETCD_EUNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(err, own.endpoints));
    /* Whatever the failure, key material never shows. */
    ck_assert_ptr_null(strstr(err, "PRIVATE KEY"));
    etcd_client_free(c);
}
END_TEST

static Suite *etcd_suite(void)
{
    Suite *s = suite_create("etcd");
    TCase *one = tcase_create("one-member");
    TCase *restart = tcase_create("restart");
    TCase *tls = tcase_create("tls");
    TCase *cluster = tcase_create("three-members");

    tcase_add_unchecked_fixture(one, shared_up, shared_down);
    tcase_set_timeout(one, 60);
    tcase_add_test(one, put_get_and_range_paginate_over_more_keys_than_the_page_limit);
    tcase_add_test(one, range_over_many_pages_costs_etcd_linear_work_and_reads_one_snapshot);
    tcase_add_test(one, range_in_parallel_pages_over_more_keys_than_its_first_allocation);
    tcase_add_test(one, txn_cas_on_mod_revision_succeeds_then_conflicts_when_stale);
    tcase_add_test(one, fenced_write_is_refused_once_the_leader_key_is_not_on_our_lease);
    tcase_add_test(one, deleterange_removes_exactly_the_prefix);
    tcase_add_test(one, watch_from_a_revision_receives_every_event_after_it_in_order);
    tcase_add_test(one, watch_in_an_event_loop_waits_on_its_sockets_without_blocking);
    tcase_add_test(one, watch_from_a_compacted_revision_reports_compacted);
    tcase_add_test(one, lease_keepalive_keeps_keys_and_expiry_removes_them);
    tcase_add_test(one, etcd_refusals_keep_their_class_and_etcds_message);
    suite_add_tcase(s, one);

    tcase_add_checked_fixture(restart, one_up, own_down);
    tcase_set_timeout(restart, 60);
    tcase_add_test(restart, watch_resumes_after_a_dropped_connection_without_loss_or_repeat);
    suite_add_tcase(s, restart);

    tcase_add_checked_fixture(tls, tls_up, own_down);
    tcase_set_timeout(tls, 60);
    tcase_add_test(tls, etcds_needs_the_ca_and_a_client_certificate_and_never_skips_verification);
    suite_add_tcase(s, tls);

    tcase_add_checked_fixture(cluster, three_up, own_down);
    tcase_set_timeout(cluster, 90);
    tcase_add_test(cluster, with_one_of_three_members_killed_ops_and_watch_go_through_another);
    tcase_add_test(cluster, with_every_member_killed_no_member_answered_names_them_in_bounded_time);
    suite_add_tcase(s, cluster);
    return s;
}

int main(void)
{
    char root[] = "/tmp/meshca-test-etcd-XXXXXX", cmd[64];
    SRunner *sr;
    int failed;

    if (!harness_available()) {
        printf(
            "SKIP: %s is not installed (Debian package etcd-server; tools/deps.sh installs it)\n",
            ETCD_BIN);
        return 77;
    }
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    harness_set_root(root);
    sr = srunner_create(etcd_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    /* Also the data dirs of failed tests, whose teardown did not run (their members died
     * with them: PR_SET_PDEATHSIG). The path is our own mkdtemp result. */
    if (snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root) < (int)sizeof(cmd))
        (void)!system(cmd);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
