/* model.h - the typed resource model: Mesh, Dataplane and Secret, each field with its source mark. */
#ifndef MESHCA_MODEL_H
#define MESHCA_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifests/diag.h"
#include "manifests/error.h"
#include "manifests/node.h"

/* S2 limits on the model itself. */
#define MODEL_MAX_BACKENDS 16
#define MODEL_MAX_NAME_LEN 63        /* DNS label */
#define MODEL_MAX_RESOURCE_NAME 253  /* dataplane / secret names: DNS subdomain */

/* Longest duration text kept as written (model_duration.text); longer ones print normalised. */
#define MODEL_DURATION_TEXT_MAX 24

/* A duration as written, e.g. "24h". */
typedef struct model_duration {
    bool set;           /* false: absent, the default applies */
    int64_t ms;         /* value in milliseconds (valid when set) */
    source_mark mark;
    /* The text as written ("1440m" stays "1440m", not "1d"), so `get -o yaml` gives back what
     * was applied; "" when not known or too long: print model_format_duration(ms) then. A plain
     * array, so copying the struct copies it. */
    char text[MODEL_DURATION_TEXT_MAX];
} model_duration;

/* A string field with where it was written. `value` NULL = absent. Owned by the resource. */
typedef struct model_string {
    char *value;
    source_mark mark;
} model_string;

typedef struct model_tag {
    char *key;
    char *value;
    source_mark mark;   /* of the value */
} model_tag;

typedef struct mesh_backend {
    source_mark mark;          /* the list item */
    model_string name;
    model_string type;         /* "builtin" | "provided" | "vault" | "cfssl" (checked by validators) */
    model_string mode;         /* "STRICT" (default when absent) | "PERMISSIVE" */
    struct {
        model_duration rotation_expiration;  /* dpCert.rotation.expiration, default 24h */
        model_duration request_timeout;      /* dpCert.requestTimeout */
        model_string key_type;               /* dpCert.keyType: "ecdsa" (default) | "rsa" */
    } dp_cert;
    /* conf: kept as a tree because its schema depends on `type`; validators check it per type
     * and CA backends read it. NULL when absent. Owned. */
    mnode *conf;
} mesh_backend;

typedef struct mesh {
    model_string name;
    bool mtls_present;
    model_string enabled_backend;   /* value NULL or "" = mTLS off */
    mesh_backend *backends;
    size_t nbackends;
    bool skip_validation;
    source_mark skip_validation_mark;
    source_mark backends_mark;      /* of the mtls.backends sequence */
    source_mark mtls_mark;
} mesh;

typedef struct dataplane_inbound {
    source_mark mark;
    long port;
    model_tag *tags;
    size_t ntags;
    bool port_refused;   /* the builder already said what is wrong with port (left 0) */
} dataplane_inbound;

typedef struct dataplane {
    model_string name;
    model_string mesh;
    model_string address;
    dataplane_inbound *inbounds;
    size_t ninbounds;
} dataplane;

/* The tag that names a service (SPEC S2): every inbound has one. */
#define MODEL_SERVICE_TAG "kuma.io/service"

/* Every tag of every inbound of a dataplane, in order (the one tag walk):
 *     dataplane_tag_iter it = DATAPLANE_TAG_ITER_INIT(dp);
 *     for (const model_tag *tag; (tag = dataplane_tag_next(&it)) != NULL;) ...
 * The dataplane is borrowed and must not change during the walk. */
typedef struct dataplane_tag_iter {
    const dataplane *dp;
    size_t inbound;
    size_t tag;
} dataplane_tag_iter;
#define DATAPLANE_TAG_ITER_INIT(d) {(d), 0, 0}
const model_tag *dataplane_tag_next(dataplane_tag_iter *it);

/* How many tags the dataplane has over all its inbounds. */
size_t dataplane_tag_count(const dataplane *dp);

typedef struct secret {
    model_string name;
    model_string mesh;
    /* base64 text as written (never printed); decoded by secret_decode(). Owned. */
    model_string data;
} secret;

typedef enum resource_kind {
    RESOURCE_MESH = 0,
    RESOURCE_DATAPLANE,
    RESOURCE_SECRET,
} resource_kind;

typedef enum resource_form {
    FORM_UNIVERSAL = 0,   /* type: Mesh / name: ... */
    FORM_KUBERNETES,      /* apiVersion/kind/metadata/spec */
} resource_form;

typedef struct resource {
    resource_kind kind;
    resource_form form;
    source_mark mark;     /* start of the document */
    unsigned doc_index;   /* 0-based document number within its file */
    union {
        mesh mesh;
        dataplane dataplane;
        secret secret;
    } u;
} resource;

/* "Mesh", "Dataplane", "Secret". */
const char *resource_kind_name(resource_kind kind);
/* A resource's name, and the mesh it belongs to (a Mesh's own name), as written: NULL when the
 * field is absent. Borrowed from the resource. */
const char *resource_name(const resource *res);
const char *resource_mesh(const resource *res);

/* Frees the resource's fields (not the struct itself). Accepts NULL. */
void resource_clear(resource *res);

/* Deep copies. `dst` is overwritten. Marks' file pointers are copied as-is (borrowed). Returns 0,
 * or MESHCA_ENOMEM with `dst` left empty. */
int mesh_copy(mesh *dst, const mesh *src);

/* Lookups; NULL when absent. Borrowed. */
const mesh_backend *mesh_find_backend(const mesh *m, const char *name);
/* The enabled backend name or NULL when mTLS is off. */
const char *mesh_enabled_backend(const mesh *m);

/* Effective dpCert values with S2 defaults applied. */
int64_t mesh_backend_leaf_lifetime_ms(const mesh_backend *b);  /* default 24h */
bool mesh_backend_leaf_is_rsa(const mesh_backend *b);          /* keyType: rsa */

/* True when two backends have the same type and the same conf (marks ignored). */
bool mesh_backend_same_ca(const mesh_backend *a, const mesh_backend *b);

/* Duration text `^\d+(y|w|d|h|m|s|ms)$` to milliseconds. Returns 0 or -1 (bad syntax or
 * overflow). 1y = 365d. */
int model_parse_duration(const char *text, int64_t *ret_ms);
/* Formats milliseconds as the largest exact unit ("24h", "10y", "1500ms"). */
void model_format_duration(int64_t ms, char *buf, size_t size);

#endif
