/* status.c - dataplane status (SPEC S7) to and from JSON with jansson. */
#include "manifests/status.h"

#include "manifests/manifest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

/* Copies `s` (NULL stays NULL) into *ret; false on out-of-memory. */
static bool copy_string(char **ret, const char *s)
{
    *ret = s ? strdup(s) : NULL;
    return !s || *ret;
}

static bool out_of_memory(diag_list *diags, const char *name)
{
    source_mark mark = {name, 0, 0};
    diag_error(diags, "out-of-memory", &mark, "", "out of memory while reading the status");
    diags->out_of_memory = true;
    return false;
}

/* Every problem of one item is reported against "items[i].field" so a user can find it in a
 * large snapshot; the file name is kept, line numbers are not known for JSON values. */
static void bad(diag_list *diags, const char *name, size_t index, const char *field,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void bad(diag_list *diags, const char *name, size_t index, const char *field,
                const char *fmt, ...)
{
    char path[160];
    source_mark mark = {name, 0, 0};
    if (field && *field)
        snprintf(path, sizeof path, "items[%zu].%s", index, field);
    else
        snprintf(path, sizeof path, "items[%zu]", index);
    va_list ap;
    va_start(ap, fmt);
    diag_addv(diags, DIAG_ERROR, "bad-status", &mark, path, fmt, ap);
    va_end(ap);
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "value";
}

/* Optional string field: absent and null both mean "not set". Returns false on a wrong type. */
static bool get_string(json_t *obj, const char *key, char **ret, bool required, diag_list *diags,
                       const char *name, size_t index, const char *field)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required) {
            bad(diags, name, index, field, "missing required field");
            return false;
        }
        return true;
    }
    if (!json_is_string(v)) {
        bad(diags, name, index, field, "expected a string, got %s", json_type_name(v));
        return false;
    }
    if (!copy_string(ret, json_string_value(v)))
        return out_of_memory(diags, name);
    return true;
}

static bool get_int(json_t *obj, const char *key, long long *ret, diag_list *diags, const char *name,
                    size_t index, const char *field)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_integer(v)) {
        bad(diags, name, index, field, "expected an integer, got %s", json_type_name(v));
        return false;
    }
    if (json_integer_value(v) < 0) {
        bad(diags, name, index, field, "must not be negative");
        return false;
    }
    *ret = json_integer_value(v);
    return true;
}

static bool parse_item(json_t *obj, size_t index, const char *name, dataplane_status *st,
                       diag_list *diags)
{
    bool ok = true;
    if (!json_is_object(obj)) {
        bad(diags, name, index, "", "expected an object, got %s", json_type_name(obj));
        return false;
    }
    ok &= get_string(obj, "mesh", &st->mesh, true, diags, name, index, "mesh");
    ok &= get_string(obj, "name", &st->name, true, diags, name, index, "name");

    json_t *tags = json_object_get(obj, "tags");
    if (tags && !json_is_null(tags)) {
        if (!json_is_object(tags)) {
            bad(diags, name, index, "tags", "expected an object, got %s", json_type_name(tags));
            ok = false;
        } else {
            size_t n = json_object_size(tags);
            st->tags = calloc(n ? n : 1, sizeof *st->tags);
            if (!st->tags)
                return out_of_memory(diags, name);
            const char *key;
            json_t *value;
            json_object_foreach(tags, key, value) {
                if (!json_is_string(value)) {
                    char field[96];
                    snprintf(field, sizeof field, "tags.%s", key);
                    bad(diags, name, index, field, "expected a string, got %s", json_type_name(value));
                    ok = false;
                    continue;
                }
                model_tag *t = &st->tags[st->ntags++];
                if (!copy_string(&t->key, key) || !copy_string(&t->value, json_string_value(value)))
                    return out_of_memory(diags, name);
            }
        }
    }

    json_t *mtls = json_object_get(obj, "mtls");
    if (!mtls || json_is_null(mtls))
        return ok;   /* a dataplane that never acknowledged anything */
    if (!json_is_object(mtls)) {
        bad(diags, name, index, "mtls", "expected an object, got %s", json_type_name(mtls));
        return false;
    }
    ok &= get_string(mtls, "issuedBackend", &st->issued_backend, false, diags, name, index,
                     "mtls.issuedBackend");
    json_t *sup = json_object_get(mtls, "supportedBackends");
    if (sup && !json_is_null(sup)) {
        if (!json_is_array(sup)) {
            bad(diags, name, index, "mtls.supportedBackends", "expected an array, got %s",
                json_type_name(sup));
            ok = false;
        } else {
            size_t n = json_array_size(sup);
            st->supported_backends = calloc(n ? n : 1, sizeof *st->supported_backends);
            if (!st->supported_backends)
                return out_of_memory(diags, name);
            for (size_t i = 0; i < n; i++) {
                json_t *b = json_array_get(sup, i);
                if (!json_is_string(b)) {
                    char field[64];
                    snprintf(field, sizeof field, "mtls.supportedBackends[%zu]", i);
                    bad(diags, name, index, field, "expected a string, got %s", json_type_name(b));
                    ok = false;
                    continue;
                }
                if (!copy_string(&st->supported_backends[st->nsupported++], json_string_value(b)))
                    return out_of_memory(diags, name);
            }
        }
    }
    ok &= get_string(mtls, "certificateSerial", &st->certificate_serial, false, diags, name, index,
                     "mtls.certificateSerial");
    ok &= get_string(mtls, "certificateExpirationTime", &st->certificate_expiration_time, false, diags,
                     name, index, "mtls.certificateExpirationTime");
    ok &= get_string(mtls, "lastCertificateRegeneration", &st->last_certificate_regeneration, false,
                     diags, name, index, "mtls.lastCertificateRegeneration");
    ok &= get_int(mtls, "certificateRegenerations", &st->certificate_regenerations, diags, name, index,
                  "mtls.certificateRegenerations");
    ok &= get_int(mtls, "generation", &st->generation, diags, name, index, "mtls.generation");
    ok &= get_int(mtls, "acknowledgedGeneration", &st->acknowledged_generation, diags, name, index,
                  "mtls.acknowledgedGeneration");
    ok &= get_string(mtls, "lastSeen", &st->last_seen, false, diags, name, index, "mtls.lastSeen");
    return ok;
}

