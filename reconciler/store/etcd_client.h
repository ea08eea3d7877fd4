/* etcd_client.h - an etcd v3 client over its JSON gateway (libcurl + jansson): kv, txn, watch,
 * leases, failover. */
#ifndef MESHCA_ETCD_CLIENT_H
#define MESHCA_ETCD_CLIENT_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "manifests/error.h"

/*
 * Contract
 * --------
 * One etcd_client talks to one cluster through the gateway every etcd member serves on its
 * client URL (POST /v3/kv/range, /v3/kv/put, /v3/kv/deleterange, /v3/kv/txn, /v3/watch,
 * /v3/lease/grant|keepalive|revoke, /v3/maintenance/status). Keys and values are byte strings
 * (base64 on the wire); revisions are int64 (strings on the wire).
 *
 * Endpoints and failover: each endpoint has its own CURL handle, reused so its connection
 * stays open (keep-alive). A request goes to the endpoint that answered last; when it cannot be
 * reached (connect failure, timeout, 5xx, an etcd "unavailable"), the next endpoint is tried,
 * and after a round over every endpoint the client sleeps (exponential backoff) and tries
 * again, at most opts.rounds rounds. Reads, single puts and deletes and lease calls may be
 * replayed on another member whatever happened (a replay changes nothing a caller relies on).
 * A txn is moved to another member only when the first surely never received it (no
 * connection, or etcd's "no leader"); once it may have been applied, the failure is returned
 * as ETCD_EUNAVAILABLE with "outcome unknown", because a replay would fail its compares against
 * its own first write. Callers re-read and retry with compare-and-swap.
 *
 * Errors, one code per class (values from manifests/error.h):
 *   ETCD_EUNAVAILABLE  no member answered, or a write's outcome is unknown: retry with backoff.
 *                      Message: "no etcd member answered (HOST:PORT: why; HOST:PORT: why)".
 *   ETCD_ECONFLICT     a txn's compares failed (the failure branch ran; see etcd_txn).
 *   ETCD_ENOTFOUND     no such key (etcd_get) or lease.
 *   ETCD_EINVAL        a request etcd (or this client, before sending) refuses: too many ops,
 *                      too large, duplicate key in a txn, empty key, bad endpoint list.
 *   ETCD_ECOMPACTED    the requested revision was compacted: a watch or a paginated range
 *                      must start again from a fresh read (the compacted revision is returned).
 *   ETCD_EIO           anything else etcd reports (permission, auth, malformed answer).
 *   ETCD_ENOMEM        out of memory.
 * Messages are one line, name the endpoint(s) and quote etcd's own message; they never hold
 * a value, a key file's content or any credential.
 *
 * A client is for one thread; after fork() the child makes its own. Outputs (ret_*) are
 * written only on success (etcd_txn also writes its result on ETCD_ECONFLICT).
 */

enum {
    ETCD_OK = 0,
    ETCD_EINVAL = MESHCA_EINVAL,
    ETCD_ENOMEM = MESHCA_ENOMEM,
    ETCD_EIO = MESHCA_EIO,
    ETCD_ENOTFOUND = MESHCA_ENOTFOUND,
    ETCD_ECONFLICT = MESHCA_ECONFLICT,
    ETCD_EUNAVAILABLE = MESHCA_EUNAVAILABLE,
    /* The store's own code, so the store passes a compacted watch up unchanged. */
    ETCD_ECOMPACTED = MESHCA_ECOMPACTED,
};

/* etcd's own limits at their defaults (etcd --max-txn-ops, --max-request-bytes). A txn may
 * hold at most this many compares, and as many ops in each branch. */
#define ETCD_DEFAULT_MAX_TXN_OPS 128
#define ETCD_DEFAULT_MAX_REQUEST_BYTES (1536u * 1024u)
/* Client limits. */
#define ETCD_ENDPOINTS_MAX 16     /* endpoints in one list */
#define ETCD_ENDPOINT_LEN_MAX 255 /* one HOST:PORT */
#define ETCD_KEY_MAX 4096         /* bytes in one key: ours are far shorter */
#define ETCD_DEFAULT_MAX_RESPONSE (64u * 1024u * 1024u)
#define ETCD_DEFAULT_PAGE_LIMIT 256  /* keys per range request */
/* keys per keys-only request of a listing (about 130 bytes each in the answer) */
#define ETCD_DEFAULT_KEYS_PAGE_LIMIT 32768
#define ETCD_RANGE_MAX_KEYS 10000000 /* keys in one paginated range */

