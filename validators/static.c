/* static.c - static rules of SPEC S2: each resource on its own, and duplicates across a set.
 *
 * Diagnostic codes (stable, listed in doc/diagnostics.md):
 *   invalid-name               a Mesh/backend name is not a DNS label (<= 63, [a-z0-9]([-a-z0-9]*[a-z0-9])?),
 *                              or a Dataplane/Secret name is not a DNS subdomain (<= 253)
 *   missing-field              a required field is absent or empty
 *   too-many-backends          more than MODEL_MAX_BACKENDS (16) backends
 *   duplicate-backend          two backends share a name (reported at the second one)
 *   enabled-backend-not-found  enabledBackend names no backend (with did-you-mean)
 *   unknown-backend-type       type is not builtin|provided|vault|cfssl (with did-you-mean)
 *   unknown-mode               mode is not STRICT|PERMISSIVE (with did-you-mean)
 *   unknown-key-type           dpCert.keyType is not ecdsa|rsa (with did-you-mean)
 *   invalid-duration           a dpCert duration is zero
 *   missing-service-tag        a Dataplane inbound without a kuma.io/service tag
 *   invalid-port               an inbound port outside 1..65535
 *   duplicate-resource         the same kind+mesh+name twice in one set
 *   bad-secret-data            Secret data is not base64 (the value is never printed)
 *   conf.c adds: bad-conf, unknown-field, bad-datasource (and missing-field) for backend conf.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifests/base64.h"
#include "validators/internal.h"
#include "validators/validators.h"

static const char *const modes[] = {"STRICT", "PERMISSIVE", NULL};
static const char *const key_types[] = {"ecdsa", "rsa", NULL};

#define SERVICE_TAG MODEL_SERVICE_TAG

static bool is_dns_label(const char *s, size_t len)
{
    if (len == 0 || len > MODEL_MAX_NAME_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' && i > 0 && i + 1 < len))
            return false;
    }
    return true;
}

/* Dataplane and Secret names may carry dots (Kuma names secrets "<mesh>.ca-builtin-cert-<b>"). */
static bool is_dns_subdomain(const char *s)
{
    size_t total = strlen(s);
    if (total == 0 || total > MODEL_MAX_RESOURCE_NAME)
        return false;
    const char *p = s;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (!is_dns_label(p, len))
            return false;
        if (!dot)
            return true;
        p = dot + 1;
    }
}

const char *validate_mesh_name_problem(const char *name)
{
    if (!name || !*name)
        return "it is empty";
    if (strlen(name) > MODEL_MAX_NAME_LEN)
        return "it is longer than 63 characters";
    if (!is_dns_label(name, strlen(name)))
        return "a mesh name is a DNS label: a-z, 0-9 and '-', starting and ending with a letter or digit";
    return NULL;
}

static bool is_empty(const model_string *s)
{
    return !s->value || !*s->value;
}

/* Appends " (did you mean 'x'?)" when a candidate is close; `buf` always ends up a string. */
static const char *did_you_mean(const char *word, const char *const *candidates, char *buf,
                                size_t size)
{
    const char *hint = word ? manifest_suggest(word, candidates) : NULL;
    if (hint)
        snprintf(buf, size, " (did you mean '%s'?)", hint);
    else
        buf[0] = '\0';
    return buf;
}

static void check_label(const model_string *name, const char *path, const char *what,
                        diag_list *out)
{
    if (!name->value)
        return;   /* absent: the resource builder reports the missing field */
    if (!*name->value) {
        diag_error(out, "missing-field", &name->mark, path, "%s is empty", what);
        return;
    }
    if (!is_dns_label(name->value, strlen(name->value)))
        diag_error(out, "invalid-name", &name->mark, path,
                   "%s '%.80s' is not a DNS label (at most %d characters of a-z, 0-9 and '-', "
                   "starting and ending with a letter or digit)",
                   what, name->value, MODEL_MAX_NAME_LEN);
}

static void check_subdomain(const model_string *name, const char *path, const char *what,
                            diag_list *out)
{
    if (!name->value)
        return;   /* absent: the resource builder reports the missing field */
    if (!*name->value) {
        diag_error(out, "missing-field", &name->mark, path, "%s is empty", what);
        return;
    }
    if (!is_dns_subdomain(name->value))
        diag_error(out, "invalid-name", &name->mark, path,
                   "%s '%.80s' is not a DNS name (dot-separated labels of a-z, 0-9 and '-', at "
                   "most %d characters)",
                   what, name->value, MODEL_MAX_RESOURCE_NAME);
}

static void check_enum(const model_string *value, const char *const *allowed, const char *code,
                       const char *path, const char *what, const char *expected, diag_list *out)
{
    char hint[96];
    if (!value->value)
        return;   /* absent: the default applies */
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp(value->value, allowed[i]) == 0)
            return;
    diag_error(out, code, &value->mark, path, "unknown %s '%.80s'%s; expected %s", what, value->value,
               did_you_mean(value->value, allowed, hint, sizeof hint), expected);
}

