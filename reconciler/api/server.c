/* server.c - the dataplane API on libevent's evhttp over bufferevent_openssl: auth, routes,
 * waiters. */
#include "reconciler/api/server.h"

#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <sys/queue.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "manifests/model.h"
#include "reconciler/api/csr_limit.h"
#include "reconciler/api/reject_log.h"
#include "reconciler/api/token.h"

#define NAME_BUF (STORE_NAME_MAX + 1)
#define WAITER_BUCKETS 4096
#define DP_URN_PREFIX "urn:meshca:dataplane:"
#define ACCEPT_PAUSE_MS 500     /* accept() out of descriptors or memory: try again after this */
#define ACCEPT_LOG_EVERY_MS 60000 /* and say so at most this often */

/* A blocking query parked until its dataplane's identity changes or its wait passes. */
typedef struct waiter {
    struct waiter *prev, *next;
    struct waiter_group *group;
    struct evhttp_request *req; /* owned by evhttp; valid until answered or closed */
    struct event *timer;
    struct event *peer; /* the socket turned readable: closed (or pipelining) */
    uint64_t index;
    api_auth_method method;  /* how the query authenticated: a certificate is checked */
    int64_t cert_not_before; /* against the identity of each answer (identity_since.h) */
} waiter;

/* The waiters of one (mesh, dataplane), in a hash bucket chain. */
typedef struct waiter_group {
    struct waiter_group *next;
    api_server *srv;
    unsigned bucket;
    waiter *head;
    size_t count;
    char mesh[NAME_BUF];
    char dataplane[NAME_BUF];
} waiter_group;

struct api_server {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *socket;
    api_server_options opts;
    uint16_t port;
    size_t max_waiters;
    size_t nwaiters;
    waiter_group *buckets[WAITER_BUCKETS];
    pki_p256_verifier *csr_verifier; /* the loop's CSR fast path (csr_check_fast); NULL: none */
    api_reject_log reject_log;       /* the lines of rejected requests, bounded */
    struct event *reject_flush;      /* says the suppressed count when its window ends; NULL:
                                      * said with the next rejected request instead */
    struct event *accept_resume;     /* re-enables accepting after a failed accept(); NULL: none */
    int64_t accept_logged_ms;        /* when a failed accept() was last said (monotonic), or 0 */
    struct api_server *next_listening; /* in `listening` (on_accept_error) */
    csr_limit *csr_limit;              /* CSRs per dataplane; NULL (no memory): not limited */
};

/* The servers whose listener has on_accept_error: libevent passes that callback the evhttp (the
 * listener's user data is evhttp's own), from which this finds the server. Few (one per
 * controller), so a list; the lock because servers are made and freed off the loop thread. */
static pthread_mutex_t listening_lock = PTHREAD_MUTEX_INITIALIZER;
static api_server *listening;

/* Path parameters of a request. */
typedef struct route_params {
    char mesh[NAME_BUF];
    char dataplane[NAME_BUF];
} route_params;

typedef struct request_ctx {
    api_server *srv;
    struct evhttp_request *req;
    const route_params *params;
    const api_principal *who;
} request_ctx;

typedef void (*route_fn)(request_ctx *rc);

/* ---- replies ------------------------------------------------------------------------------ */

static const char *status_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    default:
        return "Service Unavailable";
    }
}

/* Sends doc (a reference is taken) as the JSON body. */
static void send_json(struct evhttp_request *req, int status, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Content-Type", "application/json");
    evhttp_add_header(out, "Cache-Control", "no-store");
    struct evbuffer *body = evbuffer_new();
    if (!text || !body) {
        /* Out of memory: a bodiless 503 still tells the agent to come back. */
        free(text);
        if (body)
            evbuffer_free(body);
        evhttp_send_reply(req, 503, status_reason(503), NULL);
        return;
    }
    evbuffer_add(body, text, strlen(text));
    evbuffer_add(body, "\n", 1);
    free(text);
    evhttp_send_reply(req, status, status_reason(status), body);
    evbuffer_free(body);
}

static void send_error(struct evhttp_request *req, int status, const char *code, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));
static void send_error(struct evhttp_request *req, int status, const char *code, const char *fmt,
                       ...)
{
    char message[MESHCA_ERRBUF];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(message, sizeof(message), fmt, ap); /* a message may be cut, never overrun */
    va_end(ap);
    send_json(req, status, json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message));
}

static void log_rejected(api_server *srv, struct evhttp_request *req, int status,
                         const char *reason);
static int64_t monotonic_ms(void);

/* A handler's code as an HTTP error; a 401 (a certificate older than its identity) is logged as
 * the refusals of authenticate() are. */
static void send_code(api_server *srv, struct evhttp_request *req, int code, const char *message)
{
    switch (code) {
    case MESHCA_EINVAL:
        send_error(req, 400, "invalid", "%s", message);
        break;
    case MESHCA_EUNAUTHENTICATED:
        log_rejected(srv, req, 401, message);
        send_error(req, 401, "unauthenticated", "%s", message);
        break;
    case MESHCA_ENOTFOUND:
        send_error(req, 404, "not-found", "%s", message);
        break;
    case MESHCA_ECONFLICT:
    case MESHCA_ESTATE:
        send_error(req, 409, "conflict", "%s", message);
        break;
    default:
        send_error(req, 503, "unavailable", "%s", message[0] ? message : meshca_strerror(code));
        break;
    }
}

/* ---- request helpers ---------------------------------------------------------------------- */

static int64_t server_now(const api_server *srv)
{
    return srv->opts.now ? srv->opts.now(srv->opts.clock_ctx) : (int64_t)time(NULL);
}