typedef struct etcd_client_options {
    const char *endpoints;   /* "HOST:PORT[,HOST:PORT...]", borrowed for etcd_client_new */
    int tls;                 /* 0: http:// (etcd://), 1: https:// (etcds://) */
    const char *cacert;      /* PEM file of the CA that signed the members (tls; NULL = system) */
    const char *cert;        /* client certificate PEM file (tls, optional) */
    const char *key;         /* its private key PEM file (tls, with cert) */
    long connect_timeout_ms; /* per connection attempt */
    long request_timeout_ms; /* per request (not for a watch stream) */
    unsigned rounds;         /* rounds over all endpoints before giving up, >= 1 */
    long backoff_initial_ms; /* sleep after the first failed round, doubled each round */
    long backoff_max_ms;
    size_t max_response;      /* bytes in one answer (or one watch message) */
    unsigned max_txn_ops;     /* the cluster's --max-txn-ops */
    size_t max_request_bytes; /* the cluster's --max-request-bytes */
    size_t page_limit;        /* keys per range request when paginating */
    size_t keys_page_limit;   /* keys per keys-only request of a paginated listing */
    int parallel_pages;       /* 1: a listing's value pages two at a time (two connections) */
    /* Injected sleep, so backoff is testable; NULL = nanosleep. */
    void (*sleep_ms)(void *userdata, long ms);
    void *sleep_userdata;
} etcd_client_options;

#define ETCD_CLIENT_OPTIONS_INIT                                                                   \
    {                                                                                              \
        .endpoints = NULL, .tls = 0, .cacert = NULL, .cert = NULL, .key = NULL,                    \
        .connect_timeout_ms = 2000, .request_timeout_ms = 10000, .rounds = 3,                      \
        .backoff_initial_ms = 100, .backoff_max_ms = 2000,                                         \
        .max_response = ETCD_DEFAULT_MAX_RESPONSE, .max_txn_ops = ETCD_DEFAULT_MAX_TXN_OPS,        \
        .max_request_bytes = ETCD_DEFAULT_MAX_REQUEST_BYTES,                                       \
        .page_limit = ETCD_DEFAULT_PAGE_LIMIT,                                                     \
        .keys_page_limit = ETCD_DEFAULT_KEYS_PAGE_LIMIT, .parallel_pages = 1,                     \
        .sleep_ms = NULL, .sleep_userdata = NULL,           \
    }

typedef struct etcd_client etcd_client;

/* One key-value as etcd returns it; key and value are malloc'ed and NUL-terminated (the NUL
 * not counted), owned by the array they are in. */
typedef struct etcd_kv {
    char *key;
    size_t key_len;
    char *value;
    size_t value_len;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
} etcd_kv;

/* Accepts NULL. Wipes values before freeing (they may be secrets). */
void etcd_kvs_free(etcd_kv *kvs, size_t n);

/*
 * Make a client. Checks the endpoint list (1..ETCD_ENDPOINTS_MAX entries, each HOST:PORT
 * with a port 1..65535, no scheme, no user info) and the TLS files' presence; connects to
 * nothing. Caller frees *ret with etcd_client_free().
 */
int etcd_client_new(const etcd_client_options *opts, etcd_client **ret, char *errbuf);
void etcd_client_free(etcd_client *c);

/* Number of endpoints, and "HOST:PORT" of one (borrowed, valid until etcd_client_free). */
size_t etcd_client_endpoint_count(const etcd_client *c);
const char *etcd_client_endpoint(const etcd_client *c, size_t i);

/* The limits a caller splitting work into txns must respect (from the options). */
unsigned etcd_client_max_txn_ops(const etcd_client *c);
size_t etcd_client_max_request_bytes(const etcd_client *c);

/*
 * The end of the range of every key starting with prefix (etcd's "range_end" for a prefix):
 * prefix with its last byte below 0xff incremented, trailing 0xff bytes dropped; a prefix of
 * only 0xff bytes (or empty) gives "\0" (1 byte), which etcd reads as "every key >= key".
 * out must hold len bytes (at least 1). Returns the length written.
 */
size_t etcd_prefix_end(const char *prefix, size_t len, char *out);

/* Read one key: ETCD_ENOTFOUND when absent. *ret_kv: caller frees with etcd_kvs_free(kv, 1).
 * ret_revision (may be NULL): the store revision of the read. */
int etcd_get(etcd_client *c, const char *key, size_t key_len, etcd_kv **ret_kv,
             int64_t *ret_revision, char *errbuf);

