/* test-server_tls.c - the API's certificate renewed in place: due at two thirds of its life, a
 * reload serving a new certificate from the same SSL_CTX, a bad pair leaving the old one served. */
#define _GNU_SOURCE 1
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "check-store.h"
#include "reconciler/api/cpca.h"
#include "reconciler/api/cpca_rotate.h"
#include "reconciler/api/server_tls.h"
#include "reconciler/pki.h"

static char dir[64], url[256];
static store *s;

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/meshca-test-server-tls-XXXXXX");
    test_store_dir(dir, url, sizeof(url));
    s = test_store_open(url);
}

static void teardown(void)
{
    store_close(s);
    test_store_dir_remove(dir);
}

/* The serial of the certificate ctx serves, as text ("" when none). */
static void served_serial(SSL_CTX *ctx, char *buf, size_t size)
{
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    buf[0] = '\0';
    if (!cert)
        return;
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex)
        snprintf(buf, size, "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
}

/* A file in dir holding text. */
static void write_file(const char *name, const char *text, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(signed_due_at_two_thirds_and_reloaded_in_place)
{
    server_tls *t = NULL;
    char err[MESHCA_ERRBUF] = "", before[80], after[80];
    int64_t now = (int64_t)time(NULL), not_after = 0;
    ck_assert_int_eq(server_tls_new(s, "127.0.0.1:5690", NULL, 0, NULL, NULL, &t, err), 0);
    SSL_CTX *ctx = server_tls_ctx(t);
    ck_assert_ptr_nonnull(ctx);
    served_serial(ctx, before, sizeof(before));
    ck_assert_str_ne(before, "");
    /* CPCA_SERVER_DAYS = 90: not due at 59 days, due at 61. */
    ck_assert_int_eq(server_tls_due(t, now), 0);
    ck_assert_int_eq(server_tls_due(t, now + 59 * 86400), 0);
    ck_assert_int_eq(server_tls_due(t, now + 61 * 86400), 1);
    ck_assert_int_eq(server_tls_reload(t, now, &not_after, err), 0);
    ck_assert_ptr_eq(server_tls_ctx(t), ctx); /* the context SSL_new reads stays the same */
    served_serial(ctx, after, sizeof(after));
    ck_assert_str_ne(after, before);
    ck_assert_int_ge(not_after, now + 90 * 86400 - 120);
    ck_assert_int_le(not_after, now + 90 * 86400 + 120);
    ck_assert_int_eq(server_tls_due(t, now + 59 * 86400), 0);
    server_tls_free(t);
}
END_TEST

START_TEST(files_reloaded_and_a_bad_pair_keeps_the_old)
{
    cpca ca = {0};
    char err[MESHCA_ERRBUF] = "", *chain1 = NULL, *key1 = NULL, *chain2 = NULL, *key2 = NULL;
    char cert_path[256], key_path[256], first[80], second[80], third[80];
    int64_t now = (int64_t)time(NULL);
    ck_assert_int_eq(cpca_load(s, 1, now, &ca, err), 0);
    ck_assert_int_eq(cpca_server_cert(&ca, "127.0.0.1:5690", NULL, 0, now, &chain1, &key1, err), 0);
    ck_assert_int_eq(cpca_server_cert(&ca, "127.0.0.1:5690", NULL, 0, now, &chain2, &key2, err), 0);
    write_file("api.pem", chain1, cert_path, sizeof(cert_path));
    write_file("api.key", key1, key_path, sizeof(key_path));

    server_tls *t = NULL;
    ck_assert_int_eq(server_tls_new(s, "127.0.0.1:5690", NULL, 0, cert_path, key_path, &t, err), 0);
    SSL_CTX *ctx = server_tls_ctx(t);
    served_serial(ctx, first, sizeof(first));
    ck_assert_int_eq(server_tls_due(t, now + 3650 * 86400LL), 0); /* files: only SIGHUP */

    write_file("api.pem", chain2, cert_path, sizeof(cert_path));
    write_file("api.key", key2, key_path, sizeof(key_path));
    ck_assert_int_eq(server_tls_reload(t, now, NULL, err), 0);
    served_serial(ctx, second, sizeof(second));
    ck_assert_str_ne(second, first);

    /* The first certificate with the second key: refused, the second still served. */
    write_file("api.pem", chain1, cert_path, sizeof(cert_path));
    ck_assert_int_lt(server_tls_reload(t, now, NULL, err), 0);
    ck_assert_ptr_nonnull(strstr(err, "do not go together"));
    served_serial(ctx, third, sizeof(third));
    ck_assert_str_eq(third, second);
    ck_assert_int_eq(SSL_CTX_check_private_key(ctx), 1);

    server_tls_free(t);
    free(chain1);
    free(chain2);
    pki_free_secret(key1);
    pki_free_secret(key2);
    cpca_free(&ca);
}
END_TEST

/* The subject of the CA that issued what ctx serves, and of a PEM certificate. */
static void served_issuer(SSL_CTX *ctx, char *buf, size_t size)
{
    X509_NAME_oneline(X509_get_issuer_name(SSL_CTX_get0_certificate(ctx)), buf, (int)size);
}

static void subject_of(const char *pem, char *buf, size_t size)
{
    char err[MESHCA_ERRBUF];
    X509 *cert = NULL;
    ck_assert_int_eq(pki_cert_from_pem(pem, strlen(pem), &cert, err), 0);
    X509_NAME_oneline(X509_get_subject_name(cert), buf, (int)size);
    X509_free(cert);
}

START_TEST(a_switched_control_plane_ca_is_noticed_and_served)
{
    server_tls *t = NULL;
    char err[MESHCA_ERRBUF] = "", issuer[256], want[256];
    int64_t now = (int64_t)time(NULL);
    ck_assert_int_eq(server_tls_new(s, "127.0.0.1:5690", NULL, 0, NULL, NULL, &t, err), 0);
    SSL_CTX *ctx = server_tls_ctx(t);
    ck_assert_int_eq(server_tls_ca_changed(t, now, err), 0);

    /* A next CA alone changes nothing served: agents may not have the bundle yet. */
    cpca_rotation r = {0};
    ck_assert_int_eq(cpca_rotate(s, CPCA_STEP_ROTATE, now, &r, err), 0);
    ck_assert_int_eq(server_tls_ca_changed(t, now, err), 0);
    subject_of(r.next_cert, want, sizeof(want));
    cpca_rotation_free(&r);

    ck_assert_int_eq(cpca_rotate(s, CPCA_STEP_SWITCH, now, NULL, err), 0);
    ck_assert_int_eq(server_tls_ca_changed(t, now, err), 1);
    ck_assert_int_eq(server_tls_reload(t, now, NULL, err), 0);
    ck_assert_ptr_eq(server_tls_ctx(t), ctx);
    served_issuer(ctx, issuer, sizeof(issuer));
    ck_assert_str_eq(issuer, want);
    ck_assert_int_eq(server_tls_ca_changed(t, now, err), 0);   /* said once, not at every check */

    /* finish changes the bundle, not the CA that signs. */
    ck_assert_int_eq(cpca_rotate(s, CPCA_STEP_FINISH, now, NULL, err), 0);
    ck_assert_int_eq(server_tls_ca_changed(t, now, err), 0);
    server_tls_free(t);
}
END_TEST

START_TEST(files_never_follow_the_control_plane_ca)
{
    cpca ca = {0};
    char err[MESHCA_ERRBUF] = "", *chain = NULL, *key = NULL, cert_path[256], key_path[256];
    int64_t now = (int64_t)time(NULL);
    ck_assert_int_eq(cpca_load(s, 1, now, &ca, err), 0);
    ck_assert_int_eq(cpca_server_cert(&ca, "127.0.0.1:5690", NULL, 0, now, &chain, &key, err), 0);
    write_file("api.pem", chain, cert_path, sizeof(cert_path));
    write_file("api.key", key, key_path, sizeof(key_path));
    server_tls *t = NULL;
    ck_assert_int_eq(server_tls_new(s, "127.0.0.1:5690", NULL, 0, cert_path, key_path, &t, err), 0);
    ck_assert_int_eq(cpca_rotate(s, CPCA_STEP_ROTATE, now, NULL, err), 0);
    ck_assert_int_eq(cpca_rotate(s, CPCA_STEP_SWITCH, now, NULL, err), 0);
    ck_assert_int_eq(server_tls_ca_changed(t, now, err), 0);   /* --tls-cert: the user's CA */
    server_tls_free(t);
    free(chain);
    pki_free_secret(key);
    cpca_free(&ca);
}
END_TEST

static Suite *suite(void)
{
    Suite *su = suite_create("server_tls");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, signed_due_at_two_thirds_and_reloaded_in_place);
    tcase_add_test(tc, files_reloaded_and_a_bad_pair_keeps_the_old);
    tcase_add_test(tc, a_switched_control_plane_ca_is_noticed_and_served);
    tcase_add_test(tc, files_never_follow_the_control_plane_ca);
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
