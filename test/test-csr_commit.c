/* test-csr_commit.c - group commit of CSR submissions: one transaction for many, the later key of
 * a dataplane wins, unknown dataplanes refused alone, each answered only once durable, a
 * conflict with another writer retried one submission at a time. */
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
#include "reconciler/reconcile.h"
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
    failpoint_set_hook(NULL, NULL);
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

/* A name longer than the store takes is no submission (NULL), and the key it was given is freed
 * (the ASan build checks), not copied past the name's buffer. */
START_TEST(submission_with_a_name_too_long_is_refused_and_frees_its_key)
{
    char name[STORE_NAME_MAX + 2];
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    ck_assert_ptr_null(csr_submission_new(name, "dp-0", fresh_key_pem(), "CSR PEM", NULL));
    ck_assert_ptr_null(csr_submission_new("default", name, fresh_key_pem(), NULL, NULL));
    /* at the limit it is one */
    name[STORE_NAME_MAX] = '\0';
    csr_submission *sub = csr_submission_new("default", name, fresh_key_pem(), NULL, NULL);
    ck_assert_ptr_nonnull(sub);
    ck_assert_str_eq(sub->dataplane, name);
    ck_assert_ptr_null(sub->csr_pem);
    csr_submission_free(sub);
}
END_TEST

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

/* A corrupt identity record (a value that does not decode) is replaced by one with the key
 * pending, as a pass would replace it, and at the version it had (not blindly): the agent is not
 * locked out by a record it cannot fix. */
