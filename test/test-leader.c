/* test-leader.c - Check suite for leader election (reconciler/leader.c) and write fencing (store_fence) on sqlite:// and, with "etcd" as argument, on a real etcd member. */
#define _GNU_SOURCE 1
#include "reconciler/leader.h"
#include "reconciler/store.h"
#include "reconciler/store/etcd_client.h"

#include "etcd-harness.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/*
 * Two electors in one process, each on its own store handle (as two `meshca run` replicas),
 * with short ttls. Clocks are injected where the test is about the elector's own clock; the
 * store's lease clock is real, so the expiry tests wait (bounded) for the store to end a lease.
 */
static int on_etcd;
static harness member;
static char tmpdir[64];
static char url[512];

static const store_key leader_key = {LEADER_KIND, LEADER_MESH, LEADER_NAME};
static const store_key probe_key = {"dataplanes", "default", "web-01"};

static void wipe_etcd(void)
{
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    char err[MESHCA_ERRBUF] = "", end[8];
    size_t end_len = etcd_prefix_end("/meshca/", 8, end);

    o.endpoints = member.endpoints;
    ck_assert_msg(etcd_client_new(&o, &c, err) == 0, "etcd client: %s", err);
    ck_assert_msg(etcd_delete_range(c, "/meshca/", 8, end, end_len, NULL, NULL, err) == 0, "wipe: %s", err);
    etcd_client_free(c);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/meshca-test-leader-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    if (on_etcd) {
        snprintf(url, sizeof(url), "etcd://%s", member.endpoints);
        wipe_etcd();
    } else {
        snprintf(url, sizeof(url), "sqlite://%s/store/meshca.db", tmpdir);
    }
}

static void teardown(void)
{
    char cmd[128];
    if (snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir) < (int)sizeof(cmd))
        (void)!system(cmd);
}

static store *open_store(void)
{
    char err[MESHCA_ERRBUF] = "";
    store *s = NULL;
    int r = store_open(url, &s, err);
    ck_assert_msg(r == STORE_OK, "store_open(%s): %d %s", url, r, err);
    return s;
}

static leader_elector *elector(store *s, const char *id, int64_t ttl_s)
{
    char err[MESHCA_ERRBUF] = "";
    leader_elector *e = NULL;
    char api[64];
    snprintf(api, sizeof(api), "https://127.0.0.1:1/%s", id);
    ck_assert_msg(leader_new(s, id, api, ttl_s, &e, err) == 0, "leader_new: %s", err);
    return e;
}

