/* test-identity_since.c - Check suite for an identity's `since`: set when a CSR creates the record, kept by every later write, and a client certificate older than it refused. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "check-store.h"
#include "reconciler/pki.h"
#include "reconciler/reconcile.h"
#include "reconciler/state.h"
#include "reconciler/store/identity_since.h"

static char dir[64], url[256];
static store *s;

static char *key_pem; /* a real P-256 public key: the pass signs it */

static void make_key(void)
{
    EVP_PKEY *key = NULL;
    unsigned char *der = NULL;
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(pki_generate_key(false, 0, &key, err), 0);
    int n = i2d_PUBKEY(key, &der);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(pki_spki_to_pem(der, (size_t)n, &key_pem, err), 0);
    OPENSSL_free(der);
    EVP_PKEY_free(key);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/meshca-test-idsince-XXXXXX");
    test_store_dir(dir, url, sizeof(url));
    s = test_store_open(url);
    make_key();
    test_seed(s, "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n"
                 "  backends:\n  - name: ca-1\n    type: builtin\n"
                 "---\ntype: Dataplane\nmesh: default\nname: web-01\nnetworking:\n"
                 "  address: 127.0.0.1\n  inbound:\n  - port: 8443\n    tags:\n"
                 "      kuma.io/service: web\n");
}

static void teardown(void)
{
    store_close(s);
    test_store_dir_remove(dir);
    free(key_pem);
    key_pem = NULL;
}

/* identity_with_pending_key, then its write as the API commits it; its code. */
static int submit(int64_t cert_not_before, char *err)
{
    char *text = NULL;
    uint64_t version = 0, dp_version = 0;
    int rc = identity_with_pending_key(s, "default", "web-01", cert_not_before, key_pem, NULL, &text,
                                       &version, &dp_version, err);
    if (rc < 0) {
        ck_assert_ptr_null(text);
        return rc;
    }
    store_op ops[2];
    rc = store_txn_at(s, "test", ops,
                      identity_pending_key_ops("default", "web-01", text, version, dp_version, ops));
    free(text);
    return rc;
}

static identity stored(void)
{
    identity id = {0};
    char err[MESHCA_ERRBUF] = "";
    ck_assert_msg(identity_read(s, "default", "web-01", &id, NULL, err) == 0, "%s", err);
    return id;
}

START_TEST(admits_from_since_minus_the_backdating_on)
{
    char err[MESHCA_ERRBUF] = "";
    const int64_t t = 1764400000;
    /* The issuer's backdating (pki.c) is what the allowance is. */
    ck_assert_int_eq(IDENTITY_SINCE_SLACK_S, PKI_LEAF_BACKDATE_S);
    ck_assert_int_eq(identity_since_admits(t, "m", "d", t - IDENTITY_SINCE_SLACK_S, err), 0);
    ck_assert_int_eq(identity_since_admits(t, "m", "d", t + 86400, err), 0);
    ck_assert_int_eq(identity_since_admits(t, "m", "d", t - IDENTITY_SINCE_SLACK_S - 1, err),
                     MESHCA_EUNAUTHENTICATED);
    ck_assert_msg(strstr(err, "m/d was registered again") && strstr(err, "dataplane token") &&
                      strstr(err, "meshca token issue -m m -d d"),
                  "%s", err);
    /* A record from before since was kept refuses nothing (as before); nor does a negative one. */
    ck_assert_int_eq(identity_since_admits(0, "m", "d", 0, err), 0);
    ck_assert_int_eq(identity_since_admits(-5, "m", "d", INT64_MIN, err), 0);
    /* No record: no certificate, however new. */
    err[0] = '\0';
    ck_assert_int_eq(identity_since_admits(IDENTITY_SINCE_NONE, "m", "d", INT64_MAX, err),
                     MESHCA_EUNAUTHENTICATED);
    ck_assert_msg(strstr(err, "has no identity in the store") && strstr(err, "dataplane token"),
                  "%s", err);
    identity id = {.since = t};
    ck_assert_int_eq(identity_admits_cert(&id, "m", "d", t - 3600, err), MESHCA_EUNAUTHENTICATED);
    ck_assert_int_eq(identity_admits_cert(&id, "m", "d", t, err), 0);
    ck_assert_int_eq(identity_admits_cert(NULL, "m", "d", t, err), MESHCA_EUNAUTHENTICATED);
}
END_TEST

