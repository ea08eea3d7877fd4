/* test-reconcile.c - Check suite for the reconcile pass in CSR mode: sign, bundle, switch, renew, ack. */
#define _GNU_SOURCE 1
#include <check.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check-store.h"
#include "manifests/manifest.h"
#include "reconciler/ack.h"
#include "reconciler/ca/ca_cache.h"
#include "reconciler/failpoint.h"
#include "reconciler/pki.h"
#include "reconciler/reconcile.h"
#include "reconciler/state.h"

#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <sqlite3.h>

static char tmpdir[64];
static char url[128];

static const char MESH_CA1[] =
    "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
    "  - name: ca-1\n    type: builtin\n";
static const char MESH_ADD[] =
    "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
    "  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n";
static const char MESH_SWITCH[] =
    "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-2\n  backends:\n"
    "  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n";
static const char DATAPLANES[] =
    "type: Dataplane\nmesh: default\nname: web-01\nnetworking:\n  address: 127.0.0.1\n"
    "  inbound:\n  - port: 8443\n    tags:\n      kuma.io/service: web\n      version: v1\n"
    "---\n"
    "type: Dataplane\nmesh: default\nname: db-01\nnetworking:\n  address: 127.0.0.1\n"
    "  inbound:\n  - port: 9443\n    tags:\n      kuma.io/service: db\n";

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/meshca-test-reconcile-XXXXXX");
    test_store_dir(tmpdir, url, sizeof(url));
}

static void teardown(void)
{
    test_store_dir_remove(tmpdir);
}

static reconcile_report pass(store *s, int64_t now, diag_list *diags)
{
    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    opts.now = now;
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, diags), 0);
    return rep;
}

static void pass_ok(store *s, int64_t now, reconcile_report *ret)
{
    diag_list diags = DIAG_LIST_INIT;
    *ret = pass(s, now, &diags);
    ck_assert_msg(!diag_has_errors(&diags), "reconcile: %s: %s",
                  diags.count ? diags.items[0].code : "", diags.count ? diags.items[0].message : "");
    diag_list_free(&diags);
}

static uint64_t revision(store *s)
{
    uint64_t rev = 0;
    ck_assert_int_eq(store_revision(s, &rev), STORE_OK);
    return rev;
}

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count_certs(const char *pem)
{
    int n = 0;
    for (const char *p = pem; (p = strstr(p, "BEGIN CERTIFICATE")); p++)
        n++;
    return n;
}

/* The mesh's one trust bundle (PEM, caller frees). */
static char *mesh_bundle_pem(store *s, const char *mesh_name)
{
    mesh_bundle b = {0};
    char err[MESHCA_ERRBUF] = "";
    ck_assert_msg(state_read_bundle(s, mesh_name, &b, NULL, err) == 0, "bundle: %s", err);
    char *pem = b.pem;
    b.pem = NULL;
    mesh_bundle_clear(&b);
    return pem;
}

/* openssl verify -x509_strict of the identity's leaf (and chain) against its mesh's bundle. */
static int verify_identity(store *s, const identity *id)
{
    char *bundle = mesh_bundle_pem(s, id->mesh);
    write_file("bundle.pem", bundle);
    free(bundle);
    write_file("leaf.pem", id->cert_pem);
    return sh("openssl verify -x509_strict -CAfile '%s/bundle.pem' -untrusted '%s/leaf.pem' "
              "'%s/leaf.pem' >/dev/null 2>&1", tmpdir, tmpdir, tmpdir);
}

/* What an agent does (CSR mode): a fresh key, only its public part sent. Returns the key. */
static EVP_PKEY *submit(store *s, const char *mesh_name, const char *dp, bool rsa)
{
    return test_submit(s, mesh_name, dp, rsa, false);
}

/* Both dataplanes of DATAPLANES send a CSR (EC keys). */
static void submit_all(store *s)
{
    EVP_PKEY_free(submit(s, "default", "web-01", false));
    EVP_PKEY_free(submit(s, "default", "db-01", false));
}

/* The stored record as text. */
static char *raw(store *s, const char *kind, const char *mesh_name, const char *name)
{
    store_key key = {kind, mesh_name, name};
    char *v = NULL;
    ck_assert_int_eq(store_get(s, &key, &v, NULL, NULL), STORE_OK);
    return v;
}

/* Finds the first diagnostic with `code`, or fails the test. */
static const diag *find_diag(const diag_list *diags, const char *code)
{
    for (size_t i = 0; i < diags->count; i++)
        if (strcmp(diags->items[i].code, code) == 0)
            return &diags->items[i];
    ck_abort_msg("no diagnostic with code '%s' among %zu", code, diags->count);
    return NULL;
}

static void put_raw(store *s, const char *kind, const char *mesh_name, const char *name,
                    const char *value)
{
    store_key key = {kind, mesh_name, name};
    ck_assert_int_eq(store_put(s, &key, value, strlen(value), STORE_ANY_VERSION, NULL), STORE_OK);
}

START_TEST(builtin_mesh_issues_one_verifiable_identity_per_dataplane)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    test_seed(s, DATAPLANES);
    reconcile_report rep;
    /* No CSR yet: nothing to sign. */
    pass_ok(s, 0, &rep);
    ck_assert_uint_eq(rep.issued, 0);
    ck_assert_uint_eq(rep.meshes[0].awaiting, 2);
    reconcile_report_free(&rep);
    EVP_PKEY *web_key = submit(s, "default", "web-01", false);
    EVP_PKEY_free(submit(s, "default", "db-01", false));
    pass_ok(s, 0, &rep);
    ck_assert_uint_eq(rep.issued, 2);
    ck_assert_uint_eq(rep.nactions, 2);
    ck_assert_uint_eq(rep.failed_meshes, 0);
    reconcile_report_free(&rep);

    identity id = {0};
    ck_assert_int_eq(identity_get(s, "default", "web-01", &id, NULL), 0);
    ck_assert_str_eq(id.backend, "ca-1");
    ck_assert_int_eq(id.generation, 1);
    ck_assert_ptr_nonnull(id.public_key_pem);
    ck_assert_ptr_null(id.pending_key_pem);
    ck_assert_uint_eq(id.nbundle_backends, 1);
    ck_assert_str_eq(id.bundle_backends[0], "ca-1");
    ck_assert(id.renew_at > id.not_before && id.renew_at < id.not_after);
    ck_assert_int_eq(verify_identity(s, &id), 0);
    /* The leaf certifies the agent's own key, and names the dataplane for the API's mTLS. */
    X509 *leaf = NULL;
    ck_assert_int_eq(pki_cert_from_pem(id.cert_pem, strlen(id.cert_pem), &leaf, NULL), 0);
    ck_assert(pki_key_matches(leaf, web_key));
    X509_free(leaf);
    EVP_PKEY_free(web_key);
    ck_assert_int_eq(sh("openssl x509 -noout -ext subjectAltName -in '%s/leaf.pem' | "
                        "grep -q 'URI:urn:meshca:dataplane:default:web-01'", tmpdir), 0);
    ck_assert_int_eq(sh("openssl x509 -noout -ext subjectAltName -in '%s/leaf.pem' | "
                        "grep -q 'URI:spiffe://default/web'", tmpdir), 0);
    ck_assert_int_eq(sh("openssl x509 -noout -ext subjectAltName -in '%s/leaf.pem' | "
                        "grep -q 'URI:kuma://version/v1'", tmpdir), 0);
    identity_clear(&id);
    /* One bundle per mesh, not a copy per dataplane; no private key in any identity. */
    char *bundle = mesh_bundle_pem(s, "default");
    ck_assert_int_eq(count_certs(bundle), 1);
    free(bundle);
    char *text = raw(s, STATE_IDENTITIES, "default", "web-01");
    ck_assert_ptr_null(strstr(text, "PRIVATE KEY"));
    ck_assert_ptr_null(strstr(text, "BEGIN CERTIFICATE-----\\nMIIB")); /* no bundle copy */
    ck_assert_ptr_nonnull(strstr(text, "\"publicKey\":\"-----BEGIN PUBLIC KEY"));
    free(text);

    /* The builtin root is kept as mesh secrets, so `get secrets` lists it. */
    store_key cert_key = {STATE_SECRETS, "default", "default.ca-builtin-cert-ca-1"};
    store_key key_key = {STATE_SECRETS, "default", "default.ca-builtin-key-ca-1"};
    char *v = NULL;
    ck_assert_int_eq(store_get(s, &cert_key, &v, NULL, NULL), STORE_OK);
    ck_assert_ptr_nonnull(strstr(v, "\"type\":\"Secret\""));
    free(v);
    ck_assert_int_eq(store_get(s, &key_key, &v, NULL, NULL), STORE_OK);
    free(v);
    store_close(s);
}
END_TEST

START_TEST(second_pass_with_nothing_to_do_writes_nothing)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    test_seed(s, DATAPLANES);
    submit_all(s);
    reconcile_report rep;
    pass_ok(s, 0, &rep);
    reconcile_report_free(&rep);
    uint64_t before = revision(s);
    pass_ok(s, 0, &rep);
    ck_assert_uint_eq(rep.issued + rep.reissued + rep.renewed + rep.rebundled, 0);
    ck_assert_uint_eq(rep.unchanged, 2);
    ck_assert_uint_eq(rep.nactions, 0);
    reconcile_report_free(&rep);
    ck_assert_uint_eq(revision(s), before);
    store_close(s);
}
END_TEST

