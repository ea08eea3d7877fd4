/* test-metrics.c - Check suite for the Prometheus registry and text format (reconciler/metrics.c). */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/metrics.h"
#include "reconciler/metrics_collect.h"

/* The line of t that starts with prefix, or NULL. */
static const char *line_of(const metrics_text *t, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = t->buf; p && *p;) {
        if (strncmp(p, prefix, n) == 0)
            return p;
        const char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

/* The value on the line that starts with prefix (the name and labels exactly), or -1. */
static double value_of(const metrics_text *t, const char *prefix)
{
    const char *l = line_of(t, prefix);
    if (!l || l[strlen(prefix)] != ' ')
        return -1;
    return strtod(l + strlen(prefix) + 1, NULL);
}

START_TEST(label_values_escape_backslash_quote_and_newline)
{
    metrics_text t = METRICS_TEXT_INIT;
    const char *labels[] = {"mesh", "a\\b\"c\nd", "backend", "ca-1", NULL};
    metrics_text_sample(&t, "meshca_x", labels, 3);
    ck_assert_ptr_nonnull(t.buf);
    ck_assert_str_eq(t.buf, "meshca_x{mesh=\"a\\\\b\\\"c\\nd\",backend=\"ca-1\"} 3\n");
    metrics_text_free(&t);
}
END_TEST

START_TEST(help_escapes_backslash_and_newline_but_not_quotes)
{
    metrics_text t = METRICS_TEXT_INIT;
    metrics_text_family(&t, "meshca_x", "gauge", "a \"b\" c\\d\ne");
    ck_assert_str_eq(t.buf, "# HELP meshca_x a \"b\" c\\\\d\\ne\n# TYPE meshca_x gauge\n");
    metrics_text_free(&t);
}
END_TEST

START_TEST(values_print_integers_whole_and_fractions_exactly)
{
    metrics_text t = METRICS_TEXT_INIT;
    metrics_text_sample(&t, "a", NULL, 1798765432);
    metrics_text_sample(&t, "b", NULL, 0.25);
    metrics_text_sample(&t, "c", NULL, 1.0 / 0.0);
    ck_assert_str_eq(t.buf, "a 1798765432\nb 0.25\nc +Inf\n");
    metrics_text_free(&t);
}
END_TEST

START_TEST(histogram_buckets_are_cumulative_with_sum_and_count)
{
    metrics *m = NULL;
    ck_assert_int_eq(metrics_new(&m), 0);
    metrics_observe_pass(m, 0.003, 100, true);  /* le 0.005 */
    metrics_observe_pass(m, 0.2, 200, true);    /* le 0.25 */
    metrics_observe_pass(m, 0.25, 300, true);   /* le 0.25: the bound is inclusive */
    metrics_observe_pass(m, 500, 400, true);    /* only +Inf */
    metrics_observe_pass(m, 0.001, 500, false); /* the store failed: counted, not a success */
    metrics_text t = METRICS_TEXT_INIT;
    metrics_render(m, &t);
    ck_assert(!t.failed);
    ck_assert_ptr_nonnull(line_of(&t, "# TYPE meshca_reconcile_pass_duration_seconds histogram\n"));
    const char *b = "meshca_reconcile_pass_duration_seconds_bucket";
    char key[128];
    snprintf(key, sizeof(key), "%s{le=\"0.005\"}", b);
    ck_assert_double_eq(value_of(&t, key), 2);
    snprintf(key, sizeof(key), "%s{le=\"0.1\"}", b);
    ck_assert_double_eq(value_of(&t, key), 2);
    snprintf(key, sizeof(key), "%s{le=\"0.25\"}", b);
    ck_assert_double_eq(value_of(&t, key), 4);
    snprintf(key, sizeof(key), "%s{le=\"120\"}", b);
    ck_assert_double_eq(value_of(&t, key), 4);
    snprintf(key, sizeof(key), "%s{le=\"+Inf\"}", b);
    ck_assert_double_eq(value_of(&t, key), 5);
    ck_assert_double_eq_tol(value_of(&t, "meshca_reconcile_pass_duration_seconds_sum"), 500.454,
                            1e-9);
    ck_assert_double_eq(value_of(&t, "meshca_reconcile_pass_duration_seconds_count"), 5);
    ck_assert_double_eq(value_of(&t, "meshca_reconcile_passes_total"), 5);
    ck_assert_double_eq(value_of(&t, "meshca_reconcile_last_success_timestamp_seconds"), 400);
    /* Buckets never decrease, and +Inf is the last. */
    double prev = -1;
    const char *last = NULL;
    for (const char *p = t.buf; (p = strstr(p, b)) != NULL; p++) {
        double v = strtod(strchr(p, ' ') + 1, NULL);
        ck_assert(v >= prev);
        prev = v;
        last = p;
    }
    ck_assert(strncmp(last + strlen(b), "{le=\"+Inf\"}", 11) == 0);
    metrics_text_free(&t);
    metrics_free(m);
}
END_TEST

START_TEST(counters_add_per_label_set_and_every_family_has_help_and_type)
{
    metrics *m = NULL;
    ck_assert_int_eq(metrics_new(&m), 0);
    const char *a[] = {"mesh", "default", "backend", "ca-1", NULL};
    const char *b[] = {"mesh", "default", "backend", "ca-2", NULL};
    metrics_count(m, METRICS_SIGNATURES, a, 2);
    metrics_count(m, METRICS_SIGNATURES, b, 1);
    metrics_count(m, METRICS_SIGNATURES, a, 3);
    const char *r[] = {"path", "csr", "code", "202", NULL};
    metrics_count(m, METRICS_API_REQUESTS, r, 1);
    metrics_text t = METRICS_TEXT_INIT;
    metrics_render(m, &t);
    ck_assert_double_eq(value_of(&t, "meshca_signatures_total{mesh=\"default\",backend=\"ca-1\"}"), 5);
    ck_assert_double_eq(value_of(&t, "meshca_signatures_total{mesh=\"default\",backend=\"ca-2\"}"), 1);
    ck_assert_double_eq(value_of(&t, "meshca_api_requests_total{path=\"csr\",code=\"202\"}"), 1);
    /* No errors counted yet: the family is still declared (a scrape can alert on its absence). */
    ck_assert_ptr_nonnull(line_of(&t, "# TYPE meshca_errors_total counter\n"));
    ck_assert_ptr_null(line_of(&t, "meshca_errors_total{"));
    /* Every sample's family was declared before it, once. */
    for (const char *p = t.buf; p && *p;) {
        const char *nl = strchr(p, '\n');
        if (*p != '#') {
            char name[128];
            size_t n = strcspn(p, "{ ");
            ck_assert_uint_lt(n, sizeof(name));
            memcpy(name, p, n);
            name[n] = '\0';
            char *suffix = strstr(name, "_bucket");
            if (!suffix)
                suffix = strstr(name, "_sum");
            if (!suffix)
                suffix = strstr(name, "_count");
            if (suffix && strncmp(name, "meshca_reconcile_pass_duration_seconds", 38) == 0)
                *suffix = '\0';
            char type[160];
            snprintf(type, sizeof(type), "# TYPE %s ", name);
            const char *decl = strstr(t.buf, type);
            ck_assert_msg(decl && decl < p, "no TYPE before %s", name);
            ck_assert_ptr_null(strstr(decl + 1, type));
        }
        p = nl ? nl + 1 : NULL;
    }
    metrics_text_free(&t);
    metrics_free(m);
}
END_TEST

START_TEST(too_many_label_sets_fold_into_one_overflow_series)
{
    metrics *m = NULL;
    ck_assert_int_eq(metrics_new(&m), 0);
    for (int i = 0; i < METRICS_MAX_SERIES + 10; i++) {
        char code[32];
        snprintf(code, sizeof(code), "code-%d", i);
        const char *l[] = {"code", code, NULL};
        metrics_count(m, METRICS_ERRORS, l, 1);
    }
    metrics_text t = METRICS_TEXT_INIT;
    metrics_render(m, &t);
    ck_assert_double_eq(value_of(&t, "meshca_errors_total{code=\"code-0\"}"), 1);
    ck_assert_double_eq(value_of(&t, "meshca_errors_total{overflow=\"true\"}"), 11);
    ck_assert_double_eq(value_of(&t, "meshca_errors_total{code=\"code-1030\"}"), -1);
    metrics_text_free(&t);
    metrics_free(m);
}
END_TEST

START_TEST(a_pass_counts_signatures_but_not_rebundles_and_errors_by_code)
{
    metrics *m = NULL;
    ck_assert_int_eq(metrics_new(&m), 0);
    reconcile_action actions[] = {
        {.mesh = "default", .dataplane = "web-01", .backend = "ca-1", .verb = RECONCILE_ISSUED},
        {.mesh = "default", .dataplane = "db-01", .backend = "ca-1", .verb = RECONCILE_RENEWED},
        {.mesh = "default", .dataplane = "db-02", .backend = "ca-2", .verb = RECONCILE_REISSUED},
        {.mesh = "default", .dataplane = "db-03", .backend = "ca-1", .verb = RECONCILE_REBUNDLED},
    };
    reconcile_report rep = RECONCILE_REPORT_INIT;
    rep.actions = actions;
    rep.nactions = 4;
    diag_list diags = DIAG_LIST_INIT;
    diag_error(&diags, "ca-expired", NULL, "mtls.backends[0]", "expired");
    diag_warning(&diags, "conflict", NULL, "", "left to the next pass");
    diag_error(&diags, "ca-expired", NULL, "mtls.backends[0]", "expired");
    metrics_count_pass(m, 0, &rep, &diags);
    metrics_count_pass(m, MESHCA_EUNAVAILABLE, NULL, NULL);   /* the store could not be read */
    metrics_text t = METRICS_TEXT_INIT;
    metrics_render(m, &t);
    ck_assert_double_eq(value_of(&t, "meshca_signatures_total{mesh=\"default\",backend=\"ca-1\"}"), 2);
    ck_assert_double_eq(value_of(&t, "meshca_signatures_total{mesh=\"default\",backend=\"ca-2\"}"), 1);
    ck_assert_double_eq(value_of(&t, "meshca_errors_total{code=\"ca-expired\"}"), 2);
    ck_assert_double_eq(value_of(&t, "meshca_errors_total{code=\"store-error\"}"), 1);
    /* Warnings are not errors. */
    ck_assert_double_eq(value_of(&t, "meshca_errors_total{code=\"conflict\"}"), -1);
    metrics_text_free(&t);
    diag_list_free(&diags);
    metrics_free(m);
}
END_TEST

static void *count_many(void *arg)
{
    metrics *m = arg;
    const char *l[] = {"mesh", "default", "backend", "ca-1", NULL};
    for (int i = 0; i < 10000; i++)
        metrics_count(m, METRICS_SIGNATURES, l, 1);
    return NULL;
}

START_TEST(counters_are_exact_under_concurrent_increments)
{
    metrics *m = NULL;
    ck_assert_int_eq(metrics_new(&m), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, count_many, m), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    metrics_text t = METRICS_TEXT_INIT;
    metrics_render(m, &t);
    ck_assert_double_eq(value_of(&t, "meshca_signatures_total{mesh=\"default\",backend=\"ca-1\"}"),
                        40000);
    metrics_text_free(&t);
    metrics_free(m);
}
END_TEST

START_TEST(api_paths_fall_into_a_bounded_set_of_classes)
{
    ck_assert_str_eq(metrics_api_path_class("/v1/meshes/default/dataplanes/web-01/csr"), "csr");
    ck_assert_str_eq(metrics_api_path_class("/v1/meshes/default/dataplanes/web-01/identity"),
                     "identity");
    ck_assert_str_eq(metrics_api_path_class("/v1/meshes/default/dataplanes/web-01/ack"), "ack");
    ck_assert_str_eq(metrics_api_path_class("/v1/meshes/default/roots"), "roots");
    ck_assert_str_eq(metrics_api_path_class("/healthz"), "healthz");
    ck_assert_str_eq(metrics_api_path_class("/readyz"), "readyz");
    ck_assert_str_eq(metrics_api_path_class("/metrics"), "metrics");
    ck_assert_str_eq(metrics_api_path_class("/v1/meshes/x/whatever-csr"), "other");
    ck_assert_str_eq(metrics_api_path_class("/etc/passwd"), "other");
    ck_assert_str_eq(metrics_api_path_class(NULL), "other");
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *suite = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, label_values_escape_backslash_quote_and_newline);
    tcase_add_test(tc, help_escapes_backslash_and_newline_but_not_quotes);
    tcase_add_test(tc, values_print_integers_whole_and_fractions_exactly);
    tcase_add_test(tc, histogram_buckets_are_cumulative_with_sum_and_count);
    tcase_add_test(tc, counters_add_per_label_set_and_every_family_has_help_and_type);
    tcase_add_test(tc, too_many_label_sets_fold_into_one_overflow_series);
    tcase_add_test(tc, a_pass_counts_signatures_but_not_rebundles_and_errors_by_code);
    tcase_add_test(tc, counters_are_exact_under_concurrent_increments);
    tcase_add_test(tc, api_paths_fall_into_a_bounded_set_of_classes);
    suite_add_tcase(suite, tc);
    return suite;
}

int main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
