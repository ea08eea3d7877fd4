/* ca_offline.h - the CA checks `validate` can make without a store: what the manifest holds. */
#ifndef MESHCA_CA_OFFLINE_H
#define MESHCA_CA_OFFLINE_H

#include <stddef.h>
#include <stdint.h>

#include "manifests/diag.h"
#include "manifests/model.h"

/*
 * Runs apply's own backend checks on what a Mesh's manifest holds, opening nothing else, so an
 * offline `validate` refuses what `apply` would: a builtin backend's conf (caCert.expiration,
 * caCert.RSAbits: ca-conf), a cfssl backend's intermediateExpiration (ca-conf), and a provided backend's inline or inlineString cert and key (every
 * ca-* rule of ca_provided_check_material()). Backends whose material is in a secret or a file,
 * and external CAs, are left to apply. Skipped for a mesh with skipValidation, as apply skips
 * it. Diagnostics carry the value's mark and path mtls.backends[i].conf... `now` is seconds
 * since the epoch. Returns the number of errors added.
 */
size_t ca_check_offline(const mesh *m, int64_t now, diag_list *diags);

#endif
