/* bundle.h - the trust bundle of a mesh: CA certificates of all backends, enabled one first. */
#ifndef MESHCA_BUNDLE_H
#define MESHCA_BUNDLE_H

#include <stddef.h>

/* Concatenates every certificate of chains[0..n) into one PEM, starting with chains[enabled]
 * (when enabled < n) then the others in order, dropping certificates whose DER was already
 * added. Caller frees *ret_pem with free(). Returns PKI_OK, PKI_EINVAL (an unparsable chain, or
 * no certificate at all) or PKI_ENOMEM, with a message in errbuf. */
int bundle_build(const char *const *chains, size_t n, size_t enabled, char **ret_pem,
                 char *errbuf);

#endif
