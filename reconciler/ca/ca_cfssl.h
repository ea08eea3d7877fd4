/* ca_cfssl.h - the cfssl CA backend (ca_cfssl_ops in ca_backend.h) and its offline conf check. */
#ifndef MESHCA_CA_CFSSL_H
#define MESHCA_CA_CFSSL_H

#include "manifests/diag.h"
#include "reconciler/ca_backend.h"

/* What `validate` can check without cfssl: conf.intermediateExpiration (ca-conf at
 * mtls.backends[i].conf.intermediateExpiration). Sends nothing. Returns the errors added. */
size_t ca_cfssl_check_conf(const ca_context *ctx, diag_list *diags);

#endif
