/* token.c - dataplane tokens: issue (random, shown once), verify (hash, constant time), revoke,
 * list. */
#define _GNU_SOURCE
#include "reconciler/api/token.h"
#include "reconciler/pki.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define HASH_HEX_LEN 64

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Unpadded base64url; out has room for TOKEN_TEXT_LEN + 1. */
static void encode_b64url(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = b64url[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = b64url[v & 63];
    }
    out[o] = '\0';
}

static int well_formed(const char *token)
{
    if (!token || strlen(token) != TOKEN_TEXT_LEN)
        return 0;
    for (const char *p = token; *p; p++)
        if (!strchr(b64url, *p))
            return 0;
    return 1;
}

/* SHA-256 of the token text as lowercase hex (hex has HASH_HEX_LEN + 1 bytes). */
static int hash_hex(const char *token, char *hex, char *errbuf)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    ERR_clear_error();
    if (!EVP_Digest(token, strlen(token), md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
        ERR_clear_error();
        return meshca_fail(errbuf, MESHCA_ECRYPTO, "token: SHA-256 failed");
    }
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static int parse_time(const char *text, int64_t *ret)
{
    struct tm tm = {0};
    char tail = 0;
    if (!text ||
        sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &tail) != 7 ||
        tail != 'Z')
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *ret = (int64_t)timegm(&tm);
    return 0;
}

/* Fills *ret from a stored value; MESHCA_ECORRUPT when it is not a token record. */
static int decode(const char *value, size_t len, token_info *ret, const char **ret_hash,
                  json_t **ret_doc)
{
    json_t *doc = json_loadb(value, len, 0, NULL);
    const char *mesh_name = json_string_value(json_object_get(doc, "mesh"));
    const char *dp = json_string_value(json_object_get(doc, "dataplane"));
    const char *hash = json_string_value(json_object_get(doc, "sha256"));
    token_info info = {0};
    if (!mesh_name || !dp || !hash || strlen(hash) != HASH_HEX_LEN ||
        snprintf(info.mesh, sizeof(info.mesh), "%s", mesh_name) >= (int)sizeof(info.mesh) ||
        snprintf(info.dataplane, sizeof(info.dataplane), "%s", dp) >= (int)sizeof(info.dataplane) ||
        parse_time(json_string_value(json_object_get(doc, "issuedAt")), &info.issued_at) < 0 ||
        parse_time(json_string_value(json_object_get(doc, "expiresAt")), &info.expires_at) < 0) {
        json_decref(doc);
        return MESHCA_ECORRUPT;
    }
    *ret = info;
    *ret_hash = hash;
    *ret_doc = doc;
    return 0;
}

int token_issue(store *s, const char *mesh_name, const char *dp_name, int64_t now, int64_t ttl_s,
                char **ret_token, char *errbuf)
{
    if (!s || !ret_token || !store_name_valid(mesh_name) || !store_name_valid(dp_name))
        return meshca_fail(errbuf, MESHCA_EINVAL, "token: invalid mesh or dataplane name");
    if (ttl_s <= 0 || ttl_s > TOKEN_MAX_TTL_S)
        return meshca_fail(errbuf, MESHCA_EINVAL, "token: ttl must be between 1s and 366d");

    unsigned char raw[TOKEN_RANDOM_BYTES];
    char hex[HASH_HEX_LEN + 1];
    char *text = malloc(TOKEN_TEXT_LEN + 1);
    if (!text)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "token: out of memory");
    ERR_clear_error();
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        ERR_clear_error();
        free(text);
        return meshca_fail(errbuf, MESHCA_ECRYPTO, "token: no random bytes available");
    }
    encode_b64url(raw, sizeof(raw), text);
    OPENSSL_cleanse(raw, sizeof(raw));
    int rc = hash_hex(text, hex, errbuf);
    if (rc < 0) {
        token_free(text);
        return rc;
    }

    char issued[32], expires[32];
    if (pki_format_time(now, issued, sizeof(issued)) < 0 ||
        pki_format_time(now + ttl_s, expires, sizeof(expires)) < 0) {
        token_free(text);
        return meshca_fail(errbuf, MESHCA_EINVAL, "token: time out of range");
    }
    json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:s}", "sha256", hex, "mesh", mesh_name,
                            "dataplane", dp_name, "issuedAt", issued, "expiresAt", expires);
    char *value = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    if (!value) {
        token_free(text);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "token: out of memory");
    }
    const store_key key = {TOKEN_KIND, mesh_name, hex};
    /* Version 0: a collision of 256 random bits means a broken RNG; refuse rather than share. */
    rc = store_put(s, &key, value, strlen(value), 0, NULL);
    free(value);
    if (rc < 0) {
        token_free(text);
        return meshca_fail(errbuf, rc, "token: cannot store the token of %s/%s: %s", mesh_name,
                           dp_name, store_strerror(rc));
    }
    *ret_token = text;
    return 0;
}

/* Checks one stored record against the hash; 1 on match (and fills *ret), 0 otherwise. */
static int matches(const char *value, size_t len, const char *hex, token_info *ret)
{
    token_info info;
    const char *stored = NULL;
    json_t *doc = NULL;
    if (decode(value, len, &info, &stored, &doc) < 0)
        return 0;
    int ok = CRYPTO_memcmp(stored, hex, HASH_HEX_LEN) == 0;
    json_decref(doc);
    if (ok)
        *ret = info;
    return ok;
}

