/* state.h - the store's objects as model values: resources, dataplane identities, statuses.
 *
 * Store layout (kinds of store.h), every value JSON:
 *   meshes/<mesh>               a Mesh in the Universal form (encode_resource)
 *   dataplanes/<mesh>/<name>    a Dataplane in the Universal form
 *   secrets/<mesh>/<name>       a Secret in the Universal form, data included (file 0600)
 *   identities/<mesh>/<name>    what the controller issued a dataplane (identity below)
 *   dpstatus/<mesh>/<name>      what the agent acknowledged (SPEC S7 object)
 *   meshstatus/<mesh>           conditions, pending change and force log of a mesh
 *   bundles/<mesh>              the mesh's one trust bundle (mesh_bundle below)
 */
#ifndef MESHCA_STATE_H
#define MESHCA_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "manifests/manifest.h"
#include "manifests/status.h"
#include "reconciler/ca_backend.h"
#include "reconciler/store.h"

#define STATE_MESHES "meshes"
#define STATE_DATAPLANES "dataplanes"
#define STATE_SECRETS "secrets"
#define STATE_IDENTITIES "identities"
#define STATE_DPSTATUS "dpstatus"
#define STATE_MESHSTATUS "meshstatus"
#define STATE_BUNDLES "bundles"

/* The store kind of a resource kind. */
const char *state_kind_of(resource_kind kind);

/* Loads every Mesh, Dataplane and Secret of the store (of one mesh when `mesh` is not NULL)
 * into `set`. Objects that do not decode are reported in diags as errors with code
 * "corrupt-object", file "store:<kind>/<mesh>/<name>" and the decoder's line, column and message,
 * and skipped. Returns 0 or a STORE_* code. */
int state_load_resources(store *s, const char *mesh_name, manifest_set *set, diag_list *diags);
/* Decodes one stored Mesh, Dataplane or Secret (e: its mesh, name and value; e->kind unused)
 * into `set` as state_load_resources does, errors as "corrupt-object". The value of a Secret or
 * Mesh (which may hold an inline CA key) is wiped. */
void state_decode_object(manifest_set *set, const char *kind, const store_entry *e, diag_list *diags);

/*
 * Reading one object. A value that does not decode is MESHCA_ECORRUPT (not MESHCA_EIO, which
 * means the store itself failed), so a caller can tell a corrupt object it may replace from a
 * store it cannot use. The *_read forms also write a one-line message into errbuf
 * (MESHCA_ERRBUF bytes, may be NULL) naming the object as <kind>/<mesh>/<name> and what is wrong
 * ("identities/default/web-01: corrupt object: field 'certificate' is missing or not a string",
 * "cannot read meshstatus/default/default: store I/O error"); the *_get forms are the same
 * without a message.
 */

/* The S7 status of every dataplane of `mesh` (NULL: all meshes). A corrupt entry is left out
 * (that dataplane counts as having acknowledged nothing). */
int state_load_status(store *s, const char *mesh_name, status_set *ret);
int state_read_status(store *s, const char *mesh_name, const char *name, dataplane_status *ret,
                      uint64_t *ret_version, char *errbuf);
int state_get_status(store *s, const char *mesh_name, const char *name, dataplane_status *ret,
                     uint64_t *ret_version);
int state_put_status(store *s, const dataplane_status *st, uint64_t expected_version);

/* What the controller issued a dataplane (CSR mode, S5): certificate, chain and public key,
 * never a private key. The agent's CSR arrives through the API as a pending public key (and the
 * CSR itself, for backends that sign CSRs); the next pass signs it. A record with generation 0
 * holds only a pending key: nothing issued yet. Strings owned; identity_clear() frees them. */
typedef struct identity {
    char *mesh;
    char *dataplane;
    char *backend;            /* the backend that signed the certificate */
    long long generation;     /* grows with every issue; the agent acknowledges it */
    char *cert_pem;           /* leaf, then the cross-signed CA if any, then intermediates */
    char *public_key_pem;     /* the certified key (SubjectPublicKeyInfo PEM), re-signed when
                               * only the CA changes */
    char *csr_pem;            /* the CSR public_key_pem came from (Vault signs CSRs), or NULL */
    char *pending_key_pem;    /* a new key from the agent, signed on the next pass, or NULL */
    char *pending_csr_pem;
    char *bundle_digest;      /* SHA-256 of the mesh bundle this generation was issued with */
    char **bundle_backends;   /* backend names whose CA is in that bundle, in order */
    size_t nbundle_backends;
    char *serial;             /* hex */
    int64_t not_before, not_after;
    int64_t renew_at;         /* when the agent sends a fresh key's CSR: the stable renewal
                               * point in [70 %, 85 %] of the lifetime, or earlier when the
                               * lifetime was shortened or keyType changed */
    char *ca_fingerprint;     /* SHA-1 of the signing CA certificate: reissue when it changes */
    char *tags_digest;        /* the identity's tags as issued: reissue when they change */
    bool rsa;                 /* keyType the mesh asks for (the key held may be older) */
    bool cross_signed;        /* cert_pem carries a cross-signed CA */
    long long regenerations;
    char *last_regeneration;  /* RFC 3339 */
    int64_t since;            /* when the record was created (seconds since the epoch), kept by
                               * every later write; a client certificate older than that
                               * authenticates nobody (store/identity_since.h). 0: a record written
                               * before it was kept, which refuses no certificate */
} identity;

