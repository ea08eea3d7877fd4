/* test-api.c - Check suite for the dataplane API: auth, authorisation, CSR checks, limits, blocking
 * queries. */
#define _GNU_SOURCE 1
#include <check.h>
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "reconciler/api/client.h"
#include "reconciler/api/cpca.h"
#include "reconciler/api/csr.h"
#include "reconciler/api/csr_limit.h"
#include "reconciler/api/server.h"
#include "reconciler/api/token.h"
#include "reconciler/pki.h"

/* ---- the test double of the controller ---------------------------------------------------- */

/*
 * test_double_controller stands in for the controller behind api_handlers: three dataplanes
 * (default/web-01, default/web-02, other/web-01), mesh "rsa" wants RSA keys, a generation per
 * dataplane that the test bumps on the loop thread, and the mesh CA of `default` as its bundle.
 */
typedef struct test_double_controller {
    uint64_t generation[3];
    char *bundle_pem; /* the CA of mesh "default" (client certificates) */
    int csr_count;
    unsigned char spki[1024];
    size_t spki_len;
    uint64_t acked;
    int identity_reads;   /* get_identity calls */
    int notify_reads;     /* of them, made by the last bump's api_server_notify */
    int generation_reads; /* identity_generation calls */
    int unchanged_notifies, unchanged_reads; /* notify_unchanged: calls, and identity reads in them */
    int64_t since[3];     /* the identity's since, as get_identity gives it */
} test_double_controller;

static int dp_index(const char *mesh_name, const char *dp)
{
    if (strcmp(mesh_name, "default") == 0 && strcmp(dp, "web-01") == 0)
        return 0;
    if (strcmp(mesh_name, "default") == 0 && strcmp(dp, "web-02") == 0)
        return 1;
    if (strcmp(mesh_name, "other") == 0 && strcmp(dp, "web-01") == 0)
        return 2;
    if (strcmp(mesh_name, "rsa") == 0 && strcmp(dp, "web-01") == 0)
        return 2;
    return -1;
}

static int double_key_type(void *ctx, const char *mesh_name, const char *dp, csr_key_type *ret,
                           char *errbuf)
{
    *ret = strcmp(mesh_name, "rsa") == 0 ? CSR_KEY_RSA_2048 : CSR_KEY_EC_P256;
    return 0;
}

static int double_submit_csr(void *ctx, const api_principal *who, const char *mesh_name,
                             const char *dp, const unsigned char *spki, size_t len,
                             const char *csr_pem, char *errbuf)
{
    test_double_controller *t = ctx;
    if (!strstr(csr_pem, "-----BEGIN CERTIFICATE REQUEST-----") || who->method != API_AUTH_TOKEN ||
        strcmp(who->dataplane, dp) != 0)
        return meshca_fail(errbuf, MESHCA_ESTATE, "test double: unexpected CSR submission");
    if (len > sizeof(t->spki))
        return meshca_fail(errbuf, MESHCA_EINVAL, "too long");
    memcpy(t->spki, spki, len);
    t->spki_len = len;
    t->csr_count++;
    return 0;
}

static int double_get_identity(void *ctx, const char *mesh_name, const char *dp, uint64_t *ret_gen,
                               json_t **ret_body, int64_t *ret_since, char *errbuf)
{
    test_double_controller *t = ctx;
    int i = dp_index(mesh_name, dp);
    t->identity_reads++;
    if (i < 0)
        return meshca_fail(errbuf, MESHCA_ENOTFOUND, "no dataplane %s/%s", mesh_name, dp);
    *ret_since = t->since[i];
    *ret_gen = t->generation[i];
    *ret_body = t->generation[i] == 0
                    ? NULL
                    : json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "generation",
                                (json_int_t)t->generation[i], "backend", "ca-1", "certificate",
                                "CERT", "chain", "", "caBundle", "BUNDLE", "notAfter",
                                "2030-01-01T00:00:00Z", "renewAt", "2029-12-01T00:00:00Z");
    return 0;
}

static int double_ack(void *ctx, const api_principal *who, const char *mesh_name, const char *dp,
                      uint64_t generation, char *errbuf)
{
    test_double_controller *t = ctx;
    t->acked = generation;
    return 0;
}

static int double_roots(void *ctx, const char *mesh_name, json_t **ret, char *errbuf)
{
    *ret = json_pack("{s:s, s:s, s:[]}", "ActiveRootID", "", "TrustDomain", mesh_name, "Roots");
    return 0;
}

static int double_trust_bundle(void *ctx, const char *mesh_name, char **ret_pem, char *errbuf)
{
    test_double_controller *t = ctx;
    if (strcmp(mesh_name, "default") != 0 || !t->bundle_pem)
        return meshca_fail(errbuf, MESHCA_ENOTFOUND, "no bundle for %s", mesh_name);
    *ret_pem = strdup(t->bundle_pem);
    return *ret_pem ? 0 : MESHCA_ENOMEM;
}

/* ---- fixture: store, CP CA, server on 127.0.0.1:0 in a thread ----------------------------- */

static char tmpdir[128];
static char ca_file[256];
static store *st;
static struct event_base *base;
static api_server *server;
static SSL_CTX *server_ctx;
static pthread_t loop_thread;
static test_double_controller double_ctl;
static int double_identity_generation(void *ctx, const char *mesh_name, const char *dp,
                                      uint64_t *ret_gen, char *errbuf)
{
    test_double_controller *t = ctx;
    int i = dp_index(mesh_name, dp);
    t->generation_reads++;
    if (i < 0)
        return meshca_fail(errbuf, MESHCA_ENOTFOUND, "no dataplane %s/%s", mesh_name, dp);
    *ret_gen = t->generation[i];
    return 0;
}

static api_handlers double_handlers = {
    &double_ctl, double_key_type, double_submit_csr,   double_get_identity,
    double_ack,  double_roots,    double_trust_bundle, NULL, NULL, NULL,
    double_identity_generation,
};
/* The mesh CA of "default" and its key, for client certificates. */
static X509 *mesh_ca;
static EVP_PKEY *mesh_ca_key;

static void *run_loop(void *arg)
{
    event_base_dispatch(base);
    return NULL;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
}

static void setup(void)
{
    char tmpl[] = "/tmp/meshca-test-api-XXXXXX";
    char err[MESHCA_ERRBUF] = "";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    snprintf(tmpdir, sizeof(tmpdir), "%s", tmpl);
    snprintf(ca_file, sizeof(ca_file), "%s/cp-ca.pem", tmpdir);
    /* The default store, inside tmpdir: whatever store the build defaults to. */
    ck_assert_int_eq(chdir(tmpdir), 0);
    unsetenv("MESHCA_STORE");
    ck_assert_msg(store_open(NULL, &st, err) == 0, "store_open: %s", err);
    /* The meshes the test double serves: token_verify looks tokens up mesh by mesh. */
    static const char *const meshes[] = {"default", "other", "rsa"};
    for (size_t i = 0; i < 3; i++) {
        char value[96];
        snprintf(value, sizeof(value), "{\"type\":\"Mesh\",\"name\":\"%s\"}", meshes[i]);
        const store_key key = {"meshes", meshes[i], meshes[i]};
        ck_assert_int_eq(store_put(st, &key, value, strlen(value), 0, NULL), 0);
    }

    cpca ca = {NULL, NULL};
    char *chain = NULL, *key = NULL;
    int64_t now = time(NULL);
    ck_assert_msg(cpca_load(st, 1, now, &ca, err) == 0, "cpca_load: %s", err);
    ck_assert_msg(cpca_server_cert(&ca, "127.0.0.1", (const char *[]){"localhost"}, 1, now, &chain,
                                   &key, err) == 0,
                  "server cert: %s", err);
    ck_assert_msg(cpca_server_ctx(chain, key, &server_ctx, err) == 0, "ctx: %s", err);
    write_file(ca_file, ca.cert_pem);
    free(chain);
    pki_free_secret(key);
    cpca_free(&ca);

    memset(&double_ctl, 0, sizeof(double_ctl));
    double_ctl.generation[0] = 1;
    double_ctl.generation[1] = 1;
    double_ctl.generation[2] = 1;
    ck_assert_int_eq(pki_generate_key(false, 0, &mesh_ca_key, err), 0);
    ck_assert_int_eq(
        pki_make_root(mesh_ca_key, "default", "spiffe://default", now - 60, 86400, &mesh_ca, err),
        0);
    ck_assert_int_eq(pki_cert_to_pem(mesh_ca, &double_ctl.bundle_pem, err), 0);

    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    api_server_options opts = API_SERVER_OPTIONS_INIT;
    opts.ssl_ctx = server_ctx;
    opts.port = 0;
    opts.tokens = st;
    opts.handlers = &double_handlers;
    opts.timeout_s = 2; /* short, so the slow-client test is quick */
    ck_assert_msg(api_server_new(base, &opts, &server, err) == 0, "server: %s", err);
    ck_assert_int_ne(api_server_port(server), 0);
    ck_assert_int_eq(pthread_create(&loop_thread, NULL, run_loop, NULL), 0);
}

