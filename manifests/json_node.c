/* json_node.c - one-line JSON (the store's objects) to the mnode tree libyaml would give, or declined. */
#include "manifests/json_node.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "manifests/manifest.h"
#include "manifests/utf8.h"

/* libyaml stops seeing a key as one when its ':' is more than 1024 characters after the key's
 * start (yaml_parser_stale_simple_keys) and then reports a syntax error; declining from 1,000
 * bytes on keeps clear of that (a span has at least as many bytes as characters). */
#define JSON_NODE_MAX_KEY_SPAN 1000

/* Pairwise comparison below this many keys, sorting from it on (a map may be huge). */
#define JSON_NODE_SORT_KEYS 16

typedef struct parser {
    const char *name;
    const unsigned char *p, *end;
    unsigned column;   /* of *p, 1-based, in characters as libyaml counts them */
    int rc;            /* JSON_NODE_DECLINED or MESHCA_ENOMEM once a call returned NULL */
} parser;

static mnode *decline(parser *ps)
{
    ps->rc = JSON_NODE_DECLINED;
    return NULL;
}

static mnode *oom(parser *ps)
{
    ps->rc = MESHCA_ENOMEM;
    return NULL;
}

static source_mark mark_here(const parser *ps)
{
    return (source_mark){ps->name, 1, ps->column};
}

static void advance(parser *ps, size_t bytes)
{
    ps->p += bytes;
    ps->column += (unsigned)bytes;
}

/* Only spaces: a line break or a tab before the end of the root is declined, so every mark is
 * on line 1 and no YAML indentation or simple-key rule can differ from JSON's reading. */
static void skip_spaces(parser *ps)
{
    while (ps->p < ps->end && *ps->p == ' ')
        advance(ps, 1);
}

/*
 * Length of the UTF-8 character at p that a YAML double-quoted scalar keeps as itself, or 0 to
 * decline: invalid or overlong UTF-8 and surrogates (libyaml's reader refuses them), C1 controls
 * and U+FFFE/U+FFFF (not printable for libyaml), U+0085, U+2028 and U+2029 (libyaml reads them
 * as line breaks and folds them) and U+FEFF (a byte order mark to libyaml in places).
 */
