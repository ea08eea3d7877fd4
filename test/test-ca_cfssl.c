/* test-ca_cfssl.c - Check suite for the cfssl CA backend against a real cfssl serve: the intermediate minted, stored, reused, renewed, and the checks. */
#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/x509v3.h>

#include "check-util.h"
#include "manifests/error.h"
#include "manifests/manifest.h"
#include "manifests/node.h"
#include "reconciler/ca_backend.h"
#include "reconciler/pki.h"

#define SCRIPTS MESHCA_SOURCE_ROOT "/test/extca"
#define DAY 86400

static char cfssl_dir[256];
static int cfssl_port;

/* ---- helpers ---------------------------------------------------------------------------- */

/* Per test: a fresh cfssl serve (its own root), so a test may stop it. */
static void cfssl_up(void)
{
    char path[300], *s;

    snprintf(cfssl_dir, sizeof(cfssl_dir), "/tmp/test-ca_cfssl-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(cfssl_dir));
    ck_assert_int_eq(test_run("timeout 60 bash %s/start-cfssl.sh %s", SCRIPTS, cfssl_dir), 0);
    snprintf(path, sizeof(path), "%s/port", cfssl_dir);
    s = test_slurp(path);
    cfssl_port = (int)strtol(s, NULL, 10);
    free(s);
    ck_assert_int_gt(cfssl_port, 0);
    /* A failing test exits its (forked) process without the teardown: a watchdog stops this
     * cfssl once the test process is gone, so none outlives the suite. */
    ck_assert_int_eq(test_run("(while kill -0 %ld 2>/dev/null; do sleep 1; done; kill $(cat %s/pid) "
                         "2>/dev/null; rm -rf '%s') >/dev/null 2>&1 </dev/null &",
                         (long)getpid(), cfssl_dir, cfssl_dir), 0);
}

/* Stops cfssl and waits (bounded) until it no longer answers. */
static void cfssl_stop(void)
{
    ck_assert_int_eq(test_run("kill $(cat %s/pid) 2>/dev/null; for i in $(seq 50); do "
                         "curl -s -m 1 -o /dev/null http://127.0.0.1:%d/ || exit 0; sleep 0.1; "
                         "done; exit 1", cfssl_dir, cfssl_port), 0);
}

static void cfssl_down(void)
{
    test_run("kill $(cat %s/pid) 2>/dev/null; rm -rf '%s'", cfssl_dir, cfssl_dir);
}

/* The mesh secrets, in memory, with the store's contract: the last of a set is create-only. */
#define MEM_MAX 16
typedef struct mem_secrets {
    char *names[MEM_MAX], *data[MEM_MAX];
    size_t lens[MEM_MAX], n;
    int stores;          /* sets stored */
    int conflicts;       /* sets refused as ECONFLICT */
    int hide_lookups;    /* the next lookups answer "absent": a reader that raced a writer */
} mem_secrets;

static int mem_find(const mem_secrets *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->names[i], name) == 0)
            return (int)i;
    return -1;
}

static int mem_lookup(void *userdata, const char *name, char **ret, size_t *ret_len)
{
    mem_secrets *m = userdata;
    int i = mem_find(m, name);

    if (m->hide_lookups > 0) {
        m->hide_lookups--;
        return PKI_ENOENT;
    }
    if (i < 0)
        return PKI_ENOENT;
    *ret = malloc(m->lens[i] + 1);
    ck_assert_ptr_nonnull(*ret);
    memcpy(*ret, m->data[i], m->lens[i] + 1);
    *ret_len = m->lens[i];
    return 0;
}

