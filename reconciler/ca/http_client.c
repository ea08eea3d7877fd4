/* http_client.c - one reusable libcurl handle for an external CA: TLS options, timeouts, size limit. */
#include "reconciler/ca/http_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

struct http_client {
    CURL *curl;
    char errbuf[CURL_ERROR_SIZE];
    size_t max_response;
    char *server_name;
};

typedef struct sink {
    char *data;
    size_t len, cap, max;
    bool too_big;
} sink;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sink *s = userdata;
    size_t n = size * nmemb;

    if (n > s->max - s->len) {
        s->too_big = true;   /* returning short makes libcurl stop with CURLE_WRITE_ERROR */
        return 0;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        char *d;

        while (cap < s->len + n + 1)
            cap *= 2;
        d = malloc(cap);
        if (!d)
            return 0;
        if (s->data) {
            memcpy(d, s->data, s->len);
            OPENSSL_cleanse(s->data, s->cap);   /* the body may hold a token */
            free(s->data);
        }
        s->data = d;
        s->cap = cap;
    }
    memcpy(s->data + s->len, ptr, n);
    s->len += n;
    s->data[s->len] = '\0';
    return n;
}

static void sink_free(sink *s)
{
    if (s->data) {
        OPENSSL_cleanse(s->data, s->cap);
        free(s->data);
    }
    s->data = NULL;
}

void http_response_clear(http_response *r)
{
    if (!r)
        return;
    if (r->body) {
        OPENSSL_cleanse(r->body, r->body_len);
        free(r->body);
    }
    r->body = NULL;
    r->body_len = 0;
}

void http_client_free(http_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->server_name);
    free(c);
}

static int set_blob(CURL *curl, CURLoption opt, const char *data, size_t len)
{
    struct curl_blob blob = {(void *)data, len, CURL_BLOB_COPY};

    return curl_easy_setopt(curl, opt, &blob) == CURLE_OK ? 0 : -1;
}

int http_client_new(const http_client_options *opts, http_client **ret, char *errbuf)
{
    http_client *c;
    CURL *curl;
    int bad = 0;

    if (opts->connect_timeout_ms <= 0 || opts->timeout_ms <= 0 || opts->max_response == 0)
        return meshca_fail(errbuf, MESHCA_EINVAL, "timeouts and the response limit must be > 0");
    if ((opts->client_cert_pem == NULL) != (opts->client_key_pem == NULL))
        return meshca_fail(errbuf, MESHCA_EINVAL,
                           "a TLS client certificate needs its key, and the key its certificate");
    c = calloc(1, sizeof(*c));
    if (!c)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    c->max_response = opts->max_response;
    if (opts->server_name && !(c->server_name = strdup(opts->server_name))) {
        http_client_free(c);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    }
    curl = c->curl = curl_easy_init();
    if (!curl) {
        http_client_free(c);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "cannot create a libcurl handle");
    }
    bad |= curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, c->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, opts->connect_timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, opts->timeout_ms) != CURLE_OK;
    /* A CA is spoken to over HTTP(S) only, and a redirect is never followed (it could carry the
     * token elsewhere). */
    bad |= curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK;
    bad |= curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE,
                            (curl_off_t)opts->max_response) != CURLE_OK;
    if (opts->ca_pem) {
        bad |= set_blob(curl, CURLOPT_CAINFO_BLOB, opts->ca_pem, opts->ca_pem_len) != 0;
        /* The CA given is the only one: libcurl would keep its built-in CA directory
         * (/etc/ssl/certs) beside it, and any CA there could pass as Vault and get the token. */
        bad |= curl_easy_setopt(curl, CURLOPT_CAPATH, NULL) != CURLE_OK;
    }
    if (opts->skip_verify) {
        bad |= curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L) != CURLE_OK;
        bad |= curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK;
    }
    if (opts->client_cert_pem) {
        bad |= curl_easy_setopt(curl, CURLOPT_SSLCERTTYPE, "PEM") != CURLE_OK;
        bad |= set_blob(curl, CURLOPT_SSLCERT_BLOB, opts->client_cert_pem,
                        opts->client_cert_len) != 0;
        bad |= curl_easy_setopt(curl, CURLOPT_SSLKEYTYPE, "PEM") != CURLE_OK;
        bad |= set_blob(curl, CURLOPT_SSLKEY_BLOB, opts->client_key_pem,
                        opts->client_key_len) != 0;
    }
    if (bad) {
        http_client_free(c);
        return meshca_fail(errbuf, MESHCA_EINVAL,
                           "libcurl refused an option (does it support TLS blobs?)");
    }
    *ret = c;
    return 0;
}

