/* internal.h - helpers shared by the validator files; not part of the public contract. */
#ifndef MESHCA_VALIDATORS_INTERNAL_H
#define MESHCA_VALIDATORS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "manifests/diag.h"
#include "manifests/model.h"

/* Checks the `conf` tree of backend number `index` against the schema of its type (conf.c).
 * Does nothing for an unknown type: static.c reports that. */
void validate_backend_conf(const mesh_backend *b, size_t index, diag_list *out);

/* True when `text` is standard base64 (RFC 4648, padding optional, whitespace allowed between
 * groups, as Kubernetes and YAML block scalars produce). */
bool validate_is_base64(const char *text, size_t len);

#endif
