/* test-store_txn.c - Check suite for a transaction built in parts (store_txn_open/_add/_close) on sqlite://. */
#define _GNU_SOURCE 1
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/failpoint.h"
#include "reconciler/store.h"

static char tmpdir[64];
static char url[160];

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/meshca-test-store_txn-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(url, sizeof(url), "sqlite://%s/store/meshca.db", tmpdir);
}

static void teardown(void)
{
    char cmd[128];
    /* Our own mkdtemp path. */
    if (snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir) < (int)sizeof(cmd))
        (void)!system(cmd);
}

static store *open_store(void)
{
    char err[MESHCA_ERRBUF] = "";
    store *s = NULL;
    ck_assert_msg(store_open(url, &s, err) == STORE_OK, "store_open: %s", err);
    return s;
}

static uint64_t rev_of(store *s)
{
    uint64_t rev = 0;
    ck_assert_int_eq(store_revision(s, &rev), STORE_OK);
    return rev;
}

/* The value and version of dataplanes/default/<name>, or NULL (ENOTFOUND). */
static char *get_dp(store *s, const char *name, uint64_t *ret_version)
{
    store_key k = {"dataplanes", "default", name};
    char *v = NULL;
    int r = store_get(s, &k, &v, NULL, ret_version);
    ck_assert_msg(r == STORE_OK || r == STORE_ENOTFOUND, "get %s: %d", name, r);
    return v;
}

static store_op put_op(const char *name, const char *value, uint64_t expected)
{
    return (store_op){STORE_OP_PUT, {"dataplanes", "default", name}, value, strlen(value), expected};
}

START_TEST(parts_commit_once_at_one_revision_and_are_unseen_by_others_until_then)
{
    store *s = open_store(), *other = open_store();
    store_key mk = {"meshes", NULL, "default"};
    uint64_t mver = 0;
    ck_assert_int_eq(store_put(s, &mk, "m", 1, 0, &mver), STORE_OK);
    uint64_t rev0 = rev_of(s);

    ck_assert_int_eq(store_txn_open(s), STORE_OK);
    store_op a[2] = {put_op("a", "A", 0),
                     {STORE_OP_CHECK, {"meshes", NULL, "default"}, NULL, 0, mver}};
    ck_assert_int_eq(store_txn_add(s, a, 2), STORE_OK);
    /* The writer reads its own writes; another connection does not see them yet. */
    uint64_t ver = 0;
    char *v = get_dp(s, "a", &ver);
    ck_assert_str_eq(v, "A");
    free(v);
    ck_assert_uint_eq(ver, rev0 + 1);
    ck_assert_ptr_null(get_dp(other, "a", NULL));
    ck_assert_uint_eq(rev_of(other), rev0);
    store_op b[2] = {put_op("b", "B", 0), put_op("c", "C", 0)};
    ck_assert_int_eq(store_txn_add(s, b, 2), STORE_OK);
    /* Any other write of s is refused while the transaction is open, naming why. */
    store_key dk = {"dataplanes", "default", "d"};
    ck_assert_int_eq(store_put(s, &dk, "D", 1, 0, NULL), STORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(store_errmsg(s), "a transaction is open"));
    ck_assert_int_eq(store_txn(s, b, 1), STORE_EINVAL);
    ck_assert_int_eq(store_delete(s, &mk, mver), STORE_EINVAL);
    ck_assert_int_eq(store_txn_open(s), STORE_EINVAL);
    ck_assert_ptr_null(get_dp(other, "b", NULL));

    ck_assert_int_eq(store_txn_close(s, "test.commit", true), STORE_OK);
    /* One new revision for every part, seen by the other connection now. */
    ck_assert_uint_eq(rev_of(other), rev0 + 1);
    static const char *const names[] = {"a", "b", "c"};
    for (size_t i = 0; i < 3; i++) {
        v = get_dp(other, names[i], &ver);
        ck_assert_msg(v != NULL, "%s missing after the commit", names[i]);
        free(v);
        ck_assert_uint_eq(ver, rev0 + 1);
    }
    ck_assert_ptr_null(get_dp(other, "d", NULL));
    /* Closed: writes go on as before, and no part can be added. */
    ck_assert_int_eq(store_put(s, &dk, "D", 1, 0, NULL), STORE_OK);
    ck_assert_int_eq(store_txn_add(s, b, 1), STORE_EINVAL);
    ck_assert_int_eq(store_txn_close(s, NULL, true), STORE_EINVAL);
    store_close(other);
    store_close(s);
}
END_TEST