static void stop_loop(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(base);
}

static void teardown(void)
{
    struct timeval zero = {0, 0};
    event_base_once(base, -1, EV_TIMEOUT, stop_loop, NULL, &zero);
    pthread_join(loop_thread, NULL);
    api_server_free(server);
    /* bufferevent_openssl frees connections in deferred callbacks: let them run (server.h). */
    event_base_loop(base, EVLOOP_NONBLOCK);
    event_base_free(base);
    SSL_CTX_free(server_ctx);
    store_close(st);
    free(double_ctl.bundle_pem);
    X509_free(mesh_ca);
    EVP_PKEY_free(mesh_ca_key);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    (void)!system(cmd);
}

/* ---- HTTP through libcurl ----------------------------------------------------------------- */

typedef struct reply {
    long status;
    char body[8192];
    size_t len;
    char index[32];
} reply;

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    reply *r = arg;
    size_t k = size * n;
    size_t room = sizeof(r->body) - 1 - r->len;
    memcpy(r->body + r->len, p, k < room ? k : room);
    r->len += k < room ? k : room;
    r->body[r->len] = '\0';
    return k;
}

static size_t header(char *p, size_t size, size_t n, void *arg)
{
    reply *r = arg;
    size_t k = size * n;
    if (k > 15 && strncasecmp(p, "X-Meshca-Index:", 15) == 0)
        sscanf(p + 15, " %31s", r->index);
    return k;
}

typedef struct call {
    const char *method;
    const char *path;
    const char *token;     /* bearer token or NULL */
    const char *cert_file; /* client certificate or NULL */
    const char *key_file;
    const char *body;
    size_t body_len;
} call;

static reply http(call c)
{
    reply r = {0};
    char url[512], auth[256];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u%s", api_server_port(server), c.path);
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    if (c.token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c.token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c.method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    if (c.cert_file) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, c.cert_file);
        curl_easy_setopt(h, CURLOPT_SSLKEY, c.key_file);
    }
    if (c.body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, c.body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE,
                         (long)(c.body_len ? c.body_len : strlen(c.body)));
    }
    CURLcode cc = curl_easy_perform(h);
    ck_assert_msg(cc == CURLE_OK, "%s %s: %s", c.method, c.path, curl_easy_strerror(cc));
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    return r;
}

/* The {"error":{"code"}} of a reply, checked to be there. */
static const char *error_code(const reply *r, json_t **keep)
{
    json_t *doc = json_loads(r->body, 0, NULL);
    ck_assert_msg(doc != NULL, "not JSON: %s", r->body);
    const char *code = json_string_value(json_object_get(json_object_get(doc, "error"), "code"));
    ck_assert_msg(code != NULL, "no error.code in %s", r->body);
    ck_assert_ptr_nonnull(
        json_string_value(json_object_get(json_object_get(doc, "error"), "message")));
    *keep = doc;
    return code;
}

#define assert_error(r, want_status, want_code, want_text)                                         \
    do {                                                                                           \
        json_t *keep_ = NULL;                                                                      \
        ck_assert_msg((r).status == (want_status), "status %ld, want %d: %s", (r).status,          \
                      (want_status), (r).body);                                                    \
        ck_assert_str_eq(error_code(&(r), &keep_), (want_code));                                   \
        ck_assert_msg(strstr((r).body, (want_text)) != NULL, "'%s' not in %s", (want_text),        \
                      (r).body);                                                                   \
        json_decref(keep_);                                                                        \
    } while (0)

static char *issue(const char *mesh_name, const char *dp, int64_t now, int64_t ttl)
{
    char *token = NULL;
    char err[MESHCA_ERRBUF] = "";
    ck_assert_msg(token_issue(st, mesh_name, dp, now, ttl, &token, err) == 0, "issue: %s", err);
    ck_assert_uint_eq(strlen(token), TOKEN_TEXT_LEN);
    return token;
}

#define IDENTITY(mesh_name, dp) "/v1/meshes/" mesh_name "/dataplanes/" dp "/identity"

/* ---- authentication and authorisation ------------------------------------------------------ */

START_TEST(token_of_one_dataplane_gets_403_for_another_dataplane_and_mesh)
{
    char *token = issue("default", "web-01", time(NULL), 3600);
    reply r = http((call){"GET", IDENTITY("default", "web-01"), token});
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.index, "1");
    ck_assert_ptr_nonnull(strstr(r.body, "\"generation\":1"));

    r = http((call){"GET", IDENTITY("default", "web-02"), token});
    assert_error(r, 403, "forbidden", "dataplane default/web-01 may not act for default/web-02");
    r = http((call){"GET", IDENTITY("other", "web-01"), token});
    assert_error(r, 403, "forbidden", "may not act for other/web-01");
    r = http((call){"PUT", "/v1/meshes/default/dataplanes/web-02/ack", token,
                    .body = "{\"generation\":1}"});
    assert_error(r, 403, "forbidden", "default/web-02");
    r = http((call){"GET", "/v1/meshes/other/roots", token});
    assert_error(r, 403, "forbidden", "may not act for other");
    r = http((call){"GET", "/v1/meshes/default/roots", token});
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"TrustDomain\":\"default\""));
    token_free(token);
}
END_TEST

START_TEST(revoked_token_gets_401_at_once)
{
    char err[MESHCA_ERRBUF] = "";
    char *token = issue("default", "web-01", time(NULL), 3600);
    ck_assert_int_eq(http((call){"GET", IDENTITY("default", "web-01"), token}).status, 200);
    size_t n = 0;
    ck_assert_int_eq(token_revoke(st, "default", "web-01", &n, err), 0);
    ck_assert_uint_eq(n, 1);
    reply r = http((call){"GET", IDENTITY("default", "web-01"), token});
    assert_error(r, 401, "unauthenticated", "unknown or revoked token");
    token_free(token);
}
END_TEST

START_TEST(expired_token_gets_401)
{
    char *token = issue("default", "web-01", time(NULL) - 7200, 3600);
    reply r = http((call){"GET", IDENTITY("default", "web-01"), token});
    assert_error(r, 401, "unauthenticated", "expired");
    token_free(token);
}
END_TEST

START_TEST(missing_or_malformed_credentials_get_401)
{
    reply r = http((call){"GET", IDENTITY("default", "web-01")});
    assert_error(r, 401, "unauthenticated", "authentication required");
    r = http((call){"GET", IDENTITY("default", "web-01"), "not-a-token"});
    assert_error(r, 401, "unauthenticated", "malformed bearer token");
    /* Well-formed but never issued. */
    r = http((call){"GET", IDENTITY("default", "web-01"),
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"});
    assert_error(r, 401, "unauthenticated", "unknown or revoked");
}
END_TEST

START_TEST(healthz_needs_no_credentials_and_unknown_paths_get_json_404)
{
    reply r = http((call){"GET", "/healthz"});
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"status\":\"ok\""));
    r = http((call){"GET", "/v1/nothing"});
    assert_error(r, 404, "not-found", "no such endpoint");
    r = http((call){"DELETE", IDENTITY("default", "web-01")});
    assert_error(r, 405, "method-not-allowed", "method not allowed");
    r = http((call){"GET", IDENTITY("Bad_Mesh", "web-01")});
    assert_error(r, 400, "invalid", "invalid mesh or dataplane name");
}
END_TEST

/* Writes a leaf for (mesh, dp) signed by ca/ca_key into tmpdir/<prefix>.pem and -key.pem; the
 * paths go to cert_path and key_path (256 bytes each). */
static void make_client_cert(X509 *ca, EVP_PKEY *ca_key, const char *mesh_name, const char *dp,
                             const char *prefix, char cert_path[256], char key_path[256])
{
    char err[MESHCA_ERRBUF] = "", spiffe[128], urn[128];
    snprintf(spiffe, sizeof(spiffe), "spiffe://%s/web", mesh_name);
    snprintf(urn, sizeof(urn), "urn:meshca:dataplane:%s:%s", mesh_name, dp);
    const char *uris[] = {spiffe, urn};
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    req.uris = uris;
    req.nuris = 2;
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    ck_assert_msg(pki_issue_leaf(&req, ca, ca_key, time(NULL), &leaf, &key, err) == 0, "%s", err);
    char *cert_pem = NULL, *key_pem = NULL;
    ck_assert_int_eq(pki_cert_to_pem(leaf, &cert_pem, err), 0);
    ck_assert_int_eq(pki_key_to_pem(key, &key_pem, err), 0);
    snprintf(cert_path, 256, "%s/%s.pem", tmpdir, prefix);
    snprintf(key_path, 256, "%s/%s-key.pem", tmpdir, prefix);
    write_file(cert_path, cert_pem);
    write_file(key_path, key_pem);
    free(cert_pem);
    pki_free_secret(key_pem);
    X509_free(leaf);
    EVP_PKEY_free(key);
}

