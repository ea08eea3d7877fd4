/* token.h - dataplane tokens: random bearer secrets for an agent's first contact, stored as hashes.
 */
#ifndef MESHCA_API_TOKEN_H
#define MESHCA_API_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "manifests/error.h"
#include "reconciler/store.h"

/*
 * A token is TOKEN_RANDOM_BYTES random bytes (RAND_bytes), shown once as unpadded base64url
 * (TOKEN_TEXT_LEN characters). The store keeps only its SHA-256, under the key
 * (TOKEN_KIND, mesh, <sha256 hex>) with the JSON value
 *   {"sha256":"<hex>","mesh":"M","dataplane":"DP","issuedAt":"RFC 3339","expiresAt":"RFC 3339"}
 * so a scan of the store never finds a token in the clear. Revoking deletes the objects: it
 * takes effect at the next request. Times are seconds since the epoch, passed in (the clock is
 * the caller's, so expiry is testable).
 */
#define TOKEN_KIND "tokens"
#define TOKEN_RANDOM_BYTES 32
#define TOKEN_TEXT_LEN 43 /* base64url of 32 bytes, no padding */
#define TOKEN_MAX_TTL_S (366LL * 24 * 3600)
#define TOKEN_DEFAULT_TTL_S (24LL * 3600)

/* Who a token belongs to. */
typedef struct token_info {
    char mesh[STORE_NAME_MAX + 1];
    char dataplane[STORE_NAME_MAX + 1];
    int64_t issued_at;
    int64_t expires_at;
} token_info;

/*
 * Issues a token for (mesh, dataplane) valid for ttl_s seconds (1..TOKEN_MAX_TTL_S) from now.
 * *ret_token is the token text, NUL-terminated; the caller prints it once and frees it with
 * token_free(). MESHCA_EINVAL for a bad name or ttl; store codes passed up.
 */
int token_issue(store *s, const char *mesh_name, const char *dp_name, int64_t now, int64_t ttl_s,
                char **ret_token, char *errbuf);

/*
 * Looks a presented token up. mesh_hint is the mesh the caller expects (the URL's): looked at
 * first, then every other mesh in the store (one lookup each), so a token of another mesh is
 * still recognised (and refused by the caller's authorisation with 403, not 401). The stored hash
 * is compared in constant time. Returns 0 and *ret (who it belongs to), or MESHCA_EINVAL
 * (malformed), MESHCA_ENOTFOUND (unknown or revoked), MESHCA_EEXPIRED (past its expiry); store
 * codes passed up.
 */
int token_verify(store *s, const char *token, const char *mesh_hint, int64_t now, token_info *ret,
                 char *errbuf);

/* Revokes every token of (mesh, dataplane). *ret_count (may be NULL) = how many; 0 is success. */
int token_revoke(store *s, const char *mesh_name, const char *dp_name, size_t *ret_count,
                 char *errbuf);

/*
 * Lists tokens (mesh NULL: every mesh), sorted by mesh then dataplane, without token or hash.
 * Caller frees *ret with free(); *ret NULL and *ret_n 0 when none.
 */
int token_list(store *s, const char *mesh_name, token_info **ret, size_t *ret_n, char *errbuf);

/* Wipes and frees a token text. Accepts NULL. */
void token_free(char *token);

#endif
