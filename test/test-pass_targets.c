/* test-pass_targets.c - Check suite for targeted reconcile passes: only the dataplanes named are read and signed; a mesh-wide change falls back to a full pass. */
#define _GNU_SOURCE 1
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "check-store.h"
#include "manifests/manifest.h"
#include "reconciler/pass_targets.h"
#include "reconciler/pki.h"
#include "reconciler/reconcile.h"
#include "reconciler/state.h"

static char tmpdir[64];
static char url[128];

static const char MESH_CA1[] =
    "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
    "  - name: ca-1\n    type: builtin\n";
static const char MESH_ADD[] =
    "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
    "  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n";
static const char DATAPLANES[] =
    "type: Dataplane\nmesh: default\nname: web-01\nnetworking:\n  address: 127.0.0.1\n"
    "  inbound:\n  - port: 8443\n    tags:\n      kuma.io/service: web\n"
    "---\n"
    "type: Dataplane\nmesh: default\nname: db-01\nnetworking:\n  address: 127.0.0.1\n"
    "  inbound:\n  - port: 9443\n    tags:\n      kuma.io/service: db\n"
    "---\n"
    "type: Dataplane\nmesh: default\nname: api-01\nnetworking:\n  address: 127.0.0.1\n"
    "  inbound:\n  - port: 7443\n    tags:\n      kuma.io/service: api\n";

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/meshca-test-targets-XXXXXX");
    test_store_dir(tmpdir, url, sizeof(url));
}

static void teardown(void)
{
    test_store_dir_remove(tmpdir);
}

/* What the API does with a CSR: the dataplane's new public key becomes its pending key. */
static void submit(store *s, const char *dp)
{
    EVP_PKEY_free(test_submit(s, "default", dp, false, false));
}

/* One pass, over targets (NULL: full); no error diagnostics. */
static reconcile_report pass(store *s, pass_targets *targets)
{
    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    diag_list diags = DIAG_LIST_INIT;
    opts.targets = targets;
    opts.sign_workers = 1;
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_msg(!diag_has_errors(&diags), "%s: %s", diags.count ? diags.items[0].code : "",
                  diags.count ? diags.items[0].message : "");
    diag_list_free(&diags);
    return rep;
}

/* The identity's generation (0: none issued) and whether a key waits to be signed. */
static long long generation(store *s, const char *dp, bool *pending)
{
    identity id = {0};
    int rc = identity_get(s, "default", dp, &id, NULL);
    if (rc == STORE_ENOTFOUND) {
        *pending = false;
        return 0;
    }
    ck_assert_int_eq(rc, 0);
    long long g = id.generation;
    *pending = id.pending_key_pem != NULL;
    identity_clear(&id);
    return g;
}

START_TEST(targeted_pass_signs_only_the_dataplanes_named)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    test_seed(s, DATAPLANES);
    reconcile_report rep = pass(s, NULL);   /* the bundle; nobody sent a CSR yet */
    ck_assert_uint_eq(rep.awaiting, 3);
    ck_assert(!rep.targeted);
    reconcile_report_free(&rep);

    submit(s, "web-01");
    submit(s, "db-01");
    uint64_t before = 0, after = 0;
    ck_assert_int_eq(store_revision(s, &before), STORE_OK);
    pass_targets t = PASS_TARGETS_INIT;
    ck_assert_int_eq(pass_targets_add(&t, "default", "web-01"), 0);
    ck_assert_int_eq(pass_targets_add(&t, "default", "web-01"), 0);   /* twice: visited once */
    rep = pass(s, &t);
    ck_assert(rep.targeted);
    ck_assert_uint_eq(t.n, 1);
    /* Only web-01 decided: db-01's CSR and api-01 are neither signed nor counted. */
    ck_assert_uint_eq(rep.issued, 1);
    ck_assert_uint_eq(rep.unchanged, 0);
    ck_assert_uint_eq(rep.awaiting, 0);
    ck_assert_uint_eq(rep.nactions, 1);
    ck_assert_str_eq(rep.actions[0].dataplane, "web-01");
    reconcile_report_free(&rep);
    /* One write: the identity (the bundle did not change). */
    ck_assert_int_eq(store_revision(s, &after), STORE_OK);
    ck_assert_uint_eq(after, before + 1);
    bool pending = false;
    ck_assert_int_eq(generation(s, "web-01", &pending), 1);
    ck_assert(!pending);
    ck_assert_int_eq(generation(s, "db-01", &pending), 0);
    ck_assert(pending);

    /* The full pass then signs db-01 and reads the others. */
    rep = pass(s, NULL);
    ck_assert(!rep.targeted);
    ck_assert_uint_eq(rep.issued, 1);
    ck_assert_uint_eq(rep.unchanged, 1);
    ck_assert_uint_eq(rep.awaiting, 1);
    reconcile_report_free(&rep);
    pass_targets_clear(&t);
    store_close(s);
}
END_TEST