START_TEST(mtls_certificate_of_dataplane_a_gets_403_on_dataplane_b)
{
    char cert[256], key[256];
    make_client_cert(mesh_ca, mesh_ca_key, "default", "web-01", "web-01", cert, key);
    reply r =
        http((call){"GET", IDENTITY("default", "web-01"), .cert_file = cert, .key_file = key});
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    r = http((call){"GET", IDENTITY("default", "web-02"), .cert_file = cert, .key_file = key});
    assert_error(r, 403, "forbidden",
                 "the certificate of dataplane default/web-01 may not act "
                 "for default/web-02");
    r = http((call){"GET", IDENTITY("other", "web-01"), .cert_file = cert, .key_file = key});
    assert_error(r, 403, "forbidden", "may not act for other/web-01");
}
END_TEST

START_TEST(mtls_certificate_of_another_ca_gets_401)
{
    char err[MESHCA_ERRBUF] = "", cert[256], key[256];
    EVP_PKEY *rogue_key = NULL;
    X509 *rogue = NULL;
    ck_assert_int_eq(pki_generate_key(false, 0, &rogue_key, err), 0);
    ck_assert_int_eq(pki_make_root(rogue_key, "default", "spiffe://default", time(NULL) - 60, 86400,
                                   &rogue, err),
                     0);
    make_client_cert(rogue, rogue_key, "default", "web-01", "rogue", cert, key);
    reply r =
        http((call){"GET", IDENTITY("default", "web-01"), .cert_file = cert, .key_file = key});
    assert_error(r, 401, "unauthenticated", "does not verify against mesh 'default'");
    X509_free(rogue);
    EVP_PKEY_free(rogue_key);
}
END_TEST

/* ---- CSRs ---------------------------------------------------------------------------------- */

/* A PEM CSR for `key`, signed by `signer` (the same key for a valid one). Caller frees. */
static char *make_csr(EVP_PKEY *key, EVP_PKEY *signer)
{
    X509_REQ *req = X509_REQ_new();
    ck_assert_ptr_nonnull(req);
    ck_assert_int_eq(X509_REQ_set_pubkey(req, key), 1);
    ck_assert_int_gt(X509_REQ_sign(req, signer, EVP_sha256()), 0);
    BIO *bio = BIO_new(BIO_s_mem());
    ck_assert_int_eq(PEM_write_bio_X509_REQ(bio, req), 1);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *pem = strndup(data, (size_t)n);
    BIO_free(bio);
    X509_REQ_free(req);
    return pem;
}

