/* json_node.h - stored JSON to an mnode tree without libyaml, or "declined" when unsure. */
#ifndef MESHCA_JSON_NODE_H
#define MESHCA_JSON_NODE_H

#include <stddef.h>

#include "manifests/node.h"

/* json_node_parse() saw text it does not take: the caller decodes it with the YAML path
 * (manifest_parse_documents), which reports whatever is wrong with it. */
#define JSON_NODE_DECLINED 1

/*
 * Parses `data` (len bytes) when it is one JSON object on one line, as the store keeps the
 * resources it writes (state_encode_resource), into the tree manifest_parse_documents() builds
 * from the same bytes: the same kinds, key order, scalar text and style (a JSON string is
 * MNODE_QUOTED; numbers, true, false and null are MNODE_PLAIN) and the same marks (file `name`,
 * which is borrowed and must outlive the tree; line 1; the column libyaml gives, in characters).
 *
 * It takes only a subset of JSON where both readings are certain to agree, and declines the
 * rest: anything the YAML decoder would report (invalid UTF-8, characters YAML refuses or reads
 * as line breaks, surrogate escapes, duplicate keys, nesting deeper than MANIFEST_MAX_DEPTH,
 * scalars over MANIFEST_MAX_SCALAR_BYTES, a key libyaml would not see as one), anything that is
 * not JSON, a root that is not an object, and line breaks before the end of the root object.
 *
 * Returns 0 with *ret (caller frees with mnode_free()), JSON_NODE_DECLINED, or MESHCA_ENOMEM.
 */
int json_node_parse(const char *name, const char *data, size_t len, mnode **ret);

#endif
