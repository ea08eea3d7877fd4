/* state.c - the store's objects as model values: resources, dataplane identities, statuses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "manifests/encode.h"
#include "reconciler/pki.h"
#include "reconciler/state.h"
#include "reconciler/store/identity_json.h"
#include "reconciler/store/identity_since.h"

/* Diagnostic code of a stored object that does not decode (doc/diagnostics.md). */
#define STATE_CORRUPT_CODE "corrupt-object"

const char *state_kind_of(resource_kind kind)
{
    switch (kind) {
    case RESOURCE_MESH:
        return STATE_MESHES;
    case RESOURCE_DATAPLANE:
        return STATE_DATAPLANES;
    case RESOURCE_SECRET:
        return STATE_SECRETS;
    }
    return NULL;
}

char *state_encode_resource(const resource *res)
{
    json_t *obj = encode_resource(res, 1);
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    return text;
}

typedef struct load_ctx {
    const char *kind;
    manifest_set *set;
    diag_list *diags;
} load_ctx;

/* "store:<kind>/<mesh>/<name>" into buf (size >= 1), cut to fit: snprintf was a visible share
 * of a 100,000-dataplane pass. */
static void object_file_name(char *buf, size_t size, const store_entry *e, const char *kind)
{
    const char *parts[] = {"store:", kind, "/", e->mesh, "/", e->name};
    size_t n = 0;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        size_t len = strlen(parts[i]);
        if (len > size - 1 - n)
            len = size - 1 - n;
        memcpy(buf + n, parts[i], len);
        n += len;
    }
    buf[n] = '\0';
}

void state_decode_object(manifest_set *set, const char *kind, const store_entry *e, diag_list *diags)
{
    char name[600];
    object_file_name(name, sizeof(name), e, kind);
    size_t first = diags->count;
    /* Values are the JSON state_encode_resource wrote: its own decoder reads them, and hands
     * whatever it does not take to the YAML decoder, which reads them with marks like any
     * manifest. */
    manifest_load_json(set, name, e->value, e->len, diags);
    if (strcmp(kind, STATE_SECRETS) == 0 || strcmp(kind, STATE_MESHES) == 0)
        OPENSSL_cleanse(e->value, e->len);
    /* A stored object that does not decode is corrupt, whatever the decoder called it: one
     * code lets callers tell it from bad input (apply may overwrite it). The file
     * "store:<kind>/<mesh>/<name>" and the message say which object and what is wrong. */
    for (size_t d = first; d < diags->count; d++) {
        char *code = diags->items[d].severity == DIAG_ERROR ? strdup(STATE_CORRUPT_CODE) : NULL;
        if (code) {
            free(diags->items[d].code);
            diags->items[d].code = code;
        }
    }
}

static int load_one(void *userdata, const store_entry *e)
{
    load_ctx *ctx = userdata;
    state_decode_object(ctx->set, ctx->kind, e, ctx->diags);
    return 0;
}

/* One scan of the kind (one reused buffer, not a copy of every value at once). */
static int load_kind(store *s, const char *kind, const char *mesh_name, manifest_set *set,
                     diag_list *diags)
{
    load_ctx ctx = {kind, set, diags};
    int rc = store_scan(s, kind, mesh_name, load_one, &ctx);
    return rc < 0 ? rc : 0;
}