START_TEST(failed_part_or_rollback_leaves_the_store_as_before)
{
    store *s = open_store(), *other = open_store();
    uint64_t v1 = 0;
    store_key k = {"dataplanes", "default", "x"};
    ck_assert_int_eq(store_put(s, &k, "x1", 2, 0, &v1), STORE_OK);
    uint64_t rev0 = rev_of(s);

    /* A later part's stale check: that part fails as store_txn would, naming the object, and
     * the close rolls back the parts before it too. */
    ck_assert_int_eq(store_txn_open(s), STORE_OK);
    store_op a[1] = {put_op("a", "A", 0)};
    ck_assert_int_eq(store_txn_add(s, a, 1), STORE_OK);
    store_op stale[2] = {put_op("b", "B", 0), put_op("x", "x2", v1 + 7)};
    ck_assert_int_eq(store_txn_add(s, stale, 2), STORE_ECONFLICT);
    ck_assert_ptr_nonnull(strstr(store_errmsg(s), "dataplanes/default/x"));
    ck_assert_ptr_nonnull(strstr(store_errmsg(s), "version conflict"));
    ck_assert_int_eq(store_txn_close(s, NULL, false), STORE_OK);
    ck_assert_ptr_null(get_dp(s, "a", NULL));
    ck_assert_ptr_null(get_dp(s, "b", NULL));
    ck_assert_uint_eq(rev_of(s), rev0);

    /* A key written by an earlier part has the transaction's revision: an expected version
     * from before it conflicts (a key belongs once in the whole transaction). */
    ck_assert_int_eq(store_txn_open(s), STORE_OK);
    store_op x2[1] = {put_op("x", "x2", v1)};
    ck_assert_int_eq(store_txn_add(s, x2, 1), STORE_OK);
    ck_assert_int_eq(store_txn_add(s, x2, 1), STORE_ECONFLICT);
    ck_assert_int_eq(store_txn_close(s, NULL, false), STORE_OK);

    /* Rolled back on purpose, or by the commit's failpoint (armed "error"), nothing is written. */
    ck_assert_int_eq(store_txn_open(s), STORE_OK);
    ck_assert_int_eq(store_txn_add(s, x2, 1), STORE_OK);
    ck_assert_int_eq(failpoint_configure("test.commit=error", NULL), 0);
    ck_assert_int_eq(store_txn_close(s, "test.commit", true), MESHCA_EIO);
    ck_assert_int_eq(failpoint_configure(NULL, NULL), 0);
    ck_assert_str_eq(store_errmsg(s), "failpoint test.commit: injected I/O error");
    uint64_t ver = 0;
    char *v = get_dp(other, "x", &ver);
    ck_assert_str_eq(v, "x1");
    free(v);
    ck_assert_uint_eq(ver, v1);
    ck_assert_uint_eq(rev_of(s), rev0);
    /* The write lock went with it: the other connection writes at once. */
    ck_assert_int_eq(store_put(other, &k, "x3", 2, v1, NULL), STORE_OK);

    /* A transaction closed with nothing added writes nothing, not even a revision. */
    uint64_t rev1 = rev_of(s);
    ck_assert_int_eq(store_txn_open(s), STORE_OK);
    ck_assert_int_eq(store_txn_close(s, NULL, true), STORE_OK);
    ck_assert_uint_eq(rev_of(s), rev1);
    store_close(other);
    store_close(s);
}
END_TEST

