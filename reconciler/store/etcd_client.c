/* etcd_client.c - etcd v3 JSON-gateway client: requests with failover and backoff, kv, txn, leases,
 * watch streams. */
#define _GNU_SOURCE 1
#include "reconciler/store/etcd_client.h"
#include "reconciler/store/etcd_range_json.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Bytes kept of one member's last failure, for "no etcd member answered (...)". */
#define WHY_LEN 160

struct endpoint {
    char hostport[ETCD_ENDPOINT_LEN_MAX + 1];
    CURL *h; /* reused for every request, so its connection is kept alive */
};

struct etcd_client {
    etcd_client_options opts; /* string fields point at our own copies below */
    char *cacert, *cert, *key;
    struct endpoint ep[ETCD_ENDPOINTS_MAX];
    size_t n;
    size_t current; /* the endpoint that answered last: tried first */
    uint64_t range_keys; /* sum of the "count" of every range answer (etcd_client_range_keys) */
    struct curl_slist *headers;
    CURL *side;   /* a second connection, for value pages read two at a time (etcd_range) */
    CURLM *multi; /* runs the current endpoint's handle and side at once */
};

/* A growing response buffer with a hard limit, so a misbehaving member cannot exhaust memory. */
struct buf {
    char *p;
    size_t len, cap, max;
    int toobig;
};

static void buf_reset(struct buf *b)
{
    if (b->p)
        OPENSSL_cleanse(b->p, b->cap); /* answers carry values, which may be CA keys */
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->toobig = 0;
}

static int buf_append(struct buf *b, const char *data, size_t n)
{
    if (n > b->max - b->len) {
        b->toobig = 1;
        return -1;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;

        while (cap < b->len + n + 1)
            cap *= 2;
        p = malloc(cap);
        if (!p)
            return -1;
        if (b->p) {
            memcpy(p, b->p, b->len);
            OPENSSL_cleanse(b->p, b->cap);
            free(b->p);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct buf *b = userdata;

    /* Returning less than given makes curl stop with CURLE_WRITE_ERROR. */
    return buf_append(b, ptr, size * nmemb) == 0 ? size * nmemb : 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void default_sleep(void *userdata, long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    (void)userdata;
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static void client_sleep(etcd_client *c, long ms)
{
    if (ms <= 0)
        return;
    if (c->opts.sleep_ms)
        c->opts.sleep_ms(c->opts.sleep_userdata, ms);
    else
        default_sleep(NULL, ms);
}

/* Copies s into dst (cap bytes), cut short if needed: a reason shown to a human. */
static void set_why(char *dst, size_t cap, const char *s)
{
    size_t n = strnlen(s, cap - 1);

    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* ---- base64 and JSON fields ------------------------------------------------------------- */

/* malloc'ed, NUL-terminated base64 of data; NULL when out of memory or too large. */
static char *b64_encode(const char *data, size_t len)
{
    size_t outlen;
    char *out;

    if (len > (size_t)INT32_MAX / 2)
        return NULL;
    outlen = 4 * ((len + 2) / 3) + 1;
    out = malloc(outlen);
    if (!out)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)data, (int)len);
    return out;
}

/* Decodes into a malloc'ed NUL-terminated buffer. -1 when s is not base64 or out of memory. */
static int b64_decode(const char *s, char **ret, size_t *ret_len)
{
    return etcd_b64_decode(s, strlen(s), ret, ret_len);
}

/* int64 fields come as JSON strings from the gateway; absent means 0 (proto3 default). */
static int get_i64(const json_t *obj, const char *name, int64_t *ret)
{
    json_t *v = json_object_get(obj, name);
    char *end;
    long long x;

    if (!v) {
        *ret = 0;
        return 0;
    }
    if (json_is_integer(v)) {
        *ret = json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return -1;
    errno = 0;
    x = strtoll(json_string_value(v), &end, 10);
    if (errno || end == json_string_value(v) || *end)
        return -1;
    *ret = x;
    return 0;
}

static int get_u64(const json_t *obj, const char *name, uint64_t *ret)
{
    json_t *v = json_object_get(obj, name);
    char *end;
    unsigned long long x;

    if (!v) {
        *ret = 0;
        return 0;
    }
    /* strtoull would take "-1" as a huge id. */
    if (!json_is_string(v) || json_string_value(v)[0] == '-')
        return -1;
    errno = 0;
    x = strtoull(json_string_value(v), &end, 10);
    if (errno || end == json_string_value(v) || *end)
        return -1;
    *ret = x;
    return 0;
}

static int header_revision(const json_t *resp, int64_t *ret)
{
    return get_i64(json_object_get(resp, "header"), "revision", ret);
}

static void kv_clear(etcd_kv *kv)
{
    if (kv->value)
        OPENSSL_cleanse(kv->value, kv->value_len);
    free(kv->key);
    free(kv->value);
    memset(kv, 0, sizeof(*kv));
}

void etcd_kvs_free(etcd_kv *kvs, size_t n)
{
    if (!kvs)
        return;
    for (size_t i = 0; i < n; i++)
        kv_clear(&kvs[i]);
    free(kvs);
}

static int parse_kv(const json_t *o, etcd_kv *kv)
{
    json_t *k = json_object_get(o, "key"), *v = json_object_get(o, "value");

    memset(kv, 0, sizeof(*kv));
    if (!json_is_string(k) || (v && !json_is_string(v)))
        return -1;
    if (b64_decode(json_string_value(k), &kv->key, &kv->key_len) < 0)
        goto fail;
    if (b64_decode(v ? json_string_value(v) : "", &kv->value, &kv->value_len) < 0)
        goto fail;
    if (get_i64(o, "create_revision", &kv->create_revision) < 0 ||
        get_i64(o, "mod_revision", &kv->mod_revision) < 0 ||
        get_i64(o, "version", &kv->version) < 0 || get_i64(o, "lease", &kv->lease) < 0)
        goto fail;
    return 0;
fail:
    kv_clear(kv);
    return -1;
}

/* Parses the "kvs" array of a range answer; appends to *kvs (capacity grows). */
static int parse_kvs(const json_t *arr, etcd_kv **kvs, size_t *n)
{
    size_t i, count;
    etcd_kv *p;

    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return -1;
    count = json_array_size(arr);
    if (count == 0)
        return 0;
    p = realloc(*kvs, (*n + count) * sizeof(**kvs));
    if (!p)
        return -1;
    *kvs = p;
    for (i = 0; i < count; i++) {
        if (parse_kv(json_array_get(arr, i), &p[*n]) < 0)
            return -1;
        (*n)++;
    }
    return 0;
}

/* Sets obj[name] to the base64 of data; -1 when out of memory. */
static int set_b64(json_t *obj, const char *name, const char *data, size_t len)
{
    char *s = b64_encode(data, len);
    int r;

    if (!s)
        return -1;
    r = json_object_set_new(obj, name, json_string(s));
    OPENSSL_cleanse(s, strlen(s));
    free(s);
    return r;
}

static int set_i64(json_t *obj, const char *name, int64_t v)
{
    char s[32];

    snprintf(s, sizeof(s), "%" PRId64, v);
    return json_object_set_new(obj, name, json_string(s));
}

/* ---- client and endpoints --------------------------------------------------------------- */

static int parse_endpoints(etcd_client *c, const char *list, char *errbuf)
{
    const char *p = list;

    if (!list || !*list)
        return meshca_fail(errbuf, ETCD_EINVAL,
                           "etcd: no endpoint given (expected HOST:PORT[,HOST:PORT...])");
    while (*p) {
        const char *comma = strchr(p, ','), *colon;
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char *end;
        long port;
        struct endpoint *e;

        if (c->n == ETCD_ENDPOINTS_MAX)
            return meshca_fail(errbuf, ETCD_EINVAL, "etcd: more than %d endpoints",
                               ETCD_ENDPOINTS_MAX);
        if (len == 0 || len > ETCD_ENDPOINT_LEN_MAX)
            return meshca_fail(errbuf, ETCD_EINVAL,
                               "etcd: endpoint %zu is empty or longer than %d bytes", c->n + 1,
                               ETCD_ENDPOINT_LEN_MAX);
        e = &c->ep[c->n];
        memcpy(e->hostport, p, len);
        e->hostport[len] = '\0';
        /* No scheme, path or user info: the scheme comes from etcd:// or etcds://, and
         * credentials travel only as TLS client certificates. */
        if (strpbrk(e->hostport, "/@?# \t"))
            return meshca_fail(errbuf, ETCD_EINVAL, "etcd: endpoint %zu is not HOST:PORT",
                               c->n + 1);
        colon = strrchr(e->hostport, ':');
        if (!colon || colon == e->hostport)
            return meshca_fail(errbuf, ETCD_EINVAL, "etcd: endpoint '%s' has no HOST:PORT",
                               e->hostport);
        errno = 0;
        port = strtol(colon + 1, &end, 10);
        if (errno || end == colon + 1 || *end || port < 1 || port > 65535)
            return meshca_fail(errbuf, ETCD_EINVAL, "etcd: endpoint '%s' has a bad port",
                               e->hostport);
        c->n++;
        if (!comma)
            break;
        p = comma + 1;
        if (!*p)
            return meshca_fail(errbuf, ETCD_EINVAL, "etcd: empty endpoint after ','");
    }
    return 0;
}

static int dup_opt(const char *s, char **ret)
{
    *ret = NULL;
    if (!s)
        return 0;
    *ret = strdup(s);
    return *ret ? 0 : -1;
}

int etcd_client_new(const etcd_client_options *opts, etcd_client **ret, char *errbuf)
{
    etcd_client *c;
    int r;

    if (!opts || !ret)
        return meshca_fail(errbuf, ETCD_EINVAL, "etcd: no options");
    if (opts->rounds < 1 || opts->page_limit < 1 || opts->keys_page_limit < 1 ||
        opts->max_txn_ops < 1 ||
        opts->max_response < 1024 || opts->max_request_bytes < 1024 ||
        opts->connect_timeout_ms < 1 || opts->request_timeout_ms < 1)
        return meshca_fail(errbuf, ETCD_EINVAL, "etcd: a client limit is out of range");
    if (!opts->tls && (opts->cacert || opts->cert || opts->key))
        return meshca_fail(errbuf, ETCD_EINVAL,
                           "etcd: CA file, client certificate and key need etcds:// (TLS)");
    if (!opts->cert != !opts->key)
        return meshca_fail(errbuf, ETCD_EINVAL,
                           "etcd: a client certificate needs its key, and a key its certificate");
    {
        const char *files[] = {opts->cacert, opts->cert, opts->key};

        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
            if (files[i] && access(files[i], R_OK) != 0)
                return meshca_fail(errbuf, ETCD_EINVAL, "etcd: cannot read %s: %s", files[i],
                                   strerror(errno));
    }

    c = calloc(1, sizeof(*c));
    if (!c)
        return meshca_fail(errbuf, ETCD_ENOMEM, "etcd: out of memory");
    c->opts = *opts;
    r = parse_endpoints(c, opts->endpoints, errbuf);
    if (r < 0)
        goto fail;
    r = meshca_fail(errbuf, ETCD_ENOMEM, "etcd: out of memory");
    if (dup_opt(opts->cacert, &c->cacert) < 0 || dup_opt(opts->cert, &c->cert) < 0 ||
        dup_opt(opts->key, &c->key) < 0)
        goto fail;
    c->opts.endpoints = NULL;
    c->opts.cacert = c->cacert;
    c->opts.cert = c->cert;
    c->opts.key = c->key;
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    /* No "Expect: 100-continue" round trip before a large txn body. On failure the list is
     * unchanged, and freed with the client. */
    if (!c->headers || !curl_slist_append(c->headers, "Expect:"))
        goto fail;
    for (size_t i = 0; i < c->n; i++) {
        c->ep[i].h = curl_easy_init();
        if (!c->ep[i].h)
            goto fail;
    }
    if (errbuf)
        errbuf[0] = '\0';
    *ret = c;
    return 0;
fail:
    etcd_client_free(c);
    return r;
}

void etcd_client_free(etcd_client *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        if (c->ep[i].h)
            curl_easy_cleanup(c->ep[i].h);
    if (c->side)
        curl_easy_cleanup(c->side);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    curl_slist_free_all(c->headers);
    free(c->cacert);
    free(c->cert);
    free(c->key);
    free(c);
}

size_t etcd_client_endpoint_count(const etcd_client *c)
{
    return c->n;
}

const char *etcd_client_endpoint(const etcd_client *c, size_t i)
{
    return i < c->n ? c->ep[i].hostport : NULL;
}

unsigned etcd_client_max_txn_ops(const etcd_client *c)
{
    return c->opts.max_txn_ops;
}

size_t etcd_client_max_request_bytes(const etcd_client *c)
{
    return c->opts.max_request_bytes;
}

uint64_t etcd_client_range_keys(const etcd_client *c)
{
    return c->range_keys;
}

size_t etcd_prefix_end(const char *prefix, size_t len, char *out)
{
    while (len > 0 && (unsigned char)prefix[len - 1] == 0xff)
        len--;
    if (len == 0) {
        out[0] = '\0';
        return 1;
    }
    memcpy(out, prefix, len);
    out[len - 1] = (char)((unsigned char)out[len - 1] + 1);
    return len;
}

/* Options every handle (request or watch) gets: the same TLS, timeouts and limits. */
static int set_common(etcd_client *c, CURL *h, const char *url, char *curlerr)
{
    int bad = 0;

    bad |= curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curlerr) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->opts.connect_timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, c->opts.tls ? "https" : "http") != CURLE_OK;
    /* The members are reached directly: a proxy from the environment would see every key. */
    bad |= curl_easy_setopt(h, CURLOPT_PROXY, "") != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 10L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 5L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb) != CURLE_OK;
    if (c->opts.tls) {
        /* Peer verification is never switched off for etcd: it holds CA keys. */
        bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
        if (c->cacert) {
            bad |= curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert) != CURLE_OK;
            /* --etcd-cacert alone: not libcurl's built-in CA directory (/etc/ssl/certs) too. */
            bad |= curl_easy_setopt(h, CURLOPT_CAPATH, NULL) != CURLE_OK;
        }
        if (c->cert) {
            bad |= curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert) != CURLE_OK;
            bad |= curl_easy_setopt(h, CURLOPT_SSLKEY, c->key) != CURLE_OK;
        }
    }
    return bad ? -1 : 0;
}

