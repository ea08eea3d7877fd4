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
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "manifests/node.h"
#include "reconciler/ca_backend.h"
#include "reconciler/bundle.h"
#include "reconciler/ca_create.h"
#include "reconciler/roots.h"
#include "reconciler/pki.h"
#include "reconciler/pki_csr.h"

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

    ck_assert_int_eq(run(&out, "openssl verify -x509_strict -CAfile root.pem leaf.pem"), 0);
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
    ck_assert_int_eq(
        run(&out, "openssl verify -x509_strict -CAfile root.pem -untrusted inter.pem leaf.pem"), 0);
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
        run(&out, "openssl verify -x509_strict -CAfile old.pem -untrusted crosssigned.pem leaf.pem"),
        0);
    assert_contains(out, "leaf.pem: OK");
    free(out);
    ck_assert_int_ne(run(NULL, "openssl verify -CAfile old.pem leaf.pem"), 0);
    ck_assert_int_eq(run(NULL, "openssl verify -CAfile new.pem leaf.pem"), 0);
    X509_free(old_ca), X509_free(new_ca), X509_free(cross), X509_free(leaf);
    EVP_PKEY_free(old_key), EVP_PKEY_free(new_key), EVP_PKEY_free(leaf_key);
    remove_tmpdir();
}
END_TEST

/* Verifies leaf against `trusted` with optional intermediates under X509_V_FLAG_X509_STRICT, as
 * `openssl verify -x509_strict` does; returns the X509_V_* result. */
static int strict_verify(X509 *trusted, X509 *untrusted, X509 *leaf)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *chain = sk_X509_new_null();
    int result;

    ck_assert_ptr_nonnull(store);
    ck_assert_ptr_nonnull(ctx);
    ck_assert_ptr_nonnull(chain);
    ck_assert_int_eq(X509_STORE_add_cert(store, trusted), 1);
    if (untrusted)
        ck_assert_int_ne(sk_X509_push(chain, untrusted), 0);
    ck_assert_int_eq(X509_STORE_CTX_init(ctx, store, leaf, chain), 1);
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
    X509_verify_cert(ctx);
    result = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    sk_X509_free(chain);
    X509_STORE_free(store);
    ERR_clear_error();
    return result;
}

static bool san_is_critical(X509 *x)
{
    int i = X509_get_ext_by_NID(x, NID_subject_alt_name, -1);

    return i >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, i)) == 1;
}

/* Regression (issue 9 #5): leaves have an empty subject but their subjectAltName was not
 * critical, so strict verifiers (openssl verify -x509_strict) rejected every leaf meshca issued:
 * from a root, through an intermediate, and through a cross-signed CA. */
START_TEST(leaf_with_empty_subject_has_critical_san_and_passes_x509_strict)
{
    int64_t now = time(NULL);
    X509 *root, *inter_self, *inter, *old_ca, *cross, *leaf;
    EVP_PKEY *root_key, *inter_key, *old_key, *leaf_key;
    char err[PKI_ERRBUF];

    make_root(false, 0, "default", now, 10 * 86400, &root, &root_key);
    issue(root, root_key, false, now, 86400, &leaf, &leaf_key);
    ck_assert_int_eq(X509_NAME_entry_count(X509_get_subject_name(leaf)), 0);
    ck_assert(san_is_critical(leaf));
    ck_assert_int_eq(strict_verify(root, NULL, leaf), X509_V_OK);
    X509_free(leaf), EVP_PKEY_free(leaf_key);

    /* provided with an intermediate chain */
    make_root(false, 0, "inter", now, 5 * 86400, &inter_self, &inter_key);
    ck_assert_int_eq(pki_cross_sign(inter_self, root, root_key, now, now + 5 * 86400, &inter, err),
                     PKI_OK);
    issue(inter, inter_key, true, now, 86400, &leaf, &leaf_key);
    ck_assert(san_is_critical(leaf));
    ck_assert_int_eq(strict_verify(root, inter, leaf), X509_V_OK);
    X509_free(leaf), EVP_PKEY_free(leaf_key);

    /* forced switch: a root-issued leaf trusted by the old CA through the cross-signed root */
    make_root(false, 0, "old", now, 365 * 86400LL, &old_ca, &old_key);
    ck_assert_int_eq(pki_cross_sign(root, old_ca, old_key, now, now + 7 * 86400, &cross, err),
                     PKI_OK);
    issue(root, root_key, false, now, 86400, &leaf, &leaf_key);
    ck_assert_int_eq(strict_verify(old_ca, cross, leaf), X509_V_OK);
    X509_free(leaf), EVP_PKEY_free(leaf_key);

    X509_free(root), X509_free(inter_self), X509_free(inter), X509_free(old_ca), X509_free(cross);
    EVP_PKEY_free(root_key), EVP_PKEY_free(inter_key), EVP_PKEY_free(old_key);
}
END_TEST

/* Regression (issue 9 #16): roots took the second PEM block of a leaf's chain as the
 * cross-signed CA; with a provided chain that block is the intermediate. */
START_TEST(roots_finds_the_cross_signed_ca_by_subject_and_key_not_position)
{
    int64_t now = time(NULL);
    X509 *root, *inter_self, *inter, *old_ca, *cross, *leaf;
    EVP_PKEY *root_key, *inter_key, *old_key, *leaf_key;
    char err[PKI_ERRBUF], ca_chain[16384], served[16384], *found = NULL;
    char *p_root, *p_inter, *p_cross, *p_leaf;

    make_root(false, 0, "root", now, 10 * 86400, &root, &root_key);
    make_root(false, 0, "inter", now, 5 * 86400, &inter_self, &inter_key);
    ck_assert_int_eq(pki_cross_sign(inter_self, root, root_key, now, now + 5 * 86400, &inter, err),
                     PKI_OK);
    make_root(false, 0, "old", now, 10 * 86400, &old_ca, &old_key);
    ck_assert_int_eq(pki_cross_sign(inter, old_ca, old_key, now, now + 7 * 86400, &cross, err),
                     PKI_OK);
    issue(inter, inter_key, false, now, 86400, &leaf, &leaf_key);
    ck_assert_int_eq(pki_cert_to_pem(root, &p_root, NULL), PKI_OK);
    ck_assert_int_eq(pki_cert_to_pem(inter, &p_inter, NULL), PKI_OK);
    ck_assert_int_eq(pki_cert_to_pem(cross, &p_cross, NULL), PKI_OK);
    ck_assert_int_eq(pki_cert_to_pem(leaf, &p_leaf, NULL), PKI_OK);
    snprintf(ca_chain, sizeof(ca_chain), "%s%s", p_inter, p_root);

    /* Either order of cross-signed CA and intermediate: the cross-signed one is found. */
    snprintf(served, sizeof(served), "%s%s%s", p_leaf, p_inter, p_cross);
    ck_assert_int_eq(roots_find_cross_signed(served, ca_chain, &found, err), PKI_OK);
    ck_assert_ptr_nonnull(found);
    ck_assert_str_eq(found, p_cross);
    free(found);
    snprintf(served, sizeof(served), "%s%s%s", p_leaf, p_cross, p_inter);
    ck_assert_int_eq(roots_find_cross_signed(served, ca_chain, &found, err), PKI_OK);
    ck_assert_str_eq(found, p_cross);
    free(found);
    /* Without cross-signing the intermediate is not taken for it. */
    snprintf(served, sizeof(served), "%s%s", p_leaf, p_inter);
    ck_assert_int_eq(roots_find_cross_signed(served, ca_chain, &found, err), PKI_OK);
    ck_assert_ptr_null(found);
    ck_assert_int_eq(ERR_peek_error(), 0);

    free(p_root), free(p_inter), free(p_cross), free(p_leaf);
    X509_free(root), X509_free(inter_self), X509_free(inter), X509_free(old_ca);
    X509_free(cross), X509_free(leaf);
    EVP_PKEY_free(root_key), EVP_PKEY_free(inter_key), EVP_PKEY_free(old_key);
    EVP_PKEY_free(leaf_key);
}
END_TEST

/* Regression (issue 9, code health): fail() ran before ERR_clear_error(), so an OpenSSL error
 * left by an earlier, unrelated call was appended to the next message. */
