/* model.c - the typed resource model: freeing, copying, lookups, defaults and durations. */
#include "manifests/model.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS_PER_SECOND INT64_C(1000)
#define MS_PER_MINUTE (60 * MS_PER_SECOND)
#define MS_PER_HOUR (60 * MS_PER_MINUTE)
#define MS_PER_DAY (24 * MS_PER_HOUR)
#define MS_PER_WEEK (7 * MS_PER_DAY)
#define MS_PER_YEAR (365 * MS_PER_DAY)

#define DEFAULT_LEAF_LIFETIME_MS (24 * MS_PER_HOUR)

const char *resource_kind_name(resource_kind kind)
{
    switch (kind) {
    case RESOURCE_MESH:
        return "Mesh";
    case RESOURCE_DATAPLANE:
        return "Dataplane";
    case RESOURCE_SECRET:
        return "Secret";
    }
    return "?";
}

const char *resource_name(const resource *res)
{
    return res->kind == RESOURCE_MESH        ? res->u.mesh.name.value
           : res->kind == RESOURCE_DATAPLANE ? res->u.dataplane.name.value
                                             : res->u.secret.name.value;
}

const char *resource_mesh(const resource *res)
{
    return res->kind == RESOURCE_MESH        ? res->u.mesh.name.value
           : res->kind == RESOURCE_DATAPLANE ? res->u.dataplane.mesh.value
                                             : res->u.secret.mesh.value;
}

static void string_clear(model_string *s)
{
    free(s->value);
    s->value = NULL;
}

static void backend_clear(mesh_backend *b)
{
    string_clear(&b->name);
    string_clear(&b->type);
    string_clear(&b->mode);
    string_clear(&b->dp_cert.key_type);
    mnode_free(b->conf);
    b->conf = NULL;
}

static void mesh_clear(mesh *m)
{
    string_clear(&m->name);
    string_clear(&m->enabled_backend);
    for (size_t i = 0; i < m->nbackends; i++)
        backend_clear(&m->backends[i]);
    free(m->backends);
    memset(m, 0, sizeof(*m));
}

static void dataplane_clear(dataplane *d)
{
    string_clear(&d->name);
    string_clear(&d->mesh);
    string_clear(&d->address);
    for (size_t i = 0; i < d->ninbounds; i++) {
        for (size_t j = 0; j < d->inbounds[i].ntags; j++) {
            free(d->inbounds[i].tags[j].key);
            free(d->inbounds[i].tags[j].value);
        }
        free(d->inbounds[i].tags);
    }
    free(d->inbounds);
    memset(d, 0, sizeof(*d));
}

const model_tag *dataplane_tag_next(dataplane_tag_iter *it)
{
    while (it->inbound < it->dp->ninbounds) {
        const dataplane_inbound *in = &it->dp->inbounds[it->inbound];
        if (it->tag < in->ntags)
            return &in->tags[it->tag++];
        it->inbound++;
        it->tag = 0;
    }
    return NULL;
}

size_t dataplane_tag_count(const dataplane *dp)
{
    size_t n = 0;
    for (size_t i = 0; i < dp->ninbounds; i++)
        n += dp->inbounds[i].ntags;
    return n;
}

static void secret_clear(secret *s)
{
    string_clear(&s->name);
    string_clear(&s->mesh);
    /* The data is key material for provided CAs: wipe before free. */
    if (s->data.value) {
        volatile char *p = s->data.value;
        while (*p)
            *p++ = 0;
    }
    string_clear(&s->data);
    memset(s, 0, sizeof(*s));
}

void resource_clear(resource *res)
{
    if (!res)
        return;
    switch (res->kind) {
    case RESOURCE_MESH:
        mesh_clear(&res->u.mesh);
        break;
    case RESOURCE_DATAPLANE:
        dataplane_clear(&res->u.dataplane);
        break;
    case RESOURCE_SECRET:
        secret_clear(&res->u.secret);
        break;
    }
}

/* Copies src->value; false on out-of-memory. */
static bool string_copy(model_string *dst, const model_string *src)
{
    dst->mark = src->mark;
    dst->value = src->value ? strdup(src->value) : NULL;
    return !src->value || dst->value;
}