int state_load_resources(store *s, const char *mesh_name, manifest_set *set, diag_list *diags)
{
    static const char *const kinds[] = {STATE_MESHES, STATE_DATAPLANES, STATE_SECRETS};
    for (size_t i = 0; i < 3; i++) {
        int rc = load_kind(s, kinds[i], mesh_name, set, diags);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Parses one stored S7 object (the status parser reads arrays: wrap it as one). The value is
 * copied by length, not as a string: a NUL inside it must not leave bytes unwritten. On failure
 * errbuf (may be NULL) gets what is wrong; returns 0 or MESHCA_ECORRUPT / MESHCA_ENOMEM. */
static int parse_one_status(const char *value, size_t len, dataplane_status *ret, char *errbuf)
{
    diag_list diags = DIAG_LIST_INIT;
    status_set one = STATUS_SET_INIT;
    char *array = malloc(len + 2);
    int rc = MESHCA_ECORRUPT;
    if (!array)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    array[0] = '[';
    memcpy(array + 1, value, len);
    array[len + 1] = ']';
    if (status_parse_json("store", array, len + 2, &one, &diags) == 0 && one.count == 1) {
        *ret = one.items[0];
        one.count = 0;
        rc = 0;
    } else {
        meshca_fail(errbuf, rc, "%s", diags.count ? diags.items[0].message
                                                 : "not exactly one status object");
    }
    status_set_free(&one);
    diag_list_free(&diags);
    free(array);
    return rc;
}

/* "<kind>/<mesh>/<name>: <what>" into errbuf for a corrupt object; returns MESHCA_ECORRUPT. */
static int corrupt(char *errbuf, const store_key *key, const char *what)
{
    return meshca_fail(errbuf, MESHCA_ECORRUPT, "%s/%s/%s: corrupt object: %s", key->kind,
                       key->mesh, key->name, what);
}

/* "cannot read <kind>/<mesh>/<name>: <cause>" for a store failure; returns rc. */
static int read_failed(char *errbuf, const store_key *key, int rc)
{
    return meshca_fail(errbuf, rc, "cannot read %s/%s/%s: %s", key->kind, key->mesh, key->name,
                       store_strerror(rc));
}

/* Parses a stored value that must be a JSON object, then wipes and frees the value (it may hold
 * a key). Returns 0 with *ret (caller decrefs) or MESHCA_ECORRUPT naming the object. */
static int load_object(const store_key *key, char *value, size_t len, json_t **ret, char *errbuf)
{
    json_error_t err;
    json_t *obj = json_loadb(value, len, 0, &err);
    OPENSSL_cleanse(value, len);
    free(value);
    if (json_is_object(obj)) {
        *ret = obj;
        return 0;
    }
    char what[MESHCA_ERRBUF];
    if (obj)
        snprintf(what, sizeof(what), "JSON, but not an object");
    else
        snprintf(what, sizeof(what), "not JSON: %s at line %d column %d", err.text, err.line,
                 err.column);
    json_decref(obj);
    return corrupt(errbuf, key, what);
}

int state_load_status(store *s, const char *mesh_name, status_set *ret)
{
    store_entry *entries = NULL;
    size_t n = 0;
    int rc = store_list(s, STATE_DPSTATUS, mesh_name, &entries, &n);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        dataplane_status st;
        /* A corrupt status is left out: that dataplane counts as having acknowledged nothing,
         * which is the safe reading for every gate. */
        if (parse_one_status(entries[i].value, entries[i].len, &st, NULL) == 0)
            status_set_append(ret, &st);
    }
    store_entries_free(entries, n);
    return 0;
}

int state_read_status(store *s, const char *mesh_name, const char *name, dataplane_status *ret,
                      uint64_t *ret_version, char *errbuf)
{
    store_key key = {STATE_DPSTATUS, mesh_name, name};
    char *value = NULL, what[MESHCA_ERRBUF];
    size_t len = 0;
    uint64_t version = 0;
    int rc = store_get(s, &key, &value, &len, &version);
    if (rc < 0)
        return read_failed(errbuf, &key, rc);
    rc = parse_one_status(value, len, ret, what);
    free(value);
    if (rc < 0)
        return rc == MESHCA_ECORRUPT ? corrupt(errbuf, &key, what) : meshca_fail(errbuf, rc, "%s", what);
    if (ret_version)
        *ret_version = version;
    return 0;
}

int state_get_status(store *s, const char *mesh_name, const char *name, dataplane_status *ret,
                     uint64_t *ret_version)
{
    return state_read_status(s, mesh_name, name, ret, ret_version, NULL);
}

int state_put_status(store *s, const dataplane_status *st, uint64_t expected_version)
{
    store_key key = {STATE_DPSTATUS, st->mesh, st->name};
    char *text = status_to_json(st);
    if (!text)
        return STORE_ENOMEM;
    int rc = store_put(s, &key, text, strlen(text), expected_version, NULL);
    free(text);
    return rc;
}

/* --- identities --- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static char *get_str(json_t *obj, const char *key)
{
    return dup_or_null(json_string_value(json_object_get(obj, key)));
}

void identity_clear(identity *id)
{
    if (!id)
        return;
    free(id->mesh);
    free(id->dataplane);
    free(id->backend);
    free(id->cert_pem);
    free(id->public_key_pem);
    free(id->csr_pem);
    free(id->pending_key_pem);
    free(id->pending_csr_pem);
    free(id->bundle_digest);
    /* identity_read counts the names before allocating their array: out of memory leaves a
     * count without an array. */
    for (size_t i = 0; id->bundle_backends && i < id->nbundle_backends; i++)
        free(id->bundle_backends[i]);
    free(id->bundle_backends);
    free(id->serial);
    free(id->ca_fingerprint);
    free(id->tags_digest);
    free(id->last_regeneration);
    memset(id, 0, sizeof(*id));
}