START_TEST(fence_applies_to_each_part_and_one_with_a_deadline_holds_none_open)
{
    store *s = open_store(), *other = open_store();
    store_key lk = {"meshes", NULL, "leader"};
    uint64_t lver = 0;
    ck_assert_int_eq(store_put(s, &lk, "me", 2, 0, &lver), STORE_OK);
    /* Fenced without a deadline: each part carries the check of the fence key. */
    ck_assert_int_eq(store_fence(s, &lk, lver, NULL), STORE_OK);
    ck_assert_int_eq(store_txn_open(s), STORE_OK);
    store_op a[1] = {put_op("a", "A", 0)};
    ck_assert_int_eq(store_txn_add(s, a, 1), STORE_OK);
    store_txn_close(s, NULL, false);
    ck_assert_int_eq(store_put(other, &lk, "you", 3, lver, NULL), STORE_OK);   /* deposed */
    ck_assert_int_eq(store_txn_open(s), STORE_OK);
    ck_assert_int_eq(store_txn_add(s, a, 1), STORE_ECONFLICT);
    ck_assert_ptr_nonnull(strstr(store_errmsg(s), "meshes/leader/leader: version conflict"));
    ck_assert_int_eq(store_txn_close(s, NULL, false), STORE_OK);
    /* Opened since a revision read after the deposition, the fence's check is still made: its
     * version is older than that revision. */
    ck_assert_int_eq(store_txn_open_since(s, rev_of(s)), STORE_OK);
    ck_assert_int_eq(store_txn_add(s, a, 1), STORE_ECONFLICT);
    ck_assert_ptr_nonnull(strstr(store_errmsg(s), "meshes/leader/leader: version conflict"));
    ck_assert_int_eq(store_txn_close(s, NULL, false), STORE_OK);
    /* No fence is set while a transaction opened since a revision is open. */
    ck_assert_int_eq(store_fence(s, NULL, 0, NULL), STORE_OK);
    ck_assert_int_eq(store_txn_open_since(s, rev_of(s)), STORE_OK);
    ck_assert_int_eq(store_fence(s, &lk, lver, NULL), STORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(store_errmsg(s), "no fence is set while a transaction"));
    ck_assert_int_eq(store_txn_close(s, NULL, false), STORE_OK);
    ck_assert_int_eq(store_fence(s, &lk, lver, NULL), STORE_OK);
    ck_assert_ptr_null(get_dp(other, "a", NULL));
    /* With a deadline (a leader renewing its lease through the same write lock): refused. */
    int64_t deadline = INT64_MAX;
    ck_assert_int_eq(store_fence(s, &lk, lver, &deadline), STORE_OK);
    ck_assert_int_eq(store_txn_open(s), STORE_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(store_errmsg(s), "fence with a deadline"));
    ck_assert_int_eq(store_fence(s, NULL, 0, NULL), STORE_OK);
    ck_assert_int_eq(store_txn_open(s), STORE_OK);
    ck_assert_int_eq(store_txn_close(s, NULL, false), STORE_OK);
    store_close(other);
    store_close(s);
}
END_TEST

/* store_txn_open_since (a reconcile pass): while the store is still at the revision the writer
 * read everything at, its puts and checks are not read again; once anything was written since,
 * or without a revision, every op is checked as store_txn_open checks it. Deletes and leases are
 * checked either way. */