static void make_url(const etcd_client *c, size_t i, const char *path, char *url, size_t len)
{
    snprintf(url, len, "%s://%s%s", c->opts.tls ? "https" : "http", c->ep[i].hostport, path);
}

/* gRPC codes etcd puts in "code" of an error answer, mapped to our classes. */
static int grpc_code_class(long code, const char *msg)
{
    switch (code) {
    case 3: /* InvalidArgument: too many ops, too large, duplicate key, empty key */
        return ETCD_EINVAL;
    case 5: /* NotFound: lease */
        return ETCD_ENOTFOUND;
    case 11: /* OutOfRange: compacted or future revision */
        return msg && strstr(msg, "compacted") ? ETCD_ECOMPACTED : ETCD_EINVAL;
    case 4:  /* DeadlineExceeded */
    case 8:  /* ResourceExhausted: too many requests */
    case 14: /* Unavailable: no leader, timeout, stopping */
        return ETCD_EUNAVAILABLE;
    default:
        return ETCD_EIO;
    }
}

/* Unavailable answers that say the request was refused before it was proposed, so it is safe
 * to replay even when it is not idempotent. */
static int surely_not_applied(const char *msg)
{
    return msg && (strstr(msg, "no leader") || strstr(msg, "too many requests") ||
                   strstr(msg, "not capable"));
}

enum attempt {
    ATTEMPT_DONE,      /* answered: *ret_code says how */
    ATTEMPT_NEXT,      /* this member did not take it: try another */
    ATTEMPT_AMBIGUOUS, /* it may have been applied: do not replay a non-idempotent request */
};

/*
 * One POST to one endpoint. On ATTEMPT_DONE *ret_resp (success) or *ret_code + errbuf (a
 * final etcd error) are set; otherwise why[] says what went wrong with this member.
 */
