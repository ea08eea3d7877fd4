/* test-apply.c - Check suite for apply_set: one transaction for everything an apply stores, and a
 * force log that says what was forced. */
#define _GNU_SOURCE 1
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "manifests/manifest.h"
#include "reconciler/apply.h"
#include "reconciler/reconcile.h"
#include "reconciler/state.h"

static char tmpdir[64];
static char oldcwd[4096];

#define NOW0 1800000000LL   /* a fixed clock: 2027-01-15 */

static const char MESH_ADD[] =
    "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
    "  - name: ca-1\n    type: builtin\n    conf: {caCert: {expiration: 1h}}\n"
    "  - name: ca-2\n    type: builtin\n";
static const char MESH_SWITCH[] =
    "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-2\n  backends:\n"
    "  - name: ca-1\n    type: builtin\n    conf: {caCert: {expiration: 1h}}\n"
    "  - name: ca-2\n    type: builtin\n";
static const char MESH_REMOVE[] =
    "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-2\n  backends:\n"
    "  - name: ca-2\n    type: builtin\n";
static const char MESH_NO_MTLS[] = "type: Mesh\nname: default\n";
static const char DATAPLANES[] =
    "type: Dataplane\nmesh: default\nname: web-01\nnetworking:\n  address: 127.0.0.1\n"
    "  inbound:\n  - port: 8443\n    tags:\n      kuma.io/service: web\n"
    "---\n"
    "type: Dataplane\nmesh: default\nname: db-01\nnetworking:\n  address: 127.0.0.1\n"
    "  inbound:\n  - port: 9443\n    tags:\n      kuma.io/service: db\n";

/* Each test works in its own directory on the default store URL, so it runs on whatever store
 * meshca defaults to. */
static void setup(void)
{
    char tmpl[] = "/tmp/meshca-test-apply-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    memcpy(tmpdir, tmpl, sizeof(tmpl));
    ck_assert_ptr_nonnull(getcwd(oldcwd, sizeof(oldcwd)));
    ck_assert_int_eq(chdir(tmpdir), 0);
    unsetenv("MESHCA_STORE");
}

static void teardown(void)
{
    char cmd[256];
    ck_assert_int_eq(chdir(oldcwd), 0);
    /* Our own mkdtemp result: safe to hand to rm. */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    (void)!system(cmd);
}

static store *open_store(void)
{
    char err[MESHCA_ERRBUF] = "";
    store *s = NULL;
    ck_assert_msg(store_open(NULL, &s, err) == STORE_OK, "store_open: %s", err);
    return s;
}

static manifest_set *load(const char *yaml)
{
    manifest_set *set = manifest_set_new();
    diag_list diags = DIAG_LIST_INIT;
    ck_assert_int_eq(manifest_load_buffer(set, "test.yaml", yaml, strlen(yaml), &diags), 0);
    ck_assert_msg(!diag_has_errors(&diags), "load: %s", diags.count ? diags.items[0].message : "");
    diag_list_free(&diags);
    return set;
}

/* Applies `yaml`; returns apply_set's code, the result's refusal in *ret_refused. */
static int apply_yaml(store *s, const char *yaml, bool force, int64_t now, bool *ret_refused,
                      diag_list *diags)
{
    manifest_set *set = load(yaml);
    apply_options opts = APPLY_OPTIONS_INIT;
    apply_result result = {0};
    opts.force = force;
    opts.now = now;
    int rc = apply_set(s, set, &opts, diags, &result);
    if (ret_refused)
        *ret_refused = result.refused;
    apply_result_free(&result);
    manifest_set_free(set);
    return rc;
}

static void apply_ok(store *s, const char *yaml, bool force, int64_t now)
{
    diag_list diags = DIAG_LIST_INIT;
    bool refused = true;
    ck_assert_int_eq(apply_yaml(s, yaml, force, now, &refused, &diags), 0);
    ck_assert_msg(!refused, "refused: %s: %s", diags.count ? diags.items[0].code : "",
                  diags.count ? diags.items[0].message : "");
    diag_list_free(&diags);
}

/* A store holding MESH_ADD (ca-1 enabled, ca-2 added) and the dataplanes web-01 and db-01. */
static store *open_seeded_store(void)
{
    store *s = open_store();
    apply_ok(s, MESH_ADD, false, NOW0);
    apply_ok(s, DATAPLANES, false, NOW0);
    return s;
}