int identity_read(store *s, const char *mesh_name, const char *name, identity *ret,
                  uint64_t *ret_version, char *errbuf)
{
    store_key key = {STATE_IDENTITIES, mesh_name, name};
    char *value = NULL;
    size_t len = 0;
    uint64_t version = 0;
    int rc = store_get(s, &key, &value, &len, &version);
    if (rc < 0)
        return read_failed(errbuf, &key, rc);
    json_t *obj = NULL;
    if ((rc = load_object(&key, value, len, &obj, errbuf)) < 0)
        return rc;
    identity id = {0};
    id.mesh = get_str(obj, "mesh");
    id.dataplane = get_str(obj, "dataplane");
    id.backend = get_str(obj, "backend");
    id.generation = json_integer_value(json_object_get(obj, "generation"));
    id.cert_pem = get_str(obj, "certificate");
    id.public_key_pem = get_str(obj, "publicKey");
    id.csr_pem = get_str(obj, "csr");
    id.pending_key_pem = get_str(obj, "pendingPublicKey");
    id.pending_csr_pem = get_str(obj, "pendingCsr");
    id.bundle_digest = get_str(obj, "bundleDigest");
    json_t *names = json_object_get(obj, "bundleBackends");
    id.nbundle_backends = json_array_size(names);
    id.bundle_backends = calloc(id.nbundle_backends + 1, sizeof(char *));
    for (size_t i = 0; id.bundle_backends && i < id.nbundle_backends; i++)
        id.bundle_backends[i] = dup_or_null(json_string_value(json_array_get(names, i)));
    id.serial = get_str(obj, "serial");
    id.not_before = json_integer_value(json_object_get(obj, "notBefore"));
    id.not_after = json_integer_value(json_object_get(obj, "notAfter"));
    id.renew_at = json_integer_value(json_object_get(obj, "renewAt"));
    id.ca_fingerprint = get_str(obj, "caFingerprint");
    id.tags_digest = get_str(obj, "tags");
    id.rsa = json_is_true(json_object_get(obj, "rsa"));
    id.cross_signed = json_is_true(json_object_get(obj, "crossSigned"));
    id.regenerations = json_integer_value(json_object_get(obj, "regenerations"));
    id.last_regeneration = get_str(obj, "lastRegeneration");
    id.since = json_integer_value(json_object_get(obj, "since"));
    /* Which required field is missing (or not a string): that is what is wrong. An issued
     * identity (generation > 0) has its certificate and key; before that only a pending key. */
    bool issued = id.generation > 0;
    const char *missing = !json_is_string(json_object_get(obj, "mesh")) ? "mesh"
                          : !json_is_string(json_object_get(obj, "dataplane")) ? "dataplane"
                          : issued && !json_is_string(json_object_get(obj, "certificate")) ? "certificate"
                          : issued && !json_is_string(json_object_get(obj, "publicKey")) ? "publicKey"
                          : !issued && !json_is_string(json_object_get(obj, "pendingPublicKey"))
                              ? "pendingPublicKey"
                              : NULL;
    json_decref(obj);
    if (missing) {
        char what[128];
        identity_clear(&id);
        snprintf(what, sizeof(what), "field '%s' is missing or not a string", missing);
        return corrupt(errbuf, &key, what);
    }
    /* Any other NULL is an allocation that failed (the JSON had the field or it is optional). */
    if (!id.mesh || !id.dataplane || (issued && (!id.cert_pem || !id.public_key_pem)) ||
        !id.bundle_backends) {
        identity_clear(&id);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    }
    *ret = id;
    if (ret_version)
        *ret_version = version;
    return 0;
}

