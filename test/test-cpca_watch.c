/* test-cpca_watch.c - the control-plane CA as the controller's check holds it: each certificate's
 * expiry by role and the rotation's phase, as /metrics writes them. */
#define _GNU_SOURCE 1
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>

#include "check-store.h"
#include "reconciler/api/cpca.h"
#include "reconciler/api/cpca_rotate.h"
#include "reconciler/api/cpca_watch.h"
#include "reconciler/api/server_tls.h"
#include "reconciler/pki.h"

static char dir[64], url[256];
static store *s;

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/meshca-test-cpca-watch-XXXXXX");
    test_store_dir(dir, url, sizeof(url));
    s = test_store_open(url);
}

static void teardown(void)
{
    store_close(s);
    test_store_dir_remove(dir);
}

/* notAfter of a PEM certificate, read here with OpenSSL directly. */
static long long enddate(const char *pem)
{
    char err[MESHCA_ERRBUF];
    X509 *cert = NULL;
    int64_t t = 0;
    ck_assert_int_eq(pki_cert_from_pem(pem, strlen(pem), &cert, err), 0);
    ck_assert_int_eq(pki_cert_not_after(cert, &t), 0);
    X509_free(cert);
    return (long long)t;
}

/* The watch's series, rendered. */
static void render(const cpca_watch *w, metrics_text *t)
{
    metrics_text_free(t);
    cpca_watch_render(w, t);
    ck_assert(!t->failed);
}