START_TEST(stale_openssl_error_does_not_reach_the_next_message)
{
    char err[PKI_ERRBUF];
    X509 *x = NULL;
    EVP_PKEY *k = NULL;

    ERR_raise(ERR_LIB_PEM, PEM_R_NO_START_LINE);
    ck_assert_int_eq(pki_make_root(NULL, "default", NULL, 0, 1, &x, err), PKI_EINVAL);
    ck_assert_str_eq(err, "invalid root parameters");
    ck_assert_int_eq(ERR_peek_error(), 0);

    ERR_raise(ERR_LIB_PEM, PEM_R_NO_START_LINE);
    ck_assert_int_eq(pki_cert_from_pem("", 0, &x, err), PKI_EINVAL);
    ck_assert_str_eq(err, "empty or oversized certificate PEM");
    ck_assert_int_eq(ERR_peek_error(), 0);

    ERR_raise(ERR_LIB_PEM, PEM_R_NO_START_LINE);
    ck_assert_int_eq(pki_generate_key(true, 512, &k, err), PKI_EINVAL);
    ck_assert_str_eq(err, "invalid key parameters");
    ck_assert_int_eq(ERR_peek_error(), 0);
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

/* ---- CA backends ------------------------------------------------------------------------ */

/* An in-memory secret store standing in for the mesh's secrets. */
typedef struct mem_store {
    char *names[8];
    char *values[8];
    size_t lens[8];
    size_t count;
    int stores;
} mem_store;

static int mem_lookup(void *userdata, const char *name, char **ret_data, size_t *ret_len)
{
    mem_store *st = userdata;

    for (size_t i = 0; i < st->count; i++)
        if (strcmp(st->names[i], name) == 0) {
            *ret_data = strndup(st->values[i], st->lens[i]);
            *ret_len = st->lens[i];
            return PKI_OK;
        }
    return PKI_ENOENT;
}

static void mem_add(mem_store *st, const char *name, const char *data, size_t len)
{
    ck_assert_uint_lt(st->count, 8);
    st->names[st->count] = strdup(name);
    st->values[st->count] = strndup(data, len);
    st->lens[st->count++] = len;
    st->stores++;
}

/* ca_secret_store_fn: all or nothing, the last secret create-only. */
static int mem_put(void *userdata, const ca_secret *secrets, size_t n)
{
    mem_store *st = userdata;
    char *v = NULL;
    size_t len;

    if (mem_lookup(st, secrets[n - 1].name, &v, &len) == PKI_OK) {
        free(v);
        return MESHCA_ECONFLICT;
    }
    for (size_t i = 0; i < n; i++)
        mem_add(st, secrets[i].name, secrets[i].data, secrets[i].len);
    return PKI_OK;
}

/* A store where another pass creates the builtin root just before our own write. */
static int mem_put_after_winner(void *userdata, const ca_secret *secrets, size_t n)
{
    mem_store *st = userdata;
    EVP_PKEY *key;
    X509 *cert;
    char *cert_pem, *key_pem;

    if (st->count == 0) {
        ck_assert_int_eq(pki_generate_key(false, 0, &key, NULL), PKI_OK);
        ck_assert_int_eq(pki_make_root(key, "winner", NULL, time(NULL), 86400, &cert, NULL),
                         PKI_OK);
        ck_assert_int_eq(pki_cert_to_pem(cert, &cert_pem, NULL), PKI_OK);
        ck_assert_int_eq(pki_key_to_pem(key, &key_pem, NULL), PKI_OK);
        mem_add(st, "default.ca-builtin-key-ca-1", key_pem, strlen(key_pem));
        mem_add(st, "default.ca-builtin-cert-ca-1", cert_pem, strlen(cert_pem));
        free(cert_pem), pki_free_secret(key_pem), X509_free(cert), EVP_PKEY_free(key);
    }
    return mem_put(userdata, secrets, n);
}

static void mem_store_free(mem_store *st)
{
    for (size_t i = 0; i < st->count; i++)
        free(st->names[i]), free(st->values[i]);
}

static mnode *scalar(const char *s)
{
    return mnode_new_scalar(s, strlen(s), MNODE_QUOTED, SOURCE_MARK_NONE);
}

static void put(mnode *map, const char *key, mnode *value)
{
    mnode_map_append(map, scalar(key), value);
}

static mnode *datasource(const char *kind, const char *value)
{
    mnode *m = mnode_new_map((source_mark){"mesh.yaml", 7, 9});
    put(m, kind, scalar(value));
    return m;
}

static mnode *provided_conf(mnode *cert_ds, mnode *key_ds)
{
    mnode *conf = mnode_new_map(SOURCE_MARK_NONE);
    put(conf, "cert", cert_ds);
    put(conf, "key", key_ds);
    return conf;
}

static void init_ctx(ca_context *ctx, mesh_backend *b, const char *type, const char *name,
                     mnode *conf, mem_store *st, int64_t now)
{
    memset(b, 0, sizeof(*b));
    b->type.value = (char *)type;
    b->name.value = (char *)name;
    b->conf = conf;
    memset(ctx, 0, sizeof(*ctx));
    ctx->mesh = "default";
    ctx->backend = b;
    ctx->backend_index = 1;
    ctx->secret_lookup = mem_lookup;
    ctx->secret_store = mem_put;
    ctx->secret_userdata = st;
    ctx->now = now;
}

static void sign_and_verify(ca_backend *ca, bool rsa, const char *cafile, const char *untrusted)
{
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    X509 *leaf;
    EVP_PKEY *leaf_key;
    char err[PKI_ERRBUF], *out;

    req.uris = web_uris;
    req.nuris = 3;
    req.rsa = rsa;
    ck_assert_int_eq(pki_generate_key(rsa, 2048, &leaf_key, err), PKI_OK);
    ck_assert_msg(ca_backend_sign_leaf(ca, &req, leaf_key, time(NULL), &leaf, err) == PKI_OK,
                  "sign: %s", err);
    /* The contract: the leaf certifies the key it was given, not one of the backend's. */
    ck_assert_int_eq(EVP_PKEY_eq(X509_get0_pubkey(leaf), leaf_key), 1);
    write_cert("leaf.pem", leaf);
    if (untrusted)
        ck_assert_msg(run(&out, "openssl verify -x509_strict -CAfile %s -untrusted %s leaf.pem",
                             cafile, untrusted) == 0, "%s", out);
    else
        ck_assert_int_eq(run(&out, "openssl verify -x509_strict -CAfile %s leaf.pem", cafile), 0);
    assert_contains(out, "leaf.pem: OK");
    free(out);
    X509_free(leaf), EVP_PKEY_free(leaf_key);
}

START_TEST(builtin_generates_root_once_and_reuses_its_secrets)
{
    mem_store st = {0};
    mesh_backend b;
    ca_context ctx;
    ca_backend *ca1, *ca2;
    char err[PKI_ERRBUF], *pem, *out;
    ca_info info;

    make_tmpdir();
    init_ctx(&ctx, &b, "builtin", "ca-1", NULL, &st, time(NULL));
    ck_assert_msg(ca_backend_open(&ctx, &ca1, err) == PKI_OK, "%s", err);
    ck_assert_uint_eq(st.count, 2);
    ck_assert_str_eq(st.names[0], "default.ca-builtin-key-ca-1");
    ck_assert_str_eq(st.names[1], "default.ca-builtin-cert-ca-1");
    ck_assert_msg(ca_backend_open(&ctx, &ca2, err) == PKI_OK, "%s", err);
    ck_assert_int_eq(st.stores, 2);   /* nothing regenerated */
    ck_assert_int_eq(X509_cmp(ca_backend_cert(ca1), ca_backend_cert(ca2)), 0);
    ck_assert_int_eq(ca_backend_info(ca1, &info), PKI_OK);
    ck_assert_str_eq(info.key_type, "ec");
    ck_assert_int_eq(info.key_bits, 256);
    ck_assert_int_eq(info.not_after - info.not_before, 10 * 365 * 86400LL + PKI_LEAF_BACKDATE_S);
    ck_assert_int_eq(info.not_before, ctx.now - PKI_LEAF_BACKDATE_S);   /* passes a bit behind accept it */
    ck_assert_int_eq(ca_backend_chain_pem(ca2, &pem, err), PKI_OK);
    write_text("root.pem", pem);
    free(pem);
    ck_assert_int_eq(run(&out, "openssl x509 -in root.pem -noout -text"), 0);
    assert_contains(out, "Subject: CN = default");
    assert_contains(out, "URI:spiffe://default");
    assert_contains(out, "CA:TRUE");
    assert_contains(out, "Certificate Sign, CRL Sign");
    free(out);
    sign_and_verify(ca2, false, "root.pem", NULL);
    sign_and_verify(ca2, true, "root.pem", NULL);
    ca_backend_free(ca1), ca_backend_free(ca2);
    mem_store_free(&st);
    remove_tmpdir();
}
END_TEST

START_TEST(builtin_rsa_root_when_rsabits_set)
{
    mem_store st = {0};
    mnode *conf = mnode_new_map(SOURCE_MARK_NONE), *ca_cert = mnode_new_map(SOURCE_MARK_NONE);
    mesh_backend b;
    ca_context ctx;
    ca_backend *ca;
    char err[PKI_ERRBUF], *pem;
    ca_info info;

    make_tmpdir();
    put(ca_cert, "RSAbits", mnode_new_scalar("3072", 4, MNODE_PLAIN, SOURCE_MARK_NONE));
    put(ca_cert, "expiration", scalar("1y"));
    put(conf, "caCert", ca_cert);
    init_ctx(&ctx, &b, "builtin", "ca-2", conf, &st, time(NULL));
    ck_assert_msg(ca_backend_open(&ctx, &ca, err) == PKI_OK, "%s", err);
    ck_assert_int_eq(ca_backend_info(ca, &info), PKI_OK);
    ck_assert_str_eq(info.key_type, "rsa");
    ck_assert_int_eq(info.key_bits, 3072);
    ck_assert_int_eq(info.not_after - info.not_before, 365 * 86400LL + PKI_LEAF_BACKDATE_S);
    ck_assert_int_eq(ca_backend_chain_pem(ca, &pem, err), PKI_OK);
    write_text("root.pem", pem);
    free(pem);
    sign_and_verify(ca, false, "root.pem", NULL);
    sign_and_verify(ca, true, "root.pem", NULL);
    ca_backend_free(ca);
    mnode_free(conf);
    mem_store_free(&st);
    remove_tmpdir();
}
END_TEST

START_TEST(builtin_bad_rsabits_is_a_conf_error_with_path)
{
    mem_store st = {0};
    mnode *conf = mnode_new_map(SOURCE_MARK_NONE), *ca_cert = mnode_new_map(SOURCE_MARK_NONE);
    mesh_backend b;
    ca_context ctx;
    diag_list diags = DIAG_LIST_INIT;

    put(ca_cert, "RSAbits", mnode_new_scalar("1024", 4, MNODE_PLAIN, SOURCE_MARK_NONE));
    put(conf, "caCert", ca_cert);
    init_ctx(&ctx, &b, "builtin", "ca-1", conf, &st, time(NULL));
    ck_assert_int_eq(ca_backend_check(&ctx, &diags), PKI_OK);
    ck_assert_uint_eq(diags.count, 1);
    ck_assert_str_eq(diags.items[0].code, "ca-conf");
    ck_assert_str_eq(diags.items[0].path, "mtls.backends[1].conf.caCert.RSAbits");
    diag_list_free(&diags);
    mnode_free(conf);
}
END_TEST

START_TEST(builtin_without_secret_store_does_not_generate)
{
    mesh_backend b;
    ca_context ctx;
    ca_backend *ca = NULL;
    mem_store st = {0};
    char err[PKI_ERRBUF];

    init_ctx(&ctx, &b, "builtin", "ca-1", NULL, &st, time(NULL));
    ctx.secret_store = NULL;
    ck_assert_int_eq(ca_backend_open(&ctx, &ca, err), PKI_ENOENT);
    ck_assert_ptr_null(ca);
}
END_TEST

/* Regression (issue 9 #10): concurrent passes each generated a root and wrote key and cert as two
 * unconditional puts. Now the pair is created together, create-only; the loser re-reads. */
/* Cross-signing is a backend operation (issue 10): the caller hands over the other CA's
 * certificate and gets it re-signed, never touching the signing key. */
START_TEST(cross_signing_is_a_backend_operation_without_the_key)
{
    mem_store st = {0};
    mesh_backend b1, b2;
    ca_context c1, c2;
    ca_backend *a = NULL, *b = NULL;
    X509 *cross = NULL;
    char err[PKI_ERRBUF] = "";
    int64_t now = time(NULL);

    init_ctx(&c1, &b1, "builtin", "ca-1", NULL, &st, now);
    init_ctx(&c2, &b2, "builtin", "ca-2", NULL, &st, now);
    ck_assert_msg(ca_backend_open(&c1, &a, err) == PKI_OK, "%s", err);
    ck_assert_msg(ca_backend_open(&c2, &b, err) == PKI_OK, "%s", err);
    ck_assert(ca_backend_can_cross_sign(a));
    ck_assert_msg(ca_backend_cross_sign(a, ca_backend_cert(b), now, now + 3600, &cross, err) ==
                  PKI_OK, "%s", err);
    ck_assert_int_eq(X509_NAME_cmp(X509_get_subject_name(cross),
                                   X509_get_subject_name(ca_backend_cert(b))), 0);
    ck_assert_int_eq(EVP_PKEY_eq(X509_get0_pubkey(cross), X509_get0_pubkey(ca_backend_cert(b))), 1);
    ck_assert_int_eq(X509_verify(cross, X509_get0_pubkey(ca_backend_cert(a))), 1);
    X509_free(cross);
    ca_backend_free(a);
    ca_backend_free(b);
    mem_store_free(&st);
}
END_TEST

START_TEST(builtin_creation_that_loses_a_race_uses_the_winners_root)
{
    mem_store st = {0};
    mesh_backend b;
    ca_context ctx;
    ca_backend *ca;
    char err[PKI_ERRBUF] = "", subject[256];

    init_ctx(&ctx, &b, "builtin", "ca-1", NULL, &st, time(NULL));
    ctx.secret_store = mem_put_after_winner;
    ck_assert_msg(ca_backend_open(&ctx, &ca, err) == PKI_OK, "%s", err);
    ck_assert_uint_eq(st.count, 2);   /* the winner's pair, nothing of ours */
    X509_NAME_oneline(X509_get_subject_name(ca_backend_cert(ca)), subject, sizeof(subject));
    ck_assert_str_eq(subject, "/CN=winner");
    /* The handle signs with the winner's key: a leaf it signs verifies with the winner's cert. */
    {
        pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
        EVP_PKEY *k = NULL;
        X509 *leaf = NULL;
        req.uris = web_uris;
        req.nuris = 1;
        ck_assert_int_eq(pki_generate_key(false, 0, &k, err), PKI_OK);
        ck_assert_msg(ca_backend_sign_leaf(ca, &req, k, time(NULL), &leaf, err) == PKI_OK, "%s", err);
        ck_assert_int_eq(X509_verify(leaf, X509_get0_pubkey(ca_backend_cert(ca))), 1);
        X509_free(leaf);
        EVP_PKEY_free(k);
    }
    ca_backend_free(ca);
    mem_store_free(&st);
}
END_TEST

START_TEST(unknown_backend_type_has_no_ops)
{
    ck_assert_ptr_null(ca_backend_for_type("hsm"));
    ck_assert_ptr_null(ca_backend_for_type(NULL));
    ck_assert_ptr_eq(ca_backend_for_type("vault"), &ca_vault_ops);
    ck_assert_int_eq(ca_backend_support("vault"), CA_TYPE_SIGNS);
    ck_assert_ptr_eq(ca_backend_for_type("builtin"), &ca_builtin_ops);
    ck_assert_ptr_eq(ca_backend_for_type("provided"), &ca_provided_ops);
}
END_TEST

/* Builds a CA-like certificate with chosen extensions (NULL: extension absent), signed by
 * issuer/issuer_key or self-signed. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       int64_t nb, int64_t na, const char *bc, const char *ku)
{
    X509 *x = X509_new();
    X509V3_CTX v3;

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 42);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
    ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb);
    ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na);
    X509_set_pubkey(x, key);
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    if (bc) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, bc);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    if (ku) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage, ku);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    /* Key identifiers as every real CA has them: strict verification (-x509_strict) needs them. */
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_key_identifier, "hash");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    e = X509V3_EXT_conf_nid(NULL, &v3, NID_authority_key_identifier, "keyid:always");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    ck_assert_int_gt(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()), 0);
    return x;
}

