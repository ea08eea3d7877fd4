/* controller.c - `meshca run`: one event loop carrying the dataplane API, the manifests watch,
 * timers and store changes, with reconcile passes triggered by them (on a thread of their own). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "manifests/manifest.h"
#include "reconciler/ack.h"
#include "reconciler/api/cpca.h"
#include "reconciler/api/cpca_watch.h"
#include "reconciler/api/csr_commit.h"
#include "reconciler/api/metrics_http.h"
#include "reconciler/api/readiness.h"
#include "reconciler/api/server.h"
#include "reconciler/api/server_tls.h"
#include "reconciler/controller.h"
#include "reconciler/leader.h"
#include "reconciler/manifest_sync.h"
#include "reconciler/mesh_ca.h"
#include "reconciler/metrics_collect.h"
#include "reconciler/pass_targets.h"
#include "reconciler/pki.h"
#include "reconciler/ca/ca_cache.h"
#include "reconciler/reconcile.h"
#include "reconciler/roots.h"
#include "reconciler/state.h"
#include "reconciler/store/identity_peek.h"

/* One pass: what it was asked (filled on the loop), what it did (filled by whoever ran it). */
typedef struct pass_job {
    bool full;                      /* every dataplane; else the targets only */
    bool first;                     /* the first pass of this leadership: always told */
    pass_targets targets;
    bool skipped;                   /* not leading when it came to fence: nothing ran */
    int rc;
    reconcile_report rep;
    diag_list diags;
    double seconds;
    uint64_t start, end;            /* store revisions before and after it */
    char errmsg[MESHCA_ERRBUF];     /* the pass handle's last store message */
} pass_job;

typedef struct controller {
    store *s;
    store *ps;                      /* the passes' handle: o->pass_store (thread) or s (loop) */
    const controller_options *o;
    struct event_base *base;
    api_server *srv;
    struct event *pass_ev, *poll_ev, *interval_ev, *watch_ev, *sigterm_ev, *sigint_ev;
    struct event *elect_ev;         /* leader election step: see arm_elect */
    server_tls *tls;                /* the API's certificate, renewed in place */
    struct event *sighup_ev;        /* SIGHUP: reload it */
    struct event *ca_ev;            /* the control-plane CA switched (cp-ca rotate --switch)? */
    char ca_failing[MESHCA_ERRBUF]; /* that check's failure last said; "" while it works */
    cpca_watch cpca;                /* the control-plane CA as of that check (/metrics) */
    int64_t lease_s;                /* the lease asked for (leader_lease_for_takeover) */
    struct event *watch_fd_evs[CONTROLLER_WATCH_FDS]; /* the store's watch descriptors (etcd) */
    size_t nwatch_fd_evs;
    leader_elector *le;
    char elect_failing[MESHCA_ERRBUF]; /* the election failure last said; "" while it works */
    int watch_fd;
    uint64_t pass_start;            /* store revision when our last pass started */
    uint64_t pass_end;              /* store revision after our last pass */
    uint64_t watched;               /* store_watch position */
    bool first;
    bool in_backoff;
    int64_t backoff_ms;
    char failing[MESHCA_ERRBUF];    /* the store failure last said; "" while it works */
    char *last_said;                /* manifest_sync's last line */
    metrics *metrics;               /* counters of passes and API requests (/metrics) */
    metrics_http *metrics_http;     /* --metrics listener, or NULL */
    ca_cache *cas;                  /* opened CAs across passes; NULL: one pass each (no memory) */
    /* What the next pass does: every dataplane (want_full), or only those the API and other
     * replicas' CSRs wrote since the last pass (targets). */
    bool want_full;
    pass_targets targets;
    unsigned long passes_full, passes_targeted, visited;  /* for /metrics */
    /* The pass thread (o->pass_store given): the loop hands it one job at a time and hears of
     * its end through wake[] (the thread never touches libevent). */
    bool threaded, running, poll_deferred;
    pass_job job;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool job_ready, job_done, stop;  /* under mu */
    int wake[2];
    struct event *done_ev;
    csr_committer *committer;       /* CSR group commit (o->submit_store), or NULL */
    /* The dataplanes whose POSTed keys the committer holds (a pair per submission): their
     * writes become targets when on_committed hears of them, not when the store watch sees
     * them first (which would start a pass for them twice). */
    pass_targets committing;
} controller;

