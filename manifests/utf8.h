/* utf8.h - one UTF-8 sequence decoded and checked, for the JSON readers and writers that must refuse what libyaml and jansson refuse. */
#ifndef MESHCA_UTF8_H
#define MESHCA_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length of the valid UTF-8 sequence at p (at most `left` bytes, left > 0), with its code point
 * in *ret_cp, or 0: a stray continuation byte, a cut sequence, overlong forms, surrogates and
 * code points over U+10FFFF are refused (jansson and libyaml's reader both refuse them). An
 * ASCII byte is a sequence of 1. */
size_t utf8_decode(const unsigned char *p, size_t left, uint32_t *ret_cp);

#endif