static char *csr_body(const char *pem)
{
    json_t *doc = json_pack("{s:s}", "csr", pem);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

START_TEST(csr_is_accepted_and_only_its_public_key_reaches_the_controller)
{
    char err[MESHCA_ERRBUF] = "";
    EVP_PKEY *key = NULL;
    ck_assert_int_eq(pki_generate_key(false, 0, &key, err), 0);
    char *pem = make_csr(key, key), *body = csr_body(pem);
    char *token = issue("default", "web-01", time(NULL), 3600);
    reply r = http((call){"POST", "/v1/meshes/default/dataplanes/web-01/csr", token, .body = body});
    ck_assert_msg(r.status == 202, "status %ld: %s", r.status, r.body);
    /* The loop thread wrote the double before answering: the reply orders it before us. */
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(key, &der);
    ck_assert_int_eq(double_ctl.csr_count, 1);
    ck_assert_uint_eq(double_ctl.spki_len, (size_t)n);
    ck_assert_int_eq(memcmp(double_ctl.spki, der, (size_t)n), 0);
    OPENSSL_free(der);
    free(pem);
    free(body);
    token_free(token);
    EVP_PKEY_free(key);
}
END_TEST

START_TEST(csr_with_bad_signature_gets_400_naming_proof_of_possession)
{
    char err[MESHCA_ERRBUF] = "";
    EVP_PKEY *key = NULL, *other = NULL;
    ck_assert_int_eq(pki_generate_key(false, 0, &key, err), 0);
    ck_assert_int_eq(pki_generate_key(false, 0, &other, err), 0);
    /* The request carries key's public half but is signed by another key. */
    char *pem = make_csr(key, other), *body = csr_body(pem);
    char *token = issue("default", "web-01", time(NULL), 3600);
    reply r = http((call){"POST", "/v1/meshes/default/dataplanes/web-01/csr", token, .body = body});
    assert_error(r, 400, "invalid-csr", "csr: signature does not verify");
    ck_assert_int_eq(double_ctl.csr_count, 0);
    free(pem);
    free(body);
    token_free(token);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}
END_TEST

/* POST body to the CSR endpoint of dp with token on the keep-alive handle h; the status, the
 * body in *r and the Retry-After header's value in r->index. */
static long post_csr_on(CURL *h, const char *dp, const char *token, const char *body, reply *r)
{
    char url[256], auth[128];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/v1/meshes/default/dataplanes/%s/csr",
             api_server_port(server), dp);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    hdrs = curl_slist_append(hdrs, "Expect:");
    memset(r, 0, sizeof(*r));
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    ck_assert_int_eq(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    struct curl_header *retry = NULL;
    if (curl_easy_header(h, "Retry-After", 0, CURLH_HEADER, -1, &retry) == CURLHE_OK)
        snprintf(r->index, sizeof(r->index), "%s", retry->value);
    curl_slist_free_all(hdrs);
    return r->status;
}

/* Regression: every CSR the API took cost a signature, a store write and a generation (30
 * CSRs in 0.5 s from one token made generation 30). Past API_CSR_BURST a dataplane gets 429
 * too-many-csrs with Retry-After, and its CSRs reach the controller no more; another
 * dataplane's are still taken. */
START_TEST(csr_flood_of_one_dataplane_gets_429_past_the_burst)
{
    char err[MESHCA_ERRBUF] = "";
    EVP_PKEY *key = NULL;
    ck_assert_int_eq(pki_generate_key(false, 0, &key, err), 0);
    char *pem = make_csr(key, key), *body = csr_body(pem);
    char *token = issue("default", "web-01", time(NULL), 3600);
    char *token2 = issue("default", "web-02", time(NULL), 3600);
    CURL *h = curl_easy_init();
    reply r;
    for (int i = 0; i < API_CSR_BURST; i++)
        ck_assert_msg(post_csr_on(h, "web-01", token, body, &r) == 202, "CSR %d: %ld %s", i + 1,
                      r.status, r.body);
    ck_assert_int_eq(double_ctl.csr_count, API_CSR_BURST);
    ck_assert_int_eq(post_csr_on(h, "web-01", token, body, &r), 429);
    assert_error(r, 429, "too-many-csrs",
                 "default/web-01 sent more than 128 CSRs (one per 10 s after them); retry in ");
    ck_assert_msg(atoi(r.index) >= 1 && atoi(r.index) <= 10, "Retry-After: '%s'", r.index);
    ck_assert_int_eq(double_ctl.csr_count, API_CSR_BURST); /* it reached nothing */
    ck_assert_int_eq(post_csr_on(h, "web-02", token2, body, &r), 202);
    ck_assert_int_eq(double_ctl.csr_count, API_CSR_BURST + 1);
    curl_easy_cleanup(h);
    token_free(token);
    token_free(token2);
    free(pem);
    free(body);
    EVP_PKEY_free(key);
}
END_TEST

/* GCRA: the burst, then one per interval as time passes; a slot taken over starts afresh. */
START_TEST(csr_limit_refills_one_per_interval)
{
    csr_limit *l = csr_limit_new();
    ck_assert_ptr_nonnull(l);
    int64_t retry = 0, t = 1000000;
    for (int i = 0; i < API_CSR_BURST; i++)
        ck_assert(csr_limit_take(l, "m", "d", t, &retry));
    ck_assert(!csr_limit_take(l, "m", "d", t, &retry));
    ck_assert_int_eq(retry, API_CSR_INTERVAL_MS / 1000);
    ck_assert(!csr_limit_take(l, "m", "d", t + API_CSR_INTERVAL_MS - 1, &retry));
    ck_assert_int_eq(retry, 1);
    ck_assert(csr_limit_take(l, "m", "d", t + API_CSR_INTERVAL_MS, &retry));
    ck_assert(!csr_limit_take(l, "m", "d", t + API_CSR_INTERVAL_MS, &retry));
    ck_assert(csr_limit_take(l, "m", "d2", t, &retry)); /* another dataplane */
    ck_assert(csr_limit_take(NULL, "m", "d", t, &retry)); /* no table: not limited */
    csr_limit_free(l);
}
END_TEST

START_TEST(csr_with_wrong_key_type_gets_400_naming_both_types)
{
    char err[MESHCA_ERRBUF] = "";
    EVP_PKEY *rsa = NULL, *ec = NULL;
    ck_assert_int_eq(pki_generate_key(true, 2048, &rsa, err), 0);
    ck_assert_int_eq(pki_generate_key(false, 0, &ec, err), 0);
    char *rsa_body = NULL, *ec_body = NULL, *pem;
    pem = make_csr(rsa, rsa);
    rsa_body = csr_body(pem);
    free(pem);
    pem = make_csr(ec, ec);
    ec_body = csr_body(pem);
    free(pem);

    char *token = issue("default", "web-01", time(NULL), 3600);
    reply r =
        http((call){"POST", "/v1/meshes/default/dataplanes/web-01/csr", token, .body = rsa_body});
    assert_error(r, 400, "invalid-csr",
                 "csr: key is rsa 2048, but the mesh's dpCert.keyType asks for ecdsa P-256");
    token_free(token);
    token = issue("rsa", "web-01", time(NULL), 3600);
    r = http((call){"POST", "/v1/meshes/rsa/dataplanes/web-01/csr", token, .body = ec_body});
    assert_error(r, 400, "invalid-csr",
                 "key is ecdsa P-256, but the mesh's dpCert.keyType asks "
                 "for rsa 2048");
    r = http((call){"POST", "/v1/meshes/rsa/dataplanes/web-01/csr", token, .body = rsa_body});
    ck_assert_int_eq(r.status, 202);
    token_free(token);
    free(rsa_body);
    free(ec_body);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}
END_TEST

/* csr_check_fast (the POST path: no OpenSSL decoder or encoder for what agents send) gives
 * csr_check's verdict, message and SPKI bytes for agents' CSRs, a forged signature, a CSR of
 * another shape (a subject), RSA and EC keys against both key types, and a bad point. */
START_TEST(csr_fast_check_gives_csr_checks_verdict_message_and_key)
{
    char err[MESHCA_ERRBUF] = "";
    EVP_PKEY *ec = NULL, *other = NULL, *rsa = NULL;
    ck_assert_int_eq(pki_generate_key(false, 0, &ec, err), 0);
    ck_assert_int_eq(pki_generate_key(false, 0, &other, err), 0);
    ck_assert_int_eq(pki_generate_key(true, 2048, &rsa, err), 0);
    char *pems[6];
    ck_assert_int_eq(pki_make_csr(ec, &pems[0], err), 0);   /* what agents send */
    pems[1] = make_csr(ec, other);                          /* forged: another key signed it */
    pems[2] = make_csr(rsa, rsa);
    {
        /* another shape: a subject, which the strict reader leaves to OpenSSL */
        X509_REQ *req = X509_REQ_new();
        ck_assert_int_eq(X509_REQ_set_pubkey(req, ec), 1);
        X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
                                   (const unsigned char *)"web-01", -1, -1, 0);
        ck_assert_int_gt(X509_REQ_sign(req, ec, EVP_sha256()), 0);
        BIO *bio = BIO_new(BIO_s_mem());
        ck_assert_int_eq(PEM_write_bio_X509_REQ(bio, req), 1);
        char *data = NULL;
        long n = BIO_get_mem_data(bio, &data);
        pems[3] = strndup(data, (size_t)n);
        BIO_free(bio);
        X509_REQ_free(req);
    }
    /* the agent's CSR with one bit of the signature's s flipped: 20 base64 characters before the
     * END line, clear of the padding (whose bits a decoder drops) and inside the signature */
    pems[4] = strdup(pems[0]);
    char *end = strstr(pems[4], "\n-----END");
    ck_assert_ptr_nonnull(end);
    char *flip = end - 20;
    if (*flip == '\n')
        flip--;
    *flip = *flip == 'A' ? 'B' : 'A';
    pems[5] = strdup("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
    pki_p256_verifier *v = pki_p256_verifier_new();
    ck_assert_ptr_nonnull(v);
    int accepted = 0;
    for (int i = 0; i < 6; i++)
        for (int want = CSR_KEY_EC_P256; want <= CSR_KEY_RSA_2048; want++) {
            unsigned char *a = NULL, *b = NULL;
            size_t alen = 0, blen = 0;
            char ea[MESHCA_ERRBUF] = "", eb[MESHCA_ERRBUF] = "";
            int ra = csr_check(pems[i], strlen(pems[i]), (csr_key_type)want, &a, &alen, ea);
            int rb = csr_check_fast(v, pems[i], strlen(pems[i]), (csr_key_type)want, &b, &blen, eb);
            ck_assert_msg(ra == rb, "csr %d want %d: %d vs %d (%s / %s)", i, want, ra, rb, ea, eb);
            ck_assert_str_eq(ea, eb);
            ck_assert_uint_eq(alen, blen);
            if (ra == 0) {
                ck_assert_int_eq(memcmp(a, b, alen), 0);
                accepted++;
            }
            free(a), free(b);
        }
    /* the agent's, the subject one as ecdsa, the RSA one as rsa: the others are refused */
    ck_assert_int_eq(accepted, 3);
    {
        unsigned char *spki = NULL;
        size_t len = 0;
        ck_assert_int_eq(csr_check_fast(v, pems[1], strlen(pems[1]), CSR_KEY_EC_P256, &spki, &len, err),
                         MESHCA_EINVAL);
        ck_assert_str_eq(err, "csr: signature does not verify with the request's own key "
                              "(no proof of possession of the private key)");
        ck_assert_ptr_null(spki);
    }
    pki_p256_verifier_free(v);
    for (int i = 0; i < 6; i++)
        free(pems[i]);
    EVP_PKEY_free(ec), EVP_PKEY_free(other), EVP_PKEY_free(rsa);
}
END_TEST

START_TEST(csr_body_over_64k_gets_413_and_csr_over_16k_gets_400)
{
    char *token = issue("default", "web-01", time(NULL), 3600);
    size_t big = API_MAX_BODY_BYTES + 1;
    char *body = malloc(API_HARD_BODY_BYTES + 2);
    memset(body, ' ', API_HARD_BODY_BYTES + 1);
    body[big] = '\0';
    reply r = http((call){"POST", "/v1/meshes/default/dataplanes/web-01/csr", token, .body = body,
                          .body_len = big});
    assert_error(r, 413, "too-large", "request body of 65537 bytes is larger than 65536 bytes");
    /* Above evhttp's own limit: refused by libevent from the Content-Length, which answers 413
     * and closes; a client still uploading may see the close first (seen under ASan). */
    char url[256], auth[128];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/v1/meshes/default/dataplanes/web-01/csr",
             api_server_port(server));
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    struct curl_slist *hdrs = curl_slist_append(curl_slist_append(NULL, auth), "Expect:");
    CURL *h = curl_easy_init();
    reply big_reply = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)API_HARD_BODY_BYTES + 1);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &big_reply);
    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &big_reply.status);
    ck_assert_msg((cc == CURLE_OK && big_reply.status == 413) || cc == CURLE_SEND_ERROR,
                  "curl %d, status %ld: %s", cc, big_reply.status, big_reply.body);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    ck_assert_int_eq(double_ctl.csr_count, 0);
    free(body);

    /* Within the body limit but above the CSR limit. */
    size_t csr_len = CSR_MAX_PEM_BYTES + 100;
    char *pem = malloc(csr_len + 1);
    memset(pem, 'A', csr_len);
    memcpy(pem, "-----BEGIN CERTIFICATE REQUEST-----\n", 36);
    pem[csr_len] = '\0';
    body = csr_body(pem);
    r = http((call){"POST", "/v1/meshes/default/dataplanes/web-01/csr", token, .body = body});
    assert_error(r, 400, "invalid-csr", "larger than the limit of 16384");
    free(pem);
    free(body);

    r = http((call){"POST", "/v1/meshes/default/dataplanes/web-01/csr", token,
                    .body = "{\"csr\":\"hello\"}"});
    assert_error(r, 400, "invalid-csr", "not a PEM certificate request");
    r = http((call){"POST", "/v1/meshes/default/dataplanes/web-01/csr", token, .body = "[1]"});
    assert_error(r, 400, "invalid", "not a JSON object");
    token_free(token);
}
END_TEST

/* ---- blocking queries ------------------------------------------------------------------------ */

/* On the loop thread: the identity of default/web-01 changes, as the controller would signal. */
static void bump_generation(evutil_socket_t fd, short what, void *arg)
{
    double_ctl.generation[0]++;
    int before = double_ctl.identity_reads;
    api_server_notify(server, "default", "web-01");
    double_ctl.notify_reads = double_ctl.identity_reads - before;
}

/* A notify without a change (as a CSR's pending key is): the parked query stays. */
static void notify_unchanged(evutil_socket_t fd, short what, void *arg)
{
    int before = double_ctl.identity_reads;
    api_server_notify(server, "default", "web-01");
    double_ctl.unchanged_reads += double_ctl.identity_reads - before;
    double_ctl.unchanged_notifies++;
}

