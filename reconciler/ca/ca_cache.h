/* ca_cache.h - opened CA backends kept across reconcile passes, reopened only when what they read changes; failing ones retried with backoff. */
#ifndef MESHCA_CA_CACHE_H
#define MESHCA_CA_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "reconciler/ca_backend.h"

#define CA_CACHE_BACKOFF_FIRST_S 1
#define CA_CACHE_BACKOFF_MAX_S 60
#define CA_CACHE_MAX_AGE_S 3600   /* an opened CA is opened again at least this often */

typedef struct ca_cache ca_cache;

/* NULL when out of memory. */
ca_cache *ca_cache_new(void);
void ca_cache_free(ca_cache *c);   /* accepts NULL; frees every CA it holds */

/*
 * Opens ctx's backend through the cache, keyed by mesh and backend name. The CA opened last time
 * is returned as long as its type, conf, dpCert.requestTimeout, every Secret its opening read and
 * every `file:` datasource of its conf are unchanged: no request to a remote CA for its chain.
 * It is opened again anyway at the two-thirds point of its signing certificate's life (a cfssl
 * intermediate is renewed then) or after CA_CACHE_MAX_AGE_S, whichever comes first, and after a
 * backoff when its opening came with a warning (ca_backend_warning).
 * Otherwise it is opened anew (ca_backend_open with ctx). A failure is kept: until its backoff
 * (1 s, doubling up to CA_CACHE_BACKOFF_MAX_S) has passed (ctx->now), the same code and message
 * are returned without trying, unless what it reads changed. *ret is borrowed: valid until the
 * next ca_cache_open of the same mesh and backend, ca_cache_prune or ca_cache_free.
 */
int ca_cache_open(ca_cache *c, const ca_context *ctx, ca_backend **ret, char *errbuf);

/* A CA from the cache failed to sign (unreachable, refused): until its backoff has passed,
 * ca_cache_sign_wait() says so. `message` is kept whole for the mesh status. */
void ca_cache_sign_failed(ca_cache *c, const char *mesh_name, const char *backend, const char *message,
                          int64_t now);
/* It signed: the backoff is over. */
void ca_cache_sign_ok(ca_cache *c, const char *mesh_name, const char *backend);
/* True while a signing failure's backoff runs, with its message in errbuf (MESHCA_ERRBUF). */
bool ca_cache_sign_wait(ca_cache *c, const char *mesh_name, const char *backend, int64_t now,
                        char *errbuf);

/* Drops the entries of `mesh` whose backend is not among names[0..n) (a backend removed), or
 * every entry of `mesh` when n is 0 and names NULL (the mesh is gone or has mTLS off). */
void ca_cache_prune(ca_cache *c, const char *mesh_name, const char *const *names, size_t n);

/* After a whole pass: drops every entry no ca_cache_open asked for since the previous sweep (a
 * mesh deleted, or its mTLS turned off), so the cache holds what the store still names. */
void ca_cache_sweep(ca_cache *c);

/* bundle_build(chains, n, 0, ...) (bundle.h) through the cache: while the chains are the same
 * strings as last time, the bundle built then for the mesh whose enabled backend is
 * enabled_backend (kept with that backend's entry, dropped with it) is returned as a copy, with
 * no certificate parsed or encoded (a pass that signs one CSR built it anew each time). With no
 * such entry (c NULL, the backend not opened through the cache) it is built as before. */
int ca_cache_bundle(ca_cache *c, const char *mesh_name, const char *enabled_backend,
                    const char *const *chains, size_t n, char **ret_pem, char *errbuf);

/* Counters for tests and metrics: CAs opened (ensure_ca calls) and opens served from the cache. */
typedef struct ca_cache_stats {
    unsigned long opens, hits, backoffs;
    unsigned long bundle_hits;   /* ca_cache_bundle answered from the cache */
} ca_cache_stats;
void ca_cache_get_stats(const ca_cache *c, ca_cache_stats *ret);

#endif
