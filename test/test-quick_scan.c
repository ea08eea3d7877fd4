/* test-quick_scan.c - Check suite for the pass's identity scan in ranges (quick_scan.c): each range read when first needed, in any order, and a failed range left to the full path. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check-store.h"
#include "manifests/manifest.h"
#include "reconciler/failpoint.h"
#include "reconciler/pass/pass.h"
#include "reconciler/reconcile.h"
#include "reconciler/state.h"

#define NDPS 10
#define RANGE 4   /* dp-00..03, dp-04..07, dp-08..09 */

static char tmpdir[64];
static char url[128];

static const char MESH_CA1[] =
    "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
    "  - name: ca-1\n    type: builtin\n";

/* What the scan reads, per dataplane dp-00..dp-09 after setup's pass: dp-03 and dp-07 sent no
 * CSR, dp-01 sent a new key since, dp-05's record is corrupt; the others are current. */
static const int EXPECTED[NDPS] = {
    QUICK_UNCHANGED, QUICK_FULL,      QUICK_UNCHANGED, QUICK_ABSENT,    QUICK_UNCHANGED,
    QUICK_FULL,      QUICK_UNCHANGED, QUICK_ABSENT,    QUICK_UNCHANGED, QUICK_UNCHANGED,
};

/* One pass's view: the stored resources, mesh default's dataplanes and its open CAs. */
typedef struct view {
    store *s;
    manifest_set *set;
    const mesh *m;
    const dataplane **dps;
    size_t ndps;
    pass_cas pc;
    json_t *conditions;
    int64_t now;
} view;

static void put_raw(store *s, const char *name, const char *value)
{
    store_key key = {STATE_IDENTITIES, "default", name};
    ck_assert_int_eq(store_put(s, &key, value, strlen(value), STORE_ANY_VERSION, NULL), STORE_OK);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/meshca-test-quick-XXXXXX");
    test_store_dir(tmpdir, url, sizeof(url));
    store *s = test_store_open(url);
    test_seed(s, MESH_CA1);
    for (int i = 0; i < NDPS; i++) {
        char yaml[256], name[16];
        snprintf(name, sizeof(name), "dp-%02d", i);
        snprintf(yaml, sizeof(yaml), "type: Dataplane\nmesh: default\nname: %s\nnetworking:\n"
                 "  address: 127.0.0.1\n  inbound:\n  - port: 8443\n    tags:\n"
                 "      kuma.io/service: svc-%d\n", name, i % 3);
        test_seed(s, yaml);
        if (i != 3 && i != 7)
            EVP_PKEY_free(test_submit(s, "default", name, false, false));
    }
    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    diag_list diags = DIAG_LIST_INIT;
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_uint_eq(rep.issued, NDPS - 2);
    reconcile_report_free(&rep);
    diag_list_free(&diags);
    EVP_PKEY_free(test_submit(s, "default", "dp-01", false, false));
    put_raw(s, "dp-05", "garbage{");
    /* Records of no dataplane of the pass, inside and after the ranges: not taken. */
    put_raw(s, "dp-05a", "garbage{");
    put_raw(s, "dp-99", "garbage{");
    store_close(s);
}

static void teardown(void)
{
    test_store_dir_remove(tmpdir);
}

static void view_open(view *v)
{
    memset(v, 0, sizeof(*v));
    v->s = test_store_open(url);
    v->set = manifest_set_new();
    ck_assert_ptr_nonnull(v->set);
    diag_list diags = DIAG_LIST_INIT;
    ck_assert_int_eq(state_load_resources(v->s, NULL, v->set, &diags), 0);
    v->m = manifest_set_find_mesh(v->set, "default");
    ck_assert_ptr_nonnull(v->m);
    ck_assert_int_eq(manifest_set_dataplanes_of(v->set, "default", &v->dps, &v->ndps), 0);
    ck_assert_uint_eq(v->ndps, NDPS);
    v->now = (int64_t)time(NULL);
    v->conditions = json_array();
    bool changed = false;
    ck_assert_int_eq(pass_open_cas(v->s, v->m, v->now, NULL, &v->pc, v->conditions, &changed,
                                   &diags), 0);
    ck_assert_msg(!diag_has_errors(&diags), "%s", diags.count ? diags.items[0].message : "");
    diag_list_free(&diags);
}

static void view_close(view *v)
{
    pass_cas_free(&v->pc);
    json_decref(v->conditions);
    free(v->dps);
    manifest_set_free(v->set);
    store_close(v->s);
}

/* The verdict of dataplane `name` (at index i of the dataplanes given to quick_open) and, for a
 * QUICK_FULL one, that the record read is the one stored (value and version). */