static void *notify_then_bump_later(void *arg)
{
    for (int i = 0; i < 500 && api_server_waiters(server) == 0; i++)
        usleep(10000);
    struct timeval zero = {0, 0};
    event_base_once(base, -1, EV_TIMEOUT, notify_unchanged, NULL, &zero);
    /* Still parked after it (bounded), then a real change answers it. */
    for (int i = 0; i < 500 && double_ctl.unchanged_notifies == 0; i++)
        usleep(10000);
    *(size_t *)arg = api_server_waiters(server);
    event_base_once(base, -1, EV_TIMEOUT, bump_generation, NULL, &zero);
    return NULL;
}

/* On the loop thread: default/web-01 deleted and applied again an hour from now (its new
 * identity's since), then its identity issued: the change a parked query is answered on. */
static void recreate_and_bump(evutil_socket_t fd, short what, void *arg)
{
    double_ctl.since[0] = (int64_t)time(NULL) + 3600;
    bump_generation(fd, what, arg);
}

static void *recreate_later(void *arg)
{
    for (int i = 0; i < 500 && api_server_waiters(server) == 0; i++)
        usleep(10000);
    *(size_t *)arg = api_server_waiters(server);
    struct timeval zero = {0, 0};
    event_base_once(base, -1, EV_TIMEOUT, recreate_and_bump, NULL, &zero);
    return NULL;
}

static void *bump_later(void *arg)
{
    /* Wait until the query is parked, then change the identity. */
    for (int i = 0; i < 500 && api_server_waiters(server) == 0; i++)
        usleep(10000);
    struct timeval zero = {0, 0};
    event_base_once(base, -1, EV_TIMEOUT, bump_generation, NULL, &zero);
    return NULL;
}

/* The hostile corpus's API cases (issue 14): bodies that are not what a handler expects get a
 * 400 with the code that names it, and reach the controller neither as a CSR nor as an ack. */
START_TEST(hostile_api_bodies_get_400_with_their_code_and_reach_nothing)
{
    static const struct {
        const char *method, *what, *body, *code, *text;
    } cases[] = {
        {"POST", "csr", "not json at all", "invalid", "request body is not a JSON object"},
        {"POST", "csr", "[\"csr\"]", "invalid", "request body is not a JSON object"},
        {"POST", "csr", "{\"csr\": 7}", "invalid-csr", "field 'csr' (a PEM string) is missing"},
        {"POST", "csr", "{\"csr\": \"-----BEGIN CERTIFICATE REQUEST-----\\nbm90IGEgQ1NS\\n"
                       "-----END CERTIFICATE REQUEST-----\\n\"}", "invalid-csr", "csr"},
        {"POST", "csr", "{\"csr\": \"\\u0000\"}", "invalid", "not a JSON object"},
        {"PUT", "ack", "{\"generation\": \"1\"}", "invalid", "'generation' must be a positive integer"},
        {"PUT", "ack", "{\"generation\": -1}", "invalid", "'generation' must be a positive integer"},
        {"PUT", "ack", "{\"generation\": 1e400}", "invalid", "not a JSON object"},
        {"PUT", "ack", "{\"generation\": 99999999999999999999999}", "invalid", "not a JSON object"},
        {"PUT", "ack", "{}", "invalid", "'generation' must be a positive integer"},
    };
    char *token = issue("default", "web-01", time(NULL), 3600);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "/v1/meshes/default/dataplanes/web-01/%s", cases[i].what);
        double_ctl.csr_count = 0;
        double_ctl.acked = 0;
        reply r = http((call){cases[i].method, path, token, .body = cases[i].body});
        assert_error(r, 400, cases[i].code, cases[i].text);
        ck_assert_msg(double_ctl.csr_count == 0 && double_ctl.acked == 0,
                      "case %zu (%s) reached the controller", i, cases[i].body);
    }
    token_free(token);
}
END_TEST

START_TEST(blocking_query_returns_because_of_notify)
{
    char *token = issue("default", "web-01", time(NULL), 3600);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, bump_later, NULL), 0);
    time_t start = time(NULL);
    reply r = http((call){"GET", IDENTITY("default", "web-01") "?index=1&wait=30s", token});
    pthread_join(t, NULL);
    ck_assert_int_eq(r.status, 200);
    /* Answered before its 30 s wait: only the notify can have ended it (without it the query
     * answers at 30 s, seen when notify was disabled), and with the changed identity. */
    ck_assert_int_lt(time(NULL) - start, 30);
    ck_assert_str_eq(r.index, "2");
    ck_assert_ptr_nonnull(strstr(r.body, "\"generation\":2"));
    ck_assert_uint_eq(api_server_waiters(server), 0);
    token_free(token);
}
END_TEST

/* A client certificate older than the identity's since (the dataplane deleted and applied
 * again), or for a dataplane without an identity, is 401 on every dataplane endpoint, also for
 * a query parked before the change; the token and a certificate issued since are taken. */
START_TEST(certificate_older_than_the_identity_gets_401_also_when_parked)
{
    char cert[256], key[256];
    make_client_cert(mesh_ca, mesh_ca_key, "default", "web-01", "web-01", cert, key);
    /* Parked with a certificate the identity backs (since 0: a record from before since). */
    pthread_t t;
    size_t parked = 0;
    ck_assert_int_eq(pthread_create(&t, NULL, recreate_later, &parked), 0);
    reply r = http((call){"GET", IDENTITY("default", "web-01") "?index=1&wait=30s",
                          .cert_file = cert, .key_file = key});
    pthread_join(t, NULL);
    ck_assert_uint_eq(parked, 1);
    /* The change answers it 401, not with the new identity's certificate. */
    assert_error(r, 401, "unauthenticated",
                 "client certificate refused: default/web-01 was registered again after this "
                 "certificate was issued; authenticate with the dataplane token");
    ck_assert_ptr_null(strstr(r.body, "CERT"));
    ck_assert_uint_eq(api_server_waiters(server), 0);

    /* At once, not parked, on the identity; the ack never reaches the controller. */
    r = http((call){"GET", IDENTITY("default", "web-01") "?index=99&wait=30s", .cert_file = cert,
                    .key_file = key});
    assert_error(r, 401, "unauthenticated", "was registered again");
    ck_assert_uint_eq(api_server_waiters(server), 0);
    /* The token is taken. */
    char *token = issue("default", "web-01", time(NULL), 3600);
    r = http((call){"GET", IDENTITY("default", "web-01"), token});
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    token_free(token);
    /* A certificate issued since the identity was created is taken. */
    double_ctl.since[0] = (int64_t)time(NULL);
    r = http((call){"GET", IDENTITY("default", "web-01"), .cert_file = cert, .key_file = key});
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    /* No identity at all: refused whatever the certificate's age. */
    double_ctl.since[0] = IDENTITY_SINCE_NONE;
    r = http((call){"GET", IDENTITY("default", "web-01"), .cert_file = cert, .key_file = key});
    assert_error(r, 401, "unauthenticated", "default/web-01 has no identity in the store");
}
END_TEST

/* On the test thread: once a query is parked, the token of default/web-01 is revoked, then its
 * identity changes (the notify that used to answer it with the new certificate). */
static void *revoke_then_bump_later(void *arg)
{
    char err[MESHCA_ERRBUF] = "";
    for (int i = 0; i < 500 && api_server_waiters(server) == 0; i++)
        usleep(10000);
    *(size_t *)arg = api_server_waiters(server);
    size_t n = 0;
    ck_assert_msg(token_revoke(st, "default", "web-01", &n, err) == 0, "revoke: %s", err);
    ck_assert_uint_eq(n, 1);
    struct timeval zero = {0, 0};
    event_base_once(base, -1, EV_TIMEOUT, bump_generation, NULL, &zero);
    return NULL;
}

/* Regression: a blocking query parked with a token was answered with the identity after the
 * token was revoked (by the notify of a change) or had expired (at the end of its wait): the
 * token was looked up only when the query arrived. Both now get the 401 a new request gets. */
START_TEST(token_revoked_or_expired_while_parked_gets_401_not_the_identity)
{
    char *token = issue("default", "web-01", time(NULL), 3600);
    pthread_t t;
    size_t parked = 0;
    ck_assert_int_eq(pthread_create(&t, NULL, revoke_then_bump_later, &parked), 0);
    reply r = http((call){"GET", IDENTITY("default", "web-01") "?index=1&wait=30s", token});
    pthread_join(t, NULL);
    ck_assert_uint_eq(parked, 1);
    ck_assert_int_eq(double_ctl.generation[0], 2); /* the change happened, and was not sent */
    assert_error(r, 401, "unauthenticated", "unknown or revoked token");
    ck_assert_ptr_null(strstr(r.body, "CERT"));
    ck_assert_str_eq(r.index, "");
    ck_assert_uint_eq(api_server_waiters(server), 0);
    token_free(token);

    /* Valid for 2 s more when parked for 3 s: the end of the wait answers 401, not generation 2. */
    token = issue("default", "web-01", time(NULL) - 3600 + 2, 3600);
    r = http((call){"GET", IDENTITY("default", "web-01") "?index=2&wait=3s", token});
    assert_error(r, 401, "unauthenticated", "token: expired (dataplane default/web-01)");
    ck_assert_str_eq(r.index, "");
    ck_assert_uint_eq(api_server_waiters(server), 0);
    /* A token still valid at the end of its wait gets the identity as before. */
    char *fresh = issue("default", "web-01", time(NULL), 3600);
    r = http((call){"GET", IDENTITY("default", "web-01") "?index=2&wait=1s", fresh});
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    ck_assert_str_eq(r.index, "2");
    token_free(fresh);
    token_free(token);
}
END_TEST