START_TEST(adding_backend_rebundles_both_cas_with_same_certificate)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    test_seed(s, DATAPLANES);
    submit_all(s);
    reconcile_report rep;
    pass_ok(s, 0, &rep);
    reconcile_report_free(&rep);
    identity before = {0}, after = {0};
    ck_assert_int_eq(identity_get(s, "default", "web-01", &before, NULL), 0);

    test_seed(s, MESH_ADD);
    pass_ok(s, 0, &rep);
    ck_assert_uint_eq(rep.rebundled, 2);
    ck_assert_uint_eq(rep.issued + rep.reissued, 0);
    reconcile_report_free(&rep);
    ck_assert_int_eq(identity_get(s, "default", "web-01", &after, NULL), 0);
    ck_assert_int_eq(after.generation, before.generation + 1);
    ck_assert_str_eq(after.serial, before.serial);
    ck_assert_str_eq(after.backend, "ca-1");
    ck_assert_uint_eq(after.nbundle_backends, 2);
    ck_assert_str_eq(after.bundle_backends[0], "ca-1");
    ck_assert_str_eq(after.bundle_backends[1], "ca-2");
    char *bundle = mesh_bundle_pem(s, "default");
    ck_assert_int_eq(count_certs(bundle), 2);
    free(bundle);
    ck_assert_int_eq(verify_identity(s, &after), 0);
    identity_clear(&before);
    identity_clear(&after);
    store_close(s);
}
END_TEST

START_TEST(switch_reissues_every_leaf_from_the_new_ca)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_ADD);
    test_seed(s, DATAPLANES);
    submit_all(s);
    reconcile_report rep;
    pass_ok(s, 0, &rep);
    reconcile_report_free(&rep);
    identity before = {0}, after = {0};
    ck_assert_int_eq(identity_get(s, "default", "db-01", &before, NULL), 0);
    char *before_bundle = mesh_bundle_pem(s, "default");

    test_seed(s, MESH_SWITCH);
    pass_ok(s, 0, &rep);
    ck_assert_uint_eq(rep.reissued, 2);
    ck_assert_uint_eq(rep.nactions, 2);
    ck_assert_str_eq(rep.actions[0].backend, "ca-2");
    reconcile_report_free(&rep);
    ck_assert_int_eq(identity_get(s, "default", "db-01", &after, NULL), 0);
    ck_assert_str_eq(after.backend, "ca-2");
    ck_assert_str_ne(after.serial, before.serial);
    ck_assert_str_ne(after.ca_fingerprint, before.ca_fingerprint);
    ck_assert_str_eq(after.bundle_backends[0], "ca-2");
    ck_assert_int_eq(after.generation, before.generation + 1);
    ck_assert_int_eq(verify_identity(s, &after), 0);
    /* Re-signed without a round trip to the agent: the same public key, a new certificate. */
    ck_assert_str_eq(after.public_key_pem, before.public_key_pem);
    /* ca-1's root alone no longer verifies the new leaf. */
    write_file("leaf.pem", after.cert_pem);
    char *end = strstr(before_bundle, "-----END CERTIFICATE-----");
    ck_assert_ptr_nonnull(end);
    end[strlen("-----END CERTIFICATE-----")] = '\0';
    write_file("ca1.pem", before_bundle);
    free(before_bundle);
    ck_assert_int_ne(sh("openssl verify -CAfile '%s/ca1.pem' '%s/leaf.pem' >/dev/null 2>&1", tmpdir,
                        tmpdir), 0);
    identity_clear(&before);
    identity_clear(&after);
    store_close(s);
}
END_TEST

/* CSR mode (issue 10): renewal is a fresh key, which only the agent can make. Past renewAt a
 * pass writes nothing; the agent's new CSR is signed as a renewal. */
START_TEST(renewal_is_left_to_the_agent_and_its_new_csr_renews)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    test_seed(s, DATAPLANES);
    submit_all(s);
    int64_t t0 = (int64_t)time(NULL);
    reconcile_report rep;
    pass_ok(s, t0, &rep);
    reconcile_report_free(&rep);
    identity id = {0}, renewed = {0};
    ck_assert_int_eq(identity_get(s, "default", "web-01", &id, NULL), 0);
    /* The renewal point lies in 70-85 % of the 24h lifetime, counted from issue. */
    int64_t life = id.not_after - t0;
    ck_assert(id.renew_at >= t0 + life * 70 / 100 - 1);
    ck_assert(id.renew_at <= t0 + life * 85 / 100 + 1);

    uint64_t before = revision(s);
    pass_ok(s, id.renew_at + 60, &rep);
    ck_assert_uint_eq(rep.renewed, 0);
    reconcile_report_free(&rep);
    ck_assert_uint_eq(revision(s), before);

    EVP_PKEY_free(submit(s, "default", "web-01", false));
    pass_ok(s, id.renew_at + 60, &rep);
    ck_assert_uint_eq(rep.renewed, 1);
    ck_assert_str_eq(rep.actions[0].reason, "new key from the agent (CSR)");
    reconcile_report_free(&rep);
    ck_assert_int_eq(identity_get(s, "default", "web-01", &renewed, NULL), 0);
    ck_assert_str_ne(renewed.serial, id.serial);
    ck_assert_str_ne(renewed.public_key_pem, id.public_key_pem);
    ck_assert_int_eq(renewed.generation, id.generation + 1);
    ck_assert_int_eq(renewed.regenerations, id.regenerations + 1);
    ck_assert(renewed.renew_at > id.renew_at);
    identity_clear(&id);
    identity_clear(&renewed);
    store_close(s);
}
END_TEST

START_TEST(expired_ca_is_reported_and_other_meshes_still_reconcile)
{
    store *s = test_store_open(url);
    test_seed(s, "type: Mesh\nname: short\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
            "  - name: ca-1\n    type: builtin\n    dpCert:\n      rotation: {expiration: 10m}\n"
            "    conf:\n      caCert: {expiration: 1h}\n"
            "---\ntype: Dataplane\nmesh: short\nname: app-01\nnetworking:\n  address: 127.0.0.1\n"
            "  inbound:\n  - port: 80\n    tags: {kuma.io/service: app}\n");
    test_seed(s, MESH_CA1);
    test_seed(s, DATAPLANES);
    submit_all(s);
    EVP_PKEY_free(submit(s, "short", "app-01", false));
    int64_t t0 = (int64_t)time(NULL);
    reconcile_report rep;
    pass_ok(s, t0, &rep);
    ck_assert_uint_eq(rep.issued, 3);
    reconcile_report_free(&rep);

    diag_list diags = DIAG_LIST_INIT;
    rep = pass(s, t0 + 2 * 3600, &diags);
    ck_assert_uint_eq(rep.failed_meshes, 1);
    ck_assert_uint_eq(diags.count, 1);
    ck_assert_str_eq(diags.items[0].code, "ca-expired");
    ck_assert_str_eq(diags.items[0].path, "mtls.backends[0]");
    ck_assert_ptr_nonnull(strstr(diags.items[0].message, "'short'"));
    bool saw_default = false;
    for (size_t i = 0; i < rep.nmeshes; i++)
        if (strcmp(rep.meshes[i].mesh, "default") == 0) {
            saw_default = true;
            ck_assert(!rep.meshes[i].failed);
            ck_assert_uint_eq(rep.meshes[i].unchanged, 2);
        }
    ck_assert(saw_default);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    store_close(s);
}
END_TEST

/* Regression: the renewal point counted the minute notBefore is backdated, so a 30 s
 * certificate renewed 10 s after issue instead of after 21-25.5 s. */
START_TEST(short_lived_certificate_renews_no_earlier_than_70_percent_of_its_lifetime)
{
    store *s = test_store_open(url);
    test_seed(s, "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
            "  - name: ca-1\n    type: builtin\n    dpCert:\n      rotation: {expiration: 30s}\n");
    test_seed(s, DATAPLANES);
    submit_all(s);
    int64_t t0 = (int64_t)time(NULL);
    reconcile_report rep;
    pass_ok(s, t0, &rep);
    reconcile_report_free(&rep);
    identity id = {0};
    ck_assert_int_eq(identity_get(s, "default", "web-01", &id, NULL), 0);
    ck_assert_int_eq(id.not_after, t0 + 30);
    /* renewAt is what the agent is told: it sends its new CSR then, not before. */
    ck_assert_int_ge(id.renew_at, t0 + 21);
    ck_assert_int_le(id.renew_at, t0 + 26);
    identity_clear(&id);
    store_close(s);
}
END_TEST

START_TEST(rsa_key_type_issues_rsa_leaves)
{
    store *s = test_store_open(url);
    test_seed(s, "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
            "  - name: ca-1\n    type: builtin\n    dpCert:\n      keyType: rsa\n");
    test_seed(s, DATAPLANES);
    EVP_PKEY_free(submit(s, "default", "web-01", true));
    /* A key of the wrong type (keyType changed after the CSR) is dropped, not signed. */
    EVP_PKEY_free(submit(s, "default", "db-01", false));
    diag_list diags = DIAG_LIST_INIT;
    reconcile_report rep = pass(s, 0, &diags);
    ck_assert_uint_eq(rep.issued, 1);
    ck_assert_str_eq(rep.actions[0].dataplane, "web-01");
    const diag *d = find_diag(&diags, "csr-key-type");
    ck_assert_ptr_nonnull(strstr(d->message, "'default/db-01'"));
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    identity id = {0};
    ck_assert_int_eq(identity_get(s, "default", "web-01", &id, NULL), 0);
    ck_assert(id.rsa);
    write_file("leaf.pem", id.cert_pem);
    ck_assert_int_eq(sh("openssl x509 -noout -text -in '%s/leaf.pem' | grep -q 'rsaEncryption'",
                        tmpdir), 0);
    identity_clear(&id);
    ck_assert_int_eq(identity_get(s, "default", "db-01", &id, NULL), STORE_ENOTFOUND);
    store_close(s);
}
END_TEST