static void say(controller *c, bool error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reload_tls(controller *c, const char *why);
static void say(controller *c, bool error, const char *fmt, ...)
{
    char line[MESHCA_ERRBUF + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (c->o->out.line)
        c->o->out.line(c->o->out.ctx, error, line);
}

static void sync_say(void *ctx, const char *line)
{
    say(ctx, false, "%s", line);
}

/* --- passes ------------------------------------------------------------------------------- */

static void arm_pass(controller *c, int64_t delay_ms)
{
    struct timeval tv = {(time_t)(delay_ms / 1000), (suseconds_t)(delay_ms % 1000) * 1000};
    struct timeval when;
    /* A pass already due sooner stays as it is. */
    if (event_pending(c->pass_ev, EV_TIMEOUT, &when)) {
        struct timeval now, due;
        event_base_gettimeofday_cached(c->base, &now);
        evutil_timeradd(&now, &tv, &due);
        if (evutil_timercmp(&when, &due, <=))
            return;
    }
    event_add(c->pass_ev, &tv);
}

/* A full pass: start, leadership, store changes by other writers, the interval, backoff. */
static void schedule_pass(controller *c, int64_t delay_ms)
{
    c->want_full = true;
    arm_pass(c, delay_ms);
}

/* A pass visiting this dataplane (what the API or another replica's CSR wrote), now. Too many
 * waiting, or no memory to remember them: a full pass does it. */
static void schedule_target(controller *c, const char *mesh_name, const char *dp_name)
{
    if (!c->want_full &&
        (c->targets.n >= PASS_TARGETS_MAX || pass_targets_add(&c->targets, mesh_name, dp_name) < 0)) {
        pass_targets_clear(&c->targets);
        c->want_full = true;
    }
    arm_pass(c, 0);
}

static void elect_step(controller *c);

/* The pass itself, on the pass thread (or the loop): touches only c->ps, c->cas, c->le's
 * fence and what manifest_sync keeps, all the pass's own. */
static void pass_work(controller *c, pass_job *job)
{
    /* Only the leader writes; its writes are fenced on its leadership (a deposed leader's
     * commit fails in the store), and refused by its own clock once it could not renew. */
    if (leader_fence_store(c->le, c->ps, leader_now_ms()) < 0) {
        job->skipped = true;
        return;
    }
    if (store_revision(c->ps, &job->start) < 0)
        job->start = 0;
    if (c->o->manifests_dir)
        manifest_sync(c->ps, c->o->manifests_dir, !c->o->no_prune, &c->last_said, sync_say, c);
    reconcile_options ropts = RECONCILE_OPTIONS_INIT;
    ropts.sign_workers = c->o->sign_workers;
    ropts.ca_cache = c->cas;
    ropts.targets = job->full ? NULL : &job->targets;
    job->rep = (reconcile_report)RECONCILE_REPORT_INIT;
    job->diags = (diag_list)DIAG_LIST_INIT;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    job->rc = reconcile_once(c->ps, &ropts, &job->rep, &job->diags);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    job->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    (void)store_fence(c->ps, NULL, 0, NULL);
    if (store_revision(c->ps, &job->end) < 0)
        job->end = UINT64_MAX;
    snprintf(job->errmsg, sizeof(job->errmsg), "%s", store_errmsg(c->ps));
}

static void poll_store(controller *c);
static void arm_poll(controller *c);

/* What a pass did, told on the loop: output, metrics, parked agents, backoff, the next pass. */
static void pass_finish(controller *c, pass_job *job)
{
    c->running = false;
    if (job->skipped)
        c->in_backoff = false;   /* not leading when it started: as in run_pass */
    if (!job->skipped) {
        int rc = job->rc;
        reconcile_report *rep = &job->rep;
        /* A targeted pass read only its dataplanes: changes made before it started (an apply)
         * still call for a full pass, so only a full one moves pass_start. */
        if (rc == 0 && !rep->targeted)
            c->pass_start = job->start;
        c->pass_end = job->end;
        metrics_observe_pass(c->metrics, job->seconds, (int64_t)time(NULL),
                             rc == 0 && !rep->store_failures);
        metrics_count_pass(c->metrics, rc, rep, &job->diags);
        if (rc == 0) {
            *(rep->targeted ? &c->passes_targeted : &c->passes_full) += 1;
            c->visited += rep->issued + rep->reissued + rep->renewed + rep->rebundled +
                          rep->unchanged + rep->awaiting;
            for (size_t i = 0; i < rep->nmeshes; i++)
                c->visited += rep->meshes[i].skipped;
        }
        /* One store failure fails every pass the same way: said once per cause, then back off. */
        const char *cause = rc < 0 ? store_strerror(rc) : rep->store_failures ? rep->store_cause : "";
        bool repeated = cause[0] && strcmp(cause, c->failing) == 0;
        if (rc < 0) {
            /* The store's own message names the store and the cause ("removed or replaced while
             * in use", "readonly database"); repeats are still judged by the code, as messages
             * name the object that failed. */
            if (!repeated)
                say(c, true, "reconcile: cannot read the store: %s; retrying with backoff",
                    job->errmsg[0] ? job->errmsg : cause);
        } else if (!repeated && (job->first || rep->nactions || job->diags.count)) {
            if (c->o->out.pass)
                c->o->out.pass(c->o->out.ctx, rep, &job->diags);
            if (cause[0])
                say(c, true, "reconcile: the store failed (%s); retrying with backoff", cause);
        }
        if (!cause[0] && c->failing[0])
            say(c, true, "the store works again");
        snprintf(c->failing, sizeof(c->failing), "%s", cause);
        c->backoff_ms = !cause[0] ? 0
                        : !c->backoff_ms ? CONTROLLER_BACKOFF_FIRST_MS
                        : c->backoff_ms * 2 > CONTROLLER_BACKOFF_MAX_MS ? CONTROLLER_BACKOFF_MAX_MS
                                                                        : c->backoff_ms * 2;
        if (job->first)
            c->first = false;
        /* Agents parked on a changed identity get it now. */
        for (size_t i = 0; rc == 0 && i < rep->nactions; i++)
            api_server_notify(c->srv, rep->actions[i].mesh, rep->actions[i].dataplane);
        reconcile_report_free(rep);
        diag_list_free(&job->diags);
        if (c->backoff_ms) {
            /* The revision cannot be trusted to move (or to be read) while the store fails. */
            c->in_backoff = true;
            schedule_pass(c, c->backoff_ms);
        } else {
            c->in_backoff = false;
        }
    }
    pass_targets_clear(&job->targets);
    /* Store changes seen while the pass ran are judged now that its own writes are known. */
    if (c->poll_deferred) {
        c->poll_deferred = false;
        poll_store(c);
        arm_poll(c);
    }
    /* What arrived meanwhile, coalesced into one pass. */
    if (c->targets.n || (c->want_full && !c->in_backoff))
        arm_pass(c, 0);
}

static void run_pass(controller *c)
{
    if (c->running)
        return; /* one pass at a time: pass_finish starts the next */
    /* Without the renewer thread, renewed right before: the pass gets the whole lease to
     * commit in. With it, the lease is kept alive whatever the pass takes. */
    if (!c->o->lease_store && leader_leading(c->le, leader_now_ms()))
        elect_step(c);
    if (!leader_leading(c->le, leader_now_ms())) {
        /* A follower never passes: what the API wrote here is in the store for the leader. Its
         * backoff ends too: a leader that lost its lease while the store failed, and holds it
         * again without a change of leader (the lease renewed in time), would otherwise wait
         * for a backoff timer that already fired, as the interval skips passes in backoff. */
        pass_targets_clear(&c->targets);
        c->want_full = false;
        c->in_backoff = false;
        return;
    }
    pass_job *job = &c->job;
    memset(job, 0, sizeof(*job));
    job->full = c->want_full;
    job->first = c->first;
    if (!job->full && !c->targets.n)
        return;
    if (job->full)
        pass_targets_clear(&c->targets);
    else
        pass_targets_take(&job->targets, &c->targets);
    c->want_full = false;
    c->running = true;
    if (!c->threaded) {
        pass_work(c, job);
        pass_finish(c, job);
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->job_ready = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* The pass thread: one job at a time, its end said through the wake pipe. */
static void *pass_thread(void *arg)
{
    controller *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->job_ready && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->stop)
            break;
        c->job_ready = false;
        pthread_mutex_unlock(&c->mu);
        pass_work(c, &c->job);
        pthread_mutex_lock(&c->mu);
        c->job_done = true;
        /* A full pipe already holds a wake-up: the loop reads job_done, not the bytes. */
        (void)!write(c->wake[1], "", 1);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void on_pass_done(evutil_socket_t fd, short what, void *arg)
{
    controller *c = arg;
    char buf[64];
    (void)what;
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    pthread_mutex_lock(&c->mu);
    bool done = c->job_done;
    c->job_done = false;
    pthread_mutex_unlock(&c->mu);
    if (done)
        pass_finish(c, &c->job);
}

static void on_pass(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    run_pass(arg);
}

/* The kinds a full pass reads as its input (identities and acknowledgements are targets). */
static bool pass_input_kind(const char *kind)
{
    return strcmp(kind, STATE_MESHES) == 0 || strcmp(kind, STATE_DATAPLANES) == 0 ||
           strcmp(kind, STATE_SECRETS) == 0 || strcmp(kind, STATE_MESHSTATUS) == 0;
}

/* True while the committer holds a key POSTed for this dataplane. */
static bool committing_has(const controller *c, const char *mesh_name, const char *dp_name)
{
    for (size_t i = 0; i < c->committing.n; i++)
        if (strcmp(c->committing.items[i].dataplane, dp_name) == 0 &&
            strcmp(c->committing.items[i].mesh, mesh_name) == 0)
            return true;
    return false;
}

/* Store changes. Every identity written, by us or another writer (`reconcile --once`, another
 * controller), answers the agents parked on it; a change to what passes read from starts a
 * pass. Called when the store's watch descriptors are ready (etcd) or from a short timer
 * (SQLite has no change descriptor); arm_poll decides which after each call. */
static void poll_store(controller *c)
{
    store_event *ev = NULL;
    size_t n = 0;
    int rc = store_watch(c->s, c->watched, 0, &ev, &n);
    if (rc == STORE_ECOMPACTED) {
        store_revision(c->s, &c->watched);
        if (!c->in_backoff)
            schedule_pass(c, 0);
        return;
    }
    if (rc < 0)
        return;
    bool changed = false, elect = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ev[i].kind, LEADER_KIND) == 0 && strcmp(ev[i].mesh, LEADER_MESH) == 0 &&
            strcmp(ev[i].name, LEADER_NAME) == 0) {
            /* The leader key changed: a follower takes it now if it went. */
            elect = ev[i].op == STORE_EVENT_DELETE;
        } else if (strcmp(ev[i].kind, STATE_IDENTITIES) == 0) {
            api_server_notify(c->srv, ev[i].mesh, ev[i].name);
            /* Past our last pass: a key an agent sent to another replica, to sign now (that
             * dataplane only; the API's own writes are already targets, added once, or will be
             * when their commit is answered). */
            if (ev[i].version > c->pass_end && !c->in_backoff &&
                !committing_has(c, ev[i].mesh, ev[i].name))
                schedule_target(c, ev[i].mesh, ev[i].name);
        } else if (strcmp(ev[i].kind, STATE_DPSTATUS) == 0) {
            /* An acknowledgement concerns its dataplane (a forced switch's end: the targeted
             * pass then runs a full one). */
            if (ev[i].version > c->pass_start && !c->in_backoff)
                schedule_target(c, ev[i].mesh, ev[i].name);
        }
        /* Only what a full pass reads as its input calls for one: not its own outputs
         * (bundles), nor what passes never read (tokens, the control-plane CA: a full pass over
         * a large mesh for each `token issue` would cost a second of CPU per 100,000
         * dataplanes). */
        else if (pass_input_kind(ev[i].kind) && ev[i].version > c->pass_start)
            changed = true;
        if (ev[i].version > c->watched)
            c->watched = ev[i].version;
    }
    store_events_free(ev, n);
    if (elect && !leader_leading(c->le, leader_now_ms()))
        event_active(c->elect_ev, EV_TIMEOUT, 0);
    if (changed && !c->in_backoff)
        schedule_pass(c, 0);
}

static void on_poll(evutil_socket_t fd, short what, void *arg);

/*
 * Waits for the next store change: on the watch stream's descriptors when the store has them
 * (etcd: woken by the change itself, resuming from the last revision given), with the store's
 * own timeout capped at CONTROLLER_WATCH_SAFETY_MS; else (SQLite) in CONTROLLER_POLL_MS.
 */
static void arm_poll(controller *c)
{
    struct pollfd fds[CONTROLLER_WATCH_FDS];
    size_t n = 0;
    long wait_ms = -1;
    for (size_t i = 0; i < c->nwatch_fd_evs; i++)
        event_free(c->watch_fd_evs[i]);
    c->nwatch_fd_evs = 0;
    int rc = store_watch_pollfds(c->s, fds, CONTROLLER_WATCH_FDS, &n, &wait_ms);
    if (rc < 0) {
        n = 0;
        wait_ms = CONTROLLER_POLL_MS;
    }
    for (size_t i = 0; i < n; i++) {
        short what = (fds[i].events & POLLIN ? EV_READ : 0) | (fds[i].events & POLLOUT ? EV_WRITE : 0);
        struct event *fev = event_new(c->base, fds[i].fd, what, on_poll, c);
        if (!fev || event_add(fev, NULL) < 0) {
            if (fev)
                event_free(fev);
            wait_ms = CONTROLLER_POLL_MS; /* cannot wait on it: poll instead */
            continue;
        }
        c->watch_fd_evs[c->nwatch_fd_evs++] = fev;
    }
    if (wait_ms < 0 || wait_ms > CONTROLLER_WATCH_SAFETY_MS)
        wait_ms = CONTROLLER_WATCH_SAFETY_MS;
    struct timeval tv = {(time_t)(wait_ms / 1000), (suseconds_t)(wait_ms % 1000) * 1000};
    event_add(c->poll_ev, &tv);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    controller *c = arg;
    (void)fd, (void)what;
    if (c->running) {
        /* Which changes are the running pass's own is known when it ends: pass_finish polls
         * then. No descriptor stays armed meanwhile (it would fire again and again). */
        for (size_t i = 0; i < c->nwatch_fd_evs; i++)
            event_free(c->watch_fd_evs[i]);
        c->nwatch_fd_evs = 0;
        c->poll_deferred = true;
        return;
    }
    poll_store(c);
    arm_poll(c);
}

/* The next election step: a leader every lease / 3 (two renewals may fail before its
 * deadline); a follower more often (LEADER_FOLLOW_STEP_MS), so that it takes a dead leader's
 * place within the takeover bound. */
static int64_t elect_interval_ms(const controller *c)
{
    int64_t third = c->lease_s * 1000 / 3;
    if (leader_leading(c->le, leader_now_ms()))
        return third;
    return third < LEADER_FOLLOW_STEP_MS ? third : LEADER_FOLLOW_STEP_MS;
}

static void arm_elect(controller *c)
{
    int64_t ms = elect_interval_ms(c);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_add(c->elect_ev, &tv);
}

/* One election step: said once per change of role or leader, and once per failure cause. */
static void elect_step(controller *c)
{
    char err[MESHCA_ERRBUF] = "";
    bool changed = false;
    int rc = leader_step(c->le, leader_now_ms(), &changed, err);
    arm_elect(c);
    if (rc < 0 && strcmp(err, c->elect_failing) != 0)
        say(c, true, "%s; retrying every %lldms", err, (long long)elect_interval_ms(c));
    else if (rc == 0 && c->elect_failing[0])
        say(c, true, "the leader election works again");
    snprintf(c->elect_failing, sizeof(c->elect_failing), "%s", rc < 0 ? err : "");
    if (!changed)
        return;
    if (leader_leading(c->le, leader_now_ms())) {
        say(c, false, "leading");
        c->first = true;
        schedule_pass(c, 0);
    } else if (leader_holder(c->le)[0]) {
        say(c, false, "following %s%s%s", leader_holder(c->le),
            leader_holder_api(c->le)[0] ? " at " : "", leader_holder_api(c->le));
    } else {
        say(c, false, "not leading (no leader seen)");
    }
}

static void on_elect(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    elect_step(arg);
}

static void on_interval(evutil_socket_t fd, short what, void *arg)
{
    controller *c = arg;
    (void)fd, (void)what;
    if (server_tls_due(c->tls, (int64_t)time(NULL)))
        reload_tls(c, "renewal");
    if (!c->in_backoff)
        schedule_pass(c, 0);
}

static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    controller *c = arg;
    (void)fd, (void)what;
    if (manifest_watch_changed(c->watch_fd))
        schedule_pass(c, 0);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    controller *c = arg;
    (void)fd, (void)what;
    event_base_loopbreak(c->base);
}