static enum attempt attempt(etcd_client *c, size_t i, const char *path, const char *body,
                            size_t body_len, int stream, etcd_range_sink *sink,
                            json_t **ret_resp, int *ret_code, char *why, size_t whylen,
                            char *errbuf)
{
    char url[ETCD_ENDPOINT_LEN_MAX + 64], curlerr[CURL_ERROR_SIZE] = "";
    struct buf b = {.max = c->opts.max_response};
    CURL *h = c->ep[i].h;
    CURLcode cr;
    long status = 0;
    long sent = 0;
    json_t *resp = NULL, *err;
    json_error_t jerr;
    enum attempt a = ATTEMPT_DONE;

    make_url(c, i, path, url, sizeof(url));
    if (set_common(c, h, url, curlerr) < 0 ||
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->opts.request_timeout_ms) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body) != CURLE_OK) {
        *ret_code = meshca_fail(errbuf, ETCD_ENOMEM, "etcd: cannot set up a request to %s",
                                c->ep[i].hostport);
        return ATTEMPT_DONE;
    }
    cr = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &sent);
    /* The handle is reused: it must not keep pointers to this call's locals and body. */
    curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);

    if (cr != CURLE_OK) {
        if (b.toobig) {
            *ret_code = meshca_fail(errbuf, ETCD_EIO, "etcd: %s: answer larger than %zu bytes",
                                    c->ep[i].hostport, c->opts.max_response);
            goto out;
        }
        /* OpenSSL's words for a handshake the member did not answer name no cause a user
         * can act on; the commonest is etcds:// given to a member that serves plain HTTP. */
        size_t n = strlen(curlerr);
        while (n > 0 && curlerr[n - 1] == ' ')
            curlerr[--n] = '\0';   /* libcurl ends some messages with a space */
        snprintf(why, whylen, "%s%s", curlerr[0] ? curlerr : curl_easy_strerror(cr),
                 c->opts.tls && cr == CURLE_SSL_CONNECT_ERROR
                     ? " (no TLS handshake: if the member serves plain HTTP, its URL is "
                       "etcd://, not etcds://)"
                     : "");
        a = sent == 0 ? ATTEMPT_NEXT : ATTEMPT_AMBIGUOUS;
        goto out;
    }
    if (sink && status == 200) {
        /* A range answer read straight into its keys; anything else (an error answer, a
         * shape it does not know) goes on to the JSON reader below. */
        int r = etcd_range_json_read(b.p ? b.p : "", b.len, sink);

        if (r == 0 || r == ETCD_ENOMEM) {
            *ret_code =
                r ? meshca_fail(errbuf, ETCD_ENOMEM, "etcd: out of memory reading a range") : 0;
            *ret_resp = NULL;
            goto out;
        }
    }
    if (stream) {
        /* A streaming endpoint answers newline-delimited messages: the first is ours. */
        resp = json_loadb(b.p ? b.p : "", b.len, JSON_DISABLE_EOF_CHECK, &jerr);
    } else {
        resp = json_loadb(b.p ? b.p : "", b.len, 0, &jerr);
    }
    if (!resp || !json_is_object(resp)) {
        if (status >= 500) {
            snprintf(why, whylen, "HTTP %ld", status);
            a = ATTEMPT_AMBIGUOUS;
            goto out;
        }
        *ret_code =
            meshca_fail(errbuf, ETCD_EIO, "etcd: %s%s: HTTP %ld with an answer that is not JSON",
                        c->ep[i].hostport, path, status);
        goto out;
    }
    if (stream && json_is_object(json_object_get(resp, "result"))) {
        json_t *inner = json_incref(json_object_get(resp, "result"));
        json_decref(resp);
        resp = inner;
    }
    /* Errors: {"error":"msg","message":"msg","code":N}, or in a stream {"error":{...}}. */
    err = json_object_get(resp, "error");
    if (status != 200 || (err && !json_is_string(err)) ||
        (json_is_string(err) && json_object_get(resp, "code"))) {
        json_t *src = json_is_object(err) ? err : resp;
        const char *msg = json_string_value(json_object_get(src, "message"));
        json_t *jc = json_object_get(src, json_is_object(err) ? "grpc_code" : "code");
        long code = json_is_integer(jc) ? (long)json_integer_value(jc) : 2;
        int cls = grpc_code_class(code, msg);

        if (!msg)
            msg = json_is_string(err) ? json_string_value(err) : "no message";
        if (cls == ETCD_EUNAVAILABLE || status >= 500) {
            snprintf(why, whylen, "%s", msg);
            a = surely_not_applied(msg) ? ATTEMPT_NEXT : ATTEMPT_AMBIGUOUS;
            goto out;
        }
        *ret_code = meshca_fail(errbuf, cls, "etcd: %s: %s", c->ep[i].hostport, msg);
        goto out;
    }
    *ret_code = 0;
    *ret_resp = resp;
    resp = NULL;
out:
    json_decref(resp);
    buf_reset(&b);
    return a;
}

/* "no etcd member answered (HOST:PORT: why; ...)": every endpoint with its last failure. */
static int none_answered(const etcd_client *c, char (*why)[WHY_LEN], char *errbuf)
{
    char msg[MESHCA_ERRBUF];
    size_t used = (size_t)snprintf(msg, sizeof(msg), "no etcd member answered (");

    for (size_t i = 0; i < c->n && used < sizeof(msg); i++)
        used += (size_t)snprintf(msg + used, sizeof(msg) - used, "%s%s: %s", i ? "; " : "",
                                 c->ep[i].hostport, why[i]);
    return meshca_fail(errbuf, ETCD_EUNAVAILABLE, "%s)", msg);
}

/*
 * POST req to path with failover: every endpoint in turn starting with the last good one,
 * opts.rounds rounds with backoff between. idempotent: may be replayed on another member
 * after a failure that leaves its outcome unknown. Takes ownership of req.
 */
static int request_into(etcd_client *c, const char *path, json_t *req, int idempotent,
                        int stream, etcd_range_sink *sink, json_t **ret_resp, char *errbuf)
{
    char why[ETCD_ENDPOINTS_MAX][WHY_LEN];
    char *body;
    size_t body_len;
    long backoff = c->opts.backoff_initial_ms;
    int code = ETCD_EIO;

    if (!req)
        return meshca_fail(errbuf, ETCD_ENOMEM, "etcd: out of memory");
    body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!body)
        return meshca_fail(errbuf, ETCD_ENOMEM, "etcd: out of memory");
    body_len = strlen(body);

    for (unsigned round = 0; round < c->opts.rounds; round++) {
        if (round > 0) {
            client_sleep(c, backoff);
            backoff = backoff * 2 > c->opts.backoff_max_ms ? c->opts.backoff_max_ms : backoff * 2;
        }
        for (size_t k = 0; k < c->n; k++) {
            size_t i = (c->current + k) % c->n;
            enum attempt a;

            why[i][0] = '\0';
            a = attempt(c, i, path, body, body_len, stream, sink, ret_resp, &code, why[i],
                        sizeof(why[i]), errbuf);
            if (a == ATTEMPT_DONE) {
                /* An etcd error is an answer too: this member is reachable. */
                c->current = i;
                goto out;
            }
            if (a == ATTEMPT_AMBIGUOUS && !idempotent) {
                /* The next attempt, by our caller, starts elsewhere. */
                c->current = (i + 1) % c->n;
                code =
                    meshca_fail(errbuf, ETCD_EUNAVAILABLE,
                                "etcd: %s: %s (outcome unknown: the request may have been applied)",
                                c->ep[i].hostport, why[i]);
                goto out;
            }
        }
    }
    code = none_answered(c, why, errbuf);
out:
    OPENSSL_cleanse(body, body_len); /* it may carry CA keys */
    free(body);
    return code;
}

static int request(etcd_client *c, const char *path, json_t *req, int idempotent, int stream,
                   json_t **ret_resp, char *errbuf)
{
    return request_into(c, path, req, idempotent, stream, NULL, ret_resp, errbuf);
}

/* ---- kv ----------------------------------------------------------------------------------- */

static int check_key(const char *key, size_t len, char *errbuf)
{
    if (!key || len == 0)
        return meshca_fail(errbuf, ETCD_EINVAL, "etcd: empty key");
    if (len > ETCD_KEY_MAX)
        return meshca_fail(errbuf, ETCD_EINVAL, "etcd: key longer than %d bytes", ETCD_KEY_MAX);
    return 0;
}

/* The body of a range, deleterange or watch: key, and range_end unless NULL (one key). */
static json_t *range_body(const char *key, size_t key_len, const char *range_end,
                          size_t range_end_len)
{
    json_t *o = json_object();

    if (!o || set_b64(o, "key", key, key_len) < 0)
        goto fail;
    if (range_end && set_b64(o, "range_end", range_end, range_end_len) < 0)
        goto fail;
    return o;
fail:
    json_decref(o);
    return NULL;
}

int etcd_get(etcd_client *c, const char *key, size_t key_len, etcd_kv **ret_kv,
             int64_t *ret_revision, char *errbuf)
{
    json_t *resp = NULL;
    etcd_kv *kvs = NULL;
    size_t n = 0;
    int64_t rev = 0;
    int r = check_key(key, key_len, errbuf);

    if (r < 0)
        return r;
    r = request(c, "/v3/kv/range", range_body(key, key_len, NULL, 0), 1, 0, &resp, errbuf);
    if (r < 0)
        return r;
    if (parse_kvs(json_object_get(resp, "kvs"), &kvs, &n) < 0 || header_revision(resp, &rev) < 0) {
        r = meshca_fail(errbuf, ETCD_EIO, "etcd: malformed range answer from %s",
                        c->ep[c->current].hostport);
        goto out;
    }
    if (n == 0) {
        r = meshca_fail(errbuf, ETCD_ENOTFOUND, "etcd: key not found");
        goto out;
    }
    *ret_kv = kvs;
    kvs = NULL;
    n = 0;
    if (ret_revision)
        *ret_revision = rev;
out:
    etcd_kvs_free(kvs, n);
    json_decref(resp);
    return r;
}

/*
 * Why a listing is cut the way it is (doc/performance.md, "On etcd"): etcd 3.4 answers a range
 * with a limit by first collecting every key of [key, range_end) from its in-memory index and
 * only then keeping the first `limit` (the total is its "count"), so pages that all run to the
 * end of the prefix cost O(keys left) each and a listing O(N^2 / page). A listing therefore
 * asks for the keys first (keys_only, pages of opts.keys_page_limit, few even at 100,000
 * keys), then reads the values in pages bounded by those keys: [k_i, k_i+page), each O(page).
 */

/* One range request over [from, end) (end_len 0: only the key from). rev 0: at the current
 * revision, linearizable. rev > 0: at that revision, serializable: the data of a revision
 * never changes, so the member that answers either has it (the same answer any member would
 * give) or says it is a future revision (a member behind the leader, after failover): then
 * the page is asked again as a linearizable read, which waits until that member caught up.
 * limit 0: no limit. Appends the keys to sink (its more, revision and count are the answer's).
 */
