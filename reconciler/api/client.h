/* client.h - the agent's side of the dataplane API: libcurl over HTTPS with failover and backoff.
 */
#ifndef MESHCA_API_CLIENT_H
#define MESHCA_API_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "manifests/error.h"

#define API_CLIENT_MAX_SERVERS 16
#define API_CLIENT_MAX_RESPONSE (1024 * 1024) /* larger answers are refused */
#define API_CLIENT_MAX_URL 1024

typedef struct api_client_options {
    const char *const *servers; /* base URLs "https://host:port", tried in turn; borrowed */
    size_t nservers;            /* 1..API_CLIENT_MAX_SERVERS */
    const char *ca_file;        /* the control-plane CA (`meshca cp-ca -o pem`); required */
    const char *token;          /* bearer token, or NULL; copied and wiped on free */
    const char *cert_file;      /* client certificate (leaf + chain), or NULL */
    const char *key_file;       /* its key, or NULL */
    long connect_timeout_ms;    /* 0 = 5000 */
    long timeout_ms;            /* total per request without a wait; 0 = 30000 */
    int rounds;                 /* passes over every server before giving up; 0 = 3 */
    long backoff_initial_ms;    /* sleep after the first failed pass; 0 = 500 */
    long backoff_max_ms;        /* 0 = 30000; doubles up to this */
    bool (*stop_requested)(void); /* may be NULL; true aborts a request (parked queries too) */
} api_client_options;

#define API_CLIENT_OPTIONS_INIT                                                                    \
    {                                                                                              \
        NULL, 0, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0, NULL                                       \
    }

typedef struct api_client api_client;

/* Caller frees *ret with api_client_free(). MESHCA_EINVAL for bad options. */
int api_client_new(const api_client_options *opts, api_client **ret, char *errbuf);
void api_client_free(api_client *c);

/*
 * Results: 0; or the server's refusal with its message in errbuf: MESHCA_EINVAL (400, 401, 403,
 * 413), MESHCA_ENOTFOUND (404), MESHCA_ECONFLICT (409); or MESHCA_EUNAVAILABLE when no server
 * answered (transport error, 429, 503) after every round of failover and backoff. A server
 * that answers is kept as the first to try next time.
 */

/* Sends the dataplane's CSR (PEM); the controller answers 202 and signs it on its next pass. */
int api_client_post_csr(api_client *c, const char *mesh_name, const char *dp_name,
                        const char *csr_pem, char *errbuf);

/*
 * A blocking query: returns when the identity's generation is above index, or after wait_s
 * seconds (0: at once). *ret_body the S13 identity object (json_decref), *ret_index the
 * X-Meshca-Index header.
 */
int api_client_get_identity(api_client *c, const char *mesh_name, const char *dp_name,
                            uint64_t index, int wait_s, json_t **ret_body, uint64_t *ret_index,
                            char *errbuf);

/* Acknowledges that the proxy loaded `generation`. */
int api_client_put_ack(api_client *c, const char *mesh_name, const char *dp_name,
                       uint64_t generation, char *errbuf);

#endif