/* --- API handlers (loop thread; each is a few store reads or one write) -------------------- */

/* The Mesh resource of the store; *ret_set to free with manifest_set_free. */
static int load_mesh(controller *c, const char *mesh_name, manifest_set **ret_set,
                     const mesh **ret, char *errbuf)
{
    manifest_set *set = manifest_set_new();
    diag_list diags = DIAG_LIST_INIT;
    if (!set)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    /* The Mesh alone: every CSR asks for its key type, which must not cost the mesh's
     * Dataplanes (a store read and a decode each). */
    int rc = pass_targets_load_object(c->s, STATE_MESHES, mesh_name, mesh_name, set, &diags);
    diag_list_free(&diags);
    const mesh *m = rc == 0 ? manifest_set_find_mesh(set, mesh_name) : NULL;
    if (!m) {
        manifest_set_free(set);
        return rc < 0 ? meshca_fail(errbuf, MESHCA_EUNAVAILABLE, "cannot read the store: %s",
                                    store_strerror(rc))
                      : meshca_fail(errbuf, MESHCA_ENOTFOUND, "no mesh '%s'", mesh_name);
    }
    *ret_set = set;
    *ret = m;
    return 0;
}

static const mesh_backend *enabled_backend(const mesh *m)
{
    const char *enabled = mesh_enabled_backend(m);
    for (size_t i = 0; enabled && i < m->nbackends; i++)
        if (m->backends[i].name.value && strcmp(m->backends[i].name.value, enabled) == 0)
            return &m->backends[i];
    return NULL;
}