static int verdict_of(quick_scan *q, view *v, size_t i, const char *name)
{
    quick_record *rec = NULL;
    int verdict = quick_verdict(q, i, &rec);
    if (verdict == QUICK_FULL && rec) {
        char *value = NULL;
        uint64_t version = 0;
        store_key key = {STATE_IDENTITIES, "default", name};
        ck_assert_int_eq(store_get(v->s, &key, &value, NULL, &version), STORE_OK);
        ck_assert_ptr_nonnull(rec->value);
        ck_assert_str_eq(rec->value, value);
        ck_assert_uint_eq(rec->len, strlen(value));
        ck_assert_uint_eq(rec->version, version);
        free(value);
    } else if (verdict != QUICK_FULL) {
        ck_assert_ptr_nonnull(rec);
        ck_assert_ptr_null(rec->value);
    }
    return verdict;
}

START_TEST(each_range_is_read_when_the_pass_first_needs_one_of_its_dataplanes)
{
    view v;
    view_open(&v);
    quick_scan *q = quick_open(v.s, v.m, &v.pc, v.now, v.dps, v.ndps, RANGE);
    ck_assert_ptr_nonnull(q);
    ck_assert_uint_eq(quick_ranges_read(q), 0);   /* nothing read before the loop asks */
    for (size_t i = 0; i < 8; i++) {
        ck_assert_msg(verdict_of(q, &v, i, v.dps[i]->name.value) == EXPECTED[i], "dp-%02zu", i);
        ck_assert_uint_eq(quick_ranges_read(q), i / RANGE + 1);
    }
    /* Changed after the first two ranges were read: the third reads it as it is now (a scan of
     * the mesh before the loop would have said unchanged). */
    store_key gone = {STATE_IDENTITIES, "default", "dp-09"};
    ck_assert_int_eq(store_delete(v.s, &gone, STORE_ANY_VERSION), STORE_OK);
    ck_assert_int_eq(verdict_of(q, &v, 8, "dp-08"), QUICK_UNCHANGED);
    ck_assert_int_eq(verdict_of(q, &v, 9, "dp-09"), QUICK_ABSENT);
    ck_assert_uint_eq(quick_ranges_read(q), 3);
    /* Asked again: nothing read again. */
    ck_assert_int_eq(verdict_of(q, &v, 1, "dp-01"), QUICK_FULL);
    ck_assert_uint_eq(quick_ranges_read(q), 3);
    quick_close(q);

    /* The default range (QUICK_RANGE names) holds them all: one read. */
    q = quick_open(v.s, v.m, &v.pc, v.now, v.dps, v.ndps, 0);
    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq(verdict_of(q, &v, 0, "dp-00"), QUICK_UNCHANGED);
    ck_assert_int_eq(verdict_of(q, &v, 9, "dp-09"), QUICK_ABSENT);
    ck_assert_uint_eq(quick_ranges_read(q), 1);
    quick_close(q);
    view_close(&v);
}
END_TEST

/* The store lists in name order and the pass's dataplanes come in that order; the ranges do not
 * depend on it: dataplanes in any order get the same verdicts, each range read once. */
