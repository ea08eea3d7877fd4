/* error.c - codes and messages of the library's one error convention. */
#include "manifests/error.h"

#include <stdarg.h>
#include <stdio.h>

const char *meshca_strerror(int code)
{
    switch (code) {
    case MESHCA_OK: return "success";
    case MESHCA_EINVAL: return "invalid argument";
    case MESHCA_ENOMEM: return "out of memory";
    case MESHCA_EIO: return "I/O error";
    case MESHCA_ENOTFOUND: return "not found";
    case MESHCA_ECONFLICT: return "conflict: changed by someone else";
    case MESHCA_EUNSUPPORTED: return "not supported in this build";
    case MESHCA_ECRYPTO: return "cryptographic failure";
    case MESHCA_EEXPIRED: return "CA expired or not yet valid";
    case MESHCA_EEXIST: return "already exists";
    case MESHCA_EUNAVAILABLE: return "temporarily unavailable";
    case MESHCA_ECORRUPT: return "corrupt object";
    case MESHCA_ESTATE: return "refused in the current state";
    case MESHCA_ECOMPACTED: return "revision compacted: re-list";
    case MESHCA_EINSECURE: return "permissions too open";
    case MESHCA_EUNAUTHENTICATED: return "unauthenticated";
    }
    return "unknown error";
}

int meshca_fail(char *errbuf, int code, const char *fmt, ...)
{
    if (errbuf) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, MESHCA_ERRBUF, fmt, ap);
        va_end(ap);
    }
    return code;
}
