/* test-csr_commit.c - group commit of CSR submissions: one transaction for many, the later key of
 * a dataplane wins, unknown dataplanes refused alone, each answered only once durable. */
#define _GNU_SOURCE 1
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/x509.h>

#include "check-store.h"
#include "reconciler/api/csr_commit.h"
#include "reconciler/failpoint.h"
#include "reconciler/pki.h"
#include "reconciler/state.h"

#define NDP 6

static char dir[64], url[256];
static store *s;

static void setup(void)
{
    char yaml[4096];
    int off;
    snprintf(dir, sizeof(dir), "/tmp/meshca-test-csr-commit-XXXXXX");
    test_store_dir(dir, url, sizeof(url));
    s = test_store_open(url);
    off = snprintf(yaml, sizeof(yaml), "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n"
                                       "  backends:\n  - name: ca-1\n    type: builtin\n");
    for (int i = 0; i < NDP; i++)
        off += snprintf(yaml + off, sizeof(yaml) - (size_t)off,
                        "---\ntype: Dataplane\nmesh: default\nname: dp-%d\nnetworking:\n"
                        "  address: 127.0.0.1\n  inbound:\n  - port: 8443\n    tags:\n"
                        "      kuma.io/service: web\n",
                        i);
    test_seed(s, yaml);
}

static void teardown(void)
{
    failpoint_configure(NULL, NULL);
    store_close(s);
    test_store_dir_remove(dir);
}

/* A fresh P-256 public key as PEM (what the API hands the committer). */
static char *fresh_key_pem(void)
{
    EVP_PKEY *key = NULL;
    unsigned char *der = NULL;
    char *pem = NULL, err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(pki_generate_key(false, 0, &key, err), 0);
    int n = i2d_PUBKEY(key, &der);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(pki_spki_to_pem(der, (size_t)n, &pem, err), 0);
    OPENSSL_free(der);
    EVP_PKEY_free(key);
    return pem;
}

static csr_submission *submission(const char *dp, void *cookie)
{
    csr_submission *sub = csr_submission_new("default", dp, fresh_key_pem(), "CSR PEM", cookie);
    ck_assert_ptr_nonnull(sub);
    return sub;
}

/* The pending key stored for dp (caller frees), or NULL when it has none. */
static char *pending_of(store *st, const char *dp)
{
    identity id = {0};
    char err[MESHCA_ERRBUF] = "";
    if (identity_read(st, "default", dp, &id, NULL, err) < 0)
        return NULL;
    char *pem = id.pending_key_pem ? strdup(id.pending_key_pem) : NULL;
    ck_assert(!id.pending_csr_pem || strcmp(id.pending_csr_pem, "CSR PEM") == 0);
    identity_clear(&id);
    return pem;
}

static void assert_pending(store *st, const csr_submission *sub)
{
    char *pem = pending_of(st, sub->dataplane);
    ck_assert_msg(pem != NULL, "%s has no pending key", sub->dataplane);
    ck_assert_str_eq(pem, sub->key_pem);
    free(pem);
}

START_TEST(distinct_dataplanes_commit_in_one_transaction_with_every_key)
{
    csr_submission *items[NDP];
    char name[16];
    uint64_t before = 0, after = 0;
    for (int i = 0; i < NDP; i++) {
        snprintf(name, sizeof(name), "dp-%d", i);
        items[i] = submission(name, NULL);
    }
    ck_assert_int_eq(store_revision(s, &before), 0);
    ck_assert_uint_eq(csr_commit_batch(s, items, NDP), 1);
    ck_assert_int_eq(store_revision(s, &after), 0);
    /* one transaction: every write got the same new version */
    ck_assert_uint_eq(after, before + 1);
    for (int i = 0; i < NDP; i++) {
        ck_assert_int_eq(items[i]->rc, 0);
        assert_pending(s, items[i]);
        csr_submission_free(items[i]);
    }
}
END_TEST

START_TEST(same_dataplane_twice_takes_two_transactions_and_the_later_key_wins)
{
    csr_submission *items[3] = {submission("dp-0", NULL), submission("dp-1", NULL),
                                submission("dp-0", NULL)};
    ck_assert_uint_eq(csr_commit_batch(s, items, 3), 2);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(items[i]->rc, 0);
    assert_pending(s, items[1]);
    assert_pending(s, items[2]);
    char *pem = pending_of(s, "dp-0");
    ck_assert_str_ne(pem, items[0]->key_pem);
    free(pem);
    for (int i = 0; i < 3; i++)
        csr_submission_free(items[i]);
}
END_TEST

START_TEST(unknown_dataplane_gets_enotfound_and_the_others_commit)
{
    csr_submission *items[3] = {submission("dp-0", NULL), submission("nope", NULL),
                                submission("dp-1", NULL)};
    ck_assert_uint_eq(csr_commit_batch(s, items, 3), 1);
    ck_assert_int_eq(items[0]->rc, 0);
    ck_assert_int_eq(items[1]->rc, MESHCA_ENOTFOUND);
    ck_assert_str_eq(items[1]->errbuf, "no dataplane 'nope' in mesh 'default'");
    ck_assert_int_eq(items[2]->rc, 0);
    assert_pending(s, items[0]);
    assert_pending(s, items[2]);
    ck_assert_ptr_null(pending_of(s, "nope"));
    for (int i = 0; i < 3; i++)
        csr_submission_free(items[i]);
}
END_TEST

