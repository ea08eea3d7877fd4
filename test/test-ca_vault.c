/* test-ca_vault.c - Check suite for the vault CA backend (reconciler/ca/ca_vault.c) and the CA cache (ca_cache.c), against the Vault PKI TEST DOUBLE. */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <openssl/x509v3.h>

#include "check-store.h"
#include "check-util.h"
#include "manifests/manifest.h"
#include "manifests/node.h"
#include "reconciler/ca/ca_cache.h"
#include "reconciler/ca/extca_pki.h"
#include "reconciler/ca_backend.h"
#include "reconciler/pki.h"
#include "reconciler/reconcile.h"
#include "reconciler/state.h"

#define SCRIPTS MESHCA_SOURCE_ROOT "/test/extca"

static char vault_dir[256];
static int vault_port;

/* Requests the double logged for `what` (e.g. "GET /v1/pki/ca_chain"). */
static int count_requests(const char *what)
{
    char path[300], *log, *p;
    int n = 0;

    snprintf(path, sizeof(path), "%s/requests.log", vault_dir);
    log = test_slurp(path);
    for (p = log; (p = strstr(p, what)) != NULL; p += strlen(what))
        n++;
    free(log);
    return n;
}

static void vault_up(void)
{
    char path[300], *port;

    snprintf(vault_dir, sizeof(vault_dir), "/tmp/test-ca_vault-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(vault_dir));
    ck_assert_int_eq(test_run("VAULT_DOUBLE_SLOW=4 timeout 30 bash %s/start-vault-double.sh %s",
                         SCRIPTS, vault_dir), 0);
    snprintf(path, sizeof(path), "%s/port", vault_dir);
    port = test_slurp(path);
    vault_port = (int)strtol(port, NULL, 10);
    free(port);
    ck_assert_int_gt(vault_port, 0);
}

static void vault_down(void)
{
    test_run("kill $(cat %s/pid) 2>/dev/null; rm -rf '%s'", vault_dir, vault_dir);
}

/* One backend: its manifest and the context a pass gives it (secrets from a small table). */
typedef struct fixture {
    mesh_backend b;
    ca_context ctx;
    mnode *conf;
    char token_secret[200];   /* the Secret "vault-token"; "" absent */
    int lookups;
} fixture;

static int lookup(void *userdata, const char *name, char **ret_data, size_t *ret_len)
{
    fixture *f = userdata;

    f->lookups++;
    if (strcmp(name, "vault-token") != 0 || !f->token_secret[0])
        return PKI_ENOENT;
    *ret_data = strdup(f->token_secret);
    *ret_len = strlen(f->token_secret);
    return *ret_data ? 0 : PKI_ENOMEM;
}

/* A vault backend on the double: mount pki, role `role`, token from the Secret unless `auth`. */
static void setup(fixture *f, const char *name, int port, const char *pki, const char *role,
                  const char *auth)
{
    char text[4096], tok_path[300], *tok;
    mnode **docs = NULL;
    size_t ndocs = 0;
    diag_list diags = DIAG_LIST_INIT;

    memset(f, 0, sizeof(*f));
    snprintf(tok_path, sizeof(tok_path), "%s/token", vault_dir);
    tok = test_slurp(tok_path);
    tok[strcspn(tok, "\n")] = '\0';
    snprintf(f->token_secret, sizeof(f->token_secret), "%s", tok);
    free(tok);
    snprintf(text, sizeof(text),
             "fromCp:\n"
             "  address: https://127.0.0.1:%d\n"
             "  namespace: mesh-team\n"
             "  pki: %s\n"
             "  role: %s\n"
             "  tls: {caCert: {file: %s/tls-ca.pem}, serverName: vault.test}\n"
             "  auth: %s\n",
             port, pki, role, vault_dir, auth ? auth : "{token: {secret: vault-token}}");
    ck_assert_int_eq(manifest_parse_documents("mesh.yaml", text, strlen(text), &docs, &ndocs,
                                              &diags), 0);
    ck_assert_uint_eq(ndocs, 1);
    f->conf = docs[0];
    free(docs);
    diag_list_free(&diags);
    f->b.name.value = (char *)name;
    f->b.type.value = (char *)"vault";
    f->b.conf = f->conf;
    f->b.dp_cert.request_timeout.set = true;
    f->b.dp_cert.request_timeout.ms = 2000;
    f->ctx.mesh = "default";
    f->ctx.backend = &f->b;
    f->ctx.backend_index = 1;
    f->ctx.secret_lookup = lookup;
    f->ctx.secret_userdata = f;
    f->ctx.now = time(NULL);
}

static void teardown_fixture(fixture *f)
{
    mnode_free(f->conf);
}

static const model_tag web_tags[] = {{(char *)"kuma.io/service", (char *)"web", {0}},
                                     {(char *)"version", (char *)"v1", {0}}};
static const char *const web_uris[] = {"spiffe://default/web", "kuma://kuma.io/service/web",
                                       "kuma://version/v1", "urn:meshca:dataplane:default:web-01"};

/* A dataplane's key and its CSR (empty subject, as the agent makes it). */
static char *dataplane_csr(EVP_PKEY **ret_key)
{
    char err[PKI_ERRBUF], *csr = NULL;

    ck_assert_int_eq(pki_generate_key(false, 0, ret_key, err), 0);
    ck_assert_msg(pki_make_csr(*ret_key, &csr, err) == 0, "%s", err);
    return csr;
}

static void web_request(pki_leaf_request *req, const char *csr)
{
    *req = (pki_leaf_request)PKI_LEAF_REQUEST_INIT;
    req->uris = web_uris;
    req->nuris = 4;
    req->lifetime_s = 7200;
    req->csr_pem = csr;
    req->tags = web_tags;
    req->ntags = 2;
}

START_TEST(vault_is_a_signing_remote_csr_backend_that_cannot_cross_sign)
{
    fixture f;
    ca_backend *ca = NULL;
    char err[PKI_ERRBUF] = "";
    X509 *cross = NULL;

    ck_assert_int_eq(ca_backend_support("vault"), CA_TYPE_SIGNS);
    ck_assert(ca_backend_type_is_remote("vault"));
    ck_assert(!ca_backend_type_is_remote("builtin"));
    setup(&f, "vault-1", vault_port, "pki", "mesh", NULL);
    ck_assert_msg(ca_backend_open(&f.ctx, &ca, err) == 0, "%s", err);
    ck_assert(ca_backend_signs_csr(ca));
    ck_assert(!ca_backend_can_cross_sign(ca));
    ck_assert_int_eq(ca_backend_cross_sign(ca, ca_backend_cert(ca), f.ctx.now, f.ctx.now + 60,
                                           &cross, err), PKI_EINVAL);
    ck_assert_ptr_null(cross);
    ca_backend_free(ca);
    teardown_fixture(&f);
}
END_TEST

START_TEST(ensure_ca_reads_the_doubles_chain_for_bundles_and_inspect)
{
    fixture f;
    ca_backend *ca = NULL;
    char err[PKI_ERRBUF] = "", *pem = NULL, path[300], *want;
    ca_info info;

    setup(&f, "vault-1", vault_port, "pki", "mesh", NULL);
    ck_assert_msg(ca_backend_open(&f.ctx, &ca, err) == 0, "%s", err);
    ck_assert_int_eq(ca_backend_chain_pem(ca, &pem, err), 0);
    snprintf(path, sizeof(path), "%s/vault-ca.pem", vault_dir);
    want = test_slurp(path);
    ck_assert_str_eq(pem, want);
    ck_assert_int_eq(ca_backend_info(ca, &info), 0);
    ck_assert_str_eq(info.key_type, "ec");
    ck_assert_int_gt(info.not_after, f.ctx.now);
    free(want);
    free(pem);
    ca_backend_free(ca);
    teardown_fixture(&f);
}
END_TEST

START_TEST(sign_leaf_signs_the_csr_with_exactly_the_sans_asked_and_verifies_x509_strict)
{
    fixture f;
    ca_backend *ca = NULL;
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    char err[PKI_ERRBUF] = "", *csr = dataplane_csr(&key), *pem = NULL, path[300];
    pki_leaf_request req;
    int64_t nb, na;

    setup(&f, "vault-1", vault_port, "pki", "mesh", NULL);
    ck_assert_msg(ca_backend_open(&f.ctx, &ca, err) == 0, "%s", err);
    web_request(&req, csr);
    ck_assert_msg(ca_backend_sign_leaf(ca, &req, key, f.ctx.now, &leaf, err) == 0, "%s", err);
    ck_assert_int_eq(EVP_PKEY_eq(X509_get0_pubkey(leaf), key), 1);
    ck_assert_int_eq(pki_cert_to_pem(leaf, &pem, err), 0);
    snprintf(path, sizeof(path), "%s/ca-vault-leaf.pem", vault_dir);
    test_spit(path, pem);
    ck_assert_int_eq(test_run("openssl verify -x509_strict -CAfile %s/vault-ca.pem %s >/dev/null",
                         vault_dir, path), 0);
    /* Exactly S5's URI SANs, in the order asked, and nothing else. */
    ck_assert_int_eq(test_run("test \"$(openssl x509 -in %s -noout -ext subjectAltName | tail -n +2 | "
                         "tr -d ' ')\" = 'URI:spiffe://default/web,URI:kuma://kuma.io/service/web,"
                         "URI:kuma://version/v1,URI:urn:meshca:dataplane:default:web-01'", path), 0);
    ck_assert_int_eq(test_run("openssl x509 -in %s -noout -subject | grep -q 'CN *= *web$'", path), 0);
    ck_assert_int_eq(pki_cert_not_before(leaf, &nb), 0);
    ck_assert_int_eq(pki_cert_not_after(leaf, &na), 0);
    ck_assert_int_ge(na - nb, 7200);
    ck_assert_int_le(na - nb, 7200 + 120);
    X509_free(leaf);
    free(pem);
    free(csr);
    EVP_PKEY_free(key);
    ca_backend_free(ca);
    teardown_fixture(&f);
}
END_TEST

START_TEST(sign_leaf_refuses_a_leaf_for_another_key_than_the_one_held)
{
    fixture f;
    ca_backend *ca = NULL;
    EVP_PKEY *key = NULL, *other = NULL;
    X509 *leaf = NULL;
    char err[PKI_ERRBUF] = "", *csr = dataplane_csr(&key);
    pki_leaf_request req;

    ck_assert_int_eq(pki_generate_key(false, 0, &other, err), 0);
    setup(&f, "vault-1", vault_port, "pki", "mesh", NULL);
    ck_assert_msg(ca_backend_open(&f.ctx, &ca, err) == 0, "%s", err);
    web_request(&req, csr);
    /* The CSR is for `key`, the identity holds `other`: Vault's leaf must not be stored. */
    ck_assert_int_eq(ca_backend_sign_leaf(ca, &req, other, f.ctx.now, &leaf, err), MESHCA_EIO);
    ck_assert_ptr_null(leaf);
    ck_assert_msg(strstr(err, "not for the dataplane's key") != NULL, "%s", err);
    free(csr);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    ca_backend_free(ca);
    teardown_fixture(&f);
}
END_TEST

START_TEST(sign_leaf_without_a_csr_or_with_a_missing_tag_is_refused_clearly)
{
    fixture f;
    ca_backend *ca = NULL;
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    char err[PKI_ERRBUF] = "", *csr = dataplane_csr(&key);
    pki_leaf_request req;
    static const model_tag no_service[] = {{(char *)"version", (char *)"v1", {0}}};

    setup(&f, "vault-1", vault_port, "pki", "mesh", NULL);
    ck_assert_msg(ca_backend_open(&f.ctx, &ca, err) == 0, "%s", err);
    /* MESHCA_ENOTFOUND: this dataplane is skipped, not the mesh (ca_backend.h). */
    web_request(&req, NULL);
    ck_assert_int_eq(ca_backend_sign_leaf(ca, &req, key, f.ctx.now, &leaf, err), MESHCA_ENOTFOUND);
    ck_assert_msg(strstr(err, "no CSR is kept") != NULL, "%s", err);
    web_request(&req, csr);
    req.tags = no_service;
    req.ntags = 1;
    ck_assert_int_eq(ca_backend_sign_leaf(ca, &req, key, f.ctx.now, &leaf, err), MESHCA_ENOTFOUND);
    ck_assert_msg(strstr(err, "commonName") && strstr(err, "kuma.io/service"), "%s", err);
    ck_assert_ptr_null(leaf);
    free(csr);
    EVP_PKEY_free(key);
    ca_backend_free(ca);
    teardown_fixture(&f);
}
END_TEST

/* The check op's convention (ca_backend.h): unreachable -> MESHCA_EUNAVAILABLE + ca-unreachable;
 * refused -> 0 + ca-refused; both naming the backend, never the token. */
static int check_of(fixture *f, diag_list *diags)
{
    *diags = (diag_list)DIAG_LIST_INIT;
    return ca_backend_check(&f->ctx, diags);
}

START_TEST(check_passes_against_the_double_with_a_throwaway_csr)
{
    fixture f;
    diag_list d;
    int before;

    setup(&f, "vault-1", vault_port, "pki", "mesh", NULL);
    before = count_requests("POST /v1/pki/sign/mesh 200");
    ck_assert_int_eq(check_of(&f, &d), 0);
    ck_assert_uint_eq(d.count, 0);
    ck_assert_int_eq(count_requests("POST /v1/pki/sign/mesh 200"), before + 1);
    diag_list_free(&d);
    teardown_fixture(&f);
}
END_TEST

START_TEST(check_of_an_unreachable_vault_is_eunavailable_and_ca_unreachable)
{
    fixture f;
    diag_list d;

    setup(&f, "vault-down", test_closed_port(), "pki", "mesh", NULL);
    ck_assert_int_eq(check_of(&f, &d), MESHCA_EUNAVAILABLE);
    ck_assert_uint_eq(d.count, 1);
    ck_assert_str_eq(d.items[0].code, CA_DIAG_UNREACHABLE);
    ck_assert_str_eq(d.items[0].path, "mtls.backends[1]");
    ck_assert_msg(strstr(d.items[0].message, "vault backend 'vault-down' (mesh default)") &&
                  strstr(d.items[0].message, "unreachable"), "%s", d.items[0].message);
    ck_assert_msg(!strstr(d.items[0].message, f.token_secret), "token leaked");
    diag_list_free(&d);
    teardown_fixture(&f);
}
END_TEST

START_TEST(check_of_a_wrong_token_is_refused_and_never_prints_it)
{
    fixture f;
    diag_list d;

    setup(&f, "vault-1", vault_port, "pki", "mesh", NULL);
    snprintf(f.token_secret, sizeof(f.token_secret), "hvs.WRONG-c0ffee");
    ck_assert_int_eq(check_of(&f, &d), 0);
    ck_assert_uint_eq(d.count, 1);
    ck_assert_str_eq(d.items[0].code, CA_DIAG_REFUSED);
    ck_assert_msg(strstr(d.items[0].message, "authentication refused (HTTP 403): Vault: permission "
                                             "denied"), "%s", d.items[0].message);
    ck_assert_msg(!strstr(d.items[0].message, "hvs.WRONG-c0ffee"), "token leaked");
    diag_list_free(&d);
    teardown_fixture(&f);
}
END_TEST

START_TEST(check_of_a_malformed_answer_is_eunavailable_and_ca_bad_answer)
{
    fixture f;
    diag_list d;

    setup(&f, "vault-1", vault_port, "pki-bad", "mesh", NULL);
    ck_assert_int_eq(check_of(&f, &d), MESHCA_EUNAVAILABLE);
    ck_assert_uint_eq(d.count, 1);
    ck_assert_str_eq(d.items[0].code, CA_DIAG_BAD_ANSWER);
    ck_assert_msg(strstr(d.items[0].message, "malformed answer from Vault"), "%s",
                  d.items[0].message);
    diag_list_free(&d);
    teardown_fixture(&f);
}
END_TEST

START_TEST(check_with_skip_validation_sends_nothing_but_still_checks_conf)
{
    fixture f;
    diag_list d;
    int before;

    setup(&f, "vault-down", test_closed_port(), "pki", "mesh", NULL);
    f.ctx.skip_validation = true;
    before = count_requests("POST");
    ck_assert_int_eq(check_of(&f, &d), 0);
    ck_assert_uint_eq(d.count, 0);
    ck_assert_int_eq(count_requests("POST"), before);
    diag_list_free(&d);
    teardown_fixture(&f);
    /* A bad template is still a conf error, with its field path. */
    setup(&f, "vault-1", vault_port, "pki", "mesh", NULL);
    f.ctx.skip_validation = true;
    mnode_free(f.conf);
    {
        mnode **docs = NULL;
        size_t ndocs = 0;
        diag_list pd = DIAG_LIST_INIT;
        static const char text[] = "fromCp: {address: https://127.0.0.1:1, pki: pki, role: mesh, "
                                   "commonName: '{{ .Service }}', auth: {token: {secret: vault-token}}}\n";
        ck_assert_int_eq(manifest_parse_documents("m.yaml", text, strlen(text), &docs, &ndocs, &pd), 0);
        f.conf = f.b.conf = docs[0];
        free(docs);
        diag_list_free(&pd);
    }
    ck_assert_int_eq(check_of(&f, &d), 0);
    ck_assert_uint_eq(d.count, 1);
    ck_assert_str_eq(d.items[0].code, "ca-conf");
    ck_assert_msg(strstr(d.items[0].message, "mtls.backends[1].conf.fromCp.commonName"), "%s",
                  d.items[0].message);
    diag_list_free(&d);
    teardown_fixture(&f);
}
END_TEST

/* ---- the cache ----------------------------------------------------------------------------- */

START_TEST(cache_opens_a_vault_ca_once_and_reads_its_chain_once)
{
    fixture f;
    ca_cache *c = ca_cache_new();
    ca_backend *a = NULL, *b = NULL;
    char err[PKI_ERRBUF] = "";
    ca_cache_stats st;
    int before;

    setup(&f, "vault-1", vault_port, "pki", "mesh", NULL);
    before = count_requests("GET /v1/pki/ca_chain");
    for (int pass = 0; pass < 5; pass++) {
        ck_assert_msg(ca_cache_open(c, &f.ctx, pass ? &b : &a, err) == 0, "%s", err);
        f.ctx.now += 10;
    }
    ck_assert_ptr_eq(a, b);
    ck_assert_int_eq(count_requests("GET /v1/pki/ca_chain"), before + 1);
    ca_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.opens, 1);
    ck_assert_uint_eq(st.hits, 4);
    /* Opened again after CA_CACHE_MAX_AGE_S (time-based work: a rotated chain, a renewal). */
    f.ctx.now += CA_CACHE_MAX_AGE_S;
    ck_assert_msg(ca_cache_open(c, &f.ctx, &b, err) == 0, "%s", err);
    ck_assert_int_eq(count_requests("GET /v1/pki/ca_chain"), before + 2);
    ca_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.opens, 2);
    ca_cache_free(c);
    teardown_fixture(&f);
}
END_TEST