/* Stores dataplane status objects given as an S7 JSON array. */
static void put_status(store *s, const char *json)
{
    status_set set = STATUS_SET_INIT;
    diag_list diags = DIAG_LIST_INIT;
    ck_assert_int_eq(status_parse_json("status", json, strlen(json), &set, &diags), 0);
    for (size_t i = 0; i < set.count; i++)
        ck_assert_int_eq(state_put_status(s, &set.items[i], STORE_ANY_VERSION), 0);
    status_set_free(&set);
    diag_list_free(&diags);
}

/* The builtin CAs exist once a pass ran. */
static void generate_cas(store *s, int64_t now)
{
    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    diag_list diags = DIAG_LIST_INIT;
    opts.now = now;
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
}

static json_t *mesh_status(store *s, uint64_t *ret_version)
{
    json_t *st = NULL;
    ck_assert_int_eq(state_get_mesh_status(s, "default", &st, ret_version), 0);
    return st;
}

static char *stored_mesh(store *s, uint64_t *ret_version)
{
    store_key key = {STATE_MESHES, "default", "default"};
    char *value = NULL;
    ck_assert_int_eq(store_get(s, &key, &value, NULL, ret_version), 0);
    return value;
}

/* The last force log entry. Borrowed from `status`. */
static json_t *last_force(json_t *status)
{
    json_t *log = json_object_get(status, "forceLog");
    ck_assert_msg(json_is_array(log) && json_array_size(log) > 0, "no forceLog");
    return json_array_get(log, json_array_size(log) - 1);
}

static bool has_string(json_t *array, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(array, i, v)
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    return false;
}

/* A forced switch stores the Mesh, the force log and the cross-sign request in one transaction:
 * they carry the same version (one store-wide revision per transaction). */
START_TEST(forced_switch_is_one_transaction_with_its_force_log)
{
    store *s = open_seeded_store();
    generate_cas(s, NOW0);
    put_status(s, "[{\"mesh\":\"default\",\"name\":\"web-01\",\"mtls\":{\"issuedBackend\":\"ca-1\","
                  "\"supportedBackends\":[\"ca-1\"],\"generation\":1,"
                  "\"acknowledgedGeneration\":1}}]");
    apply_ok(s, MESH_SWITCH, true, NOW0);

    uint64_t mesh_version = 0, status_version = 0;
    char *text = stored_mesh(s, &mesh_version);
    ck_assert_ptr_nonnull(strstr(text, "\"enabledBackend\":\"ca-2\""));
    free(text);
    json_t *st = mesh_status(s, &status_version);
    ck_assert_uint_eq(mesh_version, status_version);
    json_t *cs = json_object_get(st, "crossSign");
    ck_assert_str_eq(json_string_value(json_object_get(cs, "from")), "ca-1");
    ck_assert_str_eq(json_string_value(json_object_get(cs, "to")), "ca-2");
    json_t *e = last_force(st);
    ck_assert_str_eq(json_string_value(json_object_get(e, "step")), "switch");
    ck_assert_str_eq(json_string_value(json_object_get(e, "crossSigning")), "enabled");
    ck_assert(has_string(json_object_get(e, "bypassed"), "web-01"));
    ck_assert(has_string(json_object_get(e, "bypassed"), "db-01"));
    ck_assert_int_eq(json_integer_value(json_object_get(e, "bypassedCount")), 2);
    json_decref(st);
    store_close(s);
}
END_TEST

/* When the force record cannot be written, the switch is not stored either (before: the Mesh
 * was switched, then the record failed and apply said "nothing applied"). */
START_TEST(forced_switch_stores_nothing_when_its_force_log_cannot_be_written)
{
    store *s = open_seeded_store();
    store_key key = {STATE_MESHSTATUS, "default", "default"};
    ck_assert_int_eq(store_put(s, &key, "not json", 8, STORE_ANY_VERSION, NULL), 0);

    diag_list diags = DIAG_LIST_INIT;
    ck_assert_int_lt(apply_yaml(s, MESH_SWITCH, true, NOW0, NULL, &diags), 0);
    diag_list_free(&diags);
    char *text = stored_mesh(s, NULL);
    ck_assert_msg(strstr(text, "\"enabledBackend\":\"ca-1\""), "mesh changed: %s", text);
    free(text);
    store_close(s);
}
END_TEST