int identity_get(store *s, const char *mesh_name, const char *name, identity *ret,
                 uint64_t *ret_version)
{
    return identity_read(s, mesh_name, name, ret, ret_version, NULL);
}

char *identity_encode(const identity *id)
{
    /* Written directly (store/identity_json.c), byte for byte what json_dumps wrote: a full
     * pass encodes every identity, and a jansson tree per record was 9 % of it. */
    return identity_json_encode(id);
}

int identity_put(store *s, const identity *id, uint64_t expected_version, uint64_t *ret_version)
{
    char *text = identity_encode(id);
    if (!text)
        return STORE_ENOMEM;
    store_key key = {STATE_IDENTITIES, id->mesh, id->dataplane};
    int rc = store_put(s, &key, text, strlen(text), expected_version, ret_version);
    free(text);
    return rc;
}

int identity_with_pending_key(store *s, const char *mesh_name, const char *dp_name,
                              int64_t cert_not_before, const char *key_pem, const char *csr_pem,
                              char **ret_text,
                              uint64_t *ret_version, uint64_t *ret_dp_version, char *errbuf)
{
    uint64_t dp_version = 0;
    int rc = state_object_version(s, &(store_key){STATE_DATAPLANES, mesh_name, dp_name},
                                  &dp_version);
    if (rc < 0)
        return rc == STORE_ENOTFOUND
                   ? meshca_fail(errbuf, MESHCA_ENOTFOUND, "no dataplane '%s' in mesh '%s'",
                                 dp_name, mesh_name)
                   : meshca_fail(errbuf, rc, "cannot read dataplane '%s/%s': %s", mesh_name,
                                 dp_name, store_strerror(rc));
    identity id = {0};
    uint64_t version = 0;
    rc = identity_read(s, mesh_name, dp_name, &id, &version, errbuf);
    if (rc == STORE_ENOTFOUND || rc == MESHCA_ECORRUPT) {
        /* A corrupt record is replaced, as the pass would (its version still checked). */
        if (rc == STORE_ENOTFOUND)
            version = 0;
        else if (state_object_version(s, &(store_key){STATE_IDENTITIES, mesh_name, dp_name},
                                      &version) < 0)
            version = STORE_ANY_VERSION;
        identity_clear(&id);
        /* No identity backs a client certificate: only the token may start one. */
        if (cert_not_before != IDENTITY_NO_CERT &&
            (rc = identity_admits_cert(NULL, mesh_name, dp_name, cert_not_before, errbuf)) < 0)
            return rc;
        id.mesh = strdup(mesh_name);
        id.dataplane = strdup(dp_name);
        /* The record starts here: certificates of a dataplane deleted before are older. */
        id.since = (int64_t)time(NULL);
        rc = id.mesh && id.dataplane ? 0 : MESHCA_ENOMEM;
    } else if (rc == 0 && cert_not_before != IDENTITY_NO_CERT &&
               (rc = identity_admits_cert(&id, mesh_name, dp_name, cert_not_before, errbuf)) < 0) {
        identity_clear(&id);
        return rc;
    }
    char *text = NULL;
    if (rc == 0) {
        free(id.pending_key_pem);
        free(id.pending_csr_pem);
        id.pending_key_pem = strdup(key_pem);
        id.pending_csr_pem = csr_pem ? strdup(csr_pem) : NULL;
        rc = !id.pending_key_pem || (csr_pem && !id.pending_csr_pem) || !(text = identity_encode(&id))
                 ? MESHCA_ENOMEM
                 : 0;
    }
    identity_clear(&id);
    if (rc < 0)
        return rc == MESHCA_ENOMEM
                   ? meshca_fail(errbuf, rc, "out of memory")
                   : meshca_fail(errbuf, rc, "cannot store the key of '%s/%s': %s", mesh_name,
                                 dp_name, store_strerror(rc));
    *ret_text = text;
    *ret_version = version;
    *ret_dp_version = dp_version;
    return 0;
}