static char *pem_of(X509 *x)
{
    char *p;
    ck_assert_int_eq(pki_cert_to_pem(x, &p, NULL), PKI_OK);
    return p;
}

static char *key_pem_of(EVP_PKEY *k)
{
    char *p;
    ck_assert_int_eq(pki_key_to_pem(k, &p, NULL), PKI_OK);
    return p;
}

/* Runs the provided backend's check on inline cert/key and asserts exactly one diagnostic of
 * `code` at `path` (plus no other error), and that no message leaks the key. */
static void expect_provided_diag(const char *cert_pem, const char *key_pem, const char *code,
                                 const char *path, diag_severity sev)
{
    mesh_backend b;
    ca_context ctx;
    mem_store st = {0};
    diag_list diags = DIAG_LIST_INIT;
    mnode *conf = provided_conf(datasource("inlineString", cert_pem),
                                datasource("inlineString", key_pem));
    bool found = false;
    char keyline[40];

    /* a line from the middle of the key's base64 must never be echoed */
    const char *nl = strchr(key_pem, '\n');
    snprintf(keyline, sizeof(keyline), "%.32s", nl ? nl + 1 : key_pem);
    init_ctx(&ctx, &b, "provided", "ca-2", conf, &st, time(NULL));
    ck_assert_int_eq(ca_backend_check(&ctx, &diags), PKI_OK);
    for (size_t i = 0; i < diags.count; i++) {
        const diag *d = &diags.items[i];
        ck_assert_msg(strstr(d->message, keyline) == NULL, "key material in message");
        ck_assert_msg(strstr(d->message, "PRIVATE KEY") == NULL, "key material in message");
        if (strcmp(d->code, code) == 0) {
            ck_assert_str_eq(d->path, path);
            ck_assert_int_eq(d->severity, sev);
            ck_assert_uint_eq(d->line, 7);   /* mark of the datasource */
            found = true;
        } else {
            ck_assert_msg(d->severity != DIAG_ERROR, "unexpected %s: %s", d->code, d->message);
        }
    }
    ck_assert_msg(found, "no %s diagnostic (got %zu)", code, diags.count);
    diag_list_free(&diags);
    mnode_free(conf);
}

#define CERT_PATH "mtls.backends[1].conf.cert"
#define KEY_PATH "mtls.backends[1].conf.key"
#define GOOD_BC "critical,CA:TRUE"
#define GOOD_KU "critical,keyCertSign,cRLSign"
#define DAY 86400LL

/* One defect per test: a CA with everything right except the defect. */
static void defect(const char *bc, const char *ku, int64_t nb_off, int64_t na_off, bool rsa,
                   int bits, const char *code, const char *path, diag_severity sev)
{
    int64_t now = time(NULL);
    EVP_PKEY *k;
    X509 *x;
    char *c, *kp;

    ck_assert_int_eq(pki_generate_key(rsa, bits, &k, NULL), PKI_OK);
    x = make_cert(k, "provided", NULL, NULL, now + nb_off, now + na_off, bc, ku);
    c = pem_of(x), kp = key_pem_of(k);
    expect_provided_diag(c, kp, code, path, sev);
    free(c), pki_free_secret(kp), X509_free(x), EVP_PKEY_free(k);
}

START_TEST(provided_ca_without_ca_basic_constraint_is_ca_not_ca)
{
    defect("critical,CA:FALSE", GOOD_KU, -DAY, 365 * DAY, false, 0, "ca-not-ca", CERT_PATH,
           DIAG_ERROR);
}
END_TEST

START_TEST(provided_ca_without_key_cert_sign_is_ca_not_ca)
{
    defect(GOOD_BC, "critical,digitalSignature", -DAY, 365 * DAY, false, 0, "ca-not-ca",
           CERT_PATH, DIAG_ERROR);
}
END_TEST

START_TEST(provided_ca_with_key_agreement_is_refused)
{
    defect(GOOD_BC, "critical,keyCertSign,keyAgreement", -DAY, 365 * DAY, false, 0,
           "ca-key-agreement", CERT_PATH, DIAG_ERROR);
}
END_TEST

START_TEST(provided_ca_expired_is_ca_expired)
{
    defect(GOOD_BC, GOOD_KU, -10 * DAY, -DAY, false, 0, "ca-expired", CERT_PATH, DIAG_ERROR);
}
END_TEST

START_TEST(provided_ca_not_yet_valid_is_reported)
{
    defect(GOOD_BC, GOOD_KU, DAY, 365 * DAY, false, 0, "ca-not-yet-valid", CERT_PATH, DIAG_ERROR);
}
END_TEST

START_TEST(provided_ca_expiring_before_leaf_is_an_error)
{
    defect(GOOD_BC, GOOD_KU, -DAY, 3600, false, 0, "ca-expires-before-leaf", CERT_PATH,
           DIAG_ERROR);
}
END_TEST

START_TEST(provided_ca_expiring_within_30_days_is_a_warning)
{
    defect(GOOD_BC, GOOD_KU, -DAY, 10 * DAY, false, 0, "ca-expires-soon", CERT_PATH,
           DIAG_WARNING);
}
END_TEST

START_TEST(provided_ca_with_rsa_1024_is_ca_weak_key)
{
    defect(GOOD_BC, GOOD_KU, -DAY, 365 * DAY, true, 1024, "ca-weak-key", CERT_PATH, DIAG_ERROR);
}
END_TEST

START_TEST(provided_ca_on_secp256k1_is_ca_weak_key)
{
    int64_t now = time(NULL);
    EVP_PKEY *k = EVP_EC_gen("secp256k1");
    X509 *x;
    char *c, *kp;

    ck_assert_ptr_nonnull(k);
    x = make_cert(k, "provided", NULL, NULL, now - DAY, now + 365 * DAY, GOOD_BC, GOOD_KU);
    c = pem_of(x), kp = key_pem_of(k);
    expect_provided_diag(c, kp, "ca-weak-key", CERT_PATH, DIAG_ERROR);
    free(c), pki_free_secret(kp), X509_free(x), EVP_PKEY_free(k);
}
END_TEST

START_TEST(provided_key_not_matching_cert_is_ca_key_mismatch)
{
    int64_t now = time(NULL);
    EVP_PKEY *k, *other;
    X509 *x;
    char *c, *kp;

    pki_generate_key(false, 0, &k, NULL);
    pki_generate_key(false, 0, &other, NULL);
    x = make_cert(k, "provided", NULL, NULL, now - DAY, now + 365 * DAY, GOOD_BC, GOOD_KU);
    c = pem_of(x), kp = key_pem_of(other);
    expect_provided_diag(c, kp, "ca-key-mismatch", KEY_PATH, DIAG_ERROR);
    free(c), pki_free_secret(kp), X509_free(x), EVP_PKEY_free(k), EVP_PKEY_free(other);
}
END_TEST

START_TEST(provided_garbage_cert_is_ca_unparsable)
{
    EVP_PKEY *k;
    char *kp;

    pki_generate_key(false, 0, &k, NULL);
    kp = key_pem_of(k);
    expect_provided_diag("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
                         kp, "ca-unparsable", CERT_PATH, DIAG_ERROR);
    pki_free_secret(kp), EVP_PKEY_free(k);
}
END_TEST

START_TEST(provided_garbage_key_is_ca_unparsable_without_echoing_it)
{
    int64_t now = time(NULL);
    EVP_PKEY *k;
    X509 *x;
    char *c;

    pki_generate_key(false, 0, &k, NULL);
    x = make_cert(k, "provided", NULL, NULL, now - DAY, now + 365 * DAY, GOOD_BC, GOOD_KU);
    c = pem_of(x);
    expect_provided_diag(c, "-----BEGIN PRIVATE KEY-----\nc2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\n"
                         "-----END PRIVATE KEY-----\n", "ca-unparsable", KEY_PATH, DIAG_ERROR);
    free(c), X509_free(x), EVP_PKEY_free(k);
}
END_TEST

/* root -> intermediate built with make_cert; returns the PEMs of both and the intermediate key. */
static void make_two_level(const char *root_bc, X509 **ret_root, X509 **ret_inter,
                           EVP_PKEY **ret_root_key, EVP_PKEY **ret_inter_key)
{
    int64_t now = time(NULL);

    pki_generate_key(false, 0, ret_root_key, NULL);
    pki_generate_key(false, 0, ret_inter_key, NULL);
    *ret_root = make_cert(*ret_root_key, "root", NULL, NULL, now - DAY, now + 3650 * DAY,
                          root_bc, GOOD_KU);
    *ret_inter = make_cert(*ret_inter_key, "inter", *ret_root, *ret_root_key, now - DAY,
                           now + 365 * DAY, GOOD_BC, GOOD_KU);
}

START_TEST(provided_chain_root_first_is_ca_chain_order)
{
    X509 *root, *inter;
    EVP_PKEY *rk, *ik;
    char chain[16384], *r, *i, *kp;

    make_two_level(GOOD_BC, &root, &inter, &rk, &ik);
    r = pem_of(root), i = pem_of(inter), kp = key_pem_of(rk);
    snprintf(chain, sizeof(chain), "%s%s", r, i);
    expect_provided_diag(chain, kp, "ca-chain-order", CERT_PATH, DIAG_ERROR);
    free(r), free(i), pki_free_secret(kp);
    X509_free(root), X509_free(inter), EVP_PKEY_free(rk), EVP_PKEY_free(ik);
}
END_TEST

START_TEST(provided_chain_under_pathlen_zero_root_is_ca_path_length)
{
    X509 *root, *inter;
    EVP_PKEY *rk, *ik;
    char chain[16384], *r, *i, *kp;

    make_two_level("critical,CA:TRUE,pathlen:0", &root, &inter, &rk, &ik);
    r = pem_of(root), i = pem_of(inter), kp = key_pem_of(ik);
    snprintf(chain, sizeof(chain), "%s%s", i, r);
    expect_provided_diag(chain, kp, "ca-path-length", CERT_PATH, DIAG_ERROR);
    free(r), free(i), pki_free_secret(kp);
    X509_free(root), X509_free(inter), EVP_PKEY_free(rk), EVP_PKEY_free(ik);
}
END_TEST