/* The whole document as one jansson tree: what the streaming reader falls back to for any
 * document it does not take, so every syntax error keeps jansson's message and position. */
static int parse_document(const char *name, const char *data, size_t len, status_set *ret_set,
                          diag_list *diags)
{
    json_error_t err;
    source_mark mark = {name, 0, 0};
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        source_mark at = {name, (unsigned)(err.line > 0 ? err.line : 0),
                          (unsigned)(err.column > 0 ? err.column : 0)};
        diag_error(diags, "bad-status", &at, "", "not valid JSON: %s", err.text);
        return -1;
    }
    json_t *items = root;
    if (json_is_object(root)) {
        items = json_object_get(root, "items");
        if (!items) {
            diag_error(diags, "bad-status", &mark, "items",
                       "expected a JSON array of dataplane status, or an object with \"items\"");
            json_decref(root);
            return -1;
        }
    }
    if (!json_is_array(items)) {
        diag_error(diags, "bad-status", &mark, json_is_object(root) ? "items" : "",
                   "expected an array, got %s", json_type_name(items));
        json_decref(root);
        return -1;
    }

    status_set set = STATUS_SET_INIT;
    bool ok = true;
    size_t index;
    json_t *item;
    json_array_foreach(items, index, item) {
        dataplane_status st;
        memset(&st, 0, sizeof st);
        if (parse_item(item, index, name, &st, diags)) {
            if (status_set_append(&set, &st) < 0)
                ok = out_of_memory(diags, name);
        } else {
            dataplane_status_clear(&st);
            ok = false;
        }
    }
    json_decref(root);
    if (!ok) {
        status_set_free(&set);
        return -1;
    }
    *ret_set = set;
    return 0;
}

/*
 * The streaming reader: the items of the array are parsed one at a time with jansson (each a
 * small tree, freed at once) instead of one tree for the whole document. perf on a
 * 100,000-dataplane status: the whole tree was ~2.5 KiB per dataplane, and freeing it before the
 * next large allocation made malloc_consolidate and page faults ~45 % of validate. It takes the
 * common shape only: an array of objects, or an object whose other members are any JSON values;
 * anything else (a syntax error, a duplicate key, an item that is not an object) returns
 * STREAM_FALLBACK, and the caller reparses with parse_document, which says what is wrong.
 */
enum { STREAM_OK = 0, STREAM_INVALID = -1, STREAM_FALLBACK = 1 };

/* Root members other than "items" tracked for duplicates; more than this falls back. */
#define STREAM_MAX_ROOT_KEYS 32

static size_t skip_ws(const char *data, size_t len, size_t pos)
{
    while (pos < len && (data[pos] == ' ' || data[pos] == '\t' || data[pos] == '\n' || data[pos] == '\r'))
        pos++;
    return pos;
}

