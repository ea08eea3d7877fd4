/* test-readiness.c - GET /readyz's decision: the store's last attempts, the API's certificate, a
 * follower's leader; each reason with its code and line. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "manifests/error.h"
#include "reconciler/api/readiness.h"

#define NOW 1800000000

/* A replica that can serve: leading, store fine, a certificate valid 90 days. */
static readiness_input serving(void)
{
    return (readiness_input){"", "", "", true, NOW + 90 * 86400, true, "host:1", NOW};
}

START_TEST(a_leader_with_a_working_store_and_a_valid_certificate_is_ready)
{
    char err[MESHCA_ERRBUF] = "";
    readiness_input in = serving();
    ck_assert_ptr_null(readiness_check(&in, err));
    in.election_failure = in.ca_check_failure = in.pass_failure = NULL; /* NULL is "" */
    ck_assert_ptr_null(readiness_check(&in, err));
    in.tls_not_after = 0; /* unknown (a --tls-cert whose date could not be read): not refused */
    ck_assert_ptr_null(readiness_check(&in, err));
}
END_TEST

START_TEST(a_failed_store_attempt_is_not_ready_naming_the_failure)
{
    char err[MESHCA_ERRBUF] = "";
    readiness_input in = serving();
    in.election_failure = "cannot read the leader key: store 'x': gone";
    ck_assert_str_eq(readiness_check(&in, err), READINESS_STORE);
    ck_assert_str_eq(READINESS_STORE, "store-unreachable");
    ck_assert_str_eq(
        err, "the store failed on its last attempt: cannot read the leader key: store 'x': gone");

    in = serving();
    in.ca_check_failure = "cannot read the store's revision: locked";
    ck_assert_str_eq(readiness_check(&in, err), READINESS_STORE);
    ck_assert_str_eq(
        err, "the store failed on its last attempt: cannot read the store's revision: locked");

    in = serving();
    in.pass_failure = "store I/O error";
    ck_assert_str_eq(readiness_check(&in, err), READINESS_STORE);
    ck_assert_str_eq(err, "the store failed on its last attempt: store I/O error");
    /* A pass failure a follower kept from when it led is not its store's state now. */
    in.leading = false;
    ck_assert_ptr_null(readiness_check(&in, err));
}
END_TEST

START_TEST(no_certificate_or_an_expired_one_is_not_ready)
{
    char err[MESHCA_ERRBUF] = "";
    readiness_input in = serving();
    in.tls_loaded = false;
    ck_assert_str_eq(readiness_check(&in, err), READINESS_TLS);
    ck_assert_str_eq(READINESS_TLS, "tls-not-loaded");
    ck_assert_str_eq(err, "the dataplane API has no certificate loaded");
    in = serving();
    in.tls_not_after = NOW; /* expires now: expired */
    ck_assert_str_eq(readiness_check(&in, err), READINESS_TLS);
    ck_assert_str_eq(
        err,
        "the dataplane API's certificate expired at 2027-01-15T08:00:00Z (renew it: doc/cp-ca.md)");
    in.tls_not_after = NOW + 1;
    ck_assert_ptr_null(readiness_check(&in, err));
}
END_TEST

START_TEST(a_follower_is_ready_only_while_it_sees_a_leader)
{
    char err[MESHCA_ERRBUF] = "";
    readiness_input in = serving();
    in.leading = false;
    ck_assert_ptr_null(readiness_check(&in, err)); /* follows host:1 */
    in.leader = "";
    ck_assert_str_eq(readiness_check(&in, err), READINESS_LEADER);
    ck_assert_str_eq(READINESS_LEADER, "no-leader");
    ck_assert_str_eq(
        err, "this replica follows and sees no leader: nothing would sign the keys it stores");
    in.leader = NULL;
    ck_assert_str_eq(readiness_check(&in, err), READINESS_LEADER);
    /* The store comes first: a follower that cannot read the leader key says so. */
    in.election_failure = "cannot read the leader key: gone";
    ck_assert_str_eq(readiness_check(&in, err), READINESS_STORE);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("readiness");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, a_leader_with_a_working_store_and_a_valid_certificate_is_ready);
    tcase_add_test(tc, a_failed_store_attempt_is_not_ready_naming_the_failure);
    tcase_add_test(tc, no_certificate_or_an_expired_one_is_not_ready);
    tcase_add_test(tc, a_follower_is_ready_only_while_it_sees_a_leader);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