START_TEST(targeted_pass_with_nothing_to_do_writes_nothing)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    test_seed(s, DATAPLANES);
    submit(s, "web-01");
    reconcile_report rep = pass(s, NULL);
    ck_assert_uint_eq(rep.issued, 1);
    reconcile_report_free(&rep);
    uint64_t before = 0, after = 0;
    ck_assert_int_eq(store_revision(s, &before), STORE_OK);
    pass_targets t = PASS_TARGETS_INIT;
    ck_assert_int_eq(pass_targets_add(&t, "default", "web-01"), 0);
    ck_assert_int_eq(pass_targets_add(&t, "default", "gone-01"), 0);   /* no such dataplane */
    ck_assert_int_eq(pass_targets_add(&t, "nomesh", "web-01"), 0);     /* nor mesh */
    rep = pass(s, &t);
    ck_assert(rep.targeted);
    ck_assert_uint_eq(rep.unchanged, 1);
    ck_assert_uint_eq(rep.issued, 0);
    ck_assert_uint_eq(rep.awaiting, 0);
    ck_assert_uint_eq(rep.nmeshes, 1);
    reconcile_report_free(&rep);
    ck_assert_int_eq(store_revision(s, &after), STORE_OK);
    ck_assert_uint_eq(after, before);
    pass_targets_clear(&t);
    store_close(s);
}
END_TEST

START_TEST(mesh_change_makes_a_targeted_pass_full)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    test_seed(s, DATAPLANES);
    submit(s, "web-01");
    submit(s, "db-01");
    reconcile_report rep = pass(s, NULL);
    ck_assert_uint_eq(rep.issued, 2);
    reconcile_report_free(&rep);

    /* A second CA: the mesh's bundle changes, which concerns every dataplane. */
    test_seed(s, MESH_ADD);
    submit(s, "api-01");
    pass_targets t = PASS_TARGETS_INIT;
    ck_assert_int_eq(pass_targets_add(&t, "default", "api-01"), 0);
    rep = pass(s, &t);
    ck_assert(!rep.targeted);
    ck_assert_uint_eq(rep.issued, 1);      /* api-01 */
    ck_assert_uint_eq(rep.rebundled, 2);   /* web-01 and db-01: the full pass ran */
    reconcile_report_free(&rep);
    mesh_bundle b = {0};
    ck_assert_int_eq(state_read_bundle(s, "default", &b, NULL, NULL), 0);
    ck_assert_uint_eq(b.nbackends, 2);
    mesh_bundle_clear(&b);
    pass_targets_clear(&t);
    store_close(s);
}
END_TEST

START_TEST(forced_switch_under_way_makes_a_targeted_pass_full)
{
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    test_seed(s, DATAPLANES);
    submit(s, "web-01");
    submit(s, "db-01");
    reconcile_report rep = pass(s, NULL);
    reconcile_report_free(&rep);
    /* Whether every dataplane trusts the new CA is not for one dataplane to say. */
    json_t *st = json_pack("{s:{s:s,s:s}}", "crossSign", "from", "ca-1", "to", "ca-2");
    ck_assert_int_eq(state_put_mesh_status(s, "default", st, STORE_ANY_VERSION), 0);
    json_decref(st);
    submit(s, "api-01");
    pass_targets t = PASS_TARGETS_INIT;
    ck_assert_int_eq(pass_targets_add(&t, "default", "api-01"), 0);
    rep = pass(s, &t);
    ck_assert(!rep.targeted);
    ck_assert_uint_eq(rep.issued, 1);
    ck_assert_uint_eq(rep.unchanged, 2);
    reconcile_report_free(&rep);
    pass_targets_clear(&t);
    store_close(s);
}
END_TEST

START_TEST(targets_move_and_clear)
{
    pass_targets a = PASS_TARGETS_INIT, b = PASS_TARGETS_INIT;
    for (int i = 0; i < 40; i++) {
        char name[16];
        snprintf(name, sizeof(name), "dp-%02d", i);
        ck_assert_int_eq(pass_targets_add(&a, "m", name), 0);
    }
    ck_assert_int_eq(pass_targets_add(&b, "m", "old"), 0);
    pass_targets_take(&b, &a);
    ck_assert_uint_eq(a.n, 0);
    ck_assert_ptr_null(a.items);
    ck_assert_uint_eq(b.n, 40);
    ck_assert_str_eq(b.items[39].dataplane, "dp-39");
    pass_targets_clear(&b);
    ck_assert_uint_eq(b.n, 0);
    pass_targets_clear(&b);
}
END_TEST

static Suite *targets_suite(void)
{
    Suite *suite = suite_create("pass_targets");
    TCase *tc = tcase_create("pass_targets");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, targeted_pass_signs_only_the_dataplanes_named);
    tcase_add_test(tc, targeted_pass_with_nothing_to_do_writes_nothing);
    tcase_add_test(tc, mesh_change_makes_a_targeted_pass_full);
    tcase_add_test(tc, forced_switch_under_way_makes_a_targeted_pass_full);
    tcase_add_test(tc, targets_move_and_clear);
    suite_add_tcase(suite, tc);
    return suite;
}

int main(void)
{
    SRunner *sr = srunner_create(targets_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
