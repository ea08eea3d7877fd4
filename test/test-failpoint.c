/* test-failpoint.c - Check suite for the failpoints: parsing $MESHCA_FAILPOINTS, each action. */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "manifests/error.h"
#include "reconciler/failpoint.h"

static void teardown(void)
{
    failpoint_set_hook(NULL, NULL);
    ck_assert_int_eq(failpoint_configure(NULL, NULL), 0);
}

START_TEST(unset_arms_nothing_and_every_point_passes)
{
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(failpoint_configure("", err), 0);
    ck_assert_int_eq(failpoint_armed, 0);
    ck_assert_int_eq(FAILPOINT("sqlite.commit.before", err), 0);
    ck_assert_int_eq(failpoint_configure(NULL, err), 0);
    ck_assert_int_eq(failpoint_armed, 0);
}
END_TEST

START_TEST(error_returns_eio_naming_the_point_and_spares_other_points)
{
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(failpoint_configure("pass.commit=error,etcd.txn.after=sleep(0)", err), 0);
    ck_assert_int_ne(failpoint_armed, 0);
    ck_assert_int_eq(FAILPOINT("apply.commit", err), 0);
    ck_assert_int_eq(FAILPOINT("etcd.txn.after", err), 0);
    ck_assert_int_eq(FAILPOINT("pass.commit", err), MESHCA_EIO);
    ck_assert_str_eq(err, "failpoint pass.commit: injected I/O error");
    /* Every hit, not just the first. */
    ck_assert_int_eq(FAILPOINT("pass.commit", err), MESHCA_EIO);
}
END_TEST

START_TEST(nth_acts_on_that_hit_only)
{
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(failpoint_configure("etcd.txn.between=2*error", err), 0);
    ck_assert_int_eq(FAILPOINT("etcd.txn.between", err), 0);
    ck_assert_int_eq(FAILPOINT("etcd.txn.between", err), MESHCA_EIO);
    ck_assert_int_eq(FAILPOINT("etcd.txn.between", err), 0);
}
END_TEST

static int hook_calls(const char *name, void *ctx, char *errbuf)
{
    int *calls = ctx;
    ++*calls;
    ck_assert_str_eq(name, "csr.commit");
    return *calls == 2 ? meshca_fail(errbuf, MESHCA_ECONFLICT, "hooked %s", name) : 0;
}

START_TEST(hook_calls_the_test_function_at_the_point_and_returns_its_code)
{
    char err[MESHCA_ERRBUF] = "";
    int calls = 0;
    ck_assert_int_eq(failpoint_configure("csr.commit=hook,apply.commit=2*hook", err), 0);
    /* no function set: the point goes on */
    ck_assert_int_eq(FAILPOINT("csr.commit", err), 0);
    failpoint_set_hook(hook_calls, &calls);
    ck_assert_int_eq(FAILPOINT("csr.commit", err), 0);
    ck_assert_int_eq(calls, 1);
    ck_assert_int_eq(FAILPOINT("csr.commit", err), MESHCA_ECONFLICT);
    ck_assert_str_eq(err, "hooked csr.commit");
    ck_assert_int_eq(calls, 2);
    /* not a hooked point, or not its N-th hit: not called */
    ck_assert_int_eq(FAILPOINT("pass.commit", err), 0);
    ck_assert_int_eq(FAILPOINT("apply.commit", err), 0);
    ck_assert_int_eq(calls, 2);
}
END_TEST

START_TEST(kill_ends_the_process_with_sigkill_at_the_point)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (failpoint_configure("apply.commit=kill", NULL) == 0)
            (void)FAILPOINT("apply.commit", NULL);
        _exit(3); /* reached only when the point did not kill */
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status));
    ck_assert_int_eq(WTERMSIG(status), SIGKILL);
}
END_TEST

START_TEST(malformed_specs_are_refused_and_arm_nothing)
{
    static const struct {
        const char *spec, *msg;
    } bad[] = {
        {"pass.commit", "want NAME=ACTION"},
        {"=kill", "want NAME=ACTION"},
        {"pass.commit=explode", "'pass.commit': unknown action"},
        {"pass.commit=sleep(abc)", "'pass.commit': sleep(MS) wants 0..600000 ms"},
        {"pass.commit=sleep(600001)", "sleep(MS) wants 0..600000 ms"},
        {"pass.commit=sleep(5", "sleep(MS) wants"},
        {"pass.commit=0*kill", "N in N*ACTION must be 1 or more"},
        {"pass.commit=x*kill", "N in N*ACTION must be 1 or more"},
        {"a=kill,b=kill,c=kill,d=kill,e=kill,f=kill,g=kill,h=kill,i=kill,j=kill,k=kill,l=kill,"
         "m=kill,n=kill,o=kill,p=kill,q=kill",
         "at most 16 points"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[MESHCA_ERRBUF] = "";
        ck_assert_int_eq(failpoint_configure("apply.commit=error", err), 0);
        ck_assert_msg(failpoint_configure(bad[i].spec, err) == MESHCA_EINVAL, "%s accepted",
                      bad[i].spec);
        ck_assert_msg(strstr(err, bad[i].msg) != NULL, "%s: message '%s'", bad[i].spec, err);
        ck_assert_int_eq(failpoint_armed, 0);
        ck_assert_int_eq(FAILPOINT("apply.commit", err), 0);
    }
}
END_TEST

static Suite *failpoint_suite(void)
{
    Suite *s = suite_create("failpoint");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, unset_arms_nothing_and_every_point_passes);
    tcase_add_test(tc, error_returns_eio_naming_the_point_and_spares_other_points);
    tcase_add_test(tc, nth_acts_on_that_hit_only);
    tcase_add_test(tc, kill_ends_the_process_with_sigkill_at_the_point);
    tcase_add_test(tc, hook_calls_the_test_function_at_the_point_and_returns_its_code);
    tcase_add_test(tc, malformed_specs_are_refused_and_arm_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(failpoint_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