static int h_key_type(void *ctx, const char *mesh_name, const char *dp_name, csr_key_type *ret,
                      char *errbuf)
{
    manifest_set *set = NULL;
    const mesh *m = NULL;
    (void)dp_name;
    int rc = load_mesh(ctx, mesh_name, &set, &m, errbuf);
    if (rc < 0)
        return rc;
    const mesh_backend *b = enabled_backend(m);
    if (!b)
        rc = meshca_fail(errbuf, MESHCA_ECONFLICT, "mesh '%s' has mTLS off", mesh_name);
    else
        *ret = mesh_backend_leaf_is_rsa(b) ? CSR_KEY_RSA_2048 : CSR_KEY_EC_P256;
    manifest_set_free(set);
    return rc;
}

static int store_code(int rc)
{
    return rc == STORE_EIO || rc == STORE_EUNAVAILABLE ? MESHCA_EUNAVAILABLE : rc;
}

static int h_submit_csr(void *ctx, const api_principal *who, const char *mesh_name,
                        const char *dp_name, const unsigned char *spki, size_t spki_len,
                        const char *csr_pem, char *errbuf)
{
    controller *c = ctx;
    /* Without the committer (tests): the certificate's check costs a read of its own. */
    int rc = who->method == API_AUTH_CERT
                 ? identity_cert_current(c->s, mesh_name, dp_name, who->cert_not_before, errbuf)
                 : 0;
    if (rc == 0)
        rc = reconcile_submit_key(c->s, mesh_name, dp_name, spki, spki_len, csr_pem, errbuf);
    if (rc < 0)
        return store_code(rc);
    /* Signed on the next pass, which is now, and visits this dataplane only. */
    schedule_target(c, mesh_name, dp_name);
    return 0;
}

/* With the committer: the key goes in the next group commit, answered by on_committed. */
static int h_submit_csr_later(void *ctx, const api_principal *who, const char *mesh_name,
                              const char *dp_name, const unsigned char *spki, size_t spki_len,
                              const char *csr_pem, api_pending *pending, char *errbuf)
{
    controller *c = ctx;
    char *pem = NULL;
    int rc = pki_spki_to_pem(spki, spki_len, &pem, errbuf);
    if (rc < 0)
        return rc;
    csr_submission *sub = csr_submission_new(mesh_name, dp_name, pem, csr_pem, pending);
    if (!sub || pass_targets_add(&c->committing, mesh_name, dp_name) < 0) {
        csr_submission_free(sub);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    }
    /* Checked where the commit reads the identity anyway (identity_with_pending_key). */
    if (who->method == API_AUTH_CERT)
        sub->cert_not_before = who->cert_not_before;
    csr_committer_submit(c->committer, sub);
    return 0;
}

