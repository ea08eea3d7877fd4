/* ca_provided.h - hygiene checks of operator-provided CA material (cert chain and key). */
#ifndef MESHCA_CA_PROVIDED_H
#define MESHCA_CA_PROVIDED_H

#include <stddef.h>
#include <stdint.h>

#include "manifests/diag.h"
#include "manifests/model.h"
#include "reconciler/ca_backend.h"

typedef struct ca_provided_material {
    const char *cert_pem;      /* chain, intermediate first; borrowed */
    size_t cert_len;
    const char *key_pem;       /* NULL: key not available, key checks skipped; borrowed */
    size_t key_len;
    const char *cert_path;     /* field paths for diagnostics, e.g. mtls.backends[0].conf.cert */
    const char *key_path;
    const source_mark *cert_mark;   /* may be NULL */
    const source_mark *key_mark;
    int64_t now;
    int64_t leaf_lifetime_s;   /* dpCert expiration: the CA must outlive now + this */
} ca_provided_material;

/* Appends one diagnostic per problem: ca-unparsable, ca-not-ca, ca-key-agreement,
 * ca-key-mismatch, ca-expired, ca-not-yet-valid, ca-expires-before-leaf, ca-expires-soon
 * (warning), ca-weak-key, ca-chain-order, ca-path-length. Messages never contain key material.
 * Returns the number of errors added. */
size_t ca_provided_check_material(const ca_provided_material *m, diag_list *diags);

/* The same checks, offline, on the CA material the backend's manifest holds itself: conf.cert
 * when it is `inline` or `inlineString` (conf.key too when it is inline; a key from a secret or
 * file is not read, and no secret lookup is made). A datasource that does not decode is left to
 * the static validators. `ctx` gives the backend, its index (for paths) and the clock. Returns
 * the number of errors added. Used through ca_check_offline(). */
size_t ca_provided_check_inline(const mesh_backend *b, const ca_context *ctx, diag_list *diags);

#endif
