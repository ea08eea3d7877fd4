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

#endif