static int mem_store(void *userdata, const ca_secret *set, size_t n)
{
    mem_secrets *m = userdata;

    if (mem_find(m, set[n - 1].name) >= 0) {
        m->conflicts++;
        return MESHCA_ECONFLICT;
    }
    for (size_t k = 0; k < n; k++) {
        int i = mem_find(m, set[k].name);
        if (i < 0) {
            ck_assert_uint_lt(m->n, MEM_MAX);
            i = (int)m->n++;
            m->names[i] = strdup(set[k].name);
        } else {
            free(m->data[i]);
        }
        m->data[i] = malloc(set[k].len + 1);
        memcpy(m->data[i], set[k].data, set[k].len);
        m->data[i][set[k].len] = '\0';
        m->lens[i] = set[k].len;
    }
    m->stores++;
    return 0;
}

static void mem_free(mem_secrets *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->names[i]);
        OPENSSL_cleanse(m->data[i], m->lens[i]);
        free(m->data[i]);
    }
    memset(m, 0, sizeof(*m));
}

static const char *mem_get(const mem_secrets *m, const char *name)
{
    int i = mem_find(m, name);

    return i < 0 ? NULL : m->data[i];
}

/* A backend "ca-cfssl" of mesh "default" with conf from YAML text. */
typedef struct fixture {
    mnode *conf;
    mesh_backend b;
    ca_context ctx;
    mem_secrets secrets;
} fixture;

static void fixture_init(fixture *f, const char *fmt, ...)
{
    char text[4096];
    mnode **docs = NULL;
    size_t ndocs = 0;
    diag_list diags = DIAG_LIST_INIT;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    memset(f, 0, sizeof(*f));
    ck_assert_int_eq(manifest_parse_documents("mesh.yaml", text, strlen(text), &docs, &ndocs,
                                              &diags), 0);
    ck_assert_uint_eq(ndocs, 1);
    f->conf = docs[0];
    free(docs);
    diag_list_free(&diags);
    f->b.name.value = (char *)"ca-cfssl";
    f->b.type.value = (char *)"cfssl";
    f->b.conf = f->conf;
    f->ctx.mesh = "default";
    f->ctx.backend = &f->b;
    f->ctx.secret_lookup = mem_lookup;
    f->ctx.secret_store = mem_store;
    f->ctx.secret_userdata = &f->secrets;
    f->ctx.now = time(NULL);
}

static void fixture_free(fixture *f)
{
    mnode_free(f->conf);
    mem_free(&f->secrets);
}

static ca_backend *open_ok(fixture *f)
{
    ca_backend *ca = NULL;
    char err[PKI_ERRBUF] = "";

    ck_assert_msg(ca_backend_open(&f->ctx, &ca, err) == 0, "%s", err);
    ck_assert_ptr_nonnull(ca);
    return ca;
}

static char *pem_of(X509 *x)
{
    char *pem = NULL, err[PKI_ERRBUF];

    ck_assert_int_eq(pki_cert_to_pem(x, &pem, err), 0);
    return pem;
}

/* A leaf for a fresh dataplane key, signed through the backend, verified by the openssl CLI
 * strictly: cfssl's root as the only trust anchor, the intermediate as untrusted. */
static void assert_leaf_verifies(ca_backend *ca, int64_t now)
{
    const char *uris[] = {"spiffe://default/web", "kuma://kuma.io/service/web"};
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    EVP_PKEY *dp = NULL;
    X509 *leaf = NULL;
    char err[PKI_ERRBUF], path[300], *pem;

    req.uris = uris;
    req.nuris = 2;
    req.lifetime_s = 3600;
    ck_assert_int_eq(pki_generate_key(false, 0, &dp, err), 0);
    ck_assert_msg(ca_backend_sign_leaf(ca, &req, dp, now, &leaf, err) == 0, "%s", err);
    pem = pem_of(leaf);
    snprintf(path, sizeof(path), "%s/leaf.pem", cfssl_dir);
    test_spit(path, pem);
    free(pem);
    pem = pem_of(ca_backend_cert(ca));
    snprintf(path, sizeof(path), "%s/inter.pem", cfssl_dir);
    test_spit(path, pem);
    free(pem);
    ck_assert_int_eq(test_run("openssl verify -attime %lld -x509_strict -CAfile %s/root.pem "
                         "-untrusted %s/inter.pem %s/leaf.pem >/dev/null", (long long)now,
                         cfssl_dir, cfssl_dir, cfssl_dir), 0);
    /* the leaf is signed by the intermediate, not by the root itself */
    ck_assert_int_ne(test_run("openssl verify -attime %lld -x509_strict -CAfile %s/root.pem "
                         "%s/leaf.pem >/dev/null 2>&1", (long long)now, cfssl_dir, cfssl_dir), 0);
    X509_free(leaf);
    EVP_PKEY_free(dp);
}

