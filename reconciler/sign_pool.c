/* sign_pool.c - signing workers: a batch of leaves split over N threads, each with its own signer. */
#define _GNU_SOURCE /* gettid */
#include "reconciler/sign_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/err.h>

/* Jobs a worker takes at once: large enough that the shared counter is not contended, small
 * enough that the last chunks balance over the workers. */
#define CHUNK 16

typedef struct worker {
    struct sign_pool *pool;
    pki_leaf_signer *signer;   /* this worker's only: never touched by another thread */
    pthread_t thread;
    bool started;
} worker;

struct sign_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;     /* a batch was posted, or stop */
    pthread_cond_t done;     /* a worker finished its part of the batch */
    unsigned nthreads;
    worker *workers;
    /* the batch: set under lock by sign_pool_run */
    sign_pool_job *jobs;
    size_t njobs;
    int64_t now;
    size_t next;             /* next job to take, under lock */
    unsigned batch;          /* batch number, so a worker does not run one batch twice */
    unsigned busy;           /* workers still in the current batch */
    bool stop;
    /* the caller's side of sign_pool_start / sign_pool_wait (only the caller's thread) */
    bool posted;
    sign_pool_job *posted_jobs;
    size_t posted_n;
};

static void sign_one(pki_leaf_signer *signer, sign_pool_job *job, int64_t now)
{
    memset(&job->leaf, 0, sizeof(job->leaf));
    if (job->now)
        now = job->now;
    if (job->csr_pem && !job->spki_der)
        job->result = pki_sign_csr(signer, job->csr_pem, job->csr_len, &job->req, now, &job->leaf,
                                   NULL, NULL, NULL);
    else if (job->spki_der && !job->csr_pem)
        job->result = pki_sign_public_key(signer, job->spki_der, job->spki_len, &job->req, now,
                                          &job->leaf, NULL);
    else
        job->result = PKI_EINVAL;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    struct sign_pool *p = w->pool;
    unsigned seen = 0;

    /* On Linux a nice value is the thread's own; failing leaves the worker as it was. */
    errno = 0;
    int nice_now = getpriority(PRIO_PROCESS, (id_t)gettid());
    if (errno == 0)
        (void)setpriority(PRIO_PROCESS, (id_t)gettid(), nice_now + SIGN_POOL_WORKER_NICE);
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stop && p->batch == seen)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->stop)
            break;
        seen = p->batch;
        while (p->next < p->njobs) {
            size_t from = p->next, to = from + CHUNK < p->njobs ? from + CHUNK : p->njobs;

            p->next = to;
            pthread_mutex_unlock(&p->lock);
            for (size_t i = from; i < to; i++)
                sign_one(w->signer, &p->jobs[i], p->now);
            pthread_mutex_lock(&p->lock);
        }
        if (--p->busy == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    /* OpenSSL keeps per-thread state (error queue, DRBGs): released here, not at process exit. */
    OPENSSL_thread_stop();
    return NULL;
}

void sign_pool_free(sign_pool *pool)
{
    if (!pool)
        return;
    /* A batch still being signed is finished first: its jobs are the caller's memory. */
    if (pool->posted)
        (void)sign_pool_wait(pool, NULL);
    pthread_mutex_lock(&pool->lock);
    pool->stop = true;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->nthreads; i++) {
        if (pool->workers[i].started)
            pthread_join(pool->workers[i].thread, NULL);
        pki_leaf_signer_free(pool->workers[i].signer);
    }
    free(pool->workers);
    pthread_cond_destroy(&pool->work);
    pthread_cond_destroy(&pool->done);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

int sign_pool_new(X509 *ca_cert, EVP_PKEY *ca_key, unsigned nthreads, sign_pool **ret,
                  char *errbuf)
{
    struct sign_pool *p;
    int r;

    if (!ca_cert || !ca_key || !ret)
        return meshca_fail(errbuf, PKI_EINVAL, "sign pool: invalid parameters");
    if (nthreads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);

        nthreads = cpus > 0 ? (unsigned)cpus : 1;
    }
    if (nthreads > SIGN_POOL_MAX_THREADS)
        nthreads = SIGN_POOL_MAX_THREADS;
    p = calloc(1, sizeof(*p));
    if (!p)
        return meshca_fail(errbuf, PKI_ENOMEM, "sign pool: out of memory");
    p->workers = calloc(nthreads, sizeof(*p->workers));
    if (!p->workers) {
        free(p);
        return meshca_fail(errbuf, PKI_ENOMEM, "sign pool: out of memory");
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    p->nthreads = nthreads;
    for (unsigned i = 0; i < nthreads; i++) {
        /* Signers are built here, before any thread starts, so a bad CA fails the call. */
        r = pki_leaf_signer_new(ca_cert, ca_key, &p->workers[i].signer, errbuf);
        if (r < 0) {
            sign_pool_free(p);
            return r;
        }
        p->workers[i].pool = p;
    }
    for (unsigned i = 0; i < nthreads; i++) {
        if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0) {
            sign_pool_free(p);
            return meshca_fail(errbuf, PKI_ENOMEM, "sign pool: cannot start a thread");
        }
        p->workers[i].started = true;
    }
    *ret = p;
    return 0;
}

int sign_pool_start(sign_pool *pool, sign_pool_job *jobs, size_t n, int64_t now, char *errbuf)
{
    if (!pool || (n && !jobs) || pool->posted)
        return meshca_fail(errbuf, PKI_EINVAL, "sign pool: invalid batch");
    pool->posted = true;
    pool->posted_jobs = jobs;
    pool->posted_n = n;
    if (n == 0)
        return 0;
    pthread_mutex_lock(&pool->lock);
    pool->jobs = jobs;
    pool->njobs = n;
    pool->now = now;
    pool->next = 0;
    pool->busy = pool->nthreads;
    pool->batch++;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

int sign_pool_wait(sign_pool *pool, char *errbuf)
{
    if (!pool || !pool->posted)
        return meshca_fail(errbuf, PKI_EINVAL, "sign pool: no batch to wait for");
    sign_pool_job *jobs = pool->posted_jobs;
    size_t n = pool->posted_n;
    pool->posted = false;
    pool->posted_jobs = NULL;
    pool->posted_n = 0;
    if (n == 0)
        return 0;
    pthread_mutex_lock(&pool->lock);
    while (pool->busy > 0)
        pthread_cond_wait(&pool->done, &pool->lock);
    pool->jobs = NULL;
    pool->njobs = 0;
    pthread_mutex_unlock(&pool->lock);
    for (size_t i = 0; i < n; i++)
        if (jobs[i].result < 0)
            return meshca_fail(errbuf, jobs[i].result, "sign pool: job %zu of %zu failed (%s)", i,
                               n, meshca_strerror(jobs[i].result));
    return 0;
}

bool sign_pool_idle(sign_pool *pool)
{
    if (!pool || !pool->posted || pool->posted_n == 0)
        return true;
    pthread_mutex_lock(&pool->lock);
    bool idle = pool->busy == 0;
    pthread_mutex_unlock(&pool->lock);
    return idle;
}

int sign_pool_run(sign_pool *pool, sign_pool_job *jobs, size_t n, int64_t now, char *errbuf)
{
    int r = sign_pool_start(pool, jobs, n, now, errbuf);
    return r < 0 ? r : sign_pool_wait(pool, errbuf);
}

unsigned sign_pool_threads(const sign_pool *pool)
{
    return pool ? pool->nthreads : 0;
}
