/* identity_json.c - a stored identity record written and read without a JSON tree (the full reconcile pass). */
#include "reconciler/store/identity_json.h"

#include "manifests/utf8.h"
#include "reconciler/store/json_scan.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p (at most `left` bytes), or 0, as jansson accepts it. */
static size_t utf8_seq(const unsigned char *p, size_t left)
{
    uint32_t cp;
    return utf8_decode(p, left, &cp);
}

/* --- writing --- */

typedef struct out {
    char *p;
    size_t len, cap;
    bool failed;   /* out of memory or a string jansson would refuse */
} out;

static void reserve(out *o, size_t more)
{
    if (o->failed || o->len + more + 1 <= o->cap)
        return;
    /* The first reservation is the caller's estimate, taken as is: a pass holds every record
     * it writes until its commit, so slack here is resident memory. */
    size_t cap = o->cap ? o->cap : o->len + more + 1;
    while (cap < o->len + more + 1)
        cap *= 2;
    char *p = realloc(o->p, cap);
    if (!p) {
        o->failed = true;
        return;
    }
    o->p = p;
    o->cap = cap;
}

static void put(out *o, const char *s, size_t n)
{
    reserve(o, n);
    if (o->failed)
        return;
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void put_lit(out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Whether s is valid UTF-8 (jansson's json_string refuses anything else). */
static bool valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    while (left) {
        size_t n = utf8_seq(p, left);
        if (!n)
            return false;
        p += n;
        left -= n;
    }
    return true;
}

/* Whether none of the 8 bytes of x needs more than a copy in a JSON string: none below 0x20,
 * '"', '\\' or 0x80 and above (each test is exact as a whole: "some byte is"). A PEM's lines
 * are copied 8 bytes at a time, the record's one escape each line ('\n') byte by byte. */
static inline bool word_plain(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    uint64_t below = (x - ones * 0x20) & ~x;
    return !((below | ((q - ones) & ~q) | ((b - ones) & ~b) | x) & highs);
}

/* A JSON string, escaped as jansson's dump does. */
static void put_string(out *o, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    const unsigned char *p = (const unsigned char *)s;
    uint64_t x;
    /* The exact escaped length: reserving the worst case (6 bytes a byte) would make the
     * buffer grow far past the record. */
    size_t extra = 0;
    for (size_t i = 0; i < n;) {
        if (i + 8 <= n && (memcpy(&x, p + i, 8), word_plain(x))) {
            i += 8;
            continue;
        }
        unsigned char c = p[i++];
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
            extra += 1;
        else if (c < 0x20)
            extra += 5;
    }
    reserve(o, n + extra + 2);
    if (o->failed)
        return;
    char *w = o->p + o->len;
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (i + 8 <= n && (memcpy(&x, p + i, 8), word_plain(x))) {
            memcpy(w, p + i, 8);
            w += 8;
            i += 7;
            continue;
        }
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t k = utf8_seq(p + i, n - i);
            if (!k) {
                o->failed = true;
                return;
            }
            memcpy(w, p + i, k);
            w += k;
            i += k - 1;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            *w++ = (char)c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\b': *w++ = 'b'; break;
        case '\f': *w++ = 'f'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        default:
            *w++ = 'u';
            *w++ = '0';
            *w++ = '0';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 0xf];
        }
    }
    *w++ = '"';
    o->len = (size_t)(w - o->p);
}

/* ,"key": every key but the first (mesh, written after the brace by identity_json_encode). */
static void put_key(out *o, const char *key)
{
    size_t n = strlen(key);
    reserve(o, n + 4);
    if (o->failed)
        return;
    char *w = o->p + o->len;
    w[0] = ',';
    w[1] = '"';
    memcpy(w + 2, key, n);
    w[n + 2] = '"';
    w[n + 3] = ':';
    o->len += n + 4;
}

static void field_str(out *o, const char *key, const char *v)
{
    put_key(o, key);
    if (v)
        put_string(o, v);
    else
        put(o, "null", 4);
}