START_TEST(cache_reopens_when_a_secret_it_read_or_the_conf_changes)
{
    fixture f;
    ca_cache *c = ca_cache_new();
    ca_backend *a = NULL;
    char err[PKI_ERRBUF] = "", tok[200];
    ca_cache_stats st;

    setup(&f, "vault-1", vault_port, "pki", "mesh", NULL);
    ck_assert_int_eq(ca_cache_open(c, &f.ctx, &a, err), 0);
    ck_assert_int_eq(ca_cache_open(c, &f.ctx, &a, err), 0);
    /* A new token in the Secret: the next pass opens a client with it (the double refuses this
     * one, which shows it was used). */
    snprintf(tok, sizeof(tok), "%s", f.token_secret);
    snprintf(f.token_secret, sizeof(f.token_secret), "hvs.rotated-token");
    ck_assert_int_eq(ca_cache_open(c, &f.ctx, &a, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "permission denied") && !strstr(err, "hvs.rotated-token"), "%s", err);
    ca_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.opens, 2);
    /* Put back: tried at once although the failure's backoff runs. */
    snprintf(f.token_secret, sizeof(f.token_secret), "%s", tok);
    ck_assert_msg(ca_cache_open(c, &f.ctx, &a, err) == 0, "%s", err);
    f.b.dp_cert.request_timeout.ms = 3000;   /* requestTimeout changes the client */
    ck_assert_int_eq(ca_cache_open(c, &f.ctx, &a, err), 0);
    ck_assert_int_eq(ca_cache_open(c, &f.ctx, &a, err), 0);
    ca_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.opens, 4);
    ck_assert_uint_eq(st.hits, 2);
    ca_cache_free(c);
    teardown_fixture(&f);
}
END_TEST