/* Whether the rendering holds exactly this line (a whole line). */
static bool has_line(const metrics_text *t, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = t->buf; p && (p = strstr(p, line)) != NULL; p++)
        if ((p == t->buf || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

static void assert_line(const metrics_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void assert_line(const metrics_text *t, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    ck_assert_msg(has_line(t, line), "no line '%s' in:\n%s", line, t->buf ? t->buf : "");
}

START_TEST(expiry_by_role_and_one_phase_series_each_through_a_rotation)
{
    char err[MESHCA_ERRBUF] = "";
    int64_t now = (int64_t)time(NULL);
    cpca_watch w = CPCA_WATCH_INIT;
    metrics_text t = METRICS_TEXT_INIT;

    /* No control-plane CA in the store: nothing to say (no family without a sample). */
    ck_assert_int_eq(cpca_watch_poll(&w, s, err), 0);
    ck_assert(!w.known);
    render(&w, &t);
    ck_assert_uint_eq(t.len, 0);

    cpca ca = {0};
    ck_assert_int_eq(cpca_load(s, 1, now, &ca, err), 0);
    long long current = enddate(ca.cert_pem);
    cpca_free(&ca);
    ck_assert_int_eq(cpca_watch_poll(&w, s, err), 1);
    render(&w, &t);
    ck_assert_ptr_nonnull(strstr(t.buf, "# TYPE meshca_cp_ca_cert_not_after_seconds gauge\n"));
    ck_assert_ptr_nonnull(strstr(t.buf, "# TYPE meshca_cp_ca_rotation_phase gauge\n"));
    assert_line(&t, "meshca_cp_ca_cert_not_after_seconds{role=\"current\"} %lld", current);
    ck_assert_ptr_null(strstr(t.buf, "role=\"next\""));
    ck_assert_ptr_null(strstr(t.buf, "role=\"previous\""));
    assert_line(&t, "meshca_cp_ca_rotation_phase{phase=\"none\"} 1");
    assert_line(&t, "meshca_cp_ca_rotation_phase{phase=\"started\"} 0");
    assert_line(&t, "meshca_cp_ca_rotation_phase{phase=\"switched\"} 0");
    ck_assert_ptr_null(strstr(t.buf, "meshca_cp_ca_rotation_phase_since_seconds{"));

    /* rotate: a next CA, phase started since the next CA's createdAt (now, to the second). */
    cpca_rotation r = {0};
    ck_assert_int_eq(cpca_rotate(s, CPCA_STEP_ROTATE, now, &r, err), 0);
    long long next = enddate(r.next_cert);
    cpca_rotation_free(&r);
    ck_assert_int_eq(cpca_watch_poll(&w, s, err), 1);
    render(&w, &t);
    assert_line(&t, "meshca_cp_ca_cert_not_after_seconds{role=\"current\"} %lld", current);
    assert_line(&t, "meshca_cp_ca_cert_not_after_seconds{role=\"next\"} %lld", next);
    assert_line(&t, "meshca_cp_ca_rotation_phase{phase=\"none\"} 0");
    assert_line(&t, "meshca_cp_ca_rotation_phase{phase=\"started\"} 1");
    assert_line(&t, "meshca_cp_ca_rotation_phase{phase=\"switched\"} 0");
    assert_line(&t, "meshca_cp_ca_rotation_phase_since_seconds{phase=\"started\"} %lld",
                (long long)now);

    /* --switch an hour later: the next CA is current, the old one previous. */
    ck_assert_int_eq(cpca_rotate(s, CPCA_STEP_SWITCH, now + 3600, NULL, err), 0);
    ck_assert_int_eq(cpca_watch_poll(&w, s, err), 1);
    render(&w, &t);
    assert_line(&t, "meshca_cp_ca_cert_not_after_seconds{role=\"current\"} %lld", next);
    assert_line(&t, "meshca_cp_ca_cert_not_after_seconds{role=\"previous\"} %lld", current);
    ck_assert_ptr_null(strstr(t.buf, "role=\"next\""));
    assert_line(&t, "meshca_cp_ca_rotation_phase{phase=\"started\"} 0");
    assert_line(&t, "meshca_cp_ca_rotation_phase{phase=\"switched\"} 1");
    assert_line(&t, "meshca_cp_ca_rotation_phase_since_seconds{phase=\"switched\"} %lld",
                (long long)now + 3600);
    ck_assert_ptr_null(strstr(t.buf, "{phase=\"started\"} 1"));

    /* --finish: one certificate again, no rotation in progress. */
    ck_assert_int_eq(cpca_rotate(s, CPCA_STEP_FINISH, now + 7200, NULL, err), 0);
    ck_assert_int_eq(cpca_watch_poll(&w, s, err), 1);
    render(&w, &t);
    assert_line(&t, "meshca_cp_ca_cert_not_after_seconds{role=\"current\"} %lld", next);
    ck_assert_ptr_null(strstr(t.buf, "role=\"previous\""));
    assert_line(&t, "meshca_cp_ca_rotation_phase{phase=\"none\"} 1");
    assert_line(&t, "meshca_cp_ca_rotation_phase{phase=\"switched\"} 0");
    ck_assert_ptr_null(strstr(t.buf, "meshca_cp_ca_rotation_phase_since_seconds{"));
    /* Never a key. */
    ck_assert_ptr_null(strstr(t.buf, "PRIVATE"));
    metrics_text_free(&t);
    cpca_watch_free(&w);
}
END_TEST

/* A store that cannot be read keeps what was seen: the metrics still say the last state. */
START_TEST(an_unreadable_store_keeps_the_last_state_and_says_why)
{
    char err[MESHCA_ERRBUF] = "";
    int64_t now = (int64_t)time(NULL);
    cpca ca = {0};
    ck_assert_int_eq(cpca_load(s, 1, now, &ca, err), 0);
    cpca_free(&ca);
    cpca_watch w = CPCA_WATCH_INIT;
    ck_assert_int_eq(cpca_rotate(s, CPCA_STEP_ROTATE, now, NULL, err), 0);
    ck_assert_int_eq(cpca_watch_poll(&w, s, err), 1);
    char away[128];
    snprintf(away, sizeof(away), "%s.away", dir);
    ck_assert_int_eq(rename(dir, away), 0);
    int rc = cpca_watch_poll(&w, s, err);
    ck_assert_int_eq(rename(away, dir), 0);
    ck_assert_int_lt(rc, 0);
    ck_assert_msg(strstr(err, "the database file was removed or replaced while in use") != NULL,
                  "%s", err);
    ck_assert(w.known);
    ck_assert_int_eq(w.r.phase, CPCA_PHASE_STARTED);
    cpca_watch_free(&w);
}
END_TEST

/*
 * The controller's CA check (on_ca_check): a switch made by another process (`cp-ca rotate
 * --switch` on its own store handle) is noticed and calls for a reload, while a check of a
 * store where nothing moved, or where only other objects moved, decodes nothing.
 */
START_TEST(a_switch_is_noticed_and_an_unmoved_object_is_not_decoded)
{
    char err[MESHCA_ERRBUF] = "";
    int64_t now = (int64_t)time(NULL);
    server_tls *tls = NULL;
    ck_assert_int_eq(server_tls_new(s, "127.0.0.1:5690", NULL, 0, NULL, NULL, &tls, err), 0);
    store *cli = test_store_open(url); /* what `meshca cp-ca rotate` runs on */
    cpca_watch w = CPCA_WATCH_INIT;

    ck_assert_int_eq(cpca_watch_poll(&w, s, err), 1);
    ck_assert_uint_eq(w.decodes, 1);
    ck_assert_int_eq(server_tls_ca_differs(tls, w.r.current_cert, now), 0);
    /* Nothing written: the revision alone says so. */
    ck_assert_int_eq(cpca_watch_poll(&w, s, err), 0);
    ck_assert_uint_eq(w.decodes, 1);
    /* Other objects written (the revision moves, the CA's version does not). */
    test_seed(cli, "type: Mesh\nname: other\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
                   "  - {name: ca-1, type: builtin}\n");
    ck_assert_int_eq(cpca_watch_poll(&w, s, err), 0);
    ck_assert_uint_eq(w.decodes, 1);
    ck_assert_int_eq(w.r.phase, CPCA_PHASE_NONE);

    /* rotate: decoded once; a next CA alone changes nothing served. */
    cpca_rotation r = {0};
    ck_assert_int_eq(cpca_rotate(cli, CPCA_STEP_ROTATE, now, &r, err), 0);
    ck_assert_int_eq(cpca_watch_poll(&w, s, err), 1);
    ck_assert_uint_eq(w.decodes, 2);
    ck_assert_int_eq(w.r.phase, CPCA_PHASE_STARTED);
    ck_assert_int_eq(server_tls_ca_differs(tls, w.r.current_cert, now), 0);
    ck_assert_int_eq(cpca_watch_poll(&w, s, err), 0);
    ck_assert_uint_eq(w.decodes, 2);

    /* --switch: noticed, and the served certificate is found to be the old CA's. */
    ck_assert_int_eq(cpca_rotate(cli, CPCA_STEP_SWITCH, now, NULL, err), 0);
    ck_assert_int_eq(cpca_watch_poll(&w, s, err), 1);
    ck_assert_uint_eq(w.decodes, 3);
    ck_assert_int_eq(w.r.phase, CPCA_PHASE_SWITCHED);
    ck_assert_str_eq(w.r.current_cert, r.next_cert);
    ck_assert_int_eq(server_tls_ca_differs(tls, w.r.current_cert, now), 1);
    ck_assert_int_eq(server_tls_reload(tls, now, NULL, err), 0);
    ck_assert_int_eq(server_tls_ca_differs(tls, w.r.current_cert, now), 0);
    /* The reload wrote nothing: the next check is the revision alone again. */
    ck_assert_int_eq(cpca_watch_poll(&w, s, err), 0);
    ck_assert_uint_eq(w.decodes, 3);
    cpca_rotation_free(&r);
    cpca_watch_free(&w);
    store_close(cli);
    server_tls_free(tls);
}
END_TEST

static Suite *suite(void)
{
    Suite *su = suite_create("cpca_watch");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, expiry_by_role_and_one_phase_series_each_through_a_rotation);
    tcase_add_test(tc, an_unreadable_store_keeps_the_last_state_and_says_why);
    tcase_add_test(tc, a_switch_is_noticed_and_an_unmoved_object_is_not_decoded);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