/* A submission's commit ended: 202 once durable, then signed on the next pass (now). */
static void on_committed(void *ctx, csr_submission *sub)
{
    controller *c = ctx;
    /* One pair of it leaves the committing set (the same dataplane may have more). */
    for (size_t i = 0; i < c->committing.n; i++) {
        pass_target *t = &c->committing.items[i];
        if (strcmp(t->mesh, sub->mesh) == 0 && strcmp(t->dataplane, sub->dataplane) == 0) {
            free(t->mesh);
            free(t->dataplane);
            *t = c->committing.items[--c->committing.n];
            break;
        }
    }
    if (sub->rc == 0 && c->pass_ev)
        schedule_target(c, sub->mesh, sub->dataplane);
    api_pending_done(sub->cookie, sub->rc < 0 ? store_code(sub->rc) : 0, sub->errbuf);
}

/* The generation h_get_identity would give, from the record's small fields (identity_peek):
 * no certificate, chain or bundle read for a notify that answers nobody. */
static int h_identity_generation(void *ctx, const char *mesh_name, const char *dp_name,
                                 uint64_t *ret_generation, char *errbuf)
{
    controller *c = ctx;
    char *value = NULL;
    size_t len = 0;
    int rc = store_get(c->s, &(store_key){STATE_IDENTITIES, mesh_name, dp_name}, &value, &len, NULL);
    /* No record (none yet, or the dataplane was deleted): h_get_identity tells which. */
    if (rc < 0)
        return meshca_fail(errbuf, MESHCA_EUNAVAILABLE, "cannot read the store: %s",
                           store_strerror(rc));
    identity id = {0};
    unsigned flags = 0;
    rc = identity_peek(value, len, &id, &flags);
    free(value);
    if (rc < 0)
        return meshca_fail(errbuf, MESHCA_ECORRUPT, "identity of '%s/%s' not peekable", mesh_name,
                           dp_name);
    /* As h_get_identity: no certificate is generation 0. */
    *ret_generation = id.generation > 0 && (flags & PEEK_CERTIFICATE) ? (uint64_t)id.generation : 0;
    identity_clear(&id);
    return 0;
}

/* Splits "leaf + chain" PEM after the first certificate. */
static void split_leaf(const char *pem, char **ret_leaf, char **ret_chain)
{
    static const char end[] = "-----END CERTIFICATE-----";
    const char *e = strstr(pem, end);
    size_t n = e ? (size_t)(e - pem) + sizeof(end) - 1 : strlen(pem);
    if (pem[n] == '\n')
        n++;
    *ret_leaf = strndup(pem, n);
    const char *rest = pem + n;
    while (*rest == '\n')
        rest++;
    *ret_chain = strdup(rest);
}

static int h_get_identity(void *ctx, const char *mesh_name, const char *dp_name,
                          uint64_t *ret_generation, json_t **ret_body, int64_t *ret_since,
                          char *errbuf)
{
    controller *c = ctx;
    identity id = {0};
    int rc = identity_read(c->s, mesh_name, dp_name, &id, NULL, errbuf);
    /* No record backs a client certificate: a token must start one. */
    *ret_since = rc < 0 ? IDENTITY_SINCE_NONE : id.since;
    if (rc == STORE_ENOTFOUND || rc == MESHCA_ECORRUPT) {
        /* Nothing issued yet: the query waits, unless the dataplane does not exist at all. */
        store_key dkey = {STATE_DATAPLANES, mesh_name, dp_name};
        rc = state_object_version(c->s, &dkey, NULL);
        if (rc == STORE_ENOTFOUND)
            return meshca_fail(errbuf, MESHCA_ENOTFOUND, "no dataplane '%s' in mesh '%s'", dp_name,
                               mesh_name);
        if (rc < 0)
            return meshca_fail(errbuf, MESHCA_EUNAVAILABLE, "cannot read the store: %s",
                               store_strerror(rc));
        *ret_generation = 0;
        *ret_body = NULL;
        return 0;
    }
    if (rc < 0)
        return store_code(rc);
    if (id.generation <= 0 || !id.cert_pem) {
        identity_clear(&id);
        *ret_generation = 0;
        *ret_body = NULL;
        return 0;
    }
    mesh_bundle b = {0};
    rc = state_read_bundle(c->s, mesh_name, &b, NULL, errbuf);
    if (rc < 0) {
        identity_clear(&id);
        return meshca_fail(errbuf, MESHCA_EUNAVAILABLE, "the trust bundle of mesh '%s' cannot be "
                           "read now", mesh_name);
    }
    char *leaf = NULL, *chain = NULL, not_after[32], renew_at[32];
    split_leaf(id.cert_pem, &leaf, &chain);
    pki_format_time(id.not_after, not_after, sizeof(not_after));
    pki_format_time(id.renew_at, renew_at, sizeof(renew_at));
    json_t *body = leaf && chain
                       ? json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "generation",
                                   (json_int_t)id.generation, "backend", id.backend ? id.backend : "",
                                   "certificate", leaf, "chain", chain, "caBundle", b.pem,
                                   "notAfter", not_after, "renewAt", renew_at, "keyType",
                                   id.rsa ? "rsa" : "ecdsa")
                       : NULL;
    free(leaf);
    free(chain);
    *ret_generation = (uint64_t)id.generation;
    identity_clear(&id);
    mesh_bundle_clear(&b);
    if (!body)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    *ret_body = body;
    return 0;
}

static int h_ack(void *ctx, const api_principal *who, const char *mesh_name, const char *dp_name,
                 uint64_t generation, char *errbuf)
{
    controller *c = ctx;
    /* A read of its own (ack_record reads the identity too, but inside its status write): once
     * per generation an agent loads, not per query. */
    int rc = who->method == API_AUTH_CERT
                 ? identity_cert_current(c->s, mesh_name, dp_name, who->cert_not_before, errbuf)
                 : 0;
    if (rc < 0)
        return rc;
    rc = ack_record(c->s, mesh_name, dp_name, generation, (int64_t)time(NULL), errbuf);
    return rc < 0 ? store_code(rc) : 0;
}

