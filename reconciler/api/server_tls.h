/* server_tls.h - the API's server certificate in a live TLS context: made at start, renewed in place. */
#ifndef MESHCA_SERVER_TLS_H
#define MESHCA_SERVER_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "reconciler/store.h"

/*
 * The certificate the dataplane API serves: --tls-cert/--tls-key's files, or one the
 * control-plane CA signs (CPCA_SERVER_DAYS). A controller runs for months: the signed one is
 * re-signed once two thirds of its life have passed (server_tls_due), and either is reloaded
 * on SIGHUP, into the same SSL_CTX, so connections accepted from then on get the new one and
 * open ones keep theirs. Loop thread only (the context is the one SSL_new reads there).
 */
typedef struct server_tls server_tls;

/* Makes the context. cert_file and key_file go together (NULL: the control-plane CA of s signs
 * one for listen and sans, which must outlive the server_tls). 0 or a code with errbuf. */
int server_tls_new(store *s, const char *listen, const char *const *sans, size_t nsans,
                   const char *cert_file, const char *key_file, server_tls **ret, char *errbuf);
SSL_CTX *server_tls_ctx(const server_tls *t);
/* 1 when the signed certificate is past two thirds of its life at now (never for files). */
int server_tls_due(const server_tls *t, int64_t now);
/* Re-signs (or re-reads the files) and loads the result into the context; a failure leaves the
 * previous certificate served. *not_after: the new certificate's notAfter. */
int server_tls_reload(server_tls *t, int64_t now, int64_t *not_after, char *errbuf);
/*
 * 1 when the control-plane CA in the store is no longer the one that signed the certificate
 * served (`meshca cp-ca rotate --switch` ran): the caller reloads, and every replica serves a
 * certificate of the new CA without a SIGHUP. 0 otherwise, always for --tls-cert's files, and
 * for SERVER_TLS_CA_RETRY_S after a reload failed; a negative code when the store cannot be
 * read. One store read and a decode each call: the controller's timer checks through cpca_watch
 * (the store's revision first) and server_tls_ca_differs instead.
 */
#define SERVER_TLS_CA_RETRY_S 60
int server_tls_ca_changed(server_tls *t, int64_t now, char *errbuf);
/* The same decision on a current CA certificate the caller already holds (cpca_watch), without
 * reading the store: 1 when it is not the one that signed the certificate served. */
int server_tls_ca_differs(const server_tls *t, const char *current_cert, int64_t now);
/* notAfter of the certificate served now (0 when unknown): /metrics. */
int64_t server_tls_not_after(const server_tls *t);
void server_tls_free(server_tls *t);

#endif