/* The request body as a JSON object, or NULL after replying with the error. */
static json_t *read_json_body(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > API_MAX_BODY_BYTES) {
        send_error(req, 413, "too-large", "request body of %zu bytes is larger than %d bytes", len,
                   API_MAX_BODY_BYTES);
        return NULL;
    }
    char *text = malloc(len + 1);
    if (!text) {
        send_error(req, 503, "unavailable", "out of memory");
        return NULL;
    }
    ev_ssize_t got = evbuffer_copyout(in, text, len);
    json_error_t jerr;
    json_t *doc = got == (ev_ssize_t)len ? json_loadb(text, len, 0, &jerr) : NULL;
    free(text);
    if (!doc || !json_is_object(doc)) {
        json_decref(doc);
        send_error(req, 400, "invalid", "request body is not a JSON object");
        return NULL;
    }
    return doc;
}

/* ---- blocking queries --------------------------------------------------------------------- */

static unsigned bucket_of(const char *mesh_name, const char *dp_name)
{
    /* FNV-1a is enough: the names are the authenticated caller's own, so no one can flood a chain. */
    uint32_t h = 2166136261u;
    for (const char *p = mesh_name; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    h = (h ^ '/') * 16777619u;
    for (const char *p = dp_name; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h % WAITER_BUCKETS;
}

static waiter_group *find_group(api_server *srv, const char *mesh_name, const char *dp_name)
{
    for (waiter_group *g = srv->buckets[bucket_of(mesh_name, dp_name)]; g; g = g->next)
        if (strcmp(g->mesh, mesh_name) == 0 && strcmp(g->dataplane, dp_name) == 0)
            return g;
    return NULL;
}

static void on_waiter_closed(struct evhttp_connection *evcon, void *arg);

/* Unlinks and frees w (not its request); frees its group when empty. */
static void waiter_remove(waiter *w)
{
    waiter_group *g = w->group;
    api_server *srv = g->srv;
    struct evhttp_connection *evcon = evhttp_request_get_connection(w->req);
    if (evcon)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
    if (w->prev)
        w->prev->next = w->next;
    else
        g->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    g->count--;
    srv->nwaiters--;
    event_free(w->timer);
    if (w->peer)
        event_free(w->peer);
    free(w);
    if (g->count == 0) {
        waiter_group **pp = &srv->buckets[g->bucket];
        while (*pp != g)
            pp = &(*pp)->next;
        *pp = g->next;
        free(g);
    }
}

/* The handler's view of an identity, fetched before deciding whether to answer. */
typedef struct identity_answer {
    int rc;
    uint64_t generation;
    json_t *body;
    int64_t since; /* the record's, for a client certificate (identity_since.h) */
    char errbuf[MESHCA_ERRBUF];
} identity_answer;

/* A fetched answer for a query that authenticated with `method`: a client certificate the
 * identity no longer backs (the dataplane deleted and registered again, or no identity at all)
 * turns it into the 401, at once. The check rides on get_identity's read: no read of its own. */
static void check_cert(identity_answer *a, api_auth_method method, int64_t cert_not_before,
                       const char *mesh_name, const char *dp_name)
{
    if (a->rc < 0 || method != API_AUTH_CERT)
        return;
    int rc = identity_since_admits(a->since, mesh_name, dp_name, cert_not_before, a->errbuf);
    if (rc < 0) {
        json_decref(a->body);
        a->body = NULL;
        a->rc = rc;
    }
}

/* A query that authenticated with a token (method) and is answered after a wait: the token is
 * looked up again, from the request's own Authorization header, so a revoke or an expiry during
 * the wait gets the 401 a new request would, not the identity (SPEC S13: a revoke takes effect
 * at once). A store error answers 503, as authenticate() does. */
static void check_token(api_server *srv, struct evhttp_request *req, api_auth_method method,
                        const char *mesh_name, const char *dp_name, identity_answer *a)
{
    if (a->rc < 0 || method != API_AUTH_TOKEN)
        return;
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    char err[MESHCA_ERRBUF] = "";
    token_info info;
    int rc = auth && strlen(auth) > 7
                 ? token_verify(srv->opts.tokens, auth + 7, mesh_name, server_now(srv), &info, err)
                 : meshca_fail(err, MESHCA_EINVAL, "token: malformed bearer token");
    if (rc == 0 && (strcmp(info.mesh, mesh_name) != 0 || strcmp(info.dataplane, dp_name) != 0))
        rc = meshca_fail(err, MESHCA_ENOTFOUND, "token: unknown or revoked token");
    if (rc == 0)
        return;
    json_decref(a->body);
    a->body = NULL;
    a->rc = rc == MESHCA_EINVAL || rc == MESHCA_ENOTFOUND || rc == MESHCA_EEXPIRED
                ? MESHCA_EUNAUTHENTICATED
                : rc;
    snprintf(a->errbuf, sizeof(a->errbuf), "%s", err);
}

/* Fetches the identity; 1 when it should be answered now (final: the wait is over, answer
 * whatever there is; or a refused certificate), 0 when the query should wait on (and a->body is
 * released). */
static int fetch_identity(api_server *srv, api_auth_method method, int64_t cert_not_before,
                          const char *mesh_name, const char *dp_name, uint64_t index, int final,
                          identity_answer *a)
{
    a->errbuf[0] = '\0';
    a->generation = 0;
    a->body = NULL;
    a->since = 0;
    a->rc = srv->opts.handlers->get_identity(srv->opts.handlers->ctx, mesh_name, dp_name,
                                             &a->generation, &a->body, &a->since, a->errbuf);
    check_cert(a, method, cert_not_before, mesh_name, dp_name);
    if (a->rc == 0 && !final && (a->generation <= index || !a->body)) {
        json_decref(a->body);
        a->body = NULL;
        return 0;
    }
    return 1;
}

/* Sends a fetched identity (takes a->body). */
static void send_identity(api_server *srv, struct evhttp_request *req, const char *mesh_name,
                          const char *dp_name, identity_answer *a)
{
    if (a->rc < 0) {
        send_code(srv, req, a->rc, a->errbuf);
        return;
    }
    if (!a->body) {
        send_error(req, 404, "not-issued", "no certificate has been issued to %s/%s yet", mesh_name,
                   dp_name);
        return;
    }
    char idx[24];
    snprintf(idx, sizeof(idx), "%" PRIu64, a->generation);
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Meshca-Index", idx);
    send_json(req, 200, a->body);
    a->body = NULL;
}

/* Answers a parked query when its identity is ready (or final); 1 when answered. The waiter is
 * removed before the reply is sent: a reply can fail at once and free the request with its
 * connection, so nothing may touch w->req after it. */
static int waiter_answer(waiter *w, int final)
{
    waiter_group *g = w->group;
    identity_answer a;
    if (!fetch_identity(g->srv, w->method, w->cert_not_before, g->mesh, g->dataplane, w->index,
                        final, &a))
        return 0;
    check_token(g->srv, w->req, w->method, g->mesh, g->dataplane, &a);
    char mesh_name[NAME_BUF], dp_name[NAME_BUF];
    memcpy(mesh_name, g->mesh, sizeof(mesh_name));
    memcpy(dp_name, g->dataplane, sizeof(dp_name));
    struct evhttp_request *req = w->req;
    api_server *srv = g->srv;
    waiter_remove(w); /* may free g */
    send_identity(srv, req, mesh_name, dp_name, &a);
    return 1;
}

static void on_waiter_timeout(evutil_socket_t fd, short what, void *arg)
{
    waiter_answer(arg, 1);
}

/* evhttp does not read while a request awaits its reply, so it would notice an agent that hung
 * up only when the wait ends; a parked query would hold its memory that long. Anything the agent
 * sends meanwhile (TLS close_notify, FIN, or a pipelined request) ends the wait: answer now. */
static void on_peer_activity(evutil_socket_t fd, short what, void *arg)
{
    waiter_answer(arg, 1);
}

static void on_waiter_closed(struct evhttp_connection *evcon, void *arg)
{
    /* The agent went away: evhttp frees the request next, so forget it without answering. */
    waiter_remove(arg);
}

/* Parks req; replies with an error itself when it cannot. */
static void park(api_server *srv, struct evhttp_request *req, const api_principal *who,
                 const char *mesh_name, const char *dp_name, uint64_t index, int wait_s)
{
    waiter_group *g = find_group(srv, mesh_name, dp_name);
    if (srv->nwaiters >= srv->max_waiters) {
        send_error(req, 429, "too-many-waiters",
                   "the controller holds %zu blocking queries; "
                   "retry later",
                   srv->nwaiters);
        return;
    }
    if (g && g->count >= API_MAX_WAITERS_PER_DATAPLANE) {
        send_error(req, 429, "too-many-waiters", "%s/%s already has %d blocking queries open",
                   mesh_name, dp_name, API_MAX_WAITERS_PER_DATAPLANE);
        return;
    }
    waiter *w = calloc(1, sizeof(*w));
    int fresh_group = !g;
    if (!g) {
        g = calloc(1, sizeof(*g));
        if (g) {
            g->srv = srv;
            g->bucket = bucket_of(mesh_name, dp_name);
            snprintf(g->mesh, sizeof(g->mesh), "%s", mesh_name);
            snprintf(g->dataplane, sizeof(g->dataplane), "%s", dp_name);
        }
    }
    if (w && g)
        w->timer = evtimer_new(srv->base, on_waiter_timeout, w);
    struct timeval tv = {wait_s, 0};
    if (!w || !g || !w->timer || evtimer_add(w->timer, &tv) < 0) {
        if (w && w->timer)
            event_free(w->timer);
        free(w);
        if (fresh_group)
            free(g);
        send_error(req, 503, "unavailable", "out of memory");
        return;
    }
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evhttp_request_get_connection(req));
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd >= 0) {
        w->peer = event_new(srv->base, fd, EV_READ, on_peer_activity, w);
        if (w->peer && event_add(w->peer, NULL) < 0) {
            event_free(w->peer);
            w->peer = NULL; /* the timer still ends the wait */
        }
    }
    if (fresh_group) {
        g->next = srv->buckets[g->bucket];
        srv->buckets[g->bucket] = g;
    }
    w->group = g;
    w->req = req;
    w->index = index;
    w->method = who->method;
    w->cert_not_before = who->cert_not_before;
    w->next = g->head;
    if (g->head)
        g->head->prev = w;
    g->head = w;
    g->count++;
    srv->nwaiters++;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_waiter_closed, w);
}

