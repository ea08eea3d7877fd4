/* node.h - a generic YAML/JSON document tree in which every node keeps its source mark. */
#ifndef MESHCA_NODE_H
#define MESHCA_NODE_H

#include <stdbool.h>
#include <stddef.h>

#include "manifests/diag.h"

typedef enum mnode_kind {
    MNODE_SCALAR = 0,
    MNODE_MAP,
    MNODE_SEQ,
} mnode_kind;

/* How a scalar was written, so that `port: "8080"` (string) and `port: 8080` (int) differ. */
typedef enum mnode_style {
    MNODE_PLAIN = 0,  /* plain scalar: may be null/bool/int/float/string */
    MNODE_QUOTED,     /* single/double quoted, literal or folded: always a string */
} mnode_style;

typedef struct mnode mnode;

typedef struct mnode_pair {
    mnode *key;   /* always a scalar (the decoder refuses complex keys) */
    mnode *value;
} mnode_pair;

/* A node owns its children, its scalar text and nothing else. `mark.file` is borrowed. */
struct mnode {
    mnode_kind kind;
    source_mark mark;
    /* MNODE_SCALAR */
    char *scalar;      /* NUL-terminated; `scalar_len` excludes the NUL (scalars may hold NUL bytes) */
    size_t scalar_len;
    mnode_style style;
    /* MNODE_MAP */
    mnode_pair *pairs;
    size_t npairs;
    /* MNODE_SEQ */
    mnode **items;
    size_t nitems;
};

/* Constructors; NULL on out-of-memory. The mark is copied. */
mnode *mnode_new_scalar(const char *text, size_t len, mnode_style style, source_mark mark);
mnode *mnode_new_map(source_mark mark);
mnode *mnode_new_seq(source_mark mark);
/* Take ownership of key and value / item, also on failure (they are freed then). Return 0 or
 * MESHCA_ENOMEM. */
int mnode_map_append(mnode *map, mnode *key, mnode *value);
int mnode_seq_append(mnode *seq, mnode *item);
/* Deep copy (used for alias expansion); NULL when `node` is NULL or on out-of-memory. */
mnode *mnode_clone(const mnode *node);
/* Accepts NULL. */
void mnode_free(mnode *node);

/* Borrowed lookups; NULL when absent or when `map` is not a map. */
mnode *mnode_get(const mnode *map, const char *key);
const mnode_pair *mnode_get_pair(const mnode *map, const char *key);

/* Scalar interpretation (YAML 1.2 core schema on plain scalars). Each returns false when the node
 * is not of that type. */
bool mnode_is_null(const mnode *node);          /* plain "", "~", "null", "Null", "NULL" */
bool mnode_as_bool(const mnode *node, bool *ret);
bool mnode_as_int(const mnode *node, long long *ret);
bool mnode_is_string(const mnode *node);        /* a scalar that is not null/bool/number when plain */

/* A short human name of the node's type for messages: "mapping", "sequence", "string",
 * "integer", "boolean", "null", "number". */
const char *mnode_type_name(const mnode *node);

/* Structural equality ignoring marks and scalar style differences that do not change the value. */
bool mnode_equal(const mnode *a, const mnode *b);

#endif
