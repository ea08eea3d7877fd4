/* server.h - the dataplane API (SPEC S13): HTTPS on one libevent loop, auth, routing, blocking
 * queries. */
#ifndef MESHCA_API_SERVER_H
#define MESHCA_API_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "manifests/error.h"
#include "reconciler/api/csr.h"
#include "reconciler/api/metrics_http.h"
#include "reconciler/store.h"
#include "reconciler/store/identity_since.h"

struct event_base;

/* Limits (S13). */
#define API_MAX_BODY_BYTES (64 * 1024) /* larger request bodies get 413 */
/* evhttp's own limit: it refuses larger bodies while reading, with its own HTML 413, as libevent
 * 2.1 has no hook for that answer. Bodies between the two limits get our JSON 413. */
#define API_HARD_BODY_BYTES (2 * API_MAX_BODY_BYTES)
#define API_MAX_HEADER_BYTES (16 * 1024) /* all request headers together */
#define API_DEFAULT_TIMEOUT_S 30         /* read/idle timeout of a connection */
#define API_DEFAULT_WAIT_S 300           /* a blocking query without ?wait= */
#define API_MAX_WAIT_S 600               /* the longest ?wait= honoured (longer is clamped) */
#define API_DEFAULT_MAX_WAITERS 100000   /* parked blocking queries; more get 429 */
#define API_MAX_WAITERS_PER_DATAPLANE 8  /* per (mesh, dataplane); more get 429 */

/* Who made a request, as established by the authentication layer. Borrowed by handlers. */
typedef enum api_auth_method {
    API_AUTH_TOKEN = 1, /* Authorization: Bearer <dataplane token> */
    API_AUTH_CERT,      /* verified client certificate (mTLS) */
} api_auth_method;

typedef struct api_principal {
    const char *mesh;
    const char *dataplane;
    api_auth_method method;
    int64_t cert_not_before; /* API_AUTH_CERT: the certificate's notBefore (seconds) */
} api_principal;

/* A CSR POST whose answer a handler gives later (submit_csr_later). */
typedef struct api_pending api_pending;

/*
 * The controller's side, called on the loop thread; handlers must not block. ctx is the
 * controller's. Every function returns 0 or a MESHCA_E* code with a one-line message in errbuf
 * (MESHCA_ERRBUF bytes) that is sent to the agent, so it must hold no secret. Codes map to HTTP
 * statuses: EINVAL 400, EUNAUTHENTICATED 401, ENOTFOUND 404, ECONFLICT/ESTATE 409, EUNAVAILABLE
 * 503, anything else 503 (the agent retries). Outputs are new objects the server frees.
 */