void api_server_notify(api_server *srv, const char *mesh_name, const char *dp_name)
{
    if (!srv || !mesh_name || !dp_name)
        return;
    waiter_group *g = find_group(srv, mesh_name, dp_name);
    if (!g)
        return;
    /* Take the list out first: answering removes waiters, and the group may be freed. */
    size_t n = g->count;
    waiter **list = calloc(n, sizeof(*list));
    if (!list)
        return; /* the waiters still get their answer when their wait passes */
    size_t k = 0;
    for (waiter *w = g->head; w && k < n; w = w->next)
        list[k++] = w;
    const api_handlers *h = srv->opts.handlers;
    uint64_t gen = 0;
    char gerr[MESHCA_ERRBUF] = "";
    if (h->identity_generation && h->identity_generation(h->ctx, g->mesh, g->dataplane, &gen, gerr) == 0) {
        /* Nothing to answer unless some query waits below the generation now stored. */
        size_t below = 0;
        for (size_t i = 0; i < k; i++)
            below += list[i]->index < gen;
        if (!below) {
            free(list);
            return;
        }
    }
    /* One read of the identity for all its waiters (each read is a store read of the identity
     * and the bundle: with several agents parked per dataplane, a read per waiter was most of
     * the loop's time per signing in bench-api with 10,000 parked). */
    identity_answer a;
    a.errbuf[0] = '\0';
    a.generation = 0;
    a.body = NULL;
    a.since = 0;
    a.rc = srv->opts.handlers->get_identity(srv->opts.handlers->ctx, mesh_name, dp_name,
                                            &a.generation, &a.body, &a.since, a.errbuf);
    for (size_t i = 0; i < k; i++) {
        waiter *w = list[i];
        identity_answer mine = a;
        /* As fetch_identity: a refused certificate answers at once; a waiter stays parked until
         * its index is passed; errors answer. */
        mine.body = NULL;
        check_cert(&mine, w->method, w->cert_not_before, mesh_name, dp_name);
        if (mine.rc == 0 && (a.generation <= w->index || !a.body))
            continue;
        check_token(srv, w->req, w->method, mesh_name, dp_name, &mine);
        mine.body = mine.rc == 0 ? a.body : NULL;
        json_incref(mine.body);  /* send_identity takes one reference */
        struct evhttp_request *req = w->req;
        waiter_remove(w); /* may free g */
        send_identity(srv, req, mesh_name, dp_name, &mine);
        json_decref(mine.body);  /* left when an error was sent instead */
    }
    json_decref(a.body);
    free(list);
}