/* One JSON value at data[pos]: *ret_end is just past it. NULL when it does not parse. */
static json_t *load_value(const char *data, size_t len, size_t pos, size_t *ret_end)
{
    json_error_t err;
    json_t *v = json_loadb(data + pos, len - pos,
                           JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);

    if (!v)
        return NULL;
    /* A scalar's end is found by reading one character past it: only containers and strings
     * end on their own last character, so only they give an exact position. */
    if (!json_is_object(v) && !json_is_array(v) && !json_is_string(v)) {
        json_decref(v);
        return NULL;
    }
    *ret_end = pos + (size_t)err.position;
    return v;
}

/* The items array starting at data[pos] ('['): each object item parsed into `set`, semantic
 * problems into `diags` as parse_document reports them. */
static int stream_items(const char *name, const char *data, size_t len, size_t pos,
                        size_t *ret_end, status_set *set, diag_list *diags, bool *ok)
{
    size_t index = 0;

    pos = skip_ws(data, len, pos + 1);
    if (pos < len && data[pos] == ']') {
        *ret_end = pos + 1;
        return STREAM_OK;
    }
    for (;;) {
        size_t end;
        json_t *item;
        dataplane_status st;

        if (pos >= len || data[pos] != '{' || !(item = load_value(data, len, pos, &end)))
            return STREAM_FALLBACK;
        memset(&st, 0, sizeof st);
        if (parse_item(item, index, name, &st, diags)) {
            if (status_set_append(set, &st) < 0)
                *ok = out_of_memory(diags, name);
        } else {
            dataplane_status_clear(&st);
            *ok = false;
        }
        json_decref(item);
        index++;
        pos = skip_ws(data, len, end);
        if (pos < len && data[pos] == ',') {
            pos = skip_ws(data, len, pos + 1);
            continue;
        }
        if (pos < len && data[pos] == ']') {
            *ret_end = pos + 1;
            return STREAM_OK;
        }
        return STREAM_FALLBACK;
    }
}

/* {"items": [...], ...}: the other members parsed and dropped, keys checked for duplicates. */
static int stream_root_object(const char *name, const char *data, size_t len, size_t pos,
                              size_t *ret_end, status_set *set, diag_list *diags, bool *ok)
{
    json_t *keys[STREAM_MAX_ROOT_KEYS];
    size_t nkeys = 0;
    bool have_items = false;
    int r = STREAM_FALLBACK;

    pos = skip_ws(data, len, pos + 1);
    if (pos < len && data[pos] == '}')
        goto out;   /* no "items": parse_document reports it */
    for (;;) {
        size_t end;
        json_t *key;

        if (pos >= len || data[pos] != '"' || nkeys == STREAM_MAX_ROOT_KEYS ||
            !(key = load_value(data, len, pos, &end)))
            goto out;
        for (size_t i = 0; i < nkeys; i++)
            if (json_equal(keys[i], key)) {
                json_decref(key);
                goto out;
            }
        keys[nkeys++] = key;
        pos = skip_ws(data, len, end);
        if (pos >= len || data[pos] != ':')
            goto out;
        pos = skip_ws(data, len, pos + 1);
        if (strcmp(json_string_value(key), "items") == 0 && json_string_length(key) == 5) {
            if (pos >= len || data[pos] != '[' ||
                stream_items(name, data, len, pos, &end, set, diags, ok) != STREAM_OK)
                goto out;
            have_items = true;
        } else {
            json_t *v;

            if (pos >= len || (data[pos] != '{' && data[pos] != '[' && data[pos] != '"') ||
                !(v = load_value(data, len, pos, &end)))
                goto out;
            json_decref(v);
        }
        pos = skip_ws(data, len, end);
        if (pos < len && data[pos] == ',') {
            pos = skip_ws(data, len, pos + 1);
            continue;
        }
        if (pos < len && data[pos] == '}' && have_items) {
            *ret_end = pos + 1;
            r = STREAM_OK;
        }
        goto out;
    }
out:
    for (size_t i = 0; i < nkeys; i++)
        json_decref(keys[i]);
    return r;
}

