/* cpca.h - the control-plane CA, the API server's certificate, and TLS contexts for both ends. */
#ifndef MESHCA_API_CPCA_H
#define MESHCA_API_CPCA_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "manifests/error.h"
#include "reconciler/store.h"

/*
 * The control-plane CA signs the API server's certificate; agents trust it with --ca-file.
 * It is created once (the first controller or `meshca cp-ca` to need it) and kept in the store
 * as one secret-like object under the key (CPCA_KIND, CPCA_MESH, CPCA_NAME):
 *   {"cert":"<PEM>","key":"<PEM>","createdAt":"RFC 3339"}
 * written with compare-and-swap "must not exist", so two controllers starting together end up
 * with the same CA. Its key never leaves the controller; `meshca cp-ca` prints the certificate.
 * The server certificate is not stored: it is signed afresh at each start (CPCA_SERVER_DAYS).
 */
#define CPCA_KIND "controlplane"
#define CPCA_MESH "meshca"
#define CPCA_NAME "ca"
#define CPCA_CA_DAYS 3650
#define CPCA_SERVER_DAYS 90
#define CPCA_MAX_SANS 32
#define CPCA_CN "meshca control plane CA"

/* The CA as PEM strings; cpca_free() wipes the key. */
typedef struct cpca {
    char *cert_pem;
    char *key_pem;
} cpca;

/* Loads the control-plane CA, creating it when absent (create = 1) or failing with
 * MESHCA_ENOTFOUND (create = 0). now: seconds since the epoch. */
int cpca_load(store *s, int create, int64_t now, cpca *ret, char *errbuf);
void cpca_free(cpca *ca);

/* A new control-plane CA (EC P-256, subject CN=cn, CPCA_CA_DAYS), not stored: the first one
 * (cpca_load) and each rotation's next one (cpca_rotate.h). cpca_free() frees *ret. */
int cpca_generate(const char *cn, int64_t now, cpca *ret, char *errbuf);

/*
 * Signs a server certificate for the listen address and the names in sans (each an IP address
 * or a DNS name; "host:port" and "[v6]:port" are accepted, the port is dropped), with a fresh
 * EC P-256 key. *ret_chain_pem = server certificate then CA certificate, *ret_key_pem the key
 * (free with pki_free_secret()). MESHCA_EINVAL for a name that is neither.
 */
int cpca_server_cert(const cpca *ca, const char *listen, const char *const *sans, size_t nsans,
                     int64_t now, char **ret_chain_pem, char **ret_key_pem, char *errbuf);

/*
 * The API server's TLS context: TLS 1.2 or later, the given certificate chain (leaf first) and
 * key, client certificates requested but not required and not verified by TLS itself: the API
 * verifies them against the bundle of the mesh they name (server.c), because the mesh is not
 * known during the handshake. Caller frees *ret with SSL_CTX_free().
 */
int cpca_server_ctx(const char *chain_pem, const char *key_pem, SSL_CTX **ret, char *errbuf);

/* Loads a new chain and key into a live server context (renewal, SIGHUP); a pair that does
 * not load leaves ctx serving the previous one. */
int cpca_server_ctx_reload(SSL_CTX *ctx, const char *chain_pem, const char *key_pem, char *errbuf);

/* Reads --tls-cert/--tls-key (*ret_key to free with pki_free_secret). */
int cpca_read_server_files(const char *cert_file, const char *key_file, char **ret_cert,
                           char **ret_key, char *errbuf);

/* The same from the user's --tls-cert/--tls-key files. */
int cpca_server_ctx_from_files(const char *cert_file, const char *key_file, SSL_CTX **ret,
                               char *errbuf);

/*
 * A client context (for C clients and tests; the agent uses libcurl with the CA file): TLS 1.2+,
 * peer verification against ca_pem (no host name check: callers set one on the SSL with
 * SSL_set1_host), optional client certificate chain and key. Caller frees *ret with SSL_CTX_free().
 */
int cpca_client_ctx(const char *ca_pem, const char *cert_pem, const char *key_pem, SSL_CTX **ret,
                    char *errbuf);

#endif
