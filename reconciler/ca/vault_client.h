/* vault_client.h - a client of Vault's PKI secrets engine: signs CSRs and reads the CA chain over HTTPS. */
#ifndef MESHCA_CA_VAULT_CLIENT_H
#define MESHCA_CA_VAULT_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "manifests/model.h"
#include "reconciler/ca_backend.h"

#define VAULT_DEFAULT_COMMON_NAME "{{ tag \"kuma.io/service\" }}"   /* as Kong Mesh */
#define VAULT_MAX_TEMPLATE 256       /* bytes of a commonName template */
#define VAULT_MAX_COMMON_NAME 64     /* X.509 upper bound of a CN (RFC 5280 ub-common-name) */
#define VAULT_MAX_TOKEN 4096         /* bytes of a token read from a datasource */
#define VAULT_MAX_RESPONSE (1024 * 1024)
#define VAULT_CHECK_CN "meshca-backend-check"   /* common name of the throwaway check CSR */

/* Timeouts, the response limit and the clock (for token renewal). */
typedef struct vault_client_options {
    long connect_timeout_ms;
    long timeout_ms;                       /* whole request */
    size_t max_response;
    int64_t (*clock)(void *userdata);      /* seconds since the epoch; NULL: time(NULL) */
    void *clock_userdata;
} vault_client_options;

#define VAULT_CLIENT_OPTIONS_INIT {5000, 15000, VAULT_MAX_RESPONSE, NULL, NULL}

typedef struct vault_client vault_client;

/*
 * Builds a client from ctx->backend's conf (`fromCp`: address, namespace, pki, role,
 * commonName, tls {caCert, serverName, skipVerify}, auth {token} | {tls {clientCert, clientKey}}),
 * reading datasources through ctx (borrowed for this call only). No request is sent yet.
 * Errors (the field path and the reason in errbuf, never a credential): MESHCA_EINVAL (bad conf
 * or commonName template), MESHCA_ENOTFOUND (a datasource is absent), MESHCA_EIO, MESHCA_ENOMEM.
 * Caller frees with vault_client_free(), which wipes the token and keys.
 */
int vault_client_open(const ca_context *ctx, const vault_client_options *opts,
                      vault_client **ret, char *errbuf);
void vault_client_free(vault_client *c);   /* accepts NULL */

/*
 * The commonName template language: literal text and `{{ tag "NAME" }}`, replaced by the value
 * of tag NAME (from the dataplane's inbound tags). Anything else inside `{{ }}` is refused
 * (MESHCA_EINVAL, naming the expression). A tag the dataplane lacks is MESHCA_EINVAL. The result
 * is 1..VAULT_MAX_COMMON_NAME bytes. Caller frees *ret with free().
 */
int vault_render_common_name(const char *tmpl, const model_tag *tags, size_t ntags, char **ret,
                             char *errbuf);
/* The same with the client's configured template (default VAULT_DEFAULT_COMMON_NAME). */
int vault_client_common_name(vault_client *c, const model_tag *tags, size_t ntags, char **ret,
                             char *errbuf);

/*
 * POST /v1/<pki>/sign/<role> with csr, common_name, uri_sans, ttl ("<ttl_s>s") and format pem.
 * On success *ret_cert_pem is the leaf and *ret_chain_pem its issuing chain (ca_chain, else
 * issuing_ca), both malloc'd (caller frees with free()). Error classes:
 *   MESHCA_EINVAL       Vault refused: HTTP 4xx (403: authentication refused), or ttl above the
 *                       role's max_ttl (also when Vault only capped it with a warning);
 *                       a refusal, exit 1.
 *   MESHCA_EUNAVAILABLE not reachable, timed out, HTTP 5xx or 429: retry with backoff, exit 2.
 *   MESHCA_EIO          a malformed answer (not JSON, no certificate, a certificate for another
 *                       key), TLS failure, response too large; exit 2.
 * Every message names the backend and carries Vault's own message; never the token.
 */
int vault_sign_csr(vault_client *c, const char *csr_pem, const char *common_name,
                   const char *const *uri_sans, size_t nuris, int64_t ttl_s, char **ret_cert_pem,
                   char **ret_chain_pem, char *errbuf);

/* The CA chain from GET /v1/<pki>/ca_chain, or /v1/<pki>/ca/pem when that is empty or absent.
 * Checked to parse. Caller frees *ret_pem. Errors as vault_sign_csr(). */
int vault_ca_chain(vault_client *c, char **ret_pem, char *errbuf);

/* Apply-time check: authenticates and signs a throwaway CSR (fresh P-256 key, CN
 * VAULT_CHECK_CN, URI SAN spiffe://<mesh>/meshca-backend-check) for ttl_s seconds. Errors as
 * vault_sign_csr(). */
int vault_check(vault_client *c, int64_t ttl_s, char *errbuf);

/* Number of auth/cert/login calls made (token renewal is observable in tests). */
unsigned vault_client_logins(const vault_client *c);

#endif