int status_parse_json(const char *name, const char *data, size_t len, status_set *ret_set,
                      diag_list *diags)
{
    source_mark mark = {name, 0, 0};
    status_set set = STATUS_SET_INIT;
    diag_list found = DIAG_LIST_INIT;
    bool ok = true;
    size_t pos, end = 0;
    int r = STREAM_FALLBACK;

    if (len > STATUS_MAX_FILE_BYTES) {
        diag_error(diags, "bad-status", &mark, "", "status file larger than %u bytes",
                   STATUS_MAX_FILE_BYTES);
        return -1;
    }
    /* A UTF-8 byte order mark or anything jansson reads differently: parse_document decides. */
    pos = skip_ws(data, len, 0);
    if (pos < len && data[pos] == '[')
        r = stream_items(name, data, len, pos, &end, &set, &found, &ok);
    else if (pos < len && data[pos] == '{')
        r = stream_root_object(name, data, len, pos, &end, &set, &found, &ok);
    if (r == STREAM_OK && skip_ws(data, len, end) != len)
        r = STREAM_FALLBACK;   /* trailing data */
    if (r != STREAM_OK) {
        /* Items read before a syntax error must not report anything: the whole document is
         * invalid JSON, which is all parse_document says. */
        status_set_free(&set);
        diag_list_free(&found);
        return parse_document(name, data, len, ret_set, diags);
    }
    diag_list_move(diags, &found);
    diag_list_free(&found);
    if (!ok) {
        status_set_free(&set);
        return -1;
    }
    *ret_set = set;
    return 0;
}

