/* client.c - libcurl client of the dataplane API: TLS to the control-plane CA, failover, backoff.
 */
#include "reconciler/api/client.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "reconciler/store.h"

struct api_client {
    char **servers;
    size_t nservers;
    size_t preferred; /* the server that answered last */
    char *ca_file, *cert_file, *key_file;
    char *auth_header; /* "Authorization: Bearer ..." (secret) */
    bool (*stop_requested)(void);
    long connect_timeout_ms, timeout_ms, backoff_initial_ms, backoff_max_ms;
    int rounds;
};

typedef struct response {
    char *data;
    size_t len;
    int too_big;
    uint64_t index;
    int has_index;
} response;

static char *dup_or_null(const char *s, int *failed)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *failed = 1;
    return d;
}

void api_client_free(api_client *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nservers; i++)
        free(c->servers[i]);
    free(c->servers);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    if (c->auth_header) {
        OPENSSL_cleanse(c->auth_header, strlen(c->auth_header));
        free(c->auth_header);
    }
    free(c);
}

int api_client_new(const api_client_options *o, api_client **ret, char *errbuf)
{
    if (!o || !ret || !o->servers || o->nservers == 0 || o->nservers > API_CLIENT_MAX_SERVERS)
        return meshca_fail(errbuf, MESHCA_EINVAL, "api client: give 1 to %d server URLs",
                           API_CLIENT_MAX_SERVERS);
    if (!o->ca_file)
        return meshca_fail(errbuf, MESHCA_EINVAL, "api client: --ca-file is required");
    if (!o->cert_file != !o->key_file)
        return meshca_fail(errbuf, MESHCA_EINVAL, "api client: a client certificate needs its key");
    for (size_t i = 0; i < o->nservers; i++)
        if (!o->servers[i] || strncmp(o->servers[i], "https://", 8) != 0 ||
            strlen(o->servers[i]) > API_CLIENT_MAX_URL / 2)
            return meshca_fail(errbuf, MESHCA_EINVAL,
                               "api client: server URL %zu must start with https://", i + 1);
    api_client *c = calloc(1, sizeof(*c));
    if (!c)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "api client: out of memory");
    int failed = 0;
    c->servers = calloc(o->nservers, sizeof(*c->servers));
    failed = !c->servers;
    for (size_t i = 0; !failed && i < o->nservers; i++) {
        /* Trailing slashes dropped so paths join with exactly one. */
        c->servers[i] = dup_or_null(o->servers[i], &failed);
        c->nservers++;
        size_t n = c->servers[i] ? strlen(c->servers[i]) : 0;
        while (n > 8 && c->servers[i][n - 1] == '/')
            c->servers[i][--n] = '\0';
    }
    c->ca_file = dup_or_null(o->ca_file, &failed);
    c->cert_file = dup_or_null(o->cert_file, &failed);
    c->key_file = dup_or_null(o->key_file, &failed);
    if (o->token) {
        size_t n = strlen("Authorization: Bearer ") + strlen(o->token) + 1;
        c->auth_header = malloc(n);
        if (c->auth_header)
            snprintf(c->auth_header, n, "Authorization: Bearer %s", o->token);
        else
            failed = 1;
    }
    if (failed) {
        api_client_free(c);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "api client: out of memory");
    }
    c->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
    c->rounds = o->rounds > 0 ? o->rounds : 3;
    c->backoff_initial_ms = o->backoff_initial_ms > 0 ? o->backoff_initial_ms : 500;
    c->backoff_max_ms = o->backoff_max_ms > 0 ? o->backoff_max_ms : 30000;
    c->stop_requested = o->stop_requested;
    *ret = c;
    return 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    response *r = arg;
    size_t n = size * nmemb;
    if (r->len + n > API_CLIENT_MAX_RESPONSE) {
        r->too_big = 1;
        return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
    }
    char *grown = realloc(r->data, r->len + n + 1);
    if (!grown)
        return 0;
    memcpy(grown + r->len, ptr, n);
    r->len += n;
    grown[r->len] = '\0';
    r->data = grown;
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
    response *r = arg;
    size_t n = size * nmemb;
    static const char name[] = "X-Meshca-Index:";
    if (n > sizeof(name) && strncasecmp(ptr, name, sizeof(name) - 1) == 0) {
        char buf[32];
        size_t vlen = n - (sizeof(name) - 1);
        if (vlen < sizeof(buf)) {
            memcpy(buf, ptr + sizeof(name) - 1, vlen);
            buf[vlen] = '\0';
            char *end = NULL;
            unsigned long long v = strtoull(buf, &end, 10);
            if (end != buf) {
                r->index = v;
                r->has_index = 1;
            }
        }
    }
    return n;
}