START_TEST(provided_chain_signs_leaves_that_verify_through_intermediate)
{
    X509 *root, *inter;
    EVP_PKEY *rk, *ik;
    char chain[16384], *r, *i, *kp, err[PKI_ERRBUF], b64[8192];
    mesh_backend b;
    ca_context ctx;
    mem_store st = {0};
    diag_list diags = DIAG_LIST_INIT;
    ca_backend *ca;
    mnode *conf;
    int n;

    make_tmpdir();
    make_two_level(GOOD_BC, &root, &inter, &rk, &ik);
    r = pem_of(root), i = pem_of(inter), kp = key_pem_of(ik);
    snprintf(chain, sizeof(chain), "%s%s", i, r);
    /* cert from a file, key as inline base64 from a secret-free datasource */
    write_text("chain.pem", chain);
    write_text("root.pem", r);
    write_text("inter.pem", i);
    n = EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)kp, (int)strlen(kp));
    ck_assert_int_gt(n, 0);
    conf = provided_conf(datasource("file", path_in("chain.pem")), datasource("inline", b64));
    init_ctx(&ctx, &b, "provided", "ca-2", conf, &st, time(NULL));
    ck_assert_int_eq(ca_backend_check(&ctx, &diags), PKI_OK);
    ck_assert_uint_eq(diags.count, 0);
    ck_assert_msg(ca_backend_open(&ctx, &ca, err) == PKI_OK, "%s", err);
    sign_and_verify(ca, false, "root.pem", "inter.pem");
    sign_and_verify(ca, true, "root.pem", "inter.pem");
    ca_backend_free(ca);
    mnode_free(conf);
    free(r), free(i), pki_free_secret(kp);
    X509_free(root), X509_free(inter), EVP_PKEY_free(rk), EVP_PKEY_free(ik);
    remove_tmpdir();
}
END_TEST

START_TEST(provided_expired_ca_is_refused_when_opened)
{
    int64_t now = time(NULL);
    EVP_PKEY *k;
    X509 *x;
    char *c, *kp, err[PKI_ERRBUF];
    mesh_backend b;
    ca_context ctx;
    mem_store st = {0};
    ca_backend *ca = NULL;
    mnode *conf;

    pki_generate_key(false, 0, &k, NULL);
    x = make_cert(k, "old", NULL, NULL, now - 10 * DAY, now - DAY, GOOD_BC, GOOD_KU);
    c = pem_of(x), kp = key_pem_of(k);
    mem_add(&st, "old-key", kp, strlen(kp));
    conf = provided_conf(datasource("inlineString", c), datasource("secret", "old-key"));
    init_ctx(&ctx, &b, "provided", "ca-old", conf, &st, now);
    ck_assert_int_eq(ca_backend_open(&ctx, &ca, err), PKI_EEXPIRED);
    assert_contains(err, "ca-expired");
    ck_assert_ptr_null(ca);
    mnode_free(conf);
    mem_store_free(&st);
    free(c), pki_free_secret(kp), X509_free(x), EVP_PKEY_free(k);
}
END_TEST

START_TEST(provided_missing_secret_and_file_are_reported_with_paths)
{
    mesh_backend b;
    ca_context ctx;
    mem_store st = {0};
    diag_list diags = DIAG_LIST_INIT;
    mnode *conf = provided_conf(datasource("file", "/nonexistent/ca.pem"),
                                datasource("secret", "nope"));

    init_ctx(&ctx, &b, "provided", "ca-2", conf, &st, time(NULL));
    ck_assert_int_eq(ca_backend_check(&ctx, &diags), PKI_OK);
    ck_assert_uint_eq(diags.count, 2);
    ck_assert_str_eq(diags.items[0].code, "ca-unparsable");
    ck_assert_str_eq(diags.items[0].path, CERT_PATH);
    assert_contains(diags.items[0].message, "cannot open file");
    ck_assert_str_eq(diags.items[1].code, "ca-unparsable");
    ck_assert_str_eq(diags.items[1].path, KEY_PATH);
    assert_contains(diags.items[1].message, "secret not found");
    diag_list_free(&diags);
    mnode_free(conf);
}
END_TEST

/* ---- bundle and roots ------------------------------------------------------------------- */

START_TEST(bundle_puts_enabled_backend_first_and_drops_duplicates)
{
    int64_t now = time(NULL);
    X509 *a, *b;
    EVP_PKEY *ka, *kb;
    char *pa, *pb, *bundle, err[PKI_ERRBUF];
    STACK_OF(X509) *sk;

    make_root(false, 0, "a", now, 3600, &a, &ka);
    make_root(false, 0, "b", now, 3600, &b, &kb);
    pa = pem_of(a), pb = pem_of(b);
    const char *chains[] = {pa, pb, pa};
    ck_assert_int_eq(bundle_build(chains, 3, 1, &bundle, err), PKI_OK);
    ck_assert_int_eq(pki_chain_from_pem(bundle, strlen(bundle), &sk, NULL), PKI_OK);
    ck_assert_int_eq(sk_X509_num(sk), 2);
    ck_assert_int_eq(X509_cmp(sk_X509_value(sk, 0), b), 0);
    ck_assert_int_eq(X509_cmp(sk_X509_value(sk, 1), a), 0);
    sk_X509_pop_free(sk, X509_free);
    free(bundle);
    const char *bad[] = {pa, "junk"};
    ck_assert_int_eq(bundle_build(bad, 2, 0, &bundle, err), PKI_EINVAL);
    free(pa), free(pb), X509_free(a), X509_free(b), EVP_PKEY_free(ka), EVP_PKEY_free(kb);
}
END_TEST

START_TEST(roots_is_consul_shaped_with_one_root_per_backend)
{
    int64_t now = time(NULL);
    X509 *a, *root, *inter, *cross;
    EVP_PKEY *ka, *rk, *ik;
    char *pa, *pr, *pi, *pc, chain[16384], err[PKI_ERRBUF], *out, fp[64];
    json_t *doc, *roots, *r0, *r1;

    make_tmpdir();
    make_root(false, 0, "default", now, 3650 * DAY, &a, &ka);
    make_two_level(GOOD_BC, &root, &inter, &rk, &ik);
    ck_assert_int_eq(pki_cross_sign(inter, a, ka, now, now + 7 * DAY, &cross, err), PKI_OK);
    pa = pem_of(a), pr = pem_of(root), pi = pem_of(inter), pc = pem_of(cross);
    snprintf(chain, sizeof(chain), "%s%s", pi, pr);
    roots_entry entries[] = {
        {"ca-1", pa, NULL, false},
        {"ca-2", chain, pc, true},
    };
    ck_assert_int_eq(roots_build("default", entries, 2, &doc, err), PKI_OK);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "TrustDomain")), "default");
    roots = json_object_get(doc, "Roots");
    ck_assert_uint_eq(json_array_size(roots), 2);
    r0 = json_array_get(roots, 0), r1 = json_array_get(roots, 1);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "ActiveRootID")),
                     json_string_value(json_object_get(r1, "ID")));
    ck_assert(json_is_false(json_object_get(r0, "Active")));
    ck_assert(json_is_true(json_object_get(r1, "Active")));
    ck_assert_str_eq(json_string_value(json_object_get(r0, "Backend")), "ca-1");
    ck_assert_str_eq(json_string_value(json_object_get(r0, "Name")), "ca-1");
    ck_assert_str_eq(json_string_value(json_object_get(r0, "PrivateKeyType")), "ec");
    ck_assert_int_eq(json_integer_value(json_object_get(r0, "PrivateKeyBits")), 256);
    ck_assert_str_eq(json_string_value(json_object_get(r0, "RootCert")), pa);
    ck_assert_uint_eq(json_array_size(json_object_get(r0, "IntermediateCerts")), 0);
    ck_assert_str_eq(json_string_value(json_object_get(r1, "RootCert")), pr);
    ck_assert_uint_eq(json_array_size(json_object_get(r1, "IntermediateCerts")), 2);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(r1, "IntermediateCerts"), 1)),
                     pc);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(r1, "NotBefore")));
    ck_assert_ptr_nonnull(json_string_value(json_object_get(r1, "SerialNumber")));
    /* ID is the SHA-1 fingerprint openssl prints, in lowercase */
    write_text("a.pem", pa);
    ck_assert_int_eq(run(&out, "openssl x509 -in a.pem -noout -fingerprint -sha1 | cut -d= -f2 "
                               "| tr A-F a-f | tr -d '\\n'"), 0);
    snprintf(fp, sizeof(fp), "%s", json_string_value(json_object_get(r0, "ID")));
    ck_assert_str_eq(fp, out);
    free(out);
    /* SigningKeyID is the subject key id of the signing CA */
    write_text("a.pem", pa);
    ck_assert_int_eq(run(&out, "openssl x509 -in a.pem -noout -ext subjectKeyIdentifier | tail -1 "
                               "| tr -d ' \\n' | tr A-F a-f"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(r0, "SigningKeyID")), out);
    free(out);
    json_decref(doc);
    free(pa), free(pr), free(pi), free(pc);
    X509_free(a), X509_free(root), X509_free(inter), X509_free(cross);
    EVP_PKEY_free(ka), EVP_PKEY_free(rk), EVP_PKEY_free(ik);
    remove_tmpdir();
}
END_TEST

static void add_backend_tests(Suite *s)
{
    TCase *tc = tcase_create("backends");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, builtin_generates_root_once_and_reuses_its_secrets);
    tcase_add_test(tc, builtin_rsa_root_when_rsabits_set);
    tcase_add_test(tc, builtin_bad_rsabits_is_a_conf_error_with_path);
    tcase_add_test(tc, builtin_without_secret_store_does_not_generate);
    tcase_add_test(tc, builtin_creation_that_loses_a_race_uses_the_winners_root);
    tcase_add_test(tc, cross_signing_is_a_backend_operation_without_the_key);
    tcase_add_test(tc, unknown_backend_type_has_no_ops);
    tcase_add_test(tc, provided_ca_without_ca_basic_constraint_is_ca_not_ca);
    tcase_add_test(tc, provided_ca_without_key_cert_sign_is_ca_not_ca);
    tcase_add_test(tc, provided_ca_with_key_agreement_is_refused);
    tcase_add_test(tc, provided_ca_expired_is_ca_expired);
    tcase_add_test(tc, provided_ca_not_yet_valid_is_reported);
    tcase_add_test(tc, provided_ca_expiring_before_leaf_is_an_error);
    tcase_add_test(tc, provided_ca_expiring_within_30_days_is_a_warning);
    tcase_add_test(tc, provided_ca_with_rsa_1024_is_ca_weak_key);
    tcase_add_test(tc, provided_ca_on_secp256k1_is_ca_weak_key);
    tcase_add_test(tc, provided_key_not_matching_cert_is_ca_key_mismatch);
    tcase_add_test(tc, provided_garbage_cert_is_ca_unparsable);
    tcase_add_test(tc, provided_garbage_key_is_ca_unparsable_without_echoing_it);
    tcase_add_test(tc, provided_chain_root_first_is_ca_chain_order);
    tcase_add_test(tc, provided_chain_under_pathlen_zero_root_is_ca_path_length);
    tcase_add_test(tc, provided_chain_signs_leaves_that_verify_through_intermediate);
    tcase_add_test(tc, provided_expired_ca_is_refused_when_opened);
    tcase_add_test(tc, provided_missing_secret_and_file_are_reported_with_paths);
    tcase_add_test(tc, bundle_puts_enabled_backend_first_and_drops_duplicates);
    tcase_add_test(tc, roots_is_consul_shaped_with_one_root_per_backend);
    suite_add_tcase(s, tc);
}


/* ---- leaves for a known public key: CSR mode and re-signing (issue 13) ------------------- */

