/* test-extca.c - Check suite for the external CA clients: Vault (against its test double) and a real cfssl serve. */
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

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "check-util.h"
#include "manifests/manifest.h"
#include "manifests/node.h"
#include "reconciler/ca/cfssl_client.h"
#include "reconciler/ca/extca_pki.h"
#include "reconciler/ca/vault_client.h"
#include "reconciler/pki.h"

#define SCRIPTS MESHCA_SOURCE_ROOT "/test/extca"

/* ---- helpers ---------------------------------------------------------------------------- */

static char vault_dir[256], cfssl_dir[256], work_dir[256];
static int vault_port, cfssl_port;

static int read_port(const char *dir)
{
    char path[300], *s;
    int port;

    snprintf(path, sizeof(path), "%s/port", dir);
    s = test_slurp(path);
    port = (int)strtol(s, NULL, 10);
    free(s);
    return port;
}

static double elapsed_s(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* A backend conf tree from YAML text. */
static mnode *conf_yaml(const char *fmt, ...)
{
    static const char name[] = "mesh.yaml";
    char text[8192];
    mnode **docs = NULL;
    size_t ndocs = 0;
    diag_list diags = {0};
    mnode *conf;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    ck_assert_int_eq(manifest_parse_documents(name, text, strlen(text), &docs, &ndocs, &diags), 0);
    ck_assert_uint_eq(diags.count, 0);
    ck_assert_uint_eq(ndocs, 1);
    conf = docs[0];
    free(docs);
    diag_list_free(&diags);
    return conf;
}

typedef struct backend_fixture {
    mesh_backend b;
    ca_context ctx;
} backend_fixture;

static void init_backend(backend_fixture *f, const char *type, const char *name, mnode *conf)
{
    memset(f, 0, sizeof(*f));
    f->b.name.value = (char *)name;
    f->b.type.value = (char *)type;
    f->b.conf = conf;
    f->ctx.mesh = "default";
    f->ctx.backend = &f->b;
    f->ctx.backend_index = 0;
    f->ctx.now = time(NULL);
}

/* The errbuf must never hold the credential. */
static void assert_no_secret(const char *errbuf, const char *credential)
{
    ck_assert_msg(strstr(errbuf, credential) == NULL, "message leaks the credential: %s", errbuf);
    ck_assert_msg(strchr(errbuf, '\n') == NULL, "message is not one line: %s", errbuf);
}

static char *fresh_csr(const char *cn, EVP_PKEY **ret_key)
{
    EVP_PKEY *key = NULL;
    char *csr = NULL, err[PKI_ERRBUF];

    ck_assert_int_eq(pki_generate_key(false, 0, &key, err), 0);
    ck_assert_msg(extca_pki_make_csr(key, cn, NULL, 0, false, &csr, err) == 0, "%s", err);
    if (ret_key)
        *ret_key = key;
    else
        EVP_PKEY_free(key);
    return csr;
}

/* ---- the Vault PKI test double ------------------------------------------------------------ */

static void vault_up(void)
{
    snprintf(vault_dir, sizeof(vault_dir), "/tmp/test-extca-vault-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(vault_dir));
    /* The slow mount answers after 4 s; the tests that use it set a 1 s timeout. */
    ck_assert_int_eq(test_run("VAULT_DOUBLE_SLOW=4 timeout 30 bash %s/start-vault-double.sh %s",
                         SCRIPTS, vault_dir), 0);
    vault_port = read_port(vault_dir);
    ck_assert_int_gt(vault_port, 0);
}

static void vault_down(void)
{
    test_run("kill $(cat %s/pid) 2>/dev/null; rm -rf '%s'", vault_dir, vault_dir);
}

/* A vault conf for the double: token auth from its token file unless `auth` is given. */
static mnode *vault_conf(const char *pki, const char *role, const char *extra_cp, const char *auth)
{
    char auth_default[400];

    snprintf(auth_default, sizeof(auth_default), "auth: {token: {file: %s/token}}", vault_dir);
    return conf_yaml("fromCp:\n"
                     "  address: https://127.0.0.1:%d\n"
                     "  pki: %s\n"
                     "  role: %s\n"
                     "  tls: {caCert: {file: %s/tls-ca.pem}, serverName: vault.test}\n"
                     "  %s\n"
                     "%s",
                     vault_port, pki, role, vault_dir, auth ? auth : auth_default,
                     extra_cp ? extra_cp : "  namespace: mesh-team\n");
}

static vault_client *open_vault(backend_fixture *f, mnode *conf, long timeout_ms)
{
    vault_client_options o = VAULT_CLIENT_OPTIONS_INIT;
    vault_client *c = NULL;
    char err[MESHCA_ERRBUF];

    o.timeout_ms = timeout_ms;
    o.connect_timeout_ms = timeout_ms;
    init_backend(f, "vault", "ca-vault", conf);
    ck_assert_msg(vault_client_open(&f->ctx, &o, &c, err) == 0, "%s", err);
    return c;
}

static char *vault_token(void)
{
    char path[300], *t;

    snprintf(path, sizeof(path), "%s/token", vault_dir);
    t = test_slurp(path);
    t[strcspn(t, "\n")] = '\0';
    return t;
}

static int sign_web(vault_client *c, int64_t ttl_s, char **cert, char **chain, char *err)
{
    static const model_tag tags[] = {{(char *)"kuma.io/service", (char *)"web", {0}},
                                     {(char *)"version", (char *)"v1", {0}}};
    const char *uris[] = {"spiffe://default/web", "kuma://kuma.io/service/web",
                          "kuma://version/v1"};
    char *csr = fresh_csr(NULL, NULL), *cn = NULL;
    int rc;

    ck_assert_int_eq(vault_client_common_name(c, tags, 2, &cn, err), 0);
    ck_assert_str_eq(cn, "web");
    rc = vault_sign_csr(c, csr, cn, uris, 3, ttl_s, cert, chain, err);
    free(cn);
    free(csr);
    return rc;
}

START_TEST(vault_signs_csr_and_leaf_verifies_x509_strict_against_the_double_ca)
{
    backend_fixture f;
    mnode *conf = vault_conf("pki", "mesh", NULL, NULL);
    vault_client *c = open_vault(&f, conf, 10000);
    char err[MESHCA_ERRBUF], *cert = NULL, *chain = NULL, path[300], out[300];
    X509 *x;
    int64_t nb, na;

    ck_assert_msg(sign_web(c, 7200, &cert, &chain, err) == 0, "%s", err);
    snprintf(path, sizeof(path), "%s/leaf.pem", vault_dir);
    test_spit(path, cert);
    snprintf(out, sizeof(out), "%s/chain.pem", vault_dir);
    test_spit(out, chain);
    ck_assert_int_eq(test_run("openssl verify -x509_strict -CAfile %s/vault-ca.pem %s >/dev/null",
                         vault_dir, path), 0);
    ck_assert_int_eq(test_run("cmp -s %s %s/vault-ca.pem", out, vault_dir), 0);
    ck_assert_int_eq(test_run("openssl x509 -in %s -noout -ext subjectAltName | "
                         "grep -q 'URI:spiffe://default/web, URI:kuma://kuma.io/service/web, "
                         "URI:kuma://version/v1'", path), 0);
    ck_assert_int_eq(pki_cert_from_pem(cert, strlen(cert), &x, err), 0);
    ck_assert_int_eq(pki_cert_not_before(x, &nb), 0);
    ck_assert_int_eq(pki_cert_not_after(x, &na), 0);
    ck_assert_int_ge(na - nb, 7200);
    ck_assert_int_le(na - nb, 7200 + 120);
    X509_free(x);
    free(cert);
    free(chain);
    vault_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(vault_reuses_one_connection_across_requests)
{
    backend_fixture f;
    mnode *conf = vault_conf("pki", "mesh", NULL, NULL);
    vault_client *c = open_vault(&f, conf, 10000);
    char err[MESHCA_ERRBUF], *pem = NULL;

    for (int i = 0; i < 3; i++) {
        ck_assert_msg(vault_ca_chain(c, &pem, err) == 0, "%s", err);
        free(pem);
    }
    /* One TLS connection for all three (keep-alive): the double logs the client port. This is
     * the first test of the tcase to read /v1/pki/ca_chain, so its requests are the first three
     * (a later line of the slow mount's thread cannot interleave). */
    ck_assert_int_eq(test_run("grep 'GET /v1/pki/ca_chain 200' %s/requests.log | head -n 3 | "
                         "awk '{print $4}' | sort -u | wc -l | grep -qx 1", vault_dir), 0);
    ck_assert_int_eq(test_run("test $(grep -c 'GET /v1/pki/ca_chain 200' %s/requests.log) -ge 3",
                         vault_dir), 0);
    vault_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(vault_ca_chain_reads_ca_chain_and_falls_back_to_ca_pem)
{
    backend_fixture f;
    mnode *conf = vault_conf("pki-nochain", "mesh", NULL, NULL);
    vault_client *c = open_vault(&f, conf, 10000);
    char err[MESHCA_ERRBUF], *pem = NULL, path[300], *want;

    ck_assert_msg(vault_ca_chain(c, &pem, err) == 0, "%s", err);
    snprintf(path, sizeof(path), "%s/vault-ca.pem", vault_dir);
    want = test_slurp(path);
    ck_assert_str_eq(pem, want);
    ck_assert_int_eq(test_run("grep -q 'GET /v1/pki-nochain/ca_chain 200' %s/requests.log && "
                         "grep -q 'GET /v1/pki-nochain/ca/pem 200' %s/requests.log",
                         vault_dir, vault_dir), 0);
    free(pem);
    free(want);
    vault_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(vault_wrong_token_is_authentication_refused_without_printing_it)
{
    static const char bad[] = "hvs.WRONG-token-d3adb33f";
    backend_fixture f;
    char auth[200], err[MESHCA_ERRBUF], *cert = NULL, *chain = NULL;
    mnode *conf;
    vault_client *c;

    snprintf(auth, sizeof(auth), "auth: {token: {inlineString: \"%s\"}}", bad);
    conf = vault_conf("pki", "mesh", NULL, auth);
    c = open_vault(&f, conf, 10000);
    ck_assert_int_eq(sign_web(c, 3600, &cert, &chain, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "vault backend 'ca-vault' (mesh default)") &&
                  strstr(err, "authentication refused (HTTP 403)") &&
                  strstr(err, "Vault: permission denied") && strstr(err, "/v1/pki/sign/mesh"),
                  "%s", err);
    assert_no_secret(err, bad);
    ck_assert_ptr_null(cert);
    /* The apply-time check fails the same way. */
    ck_assert_int_eq(vault_check(c, 60, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "authentication refused"), "%s", err);
    assert_no_secret(err, bad);
    vault_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(vault_missing_namespace_is_refused)
{
    backend_fixture f;
    mnode *conf = vault_conf("pki", "mesh", "", NULL);
    vault_client *c = open_vault(&f, conf, 10000);
    char err[MESHCA_ERRBUF], *pem = NULL, *tok = vault_token();

    ck_assert_int_eq(vault_ca_chain(c, &pem, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "HTTP 403") && strstr(err, "permission denied"), "%s", err);
    assert_no_secret(err, tok);
    free(tok);
    vault_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(vault_5xx_is_unavailable_with_vaults_message_on_one_line)
{
    backend_fixture f;
    mnode *conf = vault_conf("pki-5xx", "mesh", NULL, NULL);
    vault_client *c = open_vault(&f, conf, 10000);
    char err[MESHCA_ERRBUF], *cert = NULL, *chain = NULL, *tok = vault_token();

    ck_assert_int_eq(sign_web(c, 3600, &cert, &chain, err), MESHCA_EUNAVAILABLE);
    ck_assert_msg(strstr(err, "vault backend 'ca-vault'") && strstr(err, "HTTP 500") &&
                  strstr(err, "Vault: 1 error occurred: * internal error: storage backend failed"),
                  "%s", err);
    assert_no_secret(err, tok);
    free(tok);
    vault_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(vault_answer_slower_than_timeout_is_unavailable_in_bounded_time)
{
    backend_fixture f;
    mnode *conf = vault_conf("pki-slow", "mesh", NULL, NULL);
    vault_client *c = open_vault(&f, conf, 1000);
    char err[MESHCA_ERRBUF], *cert = NULL, *chain = NULL, *tok = vault_token();
    struct timespec t0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(sign_web(c, 3600, &cert, &chain, err), MESHCA_EUNAVAILABLE);
    ck_assert_msg(elapsed_s(&t0) < 3.0, "took %.1f s", elapsed_s(&t0));
    ck_assert_msg(strstr(err, "vault backend 'ca-vault'") && strstr(err, "unreachable") &&
                  strstr(err, "timed out"), "%s", err);
    assert_no_secret(err, tok);
    free(tok);
    vault_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(vault_malformed_body_is_an_io_error)
{
    backend_fixture f;
    mnode *conf = vault_conf("pki-bad", "mesh", NULL, NULL);
    vault_client *c = open_vault(&f, conf, 10000);
    char err[MESHCA_ERRBUF], *cert = NULL, *chain = NULL;

    ck_assert_int_eq(sign_web(c, 3600, &cert, &chain, err), MESHCA_EIO);
    ck_assert_msg(strstr(err, "vault backend 'ca-vault'") &&
                  strstr(err, "malformed answer from Vault (not JSON)"), "%s", err);
    vault_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(vault_ttl_above_role_max_ttl_is_refused_as_such)
{
    backend_fixture f;
    mnode *conf = vault_conf("pki", "short", NULL, NULL);
    vault_client *c = open_vault(&f, conf, 10000);
    char err[MESHCA_ERRBUF], *cert = NULL, *chain = NULL;

    ck_assert_int_eq(sign_web(c, 7200, &cert, &chain, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "ttl 7200s is above the max_ttl of role 'short'") &&
                  strstr(err, "Vault: TTL \"2h0m0s\" is longer than permitted maxTTL \"1h0m0s\""),
                  "%s", err);
    ck_assert_ptr_null(cert);
    /* Within max_ttl the same role signs. */
    ck_assert_msg(sign_web(c, 1800, &cert, &chain, err) == 0, "%s", err);
    free(cert);
    free(chain);
    vault_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(vault_unknown_role_is_refused_with_vaults_message)
{
    backend_fixture f;
    mnode *conf = vault_conf("pki", "mseh", NULL, NULL);
    vault_client *c = open_vault(&f, conf, 10000);
    char err[MESHCA_ERRBUF], *cert = NULL, *chain = NULL;

    ck_assert_int_eq(sign_web(c, 3600, &cert, &chain, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "vault backend 'ca-vault' (mesh default): sign (POST "
                              "/v1/pki/sign/mseh): refused (HTTP 400): Vault: unknown role: mseh"),
                  "%s", err);
    vault_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(vault_down_is_unreachable_in_bounded_time)
{
    backend_fixture f;
    mnode *conf = conf_yaml("fromCp:\n  address: https://127.0.0.1:%d\n  pki: pki\n  role: mesh\n"
                            "  auth: {token: {inlineString: hvs.secret-down}}\n", test_closed_port());
    vault_client *c = open_vault(&f, conf, 2000);
    char err[MESHCA_ERRBUF], *pem = NULL;
    struct timespec t0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(vault_ca_chain(c, &pem, err), MESHCA_EUNAVAILABLE);
    ck_assert_msg(elapsed_s(&t0) < 4.0, "took %.1f s", elapsed_s(&t0));
    ck_assert_msg(strstr(err, "vault backend 'ca-vault'") && strstr(err, "unreachable"), "%s", err);
    assert_no_secret(err, "hvs.secret-down");
    vault_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(vault_verifies_the_server_name_unless_skip_verify_is_asked)
{
    backend_fixture f;
    char err[MESHCA_ERRBUF], *pem = NULL;
    mnode *conf = conf_yaml("fromCp:\n  address: https://127.0.0.1:%d\n  pki: pki\n  role: mesh\n"
                            "  namespace: mesh-team\n  tls: {caCert: {file: %s/tls-ca.pem}}\n"
                            "  auth: {token: {file: %s/token}}\n",
                            vault_port, vault_dir, vault_dir);
    vault_client *c = open_vault(&f, conf, 5000);

    /* The double's certificate names vault.test only: 127.0.0.1 must not verify. */
    ck_assert_int_eq(vault_ca_chain(c, &pem, err), MESHCA_EIO);
    ck_assert_ptr_nonnull(strstr(err, "vault backend 'ca-vault'"));
    vault_client_free(c);
    mnode_free(conf);

    conf = conf_yaml("fromCp:\n  address: https://127.0.0.1:%d\n  pki: pki\n  role: mesh\n"
                     "  namespace: mesh-team\n  tls: {skipVerify: true}\n"
                     "  auth: {token: {file: %s/token}}\n", vault_port, vault_dir);
    c = open_vault(&f, conf, 5000);
    ck_assert_msg(vault_ca_chain(c, &pem, err) == 0, "%s", err);
    free(pem);
    vault_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(vault_response_over_the_size_limit_is_refused)
{
    vault_client_options o = VAULT_CLIENT_OPTIONS_INIT;
    backend_fixture f;
    mnode *conf = vault_conf("pki", "mesh", NULL, NULL);
    vault_client *c = NULL;
    char err[MESHCA_ERRBUF], *pem = NULL;

    o.max_response = 100;   /* the double's CA PEM is several hundred bytes */
    init_backend(&f, "vault", "ca-vault", conf);
    ck_assert_msg(vault_client_open(&f.ctx, &o, &c, err) == 0, "%s", err);
    ck_assert_int_eq(vault_ca_chain(c, &pem, err), MESHCA_EIO);
    ck_assert_msg(strstr(err, "vault backend 'ca-vault'") &&
                  strstr(err, "response larger than 100 bytes"), "%s", err);
    ck_assert_ptr_null(pem);
    vault_client_free(c);
    mnode_free(conf);
}
END_TEST

static int64_t fake_now;
static int64_t fake_clock(void *userdata)
{
    (void)userdata;
    return fake_now;
}

START_TEST(vault_cert_login_token_is_renewed_before_it_expires)
{
    backend_fixture f;
    char auth[600], err[MESHCA_ERRBUF], *cert = NULL, *chain = NULL;
    vault_client_options o = VAULT_CLIENT_OPTIONS_INIT;
    vault_client *c = NULL;
    mnode *conf;

    snprintf(auth, sizeof(auth), "auth: {tls: {clientCert: {file: %s/client.pem}, "
                                 "clientKey: {file: %s/client.key}}}", vault_dir, vault_dir);
    conf = vault_conf("pki", "mesh", NULL, auth);
    init_backend(&f, "vault", "ca-vault", conf);
    fake_now = 1000000;
    o.clock = fake_clock;
    ck_assert_msg(vault_client_open(&f.ctx, &o, &c, err) == 0, "%s", err);
    ck_assert_uint_eq(vault_client_logins(c), 0);
    ck_assert_msg(sign_web(c, 3600, &cert, &chain, err) == 0, "%s", err);
    free(cert);
    free(chain);
    ck_assert_uint_eq(vault_client_logins(c), 1);
    /* The double's lease is 3600 s: the token is reused until two thirds of it ... */
    fake_now += 2399;
    ck_assert_msg(sign_web(c, 3600, &cert, &chain, err) == 0, "%s", err);
    free(cert);
    free(chain);
    ck_assert_uint_eq(vault_client_logins(c), 1);
    /* ... and renewed from there, before Vault would let it expire. */
    fake_now += 1;
    ck_assert_msg(sign_web(c, 3600, &cert, &chain, err) == 0, "%s", err);
    free(cert);
    free(chain);
    ck_assert_uint_eq(vault_client_logins(c), 2);
    ck_assert_int_eq(test_run("test $(grep -c 'POST /v1/auth/cert/login 200' %s/requests.log) -ge 2",
                         vault_dir), 0);
    vault_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(vault_check_signs_a_throwaway_csr)
{
    backend_fixture f;
    mnode *conf = vault_conf("pki", "mesh", NULL, NULL);
    vault_client *c = open_vault(&f, conf, 10000);
    char err[MESHCA_ERRBUF];

    ck_assert_msg(vault_check(c, 60, err) == 0, "%s", err);
    vault_client_free(c);
    mnode_free(conf);
}
END_TEST

/* ---- the commonName template (no server) -------------------------------------------------- */

START_TEST(common_name_template_renders_tags_and_literal_text)
{
    static const model_tag tags[] = {{(char *)"kuma.io/service", (char *)"web", {0}},
                                     {(char *)"version", (char *)"v1", {0}}};
    char err[MESHCA_ERRBUF], *cn = NULL;

    ck_assert_int_eq(vault_render_common_name(VAULT_DEFAULT_COMMON_NAME, tags, 2, &cn, err), 0);
    ck_assert_str_eq(cn, "web");
    free(cn);
    ck_assert_int_eq(vault_render_common_name("{{tag \"kuma.io/service\"}}-{{ tag \"version\" }}"
                                              ".mesh", tags, 2, &cn, err), 0);
    ck_assert_str_eq(cn, "web-v1.mesh");
    free(cn);
    ck_assert_int_eq(vault_render_common_name("static", tags, 2, &cn, err), 0);
    ck_assert_str_eq(cn, "static");
    free(cn);
}
END_TEST

START_TEST(common_name_template_refuses_anything_else_clearly)
{
    static const model_tag tags[] = {{(char *)"kuma.io/service", (char *)"web", {0}}};
    char err[MESHCA_ERRBUF], *cn = NULL;

    ck_assert_int_eq(vault_render_common_name("{{ .Service }}", tags, 1, &cn, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "unsupported expression '{{ .Service }}'"), "%s", err);
    ck_assert_int_eq(vault_render_common_name("{{ env \"HOME\" }}", tags, 1, &cn, err),
                     MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "unsupported expression"), "%s", err);
    ck_assert_int_eq(vault_render_common_name("x{{ tag \"a\"", tags, 1, &cn, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "'{{' at offset 1 is never closed"), "%s", err);
    ck_assert_int_eq(vault_render_common_name("{{ tag \"team\" }}", tags, 1, &cn, err),
                     MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "the dataplane has no tag 'team'"), "%s", err);
    ck_assert_int_eq(vault_render_common_name("a}}", tags, 1, &cn, err), MESHCA_EINVAL);
    ck_assert_int_eq(vault_render_common_name("{{ tag \"kuma.io/service\" }}"
                                              "-0123456789012345678901234567890123456789"
                                              "0123456789012345678901234", tags, 1, &cn, err),
                     MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "longer than 64 bytes"), "%s", err);
    ck_assert_ptr_null(cn);
}
END_TEST

START_TEST(vault_open_refuses_a_bad_template_with_its_field_path)
{
    backend_fixture f;
    mnode *conf = conf_yaml("fromCp:\n  address: https://vault:8200\n  pki: pki\n  role: mesh\n"
                            "  commonName: '{{ service }}'\n"
                            "  auth: {token: {inlineString: hvs.s3cret}}\n");
    vault_client *c = NULL;
    char err[MESHCA_ERRBUF];

    init_backend(&f, "vault", "ca-vault", conf);
    ck_assert_int_eq(vault_client_open(&f.ctx, NULL, &c, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "mtls.backends[0].conf.fromCp.commonName: commonName template: "
                              "unsupported expression '{{ service }}'"), "%s", err);
    ck_assert_ptr_null(c);
    mnode_free(conf);
}
END_TEST

START_TEST(vault_open_refuses_a_token_with_a_newline_inside_without_printing_it)
{
    backend_fixture f;
    mnode *conf = conf_yaml("fromCp:\n  address: https://vault:8200\n  pki: pki\n  role: mesh\n"
                            "  auth: {token: {inlineString: \"hvs.abc\\nX-Evil: 1\"}}\n");
    vault_client *c = NULL;
    char err[MESHCA_ERRBUF];

    init_backend(&f, "vault", "ca-vault", conf);
    ck_assert_int_eq(vault_client_open(&f.ctx, NULL, &c, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "mtls.backends[0].conf.fromCp.auth.token: the token holds "
                              "whitespace or a control character"), "%s", err);
    assert_no_secret(err, "hvs.abc");
    mnode_free(conf);
}
END_TEST

/* ---- a real cfssl serve -------------------------------------------------------------------- */

static void cfssl_up(void)
{
    snprintf(cfssl_dir, sizeof(cfssl_dir), "/tmp/test-extca-cfssl-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(cfssl_dir));
    ck_assert_int_eq(test_run("timeout 60 bash %s/start-cfssl.sh %s", SCRIPTS, cfssl_dir), 0);
    cfssl_port = read_port(cfssl_dir);
    ck_assert_int_gt(cfssl_port, 0);
}

static void cfssl_down(void)
{
    test_run("kill $(cat %s/pid) 2>/dev/null; rm -rf '%s'", cfssl_dir, cfssl_dir);
}

static cfssl_client *open_cfssl(backend_fixture *f, mnode *conf, long timeout_ms)
{
    cfssl_client_options o = CFSSL_CLIENT_OPTIONS_INIT;
    cfssl_client *c = NULL;
    char err[MESHCA_ERRBUF];

    o.timeout_ms = timeout_ms;
    o.connect_timeout_ms = timeout_ms;
    init_backend(f, "cfssl", "ca-cfssl", conf);
    ck_assert_msg(cfssl_client_open(&f->ctx, &o, &c, err) == 0, "%s", err);
    return c;
}

static char *cfssl_authkey(void)
{
    char path[300], *k;

    snprintf(path, sizeof(path), "%s/authkey", cfssl_dir);
    k = test_slurp(path);
    k[strcspn(k, "\n")] = '\0';
    return k;
}

START_TEST(cfssl_info_returns_its_root)
{
    backend_fixture f;
    mnode *conf = conf_yaml("url: http://127.0.0.1:%d\nprofile: intermediate\n", cfssl_port);
    cfssl_client *c = open_cfssl(&f, conf, 10000);
    char err[MESHCA_ERRBUF], *pem = NULL, path[300];
    X509 *got, *want;

    ck_assert_msg(cfssl_info(c, NULL, &pem, err) == 0, "%s", err);
    snprintf(path, sizeof(path), "%s/root.pem", cfssl_dir);
    char *file = test_slurp(path);
    ck_assert_int_eq(pki_cert_from_pem(pem, strlen(pem), &got, err), 0);
    ck_assert_int_eq(pki_cert_from_pem(file, strlen(file), &want, err), 0);
    ck_assert_int_eq(X509_cmp(got, want), 0);
    X509_free(got);
    X509_free(want);
    free(file);
    free(pem);
    cfssl_client_free(c);
    mnode_free(conf);
}
END_TEST

/* Checks an intermediate with the openssl CLI, and that a leaf signed locally chains through it. */
static void verify_intermediate(const cfssl_intermediate *im)
{
    const char *uris[] = {"spiffe://default/web"};
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    char err[PKI_ERRBUF], *pem, path[300], leaf[300];
    X509 *x = NULL;
    EVP_PKEY *k = NULL;

    ck_assert_int_eq(pki_cert_to_pem(im->cert, &pem, err), 0);
    snprintf(path, sizeof(path), "%s/inter.pem", work_dir);
    test_spit(path, pem);
    free(pem);
    ck_assert_int_eq(test_run("openssl verify -x509_strict -CAfile %s/root.pem %s >/dev/null",
                         cfssl_dir, path), 0);
    ck_assert_int_eq(test_run("openssl x509 -in %s -noout -ext basicConstraints | "
                         "grep -q 'CA:TRUE, pathlen:0'", path), 0);
    req.uris = uris;
    req.nuris = 1;
    req.cn = "web";   /* about the chain, not about pki.c's empty-subject leaves */
    req.lifetime_s = 3600;
    ck_assert_msg(pki_issue_leaf(&req, im->cert, im->key, time(NULL), &x, &k, err) == 0, "%s", err);
    ck_assert_int_eq(pki_cert_to_pem(x, &pem, err), 0);
    snprintf(leaf, sizeof(leaf), "%s/leaf.pem", work_dir);
    test_spit(leaf, pem);
    free(pem);
    ck_assert_int_eq(test_run("openssl verify -x509_strict -CAfile %s/root.pem -untrusted %s %s "
                         ">/dev/null", cfssl_dir, path, leaf), 0);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void make_work_dir(void)
{
    snprintf(work_dir, sizeof(work_dir), "/tmp/test-extca-work-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(work_dir));
}

START_TEST(cfssl_signs_an_intermediate_ca_with_pathlen_0_that_chains_to_its_root)
{
    backend_fixture f;
    mnode *conf = conf_yaml("url: http://127.0.0.1:%d\nprofile: intermediate\n", cfssl_port);
    cfssl_client *c = open_cfssl(&f, conf, 10000);
    cfssl_intermediate im = {0};
    char err[MESHCA_ERRBUF];
    int64_t now = time(NULL);

    make_work_dir();
    ck_assert_msg(cfssl_make_intermediate(c, now, &im, err) == 0, "%s", err);
    verify_intermediate(&im);
    /* Renewed at two thirds of its life (the profile gives 168h). */
    ck_assert_int_eq(im.renew_at, im.not_before + (im.not_after - im.not_before) * 2 / 3);
    ck_assert_int_ge(im.not_after - im.not_before, 168 * 3600 - 600);
    ck_assert(!cfssl_intermediate_due(&im, im.renew_at - 1));
    ck_assert(cfssl_intermediate_due(&im, im.renew_at));
    cfssl_intermediate_clear(&im);
    cfssl_intermediate_clear(&im);   /* idempotent */
    cfssl_client_free(c);
    mnode_free(conf);
    test_run("rm -rf '%s'", work_dir);
}
END_TEST

START_TEST(cfssl_authsign_with_the_auth_key_signs)
{
    backend_fixture f;
    mnode *conf = conf_yaml("url: http://127.0.0.1:%d/\nprofile: intermediate-auth\n"
                            "authKey: {file: %s/authkey}\n", cfssl_port, cfssl_dir);
    cfssl_client *c = open_cfssl(&f, conf, 10000);
    cfssl_intermediate im = {0};
    char err[MESHCA_ERRBUF];

    make_work_dir();
    ck_assert_msg(cfssl_make_intermediate(c, time(NULL), &im, err) == 0, "%s", err);
    verify_intermediate(&im);
    cfssl_intermediate_clear(&im);
    ck_assert_msg(cfssl_check(c, time(NULL), err) == 0, "%s", err);
    cfssl_client_free(c);
    mnode_free(conf);
    test_run("rm -rf '%s'", work_dir);
}
END_TEST

START_TEST(cfssl_wrong_auth_key_is_refused_without_printing_it)
{
    static const char bad[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    backend_fixture f;
    mnode *conf = conf_yaml("url: http://127.0.0.1:%d\nprofile: intermediate-auth\n"
                            "authKey: {inlineString: \"%s\"}\n", cfssl_port, bad);
    cfssl_client *c = open_cfssl(&f, conf, 10000);
    char err[MESHCA_ERRBUF], *csr = fresh_csr("x", NULL), *cert = NULL, *good = cfssl_authkey();

    ck_assert_int_eq(cfssl_sign_ca(c, csr, NULL, &cert, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "cfssl backend 'ca-cfssl' (mesh default)") &&
                  strstr(err, "/api/v1/cfssl/authsign") && strstr(err, "authentication refused") &&
                  strstr(err, "cfssl: invalid token (code 400)"), "%s", err);
    assert_no_secret(err, bad);
    assert_no_secret(err, good);
    ck_assert_ptr_null(cert);
    /* The apply-time check fails the same way. */
    ck_assert_int_eq(cfssl_check(c, time(NULL), err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "cfssl: invalid token (code 400)"), "%s", err);
    assert_no_secret(err, bad);
    free(good);
    free(csr);
    cfssl_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(cfssl_auth_profile_without_a_key_is_refused)
{
    backend_fixture f;
    mnode *conf = conf_yaml("url: http://127.0.0.1:%d\nprofile: intermediate-auth\n", cfssl_port);
    cfssl_client *c = open_cfssl(&f, conf, 10000);
    char err[MESHCA_ERRBUF], *csr = fresh_csr("x", NULL), *cert = NULL;

    ck_assert_int_eq(cfssl_sign_ca(c, csr, NULL, &cert, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "authentication refused (the profile needs an authKey)") &&
                  strstr(err, "cfssl: authentication required"), "%s", err);
    free(csr);
    cfssl_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(cfssl_profile_that_signs_no_ca_is_refused)
{
    backend_fixture f;
    mnode *conf = conf_yaml("url: http://127.0.0.1:%d\nprofile: leaf\n", cfssl_port);
    cfssl_client *c = open_cfssl(&f, conf, 10000);
    cfssl_intermediate im = {0};
    char err[MESHCA_ERRBUF];

    /* cfssl itself refuses a CA CSR under a profile without ca_constraint. */
    ck_assert_int_eq(cfssl_make_intermediate(c, time(NULL), &im, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "cfssl backend 'ca-cfssl'") &&
                  strstr(err, "cfssl: Policy violation request (code 5300)"), "%s", err);
    ck_assert_ptr_null(im.cert);
    ck_assert_ptr_null(im.key);
    cfssl_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(cfssl_ca_profile_without_pathlen_0_is_refused)
{
    backend_fixture f;
    mnode *conf = conf_yaml("url: http://127.0.0.1:%d\nprofile: ca-unbounded\n", cfssl_port);
    cfssl_client *c = open_cfssl(&f, conf, 10000);
    cfssl_intermediate im = {0};
    char err[MESHCA_ERRBUF];

    /* cfssl signs a CA here, but one that could sign further CAs: meshca refuses it. */
    ck_assert_int_eq(cfssl_make_intermediate(c, time(NULL), &im, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "cfssl backend 'ca-cfssl'") &&
                  strstr(err, "intermediate from profile 'ca-unbounded'") &&
                  strstr(err, "path length is -1, not 0"), "%s", err);
    ck_assert_ptr_null(im.cert);
    cfssl_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(cfssl_bad_csr_is_refused_with_cfssls_message)
{
    backend_fixture f;
    mnode *conf = conf_yaml("url: http://127.0.0.1:%d\nprofile: intermediate\n", cfssl_port);
    cfssl_client *c = open_cfssl(&f, conf, 10000);
    char err[MESHCA_ERRBUF], *cert = NULL;

    ck_assert_int_eq(cfssl_sign_ca(c, "not a csr", NULL, &cert, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "refused (HTTP 400): cfssl: CSR Decode failed (code 9002)"), "%s",
                  err);
    cfssl_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(cfssl_down_is_unreachable_in_bounded_time)
{
    backend_fixture f;
    mnode *conf = conf_yaml("url: http://127.0.0.1:%d\nprofile: intermediate\n"
                            "authKey: {inlineString: 0123456789abcdef}\n", test_closed_port());
    cfssl_client *c = open_cfssl(&f, conf, 2000);
    cfssl_intermediate im = {0};
    char err[MESHCA_ERRBUF];
    struct timespec t0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(cfssl_make_intermediate(c, time(NULL), &im, err), MESHCA_EUNAVAILABLE);
    ck_assert_msg(elapsed_s(&t0) < 4.0, "took %.1f s", elapsed_s(&t0));
    ck_assert_msg(strstr(err, "cfssl backend 'ca-cfssl'") && strstr(err, "unreachable") &&
                  strstr(err, "/api/v1/cfssl/info"), "%s", err);
    assert_no_secret(err, "0123456789abcdef");
    cfssl_client_free(c);
    mnode_free(conf);
}
END_TEST

START_TEST(cfssl_open_refuses_an_auth_key_that_is_not_hex)
{
    backend_fixture f;
    mnode *conf = conf_yaml("url: http://127.0.0.1:1\nauthKey: {inlineString: s3cretzz}\n");
    cfssl_client *c = NULL;
    char err[MESHCA_ERRBUF];

    init_backend(&f, "cfssl", "ca-cfssl", conf);
    ck_assert_int_eq(cfssl_client_open(&f.ctx, NULL, &c, err), MESHCA_EINVAL);
    ck_assert_msg(strstr(err, "mtls.backends[0].conf.authKey: the auth key is not hex"), "%s", err);
    assert_no_secret(err, "s3cretzz");
    ck_assert_ptr_null(c);
    mnode_free(conf);
}
END_TEST

/* ---- the intermediate checks (no server) --------------------------------------------------- */

START_TEST(intermediate_check_refuses_a_ca_without_pathlen_0)
{
    EVP_PKEY *rk = NULL, *ik = NULL;
    X509 *root = NULL, *other = NULL;
    char err[PKI_ERRBUF];
    int64_t now = time(NULL);

    ck_assert_int_eq(pki_generate_key(false, 0, &rk, err), 0);
    ck_assert_int_eq(pki_make_root(rk, "root", NULL, now, 86400, &root, err), 0);
    /* A root made by pki_make_root has no path length: not an acceptable intermediate. */
    ck_assert_int_eq(extca_pki_check_intermediate(root, rk, root, now, err), PKI_EINVAL);
    ck_assert_msg(strstr(err, "path length is -1, not 0"), "%s", err);
    /* A CA for another key is refused too. */
    ck_assert_int_eq(pki_generate_key(false, 0, &ik, err), 0);
    ck_assert_int_eq(pki_make_root(ik, "other", NULL, now, 86400, &other, err), 0);
    ck_assert_int_eq(extca_pki_intermediate_renewal(0, 300), 200);
    ck_assert_int_eq(ERR_peek_error(), 0);
    X509_free(root);
    X509_free(other);
    EVP_PKEY_free(rk);
    EVP_PKEY_free(ik);
}
END_TEST

static Suite *extca_suite(void)
{
    Suite *s = suite_create("extca");
    TCase *pure = tcase_create("pure"), *vault = tcase_create("vault"),
          *cfssl = tcase_create("cfssl");

    tcase_add_test(pure, common_name_template_renders_tags_and_literal_text);
    tcase_add_test(pure, common_name_template_refuses_anything_else_clearly);
    tcase_add_test(pure, vault_open_refuses_a_bad_template_with_its_field_path);
    tcase_add_test(pure, vault_open_refuses_a_token_with_a_newline_inside_without_printing_it);
    tcase_add_test(pure, cfssl_open_refuses_an_auth_key_that_is_not_hex);
    tcase_add_test(pure, intermediate_check_refuses_a_ca_without_pathlen_0);
    suite_add_tcase(s, pure);

    tcase_add_unchecked_fixture(vault, vault_up, vault_down);
    tcase_set_timeout(vault, 30);
    tcase_add_test(vault, vault_signs_csr_and_leaf_verifies_x509_strict_against_the_double_ca);
    tcase_add_test(vault, vault_reuses_one_connection_across_requests);
    tcase_add_test(vault, vault_ca_chain_reads_ca_chain_and_falls_back_to_ca_pem);
    tcase_add_test(vault, vault_wrong_token_is_authentication_refused_without_printing_it);
    tcase_add_test(vault, vault_missing_namespace_is_refused);
    tcase_add_test(vault, vault_5xx_is_unavailable_with_vaults_message_on_one_line);
    tcase_add_test(vault, vault_answer_slower_than_timeout_is_unavailable_in_bounded_time);
    tcase_add_test(vault, vault_malformed_body_is_an_io_error);
    tcase_add_test(vault, vault_ttl_above_role_max_ttl_is_refused_as_such);
    tcase_add_test(vault, vault_unknown_role_is_refused_with_vaults_message);
    tcase_add_test(vault, vault_down_is_unreachable_in_bounded_time);
    tcase_add_test(vault, vault_verifies_the_server_name_unless_skip_verify_is_asked);
    tcase_add_test(vault, vault_response_over_the_size_limit_is_refused);
    tcase_add_test(vault, vault_cert_login_token_is_renewed_before_it_expires);
    tcase_add_test(vault, vault_check_signs_a_throwaway_csr);
    suite_add_tcase(s, vault);

    tcase_add_unchecked_fixture(cfssl, cfssl_up, cfssl_down);
    tcase_set_timeout(cfssl, 30);
    tcase_add_test(cfssl, cfssl_info_returns_its_root);
    tcase_add_test(cfssl, cfssl_signs_an_intermediate_ca_with_pathlen_0_that_chains_to_its_root);
    tcase_add_test(cfssl, cfssl_authsign_with_the_auth_key_signs);
    tcase_add_test(cfssl, cfssl_wrong_auth_key_is_refused_without_printing_it);
    tcase_add_test(cfssl, cfssl_auth_profile_without_a_key_is_refused);
    tcase_add_test(cfssl, cfssl_profile_that_signs_no_ca_is_refused);
    tcase_add_test(cfssl, cfssl_ca_profile_without_pathlen_0_is_refused);
    tcase_add_test(cfssl, cfssl_bad_csr_is_refused_with_cfssls_message);
    tcase_add_test(cfssl, cfssl_down_is_unreachable_in_bounded_time);
    suite_add_tcase(s, cfssl);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(extca_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
