/* test-sign_pool.c - Check suite for the signing workers: same leaves as one thread, failures per job, clean shutdown. */
#define _GNU_SOURCE /* gettid */
#include <check.h>
#include <sched.h>
#include <errno.h>
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "reconciler/pki.h"
#include "reconciler/sign_pool.h"

#define NKEYS 8
#define NJOBS 200

static const char *const uris_a[] = {"spiffe://default/web", "kuma://kuma.io/service/web"};
static const char *const uris_b[] = {"spiffe://default/db", "kuma://kuma.io/service/db",
                                     "kuma://version/v2"};

typedef struct fixture {
    X509 *ca;
    EVP_PKEY *ca_key;
    EVP_PKEY *keys[NKEYS];
    unsigned char *spki[NKEYS];
    size_t spki_len[NKEYS];
    char *csr[NKEYS];
} fixture;

static void fixture_init(fixture *f, int64_t now)
{
    char err[PKI_ERRBUF];

    memset(f, 0, sizeof(*f));
    ck_assert_int_eq(pki_generate_key(false, 0, &f->ca_key, err), PKI_OK);
    ck_assert_int_eq(pki_make_root(f->ca_key, "default", "spiffe://default", now, 86400 * 30,
                                   &f->ca, err), PKI_OK);
    for (int i = 0; i < NKEYS; i++) {
        X509_REQ *req = X509_REQ_new();
        BIO *bio = BIO_new(BIO_s_mem());
        unsigned char *der = NULL;
        char *data;
        long n;
        int dn;

        ck_assert_int_eq(pki_generate_key(false, 0, &f->keys[i], err), PKI_OK);
        ck_assert_int_eq(X509_REQ_set_pubkey(req, f->keys[i]), 1);
        ck_assert_int_gt(X509_REQ_sign(req, f->keys[i], EVP_sha256()), 0);
        ck_assert_int_eq(PEM_write_bio_X509_REQ(bio, req), 1);
        n = BIO_get_mem_data(bio, &data);
        f->csr[i] = strndup(data, (size_t)n);
        dn = i2d_PUBKEY(f->keys[i], &der);
        ck_assert_int_gt(dn, 0);
        f->spki[i] = malloc((size_t)dn);
        memcpy(f->spki[i], der, (size_t)dn);
        f->spki_len[i] = (size_t)dn;
        OPENSSL_free(der);
        BIO_free(bio);
        X509_REQ_free(req);
    }
}

static void fixture_free(fixture *f)
{
    for (int i = 0; i < NKEYS; i++) {
        EVP_PKEY_free(f->keys[i]);
        free(f->spki[i]);
        free(f->csr[i]);
    }
    X509_free(f->ca);
    EVP_PKEY_free(f->ca_key);
}

/* Job i: key i % NKEYS, SANs a or b, a CSR for odd i and a stored SPKI for even i. */
static void fill_jobs(fixture *f, sign_pool_job *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sign_pool_job *j = &jobs[i];
        size_t k = i % NKEYS;

        memset(j, 0, sizeof(*j));
        j->req = (pki_leaf_request)PKI_LEAF_REQUEST_INIT;
        j->req.uris = i % 3 ? uris_a : uris_b;
        j->req.nuris = i % 3 ? 2 : 3;
        j->req.lifetime_s = 3600 + (int64_t)i;
        if (i % 2) {
            j->csr_pem = f->csr[k];
            j->csr_len = strlen(f->csr[k]);
        } else {
            j->spki_der = f->spki[k];
            j->spki_len = f->spki_len[k];
        }
    }
}

/* What must be equal between two leaves for the same job: everything but serial and signature. */
static void assert_same_leaf(fixture *f, const pki_signed_leaf *a, const pki_signed_leaf *b,
                             size_t i)
{
    X509 *x = NULL, *y = NULL;

    ck_assert_int_eq(pki_cert_from_pem(a->pem, strlen(a->pem), &x, NULL), PKI_OK);
    ck_assert_int_eq(pki_cert_from_pem(b->pem, strlen(b->pem), &y, NULL), PKI_OK);
    ck_assert_int_eq(X509_verify(x, f->ca_key), 1);
    ck_assert_int_eq(X509_verify(y, f->ca_key), 1);
    ck_assert_int_eq(EVP_PKEY_eq(X509_get0_pubkey(x), f->keys[i % NKEYS]), 1);
    ck_assert_int_eq(EVP_PKEY_eq(X509_get0_pubkey(y), f->keys[i % NKEYS]), 1);
    ck_assert_int_eq(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_issuer_name(y)), 0);
    ck_assert_int_eq(a->not_before, b->not_before);
    ck_assert_int_eq(a->not_after, b->not_after);
    ck_assert_int_eq(X509_get_ext_count(x), X509_get_ext_count(y));
    for (int e = 0; e < X509_get_ext_count(x); e++) {
        unsigned char *da = NULL, *db = NULL;
        int na = i2d_X509_EXTENSION(X509_get_ext(x, e), &da);
        int nb = i2d_X509_EXTENSION(X509_get_ext(y, e), &db);

        ck_assert_msg(na == nb && memcmp(da, db, (size_t)na) == 0, "job %zu extension %d differs",
                      i, e);
        OPENSSL_free(da);
        OPENSSL_free(db);
    }
    ck_assert_str_ne(a->serial_hex, b->serial_hex);
    X509_free(x);
    X509_free(y);
}