START_TEST(cache_retries_a_failing_ca_with_exponential_backoff)
{
    fixture f;
    ca_cache *c = ca_cache_new();
    ca_backend *a = NULL;
    char err[PKI_ERRBUF] = "", first[PKI_ERRBUF];
    ca_cache_stats st;
    int64_t t0;

    setup(&f, "vault-down", test_closed_port(), "pki", "mesh", NULL);
    t0 = f.ctx.now;
    ck_assert_int_eq(ca_cache_open(c, &f.ctx, &a, err), MESHCA_EUNAVAILABLE);
    snprintf(first, sizeof(first), "%s", err);
    /* Within the first backoff (1 s): the same failure, whole, without trying. */
    err[0] = '\0';
    ck_assert_int_eq(ca_cache_open(c, &f.ctx, &a, err), MESHCA_EUNAVAILABLE);
    ck_assert_str_eq(err, first);
    ca_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.opens, 1);
    ck_assert_uint_eq(st.backoffs, 1);
    /* Attempts at t0+1, then t0+1+2, t0+3+4, ... doubling up to 60 s. */
    int64_t attempts[] = {1, 3, 7, 15, 31, 63, 123, 183};
    unsigned opens = 1;
    for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
        f.ctx.now = t0 + attempts[i] - 1;
        ck_assert_int_eq(ca_cache_open(c, &f.ctx, &a, err), MESHCA_EUNAVAILABLE);
        ca_cache_get_stats(c, &st);
        ck_assert_uint_eq(st.opens, opens);   /* still waiting */
        f.ctx.now = t0 + attempts[i];
        ck_assert_int_eq(ca_cache_open(c, &f.ctx, &a, err), MESHCA_EUNAVAILABLE);
        ca_cache_get_stats(c, &st);
        ck_assert_uint_eq(st.opens, ++opens);   /* tried again */
    }
    /* A conf change (Vault moved) is tried at once, backoff or not. */
    teardown_fixture(&f);
    setup(&f, "vault-down", vault_port, "pki", "mesh", NULL);
    f.ctx.now = t0 + 184;
    ck_assert_msg(ca_cache_open(c, &f.ctx, &a, err) == 0, "%s", err);
    ca_cache_free(c);
    teardown_fixture(&f);
}
END_TEST