static bool has_diag(const diag_list *d, diag_severity sev, const char *code, const char *path)
{
    for (size_t i = 0; i < d->count; i++)
        if (d->items[i].severity == sev && strcmp(d->items[i].code, code) == 0 &&
            strcmp(d->items[i].path, path) == 0)
            return true;
    return false;
}

static const char *diag_message(const diag_list *d, const char *code)
{
    for (size_t i = 0; i < d->count; i++)
        if (strcmp(d->items[i].code, code) == 0)
            return d->items[i].message;
    return "";
}

/* ---- tests ------------------------------------------------------------------------------ */

START_TEST(intermediate_is_minted_stored_and_chains_to_cfssls_root)
{
    fixture f;
    fixture_init(&f, "url: http://127.0.0.1:%d\nprofile: intermediate\n", cfssl_port);
    ca_backend *ca = open_ok(&f);
    char path[300], *root_file, *bundle = NULL, err[PKI_ERRBUF];

    /* three secrets, in one set */
    ck_assert_int_eq(f.secrets.stores, 1);
    ck_assert_uint_eq(f.secrets.n, 3);
    const char *cert = mem_get(&f.secrets, "default.ca-cfssl-cert-ca-cfssl");
    const char *key = mem_get(&f.secrets, "default.ca-cfssl-key-ca-cfssl");
    const char *root = mem_get(&f.secrets, "default.ca-cfssl-root-ca-cfssl");
    ck_assert_ptr_nonnull(cert);
    ck_assert_ptr_nonnull(key);
    ck_assert_ptr_nonnull(root);
    ck_assert_ptr_nonnull(strstr(key, "PRIVATE KEY"));
    snprintf(path, sizeof(path), "%s/root.pem", cfssl_dir);
    root_file = test_slurp(path);
    ck_assert_str_eq(root, root_file);
    /* the chain: [intermediate, root]; the intermediate is CA:TRUE pathlen 0 */
    STACK_OF(X509) *chain = ca_backend_chain(ca);
    ck_assert_int_eq(sk_X509_num(chain), 2);
    X509 *inter = sk_X509_value(chain, 0);
    ck_assert_int_eq(X509_check_ca(inter), 1);
    ck_assert_int_eq(X509_get_pathlen(inter), 0);
    char *inter_pem = pem_of(inter);
    ck_assert_str_eq(inter_pem, cert);
    free(inter_pem);
    /* the bundle takes cfssl's root alone, so a renewed intermediate leaves it as it is */
    ck_assert_int_eq(ca_backend_bundle_pem(ca, &bundle, err), 0);
    ck_assert_str_eq(bundle, root_file);
    ck_assert_ptr_null(ca_backend_warning(ca));
    /* the intermediate's key is local, but it cannot cross-sign (pathlen 0) */
    ck_assert(!ca_backend_can_cross_sign(ca));
    assert_leaf_verifies(ca, f.ctx.now);
    free(bundle);
    free(root_file);
    ca_backend_free(ca);
    fixture_free(&f);
}
END_TEST