/* keyType changed: the held key cannot be re-signed; the agent is told to renew (renewAt = now). */
START_TEST(key_type_change_asks_the_agent_for_a_new_key)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    test_seed(s, DATAPLANES);
    submit_all(s);
    int64_t t0 = (int64_t)time(NULL);
    reconcile_report rep;
    pass_ok(s, t0, &rep);
    reconcile_report_free(&rep);
    test_seed(s, "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
            "  - name: ca-1\n    type: builtin\n    dpCert:\n      keyType: rsa\n");
    pass_ok(s, t0 + 5, &rep);
    ck_assert_uint_eq(rep.nactions, 0);
    reconcile_report_free(&rep);
    identity id = {0};
    ck_assert_int_eq(identity_get(s, "default", "web-01", &id, NULL), 0);
    ck_assert_int_eq(id.renew_at, t0 + 5);
    ck_assert_int_eq(id.generation, 1);
    identity_clear(&id);
    EVP_PKEY_free(submit(s, "default", "web-01", true));
    pass_ok(s, t0 + 6, &rep);
    ck_assert_uint_eq(rep.renewed, 1);
    reconcile_report_free(&rep);
    ck_assert_int_eq(identity_get(s, "default", "web-01", &id, NULL), 0);
    ck_assert(id.rsa);
    ck_assert_int_gt(id.renew_at, t0 + 6);
    identity_clear(&id);
    store_close(s);
}
END_TEST

/* SPEC S6: a pass's writes are one transaction. One identity write refused by the store leaves
 * every object of the pass as it was (before: the other dataplanes' writes stayed). */
START_TEST(pass_writes_nothing_when_one_of_its_writes_fails)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    test_seed(s, DATAPLANES);
    reconcile_report rep;
    pass_ok(s, 0, &rep);   /* creates the builtin root (its own create-only transaction) */
    reconcile_report_free(&rep);
    submit_all(s);
    char path[256], *err = NULL;
    snprintf(path, sizeof(path), "%s/store/meshca.db", tmpdir);
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "CREATE TRIGGER no_db BEFORE UPDATE ON objects WHEN "
                                      "NEW.name = 'db-01' AND NEW.kind = 'identities' BEGIN "
                                      "SELECT RAISE(ABORT, 'refused'); END;"
                                      "CREATE TRIGGER no_db_i BEFORE INSERT ON objects WHEN "
                                      "NEW.name = 'db-01' AND NEW.kind = 'identities' BEGIN "
                                      "SELECT RAISE(ABORT, 'refused'); END;", NULL, NULL, &err),
                     SQLITE_OK);
    uint64_t before = revision(s);
    diag_list diags = DIAG_LIST_INIT;
    rep = pass(s, 0, &diags);
    ck_assert_uint_eq(rep.store_failures, 1);
    ck_assert_uint_eq(rep.nactions, 0);
    ck_assert_str_eq(find_diag(&diags, "store-error")->severity == DIAG_ERROR ? "error" : "", "error");
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    ck_assert_uint_eq(revision(s), before);
    identity id = {0};
    ck_assert_int_eq(identity_get(s, "default", "web-01", &id, NULL), 0);
    ck_assert_int_eq(id.generation, 0);   /* web-01 was not signed either */
    identity_clear(&id);

    ck_assert_int_eq(sqlite3_exec(db, "DROP TRIGGER no_db; DROP TRIGGER no_db_i;", NULL, NULL, &err), SQLITE_OK);
    sqlite3_close(db);
    pass_ok(s, 0, &rep);
    ck_assert_uint_eq(rep.issued, 2);
    reconcile_report_free(&rep);
    store_close(s);
}
END_TEST

/* The API's PUT .../ack: what S4's gating counts, for the current generation only. */
START_TEST(ack_records_what_the_current_generation_carries)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    test_seed(s, DATAPLANES);
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(ack_record(s, "default", "web-01", 1, 0, err), MESHCA_ENOTFOUND);
    submit_all(s);
    reconcile_report rep;
    pass_ok(s, 0, &rep);
    reconcile_report_free(&rep);
    dataplane_status st;
    memset(&st, 0, sizeof(st));
    ck_assert_int_eq(state_get_status(s, "default", "web-01", &st, NULL), STORE_ENOTFOUND);
    ck_assert_int_eq(ack_record(s, "default", "web-01", 2, 0, err), MESHCA_ECONFLICT);
    ck_assert_ptr_nonnull(strstr(err, "generation 2 is not the current one (1)"));
    ck_assert_int_eq(ack_record(s, "default", "web-01", 1, 0, err), 0);
    ck_assert_int_eq(state_get_status(s, "default", "web-01", &st, NULL), STORE_OK);
    ck_assert_str_eq(st.issued_backend, "ca-1");
    ck_assert_uint_eq(st.nsupported, 1);
    ck_assert_str_eq(st.supported_backends[0], "ca-1");
    ck_assert_int_eq(st.acknowledged_generation, 1);
    ck_assert_int_eq(st.generation, 1);
    ck_assert_ptr_nonnull(st.certificate_serial);
    ck_assert_ptr_nonnull(st.certificate_expiration_time);
    ck_assert_uint_eq(st.ntags, 2);
    dataplane_status_clear(&st);

    /* After ca-2 is added the ack of the new generation lists both backends. */
    test_seed(s, MESH_ADD);
    pass_ok(s, 0, &rep);
    reconcile_report_free(&rep);
    ck_assert_int_eq(ack_record(s, "default", "web-01", 2, 0, err), 0);
    ck_assert_int_eq(state_get_status(s, "default", "web-01", &st, NULL), STORE_OK);
    ck_assert_uint_eq(st.nsupported, 2);
    ck_assert_str_eq(st.supported_backends[1], "ca-2");
    ck_assert_str_eq(st.issued_backend, "ca-1");
    ck_assert_int_eq(st.acknowledged_generation, 2);
    dataplane_status_clear(&st);
    store_close(s);
}
END_TEST

/* Acknowledges the current identity of dp as a successful agent would. */
static void ack(store *s, const char *dp)
{
    identity id = {0};
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(identity_get(s, "default", dp, &id, NULL), 0);
    ck_assert_msg(ack_record(s, "default", dp, (uint64_t)id.generation, 0, err) == 0, "ack: %s", err);
    identity_clear(&id);
}

START_TEST(forced_switch_cross_signs_until_every_dataplane_trusts_new_ca)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_ADD);
    test_seed(s, DATAPLANES);
    submit_all(s);
    reconcile_report rep;
    pass_ok(s, 0, &rep);
    reconcile_report_free(&rep);
    identity id = {0};
    char *old_bundle = mesh_bundle_pem(s, "default");
    /* Only web-01 loaded the bundle with ca-2: db-01 does not trust ca-2. */
    ack(s, "web-01");

    /* `apply --force` switched and recorded the cross-sign request. */
    test_seed(s, MESH_SWITCH);
    json_t *ms = json_pack("{s:{s:s,s:s}}", "crossSign", "from", "ca-1", "to", "ca-2");
    ck_assert_int_eq(state_put_mesh_status(s, "default", ms, STORE_ANY_VERSION), 0);
    json_decref(ms);
    pass_ok(s, 0, &rep);
    ck_assert_uint_eq(rep.reissued, 2);
    reconcile_report_free(&rep);
    ck_assert_int_eq(identity_get(s, "default", "db-01", &id, NULL), 0);
    ck_assert(id.cross_signed);
    ck_assert_str_eq(id.backend, "ca-2");
    ck_assert_int_eq(count_certs(id.cert_pem), 2);
    /* A dataplane that trusts only ca-1 accepts the ca-2 leaf through the cross-signed CA. */
    char *end = strstr(old_bundle, "-----END CERTIFICATE-----");
    end[strlen("-----END CERTIFICATE-----")] = '\0';
    write_file("ca1.pem", old_bundle);
    free(old_bundle);
    write_file("leaf.pem", id.cert_pem);
    ck_assert_int_eq(sh("openssl verify -CAfile '%s/ca1.pem' -untrusted '%s/leaf.pem' '%s/leaf.pem'"
                        " >/dev/null 2>&1", tmpdir, tmpdir, tmpdir), 0);
    identity_clear(&id);
    uint64_t before = revision(s);
    pass_ok(s, 0, &rep);
    reconcile_report_free(&rep);
    ck_assert_uint_eq(revision(s), before);

    /* Both load the new bundle: the cross-signed CA is dropped and the flag cleared. */
    ack(s, "web-01");
    ack(s, "db-01");
    pass_ok(s, 0, &rep);
    ck_assert_uint_eq(rep.reissued, 2);
    reconcile_report_free(&rep);
    ck_assert_int_eq(identity_get(s, "default", "db-01", &id, NULL), 0);
    ck_assert(!id.cross_signed);
    ck_assert_int_eq(count_certs(id.cert_pem), 1);
    ck_assert_int_eq(verify_identity(s, &id), 0);
    identity_clear(&id);
    ck_assert_int_eq(state_get_mesh_status(s, "default", &ms, NULL), 0);
    ck_assert_ptr_null(json_object_get(ms, "crossSign"));
    json_decref(ms);
    before = revision(s);
    pass_ok(s, 0, &rep);
    reconcile_report_free(&rep);
    ck_assert_uint_eq(revision(s), before);
    store_close(s);
}
END_TEST