START_TEST(corrupt_identity_is_replaced_by_one_with_the_key_pending)
{
    store_key k = {STATE_IDENTITIES, "default", "dp-0"};
    uint64_t corrupt_version = 0, version = 0;
    char *value = NULL;
    ck_assert_int_eq(store_put(s, &k, "{\"generation\":", 14, STORE_ANY_VERSION, &corrupt_version),
                     STORE_OK);
    csr_submission *items[2] = {submission("dp-0", NULL), submission("dp-1", NULL)};
    ck_assert_uint_eq(csr_commit_batch(s, items, 2), 1);
    ck_assert_msg(items[0]->rc == 0, "%d %s", items[0]->rc, items[0]->errbuf);
    ck_assert_int_eq(items[1]->rc, 0);
    assert_pending(s, items[0]);
    assert_pending(s, items[1]);
    ck_assert_int_eq(store_get(s, &k, &value, NULL, &version), STORE_OK);
    ck_assert_uint_gt(version, corrupt_version);
    free(value);
    identity id = {0};
    ck_assert_int_eq(identity_read(s, "default", "dp-0", &id, NULL, NULL), 0);
    ck_assert_int_eq(id.generation, 0);
    ck_assert_ptr_null(id.cert_pem);
    identity_clear(&id);
    for (int i = 0; i < 2; i++)
        csr_submission_free(items[i]);
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

/* ---- a conflict with another writer ------------------------------------------------------------ */

/* Another writer (a pass of another controller) at the csr.commit point, on its own handle:
 * it issues dp-1 generation `calls` (a certificate, its pending key taken), so the committer's
 * read of dp-1 is stale by the time it commits. */
typedef struct other_writer {
    store *h;
    int calls;
} other_writer;

static int pass_writes_dp1(const char *name, void *ctx, char *errbuf)
{
    other_writer *w = ctx;
    identity id = {0};
    uint64_t version = 0;
    char err[MESHCA_ERRBUF] = "", gen[32];
    (void)errbuf;
    ck_assert_str_eq(name, "csr.commit");
    w->calls++;
    int rc = identity_read(w->h, "default", "dp-1", &id, &version, err);
    ck_assert_msg(rc == 0 || rc == STORE_ENOTFOUND, "%s", err);
    if (rc == STORE_ENOTFOUND) {
        version = 0;
        id.mesh = strdup("default");
        id.dataplane = strdup("dp-1");
    }
    snprintf(gen, sizeof(gen), "CERT %d", w->calls);
    free(id.cert_pem);
    free(id.public_key_pem);
    free(id.backend);
    free(id.pending_key_pem);
    free(id.pending_csr_pem);
    id.cert_pem = strdup(gen);
    id.public_key_pem = strdup("ISSUED KEY");
    id.backend = strdup("ca-1");
    id.pending_key_pem = id.pending_csr_pem = NULL;
    id.generation = w->calls;
    ck_assert_int_eq(identity_put(w->h, &id, version, NULL), 0);
    identity_clear(&id);
    return 0;
}

static void assert_issued(store *st, const char *dp, int generation)
{
    identity id = {0};
    char err[MESHCA_ERRBUF] = "", gen[32];
    ck_assert_msg(identity_read(st, "default", dp, &id, NULL, err) == 0, "%s", err);
    snprintf(gen, sizeof(gen), "CERT %d", generation);
    ck_assert_int_eq(id.generation, generation);
    ck_assert_str_eq(id.cert_pem, gen);
    ck_assert_str_eq(id.public_key_pem, "ISSUED KEY");
    identity_clear(&id);
}

/* The batch's transaction conflicts (dp-1 written between its read and its commit): each
 * submission is read again and committed alone, every one is answered 202 (rc 0), and dp-1 holds
 * both the other writer's certificate and the submitted key, once. */
START_TEST(conflicting_batch_is_retried_one_by_one_and_keeps_the_other_writers_record)
{
    other_writer w = {test_store_open(url), 0};
    csr_submission *items[3] = {submission("dp-0", NULL), submission("dp-1", NULL),
                                submission("dp-2", NULL)};
    uint64_t before = 0, after = 0;
    failpoint_set_hook(pass_writes_dp1, &w);
    ck_assert_int_eq(failpoint_configure("csr.commit=1*hook", NULL), 0);
    ck_assert_int_eq(store_revision(s, &before), 0);
    /* the batch conflicted: three transactions of one each */
    ck_assert_uint_eq(csr_commit_batch(s, items, 3), 3);
    ck_assert_int_eq(w.calls, 1);
    ck_assert_int_eq(store_revision(s, &after), 0);
    /* the other writer's one write, and the three retries: nothing of the failed batch */
    ck_assert_uint_eq(after, before + 4);
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(items[i]->rc == 0, "%s: %d %s", items[i]->dataplane, items[i]->rc,
                      items[i]->errbuf);
        assert_pending(s, items[i]);
    }
    assert_issued(s, "dp-1", 1);
    /* the others were not touched by the other writer, and got no certificate */
    identity id = {0};
    ck_assert_int_eq(identity_read(s, "default", "dp-0", &id, NULL, NULL), 0);
    ck_assert_int_eq(id.generation, 0);
    ck_assert_ptr_null(id.cert_pem);
    identity_clear(&id);
    for (int i = 0; i < 3; i++)
        csr_submission_free(items[i]);
    store_close(w.h);
}
END_TEST

/* A writer that writes dp-1 before every commit: dp-1's retries are bounded, it is answered with
 * the conflict (503), its key is not stored over the other writer's record, and the others
 * still commit. */
START_TEST(endless_conflict_fails_that_submission_alone_after_bounded_retries)
{
    other_writer w = {test_store_open(url), 0};
    csr_submission *items[3] = {submission("dp-0", NULL), submission("dp-1", NULL),
                                submission("dp-2", NULL)};
    failpoint_set_hook(pass_writes_dp1, &w);
    ck_assert_int_eq(failpoint_configure("csr.commit=hook", NULL), 0);
    ck_assert_uint_eq(csr_commit_batch(s, items, 3), 2);
    /* the batch, dp-0 alone, dp-1's 8 attempts (as reconcile_submit_key), dp-2 alone */
    ck_assert_int_eq(w.calls, 1 + 1 + 8 + 1);
    ck_assert_int_eq(items[0]->rc, 0);
    ck_assert_int_eq(items[1]->rc, STORE_ECONFLICT);
    ck_assert_str_eq(items[1]->errbuf, "cannot store the key of 'default/dp-1': version conflict");
    ck_assert_int_eq(items[2]->rc, 0);
    assert_pending(s, items[0]);
    assert_pending(s, items[2]);
    ck_assert_ptr_null(pending_of(s, "dp-1"));
    assert_issued(s, "dp-1", w.calls);
    for (int i = 0; i < 3; i++)
        csr_submission_free(items[i]);
    store_close(w.h);
}
END_TEST

