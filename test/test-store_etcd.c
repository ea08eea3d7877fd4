/* test-store_etcd.c - Check suite for the etcd store's listings against a real etcd: what etcd is asked to send. */
#include "reconciler/store.h"

#include "etcd-harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static harness shared; /* one member for every test */

static void shared_up(void)
{
    if (harness_start(&shared, 1) < 0) {
        fprintf(stderr, "cannot start etcd\n");
        exit(2);
    }
}

static void shared_down(void)
{
    harness_stop(&shared);
}

/* A counter of etcd's /metrics, e.g. the bytes it sent to or received from gRPC clients (its
 * JSON gateway is one). */
static double etcd_counter(const char *endpoint, const char *name)
{
    char cmd[320], line[256];
    size_t n = strlen(name);
    double v = -1;
    FILE *f;

    snprintf(cmd, sizeof(cmd), "curl -s -m 5 http://%s/metrics", endpoint);
    f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, name, n) == 0 && line[n] == ' ')
            v = strtod(line + n + 1, NULL);
    pclose(f);
    ck_assert_msg(v >= 0, "no %s at %s", name, endpoint);
    return v;
}

static double grpc_sent_bytes(const char *endpoint)
{
    return etcd_counter(endpoint, "etcd_network_client_grpc_sent_bytes_total");
}

static double grpc_received_bytes(const char *endpoint)
{
    return etcd_counter(endpoint, "etcd_network_client_grpc_received_bytes_total");
}

/* A store write on etcd is one txn of a compare and a put per object, without a failure branch
 * (a GET per key that etcd's gateway decodes in every txn): 100 objects of 40-byte keys and
 * 8-byte values take about 110 bytes each in etcd's protobuf, 160 with the failure branch. A
 * conflict is still explained by name, from the keys read back. */
START_TEST(store_txn_on_etcd_sends_no_failure_branch_and_still_names_a_conflict)
{
    char url[300], err[MESHCA_ERRBUF] = "", names[100][40];
    store *s = NULL;
    store_op ops[100];
    uint64_t version = 0;
    char *value = NULL;
    size_t len = 0;
    double before, bytes;

    snprintf(url, sizeof(url), "etcd://%s", shared.endpoints);
    ck_assert_msg(store_open(url, &s, err) == STORE_OK, "%s", err);
    for (int i = 0; i < 100; i++) {
        /* key "/meshca/identities/nofail/object-name-000000NN": 40 bytes */
        snprintf(names[i], sizeof(names[i]), "object-name-%08d", i);
        ops[i] = (store_op){.type = STORE_OP_PUT, .key = {"identities", "nofail", names[i]},
                            .value = "{\"v\":1}", .len = 7, .expected_version = 0};
    }
    before = grpc_received_bytes(shared.endpoints);
    ck_assert_msg(store_txn(s, ops, 100) == STORE_OK, "%s", store_errmsg(s));
    bytes = grpc_received_bytes(shared.endpoints) - before;
    ck_assert_msg(bytes < 100 * 135, "etcd received %.0f bytes for 100 puts with compares", bytes);
    ck_assert_msg(bytes > 100 * 90, "etcd received %.0f bytes: not the txn?", bytes);

    /* Object 42 again, expected absent: refused, and the message names it with its version. */
    ck_assert_int_eq(store_get(s, &ops[42].key, &value, &len, &version), STORE_OK);
    free(value);
    ck_assert_int_eq(store_txn(s, ops, 100), STORE_ECONFLICT);
    ck_assert_ptr_nonnull(strstr(store_errmsg(s), "identities/nofail/object-name-00000000: "
                                                  "version conflict"));
    ops[42].expected_version = version + 1000;
    for (int i = 0; i < 100; i++)
        if (i != 42)
            ops[i].expected_version = STORE_ANY_VERSION;
    ck_assert_int_eq(store_txn(s, ops, 100), STORE_ECONFLICT);
    snprintf(err, sizeof(err),
             "identities/nofail/object-name-00000042: version conflict: at version %llu, "
             "expected %llu",
             (unsigned long long)version, (unsigned long long)version + 1000);
    ck_assert_msg(strstr(store_errmsg(s), err), "%s", store_errmsg(s));
    store_close(s);
}
END_TEST