/* A commit that fails answers every submission of it with the store's error, and writes none. */
START_TEST(failed_commit_fails_every_submission_and_stores_no_key)
{
    csr_submission *items[2] = {submission("dp-0", NULL), submission("dp-1", NULL)};
    ck_assert_int_eq(failpoint_configure("csr.commit=error", NULL), 0);
    ck_assert_uint_eq(csr_commit_batch(s, items, 2), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(items[i]->rc, MESHCA_EIO);
        ck_assert_msg(strstr(items[i]->errbuf, "cannot store the key of 'default/dp-") != NULL,
                      "%s", items[i]->errbuf);
        ck_assert_ptr_null(pending_of(s, items[i]->dataplane));
        csr_submission_free(items[i]);
    }
}
END_TEST

/* ---- the committer thread ---------------------------------------------------------------------- */

typedef struct answers {
    store *reader;       /* another connection: what it sees is committed */
    int count, durable, failed;
    int order[NDP * 2];
} answers;

static void on_committed(void *ctx, csr_submission *sub)
{
    answers *a = ctx;
    char *pem = pending_of(a->reader, sub->dataplane);
    /* Answered only once durable: the key is already in the store for another connection. */
    if (sub->rc == 0 && pem && strcmp(pem, sub->key_pem) == 0)
        a->durable++;
    if (sub->rc < 0)
        a->failed++;
    a->order[a->count++] = (int)(intptr_t)sub->cookie;
    free(pem);
}

static void run_until(struct event_base *base, answers *a, int want)
{
    /* Bounded: each turn waits at most 100 ms for the committer's wake-up. */
    for (int i = 0; i < 600 && a->count < want; i++) {
        struct timeval tv = {0, 100000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

START_TEST(committer_answers_each_submission_once_its_key_is_durable)
{
    struct event_base *base = event_base_new();
    store *mine = test_store_open(url);
    answers a = {test_store_open(url), 0, 0, 0, {0}};
    csr_committer *c = NULL;
    char err[MESHCA_ERRBUF] = "", name[16];
    csr_submission *subs[NDP];
    ck_assert_int_eq(csr_committer_new(base, mine, on_committed, &a, &c, err), 0);
    for (int i = 0; i < NDP; i++) {
        snprintf(name, sizeof(name), "dp-%d", i);
        subs[i] = submission(name, (void *)(intptr_t)i);
        csr_committer_submit(c, subs[i]);
    }
    run_until(base, &a, NDP);
    ck_assert_int_eq(a.count, NDP);
    ck_assert_int_eq(a.durable, NDP);
    /* answered in the order they came */
    for (int i = 0; i < NDP; i++)
        ck_assert_int_eq(a.order[i], i);
    ck_assert_uint_ge(csr_committer_batches(c), 1);
    ck_assert_uint_le(csr_committer_batches(c), NDP);
    csr_committer_free(c);
    store_close(mine);
    store_close(a.reader);
    event_base_free(base);
}
END_TEST

/* At shutdown what is queued is still committed and answered, before free returns. */
START_TEST(committer_free_commits_and_answers_what_is_queued)
{
    struct event_base *base = event_base_new();
    store *mine = test_store_open(url);
    answers a = {test_store_open(url), 0, 0, 0, {0}};
    csr_committer *c = NULL;
    char err[MESHCA_ERRBUF] = "", name[16];
    ck_assert_int_eq(csr_committer_new(base, mine, on_committed, &a, &c, err), 0);
    for (int i = 0; i < NDP; i++) {
        snprintf(name, sizeof(name), "dp-%d", i);
        csr_committer_submit(c, submission(name, (void *)(intptr_t)i));
    }
    csr_committer_free(c);   /* the loop never ran */
    ck_assert_int_eq(a.count, NDP);
    ck_assert_int_eq(a.durable, NDP);
    store_close(mine);
    store_close(a.reader);
    event_base_free(base);
}
END_TEST

START_TEST(committer_answers_a_failed_commit_with_its_error)
{
    struct event_base *base = event_base_new();
    store *mine = test_store_open(url);
    answers a = {test_store_open(url), 0, 0, 0, {0}};
    csr_committer *c = NULL;
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(failpoint_configure("csr.commit=error", NULL), 0);
    ck_assert_int_eq(csr_committer_new(base, mine, on_committed, &a, &c, err), 0);
    csr_committer_submit(c, submission("dp-0", NULL));
    csr_committer_submit(c, submission("nope", NULL));
    run_until(base, &a, 2);
    ck_assert_int_eq(a.count, 2);
    ck_assert_int_eq(a.failed, 2);
    ck_assert_int_eq(a.durable, 0);
    ck_assert_uint_eq(csr_committer_batches(c), 0);
    csr_committer_free(c);
    store_close(mine);
    store_close(a.reader);
    event_base_free(base);
}
END_TEST

static Suite *csr_commit_suite(void)
{
    Suite *su = suite_create("csr_commit");
    TCase *tc = tcase_create("csr_commit");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, distinct_dataplanes_commit_in_one_transaction_with_every_key);
    tcase_add_test(tc, same_dataplane_twice_takes_two_transactions_and_the_later_key_wins);
    tcase_add_test(tc, unknown_dataplane_gets_enotfound_and_the_others_commit);
    tcase_add_test(tc, failed_commit_fails_every_submission_and_stores_no_key);
    tcase_add_test(tc, committer_answers_each_submission_once_its_key_is_durable);
    tcase_add_test(tc, committer_free_commits_and_answers_what_is_queued);
    tcase_add_test(tc, committer_answers_a_failed_commit_with_its_error);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(csr_commit_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