size_t api_server_waiters(const api_server *srv)
{
    return srv ? srv->nwaiters : 0;
}

/* ---- handlers ----------------------------------------------------------------------------- */

static void route_healthz(request_ctx *rc)
{
    send_json(rc->req, 200, json_pack("{s:s}", "status", "ok"));
}

/* Readiness, unlike liveness (/healthz): 503 while this replica cannot serve, so a load balancer
 * or Kubernetes sends agents to another one meanwhile. */
static void route_readyz(request_ctx *rc)
{
    const api_handlers *h = rc->srv->opts.handlers;
    char errbuf[MESHCA_ERRBUF] = "";
    const char *reason = h->ready ? h->ready(h->ctx, errbuf) : NULL;
    if (reason) {
        send_error(rc->req, 503, reason, "%s", errbuf);
        return;
    }
    send_json(rc->req, 200, json_pack("{s:s}", "status", "ready"));
}

static void route_metrics(request_ctx *rc)
{
    const api_handlers *h = rc->srv->opts.handlers;
    if (!h->metrics) {
        send_error(rc->req, 404, "not-found", "metrics are served on the --metrics address");
        return;
    }
    metrics_http_reply(rc->req, h->metrics, h->ctx);
}

/* A CSR POST answered later: its request until answered, NULL once the agent hung up. */
struct api_pending {
    struct evhttp_request *req;
    api_server *srv;   /* for the log of a refusal */
};

static void on_pending_closed(struct evhttp_connection *evcon, void *arg)
{
    /* evhttp frees the request with its connection: nothing to answer any more. */
    ((api_pending *)arg)->req = NULL;
}

void api_pending_done(api_pending *pending, int code, const char *message)
{
    if (!pending)
        return;
    struct evhttp_request *req = pending->req;
    api_server *srv = pending->srv;
    free(pending);
    if (!req)
        return;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
    if (code < 0)
        send_code(srv, req, code, message ? message : "");
    else
        send_json(req, 202, json_pack("{s:s}", "status", "accepted"));
}

static void route_csr(request_ctx *rc)
{
    const api_handlers *h = rc->srv->opts.handlers;
    const route_params *p = rc->params;
    json_t *doc = read_json_body(rc->req);
    if (!doc)
        return;
    json_t *csr = json_object_get(doc, "csr");
    if (!json_is_string(csr)) {
        json_decref(doc);
        send_error(rc->req, 400, "invalid-csr", "body: field 'csr' (a PEM string) is missing");
        return;
    }
    char errbuf[MESHCA_ERRBUF] = "";
    csr_key_type want;
    int code = h->key_type(h->ctx, p->mesh, p->dataplane, &want, errbuf);
    if (code < 0) {
        json_decref(doc);
        send_code(rc->srv, rc->req, code, errbuf);
        return;
    }
    unsigned char *spki = NULL;
    size_t spki_len = 0;
    code =
        csr_check_fast(rc->srv->csr_verifier, json_string_value(csr), json_string_length(csr), want,
                       &spki, &spki_len, errbuf);
    if (code == MESHCA_EINVAL) {
        json_decref(doc);
        send_error(rc->req, 400, "invalid-csr", "%s", errbuf);
        return;
    }
    if (code < 0) {
        json_decref(doc);
        send_code(rc->srv, rc->req, code, errbuf);
        return;
    }
    /* Each CSR taken costs a signature: a flood from one dataplane gets 429 past the burst. */
    int64_t retry_s = 0;
    if (!csr_limit_take(rc->srv->csr_limit, p->mesh, p->dataplane, monotonic_ms(), &retry_s)) {
        json_decref(doc);
        free(spki);
        char retry[24];
        snprintf(retry, sizeof(retry), "%lld", (long long)retry_s);
        evhttp_add_header(evhttp_request_get_output_headers(rc->req), "Retry-After", retry);
        send_error(rc->req, 429, "too-many-csrs",
                   "%s/%s sent more than %d CSRs (one per %d s after them); retry in %lld s",
                   p->mesh, p->dataplane, API_CSR_BURST, API_CSR_INTERVAL_MS / 1000,
                   (long long)retry_s);
        return;
    }
    if (h->submit_csr_later) {
        /* Answered when the key is durable (group commit, off the loop). */
        api_pending *pending = calloc(1, sizeof(*pending));
        struct evhttp_connection *evcon = evhttp_request_get_connection(rc->req);
        code = pending ? h->submit_csr_later(h->ctx, rc->who, p->mesh, p->dataplane, spki,
                                             spki_len, json_string_value(csr), pending, errbuf)
                       : meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
        json_decref(doc);
        free(spki);
        if (code < 0) {
            free(pending);
            send_code(rc->srv, rc->req, code, errbuf);
            return;
        }
        pending->req = rc->req;
        pending->srv = rc->srv;
        if (evcon)
            evhttp_connection_set_closecb(evcon, on_pending_closed, pending);
        return;
    }
    code = h->submit_csr(h->ctx, rc->who, p->mesh, p->dataplane, spki, spki_len,
                         json_string_value(csr), errbuf);
    json_decref(doc);
    free(spki);
    if (code < 0) {
        send_code(rc->srv, rc->req, code, errbuf);
        return;
    }
    send_json(rc->req, 202, json_pack("{s:s}", "status", "accepted"));
}

