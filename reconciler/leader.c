/* leader.c - leader election of `meshca run` replicas on any store: a leader key with a lease, renewed, fencing writes. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "reconciler/failpoint.h"
#include "reconciler/leader.h"

#define LEADER_ID_MAX 256

struct leader_elector {
    store *s;
    char id[LEADER_ID_MAX];
    char api[LEADER_ID_MAX];
    int64_t ttl_s;
    store_lease_id lease;   /* ours, while leading (or while trying to) */
    uint64_t version;       /* the leader key's version while leading; 0 following */
    int64_t deadline_ms;    /* leading until then, by our clock; atomic: the renewer moves it */
    char holder[LEADER_ID_MAX];
    char holder_api[LEADER_ID_MAX];
    char local[LEADER_ID_MAX];  /* this machine's boot and pid namespace ("" unknown) */
    bool stepped;               /* a step was taken (the restart shortcut is for the first) */
    /* The renewer thread (leader_renewer_start): its own store handle, so a long pass on the
     * loop thread does not starve the lease. mu guards lease and stop between the threads. */
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_t renewer;
    bool renewing, stop;
    store *rs;
    unsigned long renewals;     /* keepalives the renewer sent (atomic) */
};

static int64_t deadline_get(const leader_elector *e)
{
    return __atomic_load_n(&e->deadline_ms, __ATOMIC_ACQUIRE);
}

static void deadline_set(leader_elector *e, int64_t v)
{
    __atomic_store_n(&e->deadline_ms, v, __ATOMIC_RELEASE);
}

/* Lease and version change under mu (the renewer reads the lease). */
static void hold(leader_elector *e, store_lease_id lease, uint64_t version, int64_t deadline)
{
    pthread_mutex_lock(&e->mu);
    e->lease = lease;
    e->version = version;
    deadline_set(e, deadline);
    pthread_mutex_unlock(&e->mu);
}

/* Identifies the pid space this process lives in: the boot id and the pid namespace. Two
 * replicas with the same one can tell whether the other's pid is alive. "" when unknown. */
static void local_space(char *buf, size_t size)
{
    char boot[64] = "", ns[64] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(boot, sizeof(boot), f))
            boot[0] = '\0';
        fclose(f);
    }
    boot[strcspn(boot, "\n")] = '\0';
    ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);
    ns[n > 0 ? n : 0] = '\0';
    if (boot[0] && ns[0])
        snprintf(buf, size, "%s/%s", boot, ns);
    else
        buf[0] = '\0';
}

static const store_key leader_key = {LEADER_KIND, LEADER_MESH, LEADER_NAME};

int64_t leader_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t leader_lease_for_takeover(int64_t takeover_s)
{
    int64_t margin = takeover_s / 3 > 1 ? takeover_s / 3 : 1;
    return takeover_s - margin > 1 ? takeover_s - margin : 1;
}