static json_t *page_body(const char *from, size_t from_len, const char *end, size_t end_len,
                         int64_t rev, size_t limit, int keys_only, int linearizable)
{
    json_t *req = range_body(from, from_len, end_len ? end : NULL, end_len);

    if (req &&
        ((limit && json_object_set_new(req, "limit", json_integer((json_int_t)limit)) < 0) ||
         (rev && set_i64(req, "revision", rev) < 0) ||
         (!linearizable && json_object_set_new(req, "serializable", json_true()) < 0) ||
         (keys_only && json_object_set_new(req, "keys_only", json_true()) < 0))) {
        json_decref(req);
        req = NULL;
    }
    return req;
}

static int range_page(etcd_client *c, const char *from, size_t from_len, const char *end,
                      size_t end_len, int64_t rev, size_t limit, int keys_only,
                      etcd_range_sink *sink, char *errbuf)
{
    for (int linearizable = rev == 0;; linearizable = 1) {
        json_t *req = page_body(from, from_len, end, end_len, rev, limit, keys_only, linearizable),
               *resp = NULL;
        int r;

        r = request_into(c, "/v3/kv/range", req, 1, 0, sink, &resp, errbuf);
        if (r == ETCD_EINVAL && !linearizable && strstr(errbuf, "future revision"))
            continue;
        if (r < 0)
            return r;
        if (resp) {
            /* An answer the direct reader did not take: read as JSON. */
            size_t n = sink->n;

            if (parse_kvs(json_object_get(resp, "kvs"), &sink->kvs, &n) < 0 ||
                header_revision(resp, &sink->revision) < 0 ||
                get_i64(resp, "count", &sink->count) < 0) {
                sink->n = sink->cap = n;
                json_decref(resp);
                return meshca_fail(errbuf, ETCD_EIO, "etcd: malformed range answer from %s",
                                   c->ep[c->current].hostport);
            }
            sink->n = sink->cap = n;
            sink->more = json_is_true(json_object_get(resp, "more"));
            json_decref(resp);
        }
        c->range_keys += sink->count > 0 ? (uint64_t)sink->count : 0;
        return 0;
    }
}

/*
 * Value pages two at a time: etcd's JSON gateway spends most of a read's CPU, and two requests
 * in flight let it use two cores. Both go to the member that answered last, one on its usual
 * handle, one on c->side. For each page k, ok[k] is 1 when its answer was read into out[k]
 * (HTTP 200 and a range answer); a page not read (a transport failure, an error answer) is
 * asked again by the caller alone, with failover and etcd's message. ETCD_ENOMEM or 0.
 */
static int pair_fetch(etcd_client *c, json_t *req[2], etcd_range_sink out[2], int ok[2])
{
    char url[ETCD_ENDPOINT_LEN_MAX + 64], curlerr[2][CURL_ERROR_SIZE];
    struct buf b[2] = {{.max = c->opts.max_response}, {.max = c->opts.max_response}};
    char *body[2] = {NULL, NULL};
    CURL *h[2];
    int added[2] = {0, 0}, running = 0, left, r = 0;
    int64_t deadline = now_ms() + c->opts.request_timeout_ms + 1000;
    CURLMsg *msg;

    ok[0] = ok[1] = 0;
    if (!c->side)
        c->side = curl_easy_init();
    if (!c->multi)
        c->multi = curl_multi_init();
    if (!c->side || !c->multi)
        return 0; /* read one at a time */
    h[0] = c->ep[c->current].h;
    h[1] = c->side;
    make_url(c, c->current, "/v3/kv/range", url, sizeof(url));
    for (int k = 0; k < 2; k++) {
        body[k] = json_dumps(req[k], JSON_COMPACT);
        if (!body[k]) {
            r = ETCD_ENOMEM;
            goto out;
        }
        curlerr[k][0] = '\0';
        if (set_common(c, h[k], url, curlerr[k]) < 0 ||
            curl_easy_setopt(h[k], CURLOPT_WRITEDATA, &b[k]) != CURLE_OK ||
            curl_easy_setopt(h[k], CURLOPT_TIMEOUT_MS, c->opts.request_timeout_ms) != CURLE_OK ||
            curl_easy_setopt(h[k], CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body[k])) !=
                CURLE_OK ||
            curl_easy_setopt(h[k], CURLOPT_POSTFIELDS, body[k]) != CURLE_OK ||
            curl_multi_add_handle(c->multi, h[k]) != CURLM_OK)
            goto out;
        added[k] = 1;
    }
    /* Bounded: each transfer has the request timeout, and the loop a deadline past it. */
    do {
        if (curl_multi_perform(c->multi, &running) != CURLM_OK)
            break;
        if (running && curl_multi_poll(c->multi, NULL, 0, 100, NULL) != CURLM_OK)
            break;
    } while (running && now_ms() < deadline);
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        long status = 0;
        int k = msg->easy_handle == h[0] ? 0 : 1;

        if (msg->msg != CURLMSG_DONE || msg->data.result != CURLE_OK)
            continue;
        curl_easy_getinfo(h[k], CURLINFO_RESPONSE_CODE, &status);
        if (status != 200)
            continue;
        r = etcd_range_json_read(b[k].p ? b[k].p : "", b[k].len, &out[k]);
        if (r == ETCD_ENOMEM)
            goto out;
        ok[k] = r == 0;
        r = 0;
    }
out:
    for (int k = 0; k < 2; k++) {
        if (added[k])
            curl_multi_remove_handle(c->multi, h[k]);
        /* The handles are reused: they must not keep pointers to this call's locals. */
        curl_easy_setopt(h[k], CURLOPT_WRITEDATA, NULL);
        curl_easy_setopt(h[k], CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(h[k], CURLOPT_ERRORBUFFER, NULL);
        if (body[k]) {
            OPENSSL_cleanse(body[k], strlen(body[k]));
            free(body[k]);
        }
        buf_reset(&b[k]);
    }
    return r;
}

/* The key just after kv's: kv's key + "\0", in *buf (grown). */
static int key_after(const etcd_kv *kv, char **buf, size_t *len)
{
    char *p = realloc(*buf, kv->key_len + 1);

    if (!p)
        return -1;
    memcpy(p, kv->key, kv->key_len);
    p[kv->key_len] = '\0';
    *buf = p;
    *len = kv->key_len + 1;
    return 0;
}

/* Appends from's keys to to (from keeps none; its answer fields go to to). ETCD_ENOMEM or 0. */
static int sink_move(etcd_range_sink *to, etcd_range_sink *from)
{
    if (to->n + from->n > to->cap) {
        size_t cap = to->cap ? to->cap : 256;
        etcd_kv *p;

        while (cap < to->n + from->n)
            cap *= 2;
        p = realloc(to->kvs, cap * sizeof(*p));
        if (!p)
            return ETCD_ENOMEM;
        to->kvs = p;
        to->cap = cap;
    }
    if (from->n)
        memcpy(to->kvs + to->n, from->kvs, from->n * sizeof(*from->kvs));
    to->n += from->n;
    from->n = 0;
    to->more = from->more;
    to->revision = from->revision;
    to->count = from->count;
    return 0;
}