/* "?index=N&wait=D": 0 or -1 after replying 400. */
static int parse_blocking_query(struct evhttp_request *req, uint64_t *ret_index, int *ret_wait)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (query && evhttp_parse_query_str(query, &q) < 0) {
        send_error(req, 400, "invalid", "unparsable query string");
        return -1;
    }
    const char *index = evhttp_find_header(&q, "index");
    const char *wait = evhttp_find_header(&q, "wait");
    uint64_t idx = 0;
    int64_t wait_ms = (int64_t)API_DEFAULT_WAIT_S * 1000;
    int rc = 0;
    if (index) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(index, &end, 10);
        if (errno || !end || *end || end == index || index[0] == '-') {
            send_error(req, 400, "invalid", "query: index must be a generation number");
            rc = -1;
        }
        idx = v;
    }
    if (rc == 0 && wait && model_parse_duration(wait, &wait_ms) < 0) {
        send_error(req, 400, "invalid", "query: wait must be a duration like 60s");
        rc = -1;
    }
    evhttp_clear_headers(&q);
    if (rc < 0)
        return rc;
    if (wait_ms > (int64_t)API_MAX_WAIT_S * 1000)
        wait_ms = (int64_t)API_MAX_WAIT_S * 1000;
    *ret_index = idx;
    /* Whole seconds, at least one, so a ?wait=500ms query still parks. */
    *ret_wait = index ? (int)((wait_ms + 999) / 1000) : 0;
    return 0;
}

static void route_identity(request_ctx *rc)
{
    uint64_t index = 0;
    int wait_s = 0;
    if (parse_blocking_query(rc->req, &index, &wait_s) < 0)
        return;
    const route_params *p = rc->params;
    /* Without ?index the query does not block: Consul's convention. */
    identity_answer a;
    if (fetch_identity(rc->srv, rc->who->method, rc->who->cert_not_before, p->mesh, p->dataplane,
                       index, wait_s == 0, &a))
        send_identity(rc->srv, rc->req, p->mesh, p->dataplane, &a);
    else
        park(rc->srv, rc->req, rc->who, p->mesh, p->dataplane, index, wait_s);
}

static void route_ack(request_ctx *rc)
{
    const api_handlers *h = rc->srv->opts.handlers;
    json_t *doc = read_json_body(rc->req);
    if (!doc)
        return;
    json_t *gen = json_object_get(doc, "generation");
    json_int_t g = json_is_integer(gen) ? json_integer_value(gen) : -1;
    json_decref(doc);
    if (g < 1) {
        send_error(rc->req, 400, "invalid", "body: field 'generation' must be a positive integer");
        return;
    }
    char errbuf[MESHCA_ERRBUF] = "";
    int code = h->ack(h->ctx, rc->who, rc->params->mesh, rc->params->dataplane, (uint64_t)g,
                      errbuf);
    if (code < 0) {
        send_code(rc->srv, rc->req, code, errbuf);
        return;
    }
    send_json(rc->req, 200, json_pack("{s:I}", "generation", g));
}

static void route_roots(request_ctx *rc)
{
    const api_handlers *h = rc->srv->opts.handlers;
    char errbuf[MESHCA_ERRBUF] = "";
    json_t *doc = NULL;
    int code = h->roots(h->ctx, rc->params->mesh, &doc, errbuf);
    if (code < 0) {
        send_code(rc->srv, rc->req, code, errbuf);
        return;
    }
    send_json(rc->req, 200, doc);
}

/* ---- routing ------------------------------------------------------------------------------ */

typedef enum route_auth {
    AUTH_NONE,      /* anyone */
    AUTH_MESH,      /* any dataplane of the URL's mesh */
    AUTH_DATAPLANE, /* only the URL's dataplane */
} route_auth;

typedef struct route {
    enum evhttp_cmd_type method;
    const char *pattern; /* segments; "{mesh}" and "{dp}" capture a name */
    route_auth auth;
    route_fn fn;
} route;

static const route routes[] = {
    {EVHTTP_REQ_GET, "/healthz", AUTH_NONE, route_healthz},
    {EVHTTP_REQ_GET, "/readyz", AUTH_NONE, route_readyz},
    {EVHTTP_REQ_GET, "/metrics", AUTH_NONE, route_metrics},
    {EVHTTP_REQ_POST, "/v1/meshes/{mesh}/dataplanes/{dp}/csr", AUTH_DATAPLANE, route_csr},
    {EVHTTP_REQ_GET, "/v1/meshes/{mesh}/dataplanes/{dp}/identity", AUTH_DATAPLANE, route_identity},
    {EVHTTP_REQ_PUT, "/v1/meshes/{mesh}/dataplanes/{dp}/ack", AUTH_DATAPLANE, route_ack},
    {EVHTTP_REQ_GET, "/v1/meshes/{mesh}/roots", AUTH_MESH, route_roots},
};

/* 1 when path matches pattern (captures into *p), 0 otherwise; -1 when a captured name is not a
 * valid name. */
static int match(const char *pattern, const char *path, route_params *p)
{
    while (*pattern && *path) {
        if (*pattern != '/' || *path != '/')
            return 0;
        pattern++;
        path++;
        size_t plen = strcspn(pattern, "/"), slen = strcspn(path, "/");
        if (pattern[0] == '{') {
            char *dst = strncmp(pattern, "{mesh}", plen) == 0 ? p->mesh : p->dataplane;
            if (slen == 0 || slen >= NAME_BUF)
                return slen == 0 ? 0 : -1;
            memcpy(dst, path, slen);
            dst[slen] = '\0';
            if (!store_name_valid(dst))
                return -1;
        } else if (plen != slen || strncmp(pattern, path, plen) != 0) {
            return 0;
        }
        pattern += plen;
        path += slen;
    }
    return *pattern == '\0' && *path == '\0';
}

/* The dataplane named by a verified client certificate: its URI SANs hold
 * "urn:meshca:dataplane:<mesh>:<dp>" and "spiffe://<mesh>/...". 0, or -1 with a reason. */