int status_load_file(const char *path, status_set *ret_set, diag_list *diags)
{
    source_mark mark = {path, 0, 0};
    FILE *f = stdin;
    if (strcmp(path, "-") != 0) {
        /* Not fopen(): a FIFO given as the status file would block the open forever. */
        struct stat st;
        char err[MESHCA_ERRBUF];
        int fd = manifest_open_regular(path, &st, err);
        if (fd < 0 || !(f = fdopen(fd, "rb"))) {
            if (fd >= 0) {
                snprintf(err, sizeof(err), "%s", strerror(errno));
                close(fd);
            }
            diag_error(diags, "unreadable", &mark, "", "cannot read status file '%s': %s", path, err);
            return -2;
        }
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        goto oom;
    for (;;) {
        if (len == cap) {
            if (cap >= STATUS_MAX_FILE_BYTES + 1u)
                break;
            cap *= 2;
            char *nbuf = realloc(buf, cap);
            if (!nbuf)
                goto oom;
            buf = nbuf;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    bool failed = ferror(f);
    if (f != stdin)
        fclose(f);
    if (failed) {
        free(buf);
        diag_error(diags, "unreadable", &mark, "", "cannot read status file");
        return -2;
    }
    int r = status_parse_json(path, buf, len, ret_set, diags);
    free(buf);
    return r;
oom:
    free(buf);
    if (f != stdin)
        fclose(f);
    diag_error(diags, "out-of-memory", &mark, "", "out of memory while reading the status file");
    diags->out_of_memory = true;
    return -2;
}

char *status_to_json(const dataplane_status *st)
{
    json_t *obj = json_object();
    json_object_set_new(obj, "mesh", json_string(st->mesh ? st->mesh : ""));
    json_object_set_new(obj, "name", json_string(st->name ? st->name : ""));
    json_t *tags = json_object();
    for (size_t i = 0; i < st->ntags; i++)
        json_object_set_new(tags, st->tags[i].key, json_string(st->tags[i].value));
    json_object_set_new(obj, "tags", tags);

    json_t *mtls = json_object();
    json_object_set_new(mtls, "issuedBackend",
                        st->issued_backend ? json_string(st->issued_backend) : json_null());
    json_t *sup = json_array();
    for (size_t i = 0; i < st->nsupported; i++)
        json_array_append_new(sup, json_string(st->supported_backends[i]));
    json_object_set_new(mtls, "supportedBackends", sup);
#define OPT_STRING(key, field) \
    json_object_set_new(mtls, key, (field) ? json_string(field) : json_null())
    OPT_STRING("certificateSerial", st->certificate_serial);
    OPT_STRING("certificateExpirationTime", st->certificate_expiration_time);
    OPT_STRING("lastCertificateRegeneration", st->last_certificate_regeneration);
    json_object_set_new(mtls, "certificateRegenerations", json_integer(st->certificate_regenerations));
    json_object_set_new(mtls, "generation", json_integer(st->generation));
    json_object_set_new(mtls, "acknowledgedGeneration", json_integer(st->acknowledged_generation));
    OPT_STRING("lastSeen", st->last_seen);
#undef OPT_STRING
    json_object_set_new(obj, "mtls", mtls);

    /* jansson refuses a NULL value, so an allocation that failed above makes this NULL too. */
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    return text;
}

bool status_supports(const dataplane_status *st, const char *backend)
{
    if (!st || !backend)
        return false;
    for (size_t i = 0; i < st->nsupported; i++)
        if (strcmp(st->supported_backends[i], backend) == 0)
            return true;
    return false;
}

void dataplane_status_clear(dataplane_status *st)
{
    if (!st)
        return;
    free(st->mesh);
    free(st->name);
    for (size_t i = 0; i < st->ntags; i++) {
        free(st->tags[i].key);
        free(st->tags[i].value);
    }
    free(st->tags);
    free(st->issued_backend);
    for (size_t i = 0; i < st->nsupported; i++)
        free(st->supported_backends[i]);
    free(st->supported_backends);
    free(st->certificate_serial);
    free(st->certificate_expiration_time);
    free(st->last_certificate_regeneration);
    free(st->last_seen);
    memset(st, 0, sizeof *st);
}

int dataplane_status_copy(dataplane_status *dst, const dataplane_status *src)
{
    bool ok = true;
    memset(dst, 0, sizeof *dst);
    ok &= copy_string(&dst->mesh, src->mesh);
    ok &= copy_string(&dst->name, src->name);
    if (ok && src->ntags) {
        dst->tags = calloc(src->ntags, sizeof *dst->tags);
        ok = dst->tags != NULL;
        for (size_t i = 0; ok && i < src->ntags; i++) {
            dst->ntags = i + 1;   /* so that clearing frees what was copied */
            ok = copy_string(&dst->tags[i].key, src->tags[i].key) &&
                 copy_string(&dst->tags[i].value, src->tags[i].value);
        }
    }
    ok = ok && copy_string(&dst->issued_backend, src->issued_backend);
    if (ok && src->nsupported) {
        dst->supported_backends = calloc(src->nsupported, sizeof *dst->supported_backends);
        ok = dst->supported_backends != NULL;
        for (size_t i = 0; ok && i < src->nsupported; i++) {
            dst->nsupported = i + 1;
            ok = copy_string(&dst->supported_backends[i], src->supported_backends[i]);
        }
    }
    ok = ok && copy_string(&dst->certificate_serial, src->certificate_serial) &&
         copy_string(&dst->certificate_expiration_time, src->certificate_expiration_time) &&
         copy_string(&dst->last_certificate_regeneration, src->last_certificate_regeneration) &&
         copy_string(&dst->last_seen, src->last_seen);
    dst->certificate_regenerations = src->certificate_regenerations;
    dst->generation = src->generation;
    dst->acknowledged_generation = src->acknowledged_generation;
    if (!ok) {
        dataplane_status_clear(dst);
        return MESHCA_ENOMEM;
    }
    return 0;
}

int status_set_append(status_set *set, dataplane_status *st)
{
    if (set->count == set->capacity) {
        size_t cap = set->capacity ? set->capacity * 2 : 16;
        dataplane_status *items = realloc(set->items, cap * sizeof *items);
        if (!items) {
            dataplane_status_clear(st);
            return MESHCA_ENOMEM;
        }
        set->items = items;
        set->capacity = cap;
    }
    set->items[set->count++] = *st;
    memset(st, 0, sizeof *st);
    return 0;
}

void status_set_free(status_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->count; i++)
        dataplane_status_clear(&set->items[i]);
    free(set->items);
    set->items = NULL;
    set->count = set->capacity = 0;
}

static int compare_status_name(const void *a, const void *b)
{
    const dataplane_status *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

int status_index_build(const dataplane_status *status, size_t n, const char *mesh_name,
                       status_index *ret)
{
    const dataplane_status **items = calloc(n ? n : 1, sizeof(*items));
    size_t count = 0;
    if (!items)
        return MESHCA_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (status[i].name && status[i].mesh && mesh_name && strcmp(status[i].mesh, mesh_name) == 0)
            items[count++] = &status[i];
    /* Stable order for equal names is not needed: find returns the first of a run. */
    qsort(items, count, sizeof(*items), compare_status_name);
    ret->items = items;
    ret->count = count;
    return 0;
}

const dataplane_status *const *status_index_find(const status_index *idx, const char *name)
{
    dataplane_status key = {.name = (char *)name};
    const dataplane_status *kp = &key;
    const dataplane_status **hit;
    if (!idx || !name || idx->count == 0)
        return NULL;
    hit = bsearch(&kp, idx->items, idx->count, sizeof(*idx->items), compare_status_name);
    while (hit && hit > idx->items && strcmp(hit[-1]->name, name) == 0)
        hit--;
    return hit;
}

void status_index_free(status_index *idx)
{
    if (!idx)
        return;
    free(idx->items);
    idx->items = NULL;
    idx->count = 0;
}