static void step(leader_elector *e, int64_t now)
{
    char err[MESHCA_ERRBUF] = "";
    int rc = leader_step(e, now, NULL, err);
    ck_assert_msg(rc == 0, "leader_step: %d %s", rc, err);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Steps b (real clock) every 100 ms until it leads; bounded by 10 s (ttl 1 s here, etcd may
 * raise it to its minimum, and ends leases within about half a second). */
static int step_until_leading(leader_elector *b)
{
    for (int i = 0; i < 100; i++) {
        step(b, leader_now_ms());
        if (leader_leading(b, leader_now_ms()))
            return 1;
        sleep_ms(100);
    }
    return 0;
}

static int probe_exists(store *s)
{
    char *v = NULL;
    int rc = store_get(s, &probe_key, &v, NULL, NULL);
    free(v);
    ck_assert_msg(rc == 0 || rc == STORE_ENOTFOUND, "get probe: %d %s", rc, store_errmsg(s));
    return rc == 0;
}

START_TEST(exactly_one_of_two_leads_and_the_other_follows_it)
{
    store *sa = open_store(), *sb = open_store();
    leader_elector *a = elector(sa, "host-a:1", 10), *b = elector(sb, "host-b:2", 10);
    int64_t t = leader_now_ms();
    bool changed = false;
    char err[MESHCA_ERRBUF] = "";

    ck_assert_int_eq(leader_step(a, t, &changed, err), 0);
    ck_assert(changed);
    ck_assert_int_eq(leader_step(b, t, &changed, err), 0);
    ck_assert(changed); /* from "nobody seen" to following host-a */
    for (int i = 0; i < 5; i++) {
        step(b, t + i);
        step(a, t + i);
        ck_assert(leader_leading(a, t + i));
        ck_assert(!leader_leading(b, t + i));
        ck_assert_uint_eq(leader_version(b), 0);
    }
    ck_assert_int_eq(leader_step(b, t + 10, &changed, err), 0);
    ck_assert(!changed); /* said once per change only */
    ck_assert_str_eq(leader_holder(b), "host-a:1");
    ck_assert_str_eq(leader_holder_api(b), "https://127.0.0.1:1/host-a:1");
    ck_assert_str_eq(leader_holder(a), "host-a:1");

    char *id = NULL, *api = NULL;
    ck_assert_int_eq(leader_read(sb, &id, &api, err), 0);
    ck_assert_str_eq(id, "host-a:1");
    ck_assert_str_eq(api, "https://127.0.0.1:1/host-a:1");
    free(id);
    free(api);
    leader_free(a);
    leader_free(b);
    store_close(sa);
    store_close(sb);
}
END_TEST

START_TEST(lease_not_renewed_the_other_takes_over_and_the_deposed_write_fails)
{
    store *sa = open_store(), *sb = open_store();
    leader_elector *a = elector(sa, "host-a:1", 1), *b = elector(sb, "host-b:2", 1);
    int64_t t0 = leader_now_ms();

    step(a, t0);
    ck_assert(leader_leading(a, t0));
    uint64_t a_version = leader_version(a);
    ck_assert_uint_gt(a_version, 0);
    step(b, t0);
    ck_assert(!leader_leading(b, t0));

    /* a stops renewing (hung): the store ends its lease, b takes the key. */
    ck_assert_msg(step_until_leading(b), "b never took over after a's lease ended");
    ck_assert_uint_ne(leader_version(b), a_version);
    char err[MESHCA_ERRBUF] = "", *id = NULL, *api = NULL;
    ck_assert_int_eq(leader_read(sa, &id, &api, err), 0);
    ck_assert_str_eq(id, "host-b:2");
    free(id);
    free(api);

    /* a, its clock frozen at t0, still believes it leads: only the store can stop its write
     * (its fence without the local deadline, to test the store's check alone). */
    ck_assert(leader_leading(a, t0));
    ck_assert_int_eq(store_fence(sa, &leader_key, a_version, NULL), 0);
    int rc = store_put(sa, &probe_key, "{}", 2, STORE_ANY_VERSION, NULL);
    ck_assert_msg(rc == STORE_ECONFLICT, "deposed leader's put: %d (%s)", rc, store_errmsg(sa));
    store_op ops[2] = {
        {STORE_OP_PUT, probe_key, "{}", 2, 0, 0},
        {STORE_OP_PUT, {"dataplanes", "default", "web-02"}, "{}", 2, 0, 0},
    };
    ck_assert_int_eq(store_txn(sa, ops, 2), STORE_ECONFLICT);
    leader_unfence(a);
    ck_assert(!probe_exists(sb));
    ck_assert_int_eq(store_get(sb, &ops[1].key, &(char *){NULL}, NULL, NULL), STORE_ENOTFOUND);

    /* The new leader's fenced write lands. */
    ck_assert_int_eq(leader_fence(b, leader_now_ms()), 0);
    ck_assert_int_eq(store_put(sb, &probe_key, "{}", 2, STORE_ANY_VERSION, NULL), 0);
    leader_unfence(b);
    ck_assert(probe_exists(sa));

    /* a's next step (real clock) sees it lost: a follower of b. */
    step(a, leader_now_ms());
    ck_assert(!leader_leading(a, leader_now_ms()));
    ck_assert_str_eq(leader_holder(a), "host-b:2");
    leader_free(a);
    leader_free(b);
    store_close(sa);
    store_close(sb);
}
END_TEST

START_TEST(a_leader_stops_by_its_own_clock_before_the_ttl_ends)
{
    store *s = open_store();
    leader_elector *a = elector(s, "host-a:1", 10);
    int64_t t0 = leader_now_ms();

    step(a, t0);
    ck_assert(leader_leading(a, t0 + 8999));
    /* 9/10 of the ttl after its last renewal started: no longer leading, no fence given. */
    ck_assert(!leader_leading(a, t0 + 9000));
    ck_assert_int_eq(leader_fence(a, t0 + 9000), STORE_ECONFLICT);
    ck_assert(!probe_exists(s));

    /* A fence whose deadline has passed refuses the write without reaching the store, though
     * the lease and the key are still alive there. */
    ck_assert_int_eq(leader_fence(a, t0 + 8999), 0);
    int64_t past = leader_now_ms() - 1;
    store_fence(s, &leader_key, leader_version(a), &past);
    int rc = store_put(s, &probe_key, "{}", 2, STORE_ANY_VERSION, NULL);
    ck_assert_int_eq(rc, STORE_ECONFLICT);
    ck_assert_ptr_nonnull(strstr(store_errmsg(s), "leadership lost"));
    leader_unfence(a);
    ck_assert(!probe_exists(s));
    char err[MESHCA_ERRBUF] = "", *id = NULL, *api = NULL;
    ck_assert_int_eq(leader_read(s, &id, &api, err), 0); /* the key itself is still there */
    free(id);
    free(api);

    /* A step past the deadline steps down (and, the store working, takes the key again anew). */
    uint64_t v1 = leader_version(a);
    step(a, t0 + 9500);
    ck_assert(leader_leading(a, t0 + 9500));
    ck_assert_uint_gt(leader_version(a), v1);
    leader_free(a);
    store_close(s);
}
END_TEST

START_TEST(renewals_keep_the_lease_and_a_resignation_hands_over_at_once)
{
    store *sa = open_store(), *sb = open_store();
    leader_elector *a = elector(sa, "host-a:1", 1), *b = elector(sb, "host-b:2", 1);

    step(a, leader_now_ms());
    uint64_t v = leader_version(a);
    /* Three ttls of renewals every third of it: a keeps the same key, b never leads. */
    for (int i = 0; i < 9; i++) {
        sleep_ms(330);
        step(a, leader_now_ms());
        step(b, leader_now_ms());
        ck_assert(leader_leading(a, leader_now_ms()));
        ck_assert_uint_eq(leader_version(a), v);
        ck_assert(!leader_leading(b, leader_now_ms()));
    }
    /* The leader's fenced writes land while it leads. */
    ck_assert_int_eq(leader_fence(a, leader_now_ms()), 0);
    ck_assert_int_eq(store_put(sa, &probe_key, "{}", 2, 0, NULL), 0);
    leader_unfence(a);
    ck_assert(probe_exists(sb));

    leader_free(a); /* resigns: revokes its lease */
    step(b, leader_now_ms());
    ck_assert(leader_leading(b, leader_now_ms()));
    leader_free(b);
    store_close(sa);
    store_close(sb);
}
END_TEST

START_TEST(a_restarted_replica_takes_back_the_key_of_its_dead_predecessor)
{
    store *s = open_store();
    int led[2], die[2];
    ck_assert_int_eq(pipe(led), 0);
    ck_assert_int_eq(pipe(die), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* The predecessor: leads, then dies without resigning (as kill -9). */
        store *cs = NULL;
        leader_elector *e = NULL;
        char err[MESHCA_ERRBUF], c = 0;
        if (store_open(url, &cs, err) < 0 || leader_new(cs, "dead:1", NULL, 60, &e, err) < 0 ||
            leader_step(e, leader_now_ms(), NULL, err) < 0 || !leader_leading(e, leader_now_ms()))
            _exit(1);
        (void)!write(led[1], "x", 1);
        (void)!read(die[0], &c, 1);
        _exit(0);
    }
    char c = 0;
    ck_assert_int_eq(read(led[0], &c, 1), 1);
    /* A follower running while it lived ... */
    leader_elector *follower = elector(s, "host-b:2", 60);
    step(follower, leader_now_ms());
    ck_assert(!leader_leading(follower, leader_now_ms()));
    ck_assert_str_eq(leader_holder(follower), "dead:1");
    ck_assert_int_eq(write(die[1], "x", 1), 1);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    /* ... waits for the lease (60 s here) once it died ... */
    step(follower, leader_now_ms());
    ck_assert(!leader_leading(follower, leader_now_ms()));
    ck_assert_str_eq(leader_holder(follower), "dead:1");
    /* ... while a replica starting on this machine sees the holder's process is gone. */
    store *s2 = open_store();
    leader_elector *fresh = elector(s2, "host-a:3", 60);
    step(fresh, leader_now_ms());
    ck_assert(leader_leading(fresh, leader_now_ms()));
    step(follower, leader_now_ms());
    ck_assert_str_eq(leader_holder(follower), "host-a:3");
    leader_free(follower);
    leader_free(fresh);
    store_close(s2);
    store_close(s);
    close(led[0]);
    close(led[1]);
    close(die[0]);
    close(die[1]);
}
END_TEST

START_TEST(a_fenced_txn_that_names_the_fence_key_is_checked_by_its_own_op)
{
    store *s = open_store();
    leader_elector *a = elector(s, "host-a:1", 10);
    step(a, leader_now_ms());
    ck_assert_int_eq(leader_fence(a, leader_now_ms()), 0);
    store_op ops[2] = {
        {STORE_OP_CHECK, leader_key, NULL, 0, leader_version(a), 0},
        {STORE_OP_PUT, probe_key, "{}", 2, 0, 0},
    };
    ck_assert_int_eq(store_txn(s, ops, 2), 0);
    leader_unfence(a);
    ck_assert(probe_exists(s));
    /* Unfenced again: an unconditional write does not check leadership. */
    leader_free(a);
    ck_assert_int_eq(store_put(s, &probe_key, "{}", 2, STORE_ANY_VERSION, NULL), 0);
    ck_assert_int_eq(store_fence(s, &leader_key, 0, NULL), STORE_EINVAL);
    store_close(s);
}
END_TEST

/* A pass longer than the ttl (the loop thread busy, no step taken): the renewer thread keeps
 * the lease on its own handle, so the other replica does not take over and the pass's fenced
 * write lands. Without the renewer the lease ends and the write is refused. */
static void long_pass(bool with_renewer)
{
    store *sa = open_store(), *sb = open_store(), *sr = open_store();
    leader_elector *a = elector(sa, "host-a:1", 1), *b = elector(sb, "host-b:2", 1);
    char err[MESHCA_ERRBUF] = "";

    step(a, leader_now_ms());
    if (with_renewer)
        ck_assert_msg(leader_renewer_start(a, sr, err) == 0, "renewer: %s", err);
    ck_assert_int_eq(leader_fence(a, leader_now_ms()), 0);
    /* 3 s: three ttls, while b keeps trying. */
    for (int i = 0; i < 15; i++) {
        sleep_ms(200);
        step(b, leader_now_ms());
    }
    int rc = store_put(sa, &probe_key, "{}", 2, STORE_ANY_VERSION, NULL);
    leader_unfence(a);
    if (with_renewer) {
        /* One keepalive per third of the ttl over those 3 s: about 9, not a busy loop. */
        unsigned long n = leader_renewals(a);
        ck_assert_msg(n >= 3 && n <= 20, "the renewer sent %lu keepalives in 3 s (ttl 1 s)", n);
        ck_assert_msg(rc == 0, "fenced write after a long pass: %d %s", rc, store_errmsg(sa));
        ck_assert(!leader_leading(b, leader_now_ms()));
        ck_assert_str_eq(leader_holder(b), "host-a:1");
        ck_assert(probe_exists(sb));
    } else {
        ck_assert_int_eq(rc, STORE_ECONFLICT);
        ck_assert(leader_leading(b, leader_now_ms()));
        ck_assert(!probe_exists(sb));
    }
    leader_free(a);
    leader_free(b);
    store_close(sa);
    store_close(sb);
    store_close(sr);
}

/* --lease-ttl is the takeover bound: the lease asked for leaves a margin for the followers to
 * notice its end (a third, at least a second), and is never below a second. */
START_TEST(the_lease_leaves_a_margin_within_the_takeover_bound)
{
    ck_assert_int_eq(leader_lease_for_takeover(10), 7);
    ck_assert_int_eq(leader_lease_for_takeover(3), 2);
    ck_assert_int_eq(leader_lease_for_takeover(2), 1);
    ck_assert_int_eq(leader_lease_for_takeover(1), 1);
    ck_assert_int_eq(leader_lease_for_takeover(60), 40);
    for (int64_t t = 2; t <= 86400; t++) {
        int64_t lease = leader_lease_for_takeover(t);
        ck_assert_int_ge(lease, 1);
        ck_assert_int_le(lease + 1, t);   /* at least a second of margin */
    }
}
END_TEST

START_TEST(a_pass_longer_than_the_ttl_keeps_the_lease_through_the_renewer)
{
    long_pass(true);
}
END_TEST

START_TEST(without_the_renewer_a_pass_longer_than_the_ttl_loses_the_lease)
{
    long_pass(false);
}
END_TEST

static Suite *leader_suite(void)
{
    Suite *su = suite_create("leader");
    TCase *tc = tcase_create("election");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, exactly_one_of_two_leads_and_the_other_follows_it);
    tcase_add_test(tc, lease_not_renewed_the_other_takes_over_and_the_deposed_write_fails);
    tcase_add_test(tc, a_leader_stops_by_its_own_clock_before_the_ttl_ends);
    tcase_add_test(tc, renewals_keep_the_lease_and_a_resignation_hands_over_at_once);
    tcase_add_test(tc, a_restarted_replica_takes_back_the_key_of_its_dead_predecessor);
    tcase_add_test(tc, a_fenced_txn_that_names_the_fence_key_is_checked_by_its_own_op);
    tcase_add_test(tc, the_lease_leaves_a_margin_within_the_takeover_bound);
    tcase_add_test(tc, a_pass_longer_than_the_ttl_keeps_the_lease_through_the_renewer);
    tcase_add_test(tc, without_the_renewer_a_pass_longer_than_the_ttl_loses_the_lease);
    suite_add_tcase(su, tc);
    return su;
}

int main(int argc, char **argv)
{
    char root[] = "/tmp/meshca-test-leader-etcd-XXXXXX", cmd[96];
    on_etcd = argc > 1 && strcmp(argv[1], "etcd") == 0;
    if (on_etcd) {
        if (!harness_available()) {
            printf("SKIP: %s is not installed (Debian package etcd-server)\n", ETCD_BIN);
            return 77;
        }
        if (!mkdtemp(root)) {
            perror("mkdtemp");
            return EXIT_FAILURE;
        }
        harness_set_root(root);
        if (harness_start(&member, 1) < 0) {
            fprintf(stderr, "cannot start etcd\n");
            return EXIT_FAILURE;
        }
    }
    SRunner *sr = srunner_create(leader_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (on_etcd) {
        harness_stop(&member);
        if (snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root) < (int)sizeof(cmd))
            (void)!system(cmd);
    }
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