/* Regression (issue 9 #9): shortening dpCert.rotation.expiration (2h -> 10m) reissued nothing;
 * certificates lived to their old renewal point. In CSR mode the agent renews: its renewAt
 * becomes now, and its new CSR is signed for the new lifetime. */
START_TEST(shortened_expiration_has_certificates_that_outlive_it_renewed)
{
    static const char two_hours[] =
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
        "  - name: ca-1\n    type: builtin\n    dpCert:\n      rotation: {expiration: 2h}\n";
    static const char ten_minutes[] =
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
        "  - name: ca-1\n    type: builtin\n    dpCert:\n      rotation: {expiration: 10m}\n";
    store *s = test_store_open(url);
    test_seed(s, two_hours);
    test_seed(s, DATAPLANES);
    submit_all(s);
    int64_t t0 = (int64_t)time(NULL);
    reconcile_report rep;
    pass_ok(s, t0, &rep);
    reconcile_report_free(&rep);
    identity before = {0}, after = {0};
    ck_assert_int_eq(identity_get(s, "default", "web-01", &before, NULL), 0);
    ck_assert_int_eq(before.not_after, t0 + 2 * 3600);

    test_seed(s, ten_minutes);
    pass_ok(s, t0 + 60, &rep);
    ck_assert_uint_eq(rep.nactions, 0);
    reconcile_report_free(&rep);
    ck_assert_int_eq(identity_get(s, "default", "web-01", &after, NULL), 0);
    ck_assert_int_eq(after.renew_at, t0 + 60);   /* the agent renews now */
    identity_clear(&after);

    submit_all(s);
    pass_ok(s, t0 + 60, &rep);
    ck_assert_uint_eq(rep.renewed, 2);
    reconcile_report_free(&rep);
    ck_assert_int_eq(identity_get(s, "default", "web-01", &after, NULL), 0);
    ck_assert_int_eq(after.not_after, t0 + 60 + 600);
    ck_assert_str_ne(after.serial, before.serial);
    ck_assert_int_eq(verify_identity(s, &after), 0);

    /* The new certificates fit the new lifetime: nothing more to do. */
    uint64_t rev = revision(s);
    pass_ok(s, t0 + 120, &rep);
    ck_assert_uint_eq(rep.unchanged, 2);
    reconcile_report_free(&rep);
    ck_assert_uint_eq(revision(s), rev);
    identity_clear(&before);
    identity_clear(&after);
    store_close(s);
}
END_TEST

/* Regression (issue 9 #18): a corrupt identity was never replaced (warned on every pass) and
 * reads of corrupt objects said "store I/O error" naming nothing. */
START_TEST(corrupt_identity_is_named_and_removed_once)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    test_seed(s, DATAPLANES);
    submit_all(s);
    reconcile_report rep;
    pass_ok(s, 0, &rep);
    reconcile_report_free(&rep);
    put_raw(s, STATE_IDENTITIES, "default", "web-01", "garbage{");

    identity id = {0};
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(identity_read(s, "default", "web-01", &id, NULL, err), MESHCA_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err, "identities/default/web-01: corrupt object: not JSON"));
    ck_assert_int_eq(identity_get(s, "default", "web-01", &id, NULL), MESHCA_ECORRUPT);
    put_raw(s, STATE_IDENTITIES, "default", "web-01", "{\"mesh\":\"default\"}");
    ck_assert_int_eq(identity_read(s, "default", "web-01", &id, NULL, err), MESHCA_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err, "identities/default/web-01: corrupt object: field "
                                      "'dataplane' is missing"));

    diag_list diags = DIAG_LIST_INIT;
    rep = pass(s, 0, &diags);
    ck_assert_uint_eq(rep.issued, 0);
    ck_assert_uint_eq(rep.unchanged, 1);
    ck_assert_uint_eq(rep.failed_meshes, 0);
    const diag *d = find_diag(&diags, "corrupt-object");
    ck_assert_int_eq(d->severity, DIAG_WARNING);
    ck_assert_ptr_nonnull(strstr(d->message, "identities/default/web-01"));
    ck_assert_ptr_nonnull(strstr(d->message, "removed, the agent's next CSR issues a new identity"));
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    /* No key of ours can be trusted in it: removed, and the agent's next CSR issues anew. */
    ck_assert_int_eq(identity_get(s, "default", "web-01", &id, NULL), STORE_ENOTFOUND);
    EVP_PKEY_free(submit(s, "default", "web-01", false));
    rep = pass(s, 0, &diags);
    ck_assert_uint_eq(diags.count, 0);
    ck_assert_uint_eq(rep.issued, 1);
    ck_assert_str_eq(rep.actions[0].dataplane, "web-01");
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    ck_assert_int_eq(identity_get(s, "default", "web-01", &id, NULL), 0);
    ck_assert_int_eq(verify_identity(s, &id), 0);
    identity_clear(&id);

    /* Replaced for good: the next pass is quiet. */
    rep = pass(s, 0, &diags);
    ck_assert_uint_eq(diags.count, 0);
    ck_assert_uint_eq(rep.unchanged, 2);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    store_close(s);
}
END_TEST

/* Regression (issue 9 #18): a corrupt mesh status failed every command with "store I/O error"
 * naming nothing. Now it has its own code and name, and only that mesh is skipped. */
START_TEST(corrupt_mesh_status_skips_that_mesh_and_reconciles_the_others)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    test_seed(s, DATAPLANES);
    test_seed(s, "type: Mesh\nname: other\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
            "  - name: ca-1\n    type: builtin\n"
            "---\ntype: Dataplane\nmesh: other\nname: app-01\nnetworking:\n  address: 127.0.0.1\n"
            "  inbound:\n  - port: 80\n    tags: {kuma.io/service: app}\n");
    EVP_PKEY_free(submit(s, "other", "app-01", false));
    put_raw(s, STATE_MESHSTATUS, "default", "default", "[1, 2]");

    json_t *ms = NULL;
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(state_read_mesh_status(s, "default", &ms, NULL, err), MESHCA_ECORRUPT);
    ck_assert_str_eq(err, "meshstatus/default/default: corrupt object: JSON, but not an object");
    ck_assert_int_eq(state_get_mesh_status(s, "default", &ms, NULL), MESHCA_ECORRUPT);

    diag_list diags = DIAG_LIST_INIT;
    reconcile_report rep = pass(s, 0, &diags);
    ck_assert_uint_eq(rep.failed_meshes, 1);
    ck_assert_uint_eq(rep.store_failures, 0);
    ck_assert_uint_eq(rep.issued, 1);   /* other/app-01 */
    ck_assert_str_eq(rep.actions[0].mesh, "other");
    const diag *d = find_diag(&diags, "corrupt-object");
    ck_assert_int_eq(d->severity, DIAG_ERROR);
    ck_assert_str_eq(d->message, "mesh 'default' skipped: meshstatus/default/default: corrupt "
                                 "object: JSON, but not an object");
    reconcile_report_free(&rep);
    diag_list_free(&diags);

    /* A corrupt dataplane status has the same code and names its object. */
    put_raw(s, STATE_DPSTATUS, "default", "web-01", "{\"mesh\": 7}");
    dataplane_status st;
    memset(&st, 0, sizeof(st));
    ck_assert_int_eq(state_read_status(s, "default", "web-01", &st, NULL, err), MESHCA_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err, "dpstatus/default/web-01: corrupt object: "));
    store_close(s);
}
END_TEST

/* Issue 9 #8: a stored status holding a NUL byte was wrapped with snprintf and parsed len + 2
 * bytes, past what snprintf wrote. Now it is copied by length; such a value is corrupt, named. */
START_TEST(stored_status_holding_a_nul_byte_is_named_corrupt)
{
    static const char value[] = "{\"mesh\":\"default\",\"name\":\"web-01\"}\0{\"x\":1}";
    store *s = test_store_open(url);
    store_key key = {STATE_DPSTATUS, "default", "web-01"};
    ck_assert_int_eq(store_put(s, &key, value, sizeof(value) - 1, STORE_ANY_VERSION, NULL),
                     STORE_OK);
    dataplane_status st;
    memset(&st, 0, sizeof(st));
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(state_read_status(s, "default", "web-01", &st, NULL, err), MESHCA_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err, "dpstatus/default/web-01: corrupt object"));
    store_close(s);
}
END_TEST

/* Regression (issue 9 #10): one broken backend that is not enabled failed the whole mesh. It is
 * left out of the bundle and reported (warning and mesh status); the enabled one keeps signing. */