/* `meshca delete` of dp-1 at the csr.commit point, on its own handle: the Dataplane and, when it
 * has one, its identity, in one transaction (as delete.c plans them). */
static int delete_dp1(const char *name, void *ctx, char *errbuf)
{
    other_writer *w = ctx;
    store_key dpk = {STATE_DATAPLANES, "default", "dp-1"}, idk = {STATE_IDENTITIES, "default", "dp-1"};
    uint64_t dpv = 0, idv = 0;
    char *value = NULL;
    (void)name, (void)errbuf;
    w->calls++;
    ck_assert_int_eq(store_get(w->h, &dpk, &value, NULL, &dpv), STORE_OK);
    free(value);
    value = NULL;
    store_op ops[2] = {{STORE_OP_DELETE, dpk, NULL, 0, dpv, 0}};
    size_t n = 1;
    if (store_get(w->h, &idk, &value, NULL, &idv) == STORE_OK)
        ops[n++] = (store_op){STORE_OP_DELETE, idk, NULL, 0, idv, 0};
    free(value);
    ck_assert_int_eq(store_txn(w->h, ops, n), STORE_OK);
    return 0;
}

/* A dataplane deleted between the read and the commit: its POST is answered as for a dataplane
 * that does not exist (404), no identity is left for it (with or without one before), and the
 * others commit. */
START_TEST(dataplane_deleted_before_the_commit_gets_enotfound_and_leaves_no_identity)
{
    for (int had_identity = 0; had_identity < 2; had_identity++) {
        if (had_identity) {
            /* the Dataplane back, with the key of an earlier POST */
            test_seed(s, "type: Dataplane\nmesh: default\nname: dp-1\nnetworking:\n"
                         "  address: 127.0.0.1\n  inbound:\n  - port: 8443\n    tags:\n"
                         "      kuma.io/service: web\n");
            csr_submission *earlier = submission("dp-1", NULL);
            ck_assert_uint_eq(csr_commit_batch(s, &earlier, 1), 1);
            ck_assert_int_eq(earlier->rc, 0);
            csr_submission_free(earlier);
        }
        other_writer w = {test_store_open(url), 0};
        csr_submission *items[3] = {submission("dp-0", NULL), submission("dp-1", NULL),
                                    submission("dp-2", NULL)};
        failpoint_set_hook(delete_dp1, &w);
        ck_assert_int_eq(failpoint_configure("csr.commit=1*hook", NULL), 0);
        csr_commit_batch(s, items, 3);
        ck_assert_int_eq(failpoint_configure(NULL, NULL), 0);
        ck_assert_int_eq(w.calls, 1);
        ck_assert_msg(items[1]->rc == MESHCA_ENOTFOUND, "had identity %d: rc %d", had_identity,
                      items[1]->rc);
        ck_assert_str_eq(items[1]->errbuf, "no dataplane 'dp-1' in mesh 'default'");
        ck_assert_int_eq(state_object_version(s, &(store_key){STATE_IDENTITIES, "default", "dp-1"},
                                              NULL),
                         STORE_ENOTFOUND);
        for (int i = 0; i < 3; i += 2) {
            ck_assert_int_eq(items[i]->rc, 0);
            assert_pending(s, items[i]);
        }
        for (int i = 0; i < 3; i++)
            csr_submission_free(items[i]);
        store_close(w.h);
    }
}
END_TEST