/* Before: logged as a switch "ca-2 -> ca-2" with crossSigning true. */
START_TEST(force_log_of_a_forced_removal_says_remove_and_who_was_bypassed)
{
    store *s = open_seeded_store();
    put_status(s, "[{\"mesh\":\"default\",\"name\":\"web-01\",\"mtls\":{\"issuedBackend\":\"ca-1\","
                  "\"supportedBackends\":[\"ca-1\",\"ca-2\"],\"generation\":1,"
                  "\"acknowledgedGeneration\":1}},"
                  "{\"mesh\":\"default\",\"name\":\"db-01\",\"mtls\":{\"issuedBackend\":\"ca-1\","
                  "\"supportedBackends\":[\"ca-1\",\"ca-2\"],\"generation\":1,"
                  "\"acknowledgedGeneration\":1}}]");
    apply_ok(s, MESH_SWITCH, false, NOW0);
    put_status(s, "[{\"mesh\":\"default\",\"name\":\"web-01\",\"mtls\":{\"issuedBackend\":\"ca-2\","
                  "\"supportedBackends\":[\"ca-1\",\"ca-2\"],\"generation\":2,"
                  "\"acknowledgedGeneration\":2}}]");
    apply_ok(s, MESH_REMOVE, true, NOW0);

    json_t *st = mesh_status(s, NULL);
    json_t *e = last_force(st);
    ck_assert_str_eq(json_string_value(json_object_get(e, "step")), "remove");
    ck_assert(has_string(json_object_get(e, "removed"), "ca-1"));
    ck_assert(has_string(json_object_get(e, "bypassed"), "db-01"));
    ck_assert(!has_string(json_object_get(e, "bypassed"), "web-01"));
    ck_assert_ptr_null(json_object_get(e, "crossSigning"));
    ck_assert_ptr_null(json_object_get(e, "to"));
    json_decref(st);
    store_close(s);
}
END_TEST

/* Before: logged as crossSigning true. Removing the whole mtls block is that one step. */
START_TEST(force_log_of_a_forced_disable_says_disable_without_cross_signing)
{
    store *s = open_seeded_store();
    apply_ok(s, MESH_NO_MTLS, true, NOW0);

    json_t *st = mesh_status(s, NULL);
    json_t *e = last_force(st);
    ck_assert_str_eq(json_string_value(json_object_get(e, "step")), "disable");
    ck_assert_str_eq(json_string_value(json_object_get(e, "from")), "ca-1");
    ck_assert_ptr_null(json_object_get(e, "crossSigning"));
    ck_assert_int_eq(json_integer_value(json_object_get(e, "bypassedCount")), 2);
    ck_assert_ptr_null(json_object_get(st, "crossSign"));
    json_decref(st);
    store_close(s);
}
END_TEST

/* Before: logged as cross-signed although the expired CA cannot sign anything. */
START_TEST(forced_switch_away_from_an_expired_ca_logs_cross_signing_unavailable)
{
    store *s = open_seeded_store();
    generate_cas(s, NOW0);   /* ca-1 lives one hour */
    diag_list diags = DIAG_LIST_INIT;
    bool refused = true;
    ck_assert_int_eq(apply_yaml(s, MESH_SWITCH, true, NOW0 + 7200, &refused, &diags), 0);
    ck_assert(!refused);
    bool warned = false;
    for (size_t i = 0; i < diags.count; i++)
        warned |= strcmp(diags.items[i].code, "cross-sign-unavailable") == 0;
    ck_assert_msg(warned, "no cross-sign-unavailable warning");
    diag_list_free(&diags);

    json_t *st = mesh_status(s, NULL);
    json_t *e = last_force(st);
    ck_assert_str_eq(json_string_value(json_object_get(e, "step")), "switch");
    ck_assert_str_eq(json_string_value(json_object_get(e, "crossSigning")), "unavailable");
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(e, "crossSigningDetail")),
                                 "ca-1"));
    ck_assert_ptr_null(json_object_get(st, "crossSign"));
    json_decref(st);
    store_close(s);
}
END_TEST

