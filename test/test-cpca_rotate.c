/* test-cpca_rotate.c - the control-plane CA's rotation in its one store object: the steps, their
 * refusals, what older readers (cpca_load) see at each step, the previous key dropped. */
#define _GNU_SOURCE 1
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "check-store.h"
#include "reconciler/api/cpca.h"
#include "reconciler/api/cpca_rotate.h"
#include "reconciler/pki.h"

static char dir[64], url[256];
static store *s;
static const store_key ca_key = {CPCA_KIND, CPCA_MESH, CPCA_NAME};

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/meshca-test-cpca-rotate-XXXXXX");
    test_store_dir(dir, url, sizeof(url));
    s = test_store_open(url);
}

static void teardown(void)
{
    store_close(s);
    test_store_dir_remove(dir);
}

/* The stored object (caller frees with pki_free_secret) and its version. */
static char *stored(uint64_t *version)
{
    char *value = NULL;
    ck_assert_int_eq(store_get(s, &ca_key, &value, NULL, version), 0);
    return value;
}

/* How many times needle occurs in text. */
static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The CA today's readers load: cpca_load's certificate, and a check that its key signs for it. */
static void loaded(char *cert_out, size_t size)
{
    char err[MESHCA_ERRBUF] = "";
    cpca ca = {NULL, NULL};
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    ck_assert_msg(cpca_load(s, 0, time(NULL), &ca, err) == 0, "cpca_load: %s", err);
    ck_assert_int_eq(pki_cert_from_pem(ca.cert_pem, strlen(ca.cert_pem), &cert, err), 0);
    ck_assert_int_eq(pki_key_from_pem(ca.key_pem, strlen(ca.key_pem), &key, err), 0);
    ck_assert_int_eq(X509_check_private_key(cert, key), 1);
    snprintf(cert_out, size, "%s", ca.cert_pem);
    X509_free(cert);
    EVP_PKEY_free(key);
    cpca_free(&ca);
}

START_TEST(object_of_today_reads_as_no_rotation)
{
    char err[MESHCA_ERRBUF] = "", old[4096];
    cpca ca = {NULL, NULL};
    ck_assert_int_eq(cpca_load(s, 1, time(NULL), &ca, err), 0); /* as `run` or `cp-ca` makes it */
    cpca_free(&ca);
    loaded(old, sizeof(old));
    cpca_rotation r = {0};
    ck_assert_int_eq(cpca_rotation_read(s, &r, err), 0);
    ck_assert_int_eq(r.phase, CPCA_PHASE_NONE);
    ck_assert_str_eq(r.current_cert, old);
    ck_assert_ptr_null(r.next_cert);
    ck_assert_ptr_null(r.previous_cert);
    const char *certs[CPCA_ROTATION_MAX_CERTS], *roles[CPCA_ROTATION_MAX_CERTS];
    ck_assert_uint_eq(cpca_rotation_certs(&r, certs, roles), 1);
    ck_assert_str_eq(roles[0], "current");
    ck_assert_ptr_eq(certs[0], r.current_cert);
    cpca_rotation_free(&r);
}
END_TEST