START_TEST(cache_sign_failures_wait_for_their_backoff_and_clear_on_success)
{
    fixture f;
    ca_cache *c = ca_cache_new();
    ca_backend *a = NULL;
    char err[PKI_ERRBUF] = "";

    setup(&f, "vault-1", vault_port, "pki", "mesh", NULL);
    ck_assert_int_eq(ca_cache_open(c, &f.ctx, &a, err), 0);
    ck_assert(!ca_cache_sign_wait(c, "default", "vault-1", f.ctx.now, err));
    ca_cache_sign_failed(c, "default", "vault-1", "Vault at X unreachable: timed out", f.ctx.now);
    ck_assert(ca_cache_sign_wait(c, "default", "vault-1", f.ctx.now, err));
    ck_assert_str_eq(err, "Vault at X unreachable: timed out");
    ck_assert(!ca_cache_sign_wait(c, "default", "vault-1", f.ctx.now + 1, err));
    ca_cache_sign_failed(c, "default", "vault-1", "again", f.ctx.now + 1);
    ck_assert(ca_cache_sign_wait(c, "default", "vault-1", f.ctx.now + 2, err));   /* 2 s now */
    ck_assert(!ca_cache_sign_wait(c, "default", "vault-1", f.ctx.now + 3, err));
    ca_cache_sign_ok(c, "default", "vault-1");
    ca_cache_sign_failed(c, "default", "vault-1", "once more", f.ctx.now + 3);
    ck_assert(!ca_cache_sign_wait(c, "default", "vault-1", f.ctx.now + 4, err));   /* reset: 1 s */
    /* Pruned with its mesh's backends: the next open opens anew. */
    ca_cache_prune(c, "default", NULL, 0);
    ca_cache_stats st;
    ck_assert_int_eq(ca_cache_open(c, &f.ctx, &a, err), 0);
    ca_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.opens, 2);
    /* Swept: kept while a pass asked for it, dropped after a pass that did not (mesh gone). */
    ca_cache_sweep(c);
    ck_assert_int_eq(ca_cache_open(c, &f.ctx, &a, err), 0);
    ca_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.opens, 2);
    ca_cache_sweep(c);
    ca_cache_sweep(c);
    ck_assert_int_eq(ca_cache_open(c, &f.ctx, &a, err), 0);
    ca_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.opens, 3);
    ca_cache_free(c);
    teardown_fixture(&f);
}
END_TEST