/*
 * Read every key in [key, range_end) (range_end NULL: the keys starting with key), sorted by
 * key, all at the revision of the first request, so the result is one consistent snapshot:
 * one request when the first page of opts.page_limit keys holds them all; otherwise the
 * remaining keys (keys only, pages of opts.keys_page_limit), then their values in pages of
 * opts.page_limit keys, each bounded by the keys listed (so etcd's work stays linear in the
 * keys, see etcd_client.c), two at a time with opts.parallel_pages. ETCD_ECOMPACTED if that revision is compacted meanwhile (start
 * again). Empty: *ret_kvs NULL, *ret_n 0. Caller frees with etcd_kvs_free().
 */
int etcd_range(etcd_client *c, const char *key, size_t key_len, const char *range_end,
               size_t range_end_len, etcd_kv **ret_kvs, size_t *ret_n, int64_t *ret_revision,
               char *errbuf);

/* As etcd_range over the keys starting with key, without the values (each value "", 0 bytes):
 * keys and revisions only, in pages of opts.keys_page_limit keys. */
int etcd_range_keys(etcd_client *c, const char *key, size_t key_len, etcd_kv **ret_kvs,
                    size_t *ret_n, int64_t *ret_revision, char *errbuf);

/* Keys etcd's index went through for this client's range requests so far: the sum of every
 * range answer's "count" (etcd counts every key of the requested range, whatever the limit). */
uint64_t etcd_client_range_keys(const etcd_client *c);

/* Write one key, attached to lease (0: none). ret_revision (may be NULL): the new revision. */
int etcd_put(etcd_client *c, const char *key, size_t key_len, const char *value, size_t value_len,
             int64_t lease, int64_t *ret_revision, char *errbuf);

/* Delete [key, range_end) (range_end NULL: only key). ret_deleted, ret_revision may be NULL. */
int etcd_delete_range(etcd_client *c, const char *key, size_t key_len, const char *range_end,
                      size_t range_end_len, int64_t *ret_deleted, int64_t *ret_revision,
                      char *errbuf);

typedef enum etcd_cmp_target {
    ETCD_CMP_VERSION,
    ETCD_CMP_CREATE_REVISION,
    ETCD_CMP_MOD_REVISION,
    ETCD_CMP_VALUE,
    ETCD_CMP_LEASE,
} etcd_cmp_target;

typedef enum etcd_cmp_result {
    ETCD_CMP_EQUAL,
    ETCD_CMP_GREATER,
    ETCD_CMP_LESS,
    ETCD_CMP_NOT_EQUAL,
} etcd_cmp_result;

/* One compare of a txn; strings borrowed for the call. number is used for every target but
 * ETCD_CMP_VALUE, which compares with value/value_len. */
typedef struct etcd_compare {
    etcd_cmp_target target;
    etcd_cmp_result result;
    const char *key;
    size_t key_len;
    int64_t number;
    const char *value;
    size_t value_len;
} etcd_compare;

typedef enum etcd_op_type {
    ETCD_OP_PUT,
    ETCD_OP_DELETE, /* key only (range_end NULL) or [key, range_end) */
    ETCD_OP_GET,    /* key only (range_end NULL) or [key, range_end); results in the txn result */
} etcd_op_type;

/* One op of a txn branch; strings borrowed for the call. */
typedef struct etcd_op {
    etcd_op_type type;
    const char *key;
    size_t key_len;
    const char *range_end;
    size_t range_end_len;
    const char *value; /* ETCD_OP_PUT */
    size_t value_len;
    int64_t lease; /* ETCD_OP_PUT: 0 = none */
} etcd_op;

typedef struct etcd_txn_request {
    const etcd_compare *compares;
    size_t ncompares;
    const etcd_op *success;
    size_t nsuccess;
    const etcd_op *failure;
    size_t nfailure;
} etcd_txn_request;

/* What a txn did. gets[i] is the result of the i-th ETCD_OP_GET of the branch that ran
 * (NULL kvs, 0 n when the key was absent). Free with etcd_txn_result_free(). */
typedef struct etcd_txn_get {
    etcd_kv *kvs;
    size_t n;
} etcd_txn_get;

typedef struct etcd_txn_result {
    int succeeded;    /* 1: compares held, success ops ran; 0: failure ops ran */
    int64_t revision; /* store revision after the txn */
    etcd_txn_get *gets;
    size_t ngets;
} etcd_txn_result;

void etcd_txn_result_free(etcd_txn_result *r); /* frees the contents; accepts NULL */