static size_t utf8_char(const unsigned char *p, const unsigned char *end)
{
    uint32_t v;
    size_t n = utf8_decode(p, (size_t)(end - p), &v);
    if (!n || v < 0xA0 || v == 0x2028 || v == 0x2029 || v == 0xFEFF || v == 0xFFFE || v == 0xFFFF)
        return 0;
    return n;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The code point of the \uXXXX at p (p[0] is 'u'), or -1 when the escape is not four hex digits
 * or names a surrogate (libyaml refuses a surrogate escape; JSON would pair it). */
static long unicode_escape(const unsigned char *p, const unsigned char *end)
{
    long v = 0;
    if (end - p < 5)
        return -1;
    for (int i = 1; i <= 4; i++) {
        int h = hex_value(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v >= 0xD800 && v <= 0xDFFF ? -1 : v;
}

static size_t utf8_put(unsigned char *out, long v)
{
    if (v < 0x80) {
        out[0] = (unsigned char)v;
        return 1;
    }
    if (v < 0x800) {
        out[0] = (unsigned char)(0xC0 | (v >> 6));
        out[1] = (unsigned char)(0x80 | (v & 0x3F));
        return 2;
    }
    out[0] = (unsigned char)(0xE0 | (v >> 12));
    out[1] = (unsigned char)(0x80 | ((v >> 6) & 0x3F));
    out[2] = (unsigned char)(0x80 | (v & 0x3F));
    return 3;
}

/* The single-character escapes JSON and YAML double-quoted scalars share, decoded; 0 when none. */
static unsigned char simple_escape(unsigned char c)
{
    switch (c) {
    case '"':
    case '\\':
    case '/':
        return c;
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    default:
        return 0;
    }
}

/* Decodes the validated body of a string with escapes into out. */
static void unescape(const unsigned char *p, const unsigned char *end, unsigned char *out)
{
    while (p < end) {
        if (*p != '\\') {
            *out++ = *p++;
        } else if (p[1] == 'u') {
            out += utf8_put(out, unicode_escape(p + 1, end));
            p += 6;
        } else {
            *out++ = simple_escape(p[1]);
            p += 2;
        }
    }
}

/* A JSON string as a double-quoted YAML scalar: MNODE_QUOTED, marked at its opening quote. */
static mnode *parse_string(parser *ps)
{
    source_mark m = mark_here(ps);
    advance(ps, 1);
    const unsigned char *body = ps->p;
    size_t out_len = 0;
    bool escaped = false;
    /* First the extent, validity and decoded length; then one allocation of the right size. */
    for (;;) {
        if (ps->p >= ps->end)
            return decline(ps);
        unsigned char c = *ps->p;
        if (c == '"')
            break;
        if (c == '\\') {
            if (ps->end - ps->p < 2)
                return decline(ps);
            if (ps->p[1] == 'u') {
                long v = unicode_escape(ps->p + 1, ps->end);
                if (v < 0)
                    return decline(ps);
                out_len += v < 0x80 ? 1 : v < 0x800 ? 2 : 3;
                advance(ps, 6);
            } else {
                if (!simple_escape(ps->p[1]))
                    return decline(ps);
                out_len++;
                advance(ps, 2);
            }
            escaped = true;
        } else if (c < 0x20 || c == 0x7F) {
            return decline(ps);   /* not JSON; libyaml refuses most, folds the rest */
        } else if (c < 0x80) {
            out_len++;
            advance(ps, 1);
        } else {
            size_t n = utf8_char(ps->p, ps->end);
            if (!n)
                return decline(ps);
            out_len += n;
            ps->p += n;
            ps->column++;   /* one character */
        }
    }
    const unsigned char *body_end = ps->p;
    advance(ps, 1);
    if (out_len > MANIFEST_MAX_SCALAR_BYTES)
        return decline(ps);   /* the YAML decoder reports scalar-too-long */
    mnode *n = calloc(1, sizeof(*n));
    char *text = malloc(out_len + 1);
    if (!n || !text) {
        free(n);
        free(text);
        return oom(ps);
    }
    if (escaped)
        unescape(body, body_end, (unsigned char *)text);
    else if (out_len)
        memcpy(text, body, out_len);
    text[out_len] = '\0';
    n->kind = MNODE_SCALAR;
    n->mark = m;
    n->scalar = text;
    n->scalar_len = out_len;
    n->style = MNODE_QUOTED;
    return n;
}

static bool is_digit(const parser *ps)
{
    return ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9';
}

static void skip_digits(parser *ps)
{
    while (is_digit(ps))
        advance(ps, 1);
}

/* A JSON number, kept as the plain scalar YAML reads: its text. */
static mnode *parse_number(parser *ps)
{
    source_mark m = mark_here(ps);
    const unsigned char *start = ps->p;
    if (*ps->p == '-')
        advance(ps, 1);
    if (!is_digit(ps))
        return decline(ps);
    if (*ps->p == '0')
        advance(ps, 1);
    else
        skip_digits(ps);
    if (ps->p < ps->end && *ps->p == '.') {
        advance(ps, 1);
        if (!is_digit(ps))
            return decline(ps);
        skip_digits(ps);
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        advance(ps, 1);
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
            advance(ps, 1);
        if (!is_digit(ps))
            return decline(ps);
        skip_digits(ps);
    }
    if ((size_t)(ps->p - start) > MANIFEST_MAX_SCALAR_BYTES)
        return decline(ps);   /* the YAML decoder reports scalar-too-long */
    /* What follows must end the plain scalar for YAML as for JSON; the caller checks it is a
     * space, ',', '}' or ']', which it is for both. */
    mnode *n = mnode_new_scalar((const char *)start, (size_t)(ps->p - start), MNODE_PLAIN, m);
    return n ? n : oom(ps);
}

static mnode *parse_literal(parser *ps)
{
    static const char *const words[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++) {
        size_t len = strlen(words[i]);
        if ((size_t)(ps->end - ps->p) >= len && memcmp(ps->p, words[i], len) == 0) {
            source_mark m = mark_here(ps);
            advance(ps, len);
            mnode *n = mnode_new_scalar(words[i], len, MNODE_PLAIN, m);
            return n ? n : oom(ps);
        }
    }
    return decline(ps);
}

static int key_cmp(const void *a, const void *b)
{
    const mnode *x = *(const mnode *const *)a, *y = *(const mnode *const *)b;
    if (x->scalar_len != y->scalar_len)
        return x->scalar_len < y->scalar_len ? -1 : 1;
    return memcmp(x->scalar, y->scalar, x->scalar_len);
}

static bool same_key(const mnode *a, const mnode *b)
{
    return a->scalar_len == b->scalar_len && memcmp(a->scalar, b->scalar, a->scalar_len) == 0;
}

/* 1 when two keys are equal (the YAML decoder reports duplicate-key), 0 when not, or
 * MESHCA_ENOMEM. */
static int has_duplicate_keys(const mnode *map)
{
    size_t n = map->npairs;
    if (n < JSON_NODE_SORT_KEYS) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (same_key(map->pairs[i].key, map->pairs[j].key))
                    return 1;
        return 0;
    }
    const mnode **keys = malloc(n * sizeof(*keys));
    if (!keys)
        return MESHCA_ENOMEM;
    for (size_t i = 0; i < n; i++)
        keys[i] = map->pairs[i].key;
    qsort(keys, n, sizeof(*keys), key_cmp);
    int dup = 0;
    for (size_t i = 1; i < n && !dup; i++)
        dup = same_key(keys[i - 1], keys[i]);
    free(keys);
    return dup;
}

static mnode *parse_value(parser *ps, unsigned depth);

/* After an item: skips spaces and consumes ',' (returns 1) or `close` (returns 0); anything
 * else declines (-1). */
static int next_item(parser *ps, unsigned char close)
{
    skip_spaces(ps);
    if (ps->p < ps->end && *ps->p == ',') {
        advance(ps, 1);
        return 1;
    }
    if (ps->p < ps->end && *ps->p == close) {
        advance(ps, 1);
        return 0;
    }
    return -1;
}

/* Whether the collection opened at ps->p is empty; consumes the opening and, if empty, the
 * closing bracket. */
static bool open_collection(parser *ps, unsigned char close)
{
    advance(ps, 1);
    skip_spaces(ps);
    if (ps->p < ps->end && *ps->p == close) {
        advance(ps, 1);
        return true;
    }
    return false;
}

static mnode *parse_object(parser *ps, unsigned depth)
{
    mnode *map = mnode_new_map(mark_here(ps));
    if (!map)
        return oom(ps);
    int more = open_collection(ps, '}') ? 0 : 1;
    while (more == 1) {
        skip_spaces(ps);
        if (ps->p >= ps->end || *ps->p != '"')
            goto declined;
        const unsigned char *key_start = ps->p;
        mnode *key = parse_string(ps);
        if (!key)
            goto failed;
        skip_spaces(ps);
        if (ps->p >= ps->end || *ps->p != ':' || ps->p - key_start >= JSON_NODE_MAX_KEY_SPAN) {
            mnode_free(key);
            goto declined;
        }
        advance(ps, 1);
        mnode *value = parse_value(ps, depth + 1);
        if (!value) {
            mnode_free(key);
            goto failed;
        }
        if (mnode_map_append(map, key, value) < 0) {
            mnode_free(map);
            return oom(ps);
        }
        more = next_item(ps, '}');
    }
    if (more < 0)
        goto declined;
    int dup = has_duplicate_keys(map);
    if (dup < 0) {
        mnode_free(map);
        return oom(ps);
    }
    if (dup)
        goto declined;
    return map;
declined:
    ps->rc = JSON_NODE_DECLINED;
failed:
    mnode_free(map);
    return NULL;
}

static mnode *parse_array(parser *ps, unsigned depth)
{
    mnode *seq = mnode_new_seq(mark_here(ps));
    if (!seq)
        return oom(ps);
    int more = open_collection(ps, ']') ? 0 : 1;
    while (more == 1) {
        mnode *item = parse_value(ps, depth + 1);
        if (!item) {
            mnode_free(seq);
            return NULL;
        }
        if (mnode_seq_append(seq, item) < 0) {
            mnode_free(seq);
            return oom(ps);
        }
        more = next_item(ps, ']');
    }
    if (more < 0) {
        mnode_free(seq);
        return decline(ps);
    }
    return seq;
}

/* `depth` as the YAML decoder counts it: 1 for the root. */
static mnode *parse_value(parser *ps, unsigned depth)
{
    skip_spaces(ps);
    if (ps->p >= ps->end)
        return decline(ps);
    switch (*ps->p) {
    case '{':
    case '[':
        /* The YAML decoder refuses a collection deeper than the limit (too-deep); one level
         * less here keeps well clear of an off-by-one between the two counts. */
        if (depth >= MANIFEST_MAX_DEPTH)
            return decline(ps);
        return *ps->p == '{' ? parse_object(ps, depth) : parse_array(ps, depth);
    case '"':
        return parse_string(ps);
    case 't':
    case 'f':
    case 'n':
        return parse_literal(ps);
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
            return parse_number(ps);
        return decline(ps);
    }
}

int json_node_parse(const char *name, const char *data, size_t len, mnode **ret)
{
    parser ps = {name, (const unsigned char *)data, (const unsigned char *)data + len, 1, 0};
    if (len > MANIFEST_MAX_FILE_BYTES)
        return JSON_NODE_DECLINED;   /* the YAML decoder reports too-large */
    skip_spaces(&ps);
    if (ps.p >= ps.end || *ps.p != '{')
        return JSON_NODE_DECLINED;
    mnode *root = parse_value(&ps, 1);
    if (!root)
        return ps.rc;
    /* After the root, line breaks too: YAML then sees the end of the stream. */
    while (ps.p < ps.end && (*ps.p == ' ' || *ps.p == '\n'))
        ps.p++;
    if (ps.p != ps.end) {
        mnode_free(root);
        return JSON_NODE_DECLINED;
    }
    *ret = root;
    return 0;
}