/* A notify that changes no generation reads only the generation (identity_generation), not the
 * identity and its bundle, and leaves the query parked; the next change answers it. */
START_TEST(notify_without_a_change_reads_only_the_generation_and_keeps_the_query)
{
    char *token = issue("default", "web-01", time(NULL), 3600);
    pthread_t t;
    size_t parked_after = 0;
    ck_assert_int_eq(pthread_create(&t, NULL, notify_then_bump_later, &parked_after), 0);
    reply r = http((call){"GET", IDENTITY("default", "web-01") "?index=1&wait=30s", token});
    pthread_join(t, NULL);
    ck_assert_int_eq(double_ctl.unchanged_notifies, 1);
    ck_assert_int_eq(parked_after, 1);
    /* the unchanged notify read the generation only; the bump's read the identity once */
    ck_assert_int_eq(double_ctl.unchanged_reads, 0);
    ck_assert_int_ge(double_ctl.generation_reads, 2);
    ck_assert_int_eq(double_ctl.notify_reads, 1);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.index, "2");
    token_free(token);
}
END_TEST

START_TEST(blocking_query_returns_at_wait_without_a_change)
{
    char *token = issue("default", "web-01", time(NULL), 3600);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    /* 3 s: longer than the 2 s connection timeout, which must not cut a parked query. */
    reply r = http((call){"GET", IDENTITY("default", "web-01") "?index=1&wait=3s", token});
    clock_gettime(CLOCK_MONOTONIC, &b);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.index, "1");
    double elapsed = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    ck_assert_msg(elapsed >= 2.9, "answered after %.2fs, before the 3s wait", elapsed);
    /* Above the index: answered at once. */
    r = http((call){"GET", IDENTITY("default", "web-01") "?index=0&wait=30s", token});
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.index, "1");
    r = http((call){"GET", IDENTITY("default", "web-01") "?index=x", token});
    assert_error(r, 400, "invalid", "index must be a generation number");
    token_free(token);
}
END_TEST

START_TEST(blocking_query_of_a_closed_connection_is_forgotten)
{
    char *token = issue("default", "web-01", time(NULL), 3600);
    char url[256], auth[128];
    snprintf(url, sizeof(url),
             "https://127.0.0.1:%u" IDENTITY("default", "web-01") "?index=1&wait=30s",
             api_server_port(server));
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 1000L);
    ck_assert_int_eq(curl_easy_perform(h), CURLE_OPERATION_TIMEDOUT);
    curl_easy_cleanup(h); /* closes the connection */
    curl_slist_free_all(hdrs);
    for (int i = 0; i < 300 && api_server_waiters(server) > 0; i++)
        usleep(10000);
    ck_assert_uint_eq(api_server_waiters(server), 0);
    /* Notifying afterwards must not touch the freed request. */
    struct timeval zero = {0, 0};
    event_base_once(base, -1, EV_TIMEOUT, bump_generation, NULL, &zero);
    ck_assert_int_eq(http((call){"GET", "/healthz"}).status, 200);
    token_free(token);
}
END_TEST

START_TEST(blocking_queries_over_the_per_dataplane_limit_get_429)
{
    char *token = issue("default", "web-01", time(NULL), 3600);
    char url[256], auth[128];
    snprintf(url, sizeof(url),
             "https://127.0.0.1:%u" IDENTITY("default", "web-01") "?index=1&wait=30s",
             api_server_port(server));
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    enum { N = API_MAX_WAITERS_PER_DATAPLANE + 1 };
    CURLM *multi = curl_multi_init();
    CURL *h[N];
    reply r[N];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        h[i] = curl_easy_init();
        curl_easy_setopt(h[i], CURLOPT_URL, url);
        curl_easy_setopt(h[i], CURLOPT_CAINFO, ca_file);
        curl_easy_setopt(h[i], CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(h[i], CURLOPT_WRITEDATA, &r[i]);
        curl_easy_setopt(h[i], CURLOPT_TIMEOUT, 60L);
        curl_multi_add_handle(multi, h[i]);
    }
    /* Run until one query is answered: the one over the limit, at once. */
    int running = N, done = 0, notified = 0;
    while (running > 0) {
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left)))
            if (msg->msg == CURLMSG_DONE)
                done++;
        if (done == 1 && !notified && api_server_waiters(server) == API_MAX_WAITERS_PER_DATAPLANE) {
            /* Release the parked ones. */
            struct timeval zero = {0, 0};
            event_base_once(base, -1, EV_TIMEOUT, bump_generation, NULL, &zero);
            notified = 1;
        }
        curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    int too_many = 0, answered = 0;
    for (int i = 0; i < N; i++) {
        long status = 0;
        curl_easy_getinfo(h[i], CURLINFO_RESPONSE_CODE, &status);
        if (status == 429) {
            too_many++;
            ck_assert_ptr_nonnull(strstr(r[i].body, "\"too-many-waiters\""));
            ck_assert_ptr_nonnull(
                strstr(r[i].body, "default/web-01 already has 8 blocking queries"));
        } else if (status == 200) {
            answered++;
        }
        curl_multi_remove_handle(multi, h[i]);
        curl_easy_cleanup(h[i]);
    }
    ck_assert_int_eq(notified, 1);
    ck_assert_int_eq(too_many, 1);
    ck_assert_int_eq(answered, API_MAX_WAITERS_PER_DATAPLANE);
    /* The 8 parked queries were answered from one read of the identity, not one each. */
    ck_assert_int_eq(double_ctl.notify_reads, 1);
    curl_multi_cleanup(multi);
    curl_slist_free_all(hdrs);
    token_free(token);
}
END_TEST

/* ---- ack and the client module ------------------------------------------------------------- */

START_TEST(client_fails_over_to_the_next_server_and_acks)
{
    char err[MESHCA_ERRBUF] = "", good[64];
    snprintf(good, sizeof(good), "https://127.0.0.1:%u/", api_server_port(server));
    /* Port 1 refuses connections: the client must go on to the second URL. */
    const char *servers[] = {"https://127.0.0.1:1", good};
    char *token = issue("default", "web-01", time(NULL), 3600);
    api_client_options o = API_CLIENT_OPTIONS_INIT;
    o.servers = servers;
    o.nservers = 2;
    o.ca_file = ca_file;
    o.token = token;
    o.rounds = 1;
    api_client *c = NULL;
    ck_assert_msg(api_client_new(&o, &c, err) == 0, "%s", err);
    json_t *body = NULL;
    uint64_t index = 0;
    ck_assert_msg(api_client_get_identity(c, "default", "web-01", 0, 0, &body, &index, err) == 0,
                  "%s", err);
    ck_assert_uint_eq(index, 1);
    ck_assert_str_eq(json_string_value(json_object_get(body, "backend")), "ca-1");
    json_decref(body);
    ck_assert_msg(api_client_put_ack(c, "default", "web-01", 1, err) == 0, "%s", err);
    ck_assert_uint_eq(double_ctl.acked, 1);
    /* A refusal is returned with the server's message, not retried as an outage. */
    ck_assert_int_eq(api_client_put_ack(c, "default", "web-02", 1, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "HTTP 403") && strstr(err, "may not act for default/web-02"), "%s",
                  err);
    api_client_free(c);

    const char *down[] = {"https://127.0.0.1:1"};
    o.servers = down;
    o.nservers = 1;
    o.rounds = 2;
    o.backoff_initial_ms = 10;
    ck_assert_int_eq(api_client_new(&o, &c, err), 0);
    ck_assert_int_eq(api_client_put_ack(c, "default", "web-01", 1, err), MESHCA_EUNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(err, "https://127.0.0.1:1"));
    api_client_free(c);
    token_free(token);
}
END_TEST

/* ---- tokens in the store ------------------------------------------------------------------- */

/* 1 when `needle` occurs in any file under dir. */
static int found_in_tree(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(path, &sb) < 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            found = found_in_tree(path, needle);
            continue;
        }
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        char *buf = malloc((size_t)sb.st_size + 1);
        size_t n = fread(buf, 1, (size_t)sb.st_size, f);
        fclose(f);
        found = memmem(buf, n, needle, strlen(needle)) != NULL;
        free(buf);
    }
    closedir(d);
    return found;
}

