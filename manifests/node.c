/* node.c - the generic document tree (mnode) and YAML 1.2 core-schema scalar interpretation. */
#include "manifests/node.h"

#include "manifests/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

mnode *mnode_new_scalar(const char *text, size_t len, mnode_style style, source_mark mark)
{
    mnode *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->kind = MNODE_SCALAR;
    n->mark = mark;
    n->style = style;
    n->scalar = malloc(len + 1);
    if (!n->scalar) {
        free(n);
        return NULL;
    }
    if (len)
        memcpy(n->scalar, text, len);
    n->scalar[len] = '\0';
    n->scalar_len = len;
    return n;
}

mnode *mnode_new_map(source_mark mark)
{
    mnode *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->kind = MNODE_MAP;
    n->mark = mark;
    return n;
}

mnode *mnode_new_seq(source_mark mark)
{
    mnode *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->kind = MNODE_SEQ;
    n->mark = mark;
    return n;
}

/* Capacity is not stored, so grow at powers of two (a count that is 0 or a power of two is full). */
static int is_full(size_t count)
{
    return count == 0 || (count & (count - 1)) == 0;
}

int mnode_map_append(mnode *map, mnode *key, mnode *value)
{
    if (is_full(map->npairs)) {
        size_t n = map->npairs ? map->npairs * 2 : 1;
        mnode_pair *p = realloc(map->pairs, n * sizeof(*p));
        if (!p) {
            mnode_free(key);
            mnode_free(value);
            return MESHCA_ENOMEM;
        }
        map->pairs = p;
    }
    map->pairs[map->npairs].key = key;
    map->pairs[map->npairs].value = value;
    map->npairs++;
    return 0;
}

int mnode_seq_append(mnode *seq, mnode *item)
{
    if (is_full(seq->nitems)) {
        size_t n = seq->nitems ? seq->nitems * 2 : 1;
        mnode **p = realloc(seq->items, n * sizeof(*p));
        if (!p) {
            mnode_free(item);
            return MESHCA_ENOMEM;
        }
        seq->items = p;
    }
    seq->items[seq->nitems++] = item;
    return 0;
}

mnode *mnode_clone(const mnode *node)
{
    if (!node)
        return NULL;
    mnode *c;
    switch (node->kind) {
    case MNODE_SCALAR:
        return mnode_new_scalar(node->scalar, node->scalar_len, node->style, node->mark);
    case MNODE_MAP:
        c = mnode_new_map(node->mark);
        if (!c)
            return NULL;
        for (size_t i = 0; i < node->npairs; i++) {
            mnode *k = mnode_clone(node->pairs[i].key), *v = mnode_clone(node->pairs[i].value);
            if (!k || (!v && node->pairs[i].value) || mnode_map_append(c, k, v) < 0) {
                /* map_append frees what it was given only when it fails; free the rest here. */
                if (!k || (!v && node->pairs[i].value)) {
                    mnode_free(k);
                    mnode_free(v);
                }
                mnode_free(c);
                return NULL;
            }
        }
        return c;
    case MNODE_SEQ:
    default:
        c = mnode_new_seq(node->mark);
        if (!c)
            return NULL;
        for (size_t i = 0; i < node->nitems; i++) {
            mnode *item = mnode_clone(node->items[i]);
            if (!item || mnode_seq_append(c, item) < 0) {
                mnode_free(c);
                return NULL;
            }
        }
        return c;
    }
}

void mnode_free(mnode *node)
{
    if (!node)
        return;
    for (size_t i = 0; i < node->npairs; i++) {
        mnode_free(node->pairs[i].key);
        mnode_free(node->pairs[i].value);
    }
    for (size_t i = 0; i < node->nitems; i++)
        mnode_free(node->items[i]);
    free(node->pairs);
    free(node->items);
    free(node->scalar);
    free(node);
}

const mnode_pair *mnode_get_pair(const mnode *map, const char *key)
{
    if (!map || map->kind != MNODE_MAP || !key)
        return NULL;
    size_t klen = strlen(key);
    for (size_t i = 0; i < map->npairs; i++) {
        const mnode *k = map->pairs[i].key;
        if (k && k->kind == MNODE_SCALAR && k->scalar_len == klen && memcmp(k->scalar, key, klen) == 0)
            return &map->pairs[i];
    }
    return NULL;
}

mnode *mnode_get(const mnode *map, const char *key)
{
    const mnode_pair *p = mnode_get_pair(map, key);
    return p ? p->value : NULL;
}

static bool is_plain(const mnode *n)
{
    return n && n->kind == MNODE_SCALAR && n->style == MNODE_PLAIN;
}

/* Scalars may hold NUL bytes; such a scalar is never a null/bool/number. */
static bool has_nul(const mnode *n)
{
    return strlen(n->scalar) != n->scalar_len;
}