/* A builtin backend through the cache: its root is created through the context's secret store
 * (the same userdata as the lookup) and kept. */
typedef struct mem_secrets {
    char *name[4], *data[4];
    size_t len[4], n;
} mem_secrets;

static int mem_lookup(void *userdata, const char *name, char **ret_data, size_t *ret_len)
{
    mem_secrets *m = userdata;

    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->name[i], name) == 0) {
            *ret_data = malloc(m->len[i] + 1);
            memcpy(*ret_data, m->data[i], m->len[i] + 1);
            *ret_len = m->len[i];
            return 0;
        }
    return PKI_ENOENT;
}

static int mem_store(void *userdata, const ca_secret *secrets, size_t n)
{
    mem_secrets *m = userdata;

    for (size_t i = 0; i < n && m->n < 4; i++) {
        m->name[m->n] = strdup(secrets[i].name);
        m->data[m->n] = malloc(secrets[i].len + 1);
        memcpy(m->data[m->n], secrets[i].data, secrets[i].len);
        m->data[m->n][secrets[i].len] = '\0';
        m->len[m->n++] = secrets[i].len;
    }
    return 0;
}

START_TEST(cache_creates_a_builtin_root_through_the_secret_store_and_keeps_it)
{
    mem_secrets m = {0};
    mesh_backend b = {0};
    ca_context ctx = {0};
    ca_cache *c = ca_cache_new();
    ca_backend *first = NULL, *again = NULL;
    char err[PKI_ERRBUF] = "", fp1[64], fp2[64];
    ca_cache_stats st;

    b.name.value = (char *)"ca-1";
    b.type.value = (char *)"builtin";
    ctx.mesh = "default";
    ctx.backend = &b;
    ctx.secret_lookup = mem_lookup;
    ctx.secret_store = mem_store;
    ctx.secret_userdata = &m;
    ctx.now = time(NULL);
    ck_assert_msg(ca_cache_open(c, &ctx, &first, err) == 0, "%s", err);
    ck_assert_uint_eq(m.n, 2);   /* the root's certificate and key, stored */
    pki_fingerprint_sha1(ca_backend_cert(first), fp1, sizeof(fp1));
    /* The Secrets it read were created meanwhile: opened once more, then kept. */
    ck_assert_msg(ca_cache_open(c, &ctx, &again, err) == 0, "%s", err);
    ck_assert_msg(ca_cache_open(c, &ctx, &again, err) == 0, "%s", err);
    pki_fingerprint_sha1(ca_backend_cert(again), fp2, sizeof(fp2));
    ck_assert_str_eq(fp1, fp2);
    ck_assert_uint_eq(m.n, 2);   /* not created twice */
    ca_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.opens, 2);
    ck_assert_uint_eq(st.hits, 1);
    ca_cache_free(c);
    for (size_t i = 0; i < m.n; i++) {
        free(m.name[i]);
        free(m.data[i]);
    }
}
END_TEST