/* A CSR as an agent makes it; *ret_spki is the key's SPKI DER as the API stores it. */
static char *make_csr_pem(EVP_PKEY *key, EVP_PKEY *signer, unsigned char **ret_spki,
                          size_t *ret_spki_len)
{
    X509_REQ *req = X509_REQ_new();
    BIO *bio = BIO_new(BIO_s_mem());
    unsigned char *der = NULL;
    char *data, *pem;
    long n;
    int dn;

    ck_assert_int_eq(X509_REQ_set_pubkey(req, key), 1);
    ck_assert_int_gt(X509_REQ_sign(req, signer, EVP_sha256()), 0);
    ck_assert_int_eq(PEM_write_bio_X509_REQ(bio, req), 1);
    n = BIO_get_mem_data(bio, &data);
    pem = strndup(data, (size_t)n);
    dn = i2d_PUBKEY(key, &der);
    ck_assert_int_gt(dn, 0);
    if (ret_spki) {
        *ret_spki = malloc((size_t)dn);
        memcpy(*ret_spki, der, (size_t)dn);
        *ret_spki_len = (size_t)dn;
    }
    OPENSSL_free(der);
    BIO_free(bio);
    X509_REQ_free(req);
    return pem;
}

static X509 *parse_leaf(const pki_signed_leaf *leaf)
{
    X509 *x = NULL;

    ck_assert_ptr_nonnull(leaf->pem);
    ck_assert_int_eq(pki_cert_from_pem(leaf->pem, strlen(leaf->pem), &x, NULL), PKI_OK);
    return x;
}

/* Every extension of `got` is byte for byte the one pki_issue_leaf writes, except the SKI,
 * which must be the SHA-1 of got's own key bits (RFC 5280 method 1, what "hash" computes). */
static void assert_same_profile(X509 *got, X509 *want)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(got);

    ck_assert_int_eq(X509_get_ext_count(got), X509_get_ext_count(want));
    for (int i = 0; i < X509_get_ext_count(want); i++) {
        X509_EXTENSION *a = X509_get_ext(got, i), *b = X509_get_ext(want, i);
        unsigned char *da = NULL, *db = NULL;
        int na = i2d_X509_EXTENSION(a, &da), nb = i2d_X509_EXTENSION(b, &db);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(b));

        ck_assert_int_eq(OBJ_obj2nid(X509_EXTENSION_get_object(a)), nid);
        ck_assert_int_eq(X509_EXTENSION_get_critical(a), X509_EXTENSION_get_critical(b));
        if (nid != NID_subject_key_identifier)
            ck_assert_msg(na == nb && memcmp(da, db, (size_t)na) == 0, "extension %s differs",
                          OBJ_nid2sn(nid));
        OPENSSL_free(da);
        OPENSSL_free(db);
    }
    ck_assert_int_eq(X509_pubkey_digest(got, EVP_sha1(), md, &mdlen), 1);
    ck_assert_ptr_nonnull(ski);
    ck_assert_int_eq(ASN1_STRING_length(ski), (int)mdlen);
    ck_assert_int_eq(memcmp(ASN1_STRING_get0_data(ski), md, mdlen), 0);
    ck_assert_int_eq(X509_NAME_cmp(X509_get_issuer_name(got), X509_get_issuer_name(want)), 0);
    ck_assert_int_eq(X509_NAME_entry_count(X509_get_subject_name(got)), 0);
}

static void check_signed_for_key_bits(bool ca_rsa, int ca_bits, bool leaf_rsa, bool via_csr)
{
    int64_t now = time(NULL);
    X509 *root, *ref, *leaf;
    EVP_PKEY *root_key, *ref_key, *key;
    pki_leaf_signer *s = NULL;
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    pki_signed_leaf out;
    unsigned char *spki = NULL, *spki2 = NULL;
    size_t spki_len = 0, spki2_len = 0;
    char err[PKI_ERRBUF], serial[PKI_SERIAL_HEX_MAX], *csr, *txt;
    int64_t nb, na;

    make_tmpdir();
    make_root(ca_rsa, ca_bits, "default", now, 10 * 365 * 86400LL, &root, &root_key);
    issue(root, root_key, leaf_rsa, now, 86400, &ref, &ref_key);
    ck_assert_int_eq(pki_generate_key(leaf_rsa, 2048, &key, err), PKI_OK);
    csr = make_csr_pem(key, key, &spki, &spki_len);
    ck_assert_int_eq(pki_leaf_signer_new(root, root_key, &s, err), PKI_OK);
    req.uris = web_uris;
    req.nuris = 3;
    req.rsa = leaf_rsa;
    req.lifetime_s = 86400;
    if (via_csr) {
        ck_assert_msg(pki_sign_csr(s, csr, strlen(csr), &req, now, &out, &spki2, &spki2_len, err) ==
                      PKI_OK, "%s", err);
        /* the SPKI handed back for later re-signs is the key's, byte for byte */
        ck_assert_uint_eq(spki2_len, spki_len);
        ck_assert_int_eq(memcmp(spki2, spki, spki_len), 0);
    } else {
        ck_assert_msg(pki_sign_public_key(s, spki, spki_len, &req, now, &out, err) == PKI_OK, "%s",
                      err);
    }
    leaf = parse_leaf(&out);
    ck_assert_int_eq(EVP_PKEY_eq(X509_get0_pubkey(leaf), key), 1);
    ck_assert_int_eq(pki_key_matches(leaf, key), true);
    assert_same_profile(leaf, ref);
    ck_assert_int_eq(pki_cert_not_before(leaf, &nb), PKI_OK);
    ck_assert_int_eq(pki_cert_not_after(leaf, &na), PKI_OK);
    ck_assert_int_eq(nb, now - 60);
    ck_assert_int_eq(na, now + 86400);
    ck_assert_int_eq(out.not_before, nb);
    ck_assert_int_eq(out.not_after, na);
    ck_assert_int_eq(pki_serial_hex(leaf, serial, sizeof(serial)), PKI_OK);
    ck_assert_str_eq(out.serial_hex, serial);
    ck_assert_int_ge(strlen(serial), 20);
    /* PEM written without a BIO reads back with the openssl CLI and passes -x509_strict */
    write_cert("root.pem", root);
    write_text("leaf.pem", out.pem);
    ck_assert_int_eq(run(&txt, "openssl verify -x509_strict -CAfile root.pem leaf.pem"), 0);
    assert_contains(txt, "leaf.pem: OK");
    free(txt);
    ck_assert_int_eq(run(&txt, "openssl x509 -in leaf.pem -noout -text"), 0);
    assert_contains(txt, "X509v3 Subject Alternative Name: critical");
    assert_contains(txt, "URI:spiffe://default/web, URI:kuma://kuma.io/service/web, URI:kuma://version/v1");
    assert_contains(txt, leaf_rsa ? "Public-Key: (2048 bit)" : "NIST CURVE: P-256");
    free(txt);
    /* 64 columns as PEM_write_bio_X509 writes them */
    char *std = NULL;
    ck_assert_int_eq(pki_cert_to_pem(leaf, &std, NULL), PKI_OK);
    ck_assert_str_eq(out.pem, std);
    free(std);

    pki_signed_leaf_clear(&out);
    ck_assert_ptr_null(out.pem);
    pki_leaf_signer_free(s);
    free(csr), free(spki), free(spki2);
    X509_free(root), X509_free(ref), X509_free(leaf);
    EVP_PKEY_free(root_key), EVP_PKEY_free(ref_key), EVP_PKEY_free(key);
    remove_tmpdir();
}

static void check_signed_for_key(bool ca_rsa, bool leaf_rsa, bool via_csr)
{
    check_signed_for_key_bits(ca_rsa, 2048, leaf_rsa, via_csr);
}

START_TEST(resigned_ec_public_key_has_issue_leaf_profile_and_passes_x509_strict)
{
    check_signed_for_key(false, false, false);
}
END_TEST

START_TEST(resigned_rsa_public_key_from_rsa_ca_passes_x509_strict)
{
    check_signed_for_key(true, true, false);
}
END_TEST

/* A 4096-bit CA signs 512-byte signatures: the signer sizes its buffer by the CA key. */
START_TEST(resigned_ec_public_key_from_rsa_4096_ca_passes_x509_strict)
{
    check_signed_for_key_bits(true, 4096, false, false);
}
END_TEST

START_TEST(signed_ec_csr_has_issue_leaf_profile_and_passes_x509_strict)
{
    check_signed_for_key(false, false, true);
}
END_TEST

START_TEST(signed_rsa_csr_from_ec_ca_passes_x509_strict)
{
    check_signed_for_key(false, true, true);
}
END_TEST

/* Proof of possession: a CSR signed by another key than the one it carries is refused. */
START_TEST(csr_signed_by_another_key_is_refused_einval)
{
    int64_t now = time(NULL);
    X509 *root;
    EVP_PKEY *root_key, *key, *other;
    pki_leaf_signer *s = NULL;
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    pki_signed_leaf out = {.pem = (char *)"untouched"};
    unsigned char *spki = (unsigned char *)"untouched";
    size_t spki_len = 7;
    char err[PKI_ERRBUF], *csr;

    make_root(false, 0, "default", now, 86400 * 30, &root, &root_key);
    ck_assert_int_eq(pki_generate_key(false, 0, &key, err), PKI_OK);
    ck_assert_int_eq(pki_generate_key(false, 0, &other, err), PKI_OK);
    csr = make_csr_pem(key, other, NULL, NULL);
    ck_assert_int_eq(pki_leaf_signer_new(root, root_key, &s, err), PKI_OK);
    req.uris = web_uris;
    req.nuris = 3;
    ck_assert_int_eq(pki_sign_csr(s, csr, strlen(csr), &req, now, &out, &spki, &spki_len, err),
                     PKI_EINVAL);
    assert_contains(err, "CSR signature does not verify");
    ck_assert_int_eq(ERR_peek_error(), 0);
    /* outputs untouched on failure */
    ck_assert_str_eq(out.pem, "untouched");
    ck_assert_uint_eq(spki_len, 7);
    ck_assert_int_eq(pki_sign_csr(s, "garbage", 7, &req, now, &out, NULL, NULL, err), PKI_EINVAL);
    assert_contains(err, "cannot parse the CSR PEM");
    free(csr);
    pki_leaf_signer_free(s);
    X509_free(root), EVP_PKEY_free(root_key), EVP_PKEY_free(key), EVP_PKEY_free(other);
}
END_TEST

/* A signer keeps one verify key and context and sets each CSR's point into them (issue 13): a
 * CSR must be verified with its own key, never with the one of the CSR before it. */
START_TEST(signer_verifies_each_csr_with_its_own_key_not_the_last_one)
{
    int64_t now = time(NULL);
    X509 *root, *leaf;
    EVP_PKEY *root_key, *k1, *k2;
    pki_leaf_signer *s = NULL;
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    pki_signed_leaf out;
    char err[PKI_ERRBUF], *good1, *forged, *good2;

    make_root(false, 0, "default", now, 86400 * 30, &root, &root_key);
    ck_assert_int_eq(pki_generate_key(false, 0, &k1, err), PKI_OK);
    ck_assert_int_eq(pki_generate_key(false, 0, &k2, err), PKI_OK);
    good1 = make_csr_pem(k1, k1, NULL, NULL);
    forged = make_csr_pem(k2, k1, NULL, NULL);   /* k2's key, signed by k1: no proof for k2 */
    good2 = make_csr_pem(k2, k2, NULL, NULL);
    ck_assert_int_eq(pki_leaf_signer_new(root, root_key, &s, err), PKI_OK);
    req.uris = web_uris;
    req.nuris = 3;
    for (int round = 0; round < 3; round++) {
        ck_assert_msg(pki_sign_csr(s, good1, strlen(good1), &req, now, &out, NULL, NULL, err) ==
                      PKI_OK, "%s", err);
        leaf = parse_leaf(&out);
        ck_assert_int_eq(EVP_PKEY_eq(X509_get0_pubkey(leaf), k1), 1);
        X509_free(leaf);
        pki_signed_leaf_clear(&out);
        ck_assert_int_eq(pki_sign_csr(s, forged, strlen(forged), &req, now, &out, NULL, NULL, err),
                         PKI_EINVAL);
        assert_contains(err, "CSR signature does not verify with its own key");
        ck_assert_msg(pki_sign_csr(s, good2, strlen(good2), &req, now, &out, NULL, NULL, err) ==
                      PKI_OK, "%s", err);
        leaf = parse_leaf(&out);
        ck_assert_int_eq(EVP_PKEY_eq(X509_get0_pubkey(leaf), k2), 1);
        X509_free(leaf);
        pki_signed_leaf_clear(&out);
    }
    free(good1), free(forged), free(good2);
    pki_leaf_signer_free(s);
    X509_free(root), EVP_PKEY_free(root_key), EVP_PKEY_free(k1), EVP_PKEY_free(k2);
}
END_TEST

