/* test-pass_order.c - Check suite for the order of a reconcile pass's writes on etcd, where a
 * large pass is several transactions: what a reader sees between them. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "check-store.h"
#include "etcd-harness.h"
#include "reconciler/failpoint.h"
#include "reconciler/reconcile.h"
#include "reconciler/state.h"

#define NDP 6

static harness cluster;
static char url[600];

/* What the reader saw before each part of the pass's commit (the first: before any). */
typedef struct between {
    int calls;
    int inconsistent;        /* identities naming ca-2 while the stored bundle did not */
    char first[160];
} between;

static bool lists(char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], name) == 0)
            return true;
    return false;
}

/* An API replica reading between two parts: every identity's bundle names (what the agent's ack
 * records as supportedBackends) must be names of the bundle it would be served with. */
static int read_between(const char *name, void *ctx, char *errbuf)
{
    (void)name;
    (void)errbuf;
    between *b = ctx;
    store *r = test_store_open(url);
    mesh_bundle bundle = {0};
    char err[MESHCA_ERRBUF] = "";
    bool have_bundle = state_read_bundle(r, "default", &bundle, NULL, err) == 0;
    for (int i = 0; i < NDP; i++) {
        char dp[16];
        identity id = {0};
        snprintf(dp, sizeof(dp), "dp-%d", i);
        if (identity_read(r, "default", dp, &id, NULL, err) == 0 &&
            lists(id.bundle_backends, id.nbundle_backends, "ca-2") &&
            !(have_bundle && lists(bundle.backends, bundle.nbackends, "ca-2"))) {
            if (!b->inconsistent++)
                snprintf(b->first, sizeof(b->first), "%s generation %lld names ca-2, the bundle "
                         "does not", dp, id.generation);
        }
        identity_clear(&id);
    }
    mesh_bundle_clear(&bundle);
    store_close(r);
    b->calls++;
    return 0;
}

static void pass_ok(store *s)
{
    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    reconcile_report rep = RECONCILE_REPORT_INIT;
    diag_list diags = DIAG_LIST_INIT;
    ck_assert_int_eq(reconcile_once(s, &opts, &rep, &diags), 0);
    ck_assert_msg(!diag_has_errors(&diags), "pass: %s", diags.count ? diags.items[0].message : "");
    reconcile_report_free(&rep);
    diag_list_free(&diags);
}

/* A pass that adds ca-2 to every leaf's bundle, committed in parts of 4 operations: an agent
 * fetching between two parts got a leaf whose generation named ca-2 with the old bundle, acked
 * it (supportedBackends then said ca-2), and a switch to ca-2 passed while its proxy did not
 * trust ca-2. The bundle is written first. */
START_TEST(split_pass_never_stores_a_leaf_naming_a_ca_before_the_bundle_holding_it)
{
    char yaml[8192];
    int off = snprintf(yaml, sizeof(yaml), "type: Mesh\nname: default\nmtls:\n"
                       "  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n");
    for (int i = 0; i < NDP; i++)
        off += snprintf(yaml + off, sizeof(yaml) - (size_t)off,
                        "---\ntype: Dataplane\nmesh: default\nname: dp-%d\nnetworking:\n"
                        "  address: 127.0.0.1\n  inbound:\n  - port: 8443\n    tags:\n"
                        "      kuma.io/service: web\n", i);
    store *s = test_store_open(url);
    test_seed(s, yaml);
    for (int i = 0; i < NDP; i++) {
        char dp[16];
        snprintf(dp, sizeof(dp), "dp-%d", i);
        EVP_PKEY_free(test_submit(s, "default", dp, false, false));
    }
    pass_ok(s);   /* generation 1 of each, bundle {ca-1} */

    test_seed(s, "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
                 "  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n");
    between b = {0};
    failpoint_set_hook(read_between, &b);
    ck_assert_int_eq(failpoint_configure("pass.commit=hook", NULL), 0);
    pass_ok(s);   /* every leaf rebundled with {ca-1, ca-2} */
    failpoint_configure(NULL, NULL);
    failpoint_set_hook(NULL, NULL);

    ck_assert_msg(b.calls > 1, "the pass was not split (%d part): nothing to check", b.calls);
    ck_assert_msg(b.inconsistent == 0, "%d reads between parts saw a leaf ahead of its bundle "
                  "(first: %s)", b.inconsistent, b.first);
    /* And the pass did rebundle: generation 2 of each names ca-2, as the bundle does. */
    identity id = {0};
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(identity_read(s, "default", "dp-0", &id, NULL, err), 0);
    ck_assert_int_eq(id.generation, 2);
    ck_assert(lists(id.bundle_backends, id.nbundle_backends, "ca-2"));
    identity_clear(&id);
    store_close(s);
}
END_TEST

int main(void)
{
    if (!harness_available()) {
        fprintf(stderr, "etcd is not installed\n");
        return 77;
    }
    if (harness_start(&cluster, 1) < 0) {
        fprintf(stderr, "cannot start etcd\n");
        return 2;
    }
    snprintf(url, sizeof(url), "etcd://%s?max-txn-ops=4", cluster.endpoints);
    Suite *suite = suite_create("pass_order");
    TCase *tc = tcase_create("pass_order");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, split_pass_never_stores_a_leaf_naming_a_ca_before_the_bundle_holding_it);
    suite_add_tcase(suite, tc);
    SRunner *sr = srunner_create(suite);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    harness_stop(&cluster);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