/* ---- a reconcile pass with a vault backend enabled ---------------------------------------- */

START_TEST(a_pass_signs_the_kept_csr_through_vault_and_skips_an_identity_without_one)
{
    char dir[] = "/tmp/test-ca_vault-store-XXXXXX", url[128], err[MESHCA_ERRBUF] = "", yaml[4096];
    char tok_path[300], *tok, path[300];
    store *st = NULL;
    ca_cache *cache = ca_cache_new();
    EVP_PKEY *web, *old;
    identity id = {0};

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(url, sizeof(url), "sqlite://%s/meshca.db", dir);
    ck_assert_msg(store_open(url, &st, err) == 0, "%s", err);
    snprintf(tok_path, sizeof(tok_path), "%s/token", vault_dir);
    tok = test_slurp(tok_path);
    tok[strcspn(tok, "\n")] = '\0';
    {
        unsigned char b64[400];
        int n = EVP_EncodeBlock(b64, (const unsigned char *)tok, (int)strlen(tok));
        b64[n] = '\0';
        snprintf(yaml, sizeof(yaml),
                 "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
                 "  - name: ca-1\n    type: builtin\n"
                 "  - name: vault-1\n    type: vault\n    dpCert: {requestTimeout: 5s}\n"
                 "    conf:\n      fromCp:\n        address: https://127.0.0.1:%d\n"
                 "        namespace: mesh-team\n        pki: pki\n        role: mesh\n"
                 "        commonName: '{{ tag \"kuma.io/service\" }}-{{ tag \"version\" }}'\n"
                 "        tls: {caCert: {file: %s/tls-ca.pem}, serverName: vault.test}\n"
                 "        auth: {token: {secret: vault-token}}\n"
                 "---\ntype: Secret\nmesh: default\nname: vault-token\ndata: %s\n"
                 "---\ntype: Dataplane\nmesh: default\nname: web-01\nnetworking:\n"
                 "  address: 127.0.0.1\n  inbound: [{port: 8443, tags: {kuma.io/service: web, version: v1}}]\n"
                 "---\ntype: Dataplane\nmesh: default\nname: notag-01\nnetworking:\n"
                 "  address: 127.0.0.1\n  inbound: [{port: 8445, tags: {kuma.io/service: nt}}]\n"
                 "---\ntype: Dataplane\nmesh: default\nname: old-01\nnetworking:\n"
                 "  address: 127.0.0.1\n  inbound: [{port: 8444, tags: {kuma.io/service: old}}]\n",
                 vault_port, vault_dir, (char *)b64);
    }
    free(tok);
    test_seed(st, yaml);
    web = test_submit(st, "default", "web-01", false, true);
    /* A key without a CSR: builtin signs it. */
    old = test_submit(st, "default", "old-01", false, false);
    /* No "version" tag for the template. */
    EVP_PKEY_free(test_submit(st, "default", "notag-01", false, true));
    {
        reconcile_options o = RECONCILE_OPTIONS_INIT;
        reconcile_report rep = RECONCILE_REPORT_INIT;
        diag_list d = DIAG_LIST_INIT;
        o.ca_cache = cache;
        ck_assert_int_eq(reconcile_once(st, &o, &rep, &d), 0);
        ck_assert_uint_eq(rep.issued, 3);
        diag_list_free(&d);
        reconcile_report_free(&rep);
    }
    /* The switch to vault-1: the kept CSR is re-signed by Vault, without the agent. */
    *strstr(yaml, "enabledBackend: ca-1") = '\0';
    {
        char *rest = yaml + strlen(yaml) + strlen("enabledBackend: ca-1"), text[8300];
        snprintf(text, sizeof(text), "%senabledBackend: vault-1%s", yaml, rest);
        test_seed(st, text);
    }
    int chains = count_requests("GET /v1/pki/ca_chain");
    for (int p = 0; p < 3; p++) {
        reconcile_options o = RECONCILE_OPTIONS_INIT;
        reconcile_report rep = RECONCILE_REPORT_INIT;
        diag_list d = DIAG_LIST_INIT;
        o.ca_cache = cache;
        ck_assert_int_eq(reconcile_once(st, &o, &rep, &d), 0);
        ck_assert_uint_eq(rep.failed_meshes, 0);
        if (p == 0) {
            ck_assert_uint_eq(rep.reissued, 1);
            size_t i = 0;
            while (i < d.count && strcmp(d.items[i].code, "csr-missing") != 0)
                i++;
            ck_assert_msg(i < d.count, "no csr-missing warning");
            ck_assert_int_eq(d.items[i].severity, DIAG_WARNING);
            ck_assert_msg(strstr(d.items[i].message, "default/old-01") &&
                          strstr(d.items[i].message, "'vault-1'"), "%s", d.items[i].message);
            /* A dataplane the template cannot name is skipped; the mesh goes on. */
            for (i = 0; i < d.count && strcmp(d.items[i].code, "leaf-unsignable") != 0; i++)
                ;
            ck_assert_msg(i < d.count, "no leaf-unsignable warning");
            ck_assert_int_eq(d.items[i].severity, DIAG_WARNING);
            ck_assert_msg(strstr(d.items[i].message, "default/notag-01") &&
                          strstr(d.items[i].message, "no tag 'version'"), "%s", d.items[i].message);
        }
        diag_list_free(&d);
        reconcile_report_free(&rep);
    }
    /* Three passes, no read of Vault's CA chain: the cache opened it in the first pass. */
    ck_assert_int_eq(count_requests("GET /v1/pki/ca_chain"), chains);
    ck_assert_int_eq(identity_read(st, "default", "web-01", &id, NULL, err), 0);
    ck_assert_str_eq(id.backend, "vault-1");
    ck_assert_ptr_nonnull(id.csr_pem);
    snprintf(path, sizeof(path), "%s/web.pem", dir);
    test_spit(path, id.cert_pem);
    ck_assert_int_eq(test_run("openssl verify -x509_strict -CAfile %s/vault-ca.pem %s >/dev/null",
                         vault_dir, path), 0);
    ck_assert_int_eq(test_run("openssl x509 -in %s -noout -ext subjectAltName | grep -q "
                         "'URI:spiffe://default/web, URI:kuma://kuma.io/service/web, "
                         "URI:kuma://version/v1, URI:urn:meshca:dataplane:default:web-01'", path), 0);
    ck_assert_int_eq(test_run("openssl x509 -in %s -noout -subject | grep -q 'CN *= *web-v1$'", path), 0);
    identity_clear(&id);
    /* The identity without a CSR keeps its builtin leaf until its agent sends one. */
    ck_assert_int_eq(identity_read(st, "default", "old-01", &id, NULL, err), 0);
    ck_assert_str_eq(id.backend, "ca-1");
    ck_assert_ptr_null(id.csr_pem);
    ck_assert_ptr_nonnull(id.cert_pem);
    identity_clear(&id);
    EVP_PKEY_free(web);
    EVP_PKEY_free(old);
    ca_cache_free(cache);
    store_close(st);
    test_run("rm -rf '%s'", dir);
}
END_TEST