/* S5: the key type is the mesh's dpCert.keyType, whatever the agent sends. */
START_TEST(public_key_of_the_wrong_type_is_refused_einval)
{
    int64_t now = time(NULL);
    X509 *root;
    EVP_PKEY *root_key, *rsa, *k1;
    pki_leaf_signer *s = NULL;
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    pki_signed_leaf out;
    unsigned char *spki = NULL;
    size_t spki_len = 0;
    char err[PKI_ERRBUF], *csr;

    make_root(false, 0, "default", now, 86400 * 30, &root, &root_key);
    ck_assert_int_eq(pki_generate_key(true, 2048, &rsa, err), PKI_OK);
    k1 = EVP_EC_gen("secp256k1");
    ck_assert_ptr_nonnull(k1);
    ck_assert_int_eq(pki_leaf_signer_new(root, root_key, &s, err), PKI_OK);
    req.uris = web_uris;
    req.nuris = 3;
    csr = make_csr_pem(rsa, rsa, &spki, &spki_len);
    ck_assert_int_eq(pki_sign_csr(s, csr, strlen(csr), &req, now, &out, NULL, NULL, err), PKI_EINVAL);
    assert_contains(err, "not EC P-256");
    ck_assert_int_eq(pki_sign_public_key(s, spki, spki_len, &req, now, &out, err), PKI_EINVAL);
    assert_contains(err, "not EC P-256");
    free(csr), free(spki);
    /* an EC key on another curve is not P-256 either */
    csr = make_csr_pem(k1, k1, &spki, &spki_len);
    ck_assert_int_eq(pki_sign_public_key(s, spki, spki_len, &req, now, &out, err), PKI_EINVAL);
    assert_contains(err, "not EC P-256");
    req.rsa = true;
    ck_assert_int_eq(pki_sign_public_key(s, spki, spki_len, &req, now, &out, err), PKI_EINVAL);
    assert_contains(err, "not RSA");
    /* a truncated or trailing-garbage SPKI is not parsed as a key */
    ck_assert_int_eq(pki_sign_public_key(s, spki, spki_len - 1, &req, now, &out, err), PKI_EINVAL);
    assert_contains(err, "cannot parse the stored public key");
    free(csr), free(spki);
    pki_leaf_signer_free(s);
    X509_free(root), EVP_PKEY_free(root_key), EVP_PKEY_free(rsa), EVP_PKEY_free(k1);
}
END_TEST

/* The signer checks the CA's validity at each `now`, as pki_issue_leaf does, and clamps. */
START_TEST(signer_refuses_expired_ca_and_clamps_to_ca_not_after)
{
    int64_t now = time(NULL);
    X509 *root;
    EVP_PKEY *root_key, *key;
    pki_leaf_signer *s = NULL;
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    pki_signed_leaf out;
    unsigned char *spki = NULL;
    size_t spki_len = 0;
    char err[PKI_ERRBUF], *csr;
    int64_t ca_na;

    make_root(false, 0, "default", now, 3600, &root, &root_key);
    ck_assert_int_eq(pki_cert_not_after(root, &ca_na), PKI_OK);
    ck_assert_int_eq(pki_generate_key(false, 0, &key, err), PKI_OK);
    csr = make_csr_pem(key, key, &spki, &spki_len);
    ck_assert_int_eq(pki_leaf_signer_new(root, root_key, &s, err), PKI_OK);
    req.uris = web_uris;
    req.nuris = 3;
    req.lifetime_s = 86400;
    ck_assert_int_eq(pki_sign_public_key(s, spki, spki_len, &req, now, &out, err), PKI_OK);
    ck_assert_int_eq(out.not_after, ca_na);
    pki_signed_leaf_clear(&out);
    ck_assert_int_eq(pki_sign_public_key(s, spki, spki_len, &req, ca_na, &out, err), PKI_EEXPIRED);
    assert_contains(err, "ca-expired");
    ck_assert_int_eq(pki_sign_csr(s, csr, strlen(csr), &req, now - 7200, &out, NULL, NULL, err),
                     PKI_EEXPIRED);
    assert_contains(err, "not yet valid");
    free(csr), free(spki);
    pki_leaf_signer_free(s);
    pki_leaf_signer_free(NULL);
    X509_free(root), EVP_PKEY_free(root_key), EVP_PKEY_free(key);
}
END_TEST

/* What OpenSSL's own CSR API says of a CSR, as the generic path of pki_sign_csr judges it:
 * parsed by PEM_read_bio_X509_REQ, signature verified with its own key, key of the asked type
 * (EC P-256, or RSA of 2048 bits or more). */
static bool openssl_accepts_csr(const char *pem, size_t len, bool rsa)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509_REQ *req = bio ? PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL) : NULL;
    EVP_PKEY *key = req ? X509_REQ_get0_pubkey(req) : NULL;
    bool ok = key && X509_REQ_verify(req, key) == 1;
    char curve[64] = "";

    if (ok && rsa)
        ok = EVP_PKEY_is_a(key, "RSA") && EVP_PKEY_get_bits(key) >= 2048;
    else if (ok)
        ok = EVP_PKEY_is_a(key, "EC") &&
             EVP_PKEY_get_utf8_string_param(key, "group", curve, sizeof(curve), NULL) == 1 &&
             strcmp(curve, "prime256v1") == 0;
    X509_REQ_free(req);
    BIO_free(bio);
    ERR_clear_error();
    return ok;
}

/* One corpus entry: pki_sign_csr's verdict must be OpenSSL's, its errors EINVAL, and a leaf
 * (when signed) must carry the CSR's key. */
static void assert_csr_verdict(pki_leaf_signer *s, const char *what, const char *pem, size_t len,
                               bool rsa, int64_t now)
{
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    pki_signed_leaf out;
    char err[PKI_ERRBUF];
    bool want = openssl_accepts_csr(pem, len, rsa);
    int r;

    req.uris = web_uris;
    req.nuris = 3;
    req.rsa = rsa;
    r = pki_sign_csr(s, pem, len, &req, now, &out, NULL, NULL, err);
    ck_assert_msg((r == PKI_OK) == want, "%s: pki_sign_csr %d (%s), OpenSSL %s", what, r,
                  r ? err : "signed", want ? "accepts" : "refuses");
    ck_assert_int_eq(ERR_peek_error(), 0);
    if (r != PKI_OK) {
        ck_assert_msg(r == PKI_EINVAL, "%s: %d %s", what, r, err);
        return;
    }
    {
        BIO *bio = BIO_new_mem_buf(pem, (int)len);
        X509_REQ *csr = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
        X509 *leaf = parse_leaf(&out);

        ck_assert_int_eq(EVP_PKEY_eq(X509_get0_pubkey(leaf), X509_REQ_get0_pubkey(csr)), 1);
        X509_free(leaf);
        X509_REQ_free(csr);
        BIO_free(bio);
    }
    pki_signed_leaf_clear(&out);
}

/* A CSR for key, signed by signer with md, with a subject CN when cn is set. */
static char *csr_pem_with(EVP_PKEY *key, EVP_PKEY *signer, const EVP_MD *md, const char *cn,
                          bool compressed)
{
    X509_REQ *req = X509_REQ_new();
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *pem;
    long n;

    if (compressed)
        ck_assert_int_eq(EVP_PKEY_set_utf8_string_param(key, "point-format", "compressed"), 1);
    ck_assert_int_eq(X509_REQ_set_pubkey(req, key), 1);
    if (cn)
        ck_assert_int_eq(X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN",
                                                    MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0), 1);
    ck_assert_int_gt(X509_REQ_sign(req, signer, md), 0);
    ck_assert_int_eq(PEM_write_bio_X509_REQ(bio, req), 1);
    n = BIO_get_mem_data(bio, &data);
    pem = strndup(data, (size_t)n);
    ck_assert_ptr_nonnull(pem);
    BIO_free(bio);
    X509_REQ_free(req);
    if (compressed)
        ck_assert_int_eq(EVP_PKEY_set_utf8_string_param(key, "point-format", "uncompressed"), 1);
    return pem;
}

/* pki_sign_csr reads EC P-256 CSRs without OpenSSL's CSR parser (issue 13): over a corpus of
 * CSRs (other curves, RSA, bad signatures, other digests, subjects, compressed points, PEM
 * variants, and every byte of a valid CSR's DER flipped in turn) it signs exactly those
 * OpenSSL's X509_REQ API accepts, and refuses the others with PKI_EINVAL. */
