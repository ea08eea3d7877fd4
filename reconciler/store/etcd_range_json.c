/* etcd_range_json.c - reads etcd's JSON answer to a range (header revision, kvs, more, count)
 * without building a JSON tree: jansson's tree of every page was most of meshca's CPU in a
 * no-op pass on etcd (doc/performance.md, "On etcd"). */
#include "reconciler/store/etcd_range_json.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/store/json_scan.h"

/* Nesting of the values skipped (etcd's answers nest 2 deep; anything deeper is not ours). */
#define SKIP_DEPTH_MAX 16

int etcd_b64_decode(const char *s, size_t n, char **ret, size_t *ret_len)
{
    size_t pad = 0;
    char *out;
    int got;

    if (n % 4 != 0 || n > (size_t)INT32_MAX)
        return -1;
    out = malloc(n / 4 * 3 + 1);
    if (!out)
        return ETCD_ENOMEM;
    if (n > 0) {
        got = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
        if (got < 0) {
            free(out);
            return -1;
        }
        /* EVP_DecodeBlock counts the zero bytes the padding stands for: take them off. */
        pad = (s[n - 1] == '=') + (s[n - 2] == '=');
        n = (size_t)got - pad;
    }
    out[n] = '\0';
    *ret = out;
    *ret_len = n;
    return 0;
}

/* A string without escapes at s->p: its content [*ret, *ret + *ret_len). Base64 and member
 * names never hold one; an escape sends the answer to the JSON reader. */
static int plain_string(json_scan *s, const char **ret, size_t *ret_len)
{
    const char *q;

    json_scan_ws(s);
    if (s->p >= s->end || *s->p != '"')
        return -1;
    q = memchr(s->p + 1, '"', (size_t)(s->end - s->p - 1));
    if (!q || memchr(s->p + 1, '\\', (size_t)(q - s->p - 1)))
        return -1;
    *ret = s->p + 1;
    *ret_len = (size_t)(q - s->p - 1);
    s->p = q + 1;
    return 0;
}

/* An int64 as etcd writes it: a string of digits (jsonpb) or a bare integer. */
static int number(json_scan *s, int64_t *ret)
{
    long long v;
    int quoted;

    json_scan_ws(s);
    quoted = s->p < s->end && *s->p == '"';
    s->p += quoted;
    if (!json_scan_integer(s, &v))
        return -1;
    if (quoted) {
        if (s->p >= s->end || *s->p != '"')
            return -1;
        s->p++;
    }
    *ret = v;
    return 0;
}

static int skip_value(json_scan *s, int depth);

/* The members or elements of a container whose opening character was read. */
static int skip_container(json_scan *s, char close, int depth)
{
    json_scan_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 0;
    }
    for (;;) {
        if (close == '}') {
            const char *name;
            size_t len;

            if (plain_string(s, &name, &len) < 0 || !json_scan_colon(s))
                return -1;
        }
        if (skip_value(s, depth + 1) < 0)
            return -1;
        switch (json_scan_next(s, close)) {
        case 1:
            continue;
        case 0:
            return 0;
        default:
            return -1;
        }
    }
}

static int skip_value(json_scan *s, int depth)
{
    const char *name;
    size_t len;
    long long v;

    if (depth > SKIP_DEPTH_MAX)
        return -1;
    json_scan_ws(s);
    if (s->p >= s->end)
        return -1;
    switch (*s->p) {
    case '"':
        return plain_string(s, &name, &len);
    case '{':
    case '[':
        s->p++;
        return skip_container(s, s->p[-1] == '{' ? '}' : ']', depth);
    case 't':
        return json_scan_literal(s, "true") ? 0 : -1;
    case 'f':
        return json_scan_literal(s, "false") ? 0 : -1;
    case 'n':
        return json_scan_literal(s, "null") ? 0 : -1;
    default:
        return json_scan_integer(s, &v) ? 0 : -1; /* etcd writes no real numbers */
    }
}

/* Calls member(s, name, len, ud) for each member of the object at s->p. */
static int members(json_scan *s, int (*member)(json_scan *, const char *, size_t, void *),
                   void *ud)
{
    json_scan_ws(s);
    if (s->p >= s->end || *s->p != '{')
        return -1;
    s->p++;
    json_scan_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        const char *name;
        size_t len;
        int r;

        if (plain_string(s, &name, &len) < 0 || !json_scan_colon(s))
            return -1;
        r = member(s, name, len, ud);
        if (r < 0)
            return r;
        switch (json_scan_next(s, '}')) {
        case 1:
            continue;
        case 0:
            return 0;
        default:
            return -1;
        }
    }
}