static Suite *ca_vault_suite(void)
{
    Suite *s = suite_create("ca_vault");
    TCase *t = tcase_create("vault");

    tcase_add_unchecked_fixture(t, vault_up, vault_down);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, vault_is_a_signing_remote_csr_backend_that_cannot_cross_sign);
    tcase_add_test(t, ensure_ca_reads_the_doubles_chain_for_bundles_and_inspect);
    tcase_add_test(t, sign_leaf_signs_the_csr_with_exactly_the_sans_asked_and_verifies_x509_strict);
    tcase_add_test(t, sign_leaf_refuses_a_leaf_for_another_key_than_the_one_held);
    tcase_add_test(t, sign_leaf_without_a_csr_or_with_a_missing_tag_is_refused_clearly);
    tcase_add_test(t, check_passes_against_the_double_with_a_throwaway_csr);
    tcase_add_test(t, check_of_an_unreachable_vault_is_eunavailable_and_ca_unreachable);
    tcase_add_test(t, check_of_a_wrong_token_is_refused_and_never_prints_it);
    tcase_add_test(t, check_of_a_malformed_answer_is_eunavailable_and_ca_bad_answer);
    tcase_add_test(t, check_with_skip_validation_sends_nothing_but_still_checks_conf);
    tcase_add_test(t, cache_opens_a_vault_ca_once_and_reads_its_chain_once);
    tcase_add_test(t, cache_reopens_when_a_secret_it_read_or_the_conf_changes);
    tcase_add_test(t, cache_retries_a_failing_ca_with_exponential_backoff);
    tcase_add_test(t, cache_sign_failures_wait_for_their_backoff_and_clear_on_success);
    tcase_add_test(t, cache_creates_a_builtin_root_through_the_secret_store_and_keeps_it);
    tcase_add_test(t, a_pass_signs_the_kept_csr_through_vault_and_skips_an_identity_without_one);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ca_vault_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