START_TEST(broken_backend_that_is_not_enabled_does_not_stop_the_mesh)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_ADD);
    test_seed(s, DATAPLANES);
    submit_all(s);
    reconcile_report rep;
    pass_ok(s, 0, &rep);
    reconcile_report_free(&rep);
    /* ca-2's key secret now holds ca-1's key: key and cert do not match. */
    store_key k1 = {STATE_SECRETS, "default", "default.ca-builtin-key-ca-1"};
    char *key1 = NULL;
    size_t len = 0;
    ck_assert_int_eq(store_get(s, &k1, &key1, &len, NULL), STORE_OK);
    char *p = strstr(key1, "ca-builtin-key-ca-1");
    ck_assert_ptr_nonnull(p);
    p[strlen("ca-builtin-key-ca")+1] = '2';
    put_raw(s, STATE_SECRETS, "default", "default.ca-builtin-key-ca-2", key1);
    OPENSSL_cleanse(key1, len);
    free(key1);

    diag_list diags = DIAG_LIST_INIT;
    rep = pass(s, 0, &diags);
    ck_assert_uint_eq(rep.failed_meshes, 0);
    ck_assert_uint_eq(rep.rebundled, 2);
    const diag *d = find_diag(&diags, "ca-unavailable");
    ck_assert_int_eq(d->severity, DIAG_WARNING);
    ck_assert_str_eq(d->path, "mtls.backends[1]");
    ck_assert_ptr_nonnull(strstr(d->message, "backend 'ca-2' cannot be used and is left out of "
                                             "the trust bundle"));
    ck_assert_ptr_nonnull(strstr(d->message, "key does not match cert"));
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    identity id = {0};
    ck_assert_int_eq(identity_get(s, "default", "db-01", &id, NULL), 0);
    ck_assert_uint_eq(id.nbundle_backends, 1);
    ck_assert_str_eq(id.bundle_backends[0], "ca-1");
    ck_assert_int_eq(verify_identity(s, &id), 0);
    identity_clear(&id);
    json_t *ms = NULL;
    ck_assert_int_eq(state_get_mesh_status(s, "default", &ms, NULL), 0);
    json_t *c = json_array_get(json_object_get(ms, "conditions"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(c, "type")), "BackendUnavailable");
    ck_assert_str_eq(json_string_value(json_object_get(c, "backend")), "ca-2");
    json_decref(ms);

    /* Repaired (the secrets removed: the root is generated again): back in the bundle, and the
     * condition is cleared. */
    store_key k2 = {STATE_SECRETS, "default", "default.ca-builtin-key-ca-2"};
    store_key c2 = {STATE_SECRETS, "default", "default.ca-builtin-cert-ca-2"};
    ck_assert_int_eq(store_delete(s, &k2, STORE_ANY_VERSION), STORE_OK);
    ck_assert_int_eq(store_delete(s, &c2, STORE_ANY_VERSION), STORE_OK);
    pass_ok(s, 0, &rep);
    ck_assert_uint_eq(rep.rebundled, 2);
    reconcile_report_free(&rep);
    ck_assert_int_eq(state_get_mesh_status(s, "default", &ms, NULL), 0);
    ck_assert_ptr_null(json_object_get(ms, "conditions"));
    json_decref(ms);
    store_close(s);
}
END_TEST

/* Issue 9 #15: the cross-sign trust check compared every dataplane with every status; it now
 * uses the validators' sorted index. Lookups by name, per mesh, the first of duplicates. */
/* Issue 13: a local CA's leaves are signed on the signing workers, in batches. More dataplanes
 * than one batch (1,024), half sending a CSR and half a bare key, on 2 workers: each dataplane
 * gets exactly one leaf, for its own key, that verifies strictly against the mesh bundle; a
 * switch re-signs every stored key the same way. */
#define POOL_DPS 1100

/* X509_V_FLAG_X509_STRICT verification of every certificate of `pem` (leaf first, then its
 * chain) against the bundle, in process: 1,100 openssl runs would take too long. */
static void verify_strict_in_process(const char *bundle_pem, const char *leaf_pem)
{
    STACK_OF(X509) *roots = NULL, *chain = NULL;
    ck_assert_int_eq(pki_chain_from_pem(bundle_pem, strlen(bundle_pem), &roots, NULL), 0);
    ck_assert_int_eq(pki_chain_from_pem(leaf_pem, strlen(leaf_pem), &chain, NULL), 0);
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    ck_assert_ptr_nonnull(st);
    ck_assert_ptr_nonnull(ctx);
    for (int i = 0; i < sk_X509_num(roots); i++)
        ck_assert_int_eq(X509_STORE_add_cert(st, sk_X509_value(roots, i)), 1);
    X509_STORE_set_flags(st, X509_V_FLAG_X509_STRICT);
    ck_assert_int_eq(X509_STORE_CTX_init(ctx, st, sk_X509_value(chain, 0), chain), 1);
    int ok = X509_verify_cert(ctx);
    ck_assert_msg(ok == 1, "strict verify: %s",
                  X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    sk_X509_pop_free(roots, X509_free);
    sk_X509_pop_free(chain, X509_free);
}

static int cmp_action_dp(const void *a, const void *b)
{
    return strcmp(((const reconcile_action *)a)->dataplane, ((const reconcile_action *)b)->dataplane);
}

/* Every dataplane named once among the actions, with the verb expected. */
static void assert_one_action_each(reconcile_report *rep, reconcile_verb verb)
{
    ck_assert_uint_eq(rep->nactions, POOL_DPS);
    /* In dataplane order, across the batches under way at once (one signed while the one before
     * is finished): what signing one at a time would report. */
    for (size_t i = 1; i < rep->nactions; i++)
        ck_assert_str_lt(rep->actions[i - 1].dataplane, rep->actions[i].dataplane);
    qsort(rep->actions, rep->nactions, sizeof(*rep->actions), cmp_action_dp);
    for (size_t i = 0; i < rep->nactions; i++) {
        ck_assert_int_eq(rep->actions[i].verb, verb);
        if (i > 0)
            ck_assert_str_ne(rep->actions[i].dataplane, rep->actions[i - 1].dataplane);
    }
}

static void check_pool_leaves(store *s, EVP_PKEY **keys, const char *backend, long long gen)
{
    char *bundle = mesh_bundle_pem(s, "default");
    for (int i = 0; i < POOL_DPS; i++) {
        char name[32];
        identity id = {0};
        X509 *leaf = NULL;
        snprintf(name, sizeof(name), "dp-%04d", i);
        ck_assert_int_eq(identity_get(s, "default", name, &id, NULL), 0);
        ck_assert_str_eq(id.backend, backend);
        ck_assert_int_eq(id.generation, gen);
        ck_assert_ptr_null(id.pending_key_pem);
        ck_assert_int_eq(count_certs(id.cert_pem), 1);
        ck_assert_int_eq(pki_cert_from_pem(id.cert_pem, strlen(id.cert_pem), &leaf, NULL), 0);
        ck_assert_msg(pki_key_matches(leaf, keys[i]), "%s: leaf is not for its own key", name);
        X509_free(leaf);
        verify_strict_in_process(bundle, id.cert_pem);
        identity_clear(&id);
    }
    free(bundle);
}

/* Issue 13: two signing batches are under way at once. A CA that refuses a batch while the one
 * behind it is being signed stops the mesh there: the batch under way is dropped (its leaves
 * freed), nothing of either is written, and the next pass issues every dataplane. Three batches'
 * worth, so that the refusal comes out of the pass's loop, with the second batch posted. */
#define REFUSE_DPS (2 * 1024 + 52)

/* n Dataplanes of mesh default, each with its agent's pending key (one of 4). */
static void seed_pending_n(store *s, char **pubs, int count)
{
    for (int k = 0; k < 4; k++) {
        EVP_PKEY *key = NULL;
        ck_assert_int_eq(pki_generate_key(false, 0, &key, NULL), 0);
        ck_assert_int_eq(pki_pubkey_to_pem(key, &pubs[k], NULL), 0);
        EVP_PKEY_free(key);
    }
    /* Each Dataplane and its agent's pending key, 250 per transaction: seeding is not tested. */
    for (int base = 0; base < count; base += 250) {
        store_op ops[500];
        char *vals[500], names[250][32], yaml[512];
        size_t n = 0;
        for (int i = base; i < base + 250 && i < count; i++) {
            manifest_set *set = manifest_set_new();
            diag_list d = DIAG_LIST_INIT;
            char *name = names[i - base];
            snprintf(name, sizeof(names[0]), "dp-%04d", i);
            int len = snprintf(yaml, sizeof(yaml), "type: Dataplane\nmesh: default\nname: %s\n"
                               "networking:\n  address: 127.0.0.1\n  inbound:\n  - port: 8443\n"
                               "    tags:\n      kuma.io/service: svc-%d\n", name, i % 7);
            ck_assert_int_eq(manifest_load_buffer(set, "dp.yaml", yaml, (size_t)len, &d), 0);
            ck_assert_ptr_nonnull(vals[n] = state_encode_resource(manifest_set_get(set, 0)));
            ops[n] = (store_op){.type = STORE_OP_PUT, .key = {STATE_DATAPLANES, "default", name},
                                .value = vals[n], .len = strlen(vals[n]),
                                .expected_version = STORE_ANY_VERSION};
            n++;
            diag_list_free(&d);
            manifest_set_free(set);
            identity id = {.mesh = "default", .dataplane = name, .pending_key_pem = pubs[i % 4]};
            ck_assert_ptr_nonnull(vals[n] = identity_encode(&id));
            ops[n] = (store_op){.type = STORE_OP_PUT, .key = {STATE_IDENTITIES, "default", name},
                                .value = vals[n], .len = strlen(vals[n]),
                                .expected_version = STORE_ANY_VERSION};
            n++;
        }
        ck_assert_int_eq(store_txn(s, ops, n), STORE_OK);
        for (size_t i = 0; i < n; i++)
            free(vals[i]);
    }
}

/* REFUSE_DPS of them: more than two signing batches. */
static void seed_pending(store *s, char **pubs)
{
    seed_pending_n(s, pubs, REFUSE_DPS);
}

START_TEST(refusal_while_the_next_batch_is_signed_drops_it_and_writes_nothing)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_ADD);
    char *pubs[4] = {NULL};
    seed_pending(s, pubs);
    uint64_t rev_before = 0;
    ck_assert_int_eq(store_revision(s, &rev_before), STORE_OK);

    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    diag_list diags = DIAG_LIST_INIT;
    opts.sign_workers = 2;
    /* The first batch finished is refused: the second is being signed at that moment. */
    ck_assert_int_eq(failpoint_configure("pass.sign.batch=1*error", NULL), 0);
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_int_eq(failpoint_configure(NULL, NULL), 0);
    ck_assert_uint_eq(rep.failed_meshes, 1);
    ck_assert_uint_eq(rep.issued, 0);
    ck_assert_uint_eq(rep.nactions, 0);
    bool reported = false;
    for (size_t i = 0; i < diags.count; i++)
        reported |= strcmp(diags.items[i].code, "ca-unavailable") == 0 &&
                    strstr(diags.items[i].message, "could not sign for 'dp-0000'") &&
                    strstr(diags.items[i].message, "failpoint pass.sign.batch");
    ck_assert_msg(reported, "no ca-unavailable for dp-0000 among %zu diagnostics", diags.count);
    diag_list_free(&diags);
    reconcile_report_free(&rep);
    /* No identity was issued: the first, the second batch's first and the last still wait. */
    static const char *const probe[] = {"dp-0000", "dp-1024", "dp-2099"};
    for (size_t i = 0; i < sizeof(probe) / sizeof(probe[0]); i++) {
        identity id = {0};
        ck_assert_int_eq(identity_get(s, "default", probe[i], &id, NULL), 0);
        ck_assert_int_eq(id.generation, 0);
        ck_assert_ptr_nonnull(id.pending_key_pem);
        ck_assert_ptr_null(id.cert_pem);
        identity_clear(&id);
    }
    /* Nor any identity written at all (the pass did write its CAs and the mesh status). */
    store_entry *ids = NULL;
    size_t nids = 0;
    ck_assert_int_eq(store_list(s, STATE_IDENTITIES, "default", &ids, &nids), STORE_OK);
    ck_assert_uint_eq(nids, REFUSE_DPS);
    for (size_t i = 0; i < nids; i++)
        ck_assert_msg(ids[i].version <= rev_before, "%s written by the refused pass", ids[i].name);
    store_entries_free(ids, nids);

    /* The next pass, nothing refused: every dataplane issued once. */
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_msg(!diag_has_errors(&diags), "%s", diags.count ? diags.items[0].message : "");
    ck_assert_uint_eq(rep.issued, REFUSE_DPS);
    ck_assert_uint_eq(rep.failed_meshes, 0);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    for (int k = 0; k < 4; k++)
        free(pubs[k]);
    store_close(s);
}
END_TEST