static int is(const char *name, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(name, want, len) == 0;
}

static int header_member(json_scan *s, const char *name, size_t len, void *ud)
{
    return is(name, len, "revision") ? number(s, ud) : skip_value(s, 1);
}

static int b64_member(json_scan *s, char **out, size_t *out_len)
{
    const char *v;
    size_t n, old_len = *out_len;
    char *old = *out;
    int r;

    if (plain_string(s, &v, &n) < 0)
        return -1;
    r = etcd_b64_decode(v, n, out, out_len);
    if (r < 0)
        return r;
    if (old) {
        /* A member given twice: the last one counts, as in the JSON reader. */
        OPENSSL_cleanse(old, old_len);
        free(old);
    }
    return 0;
}

static int kv_member(json_scan *s, const char *name, size_t len, void *ud)
{
    etcd_kv *kv = ud;

    if (is(name, len, "key"))
        return b64_member(s, &kv->key, &kv->key_len);
    if (is(name, len, "value"))
        return b64_member(s, &kv->value, &kv->value_len);
    if (is(name, len, "create_revision"))
        return number(s, &kv->create_revision);
    if (is(name, len, "mod_revision"))
        return number(s, &kv->mod_revision);
    if (is(name, len, "version"))
        return number(s, &kv->version);
    if (is(name, len, "lease"))
        return number(s, &kv->lease);
    return skip_value(s, 2);
}

static void kv_clear(etcd_kv *kv)
{
    if (kv->value)
        OPENSSL_cleanse(kv->value, kv->value_len);
    free(kv->key);
    free(kv->value);
    memset(kv, 0, sizeof(*kv));
}

static int kvs_member(json_scan *s, etcd_range_sink *sink)
{
    json_scan_ws(s);
    if (s->p >= s->end || *s->p != '[')
        return -1;
    s->p++;
    json_scan_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    for (;;) {
        etcd_kv *kv;
        int r;

        if (sink->n == sink->cap) {
            size_t cap = sink->cap ? sink->cap * 2 : 256;
            etcd_kv *p = realloc(sink->kvs, cap * sizeof(*p));

            if (!p)
                return ETCD_ENOMEM;
            sink->kvs = p;
            sink->cap = cap;
        }
        kv = &sink->kvs[sink->n];
        memset(kv, 0, sizeof(*kv));
        r = members(s, kv_member, kv);
        if (r == 0 && !kv->key)
            r = -1; /* every kv has a key */
        if (r == 0 && !kv->value) {
            kv->value = calloc(1, 1); /* keys_only, or an empty value: "" as the JSON reader */
            if (!kv->value)
                r = ETCD_ENOMEM;
        }
        if (r < 0) {
            kv_clear(kv);
            return r;
        }
        sink->n++;
        switch (json_scan_next(s, ']')) {
        case 1:
            continue;
        case 0:
            return 0;
        default:
            return -1;
        }
    }
}

static int answer_member(json_scan *s, const char *name, size_t len, void *ud)
{
    etcd_range_sink *sink = ud;

    if (is(name, len, "header"))
        return members(s, header_member, &sink->revision);
    if (is(name, len, "kvs"))
        return kvs_member(s, sink);
    if (is(name, len, "count"))
        return number(s, &sink->count);
    if (is(name, len, "more")) {
        json_scan_ws(s);
        if (json_scan_literal(s, "true"))
            sink->more = 1;
        else if (json_scan_literal(s, "false"))
            sink->more = 0;
        else
            return -1;
        return 0;
    }
    return skip_value(s, 1); /* e.g. "error": an error answer has no header, refused below */
}

int etcd_range_json_read(const char *p, size_t len, etcd_range_sink *sink)
{
    json_scan s = {p, p + len};
    size_t first = sink->n;
    int r;

    sink->more = 0;
    sink->revision = -1;
    sink->count = 0;
    r = members(&s, answer_member, sink);
    json_scan_ws(&s);
    if (r == 0 && (s.p != s.end || sink->revision < 0))
        r = -1;
    if (r < 0) {
        while (sink->n > first)
            kv_clear(&sink->kvs[--sink->n]);
        return r;
    }
    return 0;
}
