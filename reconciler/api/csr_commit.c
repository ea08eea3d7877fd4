/* csr_commit.c - group commit of CSR submissions: the keys agents POST, written by a thread of
 * its own in as few store transactions as they allow, each answered once it is durable. */
#include "reconciler/api/csr_commit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reconciler/state.h"

#define CONFLICT_ATTEMPTS 8 /* as reconcile_submit_key: a pass may write the identity meanwhile */
#define OPS_PER_SUBMISSION 2 /* the identity's put, the check of its Dataplane */

csr_submission *csr_submission_new(const char *mesh_name, const char *dp_name, char *key_pem,
                                   const char *csr_pem, void *cookie)
{
    csr_submission *sub = calloc(1, sizeof(*sub));
    if (!sub || !key_pem || strlen(mesh_name) >= sizeof(sub->mesh) ||
        strlen(dp_name) >= sizeof(sub->dataplane) || (csr_pem && !(sub->csr_pem = strdup(csr_pem)))) {
        free(key_pem);
        if (sub)
            free(sub->csr_pem);
        free(sub);
        return NULL;
    }
    memcpy(sub->mesh, mesh_name, strlen(mesh_name) + 1);
    memcpy(sub->dataplane, dp_name, strlen(dp_name) + 1);
    sub->key_pem = key_pem;
    sub->cookie = cookie;
    sub->cert_not_before = IDENTITY_NO_CERT;
    return sub;
}

void csr_submission_free(csr_submission *sub)
{
    if (!sub)
        return;
    free(sub->key_pem);
    free(sub->csr_pem);
    free(sub);
}

/* The ops that write sub's key pending (ops[0..1]: the identity's put at the version it must
 * still have, the check that its Dataplane was not deleted meanwhile), the put's text in
 * *ret_text (caller frees); else the code and message in sub. */
static int prepare(store *s, csr_submission *sub, char **ret_text, store_op *ops)
{
    uint64_t version = 0, dp_version = 0;
    int rc = identity_with_pending_key(s, sub->mesh, sub->dataplane, sub->cert_not_before,
                                       sub->key_pem, sub->csr_pem, ret_text, &version, &dp_version,
                                       sub->errbuf);
    if (rc < 0)
        return sub->rc = rc;
    identity_pending_key_ops(sub->mesh, sub->dataplane, *ret_text, version, dp_version, ops);
    return 0;
}

static void fail_store(csr_submission *sub, int rc)
{
    sub->rc = meshca_fail(sub->errbuf, rc, "cannot store the key of '%s/%s': %s", sub->mesh,
                          sub->dataplane, store_strerror(rc));
}

/* One submission alone, read again after each conflict. */
static size_t commit_one(store *s, csr_submission *sub)
{
    int rc = STORE_ECONFLICT;
    for (int attempt = 0; attempt < CONFLICT_ATTEMPTS && rc == STORE_ECONFLICT; attempt++) {
        char *text = NULL;
        store_op ops[OPS_PER_SUBMISSION];
        if (prepare(s, sub, &text, ops) < 0)
            return 0;
        rc = store_txn_at(s, "csr.commit", ops, OPS_PER_SUBMISSION);
        free(text);
    }
    if (rc < 0) {
        fail_store(sub, rc);
        return 0;
    }
    sub->rc = 0;
    return 1;
}

static bool same_dataplane(const csr_submission *a, const csr_submission *b)
{
    return strcmp(a->mesh, b->mesh) == 0 && strcmp(a->dataplane, b->dataplane) == 0;
}

size_t csr_commit_batch(store *s, csr_submission *const *items, size_t n)
{
    /* Submissions per transaction: each takes OPS_PER_SUBMISSION of the store's atomic limit. */
    size_t limit = store_txn_limit(s) / OPS_PER_SUBMISSION, txns = 0;
    if (limit < 1)
        limit = 1;
    store_op *ops = calloc(n ? n * OPS_PER_SUBMISSION : 1, sizeof(*ops));
    char **texts = calloc(n ? n : 1, sizeof(*texts));
    csr_submission **in = calloc(n ? n : 1, sizeof(*in));
    if (!ops || !texts || !in) {
        for (size_t i = 0; i < n; i++)
            items[i]->rc = meshca_fail(items[i]->errbuf, MESHCA_ENOMEM, "out of memory");
        free(ops), free(texts), free(in);
        return 0;
    }
    size_t i = 0;
    while (i < n) {
        /* One transaction: from i up to the first dataplane that comes again, or the limit. */
        size_t k = 0;
        for (; i < n && k < limit; i++) {
            bool again = false;
            for (size_t j = 0; j < k && !again; j++)
                again = same_dataplane(in[j], items[i]);
            if (again)
                break;
            if (prepare(s, items[i], &texts[k], ops + k * OPS_PER_SUBMISSION) < 0)
                continue;
            in[k] = items[i];
            k++;
        }
        int rc = k ? store_txn_at(s, "csr.commit", ops, k * OPS_PER_SUBMISSION) : 0;
        for (size_t j = 0; j < k; j++) {
            free(texts[j]);
            texts[j] = NULL;
        }
        if (rc == 0 && k) {
            txns++;
            for (size_t j = 0; j < k; j++)
                in[j]->rc = 0;
        } else if (rc == STORE_ECONFLICT) {
            /* Another writer changed one of them since it was read: each alone, read again. */
            for (size_t j = 0; j < k; j++)
                txns += commit_one(s, in[j]);
        } else if (rc < 0) {
            for (size_t j = 0; j < k; j++)
                fail_store(in[j], rc);
        }
    }
    free(ops), free(texts), free(in);
    return txns;
}