/* Looks the hash up in one mesh: *found 1 and *ret filled on a match; 0 or a store code. */
static int lookup(store *s, const char *mesh_name, const char *hex, token_info *ret, int *found,
                  char *errbuf)
{
    char *value = NULL;
    size_t len = 0;
    const store_key key = {TOKEN_KIND, mesh_name, hex};
    int rc = store_get(s, &key, &value, &len, NULL);
    if (rc < 0 && rc != STORE_ENOTFOUND)
        return meshca_fail(errbuf, rc, "token: store: %s", store_strerror(rc));
    *found = rc == 0 && matches(value, len, hex, ret);
    free(value);
    return 0;
}

int token_verify(store *s, const char *token, const char *mesh_hint, int64_t now, token_info *ret,
                 char *errbuf)
{
    if (!s || !ret || !well_formed(token))
        return meshca_fail(errbuf, MESHCA_EINVAL, "token: malformed bearer token");
    char hex[HASH_HEX_LEN + 1];
    int rc = hash_hex(token, hex, errbuf);
    if (rc < 0)
        return rc;

    token_info info;
    int found = 0;
    if (mesh_hint && store_name_valid(mesh_hint)) {
        rc = lookup(s, mesh_hint, hex, &info, &found, errbuf);
        if (rc < 0)
            return rc;
    }
    if (!found) {
        /* A token of another mesh: recognise it so that the caller answers 403, not 401. One
         * lookup per mesh (few), not a scan of every token: an unknown token costs little. */
        store_entry *meshes = NULL;
        size_t n = 0;
        rc = store_list(s, "meshes", NULL, &meshes, &n);
        if (rc < 0)
            return meshca_fail(errbuf, rc, "token: store: %s", store_strerror(rc));
        for (size_t i = 0; i < n && !found && rc == 0; i++)
            if (!mesh_hint || strcmp(meshes[i].name, mesh_hint) != 0)
                rc = lookup(s, meshes[i].name, hex, &info, &found, errbuf);
        store_entries_free(meshes, n);
        if (rc < 0)
            return rc;
    }
    OPENSSL_cleanse(hex, sizeof(hex));
    if (!found)
        return meshca_fail(errbuf, MESHCA_ENOTFOUND, "token: unknown or revoked token");
    if (now >= info.expires_at)
        return meshca_fail(errbuf, MESHCA_EEXPIRED, "token: expired (dataplane %s/%s)", info.mesh,
                           info.dataplane);
    *ret = info;
    return 0;
}

int token_revoke(store *s, const char *mesh_name, const char *dp_name, size_t *ret_count,
                 char *errbuf)
{
    if (!s || !store_name_valid(mesh_name) || !store_name_valid(dp_name))
        return meshca_fail(errbuf, MESHCA_EINVAL, "token: invalid mesh or dataplane name");
    store_entry *entries = NULL;
    size_t n = 0, count = 0;
    int rc = store_list(s, TOKEN_KIND, mesh_name, &entries, &n);
    if (rc < 0)
        return meshca_fail(errbuf, rc, "token: store: %s", store_strerror(rc));
    for (size_t i = 0; i < n; i++) {
        token_info info;
        const char *hash = NULL;
        json_t *doc = NULL;
        if (decode(entries[i].value, entries[i].len, &info, &hash, &doc) < 0)
            continue;
        json_decref(doc);
        if (strcmp(info.dataplane, dp_name) != 0)
            continue;
        const store_key key = {TOKEN_KIND, entries[i].mesh, entries[i].name};
        rc = store_delete(s, &key, STORE_ANY_VERSION);
        if (rc < 0 && rc != STORE_ENOTFOUND) {
            store_entries_free(entries, n);
            return meshca_fail(errbuf, rc, "token: cannot revoke a token of %s/%s: %s", mesh_name,
                               dp_name, store_strerror(rc));
        }
        count++;
    }
    store_entries_free(entries, n);
    if (ret_count)
        *ret_count = count;
    return 0;
}

static int compare_info(const void *a, const void *b)
{
    const token_info *x = a, *y = b;
    int c = strcmp(x->mesh, y->mesh);
    if (c == 0)
        c = strcmp(x->dataplane, y->dataplane);
    if (c == 0)
        c = (x->expires_at > y->expires_at) - (x->expires_at < y->expires_at);
    return c;
}

int token_list(store *s, const char *mesh_name, token_info **ret, size_t *ret_n, char *errbuf)
{
    if (!s || !ret || !ret_n || (mesh_name && !store_name_valid(mesh_name)))
        return meshca_fail(errbuf, MESHCA_EINVAL, "token: invalid mesh name");
    store_entry *entries = NULL;
    size_t n = 0, count = 0;
    int rc = store_list(s, TOKEN_KIND, mesh_name, &entries, &n);
    if (rc < 0)
        return meshca_fail(errbuf, rc, "token: store: %s", store_strerror(rc));
    token_info *list = n ? calloc(n, sizeof(*list)) : NULL;
    if (n && !list) {
        store_entries_free(entries, n);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "token: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const char *hash = NULL;
        json_t *doc = NULL;
        if (decode(entries[i].value, entries[i].len, &list[count], &hash, &doc) == 0) {
            json_decref(doc);
            count++;
        }
    }
    store_entries_free(entries, n);
    if (count == 0) {
        free(list);
        list = NULL;
    }
    if (count > 1)
        qsort(list, count, sizeof(*list), compare_info);
    *ret = list;
    *ret_n = count;
    return 0;
}

void token_free(char *token)
{
    if (!token)
        return;
    OPENSSL_cleanse(token, strlen(token));
    free(token);
}