static void sign_single_thread(fixture *f, sign_pool_job *jobs, size_t n, int64_t now)
{
    pki_leaf_signer *s = NULL;
    char err[PKI_ERRBUF];

    ck_assert_int_eq(pki_leaf_signer_new(f->ca, f->ca_key, &s, err), PKI_OK);
    for (size_t i = 0; i < n; i++) {
        sign_pool_job *j = &jobs[i];

        j->result = j->csr_pem ? pki_sign_csr(s, j->csr_pem, j->csr_len, &j->req, now, &j->leaf,
                                               NULL, NULL, err)
                               : pki_sign_public_key(s, j->spki_der, j->spki_len, &j->req, now,
                                                     &j->leaf, err);
        ck_assert_msg(j->result == 0, "job %zu: %s", i, err);
    }
    pki_leaf_signer_free(s);
}

static void check_pool_equals_single_thread(unsigned threads)
{
    int64_t now = time(NULL);
    fixture f;
    sign_pool *pool = NULL;
    sign_pool_job *single = calloc(NJOBS, sizeof(*single)), *pooled = calloc(NJOBS, sizeof(*pooled));
    char err[PKI_ERRBUF];

    fixture_init(&f, now);
    fill_jobs(&f, single, NJOBS);
    fill_jobs(&f, pooled, NJOBS);
    sign_single_thread(&f, single, NJOBS, now);
    ck_assert_int_eq(sign_pool_new(f.ca, f.ca_key, threads, &pool, err), 0);
    ck_assert_uint_eq(sign_pool_threads(pool), threads);
    ck_assert_msg(sign_pool_run(pool, pooled, NJOBS, now, err) == 0, "%s", err);
    for (size_t i = 0; i < NJOBS; i++) {
        ck_assert_int_eq(pooled[i].result, 0);
        assert_same_leaf(&f, &single[i].leaf, &pooled[i].leaf, i);
        pki_signed_leaf_clear(&single[i].leaf);
        pki_signed_leaf_clear(&pooled[i].leaf);
    }
    sign_pool_free(pool);
    ck_assert_int_eq(ERR_peek_error(), 0);
    free(single);
    free(pooled);
    fixture_free(&f);
}

START_TEST(pool_of_one_thread_signs_what_a_single_thread_signs)
{
    check_pool_equals_single_thread(1);
}
END_TEST

START_TEST(pool_of_four_threads_signs_what_a_single_thread_signs)
{
    check_pool_equals_single_thread(4);
}
END_TEST

/* A bad job fails alone, with its own code; the batch's code is the lowest failed index's. */
START_TEST(failed_job_is_reported_with_its_index_and_the_rest_are_signed)
{
    int64_t now = time(NULL);
    fixture f;
    sign_pool *pool = NULL;
    sign_pool_job jobs[40];
    char err[PKI_ERRBUF];
    static const unsigned char garbage[] = {0x30, 0x03, 0x02, 0x01, 0x00};

    fixture_init(&f, now);
    fill_jobs(&f, jobs, 40);
    jobs[17].csr_pem = NULL;
    jobs[17].spki_der = garbage;
    jobs[17].spki_len = sizeof(garbage);
    jobs[30].req.rsa = true;   /* an EC key where RSA is asked for */
    ck_assert_int_eq(sign_pool_new(f.ca, f.ca_key, 2, &pool, err), 0);
    ck_assert_int_eq(sign_pool_run(pool, jobs, 40, now, err), PKI_EINVAL);
    ck_assert_msg(strstr(err, "job 17 of 40") != NULL, "%s", err);
    for (size_t i = 0; i < 40; i++) {
        if (i == 17 || i == 30) {
            ck_assert_int_eq(jobs[i].result, PKI_EINVAL);
            ck_assert_ptr_null(jobs[i].leaf.pem);
        } else {
            ck_assert_int_eq(jobs[i].result, 0);
            ck_assert_ptr_nonnull(jobs[i].leaf.pem);
        }
        pki_signed_leaf_clear(&jobs[i].leaf);
    }
    /* an expired CA fails every job with ca-expired, not a crash or a hang */
    fill_jobs(&f, jobs, 40);
    ck_assert_int_eq(sign_pool_run(pool, jobs, 40, now + 86400 * 31, err), PKI_EEXPIRED);
    for (size_t i = 0; i < 40; i++)
        ck_assert_int_eq(jobs[i].result, PKI_EEXPIRED);
    sign_pool_free(pool);
    fixture_free(&f);
}
END_TEST