/* The server's {"error":{"message"}} or a generic text. */
static void error_message(const response *r, long status, const char *server, char *errbuf)
{
    json_t *doc = r->data ? json_loadb(r->data, r->len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    meshca_fail(errbuf, MESHCA_EINVAL, "%s: HTTP %ld: %s", server, status,
                msg ? msg : "no error message");
    json_decref(doc);
}

/* libcurl's progress callback: a stop request (SIGTERM) ends a parked query at once. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    api_client *c = arg;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return c->stop_requested && c->stop_requested() ? 1 : 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0)
        ;
}

/* The list holds a copy of the bearer token: wipe it before it is freed. */
static void free_headers(struct curl_slist *headers)
{
    for (struct curl_slist *h = headers; h; h = h->next)
        OPENSSL_cleanse(h->data, strlen(h->data));
    curl_slist_free_all(headers);
}

/* libcurl's words for a failed handshake or verification name OpenSSL's check, not the
 * agent's flag a newcomer got wrong: say which one, since the agent retries such a server for
 * ever. */
static const char *verify_hint(CURLcode cc, const char *curl_err)
{
    /* OpenSSL's words for a server that answered in plain text: the --metrics port, or
     * another service than the API. */
    if (cc == CURLE_SSL_CONNECT_ERROR && strstr(curl_err, "wrong version number"))
        return " (this port does not answer TLS: --server must be the address of 'meshca run "
               "--listen', not of its --metrics port or another service)";
    if (cc != CURLE_PEER_FAILED_VERIFICATION)
        return "";
    if (strstr(curl_err, "subject name") || strstr(curl_err, "does not match"))
        return " (the controller's certificate does not name the host of --server: give "
               "'meshca run' that name or address with --tls-san)";
    return " (--ca-file is not the CA of this controller's certificate: pass 'meshca cp-ca -o "
           "pem' run against the controller's store, or the CA of its --tls-cert)";
}

/* One request with failover over every server and backoff between rounds. */
static int request(api_client *c, const char *method, const char *path, const char *body,
                   long extra_timeout_ms, response *ret, char *errbuf)
{
    long backoff = c->backoff_initial_ms;
    char curl_err[CURL_ERROR_SIZE];
    for (int round = 0; round < c->rounds; round++) {
        if (c->stop_requested && c->stop_requested())
            return meshca_fail(errbuf, MESHCA_EUNAVAILABLE, "api client: stopped");
        if (round > 0) {
            sleep_ms(backoff);
            backoff = backoff * 2 > c->backoff_max_ms ? c->backoff_max_ms : backoff * 2;
        }
        for (size_t k = 0; k < c->nservers; k++) {
            size_t idx = (c->preferred + k) % c->nservers;
            const char *server = c->servers[idx];
            char url[API_CLIENT_MAX_URL];
            if (snprintf(url, sizeof(url), "%s%s", server, path) >= (int)sizeof(url))
                return meshca_fail(errbuf, MESHCA_EINVAL, "api client: URL too long");
            CURL *h = curl_easy_init();
            struct curl_slist *headers = NULL;
            struct curl_slist *grown = curl_slist_append(headers, "Content-Type: application/json");
            headers = grown;
            if (headers && c->auth_header) {
                grown = curl_slist_append(headers, c->auth_header);
                headers = grown ? grown : headers;
                if (!grown) {
                    curl_slist_free_all(headers);
                    headers = NULL;
                }
            }
            if (!h || !headers) {
                curl_easy_cleanup(h);
                free_headers(headers);
                return meshca_fail(errbuf, MESHCA_ENOMEM, "api client: out of memory");
            }
            response r = {0};
            curl_err[0] = '\0';
            curl_easy_setopt(h, CURLOPT_URL, url);
            curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
            curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
            curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
            /* --ca-file alone: libcurl keeps its built-in CA directory (Debian's
             * /etc/ssl/certs) beside CAINFO, so any CA there would pass as the controller
             * and get the token. */
            curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
            curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
            curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
            curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
            if (c->cert_file) {
                curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert_file);
                curl_easy_setopt(h, CURLOPT_SSLKEY, c->key_file);
            }
            curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
            if (body) {
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
            }
            curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
            curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms + extra_timeout_ms);
            curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)API_CLIENT_MAX_RESPONSE);
            curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
            curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
            curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
            curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
            curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
            if (c->stop_requested) {
                curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
                curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
                curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
            }
            CURLcode cc = curl_easy_perform(h);
            long status = 0;
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
            curl_easy_cleanup(h);
            free_headers(headers);
            /* Ctrl-C or SIGTERM: not a failing controller (libcurl's "Callback aborted"). */
            if (cc == CURLE_ABORTED_BY_CALLBACK && c->stop_requested && c->stop_requested()) {
                free(r.data);
                return meshca_fail(errbuf, MESHCA_EUNAVAILABLE,
                                   "%s: request interrupted: the agent is stopping", server);
            }
            if (cc != CURLE_OK || status == 429 || status == 503 || status >= 500) {
                if (cc != CURLE_OK)
                    meshca_fail(errbuf, MESHCA_EUNAVAILABLE, "%s: %s%s", server,
                                r.too_big ? "response larger than the limit"
                                          : (curl_err[0] ? curl_err : curl_easy_strerror(cc)),
                                verify_hint(cc, curl_err));
                else
                    error_message(&r, status, server, errbuf);
                free(r.data);
                continue; /* next server */
            }
            c->preferred = idx;
            if (status >= 400) {
                error_message(&r, status, server, errbuf);
                free(r.data);
                return status == 404   ? MESHCA_ENOTFOUND
                       : status == 409 ? MESHCA_ECONFLICT
                                       : MESHCA_EINVAL;
            }
            *ret = r;
            return 0;
        }
    }
    /* errbuf holds the last server's failure. */
    return MESHCA_EUNAVAILABLE;
}