int etcd_range(etcd_client *c, const char *key, size_t key_len, const char *range_end,
               size_t range_end_len, etcd_kv **ret_kvs, size_t *ret_n, int64_t *ret_revision,
               char *errbuf)
{
    char end[ETCD_KEY_MAX], *from = NULL;
    size_t end_len, from_len = 0, page = c->opts.page_limit;
    etcd_range_sink vals = {0}, keys = {0}, pending = {0};
    int64_t rev;
    int have_pending = 0, r = check_key(key, key_len, errbuf);

    if (r < 0)
        return r;
    if (range_end) {
        if (range_end_len == 0 || range_end_len > ETCD_KEY_MAX)
            return meshca_fail(errbuf, ETCD_EINVAL, "etcd: bad range end");
        memcpy(end, range_end, range_end_len);
        end_len = range_end_len;
    } else {
        end_len = etcd_prefix_end(key, key_len, end);
    }

    /* The first page: a listing of at most one page is this one request. Its revision is the
     * snapshot every later request reads. */
    r = range_page(c, key, key_len, end, end_len, 0, page, 0, &vals, errbuf);
    rev = vals.revision;
    if (r < 0 || !vals.more)
        goto done;
    if (vals.n == 0) {
        r = meshca_fail(errbuf, ETCD_EIO, "etcd: range answer says 'more' but holds no key");
        goto done;
    }
    /* The keys after it, at the same revision. Bounded: each page moves past at least one key,
     * and the total is capped. */
    r = meshca_fail(errbuf, ETCD_ENOMEM, "etcd: out of memory");
    if (key_after(&vals.kvs[vals.n - 1], &from, &from_len) < 0)
        goto done;
    for (keys.more = 1; keys.more;) {
        size_t before = keys.n;

        r = range_page(c, from, from_len, end, end_len, rev, c->opts.keys_page_limit, 1, &keys,
                       errbuf);
        if (r < 0)
            goto done;
        if (keys.more && keys.n == before) {
            r = meshca_fail(errbuf, ETCD_EIO, "etcd: range answer says 'more' but holds no key");
            goto done;
        }
        if (vals.n + keys.n > ETCD_RANGE_MAX_KEYS) {
            r = meshca_fail(errbuf, ETCD_EINVAL, "etcd: range holds more than %d keys",
                            ETCD_RANGE_MAX_KEYS);
            goto done;
        }
        if (keys.more && key_after(&keys.kvs[keys.n - 1], &from, &from_len) < 0) {
            r = meshca_fail(errbuf, ETCD_ENOMEM, "etcd: out of memory");
            goto done;
        }
    }
    /* The values, in pages [keys[i], keys[i + page]) (the last one to the end), no limit:
     * each holds exactly the keys listed at this revision, which is checked. */
    for (size_t i = 0; i < keys.n; i += page) {
        size_t want = keys.n - i < page ? keys.n - i : page, before = vals.n;
        const etcd_kv *stop = i + want < keys.n ? &keys.kvs[i + want] : NULL, *k = &keys.kvs[i];
        int same;

        if (c->opts.parallel_pages && !have_pending && i + page < keys.n) {
            /* This page and the next at once; each then checked in order below. */
            size_t want2 = keys.n - i - page < page ? keys.n - i - page : page;
            const etcd_kv *k2 = stop, *stop2 = i + page + want2 < keys.n ? stop + want2 : NULL;
            json_t *req[2] = {
                page_body(k->key, k->key_len, stop->key, stop->key_len, rev, 0, 0, 0),
                page_body(k2->key, k2->key_len, stop2 ? stop2->key : end,
                          stop2 ? stop2->key_len : end_len, rev, 0, 0, 0)};
            etcd_range_sink two[2] = {{0}, {0}};
            int ok[2];

            r = req[0] && req[1] ? pair_fetch(c, req, two, ok) : ETCD_ENOMEM;
            json_decref(req[0]);
            json_decref(req[1]);
            if (r == 0 && ok[0])
                r = sink_move(&vals, &two[0]);
            if (r == 0 && ok[1]) {
                pending = two[1]; /* taken when the loop reaches that page */
                two[1] = (etcd_range_sink){0};
                have_pending = 1;
            }
            etcd_kvs_free(two[0].kvs, two[0].n);
            etcd_kvs_free(two[1].kvs, two[1].n);
            if (r < 0) {
                r = meshca_fail(errbuf, ETCD_ENOMEM, "etcd: out of memory");
                goto done;
            }
            if (!ok[0])
                r = range_page(c, k->key, k->key_len, stop->key, stop->key_len, rev, 0, 0, &vals,
                               errbuf);
            else
                c->range_keys += vals.count > 0 ? (uint64_t)vals.count : 0;
        } else if (have_pending) {
            r = sink_move(&vals, &pending);
            c->range_keys += vals.count > 0 ? (uint64_t)vals.count : 0;
            etcd_kvs_free(pending.kvs, pending.n);
            pending = (etcd_range_sink){0};
            have_pending = 0;
            if (r < 0)
                r = meshca_fail(errbuf, ETCD_ENOMEM, "etcd: out of memory");
        } else {
            r = range_page(c, k->key, k->key_len, stop ? stop->key : end,
                           stop ? stop->key_len : end_len, rev, 0, 0, &vals, errbuf);
        }
        if (r < 0)
            goto done;
        same = vals.n - before == want && !vals.more;
        for (size_t j = 0; same && j < want; j++)
            same = vals.kvs[before + j].key_len == k[j].key_len &&
                   memcmp(vals.kvs[before + j].key, k[j].key, k[j].key_len) == 0;
        if (!same) {
            r = meshca_fail(errbuf, ETCD_EIO,
                            "etcd: %s answered other keys at revision %" PRId64
                            " than it listed",
                            c->ep[c->current].hostport, rev);
            goto done;
        }
    }
    r = 0;
done:
    free(from);
    etcd_kvs_free(keys.kvs, keys.n);
    etcd_kvs_free(pending.kvs, pending.n);
    if (r < 0) {
        etcd_kvs_free(vals.kvs, vals.n);
        return r;
    }
    *ret_kvs = vals.kvs;
    *ret_n = vals.n;
    if (ret_revision)
        *ret_revision = rev;
    return 0;
}

int etcd_range_keys(etcd_client *c, const char *key, size_t key_len, etcd_kv **ret_kvs,
                    size_t *ret_n, int64_t *ret_revision, char *errbuf)
{
    char end[ETCD_KEY_MAX], *from = NULL;
    size_t end_len, from_len = 0;
    etcd_range_sink keys = {0};
    int64_t rev = 0;
    int r = check_key(key, key_len, errbuf);

    if (r < 0)
        return r;
    end_len = etcd_prefix_end(key, key_len, end);
    /* Bounded: each page moves past at least one key, and the total is capped. Few pages, so
     * etcd's scan to the end of the prefix for each (see etcd_range) stays small. */
    for (keys.more = 1; keys.more;) {
        size_t before = keys.n;

        r = range_page(c, from ? from : key, from ? from_len : key_len, end, end_len, rev,
                       c->opts.keys_page_limit, 1, &keys, errbuf);
        if (r < 0)
            goto done;
        if (!rev)
            rev = keys.revision; /* the first page's revision: one snapshot */
        if (keys.more && keys.n == before) {
            r = meshca_fail(errbuf, ETCD_EIO, "etcd: range answer says 'more' but holds no key");
            goto done;
        }
        if (keys.n > ETCD_RANGE_MAX_KEYS) {
            r = meshca_fail(errbuf, ETCD_EINVAL, "etcd: range holds more than %d keys",
                            ETCD_RANGE_MAX_KEYS);
            goto done;
        }
        if (keys.more && key_after(&keys.kvs[keys.n - 1], &from, &from_len) < 0) {
            r = meshca_fail(errbuf, ETCD_ENOMEM, "etcd: out of memory");
            goto done;
        }
    }
done:
    free(from);
    if (r < 0) {
        etcd_kvs_free(keys.kvs, keys.n);
        return r;
    }
    *ret_kvs = keys.kvs;
    *ret_n = keys.n;
    if (ret_revision)
        *ret_revision = rev;
    return 0;
}

int etcd_put(etcd_client *c, const char *key, size_t key_len, const char *value, size_t value_len,
             int64_t lease, int64_t *ret_revision, char *errbuf)
{
    json_t *req, *resp = NULL;
    int64_t rev = 0;
    int r = check_key(key, key_len, errbuf);

    if (r < 0)
        return r;
    if (value_len > c->opts.max_request_bytes)
        return meshca_fail(errbuf, ETCD_EINVAL,
                           "etcd: value of %zu bytes exceeds the request limit (%zu)", value_len,
                           c->opts.max_request_bytes);
    req = json_object();
    if (req && (set_b64(req, "key", key, key_len) < 0 ||
                set_b64(req, "value", value ? value : "", value_len) < 0 ||
                (lease && set_i64(req, "lease", lease) < 0))) {
        json_decref(req);
        req = NULL;
    }
    /* An unconditional put replayed after an unknown outcome writes the same value again. */
    r = request(c, "/v3/kv/put", req, 1, 0, &resp, errbuf);
    if (r < 0)
        return r;
    if (header_revision(resp, &rev) < 0)
        r = meshca_fail(errbuf, ETCD_EIO, "etcd: malformed put answer");
    else if (ret_revision)
        *ret_revision = rev;
    json_decref(resp);
    return r;
}

int etcd_delete_range(etcd_client *c, const char *key, size_t key_len, const char *range_end,
                      size_t range_end_len, int64_t *ret_deleted, int64_t *ret_revision,
                      char *errbuf)
{
    json_t *resp = NULL;
    int64_t rev = 0, deleted = 0;
    int r = check_key(key, key_len, errbuf);

    if (r < 0)
        return r;
    r = request(c, "/v3/kv/deleterange", range_body(key, key_len, range_end, range_end_len), 1, 0,
                &resp, errbuf);
    if (r < 0)
        return r;
    if (header_revision(resp, &rev) < 0 || get_i64(resp, "deleted", &deleted) < 0) {
        r = meshca_fail(errbuf, ETCD_EIO, "etcd: malformed delete answer");
    } else {
        if (ret_deleted)
            *ret_deleted = deleted;
        if (ret_revision)
            *ret_revision = rev;
    }
    json_decref(resp);
    return r;
}

/* ---- txn ---------------------------------------------------------------------------------- */

/* Per-entry framing etcd's protobuf adds around keys and values: generous, so estimates err
 * on the side of a smaller txn. */
#define TXN_ENTRY_OVERHEAD 32

