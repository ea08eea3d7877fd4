/* http_client.h - one reusable libcurl handle for an external CA: TLS options, timeouts, size limit. */
#ifndef MESHCA_CA_HTTP_CLIENT_H
#define MESHCA_CA_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "manifests/error.h"

#define HTTP_CLIENT_MAX_RESPONSE (1024 * 1024)   /* default response size limit */
#define HTTP_CLIENT_MAX_HEADERS 8
#define HTTP_CLIENT_MAX_URL 2048

/* Options. Strings are borrowed for http_client_new() only (copied or handed to libcurl, which
 * copies them). */
typedef struct http_client_options {
    long connect_timeout_ms;     /* > 0 */
    long timeout_ms;             /* whole request, > 0 */
    size_t max_response;         /* bytes; a larger body fails with MESHCA_EIO */
    const char *ca_pem;          /* trusted server CA (PEM); NULL: the system store */
    size_t ca_pem_len;
    const char *server_name;     /* name to verify and send as SNI instead of the URL's host */
    bool skip_verify;            /* only when the user asked for it (S12) */
    const char *client_cert_pem; /* TLS client certificate and key, both or neither */
    size_t client_cert_len;
    const char *client_key_pem;  /* secret: libcurl copies it; the caller wipes its own copy */
    size_t client_key_len;
} http_client_options;

#define HTTP_CLIENT_OPTIONS_INIT {5000, 15000, HTTP_CLIENT_MAX_RESPONSE, NULL, 0, NULL, false, \
                                  NULL, 0, NULL, 0}

typedef struct http_client http_client;

/* A response. body is NUL-terminated (body_len excludes the NUL); caller frees with
 * http_response_clear(). */
typedef struct http_response {
    long status;
    char *body;
    size_t body_len;
} http_response;

/* Creates the handle (kept for every request, so connections are reused). Caller frees with
 * http_client_free(). Returns 0, MESHCA_ENOMEM or MESHCA_EINVAL (bad option). */
int http_client_new(const http_client_options *opts, http_client **ret, char *errbuf);

/* Sends one request. `headers` are "Name: value" lines (NULL-terminated, may be NULL; they may
 * hold a token: they are wiped after use and never appear in errbuf). `body` NULL = no body.
 * Any HTTP status is a success here (the caller reads it). Failures: MESHCA_EUNAVAILABLE (could
 * not connect, DNS, timeout: retry later), MESHCA_EIO (TLS failure, response too large, other
 * transport error), MESHCA_ENOMEM. errbuf: libcurl's own message, without the URL's secrets. */
int http_client_request(http_client *c, const char *method, const char *url,
                        const char *const *headers, const char *body, size_t body_len,
                        http_response *ret, char *errbuf);

void http_response_clear(http_response *r);   /* wipes the body (it may hold a token) */
void http_client_free(http_client *c);        /* accepts NULL */

#endif