int leader_new(store *s, const char *id, const char *api, int64_t ttl_s, leader_elector **ret,
               char *errbuf)
{
    if (!s || !id || !*id || strlen(id) >= LEADER_ID_MAX || (api && strlen(api) >= LEADER_ID_MAX))
        return meshca_fail(errbuf, MESHCA_EINVAL, "leader: missing or too long replica identity");
    if (ttl_s < 1 || ttl_s > STORE_LEASE_TTL_MAX)
        return meshca_fail(errbuf, MESHCA_EINVAL, "leader: lease ttl %lld s out of 1..%d",
                           (long long)ttl_s, STORE_LEASE_TTL_MAX);
    leader_elector *e = calloc(1, sizeof(*e));
    if (!e)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    e->s = s;
    e->ttl_s = ttl_s;
    snprintf(e->id, sizeof(e->id), "%s", id);
    snprintf(e->api, sizeof(e->api), "%s", api ? api : "");
    local_space(e->local, sizeof(e->local));
    pthread_mutex_init(&e->mu, NULL);
    /* The renewer's waits are on the monotonic clock, as every deadline here. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->wake, &ca);
    pthread_condattr_destroy(&ca);
    *ret = e;
    return 0;
}

/* The key's value: {"id": ..., "api": ...}; never a secret. */
static char *leader_value(const leader_elector *e)
{
    json_t *doc = json_pack("{s:s, s:s, s:s, s:I}", "id", e->id, "api", e->api, "local", e->local,
                            "pid", (json_int_t)getpid());
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    return text;
}

static int parse_value(const char *value, size_t len, char **ret_id, char **ret_api)
{
    json_t *doc = json_loadb(value, len, 0, NULL);
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *api = json_string_value(json_object_get(doc, "api"));
    if (!id) {
        json_decref(doc);
        return MESHCA_ECORRUPT;
    }
    *ret_id = strdup(id);
    *ret_api = strdup(api ? api : "");
    json_decref(doc);
    if (!*ret_id || !*ret_api) {
        free(*ret_id);
        free(*ret_api);
        return MESHCA_ENOMEM;
    }
    return 0;
}

int leader_read(store *s, char **ret_id, char **ret_api, char *errbuf)
{
    char *value = NULL, *id = NULL, *api = NULL;
    size_t len = 0;
    int rc = store_get(s, &leader_key, &value, &len, NULL);
    if (rc == STORE_ENOTFOUND)
        return meshca_fail(errbuf, rc, "no replica leads");
    if (rc < 0)
        return meshca_fail(errbuf, rc, "cannot read the leader key: %s", store_errmsg(s));
    rc = parse_value(value, len, &id, &api);
    free(value);
    if (rc < 0)
        return meshca_fail(errbuf, rc, "the leader key %s/%s/%s does not hold a replica identity",
                           LEADER_KIND, LEADER_MESH, LEADER_NAME);
    *ret_id = id;
    *ret_api = api;
    return 0;
}

static void set_holder(leader_elector *e, const char *id, const char *api)
{
    snprintf(e->holder, sizeof(e->holder), "%s", id);
    snprintf(e->holder_api, sizeof(e->holder_api), "%s", api);
}

/* Stops leading: no more fenced writes; the lease is revoked (best effort) so the key goes. */
static void step_down(leader_elector *e)
{
    store_lease_id lease = e->lease;
    hold(e, 0, 0, 0);
    if (lease)
        (void)store_lease_revoke(e->s, lease);
    e->holder[0] = e->holder_api[0] = '\0';
}

/* A leader renews: the lease must still be alive and the key still ours. */
static int renew(leader_elector *e, int64_t now_ms, char *errbuf)
{
    /* With the renewer thread the lease is its job: one keepalive per period, not two (on
     * SQLite each is a write transaction beside the CLI's). The key is still checked here. */
    int rc = e->renewing ? 0 : store_lease_keepalive(e->s, e->lease);
    uint64_t version = 0;
    if (rc == 0) {
        char *value = NULL;
        rc = store_get(e->s, &leader_key, &value, NULL, &version);
        free(value);
        if (rc == 0 && version != e->version)
            rc = STORE_ECONFLICT; /* rewritten by someone else: not ours any more */
    }
    if (rc == 0) {
        /* From the start of the renewal: the store counts the ttl from later than that. */
        int64_t d = now_ms + e->ttl_s * 1000 * LEADER_DEADLINE_TENTHS / 10;
        if (!e->renewing && d > deadline_get(e))
            deadline_set(e, d);
        return 0;
    }
    if (rc == STORE_ENOTFOUND || rc == STORE_ECONFLICT) {
        step_down(e);
        return 0; /* a follower now; the caller's next step looks for the new leader */
    }
    meshca_fail(errbuf, rc, "leader: cannot renew the lease: %s", store_errmsg(e->s));
    if (now_ms >= deadline_get(e))
        step_down(e);
    return rc;
}

/* A follower reads the key, and takes it when nobody holds it. */
/*
 * A controller restarted after a kill -9 finds its dead predecessor's key: at its first step
 * only, a holder on this machine whose process is gone is deleted (compare-and-swap on its
 * version) instead of waited out for its ttl. Only when the holder shares our boot and pid
 * namespace, so its pid means the same process here. Running followers always wait for the
 * lease to end: that is the takeover every replica, local or not, relies on.
 */
/* Our own key from an earlier term that we lost (we could not renew while the store was down,
 * and the store kept the lease across its restart): nobody else holds it, so it goes now. */
static bool holder_is_us(const leader_elector *e, const char *value, size_t len)
{
    json_t *doc = json_loadb(value, len, 0, NULL);
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *local = json_string_value(json_object_get(doc, "local"));
    json_int_t pid = json_integer_value(json_object_get(doc, "pid"));
    bool us = id && strcmp(id, e->id) == 0 && local && strcmp(local, e->local) == 0 &&
              pid == (json_int_t)getpid();
    json_decref(doc);
    return us;
}

static bool holder_dead_here(const leader_elector *e, const char *value, size_t len)
{
    json_t *doc = json_loadb(value, len, 0, NULL);
    const char *local = json_string_value(json_object_get(doc, "local"));
    json_int_t pid = json_integer_value(json_object_get(doc, "pid"));
    bool dead = e->local[0] && local && strcmp(local, e->local) == 0 && pid > 0 &&
                pid != (json_int_t)getpid() && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
    json_decref(doc);
    return dead;
}

static int read_holder(leader_elector *e, char *errbuf)
{
    char *value = NULL, *id = NULL, *api = NULL;
    size_t len = 0;
    uint64_t version = 0;
    int rc = store_get(e->s, &leader_key, &value, &len, &version);
    if (rc == 0 && ((!e->stepped && holder_dead_here(e, value, len)) || holder_is_us(e, value, len))) {
        free(value);
        value = NULL;
        rc = store_delete(e->s, &leader_key, version);
        if (rc == 0 || rc == STORE_ENOTFOUND || rc == STORE_ECONFLICT)
            rc = store_get(e->s, &leader_key, &value, &len, &version);
    }
    if (rc == 0) {
        rc = parse_value(value, len, &id, &api);
        free(value);
        if (rc == 0)
            set_holder(e, id, api);
        else
            set_holder(e, "?", ""); /* unreadable: someone holds it; it ends with its lease */
        free(id);
        free(api);
        return rc == MESHCA_ENOMEM ? meshca_fail(errbuf, rc, "out of memory") : 0;
    }
    if (rc == STORE_ENOTFOUND) {
        e->holder[0] = e->holder_api[0] = '\0';
        return rc;
    }
    return meshca_fail(errbuf, rc, "leader: cannot read the leader key: %s", store_errmsg(e->s));
}

static int campaign(leader_elector *e, int64_t now_ms, char *errbuf)
{
    int rc = read_holder(e, errbuf);
    if (rc != STORE_ENOTFOUND)
        return rc;
    store_lease_id lease = 0;
    rc = store_lease_grant(e->s, e->ttl_s, &lease);
    if (rc < 0)
        return meshca_fail(errbuf, rc, "leader: cannot grant a lease: %s", store_errmsg(e->s));
    char *mine = leader_value(e);
    if (!mine) {
        (void)store_lease_revoke(e->s, lease);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    }
    store_op put = {STORE_OP_PUT, leader_key, mine, strlen(mine), 0, lease};
    rc = store_txn(e->s, &put, 1);
    free(mine);
    if (rc == 0) {
        uint64_t version = 0;
        char *v = NULL;
        rc = store_get(e->s, &leader_key, &v, NULL, &version);
        free(v);
        if (rc == 0) {
            hold(e, lease, version, now_ms + e->ttl_s * 1000 * LEADER_DEADLINE_TENTHS / 10);
            set_holder(e, e->id, e->api);
            return 0;
        }
        /* Gone already (lease ended under us) or unreadable: not leading. */
    }
    (void)store_lease_revoke(e->s, lease);
    if (rc == STORE_ECONFLICT || rc == STORE_ENOTFOUND) {
        /* Another replica took it first: it leads. */
        rc = read_holder(e, errbuf);
        return rc == STORE_ENOTFOUND ? 0 : rc;
    }
    return meshca_fail(errbuf, rc, "leader: cannot put the leader key: %s", store_errmsg(e->s));
}

static int leader_step_unmuted(leader_elector *e, int64_t now_ms, bool *ret_changed, char *errbuf);

/* The election's writes are not data commits: the crash harness's failpoints skip them. */
int leader_step(leader_elector *e, int64_t now_ms, bool *ret_changed, char *errbuf)
{
    int was = failpoint_muted;
    failpoint_muted = 1;
    int rc = leader_step_unmuted(e, now_ms, ret_changed, errbuf);
    failpoint_muted = was;
    return rc;
}

static int leader_step_unmuted(leader_elector *e, int64_t now_ms, bool *ret_changed, char *errbuf)
{
    bool was = e->version != 0;
    char before[LEADER_ID_MAX];
    snprintf(before, sizeof(before), "%s", e->holder);
    int rc = 0;
    if (e->version && now_ms >= deadline_get(e))
        step_down(e); /* could not renew in time: stop before the store ends the lease */
    if (e->version)
        rc = renew(e, now_ms, errbuf);
    if (!e->version) {
        int rc2 = campaign(e, now_ms, errbuf);
        if (rc == 0 || rc2 < 0)
            rc = rc2;
    }
    e->stepped = true;
    if (ret_changed)
        *ret_changed = was != (e->version != 0) || strcmp(before, e->holder) != 0;
    return rc;
}

bool leader_leading(const leader_elector *e, int64_t now_ms)
{
    return e && e->version && now_ms < deadline_get(e);
}

const char *leader_holder(const leader_elector *e)
{
    return e->holder;
}

const char *leader_holder_api(const leader_elector *e)
{
    return e->holder_api;
}

uint64_t leader_version(const leader_elector *e)
{
    return e->version;
}

int leader_fence(leader_elector *e, int64_t now_ms)
{
    if (!leader_leading(e, now_ms))
        return STORE_ECONFLICT;
    /* The store reads the deadline at every write: the renewer may extend it meanwhile. */
    return store_fence(e->s, &leader_key, e->version, &e->deadline_ms);
}

int leader_fence_store(leader_elector *e, store *s, int64_t now_ms)
{
    if (!leader_leading(e, now_ms))
        return STORE_ECONFLICT;
    /* Another thread's handle: the version as the loop's last step left it (hold() sets it
     * under mu); the deadline is read atomically by the store at every write, as above. */
    pthread_mutex_lock(&e->mu);
    uint64_t version = e->version;
    pthread_mutex_unlock(&e->mu);
    return version ? store_fence(s, &leader_key, version, &e->deadline_ms) : STORE_ECONFLICT;
}

void leader_unfence(leader_elector *e)
{
    (void)store_fence(e->s, NULL, 0, 0);
}

/*
 * The renewer: every ttl/3 it renews the lease held, on its own store handle. A renewal that
 * succeeds moves the deadline on; one that finds the lease gone ends it at once (the loop's
 * next step then steps down and says so). It never campaigns or resigns: the loop does.
 */
static void *renewer_main(void *arg)
{
    leader_elector *e = arg;
    int64_t period_ms = e->ttl_s * 1000 / 3;
    failpoint_muted = 1; /* this thread only renews the lease: no data commit */
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += period_ms / 1000;
        until.tv_nsec += (period_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!e->stop && pthread_cond_timedwait(&e->wake, &e->mu, &until) != ETIMEDOUT) {
        }
        if (e->stop)
            break;
        store_lease_id lease = e->lease;
        if (!lease)
            continue;
        pthread_mutex_unlock(&e->mu);
        int64_t t0 = leader_now_ms();
        int rc = store_lease_keepalive(e->rs, lease);
        __atomic_add_fetch(&e->renewals, 1, __ATOMIC_RELAXED);
        pthread_mutex_lock(&e->mu);
        if (e->lease != lease)
            continue; /* stepped down or re-elected meanwhile: not ours to judge */
        if (rc == 0) {
            int64_t d = t0 + e->ttl_s * 1000 * LEADER_DEADLINE_TENTHS / 10;
            if (d > deadline_get(e))
                deadline_set(e, d);
        } else if (rc == STORE_ENOTFOUND) {
            deadline_set(e, 0); /* the lease ended: no fenced write may go out any more */
        }
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

unsigned long leader_renewals(const leader_elector *e)
{
    return __atomic_load_n(&e->renewals, __ATOMIC_RELAXED);
}

int leader_renewer_start(leader_elector *e, store *rs, char *errbuf)
{
    if (!rs || e->renewing)
        return meshca_fail(errbuf, MESHCA_EINVAL, "leader: renewer needs its own store handle");
    e->rs = rs;
    e->stop = false;
    if (pthread_create(&e->renewer, NULL, renewer_main, e) != 0)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "leader: cannot start the lease renewer thread");
    e->renewing = true;
    return 0;
}

void leader_free(leader_elector *e)
{
    if (!e)
        return;
    if (e->renewing) {
        pthread_mutex_lock(&e->mu);
        e->stop = true;
        pthread_cond_signal(&e->wake);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->renewer, NULL);
    }
    leader_unfence(e);
    if (e->lease) {
        int was = failpoint_muted;
        failpoint_muted = 1;
        (void)store_lease_revoke(e->s, e->lease);
        failpoint_muted = was;
    }
    pthread_cond_destroy(&e->wake);
    pthread_mutex_destroy(&e->mu);
    free(e);
}