/* start returns before the batch is signed; wait gives sign_pool_run's result; a second start
 * before the wait, or a wait without a start, is refused; free finishes a batch still posted. */
START_TEST(start_then_wait_signs_the_batch_while_the_caller_goes_on)
{
    int64_t now = time(NULL);
    fixture f;
    sign_pool *pool = NULL;
    sign_pool_job jobs[NJOBS], more[8];
    char err[PKI_ERRBUF];

    fixture_init(&f, now);
    fill_jobs(&f, jobs, NJOBS);
    fill_jobs(&f, more, 8);
    ck_assert_int_eq(sign_pool_new(f.ca, f.ca_key, 2, &pool, err), 0);
    ck_assert_int_eq(sign_pool_wait(pool, err), PKI_EINVAL);
    ck_assert_int_eq(sign_pool_start(pool, jobs, NJOBS, now, err), 0);
    /* One batch at a time: the second is refused and the first goes on. */
    ck_assert_int_eq(sign_pool_start(pool, more, 8, now, err), PKI_EINVAL);
    ck_assert_int_eq(sign_pool_run(pool, more, 8, now, err), PKI_EINVAL);
    ck_assert_msg(sign_pool_wait(pool, err) == 0, "%s", err);
    for (size_t i = 0; i < NJOBS; i++) {
        ck_assert_int_eq(jobs[i].result, 0);
        ck_assert_ptr_nonnull(jobs[i].leaf.pem);
        pki_signed_leaf_clear(&jobs[i].leaf);
    }
    ck_assert_int_eq(sign_pool_wait(pool, err), PKI_EINVAL);
    /* Idle with nothing posted; once idle says a posted batch is done, every job is signed
     * before the wait (a pass reads its next identities until then). */
    ck_assert(sign_pool_idle(pool));
    ck_assert(sign_pool_idle(NULL));
    fill_jobs(&f, jobs, NJOBS);
    ck_assert_int_eq(sign_pool_start(pool, jobs, NJOBS, now, err), 0);
    for (long spins = 0; spins < 2000000000L && !sign_pool_idle(pool); spins++)
        sched_yield();
    ck_assert(sign_pool_idle(pool));
    for (size_t i = 0; i < NJOBS; i++)
        ck_assert_ptr_nonnull(jobs[i].leaf.pem);
    ck_assert_msg(sign_pool_wait(pool, err) == 0, "%s", err);
    ck_assert(sign_pool_idle(pool));
    for (size_t i = 0; i < NJOBS; i++)
        pki_signed_leaf_clear(&jobs[i].leaf);
    /* A failed job's code comes from the wait, as from sign_pool_run. */
    fill_jobs(&f, jobs, NJOBS);
    jobs[4].req.rsa = true;   /* an EC key where RSA is asked for */
    ck_assert_int_eq(sign_pool_start(pool, jobs, NJOBS, now, err), 0);
    ck_assert_int_eq(sign_pool_wait(pool, err), PKI_EINVAL);
    ck_assert_msg(strstr(err, "job 4 of") != NULL, "%s", err);
    for (size_t i = 0; i < NJOBS; i++)
        pki_signed_leaf_clear(&jobs[i].leaf);
    /* Freed with a batch posted: the batch is finished first (every job signed, no leak). */
    fill_jobs(&f, jobs, NJOBS);
    ck_assert_int_eq(sign_pool_start(pool, jobs, NJOBS, now, err), 0);
    sign_pool_free(pool);
    for (size_t i = 0; i < NJOBS; i++) {
        ck_assert_int_eq(jobs[i].result, 0);
        pki_signed_leaf_clear(&jobs[i].leaf);
    }
    fixture_free(&f);
}
END_TEST