START_TEST(dataplanes_out_of_name_order_get_the_same_verdicts_each_range_read_once)
{
    view v;
    view_open(&v);
    const dataplane *reversed[NDPS];
    static const size_t order[NDPS] = {9, 2, 5, 0, 8, 3, 6, 1, 4, 7};
    for (size_t i = 0; i < NDPS; i++)
        reversed[i] = v.dps[order[i]];
    quick_scan *q = quick_open(v.s, v.m, &v.pc, v.now, reversed, NDPS, RANGE);
    ck_assert_ptr_nonnull(q);
    static const size_t ranges_after[NDPS] = {1, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    for (size_t i = 0; i < NDPS; i++) {
        ck_assert_msg(verdict_of(q, &v, i, reversed[i]->name.value) == EXPECTED[order[i]],
                      "%s", reversed[i]->name.value);
        ck_assert_uint_eq(quick_ranges_read(q), ranges_after[i]);
    }
    quick_close(q);
    view_close(&v);
}
END_TEST

/* As a failed scan of the whole mesh did: the range the store failed to read, and every range
 * after it, go to the full path (identity_read, which reports the store), unread; the verdicts
 * of the ranges read before stand. */
START_TEST(a_range_the_store_fails_to_read_and_every_later_one_take_the_full_path)
{
    view v;
    view_open(&v);
    quick_scan *q = quick_open(v.s, v.m, &v.pc, v.now, v.dps, v.ndps, RANGE);
    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq(failpoint_configure("store.scan.range=2*error", NULL), 0);
    ck_assert_int_eq(verdict_of(q, &v, 0, "dp-00"), QUICK_UNCHANGED);
    ck_assert_int_eq(verdict_of(q, &v, 1, "dp-01"), QUICK_FULL);
    ck_assert_uint_eq(quick_ranges_read(q), 1);
    for (size_t i = 4; i < NDPS; i++) {
        quick_record *rec = (quick_record *)1;
        ck_assert_msg(quick_verdict(q, i, &rec) == QUICK_FULL, "dp-%02zu", i);
        ck_assert_ptr_null(rec);
    }
    /* The failed range was asked, the one after was not. */
    ck_assert_uint_eq(quick_ranges_read(q), 2);
    ck_assert_str_eq(store_errmsg(v.s), "failpoint store.scan.range: injected I/O error");
    ck_assert_int_eq(failpoint_configure(NULL, NULL), 0);
    ck_assert_int_eq(verdict_of(q, &v, 2, "dp-02"), QUICK_UNCHANGED);
    ck_assert_int_eq(verdict_of(q, &v, 3, "dp-03"), QUICK_ABSENT);
    ck_assert_uint_eq(quick_ranges_read(q), 2);
    quick_close(q);
    view_close(&v);
}
END_TEST

/* What the pass reads while the workers sign: the next unread ranges from the one of the
 * dataplane it decides next, at most QUICK_AHEAD after it; the verdicts are the same. */
START_TEST(ranges_read_ahead_while_signing_are_bounded_and_give_the_same_verdicts)
{
    view v;
    view_open(&v);
    quick_scan *q = quick_open(v.s, v.m, &v.pc, v.now, v.dps, v.ndps, RANGE);
    ck_assert_ptr_nonnull(q);
    ck_assert(quick_read_ahead(q, 0));   /* dp-00's own range, not read yet */
    ck_assert(quick_read_ahead(q, 0));
    ck_assert(quick_read_ahead(q, 0));
    ck_assert(!quick_read_ahead(q, 0));  /* every range read */
    ck_assert_uint_eq(quick_ranges_read(q), 3);
    for (size_t i = 0; i < NDPS; i++)
        ck_assert_msg(verdict_of(q, &v, i, v.dps[i]->name.value) == EXPECTED[i], "dp-%02zu", i);
    ck_assert_uint_eq(quick_ranges_read(q), 3);
    quick_close(q);

    /* Ranges of one name: from dp-02 on, dp-02..dp-06 (QUICK_AHEAD after its own), no further. */
    q = quick_open(v.s, v.m, &v.pc, v.now, v.dps, v.ndps, 1);
    ck_assert_ptr_nonnull(q);
    size_t reads = 0;
    for (int k = 0; k < 2 * NDPS && quick_read_ahead(q, 2); k++)
        reads++;
    ck_assert_uint_eq(reads, QUICK_AHEAD + 1);
    ck_assert_uint_eq(quick_ranges_read(q), QUICK_AHEAD + 1);
    ck_assert_int_eq(verdict_of(q, &v, 3, "dp-03"), QUICK_ABSENT);
    ck_assert_int_eq(verdict_of(q, &v, 0, "dp-00"), QUICK_UNCHANGED);
    ck_assert_uint_eq(quick_ranges_read(q), QUICK_AHEAD + 2);
    /* After a failed range nothing more is read ahead. */
    ck_assert_int_eq(failpoint_configure("store.scan.range=error", NULL), 0);
    ck_assert(!quick_read_ahead(q, 7));
    ck_assert(!quick_read_ahead(q, 7));
    ck_assert_int_eq(failpoint_configure(NULL, NULL), 0);
    ck_assert_uint_eq(quick_ranges_read(q), QUICK_AHEAD + 3);
    quick_record *rec = NULL;
    ck_assert_int_eq(quick_verdict(q, 8, &rec), QUICK_FULL);
    ck_assert_ptr_null(rec);
    quick_close(q);
    view_close(&v);
}
END_TEST

static Suite *quick_scan_suite(void)
{
    Suite *s = suite_create("quick_scan");
    TCase *tc = tcase_create("ranges");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, each_range_is_read_when_the_pass_first_needs_one_of_its_dataplanes);
    tcase_add_test(tc, dataplanes_out_of_name_order_get_the_same_verdicts_each_range_read_once);
    tcase_add_test(tc, a_range_the_store_fails_to_read_and_every_later_one_take_the_full_path);
    tcase_add_test(tc, ranges_read_ahead_while_signing_are_bounded_and_give_the_same_verdicts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(quick_scan_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
