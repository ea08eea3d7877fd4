/* identity_json.h - a stored identity record written and read without a JSON tree (the full reconcile pass). */
#ifndef MESHCA_IDENTITY_JSON_H
#define MESHCA_IDENTITY_JSON_H

#include <stddef.h>

#include "reconciler/state.h"

/*
 * The record of *id as JSON text, byte for byte what jansson's json_dumps(JSON_COMPACT |
 * JSON_PRESERVE_ORDER) writes for it (the format identity_read and identity_peek take): keys in
 * a fixed order (`since` last, and only when not 0), an absent optional string as null,
 * strings escaped as jansson does ('"', '\\', \b \f \n \r \t, other control characters as
 * \u00XX). Building a jansson tree per record cost
 * a full pass 9 % of its time (doc/performance.md). Returns the text (caller frees), or NULL
 * when out of memory, when mesh or dataplane is NULL, or when a string is not valid UTF-8 (as
 * jansson refuses it). A bundle backend name that is NULL or not UTF-8 is left out, as jansson
 * leaves it out.
 */
char *identity_json_encode(const identity *id);

/*
 * Reads the whole record `json` (as identity_json_encode writes it) into *ret, every field
 * identity_read reads, with the same values. Returns 0, or -1 for anything this reader does not
 * take: not an object, a raw control character, invalid UTF-8, \u0000 or a lone surrogate in a
 * string (what jansson refuses too), a
 * value of an unexpected type, a nested object, a number that is not an integer, a required
 * field missing (mesh, dataplane; certificate and publicKey once issued; pendingPublicKey
 * before), out of memory. The caller then reads the record with identity_read, which names what
 * is wrong. Free *ret with identity_clear().
 */
int identity_json_decode(const char *json, size_t len, identity *ret);

#endif