/* The first CSR (a token) creates the record with since = now; later writes keep it. */
START_TEST(a_new_record_gets_since_and_every_later_write_keeps_it)
{
    char err[MESHCA_ERRBUF] = "";
    int64_t before = (int64_t)time(NULL);
    ck_assert_msg(submit(IDENTITY_NO_CERT, err) == 0, "%s", err);
    int64_t after = (int64_t)time(NULL);
    identity id = stored();
    ck_assert(id.since >= before && id.since <= after);
    int64_t since = id.since;
    identity_clear(&id);

    /* The pass signs it: since stays. */
    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    diag_list diags = DIAG_LIST_INIT;
    opts.sign_workers = 1;
    opts.now = since + 3600; /* an hour later, as a renewal would be */
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    id = stored();
    ck_assert_int_eq(id.generation, 1);
    ck_assert(id.since == since);
    identity_clear(&id);

    /* A renewal's CSR with the certificate the record backs: taken, since unchanged. */
    ck_assert_msg(submit(since + 10, err) == 0, "%s", err);
    id = stored();
    ck_assert(id.since == since);
    ck_assert_str_eq(id.pending_key_pem, key_pem);
    identity_clear(&id);

    /* A certificate from before the record: refused, nothing written. */
    uint64_t v0 = 0, v1 = 0;
    ck_assert_int_eq(state_object_version(s, &(store_key){STATE_IDENTITIES, "default", "web-01"},
                                          &v0),
                     0);
    ck_assert_int_eq(submit(since - IDENTITY_SINCE_SLACK_S - 1, err), MESHCA_EUNAUTHENTICATED);
    ck_assert_int_eq(state_object_version(s, &(store_key){STATE_IDENTITIES, "default", "web-01"},
                                          &v1),
                     0);
    ck_assert(v0 == v1);
    ck_assert_int_eq(identity_cert_current(s, "default", "web-01", since - 3600, err),
                     MESHCA_EUNAUTHENTICATED);
    ck_assert_int_eq(identity_cert_current(s, "default", "web-01", since, err), 0);
}
END_TEST

/* No record (deleted, or a restore older than the dataplane): a certificate starts none. */
START_TEST(without_a_record_a_certificate_is_refused_and_a_token_starts_one)
{
    char err[MESHCA_ERRBUF] = "";
    int64_t now = (int64_t)time(NULL);
    ck_assert_int_eq(submit(now, err), MESHCA_EUNAUTHENTICATED);
    ck_assert_msg(strstr(err, "has no identity in the store"), "%s", err);
    identity id = {0};
    ck_assert_int_eq(identity_read(s, "default", "web-01", &id, NULL, err), STORE_ENOTFOUND);
    ck_assert_int_eq(identity_cert_current(s, "default", "web-01", now, err),
                     MESHCA_EUNAUTHENTICATED);
    /* The token does. */
    ck_assert_msg(submit(IDENTITY_NO_CERT, err) == 0, "%s", err);
    ck_assert_int_eq(identity_cert_current(s, "default", "web-01", now, err), 0);
}
END_TEST

/* A record written before since was kept: read as 0, every certificate taken (as before), and
 * a later write does not add one. A record the peek does not take is read whole. */
START_TEST(an_older_record_without_since_refuses_nothing)
{
    char err[MESHCA_ERRBUF] = "";
    static const char old[] = "{\"mesh\":\"default\",\"dataplane\":\"web-01\",\"backend\":null,"
                              "\"generation\":0,\"certificate\":null,\"publicKey\":null,"
                              "\"csr\":null,\"pendingPublicKey\":\"K\",\"pendingCsr\":null,"
                              "\"bundleDigest\":null,\"bundleBackends\":[],\"serial\":null,"
                              "\"notBefore\":0,\"notAfter\":0,\"renewAt\":0,"
                              "\"caFingerprint\":null,\"tags\":null,\"rsa\":false,"
                              "\"crossSigned\":false,\"regenerations\":0,"
                              "\"lastRegeneration\":null}";
    store_key key = {STATE_IDENTITIES, "default", "web-01"};
    ck_assert_int_eq(store_put(s, &key, old, strlen(old), 0, NULL), 0);
    identity id = stored();
    ck_assert(id.since == 0);
    identity_clear(&id);
    ck_assert_int_eq(identity_cert_current(s, "default", "web-01", 0, err), 0);
    ck_assert_msg(submit(1, err) == 0, "%s", err);
    char *value = NULL;
    size_t len = 0;
    ck_assert_int_eq(store_get(s, &key, &value, &len, NULL), 0);
    ck_assert_ptr_null(strstr(value, "since"));
    free(value);

    /* A \u escape (the peek leaves such a record to identity_read): since still read. */
    static const char esc[] = "{\"mesh\":\"default\",\"dataplane\":\"web-01\",\"generation\":0,"
                              "\"pendingPublicKey\":\"\\u004B\",\"since\":2000000000}";
    uint64_t v = 0;
    ck_assert_int_eq(state_object_version(s, &key, &v), 0);
    ck_assert_int_eq(store_put(s, &key, esc, strlen(esc), v, NULL), 0);
    ck_assert_int_eq(identity_cert_current(s, "default", "web-01", 1900000000, err),
                     MESHCA_EUNAUTHENTICATED);
    ck_assert_int_eq(identity_cert_current(s, "default", "web-01", 2000000000, err), 0);
}
END_TEST