START_TEST(stored_intermediate_is_reused_without_a_request_to_cfssl)
{
    fixture f;
    fixture_init(&f, "url: http://127.0.0.1:%d\nprofile: intermediate\n", cfssl_port);
    ca_backend *first = open_ok(&f);
    /* cfssl gone: a second open that sent any request would fail or warn */
    cfssl_stop();
    f.ctx.now += DAY;
    ca_backend *second = open_ok(&f);
    ck_assert_int_eq(X509_cmp(ca_backend_cert(first), ca_backend_cert(second)), 0);
    ck_assert_ptr_null(ca_backend_warning(second));
    ck_assert_int_eq(f.secrets.stores, 1);
    assert_leaf_verifies(second, f.ctx.now);
    ca_backend_free(first);
    ca_backend_free(second);
    fixture_free(&f);
}
END_TEST

START_TEST(intermediate_is_renewed_past_two_thirds_of_its_life)
{
    fixture f;
    fixture_init(&f, "url: http://127.0.0.1:%d\nprofile: intermediate\n", cfssl_port);
    ca_backend *first = open_ok(&f);
    ca_info info;
    char serial[80], marker[200];

    ck_assert_int_eq(ca_backend_info(first, &info), 0);
    ck_assert_int_eq(info.not_after - info.not_before, 7 * DAY);   /* the profile's 168h */
    int64_t renew_at = info.not_before + (info.not_after - info.not_before) * 2 / 3;
    /* just before the renewal point: the same one */
    f.ctx.now = renew_at - 60;
    ca_backend *same = open_ok(&f);
    ck_assert_int_eq(X509_cmp(ca_backend_cert(first), ca_backend_cert(same)), 0);
    ck_assert_int_eq(f.secrets.stores, 1);
    /* past it: a fresh intermediate (another key), stored in place of the old one */
    f.ctx.now = renew_at + 60;
    ca_backend *renewed = open_ok(&f);
    ck_assert_int_ne(X509_cmp(ca_backend_cert(first), ca_backend_cert(renewed)), 0);
    ck_assert(!EVP_PKEY_eq(X509_get0_pubkey(ca_backend_cert(first)),
                           X509_get0_pubkey(ca_backend_cert(renewed))));
    ck_assert_int_eq(f.secrets.stores, 2);
    char *pem = pem_of(ca_backend_cert(renewed));
    ck_assert_str_eq(mem_get(&f.secrets, "default.ca-cfssl-cert-ca-cfssl"), pem);
    free(pem);
    /* the renewal is claimed by a marker named after the serial it replaced */
    ck_assert_int_eq(pki_serial_hex(ca_backend_cert(first), serial, sizeof(serial)), 0);
    snprintf(marker, sizeof(marker), "default.ca-cfssl-renewed-ca-cfssl-%s", serial);
    ck_assert_ptr_nonnull(mem_get(&f.secrets, marker));
    /* the root, and so the bundle, did not change */
    ck_assert_int_eq(X509_cmp(sk_X509_value(ca_backend_chain(first), 1),
                              sk_X509_value(ca_backend_chain(renewed), 1)), 0);
    assert_leaf_verifies(renewed, f.ctx.now);
    ca_backend_free(first);
    ca_backend_free(same);
    ca_backend_free(renewed);
    fixture_free(&f);
}
END_TEST

START_TEST(cfssl_down_past_renewal_signs_on_with_a_warning_then_fails_once_expired)
{
    fixture f;
    fixture_init(&f, "url: http://127.0.0.1:%d\nprofile: intermediate\n", cfssl_port);
    ca_backend *first = open_ok(&f), *ca = NULL;
    ca_info info;
    char err[PKI_ERRBUF] = "";

    ck_assert_int_eq(ca_backend_info(first, &info), 0);
    cfssl_stop();
    f.ctx.now = info.not_after - DAY;   /* past two thirds, still valid */
    ca = open_ok(&f);
    ck_assert_int_eq(X509_cmp(ca_backend_cert(first), ca_backend_cert(ca)), 0);
    const char *w = ca_backend_warning(ca);
    ck_assert_ptr_nonnull(w);
    ck_assert_msg(strstr(w, "cannot renew the intermediate (signing goes on with the stored "
                            "one, valid until ") && strstr(w, "cfssl backend 'ca-cfssl'") &&
                      strstr(w, "unreachable"), "%s", w);
    assert_leaf_verifies(ca, f.ctx.now);
    ck_assert_int_eq(f.secrets.stores, 1);
    ca_backend_free(ca);
    ca = NULL;
    /* expired and cfssl still down: this backend cannot be used, with both reasons */
    f.ctx.now = info.not_after + 60;
    ck_assert_int_eq(ca_backend_open(&f.ctx, &ca, err), MESHCA_ESTATE);
    ck_assert_ptr_null(ca);
    ck_assert_msg(strstr(err, "the intermediate expired at ") && strstr(err, "cannot be renewed")
                      && strstr(err, "cfssl backend 'ca-cfssl'") && strstr(err, "unreachable"),
                  "%s", err);
    ca_backend_free(first);
    fixture_free(&f);
}
END_TEST

