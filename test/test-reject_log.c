/* test-reject_log.c - Check suite for the bound on rejected-request log lines (reconciler/api/reject_log.c). */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "reconciler/api/reject_log.h"

/* The first API_REJECT_LOG_PER_S of a window are said, the rest counted; the count of an ended
 * window is handed out once, with the next request or by take(). */
START_TEST(reject_log_says_n_per_window_then_counts)
{
    api_reject_log l = API_REJECT_LOG_INIT;
    uint64_t flush = 99;
    for (int i = 0; i < API_REJECT_LOG_PER_S; i++) {
        ck_assert(api_reject_log_admit(&l, 5000 + i, &flush));
        ck_assert_uint_eq(flush, 0);
    }
    for (int i = 0; i < 25; i++)
        ck_assert(!api_reject_log_admit(&l, 5100 + i, &flush));
    ck_assert_uint_eq(flush, 0);
    /* The window began at 5000: 1000 ms long. */
    ck_assert_int_eq(api_reject_log_window_left_ms(&l, 5400), 600);
    ck_assert_int_eq(api_reject_log_window_left_ms(&l, 6200), 1);
    /* Still the same window at 5999: counted. */
    ck_assert(!api_reject_log_admit(&l, 5999, &flush));
    /* At 6000 a new window: said, and the 26 of the last one come with it, once. */
    ck_assert(api_reject_log_admit(&l, 6000, &flush));
    ck_assert_uint_eq(flush, 26);
    ck_assert(api_reject_log_admit(&l, 6001, &flush));
    ck_assert_uint_eq(flush, 0);
    ck_assert_uint_eq(api_reject_log_take(&l), 0);
}
END_TEST

/* The timer takes the count when the window ends; the next window does not say it again. */
START_TEST(reject_log_take_empties_the_count)
{
    api_reject_log l = API_REJECT_LOG_INIT;
    uint64_t flush = 0;
    for (int i = 0; i < API_REJECT_LOG_PER_S + 3; i++)
        api_reject_log_admit(&l, 100, &flush);
    ck_assert_uint_eq(api_reject_log_take(&l), 3);
    ck_assert_uint_eq(api_reject_log_take(&l), 0);
    ck_assert(api_reject_log_admit(&l, 1100, &flush));
    ck_assert_uint_eq(flush, 0);
}
END_TEST

/* A clock that goes back starts a new window rather than muting the log until it catches up. */
START_TEST(reject_log_clock_back_starts_a_window)
{
    api_reject_log l = API_REJECT_LOG_INIT;
    uint64_t flush = 0;
    for (int i = 0; i < API_REJECT_LOG_PER_S + 1; i++)
        api_reject_log_admit(&l, 10000, &flush);
    ck_assert(api_reject_log_admit(&l, 3000, &flush));
    ck_assert_uint_eq(flush, 1);
    ck_assert_int_eq(api_reject_log_window_left_ms(&l, 2000), 1);
}
END_TEST

/* Memory is the struct: a million requests in one window are one counter. */
START_TEST(reject_log_million_in_one_window)
{
    api_reject_log l = API_REJECT_LOG_INIT;
    uint64_t flush = 0, said = 0;
    for (int i = 0; i < 1000000; i++)
        said += api_reject_log_admit(&l, 42, &flush);
    ck_assert_uint_eq(said, API_REJECT_LOG_PER_S);
    ck_assert_uint_eq(api_reject_log_take(&l), 1000000 - API_REJECT_LOG_PER_S);
}
END_TEST

static Suite *reject_log_suite(void)
{
    Suite *s = suite_create("reject_log");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, reject_log_says_n_per_window_then_counts);
    tcase_add_test(tc, reject_log_take_empties_the_count);
    tcase_add_test(tc, reject_log_clock_back_starts_a_window);
    tcase_add_test(tc, reject_log_million_in_one_window);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(reject_log_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