/* Issue 13: on SQLite the pass adds each finished batch's writes to one open transaction while
 * the workers sign the next (pass_flush), and commits once at its end. A part that fails rolls
 * back the parts before it: nothing of the pass is written, and the pass says why. */
START_TEST(writes_flushed_while_signing_commit_once_or_not_at_all)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_ADD);
    char *pubs[4] = {NULL};
    seed_pending(s, pubs);
    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    diag_list diags = DIAG_LIST_INIT;
    opts.sign_workers = 2;
    /* Three batches: the first flush (1,024 identities) succeeds, the second, at the commit,
     * fails. */
    ck_assert_int_eq(failpoint_configure("pass.flush=2*error", NULL), 0);
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_int_eq(failpoint_configure(NULL, NULL), 0);
    ck_assert_uint_eq(rep.store_failures, 1);
    ck_assert_uint_eq(rep.issued, 0);
    ck_assert_uint_eq(rep.nactions, 0);
    const diag *d = find_diag(&diags, "store-error");
    ck_assert_int_eq(d->severity, DIAG_ERROR);
    ck_assert_str_eq(d->message, "cannot write the pass's changes: failpoint pass.flush: injected "
                                 "I/O error; retried on the next pass");
    diag_list_free(&diags);
    reconcile_report_free(&rep);
    /* The builtin CAs' creation committed on its own; no identity of the pass did, not even
     * the first batch's, flushed before the failure. */
    uint64_t rev_before = revision(s);
    store_entry *ids = NULL;
    size_t nids = 0;
    ck_assert_int_eq(store_list(s, STATE_IDENTITIES, "default", &ids, &nids), STORE_OK);
    ck_assert_uint_eq(nids, REFUSE_DPS);
    for (size_t i = 0; i < nids; i++) {
        identity id = {0};
        ck_assert_int_eq(identity_get(s, "default", ids[i].name, &id, NULL), 0);
        ck_assert_msg(id.generation == 0 && id.pending_key_pem && !id.cert_pem,
                      "%s issued by the failed pass", ids[i].name);
        identity_clear(&id);
    }
    store_entries_free(ids, nids);

    /* The next pass: every dataplane issued, all in one commit (one new revision). */
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_msg(!diag_has_errors(&diags), "%s", diags.count ? diags.items[0].message : "");
    ck_assert_uint_eq(rep.issued, REFUSE_DPS);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    ck_assert_uint_eq(revision(s), rev_before + 1);
    ck_assert_int_eq(store_list(s, STATE_IDENTITIES, "default", &ids, &nids), STORE_OK);
    ck_assert_uint_eq(nids, REFUSE_DPS);
    for (size_t i = 0; i < nids; i++)
        ck_assert_uint_eq(ids[i].version, rev_before + 1);
    store_entries_free(ids, nids);

    /* A leader's pass (a fence with a deadline: run) holds no transaction open, as its lease
     * renewal would wait for the lock: a switch re-signs every key and commits at the end, the
     * flush point never reached. */
    test_seed(s, MESH_SWITCH);
    store_key mkey = {STATE_MESHES, NULL, "default"};
    uint64_t mver = 0;
    char *mval = NULL;
    ck_assert_int_eq(store_get(s, &mkey, &mval, NULL, &mver), STORE_OK);
    free(mval);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t deadline = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 600000;
    ck_assert_int_eq(store_fence(s, &mkey, mver, &deadline), STORE_OK);
    ck_assert_int_eq(failpoint_configure("pass.flush=error", NULL), 0);
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_int_eq(failpoint_configure(NULL, NULL), 0);
    ck_assert_msg(!diag_has_errors(&diags), "%s", diags.count ? diags.items[0].message : "");
    ck_assert_uint_eq(rep.reissued, REFUSE_DPS);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    ck_assert_int_eq(store_fence(s, NULL, 0, NULL), STORE_OK);
    ck_assert_uint_eq(revision(s), rev_before + 3);   /* the Mesh put, then the one commit */
    for (int k = 0; k < 4; k++)
        free(pubs[k]);
    store_close(s);
}
END_TEST

/* A flush that fails in the pass's loop (the first batch's, as a full disk would) rolls the open
 * transaction back; the batches after it are dropped, not flushed into a transaction of their
 * own: the pass writes nothing, says why, and leaves no transaction open on the handle (so the
 * next pass on it, and another writer meanwhile, write as usual). */
START_TEST(flush_failed_in_the_loop_drops_the_later_batches_and_leaves_no_transaction_open)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_ADD);
    char *pubs[4] = {NULL};
    seed_pending(s, pubs);
    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    diag_list diags = DIAG_LIST_INIT;
    opts.sign_workers = 2;
    /* Three batches: the first flush fails; the second's and the third's come after it. */
    ck_assert_int_eq(failpoint_configure("pass.flush=1*error", NULL), 0);
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_int_eq(failpoint_configure(NULL, NULL), 0);
    ck_assert_uint_eq(rep.store_failures, 1);
    ck_assert_uint_eq(rep.issued, 0);
    ck_assert_uint_eq(rep.nactions, 0);
    const diag *d = find_diag(&diags, "store-error");
    ck_assert_int_eq(d->severity, DIAG_ERROR);
    ck_assert_str_eq(d->message, "cannot write the pass's changes: failpoint pass.flush: injected "
                                 "I/O error; retried on the next pass");
    diag_list_free(&diags);
    reconcile_report_free(&rep);
    /* No transaction is left open: another handle writes at once, and this one does too. */
    store *other = test_store_open(url);
    store_key k = {STATE_DPSTATUS, "default", "probe"};
    ck_assert_msg(store_put(other, &k, "{}", 2, STORE_ANY_VERSION, NULL) == STORE_OK, "%s",
                  store_errmsg(other));
    store_close(other);
    uint64_t rev_before = revision(s);
    store_entry *ids = NULL;
    size_t nids = 0;
    ck_assert_int_eq(store_list(s, STATE_IDENTITIES, "default", &ids, &nids), STORE_OK);
    ck_assert_uint_eq(nids, REFUSE_DPS);
    for (size_t i = 0; i < nids; i++) {
        identity id = {0};
        ck_assert_int_eq(identity_get(s, "default", ids[i].name, &id, NULL), 0);
        ck_assert_msg(id.generation == 0 && id.pending_key_pem && !id.cert_pem,
                      "%s issued by the failed pass", ids[i].name);
        identity_clear(&id);
    }
    store_entries_free(ids, nids);
    /* The next pass on the same handle: every dataplane issued, in one commit. */
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_msg(!diag_has_errors(&diags), "%s", diags.count ? diags.items[0].message : "");
    ck_assert_uint_eq(rep.issued, REFUSE_DPS);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    ck_assert_uint_eq(revision(s), rev_before + 1);
    for (int i = 0; i < 4; i++)
        free(pubs[i]);
    store_close(s);
}
END_TEST

/* Changes one identity through a second handle once the pass decided its first dataplane, as
 * an agent's delete or CSR (its pending key) could land meanwhile: deletes it, or writes it
 * again (a new version). */
typedef struct late_change {
    const char *url;
    const char *dataplane;
    bool delete;
    int done;   /* changes made */
} late_change;

