/* encode.h - the model back to JSON, in the Universal form (what stores keep and `get -o json` prints). */
#ifndef MESHCA_ENCODE_H
#define MESHCA_ENCODE_H

#include <jansson.h>

#include "manifests/model.h"
#include "manifests/node.h"

/* A node tree as JSON: plain scalars become null/bool/integer as the YAML core schema reads
 * them, everything else a string. Caller owns the result (json_decref). */
json_t *encode_node(const mnode *node);

/* A resource in the Universal form: reading the result back with manifest_load_buffer() gives
 * an equal resource. Secret data is included only when `with_secret_data` (stores need it;
 * printing never does). Caller owns the result. */
json_t *encode_resource(const resource *res, int with_secret_data);

#endif