size_t identity_pending_key_ops(const char *mesh_name, const char *dp_name, const char *text,
                                uint64_t version, uint64_t dp_version, store_op *ops)
{
    ops[0] = (store_op){STORE_OP_PUT, {STATE_IDENTITIES, mesh_name, dp_name}, text, strlen(text),
                        version, 0};
    ops[1] = (store_op){STORE_OP_CHECK, {STATE_DATAPLANES, mesh_name, dp_name}, NULL, 0,
                        dp_version, 0};
    return 2;
}

int state_object_version(store *s, const store_key *key, uint64_t *ret_version)
{
    char *value = NULL;
    size_t len = 0;
    int rc = store_get(s, key, &value, &len, ret_version);
    if (value) {
        OPENSSL_cleanse(value, len);
        free(value);
    }
    return rc;
}

/* --- bundles --- */

void state_sha256_hex(const char *text, char *buf)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    buf[0] = '\0';
    if (!EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL))
        return;
    for (unsigned int i = 0; i < n && i < 32; i++)
        snprintf(buf + 2 * i, 3, "%02x", md[i]);
}

void mesh_bundle_clear(mesh_bundle *b)
{
    if (!b)
        return;
    free(b->pem);
    /* backends NULL with nbackends set: its allocation failed (state_read_bundle). */
    for (size_t i = 0; b->backends && i < b->nbackends; i++)
        free(b->backends[i]);
    free(b->backends);
    free(b->digest);
    free(b->cross_signed_pem);
    memset(b, 0, sizeof(*b));
}

int state_read_bundle(store *s, const char *mesh_name, mesh_bundle *ret, uint64_t *ret_version,
                      char *errbuf)
{
    store_key key = {STATE_BUNDLES, mesh_name, mesh_name};
    char *value = NULL;
    size_t len = 0;
    uint64_t version = 0;
    int rc = store_get(s, &key, &value, &len, &version);
    if (rc < 0)
        return read_failed(errbuf, &key, rc);
    json_t *obj = NULL;
    if ((rc = load_object(&key, value, len, &obj, errbuf)) < 0)
        return rc;
    mesh_bundle b = {0};
    b.pem = get_str(obj, "bundle");
    b.digest = get_str(obj, "digest");
    b.cross_signed_pem = get_str(obj, "crossSigned");
    json_t *names = json_object_get(obj, "backends");
    b.nbackends = json_array_size(names);
    b.backends = calloc(b.nbackends + 1, sizeof(char *));
    for (size_t i = 0; b.backends && i < b.nbackends; i++)
        b.backends[i] = dup_or_null(json_string_value(json_array_get(names, i)));
    bool bad = !json_is_string(json_object_get(obj, "bundle")) ||
               !json_is_string(json_object_get(obj, "digest"));
    json_decref(obj);
    if (bad) {
        mesh_bundle_clear(&b);
        return corrupt(errbuf, &key, "field 'bundle' or 'digest' is missing or not a string");
    }
    if (!b.pem || !b.digest || !b.backends) {
        mesh_bundle_clear(&b);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    }
    *ret = b;
    if (ret_version)
        *ret_version = version;
    return 0;
}