/* With tls.serverName the URL's host is replaced by that name (so it is the name verified and
 * sent as SNI) and libcurl is told to connect to the original host and port instead. */
static int rewrite_for_server_name(http_client *c, const char *url, char **ret_url,
                                   struct curl_slist **ret_connect_to, char *errbuf)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *out = NULL, line[HTTP_CLIENT_MAX_URL];
    struct curl_slist *ct = NULL;
    int rc = MESHCA_EINVAL;

    if (!u)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        meshca_fail(errbuf, rc, "address is not a URL with a host");
        goto out;
    }
    if ((size_t)snprintf(line, sizeof(line), "%s:%s:%s:%s", c->server_name, port, host, port) >=
            sizeof(line) ||
        curl_url_set(u, CURLUPART_HOST, c->server_name, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK) {
        meshca_fail(errbuf, rc, "tls.serverName cannot be used as a host name");
        goto out;
    }
    ct = curl_slist_append(NULL, line);
    if (!ct) {
        rc = meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
        goto out;
    }
    *ret_url = strdup(out);
    if (!*ret_url) {
        curl_slist_free_all(ct);
        rc = meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
        goto out;
    }
    *ret_connect_to = ct;
    rc = 0;
out:
    curl_free(host);
    curl_free(port);
    curl_free(out);
    curl_url_cleanup(u);
    return rc;
}

static void wipe_slist(struct curl_slist *l)
{
    for (struct curl_slist *p = l; p; p = p->next)
        OPENSSL_cleanse(p->data, strlen(p->data));
    curl_slist_free_all(l);
}

static int transport_code(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        return MESHCA_EUNAVAILABLE;
    case CURLE_OUT_OF_MEMORY:
        return MESHCA_ENOMEM;
    default:
        return MESHCA_EIO;
    }
}

int http_client_request(http_client *c, const char *method, const char *url,
                        const char *const *headers, const char *body, size_t body_len,
                        http_response *ret, char *errbuf)
{
    struct curl_slist *hl = NULL, *connect_to = NULL;
    char *rewritten = NULL;
    sink s = {NULL, 0, 0, c->max_response, false};
    CURL *curl = c->curl;
    CURLcode cc;
    long status = 0;
    int rc;

    if (strlen(url) >= HTTP_CLIENT_MAX_URL)
        return meshca_fail(errbuf, MESHCA_EINVAL, "URL longer than %d bytes", HTTP_CLIENT_MAX_URL);
    if (c->server_name) {
        rc = rewrite_for_server_name(c, url, &rewritten, &connect_to, errbuf);
        if (rc < 0)
            return rc;
        url = rewritten;
    }
    for (size_t i = 0; headers && headers[i]; i++) {
        struct curl_slist *n = curl_slist_append(hl, headers[i]);

        if (!n) {
            rc = meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
            goto out;
        }
        hl = n;
    }
    if (body) {
        struct curl_slist *n = curl_slist_append(hl, "Content-Type: application/json");

        if (!n) {
            rc = meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
            goto out;
        }
        hl = n;
    }
    c->errbuf[0] = '\0';
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CONNECT_TO, connect_to);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &s);
    if (body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, strcmp(method, "POST") == 0 ? NULL : method);
    } else {
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") == 0 ? NULL : method);
    }
    cc = curl_easy_perform(curl);
    /* The handle is reused: drop every pointer into this call's memory. */
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(curl, CURLOPT_CONNECT_TO, NULL);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, NULL);
    if (s.too_big) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "response larger than %zu bytes", c->max_response);
        goto out;
    }
    if (cc == CURLE_FILESIZE_EXCEEDED) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "response larger than %zu bytes", c->max_response);
        goto out;
    }
    if (cc != CURLE_OK) {
        rc = meshca_fail(errbuf, transport_code(cc), "%s",
                         c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (!s.data) {
        s.data = calloc(1, 1);
        if (!s.data) {
            rc = meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
            goto out;
        }
        s.cap = 1;
    }
    ret->status = status;
    ret->body = s.data;
    ret->body_len = s.len;
    s.data = NULL;
    rc = 0;
out:
    sink_free(&s);
    wipe_slist(hl);
    curl_slist_free_all(connect_to);
    free(rewritten);
    return rc;
}