static void change_identity_late(void *userdata, size_t done, size_t total)
{
    late_change *lc = userdata;
    (void)total;
    if (done != 1)
        return;
    store *other = test_store_open(lc->url);
    store_key key = {STATE_IDENTITIES, "default", lc->dataplane};
    if (lc->delete) {
        ck_assert_int_eq(store_delete(other, &key, STORE_ANY_VERSION), STORE_OK);
    } else {
        char *value = NULL;
        size_t len = 0;
        ck_assert_int_eq(store_get(other, &key, &value, &len, NULL), STORE_OK);
        ck_assert_int_eq(store_put(other, &key, value, len, STORE_ANY_VERSION, NULL), STORE_OK);
        free(value);
    }
    store_close(other);
    lc->done++;
}

/* Issue 13: the pass reads its identities range by range as it decides (1,024 names each), not
 * in one scan before the first batch: the last range is read after the first dataplane was
 * decided, so it sees a change made then. A range the store fails to read, and the ones after,
 * go through the full path (each identity read alone): the verdicts are the same. */
START_TEST(identities_are_read_range_by_range_as_the_pass_decides)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    char *pubs[4] = {NULL};
    seed_pending(s, pubs);
    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    diag_list diags = DIAG_LIST_INIT;
    late_change lc = {url, "dp-2099", true, 0};
    opts.sign_workers = 1;
    opts.progress = change_identity_late;
    opts.progress_userdata = &lc;
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_msg(!diag_has_errors(&diags), "%s", diags.count ? diags.items[0].message : "");
    ck_assert_int_eq(lc.done, 1);
    ck_assert_uint_eq(rep.issued, REFUSE_DPS - 1);
    ck_assert_uint_eq(rep.awaiting, 1);
    ck_assert_uint_eq(rep.store_failures, 0);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    identity id = {0};
    ck_assert_int_eq(identity_get(s, "default", "dp-2099", &id, NULL), STORE_ENOTFOUND);
    ck_assert_int_eq(identity_get(s, "default", "dp-2098", &id, NULL), 0);
    ck_assert_int_eq(id.generation, 1);
    identity_clear(&id);

    /* The second range fails: it and the third are read identity by identity, unchanged. */
    opts.progress = NULL;
    uint64_t rev_before = revision(s);
    ck_assert_int_eq(failpoint_configure("store.scan.range=2*error", NULL), 0);
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_int_eq(failpoint_configure(NULL, NULL), 0);
    ck_assert_msg(!diag_has_errors(&diags), "%s", diags.count ? diags.items[0].message : "");
    ck_assert_uint_eq(rep.unchanged, REFUSE_DPS - 1);
    ck_assert_uint_eq(rep.awaiting, 1);
    ck_assert_uint_eq(rep.issued + rep.reissued + rep.renewed + rep.rebundled, 0);
    ck_assert_uint_eq(revision(s), rev_before);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    for (int k = 0; k < 4; k++)
        free(pubs[k]);
    store_close(s);
}
END_TEST

/* One identity another writer changed while the pass worked (an agent's CSR: in a large mesh
 * one lands during nearly every long pass) costs that dataplane's write, not the pass: the rest
 * commits in one transaction, the warning names it, and the next pass signs it. */
START_TEST(an_identity_changed_during_the_pass_is_left_to_the_next_and_the_rest_commits)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    char *pubs[4] = {NULL};
    seed_pending_n(s, pubs, 300);
    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    diag_list diags = DIAG_LIST_INIT;
    late_change lc = {url, "dp-0005", false, 0};
    opts.sign_workers = 1;
    opts.progress = change_identity_late;
    opts.progress_userdata = &lc;
    uint64_t rev_before = revision(s);
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_int_eq(lc.done, 1);
    ck_assert_msg(!diag_has_errors(&diags), "%s", diags.count ? diags.items[0].message : "");
    ck_assert_uint_eq(rep.store_failures, 0);
    ck_assert_uint_eq(rep.issued, 299);
    for (size_t i = 0; i < rep.nactions; i++)
        ck_assert_str_ne(rep.actions[i].dataplane, "dp-0005");
    const diag *d = find_diag(&diags, "conflict");
    ck_assert_int_eq(d->severity, DIAG_WARNING);
    ck_assert_str_eq(d->message, "1 dataplane changed while this pass worked (dp-0005: an "
                                 "agent's CSR, most often); their writes were left to the next "
                                 "pass, the rest written");
    /* The builtin CA created, the touch, then the pass's one commit. */
    ck_assert_uint_eq(revision(s), rev_before + 3);
    identity id = {0};
    ck_assert_int_eq(identity_get(s, "default", "dp-0005", &id, NULL), 0);
    ck_assert_int_eq(id.generation, 0);
    identity_clear(&id);
    ck_assert_int_eq(identity_get(s, "default", "dp-0006", &id, NULL), 0);
    ck_assert_int_eq(id.generation, 1);
    identity_clear(&id);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    /* The next pass signs the one left. */
    opts.progress = NULL;
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_msg(!diag_has_errors(&diags), "%s", diags.count ? diags.items[0].message : "");
    ck_assert_uint_eq(rep.issued, 1);
    ck_assert_str_eq(rep.actions[0].dataplane, "dp-0005");
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    for (int k = 0; k < 4; k++)
        free(pubs[k]);
    store_close(s);
}
END_TEST

/* Issue 13: a pass that flushes into an open transaction leaves its version checks out only
 * while the store is still at the revision it read before anything else
 * (store_txn_open_since). An identity another writer changed before the first flush (an agent's
 * CSR) moved the store on: the checks are made, the change is not overwritten, and nothing of
 * the pass is written (an open transaction cannot drop a part: the next pass does it all). */
START_TEST(a_change_before_the_first_flush_is_caught_by_the_flushed_checks)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_ADD);
    char *pubs[4] = {NULL};
    seed_pending(s, pubs);
    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    diag_list diags = DIAG_LIST_INIT;
    opts.sign_workers = 2;
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_uint_eq(rep.issued, REFUSE_DPS);
    reconcile_report_free(&rep);
    diag_list_free(&diags);

    /* A switch re-signs every key in three batches; dp-0005 is written by another handle once
     * the pass decided its first dataplane, before any flush. */
    test_seed(s, MESH_SWITCH);
    late_change lc = {url, "dp-0005", false, 0};
    opts.progress = change_identity_late;
    opts.progress_userdata = &lc;
    uint64_t rev_before = revision(s);
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_int_eq(lc.done, 1);
    ck_assert_uint_eq(rep.reissued, 0);
    ck_assert_uint_eq(rep.nactions, 0);
    const diag *d = find_diag(&diags, "conflict");
    ck_assert_int_eq(d->severity, DIAG_WARNING);
    ck_assert_msg(strstr(d->message, "the store changed while this pass worked (") == d->message &&
                      strstr(d->message, "identities/default/dp-0005: version conflict") &&
                      strstr(d->message, "nothing written, left to the next pass"),
                  "%s", d->message);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    /* Only the touch was written: dp-0005 as the other writer left it, still of ca-1. */
    ck_assert_uint_eq(revision(s), rev_before + 1);
    identity id = {0};
    uint64_t ver = 0;
    ck_assert_int_eq(identity_get(s, "default", "dp-0005", &id, &ver), 0);
    ck_assert_uint_eq(ver, rev_before + 1);
    ck_assert_str_eq(id.backend, "ca-1");
    identity_clear(&id);

    /* Unchanged since it read the store, the next pass writes everything. */
    opts.progress = NULL;
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_msg(!diag_has_errors(&diags), "%s", diags.count ? diags.items[0].message : "");
    ck_assert_uint_eq(rep.reissued, REFUSE_DPS);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    ck_assert_uint_eq(revision(s), rev_before + 2);
    ck_assert_int_eq(identity_get(s, "default", "dp-0005", &id, &ver), 0);
    ck_assert_str_eq(id.backend, "ca-2");
    identity_clear(&id);
    for (int k = 0; k < 4; k++)
        free(pubs[k]);
    store_close(s);
}
END_TEST

START_TEST(two_signing_workers_issue_one_strictly_valid_leaf_per_dataplane)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_ADD);
    size_t cap = (size_t)POOL_DPS * 200, len = 0;
    char *yaml = malloc(cap);
    ck_assert_ptr_nonnull(yaml);
    yaml[0] = '\0';
    for (int i = 0; i < POOL_DPS; i++)
        len += (size_t)snprintf(yaml + len, cap - len,
                                "%stype: Dataplane\nmesh: default\nname: dp-%04d\nnetworking:\n"
                                "  address: 127.0.0.1\n  inbound:\n  - port: 8443\n    tags:\n"
                                "      kuma.io/service: svc-%d\n",
                                i ? "---\n" : "", i, i % 7);
    test_seed(s, yaml);
    free(yaml);
    EVP_PKEY **keys = calloc(POOL_DPS, sizeof(*keys));
    ck_assert_ptr_nonnull(keys);
    char err[MESHCA_ERRBUF] = "";
    for (int i = 0; i < POOL_DPS; i++) {
        char name[32], *csr = NULL;
        unsigned char *der = NULL;
        snprintf(name, sizeof(name), "dp-%04d", i);
        ck_assert_int_eq(pki_generate_key(false, 0, &keys[i], err), 0);
        int n = i2d_PUBKEY(keys[i], &der);
        ck_assert_int_gt(n, 0);
        /* Odd ones as the API submits (with the CSR, verified again by the worker). */
        if (i % 2)
            ck_assert_int_eq(pki_make_csr(keys[i], &csr, err), 0);
        ck_assert_msg(reconcile_submit_key(s, "default", name, der, (size_t)n, csr, err) == 0,
                      "submit: %s", err);
        OPENSSL_free(der);
        free(csr);
    }

    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    diag_list diags = DIAG_LIST_INIT;
    opts.sign_workers = 2;
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_msg(diags.count == 0, "%s: %s", diags.count ? diags.items[0].code : "",
                  diags.count ? diags.items[0].message : "");
    ck_assert_uint_eq(rep.issued, POOL_DPS);
    ck_assert_uint_eq(rep.failed_meshes, 0);
    assert_one_action_each(&rep, RECONCILE_ISSUED);
    reconcile_report_free(&rep);
    check_pool_leaves(s, keys, "ca-1", 1);

    /* A switch: every stored public key re-signed by ca-2 on the workers. */
    test_seed(s, MESH_SWITCH);
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_msg(diags.count == 0, "%s: %s", diags.count ? diags.items[0].code : "",
                  diags.count ? diags.items[0].message : "");
    ck_assert_uint_eq(rep.reissued, POOL_DPS);
    assert_one_action_each(&rep, RECONCILE_REISSUED);
    reconcile_report_free(&rep);
    check_pool_leaves(s, keys, "ca-2", 2);
    diag_list_free(&diags);
    for (int i = 0; i < POOL_DPS; i++)
        EVP_PKEY_free(keys[i]);
    free(keys);
    store_close(s);
}
END_TEST