char *state_encode_bundle(const mesh_bundle *b)
{
    json_t *names = json_array();
    for (size_t i = 0; names && i < b->nbackends; i++)
        json_array_append_new(names, json_string(b->backends[i]));
    json_t *obj = json_pack("{s:s, s:o?, s:s, s:s?}", "bundle", b->pem, "backends", names,
                            "digest", b->digest, "crossSigned", b->cross_signed_pem);
    if (!obj)
        return NULL;
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    return text;
}

/* --- mesh status --- */

int state_read_mesh_status(store *s, const char *mesh_name, json_t **ret, uint64_t *ret_version,
                           char *errbuf)
{
    store_key key = {STATE_MESHSTATUS, mesh_name, mesh_name};
    char *value = NULL;
    size_t len = 0;
    uint64_t version = 0;
    int rc = store_get(s, &key, &value, &len, &version);
    if (rc == STORE_ENOTFOUND) {
        json_t *empty = json_object();
        if (!empty)
            return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
        *ret = empty;
        if (ret_version)
            *ret_version = 0;
        return 0;
    }
    if (rc < 0)
        return read_failed(errbuf, &key, rc);
    json_t *obj = NULL;
    if ((rc = load_object(&key, value, len, &obj, errbuf)) < 0)
        return rc;
    *ret = obj;
    if (ret_version)
        *ret_version = version;
    return 0;
}

int state_get_mesh_status(store *s, const char *mesh_name, json_t **ret, uint64_t *ret_version)
{
    return state_read_mesh_status(s, mesh_name, ret, ret_version, NULL);
}

int state_put_mesh_status(store *s, const char *mesh_name, json_t *status, uint64_t expected_version)
{
    store_key key = {STATE_MESHSTATUS, mesh_name, mesh_name};
    char *text = json_dumps(status, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text)
        return STORE_ENOMEM;
    int rc = store_put(s, &key, text, strlen(text), expected_version, NULL);
    free(text);
    return rc;
}

/* --- secrets for CA backends --- */

/* Decodes base64 (whitespace allowed) into a NUL-terminated buffer. */
static int base64_decode(const char *text, size_t len, char **ret, size_t *ret_len)
{
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    unsigned char *out = malloc(len / 4 * 3 + 4);
    int n = 0, tail = 0, rc = -1;
    if (!ctx || !out)
        goto out;
    EVP_DecodeInit(ctx);
    if (EVP_DecodeUpdate(ctx, out, &n, (const unsigned char *)text, (int)len) < 0)
        goto out;
    if (EVP_DecodeFinal(ctx, out + n, &tail) < 0)
        goto out;
    out[n + tail] = '\0';
    *ret = (char *)out;
    *ret_len = (size_t)(n + tail);
    out = NULL;
    rc = 0;
out:
    if (out) {
        /* A half-decoded key is still key material. */
        OPENSSL_cleanse(out, len / 4 * 3 + 4);
        free(out);
    }
    EVP_ENCODE_CTX_free(ctx);
    return rc;
}

static const secret *find_pending_secret(const manifest_set *set, const char *mesh_name,
                                         const char *name)
{
    for (size_t i = 0; set && i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind == RESOURCE_SECRET && res->u.secret.name.value && res->u.secret.mesh.value &&
            strcmp(res->u.secret.name.value, name) == 0 &&
            strcmp(res->u.secret.mesh.value, mesh_name) == 0)
            return &res->u.secret;
    }
    return NULL;
}

/* The base64 data of a stored Secret, decoded. The stored value is the JSON state_encode_resource
 * and state_secret_store write, so jansson reads it: the YAML loader would copy the key into a
 * whole resource tree that is freed without being wiped. Every copy is wiped here. */
