/* extca_pki.h - OpenSSL helpers shared by the external CA clients: CSRs and checks of what a CA returns. */
#ifndef MESHCA_CA_EXTCA_PKI_H
#define MESHCA_CA_EXTCA_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reconciler/pki.h"

/* A PEM CSR for `key` with subject CN=cn (NULL: empty subject), optional URI SANs, and, when
 * is_ca, a requested basicConstraints CA:TRUE, pathlen:0. Caller frees *ret with free().
 * PKI_EINVAL, PKI_ECRYPTO (the drained OpenSSL queue in errbuf), PKI_ENOMEM. */
int extca_pki_make_csr(EVP_PKEY *key, const char *cn, const char *const *uris, size_t nuris,
                       bool is_ca, char **ret_pem, char *errbuf);

/* Checks that `cert` is an intermediate CA for `key`: CA:TRUE with pathlen 0, keyCertSign, key
 * matches, signed by `root` and verifying against it (X509_V_FLAG_X509_STRICT) at `now`.
 * PKI_EINVAL with the reason in errbuf when it is not. */
int extca_pki_check_intermediate(X509 *cert, EVP_PKEY *key, X509 *root, int64_t now,
                                 char *errbuf);

/* Renewal point of an intermediate: two thirds into its life. */
int64_t extca_pki_intermediate_renewal(int64_t not_before, int64_t not_after);


#endif