START_TEST(three_steps_keep_older_readers_on_the_serving_ca)
{
    char err[MESHCA_ERRBUF] = "", old[4096], now_loaded[4096], next[4096];
    int64_t t0 = 1790000000; /* 2026-09-21T14:13:20Z */
    cpca ca = {NULL, NULL};
    ck_assert_int_eq(cpca_load(s, 1, t0, &ca, err), 0);
    cpca_free(&ca);
    loaded(old, sizeof(old));

    /* rotate: a next CA; today's readers still load (and serve with) the current one. */
    cpca_rotation r = {0};
    ck_assert_msg(cpca_rotate(s, CPCA_STEP_ROTATE, t0 + 10, &r, err) == 0, "rotate: %s", err);
    ck_assert_int_eq(r.phase, CPCA_PHASE_STARTED);
    ck_assert_str_eq(r.current_cert, old);
    ck_assert_ptr_nonnull(r.next_cert);
    ck_assert_str_ne(r.next_cert, old);
    ck_assert_str_eq(r.next_created, "2026-09-21T14:13:30Z");
    snprintf(next, sizeof(next), "%s", r.next_cert);
    const char *certs[CPCA_ROTATION_MAX_CERTS], *roles[CPCA_ROTATION_MAX_CERTS];
    ck_assert_uint_eq(cpca_rotation_certs(&r, certs, roles), 2);
    ck_assert_str_eq(roles[0], "current");
    ck_assert_str_eq(certs[0], old);
    ck_assert_str_eq(roles[1], "next");
    ck_assert_str_eq(certs[1], next);
    cpca_rotation_free(&r);
    loaded(now_loaded, sizeof(now_loaded));
    ck_assert_str_eq(now_loaded, old);
    char *value = stored(NULL);
    ck_assert_int_eq(count(value, "PRIVATE KEY-----\\n"), 4); /* BEGIN and END of two keys */
    pki_free_secret(value);

    /* The new CA names its time: the issuer of a served certificate tells which CA signed it. */
    X509 *cert = NULL;
    ck_assert_int_eq(pki_cert_from_pem(next, strlen(next), &cert, err), 0);
    char subject[256];
    X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
    ck_assert_str_eq(subject, "/CN=meshca control plane CA 2026-09-21T14:13:30Z");
    ck_assert_int_eq(X509_check_ca(cert), 1);
    int64_t na = 0;
    ck_assert_int_eq(pki_cert_not_after(cert, &na), 0);
    ck_assert_int_eq(na, t0 + 10 + (int64_t)CPCA_CA_DAYS * 86400);
    X509_free(cert);

    /* switch: the next CA (with its own key) is what today's readers load; the old key is gone. */
    ck_assert_msg(cpca_rotate(s, CPCA_STEP_SWITCH, t0 + 20, &r, err) == 0, "switch: %s", err);
    ck_assert_int_eq(r.phase, CPCA_PHASE_SWITCHED);
    ck_assert_str_eq(r.current_cert, next);
    ck_assert_str_eq(r.current_created, "2026-09-21T14:13:30Z");
    ck_assert_str_eq(r.previous_cert, old);
    ck_assert_str_eq(r.switched_at, "2026-09-21T14:13:40Z");
    ck_assert_ptr_null(r.next_cert);
    ck_assert_uint_eq(cpca_rotation_certs(&r, certs, roles), 2);
    ck_assert_str_eq(roles[0], "previous");
    ck_assert_str_eq(certs[0], old); /* the same bundle, in the same order, as after rotate */
    ck_assert_str_eq(roles[1], "current");
    ck_assert_str_eq(certs[1], next);
    cpca_rotation_free(&r);
    loaded(now_loaded, sizeof(now_loaded));
    ck_assert_str_eq(now_loaded, next);
    value = stored(NULL);
    ck_assert_int_eq(count(value, "PRIVATE KEY-----\\n"), 2); /* one key: the new CA's */
    ck_assert_ptr_null(strstr(value, "\"next\""));
    pki_free_secret(value);

    /* finish: only the new CA is left. */
    ck_assert_msg(cpca_rotate(s, CPCA_STEP_FINISH, t0 + 30, &r, err) == 0, "finish: %s", err);
    ck_assert_int_eq(r.phase, CPCA_PHASE_NONE);
    ck_assert_str_eq(r.current_cert, next);
    ck_assert_ptr_null(r.previous_cert);
    ck_assert_uint_eq(cpca_rotation_certs(&r, certs, roles), 1);
    ck_assert_str_eq(roles[0], "current");
    cpca_rotation_free(&r);
    loaded(now_loaded, sizeof(now_loaded));
    ck_assert_str_eq(now_loaded, next);
    value = stored(NULL);
    ck_assert_ptr_null(strstr(value, "previous"));
    ck_assert_ptr_null(strstr(value, "switchedAt"));
    ck_assert_int_eq(count(value, "PRIVATE KEY-----\\n"), 2);
    pki_free_secret(value);

    /* And a rotation can start again. */
    ck_assert_int_eq(cpca_rotate(s, CPCA_STEP_ROTATE, t0 + 40, NULL, err), 0);
}
END_TEST

/* step on the store in its present phase: refused with MESHCA_ESTATE, a message holding want,
 * and the object unchanged. */
static void refused(cpca_step step, const char *want)
{
    char err[MESHCA_ERRBUF] = "";
    uint64_t before = 0, after = 0;
    char *v1 = stored(&before);
    ck_assert_int_eq(cpca_rotate(s, step, time(NULL), NULL, err), MESHCA_ESTATE);
    ck_assert_msg(strstr(err, want) != NULL, "'%s' lacks '%s'", err, want);
    char *v2 = stored(&after);
    ck_assert_uint_eq(after, before);
    ck_assert_str_eq(v2, v1);
    pki_free_secret(v1);
    pki_free_secret(v2);
}