/* store_list_keys on etcd (the pass's fence) asks for keys only: etcd sends the keys and
 * versions, not the 16 x 16 KiB of values (which store_list does send). */
START_TEST(store_list_keys_on_etcd_gets_no_value_from_etcd)
{
    char url[300], err[MESHCA_ERRBUF] = "", names[16][8], *value = malloc(16384);
    store *s = NULL;
    store_op ops[16];
    store_entry *full = NULL, *keys = NULL;
    size_t nfull = 0, nkeys = 0;
    double before, keys_bytes, list_bytes;

    ck_assert_ptr_nonnull(value);
    memset(value, 'v', 16383);
    value[16383] = '\0';
    snprintf(url, sizeof(url), "etcd://%s", shared.endpoints);
    ck_assert_msg(store_open(url, &s, err) == STORE_OK, "%s", err);
    for (int i = 0; i < 16; i++) {
        snprintf(names[i], sizeof(names[i]), "n%02d", i);
        ops[i] = (store_op){.type = STORE_OP_PUT, .key = {"identities", "keysonly", names[i]},
                            .value = value, .len = 16383, .expected_version = STORE_ANY_VERSION};
    }
    ck_assert_msg(store_txn(s, ops, 16) == STORE_OK, "%s", store_errmsg(s));
    before = grpc_sent_bytes(shared.endpoints);
    ck_assert_msg(store_list_keys(s, "identities", "keysonly", &keys, &nkeys) == STORE_OK, "%s",
                  store_errmsg(s));
    keys_bytes = grpc_sent_bytes(shared.endpoints) - before;
    before = grpc_sent_bytes(shared.endpoints);
    ck_assert_msg(store_list(s, "identities", "keysonly", &full, &nfull) == STORE_OK, "%s",
                  store_errmsg(s));
    list_bytes = grpc_sent_bytes(shared.endpoints) - before;
    ck_assert_uint_eq(nkeys, 16);
    ck_assert_uint_eq(nfull, 16);
    for (size_t i = 0; i < 16; i++) {
        ck_assert_str_eq(keys[i].name, names[i]);
        ck_assert_str_eq(keys[i].mesh, "keysonly");
        ck_assert_uint_eq(keys[i].version, full[i].version);
        ck_assert_ptr_null(keys[i].value);
        ck_assert_uint_eq(keys[i].len, 0);
        ck_assert_uint_eq(full[i].len, 16383);
    }
    ck_assert_msg(list_bytes >= 16 * 16383, "store_list: etcd sent %.0f bytes", list_bytes);
    ck_assert_msg(keys_bytes < 16384, "store_list_keys: etcd sent %.0f bytes", keys_bytes);
    store_entries_free(keys, nkeys);
    store_entries_free(full, nfull);
    store_close(s);
    free(value);
}
END_TEST

int main(void)
{
    char root[] = "/tmp/meshca-test-store-etcd-XXXXXX", cmd[80];
    Suite *s;
    TCase *tc;
    SRunner *sr;
    int failed;

    if (!harness_available()) {
        printf(
            "SKIP: %s is not installed (Debian package etcd-server; tools/deps.sh installs it)\n",
            ETCD_BIN);
        return 77;
    }
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    harness_set_root(root);
    s = suite_create("store_etcd");
    tc = tcase_create("listings");
    tcase_add_unchecked_fixture(tc, shared_up, shared_down);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, store_list_keys_on_etcd_gets_no_value_from_etcd);
    tcase_add_test(tc, store_txn_on_etcd_sends_no_failure_branch_and_still_names_a_conflict);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    /* The path is our own mkdtemp result. */
    if (snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root) < (int)sizeof(cmd))
        (void)!system(cmd);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