START_TEST(csr_verdicts_are_openssls_over_a_corpus)
{
    int64_t now = time(NULL);
    X509 *root;
    EVP_PKEY *root_key, *p256, *other, *p384, *k1, *rsa, *rsa1024;
    pki_leaf_signer *s = NULL;
    char err[PKI_ERRBUF], *pem, buf[8192];
    unsigned char *der = NULL;
    long derlen;
    int flips = 0;

    make_root(false, 0, "default", now, 86400 * 30, &root, &root_key);
    ck_assert_int_eq(pki_generate_key(false, 0, &p256, err), PKI_OK);
    ck_assert_int_eq(pki_generate_key(false, 0, &other, err), PKI_OK);
    ck_assert_int_eq(pki_generate_key(true, 2048, &rsa, err), PKI_OK);
    ck_assert_int_eq(pki_generate_key(true, 1024, &rsa1024, err), PKI_OK);
    p384 = EVP_EC_gen("P-384");
    k1 = EVP_EC_gen("secp256k1");
    ck_assert_ptr_nonnull(p384);
    ck_assert_ptr_nonnull(k1);
    ck_assert_int_eq(pki_leaf_signer_new(root, root_key, &s, err), PKI_OK);

#define VERDICT(what, text, rsa_wanted) \
    assert_csr_verdict(s, what, text, strlen(text), rsa_wanted, now)
    pem = csr_pem_with(p256, p256, EVP_sha256(), NULL, false);
    VERDICT("P-256", pem, false);
    VERDICT("P-256 when RSA is asked", pem, true);
    /* PEM variants: CRLF, text before and after, a line of text before BEGIN on its line,
     * whitespace after the markers, the old NEW CERTIFICATE REQUEST label, truncation */
    {
        char crlf[8192];
        size_t j = 0;

        for (const char *c = pem; *c && j + 2 < sizeof(crlf); c++) {
            if (*c == '\n')
                crlf[j++] = '\r';
            crlf[j++] = *c;
        }
        crlf[j] = '\0';
        VERDICT("CRLF", crlf, false);
    }
    snprintf(buf, sizeof(buf), "a line before\n%safter\n", pem);
    VERDICT("text around", buf, false);
    snprintf(buf, sizeof(buf), "junk%s", pem);
    VERDICT("junk before BEGIN on its line", buf, false);
    snprintf(buf, sizeof(buf), "%.*s junk%s", 35, pem, pem + 35);
    VERDICT("junk after the BEGIN marker", buf, false);
    snprintf(buf, sizeof(buf), "-----BEGIN NEW CERTIFICATE REQUEST-----%.*s-----END NEW CERTIFICATE REQUEST-----\n",
             (int)(strstr(pem, "-----END") - (pem + 35)), pem + 35);
    VERDICT("NEW CERTIFICATE REQUEST label", buf, false);
    memcpy(buf, pem, strlen(pem) / 2);   /* (snprintf "%.*s": GCC's -fsanitize build sees NULL) */
    buf[strlen(pem) / 2] = '\0';
    VERDICT("truncated", buf, false);
    snprintf(buf, sizeof(buf), "%.*s\n%s", (int)(strstr(pem, "-----END") - pem), pem,
             strstr(pem, "-----END"));
    VERDICT("blank line before END", buf, false);
    free(pem);

    pem = csr_pem_with(p256, other, EVP_sha256(), NULL, false);
    VERDICT("signed by another key", pem, false);
    free(pem);
    pem = csr_pem_with(p256, p256, EVP_sha384(), NULL, false);
    VERDICT("ecdsa-with-SHA384", pem, false);
    free(pem);
    pem = csr_pem_with(p256, p256, EVP_sha256(), "web-1", false);
    VERDICT("subject CN", pem, false);
    free(pem);
    pem = csr_pem_with(p256, p256, EVP_sha256(), NULL, true);
    VERDICT("compressed point", pem, false);
    free(pem);
    pem = csr_pem_with(p384, p384, EVP_sha256(), NULL, false);
    VERDICT("P-384", pem, false);
    free(pem);
    pem = csr_pem_with(k1, k1, EVP_sha256(), NULL, false);
    VERDICT("secp256k1", pem, false);
    free(pem);
    pem = csr_pem_with(rsa, rsa, EVP_sha256(), NULL, false);
    VERDICT("RSA when EC is asked", pem, false);
    VERDICT("RSA-2048", pem, true);
    free(pem);
    pem = csr_pem_with(rsa1024, rsa1024, EVP_sha256(), NULL, false);
    VERDICT("RSA-1024", pem, true);
    free(pem);
    VERDICT("garbage", "garbage", false);

    /* every byte of a valid CSR's DER flipped in turn (one bit, then all bits) */
    pem = csr_pem_with(p256, p256, EVP_sha256(), NULL, false);
    {
        BIO *bio = BIO_new_mem_buf(pem, -1);
        X509_REQ *req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);

        derlen = i2d_X509_REQ(req, &der);
        ck_assert_int_gt(derlen, 0);
        X509_REQ_free(req);
        BIO_free(bio);
    }
    for (long i = 0; i < derlen; i++) {
        for (int mask = 0x01; mask <= 0xff; mask = mask == 0x01 ? 0xff : 0x100) {
            char what[64];
            BIO *mem = BIO_new(BIO_s_mem());
            char *text;
            long n;

            der[i] ^= (unsigned char)mask;
            ck_assert_int_gt(PEM_write_bio(mem, "CERTIFICATE REQUEST", "", der, derlen), 0);
            n = BIO_get_mem_data(mem, &text);
            snprintf(what, sizeof(what), "byte %ld ^ 0x%02x", i, mask);
            assert_csr_verdict(s, what, text, (size_t)n, false, now);
            der[i] ^= (unsigned char)mask;
            BIO_free(mem);
            flips++;
        }
    }
    ck_assert_int_eq(flips, 2 * derlen);
#undef VERDICT
    OPENSSL_free(der);
    free(pem);
    pki_leaf_signer_free(s);
    X509_free(root);
    EVP_PKEY_free(root_key), EVP_PKEY_free(p256), EVP_PKEY_free(other), EVP_PKEY_free(p384);
    EVP_PKEY_free(k1), EVP_PKEY_free(rsa), EVP_PKEY_free(rsa1024);
}
END_TEST

/* pki_spki_to_pem (a CSR POST's key as the identity record keeps it) writes what the provider
 * encoder wrote (d2i_PUBKEY + PEM_write_bio_PUBKEY) for EC P-256 and RSA keys, and refuses any
 * other algorithm, trailing bytes and garbage. */
START_TEST(spki_to_pem_writes_what_the_encoder_wrote_and_refuses_other_keys)
{
    EVP_PKEY *keys[2] = {NULL, NULL}, *p384 = EVP_EC_gen("P-384"), *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char err[PKI_ERRBUF], *fast = NULL, *slow = NULL;
    unsigned char *der = NULL, buf[1024];
    int n;

    ck_assert_int_eq(pki_generate_key(false, 0, &keys[0], err), PKI_OK);
    ck_assert_int_eq(pki_generate_key(true, 2048, &keys[1], err), PKI_OK);
    for (int i = 0; i < 2; i++) {
        n = i2d_PUBKEY(keys[i], &der);
        ck_assert_int_gt(n, 0);
        ck_assert_int_eq(pki_spki_to_pem(der, (size_t)n, &fast, err), PKI_OK);
        ck_assert_int_eq(pki_pubkey_to_pem(keys[i], &slow, err), PKI_OK);
        ck_assert_str_eq(fast, slow);
        free(fast), free(slow);
        /* one byte more after the SPKI */
        ck_assert_int_lt(n + 1, (int)sizeof(buf));
        memcpy(buf, der, (size_t)n);
        buf[n] = 0;
        fast = NULL;
        ck_assert_int_eq(pki_spki_to_pem(buf, (size_t)n + 1, &fast, err), PKI_EINVAL);
        ck_assert_ptr_null(fast);
        ck_assert_str_eq(err, "not an EC P-256 or RSA SubjectPublicKeyInfo");
        OPENSSL_free(der);
        der = NULL;
    }
    ck_assert_ptr_nonnull(p384);
    ck_assert_ptr_nonnull(ed);
    EVP_PKEY *others[2] = {p384, ed};
    for (int i = 0; i < 2; i++) {
        n = i2d_PUBKEY(others[i], &der);
        ck_assert_int_gt(n, 0);
        ck_assert_int_eq(pki_spki_to_pem(der, (size_t)n, &fast, err), PKI_EINVAL);
        ck_assert_str_eq(err, "not an EC P-256 or RSA SubjectPublicKeyInfo");
        OPENSSL_free(der);
        der = NULL;
    }
    ck_assert_int_eq(pki_spki_to_pem((const unsigned char *)"\x30\x03\x02\x01\x00", 5, &fast, err),
                     PKI_EINVAL);
    ck_assert_int_eq(pki_spki_to_pem(buf, 0, &fast, err), PKI_EINVAL);
    ck_assert_ptr_null(fast);
    EVP_PKEY_free(keys[0]), EVP_PKEY_free(keys[1]), EVP_PKEY_free(p384), EVP_PKEY_free(ed);
}
END_TEST

/* pki_csr_read_p256 takes what agents send (pki_make_csr: the fast path), with its spans where
 * OpenSSL finds them, and leaves any other shape to OpenSSL's parser. */
START_TEST(csr_reader_takes_agents_csrs_and_leaves_other_shapes)
{
    EVP_PKEY *key, *rsa;
    char err[PKI_ERRBUF], *pem, buf[8192];
    unsigned char *spki = NULL, point[65];
    size_t point_len = 0;
    int spki_len;
    pki_csr_p256 c;

    ck_assert_int_eq(pki_generate_key(false, 0, &key, err), PKI_OK);
    ck_assert_int_eq(pki_generate_key(true, 2048, &rsa, err), PKI_OK);
    ck_assert_int_eq(pki_make_csr(key, &pem, err), PKI_OK);
    ck_assert(pki_csr_read_p256(pem, strlen(pem), &c));
    spki_len = i2d_PUBKEY(key, &spki);
    ck_assert_uint_eq(c.spki_len, (size_t)spki_len);
    ck_assert_int_eq(memcmp(c.spki, spki, (size_t)spki_len), 0);
    ck_assert_int_eq(EVP_PKEY_get_octet_string_param(key, "encoded-pub-key", point, sizeof(point),
                                                     &point_len), 1);
    ck_assert_uint_eq(c.point_len, point_len);
    ck_assert_int_eq(memcmp(c.point, point, point_len), 0);
    ck_assert_uint_ge(c.sig_len, 8);
    ck_assert_ptr_eq(c.info, c.der + (c.der[1] == 0x81 ? 3 : 2));
    pki_csr_p256_clear(&c);
    ck_assert_ptr_null(c.der);
    /* the END line's newline is optional, as for OpenSSL */
    snprintf(buf, sizeof(buf), "%.*s", (int)strlen(pem) - 1, pem);
    ck_assert(pki_csr_read_p256(buf, strlen(buf), &c));
    pki_csr_p256_clear(&c);
    /* other shapes: text before, CRLF, a line broken short, junk after END on its line, empty */
    snprintf(buf, sizeof(buf), "x\n%s", pem);
    ck_assert(!pki_csr_read_p256(buf, strlen(buf), &c));
    {
        size_t j = 0;

        for (const char *q = pem; *q; q++) {
            if (*q == '\n')
                buf[j++] = '\r';
            buf[j++] = *q;
        }
        buf[j] = '\0';
    }
    ck_assert(!pki_csr_read_p256(buf, strlen(buf), &c));
    snprintf(buf, sizeof(buf), "%.*s\n%s", 36 + 10, pem, pem + 36 + 10);
    ck_assert(!pki_csr_read_p256(buf, strlen(buf), &c));
    snprintf(buf, sizeof(buf), "%.*sx\n", (int)strlen(pem) - 1, pem);
    ck_assert(!pki_csr_read_p256(buf, strlen(buf), &c));
    ck_assert(!pki_csr_read_p256("", 0, &c));
    ck_assert(!pki_csr_read_p256(pem, 36, &c));
    free(pem);
    /* an RSA key is not this shape */
    ck_assert_int_eq(pki_make_csr(rsa, &pem, err), PKI_OK);
    ck_assert(!pki_csr_read_p256(pem, strlen(pem), &c));
    free(pem);
    OPENSSL_free(spki);
    EVP_PKEY_free(key), EVP_PKEY_free(rsa);
}
END_TEST

/* The signer draws serials from the DRBG 64 leaves at a time (issue 13): every leaf still gets
 * its own, across refills, and a forked child never takes the serials its parent takes next. */