static int cert_names(X509 *leaf, char *mesh_name, char *dp_name, char *errbuf)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    int found = 0, spiffe_ok = 0, spiffe_other = 0;
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type != GEN_URI)
            continue;
        const char *uri = (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        int ulen = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        if (!uri || ulen <= 0 || memchr(uri, '\0', (size_t)ulen))
            continue;
        char buf[2 * NAME_BUF + 64];
        if ((size_t)ulen >= sizeof(buf))
            continue;
        memcpy(buf, uri, (size_t)ulen);
        buf[ulen] = '\0';
        if (strncmp(buf, DP_URN_PREFIX, strlen(DP_URN_PREFIX)) == 0 && !found) {
            char *m = buf + strlen(DP_URN_PREFIX), *colon = strchr(m, ':');
            if (!colon)
                continue;
            *colon = '\0';
            if (!store_name_valid(m) || !store_name_valid(colon + 1))
                continue;
            /* store_name_valid() bounds both names below NAME_BUF. */
            memcpy(mesh_name, m, strlen(m) + 1);
            memcpy(dp_name, colon + 1, strlen(colon + 1) + 1);
            found = 1;
        }
    }
    /* Second pass: every spiffe:// SAN must be of the same trust domain (the mesh). */
    for (int i = 0; found && sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type != GEN_URI)
            continue;
        const char *uri = (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        size_t ulen = (size_t)ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        if (ulen < 9 || strncmp(uri, "spiffe://", 9) != 0)
            continue;
        size_t mlen = strlen(mesh_name);
        if (ulen >= 9 + mlen + 1 && strncmp(uri + 9, mesh_name, mlen) == 0 && uri[9 + mlen] == '/')
            spiffe_ok = 1;
        else
            spiffe_other = 1;
    }
    GENERAL_NAMES_free(sans);
    if (!found)
        return meshca_fail(errbuf, -1,
                           "client certificate names no dataplane (no URI SAN " DP_URN_PREFIX
                           "<mesh>:<dataplane>)");
    if (!spiffe_ok || spiffe_other)
        return meshca_fail(errbuf, -1,
                           "client certificate's spiffe:// SANs do not all belong "
                           "to mesh '%s'",
                           mesh_name);
    return 0;
}

/* Verifies the peer's chain against the bundle of the mesh it names; its notBefore in
 * *ret_not_before (the handlers check it against the identity's `since`). 0 or -1 with a
 * reason. */
static int authenticate_cert(api_server *srv, SSL *ssl, char *mesh_name, char *dp_name,
                             int64_t *ret_not_before, char *errbuf)
{
    X509 *leaf = SSL_get0_peer_certificate(ssl);
    if (!leaf)
        return meshca_fail(errbuf, -1,
                           "authentication required: send a dataplane token "
                           "(Authorization: Bearer) or the dataplane's client certificate");
    if (cert_names(leaf, mesh_name, dp_name, errbuf) < 0)
        return -1;
    const api_handlers *h = srv->opts.handlers;
    char *bundle = NULL;
    char herr[MESHCA_ERRBUF] = "";
    if (h->trust_bundle(h->ctx, mesh_name, &bundle, herr) < 0)
        return meshca_fail(errbuf, -1, "no trust bundle for mesh '%s': %s", mesh_name, herr);

    int rc = -1;
    ERR_clear_error();
    X509_STORE *trust = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    BIO *bio = BIO_new_mem_buf(bundle, -1);
    X509 *ca = NULL;
    int ncas = 0;
    if (!trust || !ctx || !bio) {
        meshca_fail(errbuf, -1, "out of memory");
        goto out;
    }
    while ((ca = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
        X509_STORE_add_cert(trust, ca);
        X509_free(ca);
        ncas++;
    }
    ERR_clear_error(); /* the read loop ends with a "no start line" */
    if (ncas == 0) {
        meshca_fail(errbuf, -1, "mesh '%s' has no CA certificates to verify against", mesh_name);
        goto out;
    }
    if (!X509_STORE_CTX_init(ctx, trust, leaf, SSL_get_peer_cert_chain(ssl))) {
        meshca_fail(errbuf, -1, "cannot verify the client certificate");
        goto out;
    }
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), (time_t)server_now(srv));
    if (X509_verify_cert(ctx) != 1) {
        meshca_fail(errbuf, -1, "client certificate does not verify against mesh '%s': %s",
                    mesh_name, X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        goto out;
    }
    if (pki_cert_not_before(leaf, ret_not_before) < 0) {
        meshca_fail(errbuf, -1, "client certificate has an unreadable notBefore");
        goto out;
    }
    rc = 0;
out:
    ERR_clear_error();
    BIO_free(bio);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(trust);
    free(bundle);
    return rc;
}

/* ---- the log of rejected requests ---------------------------------------------------------- */

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    default:
        return "?";
    }
}

static void say_suppressed(api_server *srv, uint64_t n)
{
    char line[160];
    snprintf(line, sizeof(line),
             "api: %llu more rejected request%s (401/403) not logged in the last second "
             "(meshca_api_requests_total counts every one)",
             (unsigned long long)n, n == 1 ? "" : "s");
    srv->opts.handlers->log(srv->opts.handlers->ctx, line);
}

static void on_reject_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    api_server *srv = arg;
    uint64_t n = api_reject_log_take(&srv->reject_log);
    if (n)
        say_suppressed(srv, n);
}

/* One line for a request answered 401 or 403 (called before the answer: req is valid). Only
 * routed requests get here, so the path is a route's with checked names, nothing a client can
 * shape into a fake line; the reason is the message sent to the client (never the token). */