size_t etcd_txn_request_size(const etcd_txn_request *txn)
{
    size_t total = TXN_ENTRY_OVERHEAD;
    const etcd_op *branches[2] = {txn->success, txn->failure};
    size_t counts[2] = {txn->nsuccess, txn->nfailure};

    for (size_t i = 0; i < txn->ncompares; i++)
        total += TXN_ENTRY_OVERHEAD + txn->compares[i].key_len +
                 (txn->compares[i].target == ETCD_CMP_VALUE ? txn->compares[i].value_len : 0);
    for (int b = 0; b < 2; b++)
        for (size_t i = 0; i < counts[b]; i++)
            total += TXN_ENTRY_OVERHEAD + branches[b][i].key_len + branches[b][i].range_end_len +
                     (branches[b][i].type == ETCD_OP_PUT ? branches[b][i].value_len : 0);
    return total;
}

static json_t *compare_json(const etcd_compare *cmp)
{
    static const char *const results[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
    static const char *const targets[] = {"VERSION", "CREATE", "MOD", "VALUE", "LEASE"};
    static const char *const fields[] = {"version", "create_revision", "mod_revision", "value",
                                         "lease"};
    json_t *o = json_object();
    int bad;

    if (!o || (unsigned)cmp->target > ETCD_CMP_LEASE ||
        (unsigned)cmp->result > ETCD_CMP_NOT_EQUAL) {
        json_decref(o);
        return NULL;
    }
    bad = json_object_set_new(o, "result", json_string(results[cmp->result])) < 0 ||
          json_object_set_new(o, "target", json_string(targets[cmp->target])) < 0 ||
          set_b64(o, "key", cmp->key, cmp->key_len) < 0;
    if (!bad)
        bad = cmp->target == ETCD_CMP_VALUE
                  ? set_b64(o, "value", cmp->value ? cmp->value : "", cmp->value_len) < 0
                  : set_i64(o, fields[cmp->target], cmp->number) < 0;
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *op_json(const etcd_op *op)
{
    json_t *inner = NULL, *o = json_object();
    const char *name;

    if (!o)
        return NULL;
    switch (op->type) {
    case ETCD_OP_PUT:
        name = "request_put";
        inner = json_object();
        if (inner && (set_b64(inner, "key", op->key, op->key_len) < 0 ||
                      set_b64(inner, "value", op->value ? op->value : "", op->value_len) < 0 ||
                      (op->lease && set_i64(inner, "lease", op->lease) < 0))) {
            json_decref(inner);
            inner = NULL;
        }
        break;
    case ETCD_OP_DELETE:
        name = "request_delete_range";
        inner = range_body(op->key, op->key_len, op->range_end, op->range_end_len);
        break;
    case ETCD_OP_GET:
        name = "request_range";
        inner = range_body(op->key, op->key_len, op->range_end, op->range_end_len);
        break;
    default:
        name = NULL;
        break;
    }
    if (!inner || json_object_set_new(o, name, inner) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *ops_json(const etcd_op *ops, size_t n)
{
    json_t *arr = json_array();

    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, op_json(&ops[i])) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

void etcd_txn_result_free(etcd_txn_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->ngets; i++)
        etcd_kvs_free(r->gets[i].kvs, r->gets[i].n);
    free(r->gets);
    memset(r, 0, sizeof(*r));
}

int etcd_txn(etcd_client *c, const etcd_txn_request *txn, etcd_txn_result *ret, char *errbuf)
{
    size_t max = c->opts.max_txn_ops, size;
    json_t *req, *cmps, *resp = NULL, *responses;
    etcd_txn_result res = {0};
    int r;

    if (txn->ncompares > max || txn->nsuccess > max || txn->nfailure > max)
        return meshca_fail(
            errbuf, ETCD_EINVAL,
            "etcd: txn with %zu compares, %zu success and %zu failure ops exceeds max-txn-ops %zu",
            txn->ncompares, txn->nsuccess, txn->nfailure, max);
    size = etcd_txn_request_size(txn);
    if (size > c->opts.max_request_bytes)
        return meshca_fail(errbuf, ETCD_EINVAL,
                           "etcd: txn of about %zu bytes exceeds the request limit (%zu)", size,
                           c->opts.max_request_bytes);
    for (size_t i = 0; i < txn->ncompares; i++)
        if (check_key(txn->compares[i].key, txn->compares[i].key_len, errbuf) < 0)
            return ETCD_EINVAL;
    for (size_t i = 0; i < txn->nsuccess + txn->nfailure; i++) {
        const etcd_op *op = i < txn->nsuccess ? &txn->success[i] : &txn->failure[i - txn->nsuccess];
        if (check_key(op->key, op->key_len, errbuf) < 0)
            return ETCD_EINVAL;
    }

    req = json_object();
    cmps = json_array();
    for (size_t i = 0; cmps && i < txn->ncompares; i++)
        if (json_array_append_new(cmps, compare_json(&txn->compares[i])) < 0) {
            json_decref(cmps);
            cmps = NULL;
        }
    if (!req || json_object_set_new(req, "compare", cmps) < 0 ||
        json_object_set_new(req, "success", ops_json(txn->success, txn->nsuccess)) < 0 ||
        json_object_set_new(req, "failure", ops_json(txn->failure, txn->nfailure)) < 0) {
        json_decref(req);
        req = NULL;
    }
    /* Not idempotent: a replayed txn would fail its compares against its own first write. */
    r = request(c, "/v3/kv/txn", req, 0, 0, &resp, errbuf);
    if (r < 0)
        return r;

    res.succeeded = json_is_true(json_object_get(resp, "succeeded"));
    responses = json_object_get(resp, "responses");
    if (header_revision(resp, &res.revision) < 0 || (responses && !json_is_array(responses)))
        goto malformed;
    for (size_t i = 0; i < json_array_size(responses); i++) {
        json_t *rr = json_object_get(json_array_get(responses, i), "response_range");
        etcd_txn_get *g;

        if (!rr)
            continue;
        g = realloc(res.gets, (res.ngets + 1) * sizeof(*g));
        if (!g) {
            etcd_txn_result_free(&res);
            json_decref(resp);
            return meshca_fail(errbuf, ETCD_ENOMEM, "etcd: out of memory");
        }
        res.gets = g;
        g = &res.gets[res.ngets++];
        g->kvs = NULL;
        g->n = 0;
        if (parse_kvs(json_object_get(rr, "kvs"), &g->kvs, &g->n) < 0)
            goto malformed;
    }
    json_decref(resp);
    r = res.succeeded ? 0 : meshca_fail(errbuf, ETCD_ECONFLICT, "etcd: txn compare failed");
    if (ret)
        *ret = res;
    else
        etcd_txn_result_free(&res);
    return r;
malformed:
    etcd_txn_result_free(&res);
    json_decref(resp);
    return meshca_fail(errbuf, ETCD_EIO, "etcd: malformed txn answer from %s",
                       c->ep[c->current].hostport);
}

int etcd_compact(etcd_client *c, int64_t revision, int physical, char *errbuf)
{
    json_t *req = json_object(), *resp = NULL;
    int r;

    if (req && (set_i64(req, "revision", revision) < 0 ||
                json_object_set_new(req, "physical", json_boolean(physical)) < 0)) {
        json_decref(req);
        req = NULL;
    }
    r = request(c, "/v3/kv/compaction", req, 1, 0, &resp, errbuf);
    json_decref(resp);
    return r;
}

/* ---- leases ------------------------------------------------------------------------------- */

int etcd_lease_grant(etcd_client *c, int64_t ttl_s, int64_t *ret_id, int64_t *ret_ttl, char *errbuf)
{
    json_t *req = json_object(), *resp = NULL;
    int64_t id = 0, ttl = 0;
    int r;

    if (ttl_s < 1) {
        json_decref(req);
        return meshca_fail(errbuf, ETCD_EINVAL, "etcd: lease TTL must be at least 1 s");
    }
    if (req && set_i64(req, "TTL", ttl_s) < 0) {
        json_decref(req);
        req = NULL;
    }
    /* Replaying a grant at worst leaves an unused lease, which expires by itself. */
    r = request(c, "/v3/lease/grant", req, 1, 0, &resp, errbuf);
    if (r < 0)
        return r;
    if (json_is_string(json_object_get(resp, "error")) &&
        *json_string_value(json_object_get(resp, "error")))
        r = meshca_fail(errbuf, ETCD_EIO, "etcd: lease grant refused: %s",
                        json_string_value(json_object_get(resp, "error")));
    else if (get_i64(resp, "ID", &id) < 0 || get_i64(resp, "TTL", &ttl) < 0 || id == 0)
        r = meshca_fail(errbuf, ETCD_EIO, "etcd: malformed lease grant answer");
    else {
        *ret_id = id;
        if (ret_ttl)
            *ret_ttl = ttl;
    }
    json_decref(resp);
    return r;
}

int etcd_lease_keepalive(etcd_client *c, int64_t id, int64_t *ret_ttl, char *errbuf)
{
    json_t *req = json_object(), *resp = NULL;
    int64_t ttl = 0;
    int r;

    if (req && set_i64(req, "ID", id) < 0) {
        json_decref(req);
        req = NULL;
    }
    /* /v3/lease/keepalive is a stream: one request in the body, one answer line back. */
    r = request(c, "/v3/lease/keepalive", req, 1, 1, &resp, errbuf);
    if (r < 0)
        return r;
    if (get_i64(resp, "TTL", &ttl) < 0)
        r = meshca_fail(errbuf, ETCD_EIO, "etcd: malformed lease keepalive answer");
    else if (ttl <= 0)
        /* etcd answers TTL 0 (omitted) for a lease it no longer has. */
        r = meshca_fail(errbuf, ETCD_ENOTFOUND,
                        "etcd: lease %" PRId64 " has expired or was revoked", id);
    else if (ret_ttl)
        *ret_ttl = ttl;
    json_decref(resp);
    return r;
}

int etcd_lease_revoke(etcd_client *c, int64_t id, char *errbuf)
{
    json_t *req = json_object(), *resp = NULL;
    int r;

    if (req && set_i64(req, "ID", id) < 0) {
        json_decref(req);
        req = NULL;
    }
    r = request(c, "/v3/lease/revoke", req, 1, 0, &resp, errbuf);
    json_decref(resp);
    return r;
}

/* ---- health ------------------------------------------------------------------------------- */

static int parse_status(const json_t *resp, etcd_member_status *st)
{
    const char *v = json_string_value(json_object_get(resp, "version"));

    memset(st, 0, sizeof(*st));
    snprintf(st->version, sizeof(st->version), "%s", v ? v : "");
    if (get_u64(json_object_get(resp, "header"), "member_id", &st->member_id) < 0 ||
        get_u64(resp, "leader", &st->leader_id) < 0 || header_revision(resp, &st->revision) < 0 ||
        get_i64(resp, "dbSize", &st->db_size) < 0)
        return -1;
    return 0;
}

int etcd_member_status_get(etcd_client *c, size_t endpoint, etcd_member_status *ret, char *errbuf)
{
    char why[WHY_LEN] = "";
    json_t *req = json_object(), *resp = NULL;
    char *body;
    etcd_member_status st;
    int code = ETCD_EIO;
    enum attempt a;

    if (endpoint >= c->n) {
        json_decref(req);
        return meshca_fail(errbuf, ETCD_EINVAL, "etcd: no endpoint %zu", endpoint);
    }
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body)
        return meshca_fail(errbuf, ETCD_ENOMEM, "etcd: out of memory");
    a = attempt(c, endpoint, "/v3/maintenance/status", body, strlen(body), 0, NULL, &resp, &code, why,
                sizeof(why), errbuf);
    free(body);
    if (a != ATTEMPT_DONE)
        return meshca_fail(errbuf, ETCD_EUNAVAILABLE, "etcd member %s did not answer: %s",
                           c->ep[endpoint].hostport, why);
    if (code < 0)
        return code;
    code = parse_status(resp, &st) < 0
               ? meshca_fail(errbuf, ETCD_EIO, "etcd: malformed status answer from %s",
                             c->ep[endpoint].hostport)
           : st.leader_id == 0
               ? meshca_fail(errbuf, ETCD_EUNAVAILABLE, "etcd member %s sees no leader",
                             c->ep[endpoint].hostport)
               : 0;
    json_decref(resp);
    if (code == 0 && ret)
        *ret = st;
    return code;
}

int etcd_health(etcd_client *c, char *errbuf)
{
    json_t *resp = NULL;
    etcd_member_status st;
    int r = request(c, "/v3/maintenance/status", json_object(), 1, 0, &resp, errbuf);

    if (r < 0)
        return r;
    r = parse_status(resp, &st) < 0 ? meshca_fail(errbuf, ETCD_EIO, "etcd: malformed status answer")
        : st.leader_id == 0
            ? meshca_fail(errbuf, ETCD_EUNAVAILABLE, "etcd member %s sees no leader",
                          c->ep[c->current].hostport)
            : 0;
    json_decref(resp);
    return r;
}

/* ---- watch -------------------------------------------------------------------------------- */

struct etcd_watch {
    etcd_client *c;
    char *key, *end;
    size_t key_len, end_len;
    int64_t next_rev; /* 0 until the first stream says where "now" is */
    CURLM *multi;
    CURL *h;          /* the stream's own handle: a watch holds its connection open */
    int active;       /* h is in multi */
    size_t ep;        /* endpoint of the current or next stream */
    int64_t retry_at; /* no reconnect before this (monotonic ms): backoff */
    long backoff;
    unsigned failed_in_row; /* streams that ended without delivering: a full round = unavailable */
    char curlerr[CURL_ERROR_SIZE];
    char why[ETCD_ENDPOINTS_MAX][WHY_LEN];
    char *body;
    struct curl_slist *headers;
    struct buf in; /* bytes of the stream not yet split into lines */
    etcd_event *ev;
    size_t nev, cap;
    int64_t compact;    /* > 0: etcd said the resume revision is compacted */
    int bad;            /* the stream sent something we could not take: drop it */
    int created;        /* etcd confirmed the current stream: it is set up and idle until events */
    curl_socket_t sock; /* the stream's connection, for an event loop; CURL_SOCKET_BAD if none */
};

/* The stream's socket is opened and closed here, so an event loop can wait on it. */
static curl_socket_t watch_open_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    etcd_watch *w = clientp;
    curl_socket_t fd;

    (void)purpose;
    fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd >= 0)
        w->sock = fd;
    return fd >= 0 ? fd : CURL_SOCKET_BAD;
}