/* v in decimal, as "%lld" writes it (snprintf was a tenth of the encoder's time). */
static void field_int(out *o, const char *key, long long v)
{
    char num[24], *w = num + sizeof(num);
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        *--w = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--w = '-';
    put_key(o, key);
    put(o, w, (size_t)(num + sizeof(num) - w));
}

static void field_bool(out *o, const char *key, bool v)
{
    put_key(o, key);
    put_lit(o, v ? "true" : "false");
}

char *identity_json_encode(const identity *id)
{
    if (!id->mesh || !id->dataplane)
        return NULL;
    out o = {0};
    size_t guess = 512;
    const char *big[] = {id->cert_pem, id->public_key_pem, id->csr_pem, id->pending_key_pem,
                         id->pending_csr_pem};
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
        guess += big[i] ? strlen(big[i]) + strlen(big[i]) / 16 : 0;
    reserve(&o, guess);
    put(&o, "{\"mesh\":", 8);
    put_string(&o, id->mesh);
    field_str(&o, "dataplane", id->dataplane);
    field_str(&o, "backend", id->backend);
    field_int(&o, "generation", id->generation);
    field_str(&o, "certificate", id->cert_pem);
    field_str(&o, "publicKey", id->public_key_pem);
    field_str(&o, "csr", id->csr_pem);
    field_str(&o, "pendingPublicKey", id->pending_key_pem);
    field_str(&o, "pendingCsr", id->pending_csr_pem);
    field_str(&o, "bundleDigest", id->bundle_digest);
    put_key(&o, "bundleBackends");
    put(&o, "[", 1);
    bool first = true;
    for (size_t i = 0; id->bundle_backends && i < id->nbundle_backends; i++) {
        const char *name = id->bundle_backends[i];
        /* jansson drops an element it cannot make a string of: so does this writer. */
        if (!name || !valid_utf8(name))
            continue;
        if (!first)
            put(&o, ",", 1);
        put_string(&o, name);
        first = false;
    }
    put(&o, "]", 1);
    field_str(&o, "serial", id->serial);
    field_int(&o, "notBefore", id->not_before);
    field_int(&o, "notAfter", id->not_after);
    field_int(&o, "renewAt", id->renew_at);
    field_str(&o, "caFingerprint", id->ca_fingerprint);
    field_str(&o, "tags", id->tags_digest);
    field_bool(&o, "rsa", id->rsa);
    field_bool(&o, "crossSigned", id->cross_signed);
    field_int(&o, "regenerations", id->regenerations);
    field_str(&o, "lastRegeneration", id->last_regeneration);
    /* Only when set: a record without it is written as before this field existed. */
    if (id->since)
        field_int(&o, "since", id->since);
    put(&o, "}", 1);
    if (o.failed) {
        free(o.p);
        return NULL;
    }
    o.p[o.len] = '\0';
    /* Shrinking in place is cheap, and the text stays resident until the pass commits. */
    char *fit = realloc(o.p, o.len + 1);
    return fit ? fit : o.p;
}

/* --- reading --- */