START_TEST(read_only_open_mints_nothing)
{
    fixture f;
    ca_backend *ca = NULL;
    char err[PKI_ERRBUF] = "";

    fixture_init(&f, "url: http://127.0.0.1:%d\nprofile: intermediate\n", cfssl_port);
    f.ctx.secret_store = NULL;
    ck_assert_int_eq(ca_backend_open(&f.ctx, &ca, err), PKI_ENOENT);
    ck_assert_msg(strstr(err, "cfssl backend 'ca-cfssl' has no intermediate yet"), "%s", err);
    ck_assert_uint_eq(f.secrets.n, 0);
    fixture_free(&f);
}
END_TEST

START_TEST(second_minter_loses_and_uses_the_stored_intermediate)
{
    fixture f;
    fixture_init(&f, "url: http://127.0.0.1:%d\nprofile: intermediate\n", cfssl_port);
    ca_backend *winner = open_ok(&f);
    /* a second controller read before the first one stored: it mints, loses, re-reads */
    f.secrets.hide_lookups = 3;
    ca_backend *loser = open_ok(&f);
    ck_assert_int_eq(f.secrets.conflicts, 1);
    ck_assert_int_eq(f.secrets.stores, 1);
    ck_assert_int_eq(X509_cmp(ca_backend_cert(winner), ca_backend_cert(loser)), 0);
    ca_backend_free(winner);
    ca_backend_free(loser);
    fixture_free(&f);
}
END_TEST

START_TEST(check_accepts_a_working_backend_and_warns_when_the_profile_expiry_differs)
{
    fixture f;
    diag_list d = DIAG_LIST_INIT;

    fixture_init(&f, "url: http://127.0.0.1:%d\nprofile: intermediate\n", cfssl_port);
    ck_assert_int_eq(ca_backend_check(&f.ctx, &d), 0);
    ck_assert_uint_eq(d.count, 0);
    ck_assert_uint_eq(f.secrets.n, 0);   /* the throwaway intermediate is not kept */
    fixture_free(&f);
    fixture_init(&f, "url: http://127.0.0.1:%d\nprofile: intermediate\n"
                     "intermediateExpiration: 30d\n", cfssl_port);
    ck_assert_int_eq(ca_backend_check(&f.ctx, &d), 0);
    ck_assert_uint_eq(diag_count(&d, DIAG_ERROR), 0);
    ck_assert(has_diag(&d, DIAG_WARNING, "cfssl-expiry-differs",
                       "mtls.backends[0].conf.intermediateExpiration"));
    ck_assert_msg(strstr(diag_message(&d, "cfssl-expiry-differs"), "signs intermediates for "
                         "168h, not the 720h of intermediateExpiration"), "%s",
                  diag_message(&d, "cfssl-expiry-differs"));
    diag_list_free(&d);
    fixture_free(&f);
    fixture_init(&f, "url: http://127.0.0.1:%d\nintermediateExpiration: 7\n", cfssl_port);
    ck_assert_int_eq(ca_backend_check(&f.ctx, &d), 0);
    ck_assert(has_diag(&d, DIAG_ERROR, "ca-conf", "mtls.backends[0].conf.intermediateExpiration"));
    diag_list_free(&d);
    fixture_free(&f);
}
END_TEST