START_TEST(status_index_finds_each_dataplane_of_one_mesh_by_name)
{
    dataplane_status st[5];
    memset(st, 0, sizeof(st));
    const char *names[] = {"web-02", "db-01", "web-01", "web-01", "web-01"};
    const char *meshes[] = {"default", "default", "default", "default", "other"};
    for (int i = 0; i < 5; i++) {
        st[i].name = (char *)names[i];
        st[i].mesh = (char *)meshes[i];
        st[i].generation = i;
    }
    status_index idx = STATUS_INDEX_INIT;
    ck_assert_int_eq(status_index_build(st, 5, "default", &idx), 0);
    ck_assert_uint_eq(idx.count, 4);
    const dataplane_status *const *hit = status_index_find(&idx, "web-01");
    ck_assert_ptr_nonnull(hit);
    ck_assert_str_eq((*hit)->mesh, "default");
    ck_assert(hit == idx.items || strcmp(hit[-1]->name, "web-01") != 0);
    ck_assert_int_eq((*status_index_find(&idx, "db-01"))->generation, 1);
    ck_assert_ptr_null(status_index_find(&idx, "web-03"));
    status_index_free(&idx);
    ck_assert_ptr_null(idx.items);
}
END_TEST

/* This process's thread ids (/proc/self/task), sorted, as one string; *ret_n: how many. */
static char *thread_ids(int *ret_n)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    long ids[256];
    int n = 0;
    char *out = calloc(256, 12);
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_nonnull(out);
    while ((e = readdir(d)) && n < 256)
        if (e->d_name[0] != '.')
            ids[n++] = atol(e->d_name);
    closedir(d);
    for (int i = 1; i < n; i++)   /* insertion sort: a handful of threads */
        for (int j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            long t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    for (int i = 0; i < n; i++)
        snprintf(out + strlen(out), 12, "%ld ", ids[i]);
    *ret_n = n;
    return out;
}

/* A pass with the controller's CA cache and 2 signing workers. */
static void cached_pass(store *s, ca_cache *cache, reconcile_report *ret)
{
    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    diag_list diags = DIAG_LIST_INIT;
    opts.ca_cache = cache;
    opts.sign_workers = 2;
    *ret = (reconcile_report)RECONCILE_REPORT_INIT;
    ck_assert_int_eq(reconcile_once(s, &opts, ret, &diags), 0);
    ck_assert_msg(!diag_has_errors(&diags), "reconcile: %s", diags.count ? diags.items[0].message : "");
    diag_list_free(&diags);
}

/* A controller's passes that each sign one CSR (an agent's renewal) start the CA's signing
 * workers once and build the mesh's bundle once: both were made anew at every pass, most of
 * the controller's CPU per CSR besides the signature. A changed bundle is still built anew. */
START_TEST(cached_ca_keeps_its_workers_and_bundle_across_passes)
{
    store *s = test_store_open(url);
    ca_cache *cache = ca_cache_new();
    ca_cache_stats st;
    reconcile_report rep;
    identity id = {0};
    int base, n;
    free(thread_ids(&base));
    test_seed(s, MESH_CA1);
    test_seed(s, DATAPLANES);
    /* The first pass creates the builtin CA (its Secrets): the next opens it from the store. */
    cached_pass(s, cache, &rep);
    ck_assert_uint_eq(rep.issued, 0);
    reconcile_report_free(&rep);

    EVP_PKEY_free(submit(s, "default", "web-01", false));
    cached_pass(s, cache, &rep);
    ck_assert_uint_eq(rep.issued, 1);
    reconcile_report_free(&rep);
    char *workers1 = thread_ids(&n);
    ck_assert_int_eq(n, base + 2);   /* the workers stay with the cached CA */
    char *bundle1 = mesh_bundle_pem(s, "default");

    EVP_PKEY_free(submit(s, "default", "db-01", false));
    cached_pass(s, cache, &rep);
    ck_assert_uint_eq(rep.issued, 1);
    reconcile_report_free(&rep);
    char *workers2 = thread_ids(&n);
    ck_assert_str_eq(workers2, workers1);   /* the same two threads, not two new ones */
    ca_cache_get_stats(cache, &st);
    ck_assert_uint_eq(st.bundle_hits, 2);   /* built at the first pass, then taken twice */
    char *bundle2 = mesh_bundle_pem(s, "default");
    ck_assert_str_eq(bundle2, bundle1);
    ck_assert_int_eq(identity_get(s, "default", "db-01", &id, NULL), 0);
    ck_assert_int_eq(verify_identity(s, &id), 0);
    identity_clear(&id);

    /* A second backend: other chains, so the bundle is built again and holds both CAs. */
    test_seed(s, MESH_ADD);
    cached_pass(s, cache, &rep);
    ck_assert_uint_eq(rep.rebundled, 2);
    reconcile_report_free(&rep);
    char *bundle3 = mesh_bundle_pem(s, "default");
    ck_assert_int_eq(count_certs(bundle3), 2);
    ck_assert_int_eq(identity_get(s, "default", "web-01", &id, NULL), 0);
    ck_assert_int_eq(verify_identity(s, &id), 0);
    identity_clear(&id);

    ca_cache_free(cache);   /* stops the workers */
    free(thread_ids(&n));
    ck_assert_int_eq(n, base);
    free(workers1);
    free(workers2);
    free(bundle1);
    free(bundle2);
    free(bundle3);
    store_close(s);
}
END_TEST

static Suite *reconcile_suite(void)
{
    Suite *suite = suite_create("reconcile");
    TCase *tc = tcase_create("reconcile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, builtin_mesh_issues_one_verifiable_identity_per_dataplane);
    tcase_add_test(tc, second_pass_with_nothing_to_do_writes_nothing);
    tcase_add_test(tc, adding_backend_rebundles_both_cas_with_same_certificate);
    tcase_add_test(tc, switch_reissues_every_leaf_from_the_new_ca);
    tcase_add_test(tc, renewal_is_left_to_the_agent_and_its_new_csr_renews);
    tcase_add_test(tc, short_lived_certificate_renews_no_earlier_than_70_percent_of_its_lifetime);
    tcase_add_test(tc, expired_ca_is_reported_and_other_meshes_still_reconcile);
    tcase_add_test(tc, rsa_key_type_issues_rsa_leaves);
    tcase_add_test(tc, ack_records_what_the_current_generation_carries);
    tcase_add_test(tc, key_type_change_asks_the_agent_for_a_new_key);
    tcase_add_test(tc, pass_writes_nothing_when_one_of_its_writes_fails);
    tcase_add_test(tc, forced_switch_cross_signs_until_every_dataplane_trusts_new_ca);
    tcase_add_test(tc, shortened_expiration_has_certificates_that_outlive_it_renewed);
    tcase_add_test(tc, corrupt_identity_is_named_and_removed_once);
    tcase_add_test(tc, corrupt_mesh_status_skips_that_mesh_and_reconciles_the_others);
    tcase_add_test(tc, stored_status_holding_a_nul_byte_is_named_corrupt);
    tcase_add_test(tc, broken_backend_that_is_not_enabled_does_not_stop_the_mesh);
    tcase_add_test(tc, status_index_finds_each_dataplane_of_one_mesh_by_name);
    tcase_add_test(tc, two_signing_workers_issue_one_strictly_valid_leaf_per_dataplane);
    tcase_add_test(tc, refusal_while_the_next_batch_is_signed_drops_it_and_writes_nothing);
    tcase_add_test(tc, writes_flushed_while_signing_commit_once_or_not_at_all);
    tcase_add_test(tc, flush_failed_in_the_loop_drops_the_later_batches_and_leaves_no_transaction_open);
    tcase_add_test(tc, identities_are_read_range_by_range_as_the_pass_decides);
    tcase_add_test(tc, an_identity_changed_during_the_pass_is_left_to_the_next_and_the_rest_commits);
    tcase_add_test(tc, a_change_before_the_first_flush_is_caught_by_the_flushed_checks);
    tcase_add_test(tc, cached_ca_keeps_its_workers_and_bundle_across_passes);
    suite_add_tcase(suite, tc);
    return suite;
}

int main(void)
{
    SRunner *sr = srunner_create(reconcile_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