START_TEST(steps_out_of_order_are_refused_naming_the_next_step)
{
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(cpca_rotate(s, CPCA_STEP_ROTATE, time(NULL), NULL, err), MESHCA_ESTATE);
    ck_assert_str_eq(err, "this store has no control-plane CA yet: nothing to rotate ('meshca run "
                          "--listen' or 'meshca cp-ca' creates one)");
    cpca ca = {NULL, NULL};
    ck_assert_int_eq(cpca_load(s, 1, time(NULL), &ca, err), 0);
    cpca_free(&ca);

    refused(CPCA_STEP_SWITCH, "no control-plane CA rotation in progress: no next CA to switch to; "
                              "start one with 'meshca cp-ca rotate'");
    refused(CPCA_STEP_FINISH, "no control-plane CA rotation in progress: nothing to finish");
    ck_assert_int_eq(cpca_rotate(s, CPCA_STEP_ROTATE, time(NULL), NULL, err), 0);
    refused(CPCA_STEP_ROTATE,
            "a control-plane CA rotation is already in progress (next CA created ");
    refused(CPCA_STEP_ROTATE, "then run 'meshca cp-ca rotate --switch'");
    refused(CPCA_STEP_FINISH,
            "the control-plane CA rotation is not switched yet: run 'meshca cp-ca "
            "rotate --switch' first");
    ck_assert_int_eq(cpca_rotate(s, CPCA_STEP_SWITCH, time(NULL), NULL, err), 0);
    refused(CPCA_STEP_SWITCH, "the control-plane CA rotation is already switched (at ");
    refused(CPCA_STEP_SWITCH, "the next step is 'meshca cp-ca rotate --finish'");
    refused(CPCA_STEP_ROTATE, "already in progress (switched at ");
    refused(CPCA_STEP_ROTATE, "run 'meshca cp-ca rotate --finish' first");
}
END_TEST

START_TEST(a_rotate_that_lost_the_race_is_refused)
{
    /* What a second `rotate` finds once the first stored its next CA: the object it read is
     * stale, the compare-and-swap fails, and the re-read refuses it. Simulated with a value read
     * before the first rotate: applying on it works, storing it at its version conflicts. */
    char err[MESHCA_ERRBUF] = "", *updated = NULL;
    cpca ca = {NULL, NULL};
    ck_assert_int_eq(cpca_load(s, 1, time(NULL), &ca, err), 0);
    cpca_free(&ca);
    uint64_t version = 0;
    char *stale = stored(&version);
    ck_assert_int_eq(cpca_rotate(s, CPCA_STEP_ROTATE, time(NULL), NULL, err), 0);
    cpca next = {NULL, NULL};
    ck_assert_int_eq(cpca_generate("x", time(NULL), &next, err), 0);
    ck_assert_int_eq(cpca_rotation_apply(stale, strlen(stale), CPCA_STEP_ROTATE, &next, time(NULL),
                                         &updated, err),
                     0);
    ck_assert_int_eq(store_put(s, &ca_key, updated, strlen(updated), version, NULL),
                     STORE_ECONFLICT);
    refused(CPCA_STEP_ROTATE, "already in progress");
    pki_free_secret(updated);
    pki_free_secret(stale);
    cpca_free(&next);
}
END_TEST

START_TEST(objects_of_no_known_shape_are_corrupt)
{
    static const char *const bad[] = {
        "not json",
        "{\"cert\":\"C\"}",
        "{\"cert\":\"C\",\"key\":\"K\",\"next\":{\"cert\":\"N\"}}",
        "{\"cert\":\"C\",\"key\":\"K\",\"previous\":{}}",
        "{\"cert\":\"C\",\"key\":\"K\",\"next\":{\"cert\":\"N\",\"key\":\"L\"},\"previous\":{"
        "\"cert\":\"P\"}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[MESHCA_ERRBUF] = "", *out = NULL;
        cpca_rotation r = {0};
        ck_assert_int_eq(cpca_rotation_decode(bad[i], strlen(bad[i]), &r, err), MESHCA_ECORRUPT);
        ck_assert_msg(strstr(err, "controlplane/meshca/ca") != NULL, "%s", err);
        ck_assert_int_eq(
            cpca_rotation_apply(bad[i], strlen(bad[i]), CPCA_STEP_FINISH, NULL, 0, &out, err),
            MESHCA_ECORRUPT);
        ck_assert_ptr_null(out);
    }
    /* The shapes written by hand or by an older meshca: createdAt is optional. */
    const char *ok = "{\"cert\":\"C\",\"key\":\"K\",\"previous\":{\"cert\":\"P\"}}";
    char err[MESHCA_ERRBUF] = "";
    cpca_rotation r = {0};
    ck_assert_int_eq(cpca_rotation_decode(ok, strlen(ok), &r, err), 0);
    ck_assert_int_eq(r.phase, CPCA_PHASE_SWITCHED);
    ck_assert_str_eq(r.previous_cert, "P");
    ck_assert_str_eq(r.previous_created, "");
    ck_assert_str_eq(r.current_created, "");
    ck_assert_str_eq(cpca_phase_name(r.phase), "switched");
    cpca_rotation_free(&r);
}
END_TEST

static Suite *suite(void)
{
    Suite *su = suite_create("cpca_rotate");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, object_of_today_reads_as_no_rotation);
    tcase_add_test(tc, three_steps_keep_older_readers_on_the_serving_ca);
    tcase_add_test(tc, steps_out_of_order_are_refused_naming_the_next_step);
    tcase_add_test(tc, a_rotate_that_lost_the_race_is_refused);
    tcase_add_test(tc, objects_of_no_known_shape_are_corrupt);
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