START_TEST(signer_serials_are_distinct_across_refills_and_fork)
{
    int64_t now = time(NULL);
    X509 *root;
    EVP_PKEY *root_key, *key;
    pki_leaf_signer *s = NULL;
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    pki_signed_leaf out;
    unsigned char *spki = NULL;
    int spki_len;
    char err[PKI_ERRBUF], child_serial[PKI_SERIAL_HEX_MAX] = "";
    static char seen[300][PKI_SERIAL_HEX_MAX];
    int fds[2], status;
    pid_t pid;

    make_root(false, 0, "default", now, 86400 * 30, &root, &root_key);
    ck_assert_int_eq(pki_generate_key(false, 0, &key, err), PKI_OK);
    spki_len = i2d_PUBKEY(key, &spki);
    ck_assert_int_eq(pki_leaf_signer_new(root, root_key, &s, err), PKI_OK);
    req.uris = web_uris;
    req.nuris = 3;
    for (int i = 0; i < 300; i++) {   /* 300 leaves: 4 refills of 64 */
        ck_assert_int_eq(pki_sign_public_key(s, spki, (size_t)spki_len, &req, now, &out, err), PKI_OK);
        ck_assert_uint_ge(strlen(out.serial_hex), 20);
        for (int j = 0; j < i; j++)
            ck_assert_str_ne(seen[j], out.serial_hex);
        snprintf(seen[i], sizeof(seen[i]), "%s", out.serial_hex);
        pki_signed_leaf_clear(&out);
    }
    /* the pool is part used: a child and its parent each sign their next leaf */
    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        ssize_t w = -1;

        if (pki_sign_public_key(s, spki, (size_t)spki_len, &req, now, &out, err) == PKI_OK)
            w = write(fds[1], out.serial_hex, strlen(out.serial_hex) + 1);
        _exit(w > 0 ? 0 : 1);
    }
    close(fds[1]);
    ck_assert_int_eq(pki_sign_public_key(s, spki, (size_t)spki_len, &req, now, &out, err), PKI_OK);
    ck_assert_int_gt(read(fds[0], child_serial, sizeof(child_serial) - 1), 0);
    close(fds[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_str_ne(child_serial, out.serial_hex);
    pki_signed_leaf_clear(&out);
    OPENSSL_free(spki);
    pki_leaf_signer_free(s);
    X509_free(root), EVP_PKEY_free(root_key), EVP_PKEY_free(key);
}
END_TEST

/* The signer writes each TBSCertificate itself (pki_tbs_write, issue 13): its bytes must be
 * the ones OpenSSL encodes for the same leaf built as an X509 by pki_sign_leaf, once the
 * serial (random) is the same: key algorithm and bits, SKI, SANs (critical without a CN),
 * subject, validity as UTCTime before 2050 and GeneralizedTime from 2050, DER lengths of 1 to 3
 * octets (URIs of 200 and 70,000 bytes), EC and RSA keys under EC and RSA CAs, through a CSR
 * and a stored SPKI. */
/* The TBSCertificate bytes as the certificate's DER holds them (the first element of the outer
 * SEQUENCE), copied into *ret (OPENSSL_free). */
static int tbs_as_signed(X509 *x, unsigned char **ret)
{
    unsigned char *der = NULL;
    const unsigned char *p, *tbs;
    long len;
    int tag, cls, n = i2d_X509(x, &der);

    ck_assert_int_gt(n, 0);
    p = der;
    ck_assert_int_eq(ASN1_get_object(&p, &len, &tag, &cls, n) & 0x80, 0);
    tbs = p;
    ck_assert_int_eq(ASN1_get_object(&p, &len, &tag, &cls, n - (p - der)) & 0x80, 0);
    ck_assert_int_eq(tag, V_ASN1_SEQUENCE);
    n = (int)((p - tbs) + len);
    *ret = OPENSSL_memdup(tbs, (size_t)n);
    OPENSSL_free(der);
    return n;
}

static void assert_tbs_is_openssls(X509 *root, EVP_PKEY *root_key, pki_leaf_signer *s,
                                   EVP_PKEY *key, bool rsa, const char *cn,
                                   const char *const *uris, size_t nuris, int64_t now,
                                   int64_t lifetime, bool via_csr)
{
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    pki_signed_leaf out;
    X509 *got, *want = NULL;
    unsigned char *spki = NULL, *a = NULL, *b = NULL;
    size_t spki_len = 0;
    char err[PKI_ERRBUF], *csr;
    int na, nb;

    req.uris = uris;
    req.nuris = nuris;
    req.cn = cn;
    req.rsa = rsa;
    req.lifetime_s = lifetime;
    csr = make_csr_pem(key, key, &spki, &spki_len);
    if (via_csr)
        ck_assert_msg(pki_sign_csr(s, csr, strlen(csr), &req, now, &out, NULL, NULL, err) == PKI_OK,
                      "%s", err);
    else
        ck_assert_msg(pki_sign_public_key(s, spki, spki_len, &req, now, &out, err) == PKI_OK, "%s",
                      err);
    got = parse_leaf(&out);
    ck_assert_int_eq(pki_sign_leaf(&req, key, root, root_key, now, &want, err), PKI_OK);
    ck_assert_int_eq(X509_set_serialNumber(want, X509_get_serialNumber(got)), 1);
    na = tbs_as_signed(got, &a);
    nb = i2d_re_X509_tbs(want, &b);       /* OpenSSL's encoding of the same leaf */
    ck_assert_int_gt(na, 0);
    ck_assert_msg(na == nb && memcmp(a, b, (size_t)na) == 0,
                  "TBS differs from OpenSSL's (%d vs %d bytes; cn %s, %zu URIs, lifetime %lld, %s)",
                  na, nb, cn ? cn : "none", nuris, (long long)lifetime, via_csr ? "csr" : "spki");
    /* and the signature over those bytes verifies with the CA key */
    ck_assert_int_eq(X509_verify(got, root_key), 1);
    OPENSSL_free(a), OPENSSL_free(b);
    X509_free(got), X509_free(want);
    pki_signed_leaf_clear(&out);
    free(csr), free(spki);
}

START_TEST(signer_tbs_is_byte_for_byte_what_openssl_encodes)
{
    int64_t now = time(NULL);
    static char long_uri[201], huge_uri[70001];
    const char *one[] = {"spiffe://default/web"};
    const char *longs[] = {long_uri, "spiffe://default/web"};
    const char *huge[] = {huge_uri};
    const char *many[PKI_MAX_SANS];
    char many_buf[PKI_MAX_SANS][48];

    memcpy(long_uri, "spiffe://default/", 17);
    memset(long_uri + 17, 'a', sizeof(long_uri) - 18);
    memcpy(huge_uri, "spiffe://default/", 17);
    memset(huge_uri + 17, 'b', sizeof(huge_uri) - 18);
    for (int i = 0; i < PKI_MAX_SANS; i++) {
        snprintf(many_buf[i], sizeof(many_buf[i]), "kuma://kuma.io/tag-%d/value-%d", i, i * 7);
        many[i] = many_buf[i];
    }
    for (int ca_rsa = 0; ca_rsa <= 1; ca_rsa++) {
        X509 *root;
        EVP_PKEY *root_key, *ec, *rsa;
        pki_leaf_signer *s = NULL;
        char err[PKI_ERRBUF];

        /* 40 years: a leaf of 30 years ends after 2049 (GeneralizedTime) */
        make_root(ca_rsa, 2048, "default", now, 40 * 365 * 86400LL, &root, &root_key);
        ck_assert_int_eq(pki_generate_key(false, 0, &ec, err), PKI_OK);
        ck_assert_int_eq(pki_generate_key(true, 2048, &rsa, err), PKI_OK);
        ck_assert_int_eq(pki_leaf_signer_new(root, root_key, &s, err), PKI_OK);
        for (int via_csr = 0; via_csr <= 1; via_csr++) {
            assert_tbs_is_openssls(root, root_key, s, ec, false, NULL, web_uris, 3, now, 86400, via_csr);
            assert_tbs_is_openssls(root, root_key, s, rsa, true, NULL, web_uris, 3, now, 86400, via_csr);
            assert_tbs_is_openssls(root, root_key, s, ec, false, "web-1.default", one, 1, now,
                                   3600, via_csr);
            assert_tbs_is_openssls(root, root_key, s, ec, false, NULL, one, 1, now,
                                   30 * 365 * 86400LL, via_csr);
            assert_tbs_is_openssls(root, root_key, s, ec, false, NULL, longs, 2, now, 86400, via_csr);
            assert_tbs_is_openssls(root, root_key, s, rsa, true, "h\xc3\xa9", many, PKI_MAX_SANS,
                                   now, 86400, via_csr);
            /* after a leaf with a CN, one without: nothing of the last leaf stays */
            assert_tbs_is_openssls(root, root_key, s, ec, false, NULL, huge, 1, now, 86400, via_csr);
        }
        pki_leaf_signer_free(s);
        X509_free(root), EVP_PKEY_free(root_key), EVP_PKEY_free(ec), EVP_PKEY_free(rsa);
    }
}
END_TEST

/* pki_cert_to_pem writes its PEM without a BIO (issue 13): the text must stay what
 * PEM_write_bio_X509 writes, for every DER length modulo the 48 bytes of a 64-column line. */
START_TEST(cert_pem_is_byte_for_byte_what_pem_write_bio_x509_writes)
{
    int64_t now = time(NULL);
    X509 *root;
    EVP_PKEY *root_key;
    bool seen[48] = {false};
    int distinct = 0;

    make_root(false, 0, "default", now, 86400 * 30, &root, &root_key);
    /* URI lengths 1..120 move the DER length over every remainder mod 48 (one PEM line); the
     * random serial and the signature's length shift it too, so the round goes on (bounded) until
     * the remainder 0 has been seen. */
    for (int i = 0; i < 120 || (!seen[0] && i < 2400); i++) {
        int len = 1 + i % 120;
        char uri[160];
        const char *uris[1] = {uri};
        pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
        X509 *leaf;
        EVP_PKEY *key;
        BIO *bio = BIO_new(BIO_s_mem());
        char *mine = NULL, *theirs;
        long n;
        int der_len;

        snprintf(uri, sizeof(uri), "spiffe://default/%.*s", len,
                 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"
                 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz");
        req.uris = uris;
        req.nuris = 1;
        ck_assert_int_eq(pki_issue_leaf(&req, root, root_key, now, &leaf, &key, NULL), PKI_OK);
        ck_assert_int_eq(pki_cert_to_pem(leaf, &mine, NULL), PKI_OK);
        ck_assert_int_eq(PEM_write_bio_X509(bio, leaf), 1);
        n = BIO_get_mem_data(bio, &theirs);
        ck_assert_uint_eq(strlen(mine), (size_t)n);
        ck_assert_int_eq(memcmp(mine, theirs, (size_t)n), 0);
        der_len = i2d_X509(leaf, NULL);
        if (!seen[der_len % 48]) {
            seen[der_len % 48] = true;
            distinct++;
        }
        free(mine);
        BIO_free(bio);
        X509_free(leaf);
        EVP_PKEY_free(key);
    }
    /* the remainder 0 (a last line of exactly 64 columns) among them */
    ck_assert_int_ge(distinct, 40);
    ck_assert(seen[0]);
    X509_free(root);
    EVP_PKEY_free(root_key);
}
END_TEST

static void add_signer_tests(Suite *s)
{
    TCase *tc = tcase_create("signer");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, resigned_ec_public_key_has_issue_leaf_profile_and_passes_x509_strict);
    tcase_add_test(tc, resigned_rsa_public_key_from_rsa_ca_passes_x509_strict);
    tcase_add_test(tc, resigned_ec_public_key_from_rsa_4096_ca_passes_x509_strict);
    tcase_add_test(tc, signed_ec_csr_has_issue_leaf_profile_and_passes_x509_strict);
    tcase_add_test(tc, signed_rsa_csr_from_ec_ca_passes_x509_strict);
    tcase_add_test(tc, csr_signed_by_another_key_is_refused_einval);
    tcase_add_test(tc, signer_verifies_each_csr_with_its_own_key_not_the_last_one);
    tcase_add_test(tc, public_key_of_the_wrong_type_is_refused_einval);
    tcase_add_test(tc, signer_refuses_expired_ca_and_clamps_to_ca_not_after);
    tcase_add_test(tc, cert_pem_is_byte_for_byte_what_pem_write_bio_x509_writes);
    tcase_add_test(tc, signer_tbs_is_byte_for_byte_what_openssl_encodes);
    tcase_add_test(tc, csr_verdicts_are_openssls_over_a_corpus);
    tcase_add_test(tc, csr_reader_takes_agents_csrs_and_leaves_other_shapes);
    tcase_add_test(tc, spki_to_pem_writes_what_the_encoder_wrote_and_refuses_other_keys);
    tcase_add_test(tc, signer_serials_are_distinct_across_refills_and_fork);
    suite_add_tcase(s, tc);
}

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
    tcase_add_test(tc, leaf_with_empty_subject_has_critical_san_and_passes_x509_strict);
    tcase_add_test(tc, roots_finds_the_cross_signed_ca_by_subject_and_key_not_position);
    tcase_add_test(tc, stale_openssl_error_does_not_reach_the_next_message);
    tcase_add_test(tc, pem_round_trip_and_chain_parse);
    tcase_add_test(tc, renewal_point_is_stable_and_within_70_to_85_percent);
    tcase_add_test(tc, time_and_serial_descriptions);
    tcase_add_test(tc, ca_create_twice_refuses_and_leaves_files_identical);
    tcase_add_test(tc, ca_create_with_only_key_present_writes_nothing);
    tcase_add_test(tc, ca_create_rsa_with_bits_and_days);
    suite_add_tcase(s, tc);
    add_backend_tests(s);
    add_signer_tests(s);
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