/*
 * Bytes a txn takes against --max-request-bytes, counted as etcd does on its protobuf
 * (keys, values, range ends, plus a small fixed cost per op and compare), so a caller can
 * cut a large pass into txns that fit.
 */
size_t etcd_txn_request_size(const etcd_txn_request *txn);

/*
 * Run one txn, atomically. Refused before sending (ETCD_EINVAL) when a list holds more than
 * max_txn_ops entries or the request exceeds max_request_bytes. Returns 0 when the compares
 * held, ETCD_ECONFLICT when they did not (the failure branch ran); in both cases *ret (may
 * be NULL) is filled and the caller frees it with etcd_txn_result_free().
 */
int etcd_txn(etcd_client *c, const etcd_txn_request *txn, etcd_txn_result *ret, char *errbuf);

/* Compact the history up to revision (physical: wait until it is removed from disk). */
int etcd_compact(etcd_client *c, int64_t revision, int physical, char *errbuf);

/* Leases. grant: ttl_s seconds (etcd may raise it to its minimum), *ret_id the lease, *ret_ttl
 * (may be NULL) the TTL granted. keepalive: one refresh; *ret_ttl the new TTL; ETCD_ENOTFOUND
 * when the lease has expired or was revoked. revoke: deletes every key attached. */
int etcd_lease_grant(etcd_client *c, int64_t ttl_s, int64_t *ret_id, int64_t *ret_ttl,
                     char *errbuf);
int etcd_lease_keepalive(etcd_client *c, int64_t id, int64_t *ret_ttl, char *errbuf);
int etcd_lease_revoke(etcd_client *c, int64_t id, char *errbuf);

/* Health of one member, asked directly (no failover): 0 when it answers and knows a leader. */
typedef struct etcd_member_status {
    char version[32];
    uint64_t member_id;
    uint64_t leader_id; /* 0: the member sees no leader */
    int64_t revision;
    int64_t db_size;
} etcd_member_status;

int etcd_member_status_get(etcd_client *c, size_t endpoint, etcd_member_status *ret, char *errbuf);

/* Health of the cluster: 0 when some member answers (with failover) and has a leader. */
int etcd_health(etcd_client *c, char *errbuf);

/*
 * Watch [key, range_end) (range_end NULL: the keys starting with key) from start_revision
 * (0: from now). The stream is resumed by itself when its connection drops, on any endpoint,
 * from the revision after the last event delivered, so no event is lost or repeated.
 */
typedef enum etcd_event_type {
    ETCD_EVENT_PUT,
    ETCD_EVENT_DELETE,
} etcd_event_type;

typedef struct etcd_event {
    etcd_event_type type;
    etcd_kv kv; /* for a delete: key and mod_revision (the delete's revision) only */
} etcd_event;

typedef struct etcd_watch etcd_watch;

/* Connects nothing yet; the first etcd_watch_next does. Free with etcd_watch_free(). */
int etcd_watch_new(etcd_client *c, const char *key, size_t key_len, const char *range_end,
                   size_t range_end_len, int64_t start_revision, etcd_watch **ret, char *errbuf);
void etcd_watch_free(etcd_watch *w);

/*
 * Wait at most timeout_ms (0: only what is ready) for events. 0 with *ret_n 0 on timeout.
 * Events come in revision order; free with etcd_events_free(). ETCD_EUNAVAILABLE when no
 * member could be reached within timeout_ms (the watch stays usable: call again later).
 * ETCD_ECOMPACTED when the revision to resume from is compacted: *ret_compact (when not NULL)
 * gets etcd's compact revision; the caller must re-read and watch again from a new revision.
 */
int etcd_watch_next(etcd_watch *w, long timeout_ms, etcd_event **ret_events, size_t *ret_n,
                    int64_t *ret_compact, char *errbuf);

/* The revision the watch resumes from: one past the last event delivered. */
int64_t etcd_watch_next_revision(const etcd_watch *w);

void etcd_events_free(etcd_event *ev, size_t n);

/*
 * For one event loop with many sources: fills fds (at most max) with the sockets the watch
 * waits on, and *ret_timeout_ms with the longest the loop may wait (-1: only for the sockets).
 * When a socket is ready or the time has passed, the loop calls etcd_watch_next(w, 0, ...),
 * which never blocks. Returns how many fds were filled; 0 with timeout 0 means "call
 * etcd_watch_next now". Valid until the next etcd_watch_next.
 */
size_t etcd_watch_pollfds(etcd_watch *w, struct pollfd *fds, size_t max, long *ret_timeout_ms);

#endif