bool mnode_is_null(const mnode *node)
{
    if (!is_plain(node) || has_nul(node))
        return false;
    const char *s = node->scalar;
    return !strcmp(s, "") || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

bool mnode_as_bool(const mnode *node, bool *ret)
{
    if (!is_plain(node) || has_nul(node))
        return false;
    const char *s = node->scalar;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) {
        if (ret)
            *ret = true;
        return true;
    }
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) {
        if (ret)
            *ret = false;
        return true;
    }
    return false;
}

static bool all_in(const char *s, const char *set)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!strchr(set, *s))
            return false;
    return true;
}

bool mnode_as_int(const mnode *node, long long *ret)
{
    if (!is_plain(node) || has_nul(node))
        return false;
    const char *s = node->scalar;
    int base = 10;
    const char *digits = s;
    /* Core schema: [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+ (no sign on octal/hex). */
    if (s[0] == '0' && s[1] == 'x') {
        base = 16;
        digits = s + 2;
        if (!all_in(digits, "0123456789abcdefABCDEF"))
            return false;
    } else if (s[0] == '0' && s[1] == 'o') {
        base = 8;
        digits = s + 2;
        if (!all_in(digits, "01234567"))
            return false;
    } else {
        const char *p = s;
        if (*p == '-' || *p == '+')
            p++;
        if (!all_in(p, "0123456789"))
            return false;
    }
    errno = 0;
    char *end = NULL;
    long long v = strtoll(digits, &end, base);
    if (errno == ERANGE || !end || *end)
        return false;
    if (ret)
        *ret = v;
    return true;
}

static bool is_float_text(const char *s)
{
    static const char *const specials[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF",
                                           "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN", NULL};
    for (size_t i = 0; specials[i]; i++)
        if (!strcmp(s, specials[i]))
            return true;
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    size_t intd = 0, fracd = 0;
    while (*p >= '0' && *p <= '9') {
        p++;
        intd++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            p++;
            fracd++;
        }
    }
    if (intd == 0 && fracd == 0)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

static bool is_number(const mnode *node)
{
    if (!is_plain(node) || has_nul(node))
        return false;
    return mnode_as_int(node, NULL) || is_float_text(node->scalar);
}

bool mnode_is_string(const mnode *node)
{
    if (!node || node->kind != MNODE_SCALAR)
        return false;
    if (node->style != MNODE_PLAIN)
        return true;
    return !mnode_is_null(node) && !mnode_as_bool(node, NULL) && !is_number(node);
}

const char *mnode_type_name(const mnode *node)
{
    if (!node)
        return "null";
    if (node->kind == MNODE_MAP)
        return "mapping";
    if (node->kind == MNODE_SEQ)
        return "sequence";
    if (mnode_is_string(node))
        return "string";
    if (mnode_is_null(node))
        return "null";
    if (mnode_as_bool(node, NULL))
        return "boolean";
    if (mnode_as_int(node, NULL))
        return "integer";
    return "number";
}

static bool scalar_equal(const mnode *a, const mnode *b)
{
    const char *ta = mnode_type_name(a), *tb = mnode_type_name(b);
    if (strcmp(ta, tb))
        return false;
    if (!strcmp(ta, "null"))
        return true;
    if (!strcmp(ta, "boolean")) {
        bool x = false, y = false;
        mnode_as_bool(a, &x);
        mnode_as_bool(b, &y);
        return x == y;
    }
    if (!strcmp(ta, "integer")) {
        long long x = 0, y = 0;
        mnode_as_int(a, &x);
        mnode_as_int(b, &y);
        return x == y;
    }
    return a->scalar_len == b->scalar_len && memcmp(a->scalar, b->scalar, a->scalar_len) == 0;
}

bool mnode_equal(const mnode *a, const mnode *b)
{
    if (!a || !b)
        return a == b;
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case MNODE_SCALAR:
        return scalar_equal(a, b);
    case MNODE_SEQ:
        if (a->nitems != b->nitems)
            return false;
        for (size_t i = 0; i < a->nitems; i++)
            if (!mnode_equal(a->items[i], b->items[i]))
                return false;
        return true;
    case MNODE_MAP:
    default:
        /* Key order does not change a mapping's meaning; the decoder refuses duplicate keys. */
        if (a->npairs != b->npairs)
            return false;
        for (size_t i = 0; i < a->npairs; i++) {
            const mnode *k = a->pairs[i].key;
            const mnode *other = NULL;
            for (size_t j = 0; j < b->npairs; j++)
                if (scalar_equal(k, b->pairs[j].key)) {
                    other = b->pairs[j].value;
                    break;
                }
            if (!other || !mnode_equal(a->pairs[i].value, other))
                return false;
        }
        return true;
    }
}
