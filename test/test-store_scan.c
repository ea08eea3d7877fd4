/* test-store_scan.c - Check suite for store_scan: every object of a kind (and mesh), in order, without a list in memory. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reconciler/store.h"

static char tmpdir[64], url[128];

static void setup(void)
{
    char tmpl[] = "/tmp/meshca-test-store-scan-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    memcpy(tmpdir, tmpl, sizeof(tmpl));
    snprintf(url, sizeof(url), "sqlite://%s/store/meshca.db", tmpdir);
}

static void teardown(void)
{
    char cmd[128];
    /* Our own mkdtemp result: safe to hand to rm. */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    (void)!system(cmd);
}

typedef struct seen {
    char names[16][64];
    size_t lens[16];
    uint64_t versions[16];
    int n, stop_at;
} seen;

static int collect(void *userdata, const store_entry *e)
{
    seen *s = userdata;
    ck_assert_int_lt(s->n, 16);
    /* The value is NUL-terminated at len, and the key is whole. */
    ck_assert_uint_eq(strlen(e->value), e->len);
    ck_assert_str_eq(e->kind, "identities");
    snprintf(s->names[s->n], sizeof(s->names[0]), "%s/%s=%s", e->mesh, e->name, e->value);
    s->lens[s->n] = e->len;
    s->versions[s->n] = e->version;
    if (++s->n == s->stop_at)
        return STORE_ECONFLICT;   /* any negative code stops the scan */
    return 0;
}

static void put(store *s, const char *mesh_name, const char *name, const char *value)
{
    store_key key = {"identities", mesh_name, name};
    ck_assert_int_eq(store_put(s, &key, value, strlen(value), STORE_ANY_VERSION, NULL), STORE_OK);
}

START_TEST(scan_visits_every_object_of_the_mesh_in_name_order)
{
    char err[MESHCA_ERRBUF] = "";
    store *s = NULL;
    ck_assert_msg(store_open(url, &s, err) == STORE_OK, "%s", err);
    put(s, "m1", "b", "{\"v\":2}");
    put(s, "m1", "a", "{\"v\":1, \"longer\":\"value\"}");
    put(s, "m2", "a", "{\"v\":3}");
    put(s, "m1", "c", "");
    seen got = {.stop_at = -1};
    ck_assert_int_eq(store_scan(s, "identities", "m1", collect, &got), STORE_OK);
    ck_assert_int_eq(got.n, 3);
    ck_assert_str_eq(got.names[0], "m1/a={\"v\":1, \"longer\":\"value\"}");
    ck_assert_str_eq(got.names[1], "m1/b={\"v\":2}");
    ck_assert_str_eq(got.names[2], "m1/c=");   /* a shorter value after a longer one */
    ck_assert_uint_eq(got.lens[2], 0);
    ck_assert_uint_gt(got.versions[1], 0);

    /* Every mesh: sorted by (mesh, name); the same entries as store_list. */
    memset(&got, 0, sizeof(got));
    got.stop_at = -1;
    ck_assert_int_eq(store_scan(s, "identities", NULL, collect, &got), STORE_OK);
    ck_assert_int_eq(got.n, 4);
    ck_assert_str_eq(got.names[3], "m2/a={\"v\":3}");
    store_entry *e = NULL;
    size_t n = 0;
    ck_assert_int_eq(store_list(s, "identities", NULL, &e, &n), STORE_OK);
    ck_assert_uint_eq(n, 4);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(e[i].version, got.versions[i]);
    store_entries_free(e, n);

    /* The callback's code stops the scan and is returned. */
    memset(&got, 0, sizeof(got));
    got.stop_at = 2;
    ck_assert_int_eq(store_scan(s, "identities", NULL, collect, &got), STORE_ECONFLICT);
    ck_assert_int_eq(got.n, 2);
    /* The store still works after a stopped scan (its statement was reset). */
    memset(&got, 0, sizeof(got));
    got.stop_at = -1;
    ck_assert_int_eq(store_scan(s, "identities", "m2", collect, &got), STORE_OK);
    ck_assert_int_eq(got.n, 1);
    put(s, "m2", "z", "{}");

    /* Bad arguments are refused before the backend. */
    ck_assert_int_eq(store_scan(s, "no-such-kind", NULL, collect, &got), STORE_EINVAL);
    ck_assert_int_eq(store_scan(s, "identities", "../x", collect, &got), STORE_EINVAL);
    ck_assert_int_eq(store_scan(s, "identities", NULL, NULL, &got), STORE_EINVAL);
    store_close(s);
}
END_TEST

/* store_list_keys: what store_list gives (the pass's fence needs keys and versions), no values. */
START_TEST(list_keys_gives_store_list_keys_and_versions_without_values)
{
    char err[MESHCA_ERRBUF] = "";
    store *s = NULL;
    ck_assert_msg(store_open(url, &s, err) == STORE_OK, "%s", err);
    put(s, "m2", "a", "{\"v\":3}");
    put(s, "m1", "b", "{\"v\":2}");
    put(s, "m1", "a", "{\"v\":1}");
    put(s, "m1", "b", "{\"v\":4}");   /* a newer version */
    store_entry *full = NULL, *keys = NULL;
    size_t nfull = 0, nkeys = 0;
    ck_assert_int_eq(store_list(s, "identities", NULL, &full, &nfull), STORE_OK);
    ck_assert_int_eq(store_list_keys(s, "identities", NULL, &keys, &nkeys), STORE_OK);
    ck_assert_uint_eq(nkeys, 3);
    ck_assert_uint_eq(nkeys, nfull);
    for (size_t i = 0; i < nkeys; i++) {
        ck_assert_str_eq(keys[i].kind, "identities");
        ck_assert_str_eq(keys[i].mesh, full[i].mesh);
        ck_assert_str_eq(keys[i].name, full[i].name);
        ck_assert_uint_eq(keys[i].version, full[i].version);
        ck_assert_ptr_null(keys[i].value);
        ck_assert_uint_eq(keys[i].len, 0);
    }
    ck_assert_str_eq(keys[1].name, "b");
    ck_assert_uint_gt(keys[1].version, keys[0].version);
    store_entries_free(full, nfull);
    store_entries_free(keys, nkeys);

    /* One mesh; an empty kind is NULL and 0; a bad kind is refused. */
    ck_assert_int_eq(store_list_keys(s, "identities", "m2", &keys, &nkeys), STORE_OK);
    ck_assert_uint_eq(nkeys, 1);
    ck_assert_str_eq(keys[0].mesh, "m2");
    store_entries_free(keys, nkeys);
    ck_assert_int_eq(store_list_keys(s, "dataplanes", NULL, &keys, &nkeys), STORE_OK);
    ck_assert_ptr_null(keys);
    ck_assert_uint_eq(nkeys, 0);
    ck_assert_int_eq(store_list_keys(s, "no-such-kind", NULL, &keys, &nkeys), STORE_EINVAL);
    store_close(s);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("store_scan");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, scan_visits_every_object_of_the_mesh_in_name_order);
    tcase_add_test(tc, list_keys_gives_store_list_keys_and_versions_without_values);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