static int h_roots(void *ctx, const char *mesh_name, json_t **ret, char *errbuf)
{
    controller *c = ctx;
    manifest_set *set = NULL;
    const mesh *m = NULL;
    mesh_ca *cas = NULL;
    int rc = load_mesh(c, mesh_name, &set, &m, errbuf);
    if (rc < 0)
        return rc;
    roots_entry *entries = calloc(m->nbackends + 1, sizeof(*entries));
    mesh_bundle b = {0};
    bool have_bundle = state_read_bundle(c->s, mesh_name, &b, NULL, NULL) == 0;
    json_t *mstatus = NULL;
    state_get_mesh_status(c->s, mesh_name, &mstatus, NULL);
    const char *cross_to = json_string_value(json_object_get(json_object_get(mstatus, "crossSign"), "to"));
    if (!entries || mesh_cas_open(c->s, m, (int64_t)time(NULL), &cas) < 0) {
        rc = meshca_fail(errbuf, MESHCA_EUNAVAILABLE, "cannot open the CAs of mesh '%s'", mesh_name);
        goto out;
    }
    const char *enabled = mesh_enabled_backend(m);
    size_t n = 0;
    for (size_t i = 0; i < m->nbackends; i++) {
        if (!cas[i].chain_pem)
            continue;
        const char *name = cas[i].backend->name.value;
        entries[n++] = (roots_entry){
            .backend = name, .chain_pem = cas[i].chain_pem,
            .cross_signed_pem = have_bundle && cross_to && strcmp(cross_to, name) == 0
                                    ? b.cross_signed_pem
                                    : NULL,
            .active = enabled && strcmp(enabled, name) == 0,
        };
    }
    if (roots_build(mesh_name, entries, n, ret, errbuf) < 0)
        rc = meshca_fail(errbuf, MESHCA_EUNAVAILABLE, "cannot describe the roots of '%s'", mesh_name);
out:
    if (cas)
        mesh_cas_free(cas, m->nbackends);
    json_decref(mstatus);
    mesh_bundle_clear(&b);
    free(entries);
    manifest_set_free(set);
    return rc;
}

static int h_trust_bundle(void *ctx, const char *mesh_name, char **ret_pem, char *errbuf)
{
    controller *c = ctx;
    mesh_bundle b = {0};
    int rc = state_read_bundle(c->s, mesh_name, &b, NULL, errbuf);
    if (rc < 0)
        return rc == STORE_ENOTFOUND
                   ? meshca_fail(errbuf, MESHCA_ENOTFOUND, "mesh '%s' has no trust bundle yet",
                                 mesh_name)
                   : store_code(rc);
    *ret_pem = b.pem;
    b.pem = NULL;
    mesh_bundle_clear(&b);
    return 0;
}

static int h_metrics(void *ctx, metrics_text *t, char *errbuf)
{
    controller *c = ctx;
    metrics_render(c->metrics, t);
    /* Only the leader runs passes: alerts on the pass metrics look at the leader only. */
    metrics_text_family(t, "meshca_leader", "gauge",
                        "1 when this replica leads (runs the reconcile passes), 0 when it follows");
    metrics_text_sample(t, "meshca_leader", NULL, leader_leading(c->le, leader_now_ms()) ? 1 : 0);
    metrics_text_family(t, "meshca_reconcile_passes_by_scope_total", "counter",
                        "Reconcile passes that ended, by scope: full (every dataplane) or "
                        "targeted (only those the API wrote since the last pass)");
    metrics_text_sample(t, "meshca_reconcile_passes_by_scope_total",
                        (const char *const[]){"scope", "full", NULL}, (double)c->passes_full);
    metrics_text_sample(t, "meshca_reconcile_passes_by_scope_total",
                        (const char *const[]){"scope", "targeted", NULL}, (double)c->passes_targeted);
    metrics_text_family(t, "meshca_reconcile_dataplanes_visited_total", "counter",
                        "Dataplanes the reconcile passes read and decided");
    metrics_text_sample(t, "meshca_reconcile_dataplanes_visited_total", NULL, (double)c->visited);
    /* --tls-cert's files are renewed by hand: alert before they expire (MeshcaAPICertificateExpiring). */
    metrics_text_family(t, "meshca_api_cert_not_after_seconds", "gauge",
                        "When the dataplane API's server certificate expires (seconds since the epoch)");
    metrics_text_sample(t, "meshca_api_cert_not_after_seconds", NULL,
                        (double)server_tls_not_after(c->tls));
    /* As of the last CA check (at most min(--interval, 60 s) old): no store read here. */
    cpca_watch_render(&c->cpca, t);
    return metrics_collect(c->s, (int64_t)time(NULL), t, errbuf);
}

/* GET /readyz: from what the loop last saw (no store read: probes add no load). */
static const char *h_ready(void *ctx, char *errbuf)
{
    controller *c = ctx;
    bool leading = leader_leading(c->le, leader_now_ms());
    const readiness_input in = {
        .election_failure = c->elect_failing,
        .ca_check_failure = c->ca_failing,
        .pass_failure = c->failing,
        .tls_loaded = server_tls_ctx(c->tls) != NULL,
        .tls_not_after = server_tls_not_after(c->tls),
        .leading = leading,
        .leader = leader_holder(c->le),
        .now = (int64_t)time(NULL),
    };
    return readiness_check(&in, errbuf);
}

/* A rejected API request (401/403), already rate-limited by the server: to stderr. */
static void h_log(void *ctx, const char *line)
{
    say(ctx, true, "%s", line);
}

static void h_observe(void *ctx, const char *path_class, int status)
{
    controller *c = ctx;
    char code[16];
    snprintf(code, sizeof(code), "%d", status);
    const char *labels[] = {"path", path_class, "code", code, NULL};
    metrics_count(c->metrics, METRICS_API_REQUESTS, labels, 1);
}

/* --- set-up -------------------------------------------------------------------------------- */

/* "ADDR:PORT" / "[v6]:PORT" into addr and port. */
static int parse_listen(const char *listen, char *addr, size_t size, uint16_t *port)
{
    const char *colon;
    size_t alen;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':')
            return -1;
        alen = (size_t)(close - listen - 1);
        memmove(addr, listen + 1, alen < size ? alen : 0);
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon)
            return -1;
        alen = (size_t)(colon - listen);
        memmove(addr, listen, alen < size ? alen : 0);
    }
    if (alen == 0 || alen >= size)
        return -1;
    addr[alen] = '\0';
    char *end = NULL;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || !end || *end || end == colon + 1 || p < 0 || p > 65535)
        return -1;
    *port = (uint16_t)p;
    return 0;
}

/* Renews the API's certificate (SIGHUP, or the signed one past two thirds of its life). */
static void reload_tls(controller *c, const char *why)
{
    char err[MESHCA_ERRBUF], when[32] = "";
    int64_t not_after = 0;
    if (server_tls_reload(c->tls, (int64_t)time(NULL), &not_after, err) < 0) {
        say(c, true, "%s: cannot renew the dataplane API's certificate, still serving the previous "
            "one: %s", why, err);
        return;
    }
    pki_format_time(not_after, when, sizeof(when));
    say(c, false, "%s: the dataplane API serves a new certificate (expires %s)", why, when);
}

