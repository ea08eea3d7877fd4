/* base64.c - the one base64 decoder: Secret data, inline datasources, their validation. */
#include "manifests/base64.h"

#include <stdlib.h>
#include <string.h>

#include "manifests/error.h"

static int sextet(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

int base64_decode(const char *text, size_t len, char **ret_data, size_t *ret_len)
{
    size_t symbols = 0, pad = 0, n = 0;
    unsigned acc = 0;
    unsigned char *out = NULL;

    /* Every 4 symbols give at most 3 bytes, so len * 3 / 4 + 1 always fits (never overflows:
     * len is bounded by the input limits, far below SIZE_MAX / 3). */
    if (ret_data && !(out = malloc(len / 4 * 3 + 4)))
        return MESHCA_ENOMEM;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (is_space(c))
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = sextet(c);
        if (v < 0 || pad > 0)   /* outside the alphabet, or data after padding */
            goto bad;
        acc = (acc << 6) | (unsigned)v;
        if (++symbols % 4 == 0) {
            if (out) {
                out[n] = (unsigned char)(acc >> 16);
                out[n + 1] = (unsigned char)(acc >> 8);
                out[n + 2] = (unsigned char)acc;
            }
            n += 3;
            acc = 0;
        }
    }
    if (pad > 2 || (pad > 0 && (symbols + pad) % 4 != 0) || symbols % 4 == 1)
        goto bad;
    /* The last, partial group: 2 symbols give 1 byte, 3 give 2. */
    switch (symbols % 4) {
    case 2:
        if (out)
            out[n] = (unsigned char)(acc >> 4);
        n += 1;
        break;
    case 3:
        if (out) {
            out[n] = (unsigned char)(acc >> 10);
            out[n + 1] = (unsigned char)(acc >> 2);
        }
        n += 2;
        break;
    default:
        break;
    }
    if (out) {
        out[n] = '\0';
        *ret_data = (char *)out;
    }
    if (ret_len)
        *ret_len = n;
    return 0;
bad:
    if (out) {
        /* What was decoded so far may be key material. */
        volatile unsigned char *p = out;
        for (size_t i = 0; i < len / 4 * 3 + 4; i++)
            p[i] = 0;
        free(out);
    }
    return MESHCA_EINVAL;
}

bool base64_valid(const char *text, size_t len)
{
    return base64_decode(text, len, NULL, NULL) == 0;
}
