/* error.h - the library's one error convention: a negative code from one enum, plus a message. */
#ifndef MESHCA_ERROR_H
#define MESHCA_ERROR_H

#include <stddef.h>

/*
 * Every library function that can fail returns 0 or one of these codes. Module headers name
 * them with their own prefix (STORE_ENOTFOUND, PKI_ECRYPTO, ...) as aliases of these values, so
 * a code passed up from one module to another keeps its meaning: callers pass it on unchanged.
 */
enum meshca_code {
    MESHCA_OK = 0,
    MESHCA_EINVAL = -1,       /* bad argument, unparsable or refused input */
    MESHCA_ENOMEM = -2,       /* out of memory */
    MESHCA_EIO = -3,          /* a file, the store or a peer failed (exit code 2) */
    MESHCA_ENOTFOUND = -4,    /* no such object, file, secret or datasource */
    MESHCA_ECONFLICT = -5,    /* compare-and-swap failed: someone else wrote first */
    MESHCA_EUNSUPPORTED = -6, /* known, but not available in this build */
    MESHCA_ECRYPTO = -7,      /* OpenSSL failed; its drained error queue is in the message */
    MESHCA_EEXPIRED = -8,     /* a CA is expired or not yet valid ("ca-expired") */
    MESHCA_EEXIST = -9,       /* refusing to overwrite */
    MESHCA_EUNAVAILABLE = -10, /* temporarily unavailable: retry with backoff */
    MESHCA_ECORRUPT = -11,    /* a stored object or file is not what it should be */
    MESHCA_ESTATE = -12,      /* a check refused the operation in the current state */
    MESHCA_ECOMPACTED = -13,  /* a watch asked for changes older than the store keeps: re-list */
    MESHCA_EINSECURE = -14,   /* a file or directory others can read or write: refused (exit 2) */
    MESHCA_EUNAUTHENTICATED = -15, /* a credential the store no longer backs (API: 401) */
};

/* Size of every message buffer (char errbuf[MESHCA_ERRBUF]). Messages never hold key material. */
#define MESHCA_ERRBUF 512

/* Static text for a code ("not found", ...); never NULL. */
const char *meshca_strerror(int code);

/*
 * Writes a one-line message into errbuf (MESHCA_ERRBUF bytes; NULL accepted) and returns code,
 * so a failure is reported and returned in one statement: return meshca_fail(errbuf, rc, ...).
 */
int meshca_fail(char *errbuf, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
