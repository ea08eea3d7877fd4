/* test-reload.c - Check suite for the agent's reload runner: exit codes, timeout, stop, group kill. */
#define _GNU_SOURCE 1
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "reconciler/reload.h"

static char tmpdir[64];
static char pidfile[128];

static void setup(void)
{
    char tmpl[] = "/tmp/meshca-test-reload-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    memcpy(tmpdir, tmpl, sizeof(tmpl));
    snprintf(pidfile, sizeof(pidfile), "%s/child.pid", tmpdir);
}

static void teardown(void)
{
    char cmd[256];
    /* Our own mkdtemp result: safe to hand to rm. */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    (void)!system(cmd);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The pid the command wrote into pidfile, or 0. */
static pid_t child_pid(void)
{
    FILE *f = fopen(pidfile, "r");
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return (pid_t)pid;
}

/* Alive and not a zombie waiting for init to reap it. */
static bool alive(pid_t pid)
{
    char path[64], state = 0;
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
        state = 0;
    fclose(f);
    return state != 0 && state != 'Z';
}

/* The background sleep the command started is gone (reaped by init, not by us: poll). */
static void assert_child_gone(void)
{
    pid_t sleeper = child_pid();
    ck_assert_int_gt(sleeper, 0);
    for (int i = 0; i < 100 && alive(sleeper); i++)
        usleep(10000);
    ck_assert_msg(!alive(sleeper), "the command's child %ld outlived it", (long)sleeper);
}

/* A command that never ends by itself: a background sleep (its pid in pidfile), then wait. */
static const char *forever(const char *prefix)
{
    static char cmd[512];
    snprintf(cmd, sizeof(cmd), "%ssleep 1000 & echo $! >'%s'; wait", prefix, pidfile);
    return cmd;
}

START_TEST(exit_zero_is_success)
{
    char err[MESHCA_ERRBUF] = "";
    reload_result res = {RELOAD_TIMED_OUT, -1};
    ck_assert_int_eq(reload_run("true", 5000, NULL, &res, err), 0);
    ck_assert_int_eq(res.outcome, RELOAD_EXITED);
    ck_assert_int_eq(res.status, 0);
}
END_TEST

START_TEST(nonzero_exit_fails_with_its_code)
{
    char err[MESHCA_ERRBUF] = "";
    reload_result res;
    ck_assert_int_eq(reload_run("exit 3", 5000, NULL, &res, err), MESHCA_ESTATE);
    ck_assert_int_eq(res.outcome, RELOAD_EXITED);
    ck_assert_int_eq(res.status, 3);
    ck_assert_str_eq(err, "reload command failed (exit 3)");
}
END_TEST

START_TEST(killed_command_fails_with_its_signal)
{
    char err[MESHCA_ERRBUF] = "";
    reload_result res;
    ck_assert_int_eq(reload_run("kill -KILL $$", 5000, NULL, &res, err), MESHCA_ESTATE);
    ck_assert_int_eq(res.outcome, RELOAD_SIGNALED);
    ck_assert_int_eq(res.status, SIGKILL);
    ck_assert_str_eq(err, "reload command killed by signal 9");
}
END_TEST

/* Issue 9 #14: `--reload 'sleep 1000'` hung the agent for ever. */
START_TEST(reload_timeout_kills_the_whole_process_group)
{
    char err[MESHCA_ERRBUF] = "";
    reload_result res;
    int64_t t0 = mono_ms();
    ck_assert_int_eq(reload_run(forever(""), 300, NULL, &res, err), MESHCA_ESTATE);
    int64_t took = mono_ms() - t0;
    ck_assert_int_eq(res.outcome, RELOAD_TIMED_OUT);
    ck_assert_str_eq(err, "reload command timed out after 300 ms and was killed");
    ck_assert_msg(took >= 300 && took < 1500, "took %lld ms", (long long)took);
    assert_child_gone();
}
END_TEST

START_TEST(command_ignoring_sigterm_gets_sigkill_after_the_grace_period)
{
    char err[MESHCA_ERRBUF] = "";
    reload_result res;
    int64_t t0 = mono_ms();
    ck_assert_int_eq(reload_run(forever("trap '' TERM; "), 200, NULL, &res, err), MESHCA_ESTATE);
    int64_t took = mono_ms() - t0;
    ck_assert_int_eq(res.outcome, RELOAD_TIMED_OUT);
    ck_assert_msg(took >= 200 + RELOAD_KILL_GRACE_MS && took < 200 + RELOAD_KILL_GRACE_MS + 1500,
                  "took %lld ms", (long long)took);
    assert_child_gone();
}
END_TEST

static int64_t stop_at;
static bool stop_after_deadline(void)
{
    return mono_ms() >= stop_at;
}

/* Issue 9 #14: SIGTERM must end the agent while the reload runs, without orphaning it. */
START_TEST(stop_request_ends_a_running_command_and_its_group)
{
    char err[MESHCA_ERRBUF] = "";
    reload_result res;
    int64_t t0 = mono_ms();
    stop_at = t0 + 300;
    ck_assert_int_eq(reload_run(forever(""), 60000, stop_after_deadline, &res, err), MESHCA_ESTATE);
    int64_t took = mono_ms() - t0;
    ck_assert_int_eq(res.outcome, RELOAD_STOPPED);
    ck_assert_str_eq(err, "reload command interrupted: the agent is stopping");
    ck_assert_msg(took >= 300 && took < 1500, "took %lld ms", (long long)took);
    assert_child_gone();
}
END_TEST

START_TEST(stop_requested_before_the_start_runs_nothing)
{
    char err[MESHCA_ERRBUF] = "", cmd[256];
    reload_result res;
    stop_at = 0;
    snprintf(cmd, sizeof(cmd), "echo ran >'%s'", pidfile);
    ck_assert_int_eq(reload_run(cmd, 5000, stop_after_deadline, &res, err), MESHCA_ESTATE);
    ck_assert_int_eq(res.outcome, RELOAD_STOPPED);
    ck_assert_int_eq(access(pidfile, F_OK), -1);
}
END_TEST

START_TEST(command_reads_dev_null_not_our_stdin)
{
    char err[MESHCA_ERRBUF] = "";
    /* `cat` ends at once on /dev/null; on an inherited terminal or pipe it could block. */
    ck_assert_int_eq(reload_run("test \"$(cat)\" = ''", 5000, NULL, NULL, err), 0);
}
END_TEST

static Suite *reload_suite(void)
{
    Suite *suite = suite_create("reload");
    TCase *tc = tcase_create("reload");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, exit_zero_is_success);
    tcase_add_test(tc, nonzero_exit_fails_with_its_code);
    tcase_add_test(tc, killed_command_fails_with_its_signal);
    tcase_add_test(tc, reload_timeout_kills_the_whole_process_group);
    tcase_add_test(tc, command_ignoring_sigterm_gets_sigkill_after_the_grace_period);
    tcase_add_test(tc, stop_request_ends_a_running_command_and_its_group);
    tcase_add_test(tc, stop_requested_before_the_start_runs_nothing);
    tcase_add_test(tc, command_reads_dev_null_not_our_stdin);
    suite_add_tcase(suite, tc);
    return suite;
}

int main(void)
{
    SRunner *sr = srunner_create(reload_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
