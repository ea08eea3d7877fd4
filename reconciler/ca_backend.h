/* ca_backend.h - the CA backend interface: one vtable per backend type (builtin, provided, ...). */
/*
 * The check convention for a backend that talks to a remote CA (vault, cfssl): unless
 * ca_context.skip_validation (the mesh's mtls.skipValidation), `check` contacts the CA. When
 * the CA cannot be reached or answers garbage (connection refused, timeout, 5xx, TLS failure, a
 * malformed body) it appends an error diagnostic (code CA_DIAG_UNREACHABLE, or CA_DIAG_BAD_ANSWER
 * for a malformed answer) naming the backend and the CA's message, and returns
 * MESHCA_EUNAVAILABLE: `apply`, `apply --dry-run` and `validate --store` exit 2 (the CA is
 * unreachable, S3). When the CA answers and refuses (authentication, role or profile, a ttl above
 * its maximum) it appends an error CA_DIAG_REFUSED naming the backend and the CA's message and
 * returns 0: the change is refused, exit 1. Never a credential in either message.
 */
#ifndef MESHCA_CA_BACKEND_H
#define MESHCA_CA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifests/diag.h"
#include "manifests/model.h"
#include "reconciler/pki.h"

#define CA_MAX_SECRET_NAME 300
#define CA_EXPIRES_SOON_S (30 * 86400)       /* warning "ca-expires-soon" */
#define CA_BUILTIN_DEFAULT_LIFETIME_S (10 * 365 * 86400LL)

/* Looks up a mesh secret by name. On success returns 0 with the decoded bytes in *ret_data
 * (malloc'd, NUL-terminated, *ret_len excludes the NUL; the caller wipes and frees it), or
 * PKI_ENOENT when absent, or another negative PKI_* code. */
typedef int (*ca_secret_lookup_fn)(void *userdata, const char *name, char **ret_data,
                                   size_t *ret_len);
/* One secret to create: all borrowed. */
typedef struct ca_secret {
    const char *name;
    const char *data;
    size_t len;
} ca_secret;

/* Creates mesh secrets together, in one transaction: all of them or none. The last one must not
 * exist yet (create-only): when it does, another writer created the set first and the code is
 * MESHCA_ECONFLICT (re-read it instead). The ones before it replace whatever they hold now (a
 * leftover of an interrupted creation), only if unchanged between the read and the write.
 * Returns 0 or a negative MESHCA_* code. */
typedef int (*ca_secret_store_fn)(void *userdata, const ca_secret *secrets, size_t n);

/* Everything a backend may use. All borrowed for the duration of the call. */
typedef struct ca_context {
    const char *mesh;               /* mesh name */
    const mesh_backend *backend;    /* the backend's manifest (conf is an mnode tree) */
    size_t backend_index;           /* for field paths: mtls.backends[i] */
    ca_secret_lookup_fn secret_lookup;   /* may be NULL: no secrets */
    ca_secret_store_fn secret_store;     /* may be NULL: read-only (check, dry run) */
    void *secret_userdata;
    int64_t now;                    /* injected clock, seconds since the epoch */
    bool skip_validation;           /* mtls.skipValidation: check contacts no remote CA */
} ca_context;

/* Diagnostic codes of a remote CA's check (see the convention at the top of this file). */
#define CA_DIAG_UNREACHABLE "ca-unreachable"
#define CA_DIAG_BAD_ANSWER "ca-bad-answer"
#define CA_DIAG_REFUSED "ca-refused"

/* A loaded CA: an opaque handle. Its key and private state stay inside the backend (curl's
 * vtls: each backend keeps its own data): callers sign and cross-sign through the operations
 * below and never see a key. */
typedef struct ca_backend ca_backend;