static void on_sighup(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    reload_tls(arg, "SIGHUP");
}

/* Every replica, leader or not, serves from the CA `cp-ca rotate --switch` made current, soon
 * after it ran, without a SIGHUP; what the check read is what /metrics shows of the
 * control-plane CA. A failure to read is said once per cause. */
static void on_ca_check(evutil_socket_t fd, short what, void *arg)
{
    controller *c = arg;
    char err[MESHCA_ERRBUF] = "";
    (void)fd, (void)what;
    int rc = cpca_watch_poll(&c->cpca, c->s, err);
    if (rc < 0 && strcmp(err, c->ca_failing) != 0)
        say(c, true, "cannot check the control-plane CA for a switch: %s", err);
    snprintf(c->ca_failing, sizeof(c->ca_failing), "%s", rc < 0 ? err : "");
    /* Also when nothing moved: a reload that failed is tried again (server_tls retry). */
    if (c->cpca.known &&
        server_tls_ca_differs(c->tls, c->cpca.r.current_cert, (int64_t)time(NULL)) > 0)
        reload_tls(c, "the control-plane CA was switched (cp-ca rotate --switch)");
}

/* Each parked blocking query is one socket: S13 asks for 10,000 of them. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ":5690" (Go's every-interface form) is refused: every interface is asked for by name. */
static const char no_address[] = " (the address is required: 127.0.0.1:PORT for this host "
                                 "only, 0.0.0.0:PORT for every interface)";

int controller_check_addresses(const controller_options *o, char *errbuf)
{
    const char *listen = o->listen ? o->listen : CONTROLLER_DEFAULT_LISTEN;
    char addr[256];
    uint16_t port = 0;
    if (parse_listen(listen, addr, sizeof(addr), &port) < 0)
        return meshca_fail(errbuf, MESHCA_EINVAL, "--listen: '%s' is not ADDRESS:PORT%s", listen,
                           listen[0] == ':' ? no_address : "");
    if (o->metrics_listen && parse_listen(o->metrics_listen, addr, sizeof(addr), &port) < 0)
        return meshca_fail(errbuf, MESHCA_EINVAL, "--metrics: '%s' is not ADDRESS:PORT%s",
                           o->metrics_listen, o->metrics_listen[0] == ':' ? no_address : "");
    return 0;
}

int controller_run(store *s, const controller_options *o, char *errbuf)
{
    controller c;
    memset(&c, 0, sizeof(c));
    c.s = s;
    c.o = o;
    c.first = true;
    c.watch_fd = -1;
    c.wake[0] = c.wake[1] = -1;
    c.ps = s;
    c.threaded = o->pass_store && o->lease_store;
    const char *listen = o->listen ? o->listen : CONTROLLER_DEFAULT_LISTEN;
    char addr[256];
    uint16_t port = 0;
    SSL_CTX *ssl = NULL;
    int rc = 0;
    bool thread_started = false;
    static const api_handlers handlers_template = {
        NULL, h_key_type, h_submit_csr, h_get_identity, h_ack, h_roots, h_trust_bundle,
    };
    api_handlers handlers = handlers_template;
    handlers.ctx = &c;
    handlers.metrics = o->metrics_listen ? NULL : h_metrics;
    handlers.observe = h_observe;
    handlers.log = h_log;
    handlers.ready = h_ready;
    handlers.identity_generation = h_identity_generation;
    char maddr[256];
    uint16_t mport = 0;

    if (controller_check_addresses(o, errbuf) < 0 ||
        parse_listen(listen, addr, sizeof(addr), &port) < 0 ||
        (o->metrics_listen && parse_listen(o->metrics_listen, maddr, sizeof(maddr), &mport) < 0))
        return MESHCA_EINVAL;
    if (metrics_new(&c.metrics) < 0)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    raise_nofile();
    if ((rc = server_tls_new(s, listen, o->sans, o->nsans, o->tls_cert, o->tls_key, &c.tls,
                             errbuf)) < 0) {
        metrics_free(c.metrics);
        return rc;
    }
    ssl = server_tls_ctx(c.tls);
    c.base = event_base_new();
    if (!c.base) {
        server_tls_free(c.tls);
        metrics_free(c.metrics);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "cannot create the event loop");
    }
    /* From here every failure goes to out, which frees the cache. Out of memory here only
     * costs the cache: every pass opens its CAs then. */
    c.cas = ca_cache_new();
    api_server_options so = API_SERVER_OPTIONS_INIT;
    so.ssl_ctx = ssl;
    so.address = addr;
    so.port = port;
    so.tokens = s;
    so.handlers = &handlers;
    if (o->submit_store) {
        if ((rc = csr_committer_new(c.base, o->submit_store, on_committed, &c, &c.committer,
                                    errbuf)) < 0)
            goto out;
        handlers.submit_csr_later = h_submit_csr_later;
    }
    if ((rc = api_server_new(c.base, &so, &c.srv, errbuf)) < 0)
        goto out;
    if (o->metrics_listen &&
        (rc = metrics_http_new(c.base, maddr, mport, h_metrics, &c, &c.metrics_http, errbuf)) < 0)
        goto out;
    if (o->manifests_dir) {
        c.watch_fd = manifest_watch_open(o->manifests_dir);
        if (c.watch_fd < 0) {
            rc = meshca_fail(errbuf, MESHCA_EIO, "cannot watch %s: %s", o->manifests_dir,
                             strerror(errno));
            goto out;
        }
        c.watch_ev = event_new(c.base, c.watch_fd, EV_READ | EV_PERSIST, on_watch, &c);
    }
    int64_t interval = o->interval_ms > 0 ? o->interval_ms : 2000;
    struct timeval int_tv = {(time_t)(interval / 1000), (suseconds_t)(interval % 1000) * 1000};
    c.pass_ev = evtimer_new(c.base, on_pass, &c);
    c.poll_ev = evtimer_new(c.base, on_poll, &c);
    c.interval_ev = event_new(c.base, -1, EV_PERSIST, on_interval, &c);
    c.sigterm_ev = evsignal_new(c.base, SIGTERM, on_stop, &c);
    c.sigint_ev = evsignal_new(c.base, SIGINT, on_stop, &c);
    c.sighup_ev = evsignal_new(c.base, SIGHUP, on_sighup, &c);
    c.ca_ev = event_new(c.base, -1, EV_PERSIST, on_ca_check, &c);
    c.elect_ev = event_new(c.base, -1, EV_PERSIST, on_elect, &c);
    if (!c.pass_ev || !c.poll_ev || !c.interval_ev || !c.sigterm_ev || !c.sigint_ev || !c.elect_ev ||
        !c.sighup_ev || !c.ca_ev ||
        (o->manifests_dir && !c.watch_ev)) {
        rc = meshca_fail(errbuf, MESHCA_ENOMEM, "cannot create the loop's events");
        goto out;
    }
    if (c.threaded) {
        if (pipe(c.wake) < 0 || fcntl(c.wake[0], F_SETFL, O_NONBLOCK) < 0 ||
            fcntl(c.wake[1], F_SETFL, O_NONBLOCK) < 0 || fcntl(c.wake[0], F_SETFD, FD_CLOEXEC) < 0 ||
            fcntl(c.wake[1], F_SETFD, FD_CLOEXEC) < 0) {
            rc = meshca_fail(errbuf, MESHCA_EIO, "cannot create the pass thread's pipe: %s",
                             strerror(errno));
            goto out;
        }
        c.done_ev = event_new(c.base, c.wake[0], EV_READ | EV_PERSIST, on_pass_done, &c);
        if (!c.done_ev || event_add(c.done_ev, NULL) < 0) {
            rc = meshca_fail(errbuf, MESHCA_ENOMEM, "cannot create the loop's events");
            goto out;
        }
        pthread_mutex_init(&c.mu, NULL);
        pthread_cond_init(&c.cv, NULL);
        if (pthread_create(&c.thread, NULL, pass_thread, &c) != 0) {
            pthread_cond_destroy(&c.cv);
            pthread_mutex_destroy(&c.mu);
            rc = meshca_fail(errbuf, MESHCA_ENOMEM, "cannot start the pass thread");
            goto out;
        }
        thread_started = true;
        c.ps = o->pass_store;
    }
    if (store_revision(s, &c.watched) < 0)
        c.watched = 0;
    arm_poll(&c);
    event_add(c.interval_ev, &int_tv);
    event_add(c.sigterm_ev, NULL);
    event_add(c.sigint_ev, NULL);
    event_add(c.sighup_ev, NULL);
    /* At the passes' interval and at least once a minute: the store's revision, then the CA's
     * object only when the revision moved, decoded only when its version did (cpca_watch). */
    int64_t ca_ms = interval < 60000 ? interval : 60000;
    event_add(c.ca_ev, &(struct timeval){(time_t)(ca_ms / 1000), (suseconds_t)(ca_ms % 1000) * 1000});
    on_ca_check(-1, 0, &c);   /* the first scrape already shows the control-plane CA */
    if (c.watch_ev)
        event_add(c.watch_ev, NULL);
    char api_url[300], replica[300], host[256] = "";
    snprintf(api_url, sizeof(api_url), "https://%s%s%s:%u", strchr(addr, ':') ? "[" : "", addr,
             strchr(addr, ':') ? "]" : "", (unsigned)api_server_port(c.srv));
    if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
        snprintf(host, sizeof(host), "localhost");
    snprintf(replica, sizeof(replica), "%s:%ld", host, (long)getpid());
    c.lease_s = leader_lease_for_takeover(o->lease_ttl_s > 0 ? o->lease_ttl_s : LEADER_DEFAULT_TTL_S);
    if ((rc = leader_new(s, o->replica_id ? o->replica_id : replica, api_url, c.lease_s, &c.le,
                         errbuf)) < 0)
        goto out;
    if (o->lease_store && (rc = leader_renewer_start(c.le, o->lease_store, errbuf)) < 0)
        goto out;
    say(&c, false, "serving the dataplane API on %s", api_url);
    if (c.metrics_http)
        say(&c, false, "serving metrics on http://%s%s%s:%u/metrics", strchr(maddr, ':') ? "[" : "",
            maddr, strchr(maddr, ':') ? "]" : "", (unsigned)metrics_http_port(c.metrics_http));
    elect_step(&c); /* the first step now (it arms the next): the first pass runs at once if we lead */
    schedule_pass(&c, 0);
    event_base_dispatch(c.base);
    rc = 0;