/* Removing ca-2 and adding a backend named ca-2 again (here another CA: a new conf) left the
 * statuses saying ca-2 was trusted, from bundles holding the old ca-2: a switch to the new one
 * passed although no proxy had loaded it. The re-add forgets that trust; an acknowledgement of a
 * bundle with the new ca-2 gives it back. */
START_TEST(switch_refused_to_a_readded_backend_until_dataplanes_acknowledge_it_again)
{
    static const char MESH_ONE[] =
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
        "  - name: ca-1\n    type: builtin\n    conf: {caCert: {expiration: 1h}}\n";
    static const char MESH_READD[] =
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
        "  - name: ca-1\n    type: builtin\n    conf: {caCert: {expiration: 1h}}\n"
        "  - name: ca-2\n    type: builtin\n    conf: {caCert: {expiration: 5y}}\n";
    static const char MESH_READD_SWITCH[] =
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-2\n  backends:\n"
        "  - name: ca-1\n    type: builtin\n    conf: {caCert: {expiration: 1h}}\n"
        "  - name: ca-2\n    type: builtin\n    conf: {caCert: {expiration: 5y}}\n";
    static const char TRUSTED_BOTH[] =
        "[{\"mesh\":\"default\",\"name\":\"web-01\",\"mtls\":{\"issuedBackend\":\"ca-1\","
        "\"supportedBackends\":[\"ca-1\",\"ca-2\"],\"generation\":2,"
        "\"acknowledgedGeneration\":2}},"
        "{\"mesh\":\"default\",\"name\":\"db-01\",\"mtls\":{\"issuedBackend\":\"ca-1\","
        "\"supportedBackends\":[\"ca-1\",\"ca-2\"],\"generation\":2,"
        "\"acknowledgedGeneration\":2}}]";
    store *s = open_seeded_store();   /* ca-1 enabled, ca-2 added */
    put_status(s, TRUSTED_BOTH);
    apply_ok(s, MESH_ONE, false, NOW0);     /* remove ca-2: nobody holds its certificates */
    apply_ok(s, MESH_READD, false, NOW0);   /* a ca-2 again, another CA */

    diag_list diags = DIAG_LIST_INIT;
    bool refused = false;
    ck_assert_int_eq(apply_yaml(s, MESH_READD_SWITCH, false, NOW0, &refused, &diags), 0);
    ck_assert(refused);
    const diag *d = NULL;
    for (size_t i = 0; i < diags.count && !d; i++)
        if (strcmp(diags.items[i].code, "switch-not-propagated") == 0)
            d = &diags.items[i];
    ck_assert_msg(d != NULL, "no switch-not-propagated (first: %s)",
                  diags.count ? diags.items[0].code : "none");
    ck_assert_str_eq(d->path, "mtls.enabledBackend");
    ck_assert_uint_eq(d->line, 4);
    ck_assert_msg(strstr(d->message, "2 of 2 dataplanes do not trust it (db-01, web-01)"), "%s",
                  d->message);
    diag_list_free(&diags);
    /* What it refused on: ca-2 left web-01's supportedBackends, the rest as acknowledged. */
    dataplane_status st;
    memset(&st, 0, sizeof(st));
    ck_assert_int_eq(state_get_status(s, "default", "web-01", &st, NULL), 0);
    ck_assert_uint_eq(st.nsupported, 1);
    ck_assert_str_eq(st.supported_backends[0], "ca-1");
    ck_assert_str_eq(st.issued_backend, "ca-1");
    ck_assert_int_eq(st.acknowledged_generation, 2);
    dataplane_status_clear(&st);

    /* Both acknowledge a generation whose bundle holds the new ca-2: the switch passes. */
    put_status(s, TRUSTED_BOTH);
    apply_ok(s, MESH_READD_SWITCH, false, NOW0);
    store_close(s);
}
END_TEST