/* A pass reads the identities after it started: a first CSR committed meanwhile has a since
 * later than the pass's clock. Its certificate must be one the record backs. */
START_TEST(a_record_made_after_the_pass_started_is_signed_for_it)
{
    char err[MESHCA_ERRBUF] = "";
    ck_assert_msg(submit(IDENTITY_NO_CERT, err) == 0, "%s", err);
    identity id = stored();
    int64_t since = id.since;
    identity_clear(&id);

    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    diag_list diags = DIAG_LIST_INIT;
    opts.sign_workers = 1;
    opts.now = since - 30; /* the pass started half a minute before the CSR's commit */
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    id = stored();
    ck_assert_int_eq(id.generation, 1);
    ck_assert(id.since == since);
    X509 *cert = NULL;
    int64_t not_before = 0;
    ck_assert_msg(pki_cert_from_pem(id.cert_pem, strlen(id.cert_pem), &cert, err) == 0, "%s", err);
    ck_assert_int_eq(pki_cert_not_before(cert, &not_before), 0);
    X509_free(cert);
    ck_assert(id.not_before == not_before);
    identity_clear(&id);
    /* Not earlier than the record allows (the agent's next CSR, GET and ack with it: not 401). */
    ck_assert_msg(identity_cert_current(s, "default", "web-01", not_before, err) == 0,
                  "notBefore %lld, since %lld: %s", (long long)not_before, (long long)since, err);
    ck_assert_int_eq(not_before, since - PKI_LEAF_BACKDATE_S);
}
END_TEST

/* A since far ahead of the signer's clock (a replica's clock an hour off): signed at the
 * pass's clock as before, not at since, which would start the certificate in the future. */
START_TEST(a_since_far_ahead_of_the_signers_clock_does_not_date_the_certificate)
{
    char err[MESHCA_ERRBUF] = "";
    ck_assert_msg(submit(IDENTITY_NO_CERT, err) == 0, "%s", err);
    identity id = stored();
    uint64_t version = 0;
    ck_assert_int_eq(state_object_version(s, &(store_key){STATE_IDENTITIES, "default", "web-01"},
                                          &version),
                     0);
    int64_t now = (int64_t)time(NULL);
    id.since = now + 3600;
    ck_assert_int_eq(identity_put(s, &id, version, NULL), 0);
    identity_clear(&id);

    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    diag_list diags = DIAG_LIST_INIT;
    opts.sign_workers = 1;
    opts.now = now;
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    id = stored();
    ck_assert_int_eq(id.generation, 1);
    ck_assert_int_eq(id.not_before, now - PKI_LEAF_BACKDATE_S);
    identity_clear(&id);
}
END_TEST

static Suite *identity_since_suite(void)
{
    Suite *su = suite_create("identity_since");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, admits_from_since_minus_the_backdating_on);
    tcase_add_test(tc, a_new_record_gets_since_and_every_later_write_keeps_it);
    tcase_add_test(tc, without_a_record_a_certificate_is_refused_and_a_token_starts_one);
    tcase_add_test(tc, an_older_record_without_since_refuses_nothing);
    tcase_add_test(tc, a_record_made_after_the_pass_started_is_signed_for_it);
    tcase_add_test(tc, a_since_far_ahead_of_the_signers_clock_does_not_date_the_certificate);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(identity_since_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
