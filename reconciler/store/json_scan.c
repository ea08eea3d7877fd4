/* json_scan.c - the JSON scanning steps the identity record readers (identity_peek, identity_json) share. */
#include "reconciler/store/json_scan.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

void json_scan_ws(json_scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

bool json_scan_literal(json_scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return false;
    s->p += n;
    return true;
}

const char *json_scan_closing_quote(const char *start, const char *end)
{
    const char *q = memchr(start, '"', (size_t)(end - start));
    while (q) {
        size_t bs = 0;
        for (const char *b = q; b > start && b[-1] == '\\'; b--)
            bs++;
        if (bs % 2 == 0)
            return q;
        q = memchr(q + 1, '"', (size_t)(end - q - 1));
    }
    return NULL;
}

int json_scan_unescape(unsigned char c)
{
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '/': return '/';
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    default: return -1;
    }
}

bool json_scan_integer(json_scan *s, long long *ret)
{
    bool neg = false;
    unsigned long long v = 0;
    if (s->p < s->end && *s->p == '-') {
        neg = true;
        s->p++;
    }
    const char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
        if (v > (ULLONG_MAX - 9) / 10)
            return false;
        v = v * 10 + (unsigned)(*s->p++ - '0');
    }
    if (s->p == start || (s->p - start > 1 && *start == '0') ||
        (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E')))
        return false;
    if (v > (unsigned long long)LLONG_MAX + (neg ? 1u : 0u))
        return false;
    *ret = neg ? (long long)(0 - v) : (long long)v;
    return true;
}

bool json_scan_object(json_scan *s)
{
    json_scan_ws(s);
    if (s->p >= s->end || *s->p != '{')
        return false;
    s->p++;
    json_scan_ws(s);
    return s->p < s->end && *s->p != '}';
}

bool json_scan_colon(json_scan *s)
{
    json_scan_ws(s);
    if (s->p >= s->end || *s->p != ':')
        return false;
    s->p++;
    json_scan_ws(s);
    return true;
}

int json_scan_next(json_scan *s, char close)
{
    json_scan_ws(s);
    if (s->p < s->end && (*s->p == ',' || *s->p == close))
        return *s->p++ == ',' ? 1 : 0;
    return -1;
}

bool json_scan_string_array(json_scan *s, json_scan_string_fn *string, char ***ret, size_t *ret_n)
{
    char **names = calloc(1, sizeof(char *));
    size_t n = 0;
    if (!names)
        return false;
    if (json_scan_literal(s, "null"))
        goto done;
    if (s->p >= s->end || *s->p != '[')
        goto fail;
    s->p++;
    json_scan_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        goto done;
    }
    for (int more = 1; more; ) {
        json_scan_ws(s);
        char **grown = realloc(names, (n + 2) * sizeof(char *));
        if (!grown)
            goto fail;
        names = grown;
        if (!string(s, &names[n]))
            goto fail;
        names[++n] = NULL;
        if ((more = json_scan_next(s, ']')) < 0)
            goto fail;
    }
done:
    *ret = names;
    *ret_n = n;
    return true;
fail:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return false;
}