/* The API without the group commit (reconcile_submit_key): the same, one key at a time. */
START_TEST(submit_key_of_a_dataplane_deleted_before_the_commit_gets_enotfound)
{
    other_writer w = {test_store_open(url), 0};
    EVP_PKEY *key = NULL;
    unsigned char *der = NULL;
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(pki_generate_key(false, 0, &key, err), 0);
    int n = i2d_PUBKEY(key, &der);
    ck_assert_int_gt(n, 0);
    failpoint_set_hook(delete_dp1, &w);
    ck_assert_int_eq(failpoint_configure("csr.submit=1*hook", NULL), 0);
    ck_assert_int_eq(reconcile_submit_key(s, "default", "dp-1", der, (size_t)n, NULL, err),
                     MESHCA_ENOTFOUND);
    ck_assert_str_eq(err, "no dataplane 'dp-1' in mesh 'default'");
    ck_assert_int_eq(w.calls, 1);
    ck_assert_int_eq(state_object_version(s, &(store_key){STATE_IDENTITIES, "default", "dp-1"},
                                          NULL),
                     STORE_ENOTFOUND);
    /* another dataplane's key, with nothing in the way, is stored */
    ck_assert_int_eq(reconcile_submit_key(s, "default", "dp-0", der, (size_t)n, NULL, err), 0);
    char *pem = pending_of(s, "dp-0");
    ck_assert_ptr_nonnull(pem);
    free(pem);
    OPENSSL_free(der);
    EVP_PKEY_free(key);
    store_close(w.h);
}
END_TEST

/* The same through the committer thread (what run's API does): the hook runs on that thread. */
START_TEST(committer_answers_202_after_a_conflict_with_every_key_durable)
{
    struct event_base *base = event_base_new();
    store *mine = test_store_open(url);
    answers a = {test_store_open(url), 0, 0, 0, {0}};
    other_writer w = {test_store_open(url), 0};
    csr_committer *c = NULL;
    char err[MESHCA_ERRBUF] = "", name[16];
    failpoint_set_hook(pass_writes_dp1, &w);
    ck_assert_int_eq(failpoint_configure("csr.commit=1*hook", NULL), 0);
    ck_assert_int_eq(csr_committer_new(base, mine, on_committed, &a, &c, err), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "dp-%d", i);
        csr_committer_submit(c, submission(name, (void *)(intptr_t)i));
    }
    run_until(base, &a, 3);
    ck_assert_int_eq(a.count, 3);
    ck_assert_int_eq(a.failed, 0);
    ck_assert_int_eq(a.durable, 3);
    ck_assert_int_eq(w.calls, 1);
    csr_committer_free(c);
    assert_issued(a.reader, "dp-1", 1);
    store_close(mine);
    store_close(a.reader);
    store_close(w.h);
    event_base_free(base);
}
END_TEST

static Suite *csr_commit_suite(void)
{
    Suite *su = suite_create("csr_commit");
    TCase *tc = tcase_create("csr_commit");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, submission_with_a_name_too_long_is_refused_and_frees_its_key);
    tcase_add_test(tc, distinct_dataplanes_commit_in_one_transaction_with_every_key);
    tcase_add_test(tc, same_dataplane_twice_takes_two_transactions_and_the_later_key_wins);
    tcase_add_test(tc, unknown_dataplane_gets_enotfound_and_the_others_commit);
    tcase_add_test(tc, failed_commit_fails_every_submission_and_stores_no_key);
    tcase_add_test(tc, corrupt_identity_is_replaced_by_one_with_the_key_pending);
    tcase_add_test(tc, committer_answers_each_submission_once_its_key_is_durable);
    tcase_add_test(tc, committer_free_commits_and_answers_what_is_queued);
    tcase_add_test(tc, committer_answers_a_failed_commit_with_its_error);
    tcase_add_test(tc, conflicting_batch_is_retried_one_by_one_and_keeps_the_other_writers_record);
    tcase_add_test(tc, endless_conflict_fails_that_submission_alone_after_bounded_retries);
    tcase_add_test(tc, committer_answers_202_after_a_conflict_with_every_key_durable);
    tcase_add_test(tc, dataplane_deleted_before_the_commit_gets_enotfound_and_leaves_no_identity);
    tcase_add_test(tc, submit_key_of_a_dataplane_deleted_before_the_commit_gets_enotfound);
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