int mesh_copy(mesh *dst, const mesh *src)
{
    *dst = *src;
    dst->name.value = dst->enabled_backend.value = NULL;
    dst->backends = NULL;
    dst->nbackends = 0;
    if (!string_copy(&dst->name, &src->name) || !string_copy(&dst->enabled_backend, &src->enabled_backend))
        goto oom;
    if (src->nbackends) {
        dst->backends = calloc(src->nbackends, sizeof(*dst->backends));
        if (!dst->backends)
            goto oom;
    }
    for (size_t i = 0; i < src->nbackends; i++) {
        const mesh_backend *s = &src->backends[i];
        mesh_backend *d = &dst->backends[i];
        dst->nbackends = i + 1;   /* so that a failure below frees what was copied so far */
        bool ok = string_copy(&d->name, &s->name) && string_copy(&d->type, &s->type) &&
                  string_copy(&d->mode, &s->mode) && string_copy(&d->dp_cert.key_type, &s->dp_cert.key_type);
        d->mark = s->mark;
        d->dp_cert.rotation_expiration = s->dp_cert.rotation_expiration;
        d->dp_cert.request_timeout = s->dp_cert.request_timeout;
        d->conf = mnode_clone(s->conf);
        if (!ok || (s->conf && !d->conf))
            goto oom;
    }
    return 0;
oom:
    mesh_clear(dst);
    return MESHCA_ENOMEM;
}

const mesh_backend *mesh_find_backend(const mesh *m, const char *name)
{
    if (!m || !name)
        return NULL;
    for (size_t i = 0; i < m->nbackends; i++)
        if (m->backends[i].name.value && !strcmp(m->backends[i].name.value, name))
            return &m->backends[i];
    return NULL;
}

const char *mesh_enabled_backend(const mesh *m)
{
    if (!m || !m->enabled_backend.value || !m->enabled_backend.value[0])
        return NULL;
    return m->enabled_backend.value;
}

int64_t mesh_backend_leaf_lifetime_ms(const mesh_backend *b)
{
    if (b && b->dp_cert.rotation_expiration.set)
        return b->dp_cert.rotation_expiration.ms;
    return DEFAULT_LEAF_LIFETIME_MS;
}

bool mesh_backend_leaf_is_rsa(const mesh_backend *b)
{
    return b && b->dp_cert.key_type.value && !strcmp(b->dp_cert.key_type.value, "rsa");
}

bool mesh_backend_same_ca(const mesh_backend *a, const mesh_backend *b)
{
    if (!a || !b)
        return false;
    const char *ta = a->type.value ? a->type.value : "";
    const char *tb = b->type.value ? b->type.value : "";
    if (strcmp(ta, tb))
        return false;
    return mnode_equal(a->conf, b->conf);
}

int model_parse_duration(const char *text, int64_t *ret_ms)
{
    if (!text)
        return -1;
    const char *p = text;
    if (!(*p >= '0' && *p <= '9'))
        return -1;
    int64_t n = 0;
    while (*p >= '0' && *p <= '9') {
        int d = *p - '0';
        if (n > (INT64_MAX - d) / 10)
            return -1;
        n = n * 10 + d;
        p++;
    }
    int64_t unit;
    if (!strcmp(p, "ms"))
        unit = 1;
    else if (!strcmp(p, "s"))
        unit = MS_PER_SECOND;
    else if (!strcmp(p, "m"))
        unit = MS_PER_MINUTE;
    else if (!strcmp(p, "h"))
        unit = MS_PER_HOUR;
    else if (!strcmp(p, "d"))
        unit = MS_PER_DAY;
    else if (!strcmp(p, "w"))
        unit = MS_PER_WEEK;
    else if (!strcmp(p, "y"))
        unit = MS_PER_YEAR;
    else
        return -1;
    if (n > INT64_MAX / unit)
        return -1;
    if (ret_ms)
        *ret_ms = n * unit;
    return 0;
}

void model_format_duration(int64_t ms, char *buf, size_t size)
{
    static const struct {
        int64_t ms;
        const char *suffix;
    } units[] = {
        {MS_PER_YEAR, "y"}, {MS_PER_WEEK, "w"}, {MS_PER_DAY, "d"}, {MS_PER_HOUR, "h"},
        {MS_PER_MINUTE, "m"}, {MS_PER_SECOND, "s"},
    };
    if (!buf || size == 0)
        return;
    const char *suffix = "ms";
    int64_t v = ms;
    if (ms != 0) {
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
            if (ms % units[i].ms == 0) {
                v = ms / units[i].ms;
                suffix = units[i].suffix;
                break;
            }
    }
    /* Truncation only cuts a too-small caller buffer; the result stays NUL-terminated. */
    int n = snprintf(buf, size, "%" PRId64 "%s", v, suffix);
    if (n < 0)
        buf[0] = '\0';
}
