/* identity_peek.c - the small fields of a stored identity record, read without a JSON tree (the no-op pass). */
#include "reconciler/store/identity_peek.h"

#include "reconciler/store/json_scan.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A string at s->p: its raw content [*ret, *ret + *ret_len) and whether it has escapes. */
static bool raw_string(json_scan *s, const char **ret, size_t *ret_len, bool *ret_escaped)
{
    if (s->p >= s->end || *s->p != '"')
        return false;
    const char *start = ++s->p, *q = json_scan_closing_quote(start, s->end);
    if (!q)
        return false;
    s->p = q + 1;
    *ret = start;
    *ret_len = (size_t)(q - start);
    *ret_escaped = memchr(start, '\\', (size_t)(q - start)) != NULL;
    return true;
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
            int e = json_scan_unescape((unsigned char)raw[i]);
            if (e < 0) {
                free(out);
                return NULL;
            }
            c = (char)e;
        }
        *o++ = c;
    }
    *o = '\0';
    return out;
}

/* A string element of bundleBackends, unescaped. */
static bool peek_string(json_scan *s, char **ret)
{
    const char *raw;
    size_t len;
    bool esc;
    return raw_string(s, &raw, &len, &esc) && (*ret = copy_string(raw, len, esc)) != NULL;
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
    json_scan s = {json, json + len};
    identity id = {0};
    unsigned flags = 0;
    bool have_names = false;

    if (!json)
        return -1;
    if (!json_scan_object(&s))
        return -1;
    for (int more = 1; more; ) {
        const char *key, *raw;
        size_t klen, vlen;
        bool kesc, vesc;
        json_scan_ws(&s);
        if (!raw_string(&s, &key, &klen, &kesc) || kesc)
            goto fail;
        if (!json_scan_colon(&s))
            goto fail;
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
            if (have_names || !json_scan_string_array(&s, peek_string, &id.bundle_backends,
                                                         &id.nbundle_backends))
                goto fail;
            have_names = true;
        } else if (json_scan_literal(&s, "true") || json_scan_literal(&s, "false")) {
            bool v = s.p[-1] == 'e' && s.p[-2] == 'u';
            if (KEY("rsa"))
                id.rsa = v;
            else if (KEY("crossSigned"))
                id.cross_signed = v;
        } else if (json_scan_literal(&s, "null")) {
            /* an absent optional field */
        } else {
            long long v;
            if (!json_scan_integer(&s, &v))
                goto fail;   /* a nested object or array this reader does not expect */
            if (KEY("generation"))
                id.generation = v;
            else if (KEY("notBefore"))
                id.not_before = v;
            else if (KEY("notAfter"))
                id.not_after = v;
            else if (KEY("renewAt"))
                id.renew_at = v;
            else if (KEY("since"))
                id.since = v;
            else if (KEY("regenerations"))
                id.regenerations = v;
        }
#undef KEY
        if ((more = json_scan_next(&s, '}')) < 0)
            goto fail;
    }
    json_scan_ws(&s);
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