static int dp_path(char *buf, size_t size, const char *mesh_name, const char *dp_name,
                   const char *tail, char *errbuf)
{
    if (!store_name_valid(mesh_name) || !store_name_valid(dp_name))
        return meshca_fail(errbuf, MESHCA_EINVAL, "api client: invalid mesh or dataplane name");
    if (snprintf(buf, size, "/v1/meshes/%s/dataplanes/%s/%s", mesh_name, dp_name, tail) >=
        (int)size)
        return meshca_fail(errbuf, MESHCA_EINVAL, "api client: names too long");
    return 0;
}

int api_client_post_csr(api_client *c, const char *mesh_name, const char *dp_name,
                        const char *csr_pem, char *errbuf)
{
    char path[API_CLIENT_MAX_URL / 2];
    int rc = dp_path(path, sizeof(path), mesh_name, dp_name, "csr", errbuf);
    if (rc < 0)
        return rc;
    json_t *doc = json_pack("{s:s}", "csr", csr_pem ? csr_pem : "");
    char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!body)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "api client: out of memory");
    response r = {0};
    rc = request(c, "POST", path, body, 0, &r, errbuf);
    free(body);
    free(r.data);
    return rc;
}

int api_client_get_identity(api_client *c, const char *mesh_name, const char *dp_name,
                            uint64_t index, int wait_s, json_t **ret_body, uint64_t *ret_index,
                            char *errbuf)
{
    char tail[96], path[API_CLIENT_MAX_URL / 2];
    if (wait_s < 0)
        wait_s = 0;
    snprintf(tail, sizeof(tail), "identity?index=%" PRIu64 "&wait=%ds", index, wait_s);
    int rc = dp_path(path, sizeof(path), mesh_name, dp_name, tail, errbuf);
    if (rc < 0)
        return rc;
    response r = {0};
    /* The server may hold the query for wait_s: the total timeout must outlast it. */
    rc = request(c, "GET", path, NULL, (long)wait_s * 1000, &r, errbuf);
    if (rc < 0)
        return rc;
    json_t *doc = r.data ? json_loadb(r.data, r.len, 0, NULL) : NULL;
    free(r.data);
    if (!json_is_object(doc) || !r.has_index) {
        json_decref(doc);
        return meshca_fail(errbuf, MESHCA_EINVAL,
                           "api client: identity answer without a body "
                           "or X-Meshca-Index");
    }
    *ret_body = doc;
    if (ret_index)
        *ret_index = r.index;
    return 0;
}

int api_client_put_ack(api_client *c, const char *mesh_name, const char *dp_name,
                       uint64_t generation, char *errbuf)
{
    char path[API_CLIENT_MAX_URL / 2], body[64];
    int rc = dp_path(path, sizeof(path), mesh_name, dp_name, "ack", errbuf);
    if (rc < 0)
        return rc;
    snprintf(body, sizeof(body), "{\"generation\":%" PRIu64 "}", generation);
    response r = {0};
    rc = request(c, "PUT", path, body, 0, &r, errbuf);
    free(r.data);
    return rc;
}