out:
    /* What is still being committed is answered first, while the server and the loop's events
     * it answers through are alive. */
    csr_committer_free(c.committer);
    /* The pass thread ends after its pass (a pass waiting on a CA ends with the CA's own
     * timeouts); then nothing uses the elector, the cache or the pass handle. */
    if (thread_started) {
        pthread_mutex_lock(&c.mu);
        c.stop = true;
        pthread_cond_signal(&c.cv);
        pthread_mutex_unlock(&c.mu);
        pthread_join(c.thread, NULL);
        if (c.job_done) {
            reconcile_report_free(&c.job.rep);
            diag_list_free(&c.job.diags);
        }
        pthread_cond_destroy(&c.cv);
        pthread_mutex_destroy(&c.mu);
    }
    pass_targets_clear(&c.job.targets);
    pass_targets_clear(&c.targets);
    pass_targets_clear(&c.committing);
    if (c.done_ev)
        event_free(c.done_ev);
    for (int i = 0; i < 2; i++)
        if (c.wake[i] >= 0)
            close(c.wake[i]);
    /* Resign first: the lease is revoked, so another replica takes over at once. */
    leader_free(c.le);
    if (c.elect_ev)
        event_free(c.elect_ev);
    if (c.watch_ev)
        event_free(c.watch_ev);
    if (c.pass_ev)
        event_free(c.pass_ev);
    if (c.poll_ev)
        event_free(c.poll_ev);
    for (size_t i = 0; i < c.nwatch_fd_evs; i++)
        event_free(c.watch_fd_evs[i]);
    if (c.interval_ev)
        event_free(c.interval_ev);
    if (c.sigterm_ev)
        event_free(c.sigterm_ev);
    if (c.sigint_ev)
        event_free(c.sigint_ev);
    if (c.sighup_ev)
        event_free(c.sighup_ev);
    if (c.ca_ev)
        event_free(c.ca_ev);
    api_server_free(c.srv);
    metrics_http_free(c.metrics_http);
    /* Connections are freed in deferred callbacks: one more turn of the loop. */
    event_base_loop(c.base, EVLOOP_NONBLOCK);
    event_base_free(c.base);
    server_tls_free(c.tls);
    if (c.watch_fd >= 0)
        close(c.watch_fd);
    free(c.last_said);
    metrics_free(c.metrics);
    ca_cache_free(c.cas);   /* wipes keys and tokens */
    cpca_watch_free(&c.cpca);
    return rc;
}
