/* roots.h - the Consul-shaped `meshca roots` document (S8) built from each backend's CA chain. */
#ifndef MESHCA_ROOTS_H
#define MESHCA_ROOTS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "reconciler/pki.h"

typedef struct roots_entry {
    const char *backend;        /* backend name */
    const char *chain_pem;      /* signing CA first, its issuers after, root last; borrowed */
    const char *cross_signed_pem;   /* NULL, or a cross-signed cert listed in IntermediateCerts */
    bool active;                /* the enabled backend */
} roots_entry;

/* Builds {"ActiveRootID","TrustDomain","Roots":[...]} with one root per entry: RootCert is the
 * last certificate of the chain, IntermediateCerts the others then the cross-signed one; ID is
 * the SHA-1 of RootCert's DER in colon hex, SigningKeyID the SKI of the signing CA,
 * PrivateKeyType/Bits its key. ActiveRootID is "" when no entry is active. Returns PKI_OK and a
 * new reference in *ret (json_decref), or PKI_EINVAL for an unparsable chain. */
int roots_build(const char *mesh, const roots_entry *entries, size_t n, json_t **ret,
                char *errbuf);

/* During a forced switch, the certificate chain served with a leaf (leaf_chain_pem: the leaf,
 * then the cross-signed CA and the backend's intermediates) carries the backend's signing CA
 * re-signed by the old one. Finds it by what it is - the signing CA's subject and key (first
 * certificate of ca_chain_pem) under another issuer - not by its position, so a provided
 * chain's intermediates are never taken for it. *ret: its PEM (caller frees), or NULL when the
 * chain holds none. Returns PKI_OK, PKI_EINVAL for an unparsable chain, or PKI_ENOMEM. */
int roots_find_cross_signed(const char *leaf_chain_pem, const char *ca_chain_pem, char **ret,
                            char *errbuf);

#endif
