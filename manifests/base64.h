/* base64.h - the one base64 decoder: Secret data, inline datasources, their validation. */
#ifndef MESHCA_BASE64_H
#define MESHCA_BASE64_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Decodes standard base64 (RFC 4648 alphabet; padding optional; spaces, tabs and line breaks
 * allowed anywhere, as Kubernetes and YAML block scalars produce). Nothing may follow padding,
 * and a lone trailing symbol (which cannot encode a byte) is refused.
 * With ret_data NULL, only checks. Otherwise *ret_data is malloc'd and NUL-terminated
 * (*ret_len excludes the NUL); it may hold key material: the caller wipes it before free().
 * Returns 0, MESHCA_EINVAL (not base64; the text is never quoted) or MESHCA_ENOMEM.
 */
int base64_decode(const char *text, size_t len, char **ret_data, size_t *ret_len);

/* True when base64_decode() would accept `text`. */
bool base64_valid(const char *text, size_t len);

#endif