static void check_backend(const mesh_backend *b, size_t i, diag_list *out)
{
    char path[96];

    snprintf(path, sizeof path, "mtls.backends[%zu].name", i);
    check_label(&b->name, path, "backend name", out);

    snprintf(path, sizeof path, "mtls.backends[%zu].type", i);
    if (is_empty(&b->type))
        diag_error(out, "missing-field", b->type.value ? &b->type.mark : &b->mark, path,
                   "backend type is required (builtin, provided, vault or cfssl)");
    else
        check_enum(&b->type, validate_backend_types, "unknown-backend-type", path, "backend type",
                   "builtin, provided, vault or cfssl", out);

    snprintf(path, sizeof path, "mtls.backends[%zu].mode", i);
    check_enum(&b->mode, modes, "unknown-mode", path, "mode", "STRICT or PERMISSIVE", out);

    snprintf(path, sizeof path, "mtls.backends[%zu].dpCert.keyType", i);
    check_enum(&b->dp_cert.key_type, key_types, "unknown-key-type", path, "key type",
               "ecdsa or rsa", out);

    /* A zero lifetime would make every reconcile reissue every certificate. */
    if (b->dp_cert.rotation_expiration.set && b->dp_cert.rotation_expiration.ms <= 0) {
        snprintf(path, sizeof path, "mtls.backends[%zu].dpCert.rotation.expiration", i);
        diag_error(out, "invalid-duration", &b->dp_cert.rotation_expiration.mark, path,
                   "certificate expiration must be greater than zero");
    }
    if (b->dp_cert.request_timeout.set && b->dp_cert.request_timeout.ms <= 0) {
        snprintf(path, sizeof path, "mtls.backends[%zu].dpCert.requestTimeout", i);
        diag_error(out, "invalid-duration", &b->dp_cert.request_timeout.mark, path,
                   "request timeout must be greater than zero");
    }

    validate_backend_conf(b, i, out);
}

void validate_mesh(const mesh *m, diag_list *out)
{
    check_label(&m->name, "name", "mesh name", out);

    if (m->nbackends > MODEL_MAX_BACKENDS)
        diag_error(out, "too-many-backends", &m->backends_mark, "mtls.backends",
                   "%zu backends; a mesh has at most %d", m->nbackends, MODEL_MAX_BACKENDS);

    for (size_t i = 0; i < m->nbackends; i++) {
        const mesh_backend *b = &m->backends[i];
        check_backend(b, i, out);
        if (is_empty(&b->name))
            continue;
        /* Quadratic, but bounded: duplicates are checked on at most a few dozen backends even
         * when the limit above is exceeded. */
        for (size_t j = 0; j < i && i < 4 * MODEL_MAX_BACKENDS; j++) {
            const mesh_backend *first = &m->backends[j];
            if (first->name.value && strcmp(first->name.value, b->name.value) == 0) {
                char path[64];
                snprintf(path, sizeof path, "mtls.backends[%zu].name", i);
                diag_error(out, "duplicate-backend", &b->name.mark, path,
                           "duplicate backend name '%s' (first at line %u)", b->name.value,
                           first->name.mark.line);
                break;
            }
        }
    }

    const char *enabled = m->enabled_backend.value;
    if (enabled && *enabled && !mesh_find_backend(m, enabled)) {
        size_t n = m->nbackends < 4 * MODEL_MAX_BACKENDS ? m->nbackends : 4 * MODEL_MAX_BACKENDS;
        const char **names = calloc(n + 1, sizeof *names);
        size_t k = 0;
        char hint[96] = "";
        /* Out of memory only costs the did-you-mean hint; the error is still reported. */
        for (size_t i = 0; names && i < n; i++)
            if (m->backends[i].name.value)
                names[k++] = m->backends[i].name.value;
        if (names)
            did_you_mean(enabled, names, hint, sizeof hint);
        else {
            k = m->nbackends;
            out->out_of_memory = true;
        }
        if (k == 0)
            diag_error(out, "enabled-backend-not-found", &m->enabled_backend.mark,
                       "mtls.enabledBackend",
                       "enabledBackend '%.80s' is not defined: the mesh has no backends", enabled);
        else
            diag_error(out, "enabled-backend-not-found", &m->enabled_backend.mark,
                       "mtls.enabledBackend",
                       "enabledBackend '%.80s' is not one of the backends%s", enabled, hint);
        free(names);
    }
    validate_lifetime_conf(m, out);
}

