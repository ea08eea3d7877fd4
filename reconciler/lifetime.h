/* lifetime.h - the CA expiry the lifetime lint (validators/lifetime.c) needs, read from the store. */
#ifndef MESHCA_LIFETIME_H
#define MESHCA_LIFETIME_H

#include <stdint.h>

#include "reconciler/ca_backend.h"

/* The notAfter of the root a builtin backend keeps in its mesh secret
 * `<mesh>.ca-builtin-cert-<backend>` (SPEC S2), read through ctx->secret_lookup without
 * opening the CA, so an expired root still has a date. Returns 0, PKI_ENOENT when the root was
 * not generated yet (or ctx has no lookup), or another negative PKI_* code. */
int lifetime_builtin_not_after(const ca_context *ctx, int64_t *ret_not_after);

#endif