int identity_read(store *s, const char *mesh_name, const char *name, identity *ret,
                  uint64_t *ret_version, char *errbuf);
int identity_get(store *s, const char *mesh_name, const char *name, identity *ret,
                 uint64_t *ret_version);
/* The record as stored (JSON text, caller frees), for a transaction; NULL when out of memory. */
char *identity_encode(const identity *id);
int identity_put(store *s, const identity *id, uint64_t expected_version, uint64_t *ret_version);
/* A CSR that came with a token, not a client certificate (identity_with_pending_key). */
#define IDENTITY_NO_CERT INT64_MIN

/*
 * What an agent's CSR submits: the identity record of mesh_name/dp_name with key_pem (and
 * csr_pem, or NULL) as its pending key, encoded (caller frees), and the version the write must
 * still find (0: a new record). The dataplane must exist (MESHCA_ENOTFOUND); its version goes to
 * *ret_dp_version, for the write to check it still does (a delete meanwhile removes no identity
 * that did not exist yet, so only that check keeps the write from leaving one behind). A corrupt
 * record is replaced, its version still checked. A new record's `since` is now. cert_not_before
 * is the notBefore of the client certificate the CSR came with, or IDENTITY_NO_CERT for a
 * token: a certificate the record does not back (store/identity_since.h) is MESHCA_EUNAUTHENTICATED.
 * 0, or a code with its message in errbuf.
 */
int identity_with_pending_key(store *s, const char *mesh_name, const char *dp_name,
                              int64_t cert_not_before, const char *key_pem, const char *csr_pem,
                              char **ret_text,
                              uint64_t *ret_version, uint64_t *ret_dp_version, char *errbuf);
/* The ops that write an agent's key (identity_with_pending_key's text and versions) into ops[0..1]:
 * the identity's put, and the check that its Dataplane is still the one read. Returns 2. */
size_t identity_pending_key_ops(const char *mesh_name, const char *dp_name, const char *text,
                                uint64_t version, uint64_t dp_version, store_op *ops);
void identity_clear(identity *id);

/* One trust bundle per mesh (STATE_BUNDLES/<mesh>): the CA certificates of all usable backends,
 * enabled first, the backends' names in that order, the SHA-256 of the PEM, and the
 * cross-signed CA served during a forced switch (NULL otherwise). */
typedef struct mesh_bundle {
    char *pem;
    char **backends;
    size_t nbackends;
    char *digest;
    char *cross_signed_pem;
} mesh_bundle;
int state_read_bundle(store *s, const char *mesh_name, mesh_bundle *ret, uint64_t *ret_version,
                      char *errbuf);
char *state_encode_bundle(const mesh_bundle *b);
void mesh_bundle_clear(mesh_bundle *b);
/* Whether an object exists, and its version (ret_version may be NULL): store_get without the
 * value (which is wiped and freed here). */
int state_object_version(store *s, const store_key *key, uint64_t *ret_version);

/* SHA-256 of text as lowercase hex into buf (>= 65 bytes). */
void state_sha256_hex(const char *text, char *buf);

/* Mesh status as a JSON object ({"conditions":[...],"pending":{...},"forceLog":[...]});
 * an empty object when absent. Caller decrefs. */
int state_read_mesh_status(store *s, const char *mesh_name, json_t **ret, uint64_t *ret_version,
                           char *errbuf);
int state_get_mesh_status(store *s, const char *mesh_name, json_t **ret, uint64_t *ret_version);
int state_put_mesh_status(store *s, const char *mesh_name, json_t *status, uint64_t expected_version);

/* Encodes a resource for the store (Secret data included). Caller frees. */
char *state_encode_resource(const resource *res);


/* Secret access for CA backends (ca_context.secret_lookup / secret_store): userdata is a
 * state_secrets. Lookups see `pending` first (resources about to be applied), then the store;
 * stores write a Secret resource (base64 data) to the store. */
typedef struct state_secrets {
    store *store;
    const char *mesh;
    const manifest_set *pending;   /* may be NULL */
} state_secrets;

int state_secret_lookup(void *userdata, const char *name, char **ret_data, size_t *ret_len);
/* ca_secret_store_fn: the secrets in one store transaction, the last one create-only
 * (MESHCA_ECONFLICT when it exists). At most STATE_MAX_SECRET_SET secrets. */
#define STATE_MAX_SECRET_SET 8
int state_secret_store(void *userdata, const ca_secret *secrets, size_t n);

#endif