START_TEST(tokens_are_stored_as_hashes_only)
{
    char err[MESHCA_ERRBUF] = "";
    char *token = issue("default", "web-01", 1700000000, 3600);
    char *second = issue("other", "web-01", 1700000000, 7200);
    ck_assert_int_eq(found_in_tree(tmpdir, token), 0);
    ck_assert_int_eq(found_in_tree(tmpdir, second), 0);
    /* The scan can find what is there: the dataplane name and the expiry are stored. */
    ck_assert_int_eq(found_in_tree(tmpdir, "2023-11-14T23:13:20Z"), 1);

    token_info *list = NULL;
    size_t n = 0;
    ck_assert_int_eq(token_list(st, NULL, &list, &n, err), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(list[0].mesh, "default");
    ck_assert_str_eq(list[0].dataplane, "web-01");
    ck_assert_int_eq(list[0].expires_at, 1700003600);
    ck_assert_str_eq(list[1].mesh, "other");
    free(list);
    ck_assert_int_eq(token_list(st, "other", &list, &n, err), 0);
    ck_assert_uint_eq(n, 1);
    free(list);

    token_info who;
    ck_assert_int_eq(token_verify(st, second, "default", 1700000001, &who, err), 0);
    ck_assert_str_eq(who.mesh, "other");
    ck_assert_int_eq(token_verify(st, second, "other", 1700007200, &who, err), MESHCA_EEXPIRED);
    ck_assert_int_eq(token_issue(st, "default", "web-01", 0, 0, &token, err), MESHCA_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "ttl"));
    token_free(token);
    token_free(second);
}
END_TEST

START_TEST(control_plane_ca_is_created_once_and_kept)
{
    char err[MESHCA_ERRBUF] = "";
    cpca a = {NULL, NULL}, b = {NULL, NULL};
    ck_assert_int_eq(cpca_load(st, 0, time(NULL), &a, err), 0);
    ck_assert_int_eq(cpca_load(st, 1, time(NULL), &b, err), 0);
    ck_assert_str_eq(a.cert_pem, b.cert_pem);
    cpca_free(&b);
    char *chain = NULL, *key = NULL;
    ck_assert_int_eq(cpca_server_cert(&a, "0.0.0.0:5690", (const char *[]){"a,DNS:evil"}, 1,
                                      time(NULL), &chain, &key, err),
                     MESHCA_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "--tls-san: 'a,DNS:evil'"));
    ck_assert_int_eq(cpca_server_cert(&a, "[::1]:5690",
                                      (const char *[]){"cp.example.com", "10.0.0.1"}, 2, time(NULL),
                                      &chain, &key, err),
                     0);
    X509 *leaf = NULL;
    ck_assert_int_eq(pki_cert_from_pem(chain, strlen(chain), &leaf, err), 0);
    ck_assert_int_eq(X509_check_ip_asc(leaf, "::1", 0), 1);
    ck_assert_int_eq(X509_check_ip_asc(leaf, "10.0.0.1", 0), 1);
    ck_assert_int_eq(X509_check_host(leaf, "cp.example.com", 0, 0, NULL), 1);
    ck_assert_int_ne(X509_check_host(leaf, "evil.example.com", 0, 0, NULL), 1);
    X509_free(leaf);
    free(chain);
    pki_free_secret(key);
    cpca_free(&a);
}
END_TEST