static int watch_close_cb(void *clientp, curl_socket_t fd)
{
    etcd_watch *w = clientp;

    if (fd == w->sock)
        w->sock = CURL_SOCKET_BAD;
    return close(fd);
}

void etcd_events_free(etcd_event *ev, size_t n)
{
    if (!ev)
        return;
    for (size_t i = 0; i < n; i++)
        kv_clear(&ev[i].kv);
    free(ev);
}

int etcd_watch_new(etcd_client *c, const char *key, size_t key_len, const char *range_end,
                   size_t range_end_len, int64_t start_revision, etcd_watch **ret, char *errbuf)
{
    etcd_watch *w;
    int r = check_key(key, key_len, errbuf);

    if (r < 0)
        return r;
    if (start_revision < 0)
        return meshca_fail(errbuf, ETCD_EINVAL, "etcd: negative watch revision");
    w = calloc(1, sizeof(*w));
    if (!w)
        return meshca_fail(errbuf, ETCD_ENOMEM, "etcd: out of memory");
    w->c = c;
    w->next_rev = start_revision;
    w->sock = CURL_SOCKET_BAD;
    w->ep = c->current;
    w->backoff = c->opts.backoff_initial_ms;
    w->in.max = c->opts.max_response;
    w->key = malloc(key_len);
    w->end = malloc(range_end ? range_end_len + 1 : key_len + 1);
    w->multi = curl_multi_init();
    w->h = curl_easy_init();
    /* "hasleader": the member ends the stream when it loses its leader, instead of staying
     * silent while cut off from the cluster; we then resume on another member. */
    w->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (w->headers) {
        struct curl_slist *l = curl_slist_append(w->headers, "Grpc-Metadata-hasleader: true");
        if (!l) {
            curl_slist_free_all(w->headers);
            w->headers = NULL;
        } else {
            w->headers = l;
        }
    }
    if (!w->key || !w->end || !w->multi || !w->h || !w->headers) {
        etcd_watch_free(w);
        return meshca_fail(errbuf, ETCD_ENOMEM, "etcd: out of memory");
    }
    memcpy(w->key, key, key_len);
    w->key_len = key_len;
    if (range_end) {
        memcpy(w->end, range_end, range_end_len);
        w->end_len = range_end_len;
    } else {
        w->end_len = etcd_prefix_end(key, key_len, w->end);
    }
    *ret = w;
    return 0;
}

static void watch_stop(etcd_watch *w)
{
    if (w->active) {
        curl_multi_remove_handle(w->multi, w->h);
        w->active = 0;
    }
    buf_reset(&w->in);
    free(w->body);
    w->body = NULL;
}

void etcd_watch_free(etcd_watch *w)
{
    if (!w)
        return;
    watch_stop(w);
    if (w->h)
        curl_easy_cleanup(w->h);
    if (w->multi)
        curl_multi_cleanup(w->multi);
    curl_slist_free_all(w->headers);
    etcd_events_free(w->ev, w->nev);
    free(w->key);
    free(w->end);
    free(w);
}

int64_t etcd_watch_next_revision(const etcd_watch *w)
{
    return w->next_rev;
}

static int watch_push(etcd_watch *w, const json_t *e)
{
    etcd_event *ev;
    const char *type = json_string_value(json_object_get(e, "type"));

    if (w->nev == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        etcd_event *p = realloc(w->ev, cap * sizeof(*p));
        if (!p)
            return -1;
        w->ev = p;
        w->cap = cap;
    }
    ev = &w->ev[w->nev];
    ev->type = type && strcmp(type, "DELETE") == 0 ? ETCD_EVENT_DELETE : ETCD_EVENT_PUT;
    if (parse_kv(json_object_get(e, "kv"), &ev->kv) < 0)
        return -1;
    w->nev++;
    /* Resume after the last delivered event: etcd never splits one revision's events across
     * messages (without "fragment"), so nothing of this revision can still be coming. */
    if (ev->kv.mod_revision >= w->next_rev)
        w->next_rev = ev->kv.mod_revision + 1;
    return 0;
}