/* The 4 hex digits at p (before end), or -1. */
static long hex4(const unsigned char *p, const unsigned char *end)
{
    long v = 0;
    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d = c >= '0' && c <= '9' ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                        : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Writes code point cp as UTF-8 at w (at most 4 bytes; \uXXXX is 6 raw bytes, a pair 12). */
static char *put_utf8(char *w, uint32_t cp)
{
    if (cp < 0x80) {
        *w++ = (char)cp;
    } else if (cp < 0x800) {
        *w++ = (char)(0xc0 | (cp >> 6));
        *w++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *w++ = (char)(0xe0 | (cp >> 12));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *w++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *w++ = (char)(0xf0 | (cp >> 18));
        *w++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *w++ = (char)(0x80 | (cp & 0x3f));
    }
    return w;
}

/* A string at s->p, unescaped into a new allocation (*ret; caller frees). False for anything
 * jansson would refuse (a raw control character, invalid UTF-8, a bad escape, \u0000). */
static bool string(json_scan *s, char **ret)
{
    if (s->p >= s->end || *s->p != '"')
        return false;
    const unsigned char *p = (const unsigned char *)++s->p, *end = (const unsigned char *)s->end;
    /* The unescaped value is never longer than the raw one: one pass to find the end. */
    const unsigned char *q =
        (const unsigned char *)json_scan_closing_quote((const char *)p, (const char *)end);
    if (!q)
        return false;
    char *buf = malloc((size_t)(q - p) + 1), *w = buf;
    if (!buf)
        return false;
    while (p < q) {
        uint64_t x;
        /* A PEM's lines are plain ASCII: copied 8 bytes at a time (decoding them byte by byte
         * was two thirds of the decoder's time in a full pass). */
        if (q - p >= 8 && (memcpy(&x, p, 8), word_plain(x))) {
            memcpy(w, p, 8);
            w += 8;
            p += 8;
            continue;
        }
        unsigned char c = *p;
        if (c >= 0x20 && c < 0x80 && c != '\\') {
            *w++ = (char)*p++;
            continue;
        }
        if (c >= 0x80) {
            size_t k = utf8_seq(p, (size_t)(q - p));
            if (!k)
                goto fail;
            memcpy(w, p, k);
            w += k;
            p += k;
            continue;
        }
        if (c < 0x20 || p + 1 >= q)
            goto fail;
        int e = json_scan_unescape(p[1]);
        if (e >= 0) {
            *w++ = (char)e;
            p += 2;
            continue;
        }
        if (p[1] != 'u')
            goto fail;
        /* As jansson: a surrogate pair makes one code point, U+0000 is refused. */
        long cp = hex4(p + 2, q), lo;
        p += 6;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (q - p < 6 || p[0] != '\\' || p[1] != 'u' || (lo = hex4(p + 2, q)) < 0xdc00 ||
                lo > 0xdfff)
                goto fail;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            p += 6;
        } else if (cp <= 0 || (cp >= 0xdc00 && cp <= 0xdfff)) {
            goto fail;
        }
        w = put_utf8(w, (uint32_t)cp);
    }
    *w = '\0';
    s->p = (const char *)q + 1;
    *ret = buf;
    return true;
fail:
    free(buf);
    return false;
}

/* The string fields, by key. */
static char **string_field(identity *id, const char *key, size_t klen)
{
#define KEY(name) (klen == sizeof(name) - 1 && memcmp(key, name, klen) == 0)
    return KEY("mesh") ? &id->mesh
         : KEY("dataplane") ? &id->dataplane
         : KEY("backend") ? &id->backend
         : KEY("certificate") ? &id->cert_pem
         : KEY("publicKey") ? &id->public_key_pem
         : KEY("csr") ? &id->csr_pem
         : KEY("pendingPublicKey") ? &id->pending_key_pem
         : KEY("pendingCsr") ? &id->pending_csr_pem
         : KEY("bundleDigest") ? &id->bundle_digest
         : KEY("serial") ? &id->serial
         : KEY("caFingerprint") ? &id->ca_fingerprint
         : KEY("tags") ? &id->tags_digest
         : KEY("lastRegeneration") ? &id->last_regeneration
         : NULL;
}

static long long *int_field(identity *id, const char *key, size_t klen, int64_t **ret64)
{
    *ret64 = KEY("notBefore") ? &id->not_before
           : KEY("notAfter") ? &id->not_after
           : KEY("renewAt") ? &id->renew_at
           : KEY("since") ? &id->since
           : NULL;
    return KEY("generation") ? &id->generation : KEY("regenerations") ? &id->regenerations : NULL;
}

static bool *bool_field(identity *id, const char *key, size_t klen)
{
    return KEY("rsa") ? &id->rsa : KEY("crossSigned") ? &id->cross_signed : NULL;
#undef KEY
}

