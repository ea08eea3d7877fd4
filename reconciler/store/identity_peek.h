/* identity_peek.h - the small fields of a stored identity record, read without a JSON tree (the no-op pass). */
#ifndef MESHCA_IDENTITY_PEEK_H
#define MESHCA_IDENTITY_PEEK_H

#include <stddef.h>

#include "reconciler/state.h"

/* Which of the large fields the record holds (they are not copied). */
enum {
    PEEK_CERTIFICATE = 1u << 0,
    PEEK_PUBLIC_KEY = 1u << 1,
    PEEK_PENDING_KEY = 1u << 2,
};

/*
 * Reads the identity record `json` (as identity_encode writes it) into *ret without its
 * certificate, keys and CSRs: those are only flagged in *ret_flags. Decoding the whole record
 * with jansson copies its PEM strings byte by byte, and a pass over 100,000 unchanged
 * dataplanes did little else (doc/performance.md). Returns 0, or -1 for anything this reader
 * does not take (not an object, a \u escape, a nested object, a missing mesh or dataplane, out
 * of memory): the caller then reads the record with identity_read, which names what is wrong.
 * Free *ret with identity_clear().
 */
int identity_peek(const char *json, size_t len, identity *ret, unsigned *ret_flags);

#endif
