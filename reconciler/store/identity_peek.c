/* identity_peek.c - the small fields of a stored identity record, read without a JSON tree (the no-op pass). */
#include "reconciler/store/identity_peek.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct scan {
    const char *p, *end;
} scan;

static void ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* A string at s->p: its raw content [*ret, *ret + *ret_len) and whether it has escapes. */
static bool raw_string(scan *s, const char **ret, size_t *ret_len, bool *ret_escaped)
{
    bool escaped = false;
    if (s->p >= s->end || *s->p != '"')
        return false;
    const char *start = ++s->p;
    for (;;) {
        const char *q = memchr(s->p, '"', (size_t)(s->end - s->p));
        if (!q)
            return false;
        /* A quote preceded by an odd number of backslashes is escaped. */
        size_t bs = 0;
        for (const char *b = q; b > start && b[-1] == '\\'; b--)
            bs++;
        if (!escaped && memchr(s->p, '\\', (size_t)(q - s->p)))
            escaped = true;
        s->p = q + 1;
        if (bs % 2 == 0) {
            *ret = start;
            *ret_len = (size_t)(q - start);
            *ret_escaped = escaped;
            return true;
        }
    }
}

/* The string's value, unescaped (simple escapes only; \u is refused). NULL when it cannot. */
static char *copy_string(const char *raw, size_t len, bool escaped)
{
    char *out = malloc(len + 1), *o = out;
    if (!out)
        return NULL;
    if (!escaped) {
        memcpy(out, raw, len);
        out[len] = '\0';
        return out;
    }
    for (size_t i = 0; i < len; i++) {
        char c = raw[i];
        if (c == '\\') {
            if (++i >= len) {
                free(out);
                return NULL;
            }
            switch (raw[i]) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case '/': c = '/'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            default:
                free(out);
                return NULL;
            }
        }
        *o++ = c;
    }
    *o = '\0';
    return out;
}

static bool literal(scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return false;
    s->p += n;
    return true;
}

static bool integer(scan *s, long long *ret)
{
    bool neg = false;
    long long v = 0;
    if (s->p < s->end && *s->p == '-') {
        neg = true;
        s->p++;
    }
    const char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
        if (v > (__LONG_LONG_MAX__ - 9) / 10)
            return false;
        v = v * 10 + (*s->p++ - '0');
    }
    /* Fractions and exponents are not what identity_encode writes. */
    if (s->p == start || (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E')))
        return false;
    *ret = neg ? -v : v;
    return true;
}

/* An array of strings, or null (no names). */
static bool string_array(scan *s, char ***ret, size_t *ret_n)
{
    char **names = calloc(1, sizeof(char *));
    size_t n = 0;
    if (!names)
        return false;
    if (literal(s, "null"))
        goto done;
    if (s->p >= s->end || *s->p != '[')
        goto fail;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        goto done;
    }
    for (;;) {
        const char *raw;
        size_t len;
        bool esc;
        ws(s);
        char **grown = realloc(names, (n + 2) * sizeof(char *));
        if (!grown)
            goto fail;
        names = grown;
        if (!raw_string(s, &raw, &len, &esc) || !(names[n] = copy_string(raw, len, esc)))
            goto fail;
        names[++n] = NULL;
        ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == ']') {
            s->p++;
            break;
        }
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

static bool set_once(char **dst, const char *raw, size_t len, bool esc)
{
    char *v = copy_string(raw, len, esc);
    if (!v)
        return false;
    free(*dst);
    *dst = v;
    return true;
}

int identity_peek(const char *json, size_t len, identity *ret, unsigned *ret_flags)
{
    scan s = {json, json + len};
    identity id = {0};
    unsigned flags = 0;
    bool have_names = false;

    if (!json)
        return -1;
    ws(&s);
    if (s.p >= s.end || *s.p != '{')
        return -1;
    s.p++;
    ws(&s);
    if (s.p < s.end && *s.p == '}')
        goto fail;
    for (;;) {
        const char *key, *raw;
        size_t klen, vlen;
        bool kesc, vesc;
        ws(&s);
        if (!raw_string(&s, &key, &klen, &kesc) || kesc)
            goto fail;
        ws(&s);
        if (s.p >= s.end || *s.p != ':')
            goto fail;
        s.p++;
        ws(&s);
#define KEY(name) (klen == sizeof(name) - 1 && memcmp(key, name, klen) == 0)
        if (s.p < s.end && *s.p == '"') {
            if (!raw_string(&s, &raw, &vlen, &vesc))
                goto fail;
            if (KEY("certificate"))
                flags |= PEEK_CERTIFICATE;
            else if (KEY("publicKey"))
                flags |= PEEK_PUBLIC_KEY;
            else if (KEY("pendingPublicKey"))
                flags |= PEEK_PENDING_KEY;
            else if ((KEY("mesh") && !set_once(&id.mesh, raw, vlen, vesc)) ||
                     (KEY("dataplane") && !set_once(&id.dataplane, raw, vlen, vesc)) ||
                     (KEY("backend") && !set_once(&id.backend, raw, vlen, vesc)) ||
                     (KEY("bundleDigest") && !set_once(&id.bundle_digest, raw, vlen, vesc)) ||
                     (KEY("serial") && !set_once(&id.serial, raw, vlen, vesc)) ||
                     (KEY("caFingerprint") && !set_once(&id.ca_fingerprint, raw, vlen, vesc)) ||
                     (KEY("tags") && !set_once(&id.tags_digest, raw, vlen, vesc)) ||
                     (KEY("lastRegeneration") &&
                      !set_once(&id.last_regeneration, raw, vlen, vesc)))
                goto fail;
            /* csr, pendingCsr and unknown strings: skipped. */
        } else if (KEY("bundleBackends")) {
            if (have_names || !string_array(&s, &id.bundle_backends, &id.nbundle_backends))
                goto fail;
            have_names = true;
        } else if (literal(&s, "true") || literal(&s, "false")) {
            bool v = s.p[-1] == 'e' && s.p[-2] == 'u';
            if (KEY("rsa"))
                id.rsa = v;
            else if (KEY("crossSigned"))
                id.cross_signed = v;
        } else if (literal(&s, "null")) {
            /* an absent optional field */
        } else {
            long long v;
            if (!integer(&s, &v))
                goto fail;   /* a nested object or array this reader does not expect */
            if (KEY("generation"))
                id.generation = v;
            else if (KEY("notBefore"))
                id.not_before = v;
            else if (KEY("notAfter"))
                id.not_after = v;
            else if (KEY("renewAt"))
                id.renew_at = v;
            else if (KEY("regenerations"))
                id.regenerations = v;
        }
#undef KEY
        ws(&s);
        if (s.p < s.end && *s.p == ',') {
            s.p++;
            continue;
        }
        if (s.p < s.end && *s.p == '}') {
            s.p++;
            break;
        }
        goto fail;
    }
    ws(&s);
    if (s.p != s.end || !id.mesh || !id.dataplane)
        goto fail;
    if (!have_names && !(id.bundle_backends = calloc(1, sizeof(char *))))
        goto fail;
    *ret = id;
    *ret_flags = flags;
    return 0;
fail:
    identity_clear(&id);
    return -1;
}