void validate_dataplane(const dataplane *dp, diag_list *out)
{
    check_subdomain(&dp->name, "name", "dataplane name", out);
    if (dp->mesh.value)
        check_label(&dp->mesh, "mesh", "mesh name", out);
    if (is_empty(&dp->address))
        diag_error(out, "missing-field", &dp->name.mark, "networking.address",
                   "networking.address is required");
    if (dp->ninbounds == 0)
        diag_error(out, "missing-field", &dp->name.mark, "networking.inbound",
                   "a dataplane needs at least one inbound with a kuma.io/service tag");

    for (size_t i = 0; i < dp->ninbounds; i++) {
        const dataplane_inbound *in = &dp->inbounds[i];
        char path[64];
        /* A port the builder refused (absent, not a number, out of range) was said there,
         * at the value: once is enough for one mistake. */
        if (!in->port_refused && (in->port < 1 || in->port > 65535)) {
            snprintf(path, sizeof path, "networking.inbound[%zu].port", i);
            diag_error(out, "invalid-port", &in->mark, path, "inbound port must be in 1..65535");
        }
        const model_tag *service = NULL;
        for (size_t t = 0; t < in->ntags; t++)
            if (in->tags[t].key && strcmp(in->tags[t].key, SERVICE_TAG) == 0)
                service = &in->tags[t];
        snprintf(path, sizeof path, "networking.inbound[%zu].tags", i);
        if (!service)
            diag_error(out, "missing-service-tag", &in->mark, path,
                       "inbound has no '" SERVICE_TAG "' tag; every inbound needs one");
        else if (!service->value || !*service->value)
            diag_error(out, "missing-service-tag", &service->mark, path,
                       "the '" SERVICE_TAG "' tag is empty");
    }
}

void validate_secret(const secret *s, diag_list *out)
{
    check_subdomain(&s->name, "name", "secret name", out);
    if (s->mesh.value)
        check_label(&s->mesh, "mesh", "mesh name", out);
    if (!s->data.value)
        return;   /* absent: the resource builder reports the missing field */
    if (!base64_valid(s->data.value, strlen(s->data.value)))
        diag_error(out, "bad-secret-data", &s->data.mark, "data",
                   "secret data is not valid base64");
}

void validate_resource(const resource *res, diag_list *out)
{
    switch (res->kind) {
    case RESOURCE_MESH:
        validate_mesh(&res->u.mesh, out);
        break;
    case RESOURCE_DATAPLANE:
        validate_dataplane(&res->u.dataplane, out);
        break;
    case RESOURCE_SECRET:
        validate_secret(&res->u.secret, out);
        break;
    }
}

/* Identity used for duplicate detection; a resource without a name cannot collide. */
typedef struct res_key {
    resource_kind kind;
    const char *mesh;
    const char *name;
    size_t index;
    const resource *res;
} res_key;

static int compare_keys(const void *a, const void *b)
{
    const res_key *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    int c = strcmp(x->mesh, y->mesh);
    if (c)
        return c;
    c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* The name field of a resource (with its source mark, for diagnostics). */
static const model_string *resource_name_field(const resource *res)
{
    switch (res->kind) {
    case RESOURCE_MESH: return &res->u.mesh.name;
    case RESOURCE_DATAPLANE: return &res->u.dataplane.name;
    case RESOURCE_SECRET: return &res->u.secret.name;
    }
    return NULL;
}

/* Kuma puts a resource without a mesh into "default". */
static const char *resource_mesh_or_default(const resource *res)
{
    const char *m = resource_mesh(res);
    return m && *m ? m : "default";
}

void validate_set(const manifest_set *set, diag_list *out)
{
    size_t n = manifest_set_count(set);
    res_key *keys = calloc(n ? n : 1, sizeof *keys);
    if (!keys) {
        diag_error(out, "out-of-memory", NULL, "", "out of memory: duplicate resources were not checked");
        out->out_of_memory = true;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const resource *res = manifest_set_get(set, i);
        validate_resource(res, out);
        const model_string *name = resource_name_field(res);
        if (!keys || !name || is_empty(name))
            continue;
        keys[k++] = (res_key){res->kind, resource_mesh_or_default(res), name->value, i, res};
    }
    /* Sorting keeps this linear-logarithmic for sets of 100,000 dataplanes. qsort(NULL, 0) is
     * undefined behaviour, hence the guard. */
    if (k)
        qsort(keys, k, sizeof *keys, compare_keys);
    size_t first = 0;
    for (size_t i = 1; i < k; i++) {
        if (keys[i].kind == keys[first].kind && strcmp(keys[i].mesh, keys[first].mesh) == 0 &&
            strcmp(keys[i].name, keys[first].name) == 0) {
            const model_string *name = resource_name_field(keys[i].res);
            const source_mark *fm = &resource_name_field(keys[first].res)->mark;
            if (keys[i].kind == RESOURCE_MESH)
                diag_error(out, "duplicate-resource", &name->mark, "name",
                           "duplicate Mesh '%s' (first at %s:%u)", keys[i].name,
                           fm->file ? fm->file : "<input>", fm->line);
            else
                diag_error(out, "duplicate-resource", &name->mark, "name",
                           "duplicate %s '%s' in mesh '%s' (first at %s:%u)",
                           resource_kind_name(keys[i].kind), keys[i].name, keys[i].mesh,
                           fm->file ? fm->file : "<input>", fm->line);
        } else {
            first = i;
        }
    }
    free(keys);
}