START_TEST(opened_since_an_unchanged_revision_reads_no_version_again)
{
    store *s = open_store(), *other = open_store();
    store_key mk = {"meshes", NULL, "default"}, xk = {"dataplanes", "default", "x"};
    uint64_t mver = 0, xver = 0;
    ck_assert_int_eq(store_put(s, &mk, "m", 1, 0, &mver), STORE_OK);
    ck_assert_int_eq(store_put(s, &xk, "x1", 2, 0, &xver), STORE_OK);
    store_lease_id lease = 0;
    ck_assert_int_eq(store_lease_grant(s, 60, &lease), STORE_OK);
    ck_assert_int_eq(store_lease_revoke(s, lease), STORE_OK);
    uint64_t since = rev_of(s);

    /* Another writer moved the store on: the stale version is caught, nothing written. */
    store_key yk = {"dataplanes", "default", "y"};
    ck_assert_int_eq(store_put(other, &yk, "y", 1, 0, NULL), STORE_OK);
    ck_assert_int_eq(store_txn_open_since(s, since), STORE_OK);
    store_op stale[1] = {put_op("x", "x2", xver + 7)};
    ck_assert_int_eq(store_txn_add(s, stale, 1), STORE_ECONFLICT);
    ck_assert_ptr_nonnull(strstr(store_errmsg(s), "dataplanes/default/x: version conflict"));
    ck_assert_int_eq(store_txn_close(s, NULL, false), STORE_OK);
    /* No revision given: checked as store_txn_open. */
    since = rev_of(s);
    ck_assert_int_eq(store_txn_open_since(s, STORE_NO_REVISION), STORE_OK);
    ck_assert_int_eq(store_txn_add(s, stale, 1), STORE_ECONFLICT);
    ck_assert_int_eq(store_txn_close(s, NULL, false), STORE_OK);
    ck_assert_uint_eq(rev_of(s), since);

    /* Unchanged since: a delete of a missing key and a put on a revoked lease still fail. */
    ck_assert_int_eq(store_txn_open_since(s, since), STORE_OK);
    store_op del[1] = {{STORE_OP_DELETE, {"dataplanes", "default", "nobody"}, NULL, 0, 3}};
    ck_assert_int_eq(store_txn_add(s, del, 1), STORE_ENOTFOUND);
    ck_assert_int_eq(store_txn_close(s, NULL, false), STORE_OK);
    ck_assert_int_eq(store_txn_open_since(s, since), STORE_OK);
    store_op leased[1] = {put_op("z", "Z", 0)};
    leased[0].lease = lease;
    ck_assert_int_eq(store_txn_add(s, leased, 1), STORE_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(store_errmsg(s), "has expired or was revoked"));
    ck_assert_int_eq(store_txn_close(s, NULL, false), STORE_OK);

    /* Unchanged since: puts and checks are applied without reading their versions again. The
     * versions are the writer's promise (store.h): one it got wrong here shows that nothing
     * read them. */
    ck_assert_int_eq(store_txn_open_since(s, since), STORE_OK);
    store_op a[3] = {put_op("a", "A", 0),
                     {STORE_OP_CHECK, {"meshes", NULL, "default"}, NULL, 0, mver},
                     put_op("x", "x3", xver)};
    ck_assert_int_eq(store_txn_add(s, a, 3), STORE_OK);
    store_op promised_wrong[2] = {put_op("b", "B", 5),
                                  {STORE_OP_CHECK, {"meshes", NULL, "default"}, NULL, 0, mver + 9}};
    ck_assert_int_eq(store_txn_add(s, promised_wrong, 2), STORE_OK);
    ck_assert_int_eq(store_txn_close(s, NULL, true), STORE_OK);
    ck_assert_uint_eq(rev_of(other), since + 1);
    static const char *const names[] = {"a", "b", "x"};
    for (size_t i = 0; i < 3; i++) {
        uint64_t ver = 0;
        char *v = get_dp(other, names[i], &ver);
        ck_assert_msg(v != NULL, "%s not written", names[i]);
        free(v);
        ck_assert_uint_eq(ver, since + 1);
    }
    /* The next transaction opened plainly checks again. */
    ck_assert_int_eq(store_txn_open(s), STORE_OK);
    ck_assert_int_eq(store_txn_add(s, stale, 1), STORE_ECONFLICT);
    ck_assert_int_eq(store_txn_close(s, NULL, false), STORE_OK);
    store_close(other);
    store_close(s);
}
END_TEST

START_TEST(closing_the_store_with_a_transaction_open_rolls_it_back)
{
    store *s = open_store();
    ck_assert_int_eq(store_txn_open(s), STORE_OK);
    store_op a[1] = {put_op("a", "A", 0)};
    ck_assert_int_eq(store_txn_add(s, a, 1), STORE_OK);
    store_close(s);
    s = open_store();
    ck_assert_ptr_null(get_dp(s, "a", NULL));
    ck_assert_uint_eq(rev_of(s), 0);
    store_close(s);
}
END_TEST

static Suite *store_txn_suite(void)
{
    Suite *suite = suite_create("store_txn");
    TCase *tc = tcase_create("sqlite");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, parts_commit_once_at_one_revision_and_are_unseen_by_others_until_then);
    tcase_add_test(tc, failed_part_or_rollback_leaves_the_store_as_before);
    tcase_add_test(tc, fence_applies_to_each_part_and_one_with_a_deadline_holds_none_open);
    tcase_add_test(tc, closing_the_store_with_a_transaction_open_rolls_it_back);
    tcase_add_test(tc, opened_since_an_unchanged_revision_reads_no_version_again);
    suite_add_tcase(suite, tc);
    return suite;
}

int main(void)
{
    SRunner *sr = srunner_create(store_txn_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
