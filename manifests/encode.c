/* encode.c - the model back to JSON in the Universal form, for stores and `-o json` output. */
#include <string.h>

#include "manifests/encode.h"

bool encode_is_inline_key(const char *key)
{
    return key && (strcmp(key, "inline") == 0 || strcmp(key, "inlineString") == 0);
}

/* encode_node, with every inline datasource value replaced when `redact`: any mapping key
 * inline/inlineString in a conf tree is a datasource (provided cert and key, vault token and
 * TLS material, cfssl authKey, and whatever datasource a backend adds later). */
static json_t *encode_tree(const mnode *node, bool redact)
{
    if (!node)
        return json_null();
    switch (node->kind) {
    case MNODE_MAP: {
        json_t *obj = json_object();
        for (size_t i = 0; i < node->npairs; i++) {
            const char *key = node->pairs[i].key->scalar;
            json_object_set_new(obj, key,
                                redact && encode_is_inline_key(key)
                                    ? json_string(ENCODE_REDACTED)
                                    : encode_tree(node->pairs[i].value, redact));
        }
        return obj;
    }
    case MNODE_SEQ: {
        json_t *arr = json_array();
        for (size_t i = 0; i < node->nitems; i++)
            json_array_append_new(arr, encode_tree(node->items[i], redact));
        return arr;
    }
    case MNODE_SCALAR:
        break;
    }
    return encode_node(node);
}

json_t *encode_node(const mnode *node)
{
    if (!node)
        return json_null();
    switch (node->kind) {
    case MNODE_MAP: {
        json_t *obj = json_object();
        for (size_t i = 0; i < node->npairs; i++)
            json_object_set_new(obj, node->pairs[i].key->scalar, encode_node(node->pairs[i].value));
        return obj;
    }
    case MNODE_SEQ: {
        json_t *arr = json_array();
        for (size_t i = 0; i < node->nitems; i++)
            json_array_append_new(arr, encode_node(node->items[i]));
        return arr;
    }
    case MNODE_SCALAR:
        break;
    }
    bool b;
    long long n;
    if (mnode_is_null(node))
        return json_null();
    if (mnode_as_bool(node, &b))
        return json_boolean(b);
    if (mnode_as_int(node, &n))
        return json_integer(n);
    return json_stringn(node->scalar, node->scalar_len);
}

/* Sets key to a string only when the field was given. */
static void set_string(json_t *obj, const char *key, const model_string *s)
{
    if (s->value)
        json_object_set_new(obj, key, json_string(s->value));
}

static void set_duration(json_t *obj, const char *key, const model_duration *d)
{
    char buf[32];
    if (!d->set)
        return;
    /* As written: get -o yaml must give back what apply read, not a normalised form. */
    if (d->text[0]) {
        json_object_set_new(obj, key, json_string(d->text));
        return;
    }
    model_format_duration(d->ms, buf, sizeof(buf));
    json_object_set_new(obj, key, json_string(buf));
}

static json_t *encode_backend(const mesh_backend *b, bool with_secret_data)
{
    json_t *obj = json_object();
    json_t *dp = json_object();
    set_string(obj, "name", &b->name);
    set_string(obj, "type", &b->type);
    set_string(obj, "mode", &b->mode);
    if (b->dp_cert.rotation_expiration.set) {
        json_t *rotation = json_object();
        set_duration(rotation, "expiration", &b->dp_cert.rotation_expiration);
        json_object_set_new(dp, "rotation", rotation);
    }
    set_duration(dp, "requestTimeout", &b->dp_cert.request_timeout);
    set_string(dp, "keyType", &b->dp_cert.key_type);
    if (json_object_size(dp) > 0)
        json_object_set_new(obj, "dpCert", dp);
    else
        json_decref(dp);
    if (b->conf)
        json_object_set_new(obj, "conf", encode_tree(b->conf, !with_secret_data));
    return obj;
}

static json_t *encode_mesh(const mesh *m, bool with_secret_data)
{
    json_t *obj = json_pack("{s:s}", "type", "Mesh");
    set_string(obj, "name", &m->name);
    if (m->mtls_present) {
        json_t *mtls = json_object();
        json_t *backends = json_array();
        set_string(mtls, "enabledBackend", &m->enabled_backend);
        for (size_t i = 0; i < m->nbackends; i++)
            json_array_append_new(backends, encode_backend(&m->backends[i], with_secret_data));
        json_object_set_new(mtls, "backends", backends);
        if (m->skip_validation)
            json_object_set_new(mtls, "skipValidation", json_true());
        json_object_set_new(obj, "mtls", mtls);
    }
    return obj;
}

static json_t *encode_tags(const model_tag *tags, size_t n)
{
    json_t *obj = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(obj, tags[i].key, json_string(tags[i].value ? tags[i].value : ""));
    return obj;
}

static json_t *encode_dataplane(const dataplane *dp)
{
    json_t *obj = json_pack("{s:s}", "type", "Dataplane");
    json_t *net = json_object();
    json_t *inbound = json_array();
    set_string(obj, "mesh", &dp->mesh);
    set_string(obj, "name", &dp->name);
    set_string(net, "address", &dp->address);
    for (size_t i = 0; i < dp->ninbounds; i++)
        json_array_append_new(inbound, json_pack("{s:I, s:o}", "port", (json_int_t)dp->inbounds[i].port,
                                                 "tags", encode_tags(dp->inbounds[i].tags,
                                                                     dp->inbounds[i].ntags)));
    json_object_set_new(net, "inbound", inbound);
    json_object_set_new(obj, "networking", net);
    return obj;
}

static json_t *encode_secret(const secret *s, int with_data)
{
    json_t *obj = json_pack("{s:s}", "type", "Secret");
    set_string(obj, "name", &s->name);
    set_string(obj, "mesh", &s->mesh);
    if (with_data)
        set_string(obj, "data", &s->data);
    else if (s->data.value)
        json_object_set_new(obj, "data", json_string(ENCODE_REDACTED));
    return obj;
}

json_t *encode_resource(const resource *res, int with_secret_data)
{
    switch (res->kind) {
    case RESOURCE_MESH:
        return encode_mesh(&res->u.mesh, with_secret_data);
    case RESOURCE_DATAPLANE:
        return encode_dataplane(&res->u.dataplane);
    case RESOURCE_SECRET:
        return encode_secret(&res->u.secret, with_secret_data);
    }
    return json_null();
}