static int decode_stored_secret(char *value, size_t len, char **ret_data, size_t *ret_len)
{
    json_error_t err;
    json_t *obj = json_loadb(value, len, 0, &err);
    OPENSSL_cleanse(value, len);
    json_t *data = json_object_get(obj, "data");
    int rc = MESHCA_ECORRUPT;
    if (json_is_string(data)) {
        char *text = (char *)json_string_value(data);
        size_t n = json_string_length(data);
        rc = base64_decode(text, n, ret_data, ret_len) == 0 ? 0 : MESHCA_ECORRUPT;
        OPENSSL_cleanse(text, n);
    }
    json_decref(obj);
    return rc;
}

int state_secret_lookup(void *userdata, const char *name, char **ret_data, size_t *ret_len)
{
    const state_secrets *ctx = userdata;
    const secret *sec = find_pending_secret(ctx->pending, ctx->mesh, name);

    if (sec)
        return sec->data.value && base64_decode(sec->data.value, strlen(sec->data.value),
                                                ret_data, ret_len) == 0
                   ? 0 : PKI_EINVAL;
    if (!ctx->store)
        return PKI_ENOENT;
    store_key key = {STATE_SECRETS, ctx->mesh, name};
    char *value = NULL;
    size_t len = 0;
    int got = store_get(ctx->store, &key, &value, &len, NULL);
    if (got == STORE_ENOTFOUND || got == STORE_EINVAL)
        return PKI_ENOENT;
    if (got < 0)
        return got;   /* the store failed: not the same as an absent secret */
    int rc = decode_stored_secret(value, len, ret_data, ret_len);
    free(value);
    return rc;
}

/* One stored Secret resource holding `data` base64-encoded; caller wipes and frees. */
static char *encode_secret(const char *mesh_name, const char *name, const char *data, size_t len)
{
    size_t b64_len = 4 * ((len + 2) / 3) + 1;
    char *b64 = malloc(b64_len);
    if (!b64)
        return NULL;
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)data, (int)len);
    json_t *obj = json_pack("{s:s, s:s, s:s, s:s}", "type", "Secret", "name", name, "mesh",
                            mesh_name, "data", b64);
    OPENSSL_cleanse(b64, b64_len);
    free(b64);
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_t *d = json_object_get(obj, "data");
    if (json_is_string(d))
        OPENSSL_cleanse((char *)json_string_value(d), json_string_length(d));
    json_decref(obj);
    return text;
}

int state_secret_store(void *userdata, const ca_secret *secrets, size_t n)
{
    const state_secrets *ctx = userdata;
    store_op ops[STATE_MAX_SECRET_SET];
    char *texts[STATE_MAX_SECRET_SET] = {NULL};
    int rc = 0;

    if (n == 0 || n > STATE_MAX_SECRET_SET)
        return MESHCA_EINVAL;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (secrets[i].len > PKI_MAX_PEM_BYTES) {
            rc = MESHCA_EINVAL;
            break;
        }
        texts[i] = encode_secret(ctx->mesh, secrets[i].name, secrets[i].data, secrets[i].len);
        if (!texts[i]) {
            rc = MESHCA_ENOMEM;
            break;
        }
        ops[i] = (store_op){STORE_OP_PUT, {STATE_SECRETS, ctx->mesh, secrets[i].name}, texts[i],
                            strlen(texts[i]), 0};
        /* The last secret is create-only: it decides which of concurrent creators wins. The
         * others replace only what is there now (a leftover of an interrupted creation). */
        if (i + 1 < n) {
            char *old = NULL;
            size_t old_len = 0;
            int got = store_get(ctx->store, &ops[i].key, &old, &old_len, &ops[i].expected_version);
            if (old) {
                OPENSSL_cleanse(old, old_len);
                free(old);
            }
            if (got == STORE_ENOTFOUND)
                ops[i].expected_version = 0;
            else if (got < 0)
                rc = got;
        }
    }
    if (rc == 0)
        rc = store_txn(ctx->store, ops, n);
    for (size_t i = 0; i < n; i++)
        if (texts[i]) {
            OPENSSL_cleanse(texts[i], strlen(texts[i]));
            free(texts[i]);
        }
    return rc;
}
