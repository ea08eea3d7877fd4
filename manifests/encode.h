/* encode.h - the model back to JSON, in the Universal form (what stores keep and `get -o json` prints). */
#ifndef MESHCA_ENCODE_H
#define MESHCA_ENCODE_H

#include <stdbool.h>

#include <jansson.h>

#include "manifests/model.h"
#include "manifests/node.h"

/* What printing shows instead of a secret: Secret data and every inline datasource value. `apply`
 * of a resource holding it keeps the stored value (doc/get.md). */
#define ENCODE_REDACTED "<redacted>"

/* True for a datasource key whose value is the material itself (inline, inlineString). */
bool encode_is_inline_key(const char *key);

/* A node tree as JSON: plain scalars become null/bool/integer as the YAML core schema reads
 * them, everything else a string. Caller owns the result (json_decref). */
json_t *encode_node(const mnode *node);

/* A resource in the Universal form: reading the result back with manifest_load_buffer() gives
 * an equal resource. Secret data and inline datasource values (keys, tokens, certificates
 * written into a backend's conf) are included only when `with_secret_data` (stores need them);
 * otherwise each is ENCODE_REDACTED, for printing. Caller owns the result. */
json_t *encode_resource(const resource *res, int with_secret_data);

#endif