static void log_rejected(api_server *srv, struct evhttp_request *req, int status, const char *reason)
{
    const api_handlers *h = srv->opts.handlers;
    if (!h->log)
        return;
    int64_t now = monotonic_ms();
    uint64_t flushed = 0;
    bool admitted = api_reject_log_admit(&srv->reject_log, now, &flushed);
    if (flushed)
        say_suppressed(srv, flushed);
    if (!admitted) {
        if (srv->reject_flush && !evtimer_pending(srv->reject_flush, NULL)) {
            int64_t left = api_reject_log_window_left_ms(&srv->reject_log, now);
            struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
            evtimer_add(srv->reject_flush, &tv);
        }
        return;
    }
    char *addr = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon)
        evhttp_connection_get_peer(evcon, &addr, &port);
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    bool v6 = addr && strchr(addr, ':');
    char line[MESHCA_ERRBUF + 6 * NAME_BUF + 200];
    snprintf(line, sizeof(line), "api: rejected %s %s from %s%s%s:%u: %d %s: %s",
             method_name(evhttp_request_get_command(req)), path ? path : "?", v6 ? "[" : "",
             addr ? addr : "?", v6 ? "]" : "", (unsigned)port, status,
             status == 401 ? "unauthenticated" : "forbidden", reason);
    h->log(h->ctx, line);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    api_server *srv = arg;
    evconnlistener_enable(evhttp_bound_socket_get_listener(srv->socket));
}

/* accept() failed in a way libevent does not retry by itself: out of file descriptors (EMFILE,
 * ENFILE: a flood of connections) or of memory. Its listener is level-triggered, so left enabled
 * it calls accept() again at once, in a loop that took the loop's CPU and wrote libevent's
 * warning per call (100 MB of log in 6 s). Accepting pauses instead; the connections already
 * open are served meanwhile, and the descriptors they free let the next accept through. */
static void on_accept_error(struct evconnlistener *lis, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    api_server *srv = NULL;
    pthread_mutex_lock(&listening_lock);
    for (srv = listening; srv && srv->http != arg; srv = srv->next_listening)
        ;
    pthread_mutex_unlock(&listening_lock);
    if (!srv)
        return; /* cannot happen: a server is listed until its listener is freed */
    evconnlistener_disable(lis);
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    if (evtimer_add(srv->accept_resume, &tv) < 0)
        evconnlistener_enable(lis); /* cannot happen with a made timer; never stop accepting */
    const api_handlers *h = srv->opts.handlers;
    int64_t now = monotonic_ms();
    if (h->log && (!srv->accept_logged_ms || now - srv->accept_logged_ms >= ACCEPT_LOG_EVERY_MS)) {
        char line[256];
        snprintf(line, sizeof(line),
                 "api: cannot accept connections: %s; accepting again every %d ms meanwhile "
                 "(said at most once a minute)",
                 evutil_socket_error_to_string(err), ACCEPT_PAUSE_MS);
        h->log(h->ctx, line);
        srv->accept_logged_ms = now;
    }
}

/* Answers req with a 401 or 403 and logs it (log_rejected). */
static void reject(api_server *srv, struct evhttp_request *req, int status, const char *reason)
{
    log_rejected(srv, req, status, reason);
    send_error(req, status, status == 401 ? "unauthenticated" : "forbidden", "%s", reason);
}

/* Establishes who sent req into *who (names in the buffers). Replies 401/503 itself on failure. */
static int authenticate(api_server *srv, struct evhttp_request *req, SSL *ssl,
                        const route_params *p, char *mesh_name, char *dp_name, api_principal *who)
{
    char errbuf[MESHCA_ERRBUF] = "";
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (auth) {
        if (strncasecmp(auth, "Bearer ", 7) != 0) {
            reject(srv, req, 401, "Authorization must be 'Bearer <token>'");
            return -1;
        }
        token_info info;
        int rc = token_verify(srv->opts.tokens, auth + 7, p->mesh, server_now(srv), &info, errbuf);
        if (rc == MESHCA_EINVAL || rc == MESHCA_ENOTFOUND || rc == MESHCA_EEXPIRED) {
            reject(srv, req, 401, errbuf);
            return -1;
        }
        if (rc < 0) {
            send_error(req, 503, "unavailable", "%s", errbuf);
            return -1;
        }
        snprintf(mesh_name, NAME_BUF, "%s", info.mesh);
        snprintf(dp_name, NAME_BUF, "%s", info.dataplane);
        *who = (api_principal){mesh_name, dp_name, API_AUTH_TOKEN, 0};
        return 0;
    }
    int64_t not_before = 0;
    if (authenticate_cert(srv, ssl, mesh_name, dp_name, &not_before, errbuf) < 0) {
        reject(srv, req, 401, errbuf);
        return -1;
    }
    *who = (api_principal){mesh_name, dp_name, API_AUTH_CERT, not_before};
    return 0;
}

/* Every answered request (evhttp calls this once the reply is sent), for the request counters. */
static void on_request_done(struct evhttp_request *req, void *arg)
{
    api_server *srv = arg;
    const api_handlers *h = srv->opts.handlers;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    h->observe(h->ctx, metrics_api_path_class(path), evhttp_request_get_response_code(req));
}

static void on_request(struct evhttp_request *req, void *arg)
{
    api_server *srv = arg;
    if (srv->opts.handlers->observe)
        evhttp_request_set_on_complete_cb(req, on_request_done, srv);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    if (!ssl) {
        /* evhttp falls back to a plain socket when the TLS bufferevent could not be made. */
        send_error(req, 400, "tls-required", "this API is served over TLS only");
        return;
    }
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    route_params params = {"", ""};
    const route *found = NULL;
    int path_known = 0;
    for (size_t i = 0; path && i < sizeof(routes) / sizeof(routes[0]); i++) {
        int m = match(routes[i].pattern, path, &params);
        if (m < 0) {
            send_error(req, 400, "invalid", "invalid mesh or dataplane name in the path");
            return;
        }
        if (m == 0)
            continue;
        path_known = 1;
        if (routes[i].method == evhttp_request_get_command(req)) {
            found = &routes[i];
            break;
        }
    }
    if (!found) {
        if (path_known)
            send_error(req, 405, "method-not-allowed", "method not allowed on %s", path);
        else
            send_error(req, 404, "not-found", "no such endpoint");
        return;
    }

    char mesh_name[NAME_BUF] = "", dp_name[NAME_BUF] = "";
    api_principal who = {NULL, NULL, 0, 0};
    if (found->auth != AUTH_NONE) {
        if (authenticate(srv, req, ssl, &params, mesh_name, dp_name, &who) < 0)
            return;
        /* Every request acts for the mesh (and dataplane) of its URL, and only its own. */
        if (strcmp(who.mesh, params.mesh) != 0 ||
            (found->auth == AUTH_DATAPLANE && strcmp(who.dataplane, params.dataplane) != 0)) {
            char why[4 * NAME_BUF + 64];
            snprintf(why, sizeof(why), "the %s of dataplane %s/%s may not act for %s%s%s",
                     who.method == API_AUTH_TOKEN ? "token" : "certificate", who.mesh,
                     who.dataplane, params.mesh, found->auth == AUTH_DATAPLANE ? "/" : "",
                     found->auth == AUTH_DATAPLANE ? params.dataplane : "");
            reject(srv, req, 403, why);
            return;
        }
    }
    request_ctx rc = {srv, req, &params, &who};
    found->fn(&rc);
}