typedef struct api_handlers {
    void *ctx;
    /* The key type the dataplane's mesh asks for (dpCert.keyType of the enabled backend). */
    int (*key_type)(void *ctx, const char *mesh_name, const char *dp_name, csr_key_type *ret,
                    char *errbuf);
    /* A checked public key (SubjectPublicKeyInfo DER, borrowed) to be signed for the dataplane
     * on the controller's next pass; 0 means accepted (202). csr_pem (borrowed) is the checked
     * request itself, for backends that sign CSRs (Vault keeps it in the identity record, S5);
     * nothing else may be taken from it. A client certificate (who) the identity no longer
     * backs is MESHCA_EUNAUTHENTICATED (store/identity_since.h). */
    int (*submit_csr)(void *ctx, const api_principal *who, const char *mesh_name,
                      const char *dp_name, const unsigned char *spki, size_t spki_len,
                      const char *csr_pem, char *errbuf);
    /* The dataplane's current identity: *ret_generation (0 = none issued yet, then *ret_body
     * stays NULL) and the S13 body {"generation","backend","certificate","chain","caBundle",
     * "notAfter","renewAt"}, and the record's `since` in *ret_since (0: not kept;
     * IDENTITY_SINCE_NONE: no record), against which the server checks a client certificate
     * (store/identity_since.h), for one read per request and one per notify. ENOTFOUND for an
     * unknown dataplane. */
    int (*get_identity)(void *ctx, const char *mesh_name, const char *dp_name,
                        uint64_t *ret_generation, json_t **ret_body, int64_t *ret_since,
                        char *errbuf);
    /* The agent's proxy loaded `generation`. A client certificate (who) the identity no longer
     * backs is MESHCA_EUNAUTHENTICATED, before anything is written. */
    int (*ack)(void *ctx, const api_principal *who, const char *mesh_name, const char *dp_name,
               uint64_t generation, char *errbuf);
    /* The mesh's roots document (S8 `roots`). */
    int (*roots)(void *ctx, const char *mesh_name, json_t **ret, char *errbuf);
    /* The mesh's trust bundle (PEM, malloc'd): client certificates are verified against it. */
    int (*trust_bundle)(void *ctx, const char *mesh_name, char **ret_pem, char *errbuf);
    /* Optional. The Prometheus exposition for GET /metrics (served without authentication, as
     * /healthz; doc/metrics.md); NULL: /metrics is 404. */
    metrics_http_render_fn metrics;
    /* Optional. Called once per answered request with its path class
     * (metrics_api_path_class) and HTTP status, for the request counters. */
    void (*observe)(void *ctx, const char *path_class, int status);
    /* Optional; used instead of submit_csr when set. As submit_csr, but 0 means the handler
     * took `pending` and answers it later, on the loop, exactly once, with api_pending_done
     * (202 once the key is durable, never before); < 0 refuses at once (pending not kept). */
    int (*submit_csr_later)(void *ctx, const api_principal *who, const char *mesh_name,
                            const char *dp_name, const unsigned char *spki, size_t spki_len,
                            const char *csr_pem, api_pending *pending, char *errbuf);
    /* Optional. The generation get_identity would give (0 = none issued), without building
     * the answer: a notify whose parked queries all wait above it reads nothing more (a CSR's
     * pending key, for one, is a write that changes no generation). < 0: get_identity decides. */
    int (*identity_generation)(void *ctx, const char *mesh_name, const char *dp_name,
                               uint64_t *ret_generation, char *errbuf);
    /* Optional. Whether this replica can serve (GET /readyz): NULL when it can, else a short
     * reason code (readiness.h), answered 503 with a line written to errbuf. NULL: always. */
    const char *(*ready)(void *ctx, char *errbuf);
    /* Optional. A line for the operator's log: one per rejected request (401, 403) with the
     * peer, method, path, status and reason, at most API_REJECT_LOG_PER_S a second, then one
     * "suppressed K" line (reject_log.h). Never a token, a header value or a key. */
    void (*log)(void *ctx, const char *line);
} api_handlers;

typedef struct api_server_options {
    SSL_CTX *ssl_ctx;                /* borrowed, outlives the server; see cpca_server_ctx() */
    const char *address;             /* e.g. "127.0.0.1" or "::1" */
    uint16_t port;                   /* 0: any free port (see api_server_port()) */
    store *tokens;                   /* borrowed: where dataplane tokens are looked up */
    const api_handlers *handlers;    /* borrowed */
    int64_t (*now)(void *clock_ctx); /* seconds since the epoch; NULL = time() */
    void *clock_ctx;
    int timeout_s;      /* read/idle timeout, 0 = API_DEFAULT_TIMEOUT_S */
    size_t max_waiters; /* 0 = API_DEFAULT_MAX_WAITERS */
} api_server_options;

#define API_SERVER_OPTIONS_INIT                                                                    \
    {                                                                                              \
        NULL, "127.0.0.1", 5690, NULL, NULL, NULL, NULL, 0, 0                                      \
    }

typedef struct api_server api_server;

/* Answers a CSR POST that submit_csr_later took: 202 when code is 0, else the error of code
 * with message (as a handler's). Frees pending; an agent that hung up meanwhile gets nothing.
 * Loop thread only, before api_server_free. */
void api_pending_done(api_pending *pending, int code, const char *message);

/*
 * Binds and starts serving on `base` (borrowed, outlives the server). Caller frees *ret with
 * api_server_free(). The process must ignore SIGPIPE (cmd/ does, process-wide): an answer
 * written to an agent that hung up must fail with EPIPE, not end the controller. MESHCA_EIO
 * when the address cannot be bound; MESHCA_EINVAL for missing options.
 */
int api_server_new(struct event_base *base, const api_server_options *opts, api_server **ret,
                   char *errbuf);

/* The bound port (useful after port 0). */
uint16_t api_server_port(const api_server *srv);

/*
 * The identity of (mesh, dataplane) may have changed: every blocking query parked on it asks
 * get_identity again and is answered when the generation is above its index. Loop thread only.
 */
void api_server_notify(api_server *srv, const char *mesh_name, const char *dp_name);

/* Parked blocking queries right now. */
size_t api_server_waiters(const api_server *srv);

/* Closes the listener and answers every parked query with 503. Accepts NULL. Connections are
 * freed in deferred callbacks: run the loop once more (EVLOOP_NONBLOCK) before event_base_free().
 */
void api_server_free(api_server *srv);

#endif