/* Shutdown joins idle workers, workers that ran several batches, and an empty batch is a no-op. */
START_TEST(pool_shuts_down_cleanly_idle_after_batches_and_on_empty_batch)
{
    int64_t now = time(NULL);
    fixture f;
    sign_pool *pool = NULL;
    sign_pool_job jobs[NJOBS];
    char err[PKI_ERRBUF];

    fixture_init(&f, now);
    ck_assert_int_eq(sign_pool_new(f.ca, f.ca_key, 3, &pool, err), 0);
    sign_pool_free(pool);   /* never used */
    pool = NULL;
    ck_assert_int_eq(sign_pool_new(f.ca, f.ca_key, 3, &pool, err), 0);
    ck_assert_int_eq(sign_pool_run(pool, NULL, 0, now, err), 0);
    for (int round = 0; round < 5; round++) {
        size_t n = (size_t)(1 + round * 37);

        fill_jobs(&f, jobs, n);
        ck_assert_msg(sign_pool_run(pool, jobs, n, now, err) == 0, "%s", err);
        for (size_t i = 0; i < n; i++) {
            ck_assert_int_eq(jobs[i].result, 0);
            pki_signed_leaf_clear(&jobs[i].leaf);
        }
    }
    sign_pool_free(pool);
    sign_pool_free(NULL);
    /* 0 threads means the online CPUs */
    ck_assert_int_eq(sign_pool_new(f.ca, f.ca_key, 0, &pool, err), 0);
    ck_assert_uint_ge(sign_pool_threads(pool), 1);
    sign_pool_free(pool);
    ck_assert_int_eq(sign_pool_new(NULL, f.ca_key, 1, &pool, err), PKI_EINVAL);
    fixture_free(&f);
}
END_TEST

/* The nice value of each of this process's threads other than the caller: how many have want. */
static int threads_with_nice(int want)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        char path[300], line[1024];
        FILE *f;
        if (e->d_name[0] == '.' || atoi(e->d_name) == gettid())
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
        if (!(f = fopen(path, "r")))
            continue; /* the thread ended meanwhile */
        char *close_paren = fgets(line, sizeof(line), f) ? strrchr(line, ')') : NULL;
        fclose(f);
        ck_assert_ptr_nonnull(close_paren);
        /* After "(comm) ": state is field 3, nice field 19 (proc(5)). */
        char *tok = strtok(close_paren + 1, " ");
        for (int field = 3; tok && field < 19; field++)
            tok = strtok(NULL, " ");
        ck_assert_ptr_nonnull(tok);
        n += atoi(tok) == want;
    }
    closedir(d);
    return n;
}

/* Workers run SIGN_POOL_WORKER_NICE below the thread that made the pool (the pass's own, which
 * must not lose its core to them), and the caller keeps its own priority. */
START_TEST(workers_run_at_a_lower_priority_than_the_caller)
{
    int64_t now = time(NULL);
    fixture f;
    sign_pool *pool = NULL;
    sign_pool_job jobs[NJOBS];
    char err[PKI_ERRBUF];

    errno = 0;
    int base = getpriority(PRIO_PROCESS, (id_t)gettid());
    ck_assert_int_eq(errno, 0);
    int want = base + SIGN_POOL_WORKER_NICE > 19 ? 19 : base + SIGN_POOL_WORKER_NICE;
    fixture_init(&f, now);
    ck_assert_int_eq(sign_pool_new(f.ca, f.ca_key, 3, &pool, err), 0);
    /* A batch ends when every worker went through it: each has set its priority by then. */
    fill_jobs(&f, jobs, NJOBS);
    ck_assert_msg(sign_pool_run(pool, jobs, NJOBS, now, err) == 0, "%s", err);
    for (size_t i = 0; i < NJOBS; i++)
        pki_signed_leaf_clear(&jobs[i].leaf);
    ck_assert_int_eq(threads_with_nice(want), 3);
    ck_assert_int_eq(getpriority(PRIO_PROCESS, (id_t)gettid()), base);
    sign_pool_free(pool);
    fixture_free(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sign_pool");
    TCase *tc = tcase_create("sign_pool");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, pool_of_one_thread_signs_what_a_single_thread_signs);
    tcase_add_test(tc, pool_of_four_threads_signs_what_a_single_thread_signs);
    tcase_add_test(tc, failed_job_is_reported_with_its_index_and_the_rest_are_signed);
    tcase_add_test(tc, pool_shuts_down_cleanly_idle_after_batches_and_on_empty_batch);
    tcase_add_test(tc, start_then_wait_signs_the_batch_while_the_caller_goes_on);
    tcase_add_test(tc, workers_run_at_a_lower_priority_than_the_caller);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