/* evhttp asks for each accepted connection's bufferevent: TLS on the accepted socket. */
static struct bufferevent *make_tls_bufferevent(struct event_base *base, void *arg)
{
    api_server *srv = arg;
    SSL *ssl = SSL_new(srv->opts.ssl_ctx);
    if (!ssl)
        return NULL;
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

int api_server_new(struct event_base *base, const api_server_options *opts, api_server **ret,
                   char *errbuf)
{
    if (!base || !opts || !ret || !opts->ssl_ctx || !opts->tokens || !opts->handlers ||
        !opts->address)
        return meshca_fail(errbuf, MESHCA_EINVAL, "api: missing server option");
    const api_handlers *h = opts->handlers;
    if (!h->key_type || !h->submit_csr || !h->get_identity || !h->ack || !h->roots ||
        !h->trust_bundle)
        return meshca_fail(errbuf, MESHCA_EINVAL, "api: incomplete handler table");
    api_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "api: out of memory");
    srv->base = base;
    srv->opts = *opts;
    srv->max_waiters = opts->max_waiters ? opts->max_waiters : API_DEFAULT_MAX_WAITERS;
    /* Without it (no memory) every CSR takes OpenSSL's generic path: slower, the same verdicts. */
    srv->csr_verifier = pki_p256_verifier_new();
    srv->reject_log = (api_reject_log)API_REJECT_LOG_INIT;
    srv->csr_limit = csr_limit_new();
    /* Without it (no memory) the suppressed count is said with the next rejected request. */
    srv->reject_flush = h->log ? evtimer_new(base, on_reject_flush, srv) : NULL;
    srv->http = evhttp_new(base);
    if (!srv->http) {
        if (srv->reject_flush)
            event_free(srv->reject_flush);
        pki_p256_verifier_free(srv->csr_verifier);
        csr_limit_free(srv->csr_limit);
        free(srv);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "api: cannot create the HTTP server");
    }
    evhttp_set_bevcb(srv->http, make_tls_bufferevent, srv);
    evhttp_set_gencb(srv->http, on_request, srv);
    evhttp_set_max_body_size(srv->http, API_HARD_BODY_BYTES);
    evhttp_set_max_headers_size(srv->http, API_MAX_HEADER_BYTES);
    evhttp_set_timeout(srv->http, opts->timeout_s > 0 ? opts->timeout_s : API_DEFAULT_TIMEOUT_S);
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                              EVHTTP_REQ_HEAD | EVHTTP_REQ_DELETE);
    srv->socket = evhttp_bind_socket_with_handle(srv->http, opts->address, opts->port);
    if (!srv->socket) {
        int e = errno;
        evhttp_free(srv->http);
        if (srv->reject_flush)
            event_free(srv->reject_flush);
        pki_p256_verifier_free(srv->csr_verifier);
        csr_limit_free(srv->csr_limit);
        free(srv);
        return meshca_fail(errbuf, MESHCA_EIO, "api: cannot listen on %s:%u: %s", opts->address,
                           (unsigned)opts->port, strerror(e));
    }
    /* Without the timer (no memory) libevent keeps its own handling of a failed accept(). */
    srv->accept_resume = evtimer_new(base, on_accept_resume, srv);
    if (srv->accept_resume) {
        pthread_mutex_lock(&listening_lock);
        srv->next_listening = listening;
        listening = srv;
        pthread_mutex_unlock(&listening_lock);
        evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(srv->socket), on_accept_error);
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    evutil_socket_t fd = evhttp_bound_socket_get_fd(srv->socket);
    /* Accepted sockets inherit it (Linux): an answer's TLS records go out at once instead of
     * waiting for the client's delayed ACK of the previous one (Nagle), ~40 ms per request on
     * a keep-alive connection. Best effort: without it answers are only slower. */
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    *ret = srv;
    return 0;
}

uint16_t api_server_port(const api_server *srv)
{
    return srv ? srv->port : 0;
}

void api_server_free(api_server *srv)
{
    if (!srv)
        return;
    for (unsigned b = 0; b < WAITER_BUCKETS; b++)
        while (srv->buckets[b]) {
            waiter *w = srv->buckets[b]->head;
            struct evhttp_request *req = w->req;
            waiter_remove(w);
            send_error(req, 503, "unavailable", "the controller is shutting down");
        }
    evhttp_free(srv->http);
    pthread_mutex_lock(&listening_lock);
    for (api_server **pp = &listening; *pp; pp = &(*pp)->next_listening)
        if (*pp == srv) {
            *pp = srv->next_listening;
            break;
        }
    pthread_mutex_unlock(&listening_lock);
    if (srv->reject_flush)
        event_free(srv->reject_flush);
    if (srv->accept_resume)
        event_free(srv->accept_resume);
    pki_p256_verifier_free(srv->csr_verifier);
    csr_limit_free(srv->csr_limit);
    free(srv);
}