typedef struct ca_backend_ops {
    const char *type;
    /* Checks conf and CA material without side effects; appends diagnostics with field paths
     * mtls.backends[i].conf... Returns 0 (problems are in diags) or a negative PKI_* code when
     * the check itself could not run; MESHCA_EUNAVAILABLE (with an error diag naming the
     * backend) when an external CA cannot be reached: apply exits 2. */
    int (*check)(const ca_context *ctx, diag_list *diags);
    /* Loads the CA, creating it when the type does so (builtin). Caller frees with
     * ca_backend_free(). */
    int (*ensure_ca)(const ca_context *ctx, ca_backend **ret, char *errbuf);
    /* Signs a leaf for the dataplane's public key `pub` (borrowed) for the identity in req
     * (SANs, lifetime): "sign this public key for this identity -> certificate". The chain to
     * serve with it is ca_backend_chain(). PKI_EEXPIRED when the CA cannot sign now. */
    int (*sign_leaf)(ca_backend *ca, const pki_leaf_request *req, EVP_PKEY *pub, int64_t now,
                     X509 **ret_cert, char *errbuf);
    /* sign_leaf returns MESHCA_ENOTFOUND when this one request lacks what the backend needs (no
     * CSR kept, a tag its commonName template names): the pass skips the dataplane with a
     * warning ("leaf-unsignable") instead of stopping the mesh. */
    /* Cross-signing (S5, a forced switch): `other_ca` (another backend's CA certificate,
     * borrowed) re-signed by this CA, valid at most until not_after_max. NULL when the backend
     * cannot (a remote CA that signs leaves only). */
    int (*cross_sign)(ca_backend *ca, X509 *other_ca, int64_t now, int64_t not_after_max,
                      X509 **ret, char *errbuf);
    void (*free)(ca_backend *ca);
    /* Dataplanes trust the chain's last certificate alone, not the whole chain: chain[0] is an
     * intermediate meshca renews (cfssl), and a renewal must not change the trust bundle. */
    bool trust_root_only;
    /* sign_leaf needs req->csr_pem (the remote CA signs the dataplane's CSR, not a key). */
    bool signs_csr;
    /* The CA answers over the network (vault, cfssl): MESHCA_EUNAVAILABLE and MESHCA_EIO from
     * ensure_ca or sign_leaf are the CA's trouble (retried with backoff, reported on the mesh),
     * not the store's. */
    bool remote;
} ca_backend_ops;

extern const ca_backend_ops ca_builtin_ops;
extern const ca_backend_ops ca_provided_ops;
extern const ca_backend_ops ca_vault_ops;
extern const ca_backend_ops ca_cfssl_ops;

/* The ops of a backend type; NULL for an unknown (or not yet supported) type. */
const ca_backend_ops *ca_backend_for_type(const char *type);

/* Whether this build can sign with a backend type (a property of the backend table). */
typedef enum ca_type_support {
    CA_TYPE_UNKNOWN = 0,     /* not a backend type at all: the static checks report it */
    CA_TYPE_CANNOT_SIGN,     /* a type of S2 this build does not implement yet (vault, cfssl) */
    CA_TYPE_SIGNS,
} ca_type_support;
ca_type_support ca_backend_support(const char *type);

/* Dispatch on ctx->backend->type. PKI_EINVAL (with a message) for an unknown type. */
int ca_backend_check(const ca_context *ctx, diag_list *diags);
int ca_backend_open(const ca_context *ctx, ca_backend **ret, char *errbuf);
int ca_backend_sign_leaf(ca_backend *ca, const pki_leaf_request *req, EVP_PKEY *pub, int64_t now,
                         X509 **ret_cert, char *errbuf);
/* See ca_backend_ops.cross_sign; PKI_EINVAL with a message when the backend cannot. */
int ca_backend_cross_sign(ca_backend *ca, X509 *other_ca, int64_t now, int64_t not_after_max,
                          X509 **ret, char *errbuf);