/* A key of plain ASCII (no escape, no control character, as every key a writer of these
 * records puts) at s->p, read in place: [*ret, *ret + *ret_len). False, reading nothing, for
 * any other key, which string() reads (and refuses when jansson would). A record has 21 keys:
 * an allocation each cost more than the key's bytes. */
static bool plain_key(json_scan *s, const char **ret, size_t *ret_len)
{
    if (s->p >= s->end || *s->p != '"')
        return false;
    const char *k = s->p + 1, *e = k;
    while (e < s->end && *e != '"') {
        unsigned char c = (unsigned char)*e;
        if (c < 0x20 || c >= 0x80 || c == '\\')
            return false;
        e++;
    }
    if (e >= s->end)
        return false;
    *ret = k;
    *ret_len = (size_t)(e - k);
    s->p = e + 1;
    return true;
}

int identity_json_decode(const char *json, size_t len, identity *ret)
{
    json_scan s = {json, json + len};
    identity id = {0};
    bool have_names = false;
    char *key_copy = NULL;

    if (!json)
        return -1;
    if (!json_scan_object(&s))
        return -1;
    for (int more = 1; more; ) {
        json_scan_ws(&s);
        const char *key;
        size_t klen;
        if (!plain_key(&s, &key, &klen)) {
            if (!string(&s, &key_copy))
                goto fail;
            key = key_copy;
            klen = strlen(key_copy);
        }
        if (!json_scan_colon(&s))
            goto fail;
        char **str = string_field(&id, key, klen);
        int64_t *i64;
        long long *ill = int_field(&id, key, klen, &i64);
        bool *b = bool_field(&id, key, klen);
        bool is_names = klen == 14 && memcmp(key, "bundleBackends", 14) == 0;
        if (is_names) {
            /* A repeated key: jansson keeps the last; this reader leaves it to identity_read. */
            if (have_names || !json_scan_string_array(&s, string, &id.bundle_backends,
                                                         &id.nbundle_backends))
                goto fail;
            have_names = true;
        } else if (s.p < s.end && *s.p == '"') {
            char *v = NULL;
            if (!string(&s, &v))
                goto fail;
            if (str) {
                free(*str);
                *str = v;
            } else if (ill || i64 || b) {
                free(v);   /* a string where identity_read reads a number or a boolean */
                goto fail;
            } else {
                free(v);   /* an unknown field */
            }
        } else if (json_scan_literal(&s, "null")) {
            /* jansson reads 0 / false / NULL for a null: the same as absent. */
            if (str) {
                free(*str);
                *str = NULL;
            } else if (ill) {
                *ill = 0;
            } else if (i64) {
                *i64 = 0;
            } else if (b) {
                *b = false;
            }
        } else if (json_scan_literal(&s, "true") || json_scan_literal(&s, "false")) {
            bool v = s.p[-1] == 'e' && s.p[-2] == 'u';
            if (b)
                *b = v;
            else if (str || ill || i64)
                goto fail;
        } else {
            long long v;
            if (!json_scan_integer(&s, &v) || str || b)
                goto fail;   /* a nested value, a real, or a number where a string goes */
            if (ill)
                *ill = v;
            else if (i64)
                *i64 = v;
        }
        free(key_copy);
        key_copy = NULL;
        if ((more = json_scan_next(&s, '}')) < 0)
            goto fail;
    }
    json_scan_ws(&s);
    if (s.p != s.end || !id.mesh || !id.dataplane)
        goto fail;
    /* identity_read's required fields: an issued identity has its certificate and key. */
    if (id.generation > 0 ? (!id.cert_pem || !id.public_key_pem) : !id.pending_key_pem)
        goto fail;
    if (!have_names && !(id.bundle_backends = calloc(1, sizeof(char *))))
        goto fail;
    *ret = id;
    return 0;
fail:
    free(key_copy);
    identity_clear(&id);
    return -1;
}
