/* cfssl_client.h - a client of cfssl's API and the meshca intermediate CA that cfssl signs. */
#ifndef MESHCA_CA_CFSSL_CLIENT_H
#define MESHCA_CA_CFSSL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reconciler/ca_backend.h"

#define CFSSL_MAX_RESPONSE (1024 * 1024)
#define CFSSL_MAX_AUTH_KEY 128          /* bytes of an authKey once hex-decoded */
#define CFSSL_MAX_PROFILE 128

typedef struct cfssl_client_options {
    long connect_timeout_ms;
    long timeout_ms;                    /* whole request */
    size_t max_response;
} cfssl_client_options;

#define CFSSL_CLIENT_OPTIONS_INIT {5000, 15000, CFSSL_MAX_RESPONSE}

typedef struct cfssl_client cfssl_client;

/*
 * Builds a client from ctx->backend's conf (url, profile, authKey datasource holding the hex key
 * of cfssl's "standard" auth provider), reading the datasource through ctx (borrowed for the
 * call). No request is sent. MESHCA_EINVAL (bad conf, key not hex; the field path in errbuf),
 * MESHCA_ENOTFOUND, MESHCA_EIO, MESHCA_ENOMEM. Caller frees with cfssl_client_free(), which
 * wipes the key.
 */
int cfssl_client_open(const ca_context *ctx, const cfssl_client_options *opts,
                      cfssl_client **ret, char *errbuf);
void cfssl_client_free(cfssl_client *c);   /* accepts NULL */

/* The profile of the conf (borrowed), NULL when absent (cfssl's default profile). */
const char *cfssl_client_profile(const cfssl_client *c);

/*
 * POST /api/v1/cfssl/info for `profile` (NULL: the conf's): the root certificate, checked to
 * parse. Caller frees *ret_root_pem with free(). Error classes, every message naming the backend
 * and cfssl's own message, never the auth key:
 *   MESHCA_EINVAL       cfssl answered {"success":false,"errors":[{code,message}]}: refused
 *                       (bad profile, authentication), exit 1;
 *   MESHCA_EUNAVAILABLE not reachable, timed out, HTTP 5xx: retry with backoff, exit 2;
 *   MESHCA_EIO          a malformed answer, response too large; exit 2.
 */
int cfssl_info(cfssl_client *c, const char *profile, char **ret_root_pem, char *errbuf);

/* Signs csr_pem with `profile` (NULL: the conf's) through /api/v1/cfssl/sign, or
 * /api/v1/cfssl/authsign (HMAC-SHA256 of the request with the auth key) when an authKey is set.
 * Caller frees *ret_cert_pem. Errors as cfssl_info(). */
int cfssl_sign_ca(cfssl_client *c, const char *csr_pem, const char *profile, char **ret_cert_pem,
                  char *errbuf);

/* A meshca intermediate CA signed by cfssl. Owned: clear with cfssl_intermediate_clear(). */
typedef struct cfssl_intermediate {
    X509 *cert;            /* CA:TRUE, pathlen 0, chains to root */
    EVP_PKEY *key;         /* its private key (secret) */
    X509 *root;            /* cfssl's root, from /info */
    int64_t not_before, not_after;
    int64_t renew_at;      /* two thirds into its life */
} cfssl_intermediate;

/*
 * Generates a P-256 key, builds a CA CSR (CN "meshca <mesh> intermediate"), has cfssl sign it
 * with the conf's profile (a CA profile: ca_constraint is_ca true, max_path_len 0), and checks
 * the answer: a CA with pathlen 0 and keyCertSign, for our key, chaining to the /info root at
 * `now` (X509_V_FLAG_X509_STRICT). A profile that signs something else is MESHCA_EINVAL with
 * what is wrong. Outputs written only on success.
 */
int cfssl_make_intermediate(cfssl_client *c, int64_t now, cfssl_intermediate *ret, char *errbuf);

/* Apply-time check: makes an intermediate as above and throws it away (reachable, authenticated,
 * the profile signs a proper CA). Errors as cfssl_make_intermediate(). */
int cfssl_check(cfssl_client *c, int64_t now, char *errbuf);

/* Whether the intermediate is due for renewal at `now`. */
bool cfssl_intermediate_due(const cfssl_intermediate *im, int64_t now);

/* Frees and wipes (the key). Accepts NULL and a zeroed struct. */
void cfssl_intermediate_clear(cfssl_intermediate *im);

#endif