START_TEST(check_refuses_a_wrong_auth_key_naming_the_backend_never_the_key)
{
    fixture f;
    diag_list d = DIAG_LIST_INIT;
    const char *bad = "00112233445566778899aabbccddeeff";

    fixture_init(&f, "url: http://127.0.0.1:%d\nprofile: intermediate-auth\n"
                     "authKey: {inlineString: \"%s\"}\n", cfssl_port, bad);
    ck_assert_int_eq(ca_backend_check(&f.ctx, &d), 0);
    ck_assert(has_diag(&d, DIAG_ERROR, "ca-refused", "mtls.backends[0].conf"));
    const char *m = diag_message(&d, "ca-refused");
    ck_assert_msg(strstr(m, "cfssl backend 'ca-cfssl'") && strstr(m, "cfssl: invalid token"),
                  "%s", m);
    ck_assert_msg(!strstr(m, bad), "the key leaked: %s", m);
    diag_list_free(&d);
    fixture_free(&f);
}
END_TEST

START_TEST(check_refuses_an_unknown_profile_with_cfssls_message)
{
    fixture f;
    diag_list d = DIAG_LIST_INIT;

    fixture_init(&f, "url: http://127.0.0.1:%d\nprofile: no-such-profile\n", cfssl_port);
    ck_assert_int_eq(ca_backend_check(&f.ctx, &d), 0);
    ck_assert(has_diag(&d, DIAG_ERROR, "ca-refused", "mtls.backends[0].conf"));
    const char *m = diag_message(&d, "ca-refused");
    ck_assert_msg(strstr(m, "cfssl backend 'ca-cfssl'") && strstr(m, "cfssl: "), "%s", m);
    diag_list_free(&d);
    fixture_free(&f);
}
END_TEST

START_TEST(check_reports_cfssl_down_as_unavailable)
{
    fixture f;
    diag_list d = DIAG_LIST_INIT;
    int port = test_closed_port();

    fixture_init(&f, "url: http://127.0.0.1:%d\nprofile: intermediate\n", port);
    ck_assert_int_eq(ca_backend_check(&f.ctx, &d), MESHCA_EUNAVAILABLE);
    ck_assert(has_diag(&d, DIAG_ERROR, "ca-unreachable", "mtls.backends[0].conf"));
    const char *m = diag_message(&d, "ca-unreachable");
    ck_assert_msg(strstr(m, "cfssl backend 'ca-cfssl'") && strstr(m, "unreachable"), "%s", m);
    diag_list_free(&d);
    fixture_free(&f);
}
END_TEST

static Suite *ca_cfssl_suite(void)
{
    Suite *s = suite_create("ca_cfssl");
    TCase *t = tcase_create("cfssl");

    tcase_add_checked_fixture(t, cfssl_up, cfssl_down);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, intermediate_is_minted_stored_and_chains_to_cfssls_root);
    tcase_add_test(t, stored_intermediate_is_reused_without_a_request_to_cfssl);
    tcase_add_test(t, intermediate_is_renewed_past_two_thirds_of_its_life);
    tcase_add_test(t, cfssl_down_past_renewal_signs_on_with_a_warning_then_fails_once_expired);
    tcase_add_test(t, read_only_open_mints_nothing);
    tcase_add_test(t, second_minter_loses_and_uses_the_stored_intermediate);
    tcase_add_test(t, check_accepts_a_working_backend_and_warns_when_the_profile_expiry_differs);
    tcase_add_test(t, check_refuses_a_wrong_auth_key_naming_the_backend_never_the_key);
    tcase_add_test(t, check_refuses_an_unknown_profile_with_cfssls_message);
    tcase_add_test(t, check_reports_cfssl_down_as_unavailable);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ca_cfssl_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