/* ---- the committer thread -------------------------------------------------------------------- */

struct csr_committer {
    store *s;
    csr_committed_fn fn;
    void *ctx;
    struct event *wake_ev;
    int wake[2];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    csr_submission *queue, **queue_tail;  /* to commit */
    csr_submission *done, **done_tail;    /* committed (or failed): to answer on the loop */
    bool stop;
    size_t batches;
};

static void append(csr_submission ***tail, csr_submission *list)
{
    **tail = list;
    while (list) {
        *tail = &list->next;
        list = list->next;
    }
}

static void *committer_main(void *arg)
{
    csr_committer *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->queue && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        if (!c->queue)
            break; /* stopping, and everything queued was committed */
        /* Everything that arrived while the last batch committed goes in this one. */
        csr_submission *batch = c->queue;
        c->queue = NULL;
        c->queue_tail = &c->queue;
        pthread_mutex_unlock(&c->mu);
        size_t n = 0;
        for (csr_submission *p = batch; p; p = p->next)
            n++;
        csr_submission **items = calloc(n, sizeof(*items));
        size_t txns = 0;
        if (items) {
            size_t k = 0;
            for (csr_submission *p = batch; p; p = p->next)
                items[k++] = p;
            txns = csr_commit_batch(c->s, items, n);
            free(items);
        } else {
            for (csr_submission *p = batch; p; p = p->next)
                p->rc = meshca_fail(p->errbuf, MESHCA_ENOMEM, "out of memory");
        }
        pthread_mutex_lock(&c->mu);
        c->batches += txns;
        append(&c->done_tail, batch);
        /* A full pipe already holds a wake-up: the loop reads the done list, not the bytes. */
        (void)!write(c->wake[1], "", 1);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Answers what the thread committed (loop thread). */
static void deliver(csr_committer *c)
{
    pthread_mutex_lock(&c->mu);
    csr_submission *list = c->done;
    c->done = NULL;
    c->done_tail = &c->done;
    pthread_mutex_unlock(&c->mu);
    while (list) {
        csr_submission *next = list->next;
        list->next = NULL;
        c->fn(c->ctx, list);
        csr_submission_free(list);
        list = next;
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    char buf[64];
    (void)what;
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    deliver(arg);
}

int csr_committer_new(struct event_base *base, store *s, csr_committed_fn fn, void *ctx,
                      csr_committer **ret, char *errbuf)
{
    csr_committer *c = calloc(1, sizeof(*c));
    if (!c)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    c->s = s;
    c->fn = fn;
    c->ctx = ctx;
    c->queue_tail = &c->queue;
    c->done_tail = &c->done;
    c->wake[0] = c->wake[1] = -1;
    if (pipe(c->wake) < 0 || fcntl(c->wake[0], F_SETFL, O_NONBLOCK) < 0 ||
        fcntl(c->wake[1], F_SETFL, O_NONBLOCK) < 0 || fcntl(c->wake[0], F_SETFD, FD_CLOEXEC) < 0 ||
        fcntl(c->wake[1], F_SETFD, FD_CLOEXEC) < 0) {
        int e = errno;
        for (int i = 0; i < 2; i++)
            if (c->wake[i] >= 0)
                close(c->wake[i]);
        free(c);
        return meshca_fail(errbuf, MESHCA_EIO, "cannot create the CSR committer's pipe: %s",
                           strerror(e));
    }
    c->wake_ev = event_new(base, c->wake[0], EV_READ | EV_PERSIST, on_wake, c);
    if (!c->wake_ev || event_add(c->wake_ev, NULL) < 0) {
        if (c->wake_ev)
            event_free(c->wake_ev);
        close(c->wake[0]), close(c->wake[1]);
        free(c);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "cannot create the CSR committer's event");
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&c->thread, NULL, committer_main, c) != 0) {
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        event_free(c->wake_ev);
        close(c->wake[0]), close(c->wake[1]);
        free(c);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "cannot start the CSR committer's thread");
    }
    *ret = c;
    return 0;
}

void csr_committer_submit(csr_committer *c, csr_submission *sub)
{
    sub->next = NULL;
    pthread_mutex_lock(&c->mu);
    *c->queue_tail = sub;
    c->queue_tail = &sub->next;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

size_t csr_committer_batches(const csr_committer *c)
{
    pthread_mutex_lock((pthread_mutex_t *)&c->mu);
    size_t n = c->batches;
    pthread_mutex_unlock((pthread_mutex_t *)&c->mu);
    return n;
}

void csr_committer_free(csr_committer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    deliver(c);
    event_free(c->wake_ev);
    close(c->wake[0]), close(c->wake[1]);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}