/* One newline-delimited message of the watch stream. */
static void watch_message(etcd_watch *w, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(line, len, 0, &jerr), *res, *events, *err;
    int64_t compact = 0, rev = 0;

    if (!msg) {
        w->bad = 1;
        snprintf(w->why[w->ep], sizeof(w->why[w->ep]), "watch message is not JSON");
        return;
    }
    res = json_object_get(msg, "result");
    err = json_object_get(msg, "error");
    if (!res) {
        const char *m = json_is_object(err) ? json_string_value(json_object_get(err, "message"))
                                            : json_string_value(err);
        w->bad = 1;
        set_why(w->why[w->ep], sizeof(w->why[w->ep]), m ? m : "watch stream error");
        goto out;
    }
    if (get_i64(res, "compact_revision", &compact) < 0 || header_revision(res, &rev) < 0) {
        w->bad = 1;
        goto out;
    }
    if (compact > 0) {
        w->compact = compact;
        goto out;
    }
    if (json_is_true(json_object_get(res, "canceled"))) {
        const char *m = json_string_value(json_object_get(res, "cancel_reason"));
        w->bad = 1;
        snprintf(w->why[w->ep], sizeof(w->why[w->ep]), "watch canceled: %s",
                 m ? m : "no reason given");
        goto out;
    }
    if (json_is_true(json_object_get(res, "created"))) {
        /* The stream is up: this member works. "From now" becomes a definite revision, so a
         * later resume neither misses nor repeats anything. */
        w->created = 1;
        w->failed_in_row = 0;
        w->backoff = w->c->opts.backoff_initial_ms;
        w->c->current = w->ep;
        if (w->next_rev == 0)
            w->next_rev = rev + 1;
    }
    events = json_object_get(res, "events");
    for (size_t i = 0; i < json_array_size(events); i++)
        if (watch_push(w, json_array_get(events, i)) < 0) {
            w->bad = 1;
            snprintf(w->why[w->ep], sizeof(w->why[w->ep]),
                     "malformed watch event or out of memory");
            break;
        }
out:
    json_decref(msg);
}

static size_t watch_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    etcd_watch *w = userdata;
    size_t n = size * nmemb, start = 0;

    if (buf_append(&w->in, ptr, n) < 0) {
        snprintf(w->why[w->ep], sizeof(w->why[w->ep]), "watch message larger than %zu bytes",
                 w->in.max);
        return 0;
    }
    for (size_t i = 0; i < w->in.len && !w->bad && !w->compact; i++) {
        if (w->in.p[i] != '\n')
            continue;
        if (i > start)
            watch_message(w, w->in.p + start, i - start);
        start = i + 1;
    }
    if (w->bad || w->compact)
        return 0; /* stop this stream: it is useless now */
    memmove(w->in.p, w->in.p + start, w->in.len - start);
    w->in.len -= start;
    return n;
}

static int watch_start(etcd_watch *w)
{
    etcd_client *c = w->c;
    char url[ETCD_ENDPOINT_LEN_MAX + 64];
    json_t *create = range_body(w->key, w->key_len, w->end, w->end_len), *req = json_object();
    int bad = 0;

    if (!create || !req || (w->next_rev && set_i64(create, "start_revision", w->next_rev) < 0) ||
        json_object_set_new(req, "create_request", create) < 0) {
        json_decref(req);
        return -1;
    }
    create = NULL;
    w->body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!w->body)
        return -1;
    w->curlerr[0] = '\0';
    w->why[w->ep][0] = '\0';
    w->bad = 0;
    w->created = 0;
    make_url(c, w->ep, "/v3/watch", url, sizeof(url));
    curl_easy_reset(w->h);
    bad |= set_common(c, w->h, url, w->curlerr) < 0;
    bad |= curl_easy_setopt(w->h, CURLOPT_HTTPHEADER, w->headers) != CURLE_OK;
    bad |= curl_easy_setopt(w->h, CURLOPT_OPENSOCKETFUNCTION, watch_open_cb) != CURLE_OK;
    bad |= curl_easy_setopt(w->h, CURLOPT_OPENSOCKETDATA, w) != CURLE_OK;
    bad |= curl_easy_setopt(w->h, CURLOPT_CLOSESOCKETFUNCTION, watch_close_cb) != CURLE_OK;
    bad |= curl_easy_setopt(w->h, CURLOPT_CLOSESOCKETDATA, w) != CURLE_OK;
    bad |= curl_easy_setopt(w->h, CURLOPT_WRITEFUNCTION, watch_write_cb) != CURLE_OK;
    bad |= curl_easy_setopt(w->h, CURLOPT_WRITEDATA, w) != CURLE_OK;
    bad |= curl_easy_setopt(w->h, CURLOPT_POSTFIELDS, w->body) != CURLE_OK;
    bad |= curl_easy_setopt(w->h, CURLOPT_TIMEOUT_MS, 0L) != CURLE_OK; /* a stream has no end */
    if (bad || curl_multi_add_handle(w->multi, w->h) != CURLM_OK) {
        free(w->body);
        w->body = NULL;
        return -1;
    }
    w->active = 1;
    return 0;
}

/* The stream ended (error, member gone, or we stopped it): note why, move to the next member. */
static void watch_ended(etcd_watch *w, CURLcode cr)
{
    long status = 0;

    curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &status);
    if (!w->why[w->ep][0])
        set_why(w->why[w->ep], sizeof(w->why[w->ep]),
                w->curlerr[0]                  ? w->curlerr
                : cr != CURLE_OK               ? curl_easy_strerror(cr)
                : status != 200 && status != 0 ? "HTTP error"
                                               : "watch stream closed");
    watch_stop(w);
    w->failed_in_row++;
    w->ep = (w->ep + 1) % w->c->n;
    /* Back off only after a whole round failed: one dead member should not delay the next. */
    if (w->failed_in_row % w->c->n == 0) {
        w->retry_at = now_ms() + w->backoff;
        w->backoff =
            w->backoff * 2 > w->c->opts.backoff_max_ms ? w->c->opts.backoff_max_ms : w->backoff * 2;
    }
}

int etcd_watch_next(etcd_watch *w, long timeout_ms, etcd_event **ret_events, size_t *ret_n,
                    int64_t *ret_compact, char *errbuf)
{
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);

    /* Bounded by the deadline: every pass either returns or waits until it. */
    for (;;) {
        int running = 0, left;
        CURLMsg *m;
        int64_t now, wait;

        if (w->nev > 0) {
            *ret_events = w->ev;
            *ret_n = w->nev;
            w->ev = NULL;
            w->nev = w->cap = 0;
            return 0;
        }
        if (w->compact > 0) {
            if (ret_compact)
                *ret_compact = w->compact;
            return meshca_fail(errbuf, ETCD_ECOMPACTED,
                               "etcd: watch revision %" PRId64
                               " is compacted (compact revision %" PRId64 ")",
                               w->next_rev, w->compact);
        }
        now = now_ms();
        if (!w->active && now >= w->retry_at && watch_start(w) < 0)
            return meshca_fail(errbuf, ETCD_ENOMEM, "etcd: cannot start a watch stream");
        if (w->active) {
            curl_multi_perform(w->multi, &running);
            while ((m = curl_multi_info_read(w->multi, &left)))
                if (m->msg == CURLMSG_DONE)
                    watch_ended(w, m->data.result);
            if (w->nev > 0 || w->compact > 0)
                continue;
        }
        now = now_ms();
        if (now >= deadline) {
            if (w->failed_in_row >= w->c->n)
                return none_answered(w->c, w->why, errbuf);
            *ret_events = NULL;
            *ret_n = 0;
            return 0;
        }
        wait = deadline - now;
        if (!w->active && w->retry_at - now < wait)
            wait = w->retry_at - now;
        if (wait > 0)
            curl_multi_poll(w->multi, NULL, 0, (int)(wait > 1000 ? 1000 : wait), NULL);
    }
}

/* While a stream is being set up (connect, TLS, request), curl also needs to write: the loop
 * calls back at least this often until etcd confirms the stream, then waits on reads only. */
#define WATCH_SETUP_TICK_MS 20

size_t etcd_watch_pollfds(etcd_watch *w, struct pollfd *fds, size_t max, long *ret_timeout_ms)
{
    long t = -1;

    if (w->nev > 0 || w->compact > 0 || !w->active) {
        /* Something to hand out, or a stream to (re)start: call now, or when backoff ends. */
        int64_t left = w->nev > 0 || w->compact > 0 ? 0 : w->retry_at - now_ms();

        *ret_timeout_ms = left > 0 ? (long)left : 0;
        return 0;
    }
    if (curl_multi_timeout(w->multi, &t) != CURLM_OK)
        t = 0;
    if (!w->created && (t < 0 || t > WATCH_SETUP_TICK_MS))
        t = WATCH_SETUP_TICK_MS;
    *ret_timeout_ms = t;
    if (w->sock == CURL_SOCKET_BAD || max == 0)
        return 0;
    fds[0].fd = w->sock;
    fds[0].events = POLLIN;
    fds[0].revents = 0;
    return 1;
}