START_TEST(connections_are_kept_alive)
{
    char url[128];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/healthz", api_server_port(server));
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    reply r = {0};
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    long connects = -1;
    ck_assert_int_eq(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
    ck_assert_int_eq(connects, 1);
    ck_assert_int_eq(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
    ck_assert_int_eq(connects, 0); /* the second request reused the connection */
    curl_easy_cleanup(h);
}
END_TEST

/* GET /healthz over a raw OpenSSL connection made with ctx; returns the status line's code, or
 * -1 when the handshake fails. */
static int healthz_with(SSL_CTX *ctx)
{
    char hostport[64], buf[256] = "";
    snprintf(hostport, sizeof(hostport), "127.0.0.1:%u", api_server_port(server));
    BIO *conn = BIO_new_connect(hostport);
    ck_assert_ptr_nonnull(conn);
    SSL *ssl = SSL_new(ctx);
    ck_assert_ptr_nonnull(ssl);
    ck_assert_int_eq(SSL_set1_host(ssl, "127.0.0.1"), 1);
    SSL_set_bio(ssl, conn, conn);
    int status = -1;
    if (SSL_connect(ssl) == 1) {
        static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        ck_assert_int_eq(SSL_write(ssl, req, (int)strlen(req)), (int)strlen(req));
        int n = SSL_read(ssl, buf, sizeof(buf) - 1);
        ck_assert_int_gt(n, 12);
        buf[n] = '\0';
        ck_assert_int_eq(sscanf(buf, "HTTP/1.1 %d", &status), 1);
    }
    ERR_clear_error();
    SSL_free(ssl);
    return status;
}

/* GET path over a raw OpenSSL connection made with ctx, offering `resume` (may be NULL);
 * *ret_session (may be NULL) gets the connection's session, *ret_reused whether the server
 * resumed it. Returns the status line's code, or -1 when the handshake fails. */
/* The client's new-session callback: keeps the last session (ticket) in the context. */
static int keep_session(SSL *ssl, SSL_SESSION *sess)
{
    SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
    SSL_SESSION_free(SSL_CTX_get_ex_data(ctx, 0));
    SSL_CTX_set_ex_data(ctx, 0, sess);
    return 1; /* the reference is ours */
}

static int get_with_session(SSL_CTX *ctx, const char *path, SSL_SESSION *resume,
                            SSL_SESSION **ret_session, int *ret_reused)
{
    char hostport[64], req[256], buf[8192] = "";
    snprintf(hostport, sizeof(hostport), "127.0.0.1:%u", api_server_port(server));
    BIO *conn = BIO_new_connect(hostport);
    ck_assert_ptr_nonnull(conn);
    SSL *ssl = SSL_new(ctx);
    ck_assert_ptr_nonnull(ssl);
    ck_assert_int_eq(SSL_set1_host(ssl, "127.0.0.1"), 1);
    if (resume)
        ck_assert_int_eq(SSL_set_session(ssl, resume), 1);
    SSL_set_bio(ssl, conn, conn);
    int status = -1;
    if (SSL_connect(ssl) == 1) {
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
        ck_assert_int_eq(SSL_write(ssl, req, (int)strlen(req)), (int)strlen(req));
        /* The answer's first record: a TLS 1.3 server's session tickets come before it. */
        int n = SSL_read(ssl, buf, sizeof(buf) - 1);
        ck_assert_int_gt(n, 12);
        buf[n] = '\0';
        ck_assert_int_eq(sscanf(buf, "HTTP/1.1 %d", &status), 1);
        if (ret_reused)
            *ret_reused = SSL_session_reused(ssl);
        if (ret_session) {
            *ret_session = SSL_CTX_get_ex_data(ctx, 0);
            SSL_CTX_set_ex_data(ctx, 0, NULL);
        }
        /* A connection freed without a close_notify sent marks its session not resumable. */
        (void)SSL_shutdown(ssl);
    }
    ERR_clear_error();
    SSL_free(ssl);
    return status;
}

/* Regression: the server asked for client certificates without a session id context, so
 * OpenSSL ended every resumption attempt (a TLS 1.2 session id or a TLS 1.3 ticket) with a
 * fatal internal_error alert: a client that caches sessions (Go, curl's share, nginx) could not
 * reconnect. A resumed session still authenticates a dataplane by its certificate. */
START_TEST(tls_sessions_resume_and_keep_the_client_certificate)
{
    char err[MESHCA_ERRBUF] = "", cert[256], key[256];
    make_client_cert(mesh_ca, mesh_ca_key, "default", "web-01", "resume", cert, key);
    cpca ca = {NULL, NULL};
    ck_assert_int_eq(cpca_load(st, 0, time(NULL), &ca, err), 0);
    FILE *f = fopen(cert, "r");
    char cert_pem[8192] = "", key_pem[8192] = "";
    ck_assert_uint_gt(fread(cert_pem, 1, sizeof(cert_pem) - 1, f), 0);
    fclose(f);
    f = fopen(key, "r");
    ck_assert_uint_gt(fread(key_pem, 1, sizeof(key_pem) - 1, f), 0);
    fclose(f);
    for (int v = 0; v < 2; v++) {
        SSL_CTX *ctx = NULL;
        ck_assert_msg(cpca_client_ctx(ca.cert_pem, cert_pem, key_pem, &ctx, err) == 0, "%s", err);
        ck_assert_int_eq(
            SSL_CTX_set_max_proto_version(ctx, v ? TLS1_2_VERSION : TLS1_3_VERSION), 1);
        SSL_CTX_set_session_cache_mode(ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, keep_session);
        SSL_SESSION *sess = NULL;
        int reused = -1;
        ck_assert_int_eq(get_with_session(ctx, IDENTITY("default", "web-01"), NULL, &sess, &reused),
                         200);
        ck_assert_int_eq(reused, 0);
        ck_assert_ptr_nonnull(sess);
        ck_assert_msg(SSL_SESSION_is_resumable(sess) == 1, "TLS 1.%d: session not resumable",
                      v ? 2 : 3);
        /* Before the fix: -1, the handshake ended by the server's alert. */
        SSL_SESSION *next = NULL;
        int status = get_with_session(ctx, IDENTITY("default", "web-01"), sess, &next, &reused);
        ck_assert_msg(status == 200, "TLS 1.%d resumption: status %d", v ? 2 : 3, status);
        ck_assert_int_eq(reused, 1);
        /* The certificate of the resumed session is still the one checked: web-01's only. A
         * TLS 1.3 client resumes with the ticket of its last connection (ready for one use). */
        SSL_SESSION *third = next ? next : sess;
        ck_assert_int_eq(get_with_session(ctx, IDENTITY("default", "web-02"), third, NULL, &reused),
                         403);
        ck_assert_int_eq(reused, 1);
        SSL_SESSION_free(sess);
        SSL_SESSION_free(next);
        SSL_SESSION_free(SSL_CTX_get_ex_data(ctx, 0));
        SSL_CTX_free(ctx);
    }
    cpca_free(&ca);
}
END_TEST

START_TEST(client_context_trusts_the_control_plane_ca_only)
{
    char err[MESHCA_ERRBUF] = "";
    cpca ca = {NULL, NULL};
    ck_assert_int_eq(cpca_load(st, 0, time(NULL), &ca, err), 0);
    SSL_CTX *ctx = NULL;
    ck_assert_msg(cpca_client_ctx(ca.cert_pem, NULL, NULL, &ctx, err) == 0, "%s", err);
    ck_assert_int_eq(healthz_with(ctx), 200);
    SSL_CTX_free(ctx);
    /* Another CA: the server's certificate must not verify. */
    ck_assert_int_eq(cpca_client_ctx(double_ctl.bundle_pem, NULL, NULL, &ctx, err), 0);
    ck_assert_int_eq(healthz_with(ctx), -1);
    SSL_CTX_free(ctx);
    ck_assert_int_eq(cpca_client_ctx(ca.cert_pem, ca.cert_pem, NULL, &ctx, err), MESHCA_EINVAL);
    cpca_free(&ca);
}
END_TEST

START_TEST(server_context_from_the_users_files)
{
    char err[MESHCA_ERRBUF] = "", cert[256], key[256];
    make_client_cert(mesh_ca, mesh_ca_key, "default", "web-01", "user", cert, key);
    SSL_CTX *ctx = NULL;
    ck_assert_msg(cpca_server_ctx_from_files(cert, key, &ctx, err) == 0, "%s", err);
    SSL_CTX_free(ctx);
    ck_assert_int_eq(cpca_server_ctx_from_files("/nonexistent/cert.pem", key, &ctx, err),
                     MESHCA_EIO);
    ck_assert_ptr_nonnull(strstr(err, "--tls-cert: cannot open /nonexistent/cert.pem"));
    /* A key that is not the certificate's. */
    char cert2[256], key2[256];
    make_client_cert(mesh_ca, mesh_ca_key, "default", "web-02", "user2", cert2, key2);
    ck_assert_int_eq(cpca_server_ctx_from_files(cert, key2, &ctx, err), MESHCA_ECRYPTO);
    ck_assert_ptr_nonnull(strstr(err, "certificate and key do not go together"));
}
END_TEST

START_TEST(headers_over_16k_are_refused)
{
    char url[128];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/healthz", api_server_port(server));
    size_t n = API_MAX_HEADER_BYTES + 100;
    char *big = malloc(n + 16);
    memcpy(big, "X-Padding: ", 11);
    memset(big + 11, 'a', n);
    big[11 + n] = '\0';
    struct curl_slist *hdrs = curl_slist_append(NULL, big);
    CURL *h = curl_easy_init();
    reply r = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    ck_assert_int_eq(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    /* evhttp refuses them while reading, before any handler (healthz would answer 200). */
    ck_assert_msg(r.status == 400, "status %ld: %s", r.status, r.body);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    free(big);
}
END_TEST

START_TEST(slow_client_is_disconnected_at_the_timeout)
{
    char err[MESHCA_ERRBUF] = "", hostport[64], buf[512];
    cpca ca = {NULL, NULL};
    ck_assert_int_eq(cpca_load(st, 0, time(NULL), &ca, err), 0);
    SSL_CTX *ctx = NULL;
    ck_assert_int_eq(cpca_client_ctx(ca.cert_pem, NULL, NULL, &ctx, err), 0);
    cpca_free(&ca);
    snprintf(hostport, sizeof(hostport), "127.0.0.1:%u", api_server_port(server));
    BIO *conn = BIO_new_connect(hostport);
    ck_assert_int_eq(BIO_do_connect(conn), 1);
    /* Bound the test: the server must close long before this. */
    struct timeval tv = {15, 0};
    ck_assert_int_eq(
        setsockopt((int)BIO_get_fd(conn, NULL), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    SSL *ssl = SSL_new(ctx);
    SSL_set_bio(ssl, conn, conn);
    ck_assert_int_eq(SSL_connect(ssl), 1);
    /* Half a request line, then nothing: a slow (or malicious) client. */
    ck_assert_int_gt(SSL_write(ssl, "GET /healthz HTTP/1.1\r\n", 23), 0);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int n = SSL_read(ssl, buf, sizeof(buf));
    clock_gettime(CLOCK_MONOTONIC, &b);
    /* Closed by the server (0 or an error), not by our 15 s receive timeout. */
    ck_assert_int_le(n, 0);
    ck_assert_int_lt(b.tv_sec - a.tv_sec, 14);
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}
END_TEST

static Suite *api_suite(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("api");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, token_of_one_dataplane_gets_403_for_another_dataplane_and_mesh);
    tcase_add_test(tc, revoked_token_gets_401_at_once);
    tcase_add_test(tc, certificate_older_than_the_identity_gets_401_also_when_parked);
    tcase_add_test(tc, token_revoked_or_expired_while_parked_gets_401_not_the_identity);
    tcase_add_test(tc, expired_token_gets_401);
    tcase_add_test(tc, missing_or_malformed_credentials_get_401);
    tcase_add_test(tc, healthz_needs_no_credentials_and_unknown_paths_get_json_404);
    tcase_add_test(tc, mtls_certificate_of_dataplane_a_gets_403_on_dataplane_b);
    tcase_add_test(tc, mtls_certificate_of_another_ca_gets_401);
    tcase_add_test(tc, csr_is_accepted_and_only_its_public_key_reaches_the_controller);
    tcase_add_test(tc, csr_with_bad_signature_gets_400_naming_proof_of_possession);
    tcase_add_test(tc, csr_with_wrong_key_type_gets_400_naming_both_types);
    tcase_add_test(tc, csr_flood_of_one_dataplane_gets_429_past_the_burst);
    tcase_add_test(tc, csr_limit_refills_one_per_interval);
    tcase_add_test(tc, csr_body_over_64k_gets_413_and_csr_over_16k_gets_400);
    tcase_add_test(tc, csr_fast_check_gives_csr_checks_verdict_message_and_key);
    tcase_add_test(tc, hostile_api_bodies_get_400_with_their_code_and_reach_nothing);
    tcase_add_test(tc, blocking_query_returns_because_of_notify);
    tcase_add_test(tc, notify_without_a_change_reads_only_the_generation_and_keeps_the_query);
    tcase_add_test(tc, blocking_query_returns_at_wait_without_a_change);
    tcase_add_test(tc, blocking_query_of_a_closed_connection_is_forgotten);
    tcase_add_test(tc, blocking_queries_over_the_per_dataplane_limit_get_429);
    tcase_add_test(tc, client_fails_over_to_the_next_server_and_acks);
    tcase_add_test(tc, tokens_are_stored_as_hashes_only);
    tcase_add_test(tc, control_plane_ca_is_created_once_and_kept);
    tcase_add_test(tc, connections_are_kept_alive);
    tcase_add_test(tc, headers_over_16k_are_refused);
    tcase_add_test(tc, slow_client_is_disconnected_at_the_timeout);
    tcase_add_test(tc, client_context_trusts_the_control_plane_ca_only);
    tcase_add_test(tc, tls_sessions_resume_and_keep_the_client_certificate);
    tcase_add_test(tc, server_context_from_the_users_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Process-wide set-up, once: libevent locking (the test thread wakes the loop thread), and
     * SIGPIPE ignored as the controller does (server.h). */
    signal(SIGPIPE, SIG_IGN);
    if (evthread_use_pthreads() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 2;
    SRunner *sr = srunner_create(api_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