/* Whether ca_backend_cross_sign can work for this CA. */
bool ca_backend_can_cross_sign(const ca_backend *ca);
/* Whether a backend type's CA is remote (see ca_backend_ops.remote); false for unknown types. */
bool ca_backend_type_is_remote(const char *type);
/* Whether ca_backend_sign_leaf needs req->csr_pem (see ca_backend_ops.signs_csr). */
bool ca_backend_signs_csr(const ca_backend *ca);
void ca_backend_free(ca_backend *ca);   /* accepts NULL; wipes the key */

/* Signing workers for a CA whose key is local (builtin, provided): sign_pool.c with nthreads
 * workers (0: the online CPUs), each with its own copy of the key. *ret is NULL for a CA that
 * signs remotely (its leaves go through ca_backend_sign_leaf). *ret is borrowed: the pool is
 * made at the first call and kept with the CA (made again only for another nthreads), so a
 * controller's CA kept across passes (ca_cache.h) starts its threads and copies its key once,
 * not at every pass that signs one CSR; ca_backend_free() stops it. One batch at a time: the
 * CA is used by one pass at a time. */
struct sign_pool;
bool ca_backend_signs_locally(const ca_backend *ca);
int ca_backend_sign_pool(ca_backend *ca, unsigned nthreads, struct sign_pool **ret,
                         char *errbuf);

/* Descriptions of a loaded CA. */
typedef struct ca_info {
    const char *key_type;   /* "ec" | "rsa" (static) */
    int key_bits;
    int64_t not_before, not_after;   /* of chain[0] */
} ca_info;
int ca_backend_info(ca_backend *ca, ca_info *ret);
/* The CA chain as PEM, chain[0] first; caller frees with free(). */
int ca_backend_chain_pem(ca_backend *ca, char **ret, char *errbuf);
/* What the trust bundle takes from this CA, as PEM: the whole chain, or its root alone when the
 * backend says so (trust_root_only). Caller frees with free(). */
int ca_backend_bundle_pem(ca_backend *ca, char **ret, char *errbuf);
/* A problem the CA opened despite (e.g. its intermediate could not be renewed: signing goes on
 * with the stored one), for the mesh status; NULL when none. Borrowed, valid until free. */
const char *ca_backend_warning(const ca_backend *ca);
/* Borrowed, valid until ca_backend_free(): the certificate that signs leaves, and the whole
 * chain ([0] signs leaves, then its intermediates up to the root). */
X509 *ca_backend_cert(ca_backend *ca);
STACK_OF(X509) *ca_backend_chain(ca_backend *ca);

/* For backend implementations: a CA with a local key (takes ownership of chain and key on
 * success), signing and cross-signing with pki_*, and the shared destructor. */
int ca_local_new(const ca_backend_ops *ops, STACK_OF(X509) *chain, EVP_PKEY *key,
                 ca_backend **ret);
int ca_local_sign_leaf(ca_backend *ca, const pki_leaf_request *req, EVP_PKEY *pub, int64_t now,
                       X509 **ret_cert, char *errbuf);
int ca_local_cross_sign(ca_backend *ca, X509 *other_ca, int64_t now, int64_t not_after_max,
                        X509 **ret, char *errbuf);
void ca_local_free(ca_backend *ca);
/* Records the warning ca_backend_warning() returns (copied, cut to PKI_ERRBUF). */
void ca_local_set_warning(ca_backend *ca, const char *warning);

/* For a backend whose key stays remote: a CA with a chain (taken on success) and the backend's
 * own state (borrowed by the handle; the backend's free op frees it, then calls
 * ca_remote_free()). */
int ca_remote_new(const ca_backend_ops *ops, STACK_OF(X509) *chain, void *state,
                  ca_backend **ret);
void *ca_backend_state(ca_backend *ca);
void ca_remote_free(ca_backend *ca);   /* the chain and the handle, not the state */

/* "mtls.backends[i].conf" + suffix into buf. */
void ca_conf_path(const ca_context *ctx, const char *suffix, char *buf, size_t size);

#endif
