/* test-pki.c - Check suite for the reconciler's certificate side, verified with the real openssl CLI. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "reconciler/ca_create.h"
#include "reconciler/pki.h"

/* ---- helpers ---------------------------------------------------------------------------- */

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-pki-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static char *path_in(const char *name)
{
    static char buf[4][512];
    static int n;
    char *p = buf[n++ % 4];

    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static void write_text(const char *name, const char *text)
{
    FILE *f = fopen(path_in(name), "w");

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

static void write_cert(const char *name, X509 *cert)
{
    char *pem = NULL;

    ck_assert_int_eq(pki_cert_to_pem(cert, &pem, NULL), PKI_OK);
    write_text(name, pem);
    free(pem);
}

static char *read_text(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    char *buf = calloc(1, 1 << 20);
    size_t n;

    ck_assert_ptr_nonnull(f);
    n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    if (ret_len)
        *ret_len = n;
    return buf;
}

/* Runs a shell command in tmpdir; returns its exit status and its stdout+stderr in *ret_out. */
static int run(char **ret_out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run(char **ret_out, const char *fmt, ...)
{
    char cmd[2048], full[2400];
    va_list ap;
    FILE *p;
    char *out = calloc(1, 1 << 16);
    size_t n = 0;
    int st;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    snprintf(full, sizeof(full), "cd '%s' && { %s ; } 2>&1", tmpdir, cmd);
    p = popen(full, "r");
    ck_assert_ptr_nonnull(p);
    while (n < (1 << 16) - 1) {
        size_t got = fread(out + n, 1, (1 << 16) - 1 - n, p);
        if (got == 0)
            break;
        n += got;
    }
    st = pclose(p);
    if (ret_out)
        *ret_out = out;
    else
        free(out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void assert_contains(const char *hay, const char *needle)
{
    ck_assert_msg(strstr(hay, needle) != NULL, "expected '%s' in:\n%s", needle, hay);
}

static const char *const web_uris[] = {"spiffe://default/web", "kuma://kuma.io/service/web",
                                       "kuma://version/v1"};

static void make_root(bool rsa, int bits, const char *cn, int64_t now, int64_t life,
                      X509 **ret_cert, EVP_PKEY **ret_key)
{
    char err[PKI_ERRBUF];
    char uri[128];

    snprintf(uri, sizeof(uri), "spiffe://%s", cn);
    ck_assert_int_eq(pki_generate_key(rsa, bits, ret_key, err), PKI_OK);
    ck_assert_int_eq(pki_make_root(*ret_key, cn, uri, now, life, ret_cert, err), PKI_OK);
}

static void issue(X509 *ca, EVP_PKEY *ca_key, bool rsa, int64_t now, int64_t life,
                  X509 **ret_cert, EVP_PKEY **ret_key)
{
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    char err[PKI_ERRBUF];
    int r;

    req.uris = web_uris;
    req.nuris = 3;
    req.rsa = rsa;
    req.lifetime_s = life;
    r = pki_issue_leaf(&req, ca, ca_key, now, ret_cert, ret_key, err);
    ck_assert_msg(r == PKI_OK, "issue failed: %s", err);
}

/* Issues a leaf from a fresh root and checks it with `openssl verify` and `openssl x509 -text`. */
static void check_leaf_with_cli(bool root_rsa, bool leaf_rsa)
{
    int64_t now = time(NULL);
    X509 *root, *leaf;
    EVP_PKEY *root_key, *leaf_key;
    char *out;

    make_tmpdir();
    make_root(root_rsa, 2048, "default", now, 10 * 365 * 86400LL, &root, &root_key);
    issue(root, root_key, leaf_rsa, now, 86400, &leaf, &leaf_key);
    write_cert("root.pem", root);
    write_cert("leaf.pem", leaf);

    ck_assert_int_eq(run(&out, "openssl verify -CAfile root.pem leaf.pem"), 0);
    assert_contains(out, "leaf.pem: OK");
    free(out);

    ck_assert_int_eq(run(&out, "openssl x509 -in leaf.pem -text -noout"), 0);
    assert_contains(out, "URI:spiffe://default/web");
    assert_contains(out, "URI:kuma://kuma.io/service/web");
    assert_contains(out, "URI:kuma://version/v1");
    assert_contains(out, "Digital Signature, Key Encipherment");
    assert_contains(out, "TLS Web Server Authentication, TLS Web Client Authentication");
    assert_contains(out, "CA:FALSE");
    assert_contains(out, "X509v3 Subject Key Identifier");
    assert_contains(out, "X509v3 Authority Key Identifier");
    assert_contains(out, leaf_rsa ? "Public-Key: (2048 bit)" : "NIST CURVE: P-256");
    free(out);

    ck_assert_int_eq(run(&out, "openssl x509 -in root.pem -text -noout"), 0);
    assert_contains(out, "CA:TRUE");
    assert_contains(out, "Certificate Sign, CRL Sign");
    assert_contains(out, "URI:spiffe://default");
    assert_contains(out, "Subject: CN = default");
    free(out);

    int64_t nb, na;
    ck_assert_int_eq(pki_cert_not_before(leaf, &nb), PKI_OK);
    ck_assert_int_eq(pki_cert_not_after(leaf, &na), PKI_OK);
    ck_assert_int_eq(nb, now - 60);
    ck_assert_int_eq(na, now + 86400);
    ck_assert_str_eq(pki_key_type(leaf_key), leaf_rsa ? "rsa" : "ec");
    ck_assert_int_eq(pki_key_bits(leaf_key), leaf_rsa ? 2048 : 256);

    X509_free(root), X509_free(leaf), EVP_PKEY_free(root_key), EVP_PKEY_free(leaf_key);
    remove_tmpdir();
}

/* ---- pki -------------------------------------------------------------------------------- */

START_TEST(ec_leaf_from_ec_root_verifies_with_openssl_cli)
{
    check_leaf_with_cli(false, false);
}
END_TEST

START_TEST(rsa_leaf_from_ec_root_verifies_with_openssl_cli)
{
    check_leaf_with_cli(false, true);
}
END_TEST

START_TEST(ec_leaf_from_rsa_root_verifies_with_openssl_cli)
{
    check_leaf_with_cli(true, false);
}
END_TEST

START_TEST(rsa_leaf_from_rsa_root_verifies_with_openssl_cli)
{
    check_leaf_with_cli(true, true);
}
END_TEST

START_TEST(leaf_not_after_is_clamped_to_ca_not_after)
{
    int64_t now = time(NULL), ca_na, leaf_na;
    X509 *root, *leaf;
    EVP_PKEY *root_key, *leaf_key;
    char *a, *b;

    make_tmpdir();
    make_root(false, 0, "default", now, 3600, &root, &root_key);
    issue(root, root_key, false, now, 86400, &leaf, &leaf_key);
    ck_assert_int_eq(pki_cert_not_after(root, &ca_na), PKI_OK);
    ck_assert_int_eq(pki_cert_not_after(leaf, &leaf_na), PKI_OK);
    ck_assert_int_eq(leaf_na, ca_na);
    write_cert("root.pem", root);
    write_cert("leaf.pem", leaf);
    ck_assert_int_eq(run(&a, "openssl x509 -in root.pem -noout -enddate"), 0);
    ck_assert_int_eq(run(&b, "openssl x509 -in leaf.pem -noout -enddate"), 0);
    ck_assert_str_eq(a, b);
    free(a), free(b);
    ck_assert_int_eq(run(NULL, "openssl verify -CAfile root.pem leaf.pem"), 0);
    X509_free(root), X509_free(leaf), EVP_PKEY_free(root_key), EVP_PKEY_free(leaf_key);
    remove_tmpdir();
}
END_TEST

START_TEST(expired_ca_is_refused_for_signing)
{
    int64_t now = time(NULL);
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    X509 *root, *leaf = NULL;
    EVP_PKEY *root_key, *leaf_key = NULL;
    char err[PKI_ERRBUF];

    make_root(false, 0, "default", now - 7200, 3600, &root, &root_key);
    req.uris = web_uris;
    req.nuris = 1;
    ck_assert_int_eq(pki_issue_leaf(&req, root, root_key, now, &leaf, &leaf_key, err),
                     PKI_EEXPIRED);
    assert_contains(err, "ca-expired");
    ck_assert_ptr_null(leaf);
    ck_assert_ptr_null(leaf_key);
    ck_assert_int_eq(ERR_peek_error(), 0);
    X509_free(root), EVP_PKEY_free(root_key);
}
END_TEST

START_TEST(not_yet_valid_ca_is_refused_for_signing)
{
    int64_t now = time(NULL);
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    X509 *root, *leaf = NULL;
    EVP_PKEY *root_key, *leaf_key = NULL;
    char err[PKI_ERRBUF];

    make_root(false, 0, "default", now + 3600, 3600, &root, &root_key);
    req.uris = web_uris;
    req.nuris = 1;
    ck_assert_int_eq(pki_issue_leaf(&req, root, root_key, now, &leaf, &leaf_key, err),
                     PKI_EEXPIRED);
    assert_contains(err, "ca-expired");
    X509_free(root), EVP_PKEY_free(root_key);
}
END_TEST

START_TEST(leaf_from_intermediate_verifies_through_chain)
{
    int64_t now = time(NULL);
    X509 *root, *inter_self, *inter, *leaf;
    EVP_PKEY *root_key, *inter_key, *leaf_key;
    char err[PKI_ERRBUF], *out;

    make_tmpdir();
    make_root(false, 0, "root", now, 10 * 86400, &root, &root_key);
    make_root(false, 0, "inter", now, 5 * 86400, &inter_self, &inter_key);
    /* the intermediate: inter's subject and key, signed by the root */
    ck_assert_int_eq(pki_cross_sign(inter_self, root, root_key, now, now + 5 * 86400, &inter, err),
                     PKI_OK);
    issue(inter, inter_key, false, now, 86400, &leaf, &leaf_key);
    write_cert("root.pem", root);
    write_cert("inter.pem", inter);
    write_cert("leaf.pem", leaf);
    ck_assert_int_eq(run(&out, "openssl verify -CAfile root.pem -untrusted inter.pem leaf.pem"), 0);
    assert_contains(out, "leaf.pem: OK");
    free(out);
    ck_assert_int_ne(run(NULL, "openssl verify -CAfile root.pem leaf.pem"), 0);
    X509_free(root), X509_free(inter_self), X509_free(inter), X509_free(leaf);
    EVP_PKEY_free(root_key), EVP_PKEY_free(inter_key), EVP_PKEY_free(leaf_key);
    remove_tmpdir();
}
END_TEST

START_TEST(cross_signed_new_ca_is_trusted_by_old_ca_store)
{
    int64_t now = time(NULL), na;
    X509 *old_ca, *new_ca, *cross, *leaf;
    EVP_PKEY *old_key, *new_key, *leaf_key;
    char err[PKI_ERRBUF], *out;

    make_tmpdir();
    make_root(false, 0, "old", now, 365 * 86400LL, &old_ca, &old_key);
    make_root(true, 2048, "new", now, 3650 * 86400LL, &new_ca, &new_key);
    ck_assert_int_eq(pki_cross_sign(new_ca, old_ca, old_key, now, now + 7 * 86400, &cross, err),
                     PKI_OK);
    ck_assert_int_eq(pki_cert_not_after(cross, &na), PKI_OK);
    ck_assert_int_eq(na, now + 7 * 86400);
    ck_assert_int_eq(X509_NAME_cmp(X509_get_subject_name(cross), X509_get_subject_name(new_ca)), 0);
    ck_assert_int_eq(EVP_PKEY_eq(X509_get0_pubkey(cross), X509_get0_pubkey(new_ca)), 1);
    issue(new_ca, new_key, false, now, 86400, &leaf, &leaf_key);
    write_cert("old.pem", old_ca);
    write_cert("new.pem", new_ca);
    write_cert("crosssigned.pem", cross);
    write_cert("leaf.pem", leaf);
    ck_assert_int_eq(
        run(&out, "openssl verify -CAfile old.pem -untrusted crosssigned.pem leaf.pem"), 0);
    assert_contains(out, "leaf.pem: OK");
    free(out);
    ck_assert_int_ne(run(NULL, "openssl verify -CAfile old.pem leaf.pem"), 0);
    ck_assert_int_eq(run(NULL, "openssl verify -CAfile new.pem leaf.pem"), 0);
    X509_free(old_ca), X509_free(new_ca), X509_free(cross), X509_free(leaf);
    EVP_PKEY_free(old_key), EVP_PKEY_free(new_key), EVP_PKEY_free(leaf_key);
    remove_tmpdir();
}
END_TEST

START_TEST(cross_sign_validity_never_exceeds_old_ca)
{
    int64_t now = time(NULL), na_old, na;
    X509 *old_ca, *new_ca, *cross;
    EVP_PKEY *old_key, *new_key;

    make_root(false, 0, "old", now, 3600, &old_ca, &old_key);
    make_root(false, 0, "new", now, 86400 * 10, &new_ca, &new_key);
    ck_assert_int_eq(pki_cross_sign(new_ca, old_ca, old_key, now, now + 7 * 86400, &cross, NULL),
                     PKI_OK);
    ck_assert_int_eq(pki_cert_not_after(old_ca, &na_old), PKI_OK);
    ck_assert_int_eq(pki_cert_not_after(cross, &na), PKI_OK);
    ck_assert_int_eq(na, na_old);
    X509_free(old_ca), X509_free(new_ca), X509_free(cross);
    EVP_PKEY_free(old_key), EVP_PKEY_free(new_key);
}
END_TEST

START_TEST(pem_round_trip_and_chain_parse)
{
    int64_t now = time(NULL);
    X509 *a, *b, *back;
    EVP_PKEY *ka, *kb, *kback;
    char *pa, *pb, *pk, chain[16384], fa[64], fb[64];
    STACK_OF(X509) *sk;
    char err[PKI_ERRBUF];

    make_root(false, 0, "a", now, 3600, &a, &ka);
    make_root(true, 2048, "b", now, 3600, &b, &kb);
    ck_assert_int_eq(pki_cert_to_pem(a, &pa, NULL), PKI_OK);
    ck_assert_int_eq(pki_cert_to_pem(b, &pb, NULL), PKI_OK);
    ck_assert_int_eq(pki_key_to_pem(kb, &pk, NULL), PKI_OK);
    ck_assert_int_eq(pki_cert_from_pem(pa, strlen(pa), &back, NULL), PKI_OK);
    ck_assert_int_eq(X509_cmp(a, back), 0);
    ck_assert_int_eq(pki_key_from_pem(pk, strlen(pk), &kback, NULL), PKI_OK);
    ck_assert(pki_key_matches(b, kback));
    ck_assert(!pki_key_matches(a, kback));
    snprintf(chain, sizeof(chain), "%s%s", pa, pb);
    ck_assert_int_eq(pki_chain_from_pem(chain, strlen(chain), &sk, NULL), PKI_OK);
    ck_assert_int_eq(sk_X509_num(sk), 2);
    pki_fingerprint_sha1(sk_X509_value(sk, 1), fa, sizeof(fa));
    pki_fingerprint_sha1(b, fb, sizeof(fb));
    ck_assert_str_eq(fa, fb);
    ck_assert_int_eq(strlen(fa), 59);
    sk_X509_pop_free(sk, X509_free);
    ck_assert_int_eq(pki_chain_from_pem("garbage", 7, &sk, err), PKI_EINVAL);
    ck_assert_int_eq(ERR_peek_error(), 0);
    ck_assert_int_eq(pki_key_from_pem("nope", 4, &kback, err), PKI_EINVAL);
    free(pa), free(pb), pki_free_secret(pk);
    X509_free(a), X509_free(b), X509_free(back);
    EVP_PKEY_free(ka), EVP_PKEY_free(kb), EVP_PKEY_free(kback);
}
END_TEST

START_TEST(renewal_point_is_stable_and_within_70_to_85_percent)
{
    int64_t nb = 1000000, na = nb + 86400;
    int64_t first = pki_renewal_point(nb, na, "default/web-01");
    bool differ = false;

    ck_assert_int_eq(first, pki_renewal_point(nb, na, "default/web-01"));
    for (int i = 0; i < 200; i++) {
        char id[32];
        snprintf(id, sizeof(id), "default/dp-%d", i);
        int64_t p = pki_renewal_point(nb, na, id);
        ck_assert_int_ge(p, nb + 86400 * 70 / 100);
        ck_assert_int_le(p, nb + 86400 * 85 / 100);
        differ |= p != first;
    }
    ck_assert(differ);
}
END_TEST

START_TEST(time_and_serial_descriptions)
{
    char t[32], serial[80];
    X509 *a;
    EVP_PKEY *k;

    ck_assert_int_eq(pki_format_time(0, t, sizeof(t)), PKI_OK);
    ck_assert_str_eq(t, "1970-01-01T00:00:00Z");
    make_root(false, 0, "a", time(NULL), 60, &a, &k);
    ck_assert_int_eq(pki_serial_hex(a, serial, sizeof(serial)), PKI_OK);
    ck_assert_int_ge(strlen(serial), 16);
    ck_assert_int_le(strlen(serial), 32);
    X509_free(a), EVP_PKEY_free(k);
}
END_TEST

/* ---- ca create -------------------------------------------------------------------------- */

START_TEST(ca_create_twice_refuses_and_leaves_files_identical)
{
    ca_create_options o = CA_CREATE_OPTIONS_INIT;
    char err[PKI_ERRBUF], *c1, *k1, *c2, *k2, *out;
    size_t lc1, lk1, lc2, lk2;
    struct stat st;

    make_tmpdir();
    o.out_dir = tmpdir;
    o.now = time(NULL);
    o.common_name = "Recovery CA";
    ck_assert_int_eq(ca_create(&o, err), PKI_OK);
    c1 = read_text(path_in("ca.pem"), &lc1);
    k1 = read_text(path_in("ca-key.pem"), &lk1);
    ck_assert_int_eq(stat(path_in("ca-key.pem"), &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);

    o.rsa = true;
    ck_assert_int_eq(ca_create(&o, err), PKI_EEXIST);
    assert_contains(err, "already exists");
    c2 = read_text(path_in("ca.pem"), &lc2);
    k2 = read_text(path_in("ca-key.pem"), &lk2);
    ck_assert_uint_eq(lc1, lc2);
    ck_assert_uint_eq(lk1, lk2);
    ck_assert_mem_eq(c1, c2, lc1);
    ck_assert_mem_eq(k1, k2, lk1);
    ck_assert_int_eq(stat(path_in("ca-key.pem"), &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);

    ck_assert_int_eq(run(&out, "openssl x509 -in ca.pem -noout -subject -ext basicConstraints"), 0);
    assert_contains(out, "CN = Recovery CA");
    assert_contains(out, "CA:TRUE");
    free(out);
    ck_assert_int_eq(run(NULL, "test \"$(openssl x509 -in ca.pem -noout -pubkey)\" = "
                               "\"$(openssl pkey -in ca-key.pem -pubout)\""), 0);
    free(c1), free(k1), free(c2), free(k2);
    remove_tmpdir();
}
END_TEST

START_TEST(ca_create_with_only_key_present_writes_nothing)
{
    ca_create_options o = CA_CREATE_OPTIONS_INIT;
    char err[PKI_ERRBUF];

    make_tmpdir();
    write_text("ca-key.pem", "keep me\n");
    o.out_dir = tmpdir;
    o.now = time(NULL);
    ck_assert_int_eq(ca_create(&o, err), PKI_EEXIST);
    ck_assert_int_ne(access(path_in("ca.pem"), F_OK), 0);
    char *k = read_text(path_in("ca-key.pem"), NULL);
    ck_assert_str_eq(k, "keep me\n");
    free(k);
    remove_tmpdir();
}
END_TEST

START_TEST(ca_create_rsa_with_bits_and_days)
{
    ca_create_options o = CA_CREATE_OPTIONS_INIT;
    char err[PKI_ERRBUF], *out;

    make_tmpdir();
    o.out_dir = tmpdir;
    o.now = time(NULL);
    o.rsa = true;
    o.bits = 3072;
    o.days = 30;
    ck_assert_int_eq(ca_create(&o, err), PKI_OK);
    ck_assert_int_eq(run(&out, "openssl x509 -in ca.pem -noout -text"), 0);
    assert_contains(out, "Public-Key: (3072 bit)");
    free(out);
    ck_assert_int_eq(run(NULL, "openssl x509 -in ca.pem -noout -checkend 2500000"), 0);
    ck_assert_int_ne(run(NULL, "openssl x509 -in ca.pem -noout -checkend 2700000"), 0);
    o.bits = 1000;
    ck_assert_int_eq(ca_create(&o, err), PKI_EINVAL);
    remove_tmpdir();
}
END_TEST

/* BACKEND TESTS */

static Suite *pki_suite(void)
{
    Suite *s = suite_create("pki");
    TCase *tc = tcase_create("pki");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, ec_leaf_from_ec_root_verifies_with_openssl_cli);
    tcase_add_test(tc, rsa_leaf_from_ec_root_verifies_with_openssl_cli);
    tcase_add_test(tc, ec_leaf_from_rsa_root_verifies_with_openssl_cli);
    tcase_add_test(tc, rsa_leaf_from_rsa_root_verifies_with_openssl_cli);
    tcase_add_test(tc, leaf_not_after_is_clamped_to_ca_not_after);
    tcase_add_test(tc, expired_ca_is_refused_for_signing);
    tcase_add_test(tc, not_yet_valid_ca_is_refused_for_signing);
    tcase_add_test(tc, leaf_from_intermediate_verifies_through_chain);
    tcase_add_test(tc, cross_signed_new_ca_is_trusted_by_old_ca_store);
    tcase_add_test(tc, cross_sign_validity_never_exceeds_old_ca);
    tcase_add_test(tc, pem_round_trip_and_chain_parse);
    tcase_add_test(tc, renewal_point_is_stable_and_within_70_to_85_percent);
    tcase_add_test(tc, time_and_serial_descriptions);
    tcase_add_test(tc, ca_create_twice_refuses_and_leaves_files_identical);
    tcase_add_test(tc, ca_create_with_only_key_present_writes_nothing);
    tcase_add_test(tc, ca_create_rsa_with_bits_and_days);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pki_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
