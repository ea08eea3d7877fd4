/* datasource.h - reading a backend datasource: secret, file, inline (base64) or inlineString. */
#ifndef MESHCA_DATASOURCE_H
#define MESHCA_DATASOURCE_H

#include <stdbool.h>
#include <stddef.h>

#include "manifests/node.h"
#include "reconciler/ca_backend.h"

#define DATASOURCE_MAX_BYTES PKI_MAX_PEM_BYTES

/* Reads `ds`, a map with exactly one of `secret: NAME`, `file: PATH`, `inline: BASE64`,
 * `inlineString: TEXT`. On success *ret_data is malloc'd and NUL-terminated (*ret_len excludes
 * the NUL); it may hold key material: free it with datasource_free(). Returns PKI_EINVAL (bad
 * shape or base64), PKI_ENOENT (secret or file absent), PKI_EIO, with a message in errbuf that
 * never contains the data. */
int datasource_read(const mnode *ds, const ca_context *ctx, char **ret_data, size_t *ret_len,
                    char *errbuf);

/* True when `ds` is a datasource whose one source is in the manifest: inline or inlineString. */
bool datasource_is_inline(const mnode *ds);

/* Wipes and frees. Accepts NULL. */
void datasource_free(char *data, size_t len);

#endif