/* Adding a backend under a name no status lists writes no status (and a dry run none at all). */
START_TEST(adding_a_new_backend_name_leaves_statuses_alone)
{
    store *s = open_store();
    static const char MESH_ONE[] =
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
        "  - name: ca-1\n    type: builtin\n    conf: {caCert: {expiration: 1h}}\n";
    apply_ok(s, MESH_ONE, false, NOW0);
    apply_ok(s, DATAPLANES, false, NOW0);
    put_status(s, "[{\"mesh\":\"default\",\"name\":\"web-01\",\"mtls\":{\"issuedBackend\":\"ca-1\","
                  "\"supportedBackends\":[\"ca-1\"],\"generation\":1,"
                  "\"acknowledgedGeneration\":1}}]");
    uint64_t before = 0, after = 0;
    store_key key = {STATE_DPSTATUS, "default", "web-01"};
    ck_assert_int_eq(state_object_version(s, &key, &before), 0);
    apply_ok(s, MESH_ADD, false, NOW0);
    ck_assert_int_eq(state_object_version(s, &key, &after), 0);
    ck_assert_uint_eq(before, after);
    store_close(s);
}
END_TEST

/* The same CA back under its name before any pass ran since its removal: the last bundle still
 * serves it, no new generation will come, and the statuses are still true; they stay, and the
 * switch passes. Once a pass served a bundle without it, the re-add forgets as above. */
START_TEST(readding_the_ca_the_last_bundle_served_keeps_the_trust)
{
    /* CAs of the default lifetime: a pass makes them, and apply lints them against the leaves */
    static const char MESH_ONE[] =
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
        "  - name: ca-1\n    type: builtin\n";
    static const char MESH_TWO[] =
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
        "  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n";
    static const char MESH_TWO_SWITCH[] =
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-2\n  backends:\n"
        "  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n";
    static const char TRUSTED_BOTH[] =
        "[{\"mesh\":\"default\",\"name\":\"web-01\",\"mtls\":{\"issuedBackend\":\"ca-1\","
        "\"supportedBackends\":[\"ca-1\",\"ca-2\"],\"generation\":2,"
        "\"acknowledgedGeneration\":2}}]";
    store *s = open_store();
    apply_ok(s, MESH_ONE, false, NOW0);
    apply_ok(s, MESH_TWO, false, NOW0);
    generate_cas(s, NOW0);            /* the CAs and the bundle {ca-1, ca-2} */
    put_status(s, TRUSTED_BOTH);
    apply_ok(s, MESH_ONE, false, NOW0);   /* remove ca-2; no pass */
    apply_ok(s, MESH_TWO, false, NOW0);   /* the same ca-2 back (its Secrets were kept) */
    dataplane_status st;
    memset(&st, 0, sizeof(st));
    ck_assert_int_eq(state_get_status(s, "default", "web-01", &st, NULL), 0);
    ck_assert_uint_eq(st.nsupported, 2);
    ck_assert_str_eq(st.supported_backends[1], "ca-2");
    dataplane_status_clear(&st);
    apply_ok(s, MESH_TWO_SWITCH, false, NOW0);

    /* Back to ca-1 enabled, remove ca-2, and this time a pass serves the bundle without it. */
    apply_ok(s, MESH_TWO, false, NOW0);
    apply_ok(s, MESH_ONE, false, NOW0);
    generate_cas(s, NOW0);
    apply_ok(s, MESH_TWO, false, NOW0);
    memset(&st, 0, sizeof(st));
    ck_assert_int_eq(state_get_status(s, "default", "web-01", &st, NULL), 0);
    ck_assert_uint_eq(st.nsupported, 1);
    ck_assert_str_eq(st.supported_backends[0], "ca-1");
    dataplane_status_clear(&st);
    store_close(s);
}
END_TEST

static Suite *apply_suite(void)
{
    Suite *suite = suite_create("apply");
    TCase *tc = tcase_create("apply");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, forced_switch_is_one_transaction_with_its_force_log);
    tcase_add_test(tc, forced_switch_stores_nothing_when_its_force_log_cannot_be_written);
    tcase_add_test(tc, force_log_of_a_forced_removal_says_remove_and_who_was_bypassed);
    tcase_add_test(tc, force_log_of_a_forced_disable_says_disable_without_cross_signing);
    tcase_add_test(tc, forced_switch_away_from_an_expired_ca_logs_cross_signing_unavailable);
    tcase_add_test(tc, switch_refused_to_a_readded_backend_until_dataplanes_acknowledge_it_again);
    tcase_add_test(tc, adding_a_new_backend_name_leaves_statuses_alone);
    tcase_add_test(tc, readding_the_ca_the_last_bundle_served_keeps_the_trust);
    suite_add_tcase(suite, tc);
    return suite;
}

int main(void)
{
    SRunner *sr = srunner_create(apply_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
