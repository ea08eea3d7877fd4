/* agent_identity.h - what an agent checks in an identity answer before it installs it. */
#ifndef MESHCA_AGENT_IDENTITY_H
#define MESHCA_AGENT_IDENTITY_H

#include <openssl/x509.h>

#include "manifests/error.h"

/*
 * The controller is not trusted with the proxy's files: an answer is installed only when
 *  - its leaf (borrowed) names this dataplane: the URI SAN urn:meshca:dataplane:<mesh>:<dp>,
 *    no such SAN of another dataplane, and every spiffe:// SAN of trust domain <mesh>;
 *  - chain_pem (may be NULL or empty) is certificates only, and bundle_pem is 1..PKI_MAX_CHAIN
 *    certificates and nothing else;
 *  - the leaf verifies against the bundle (any of its certificates an anchor), through the
 *    chain, without a time check: the agent's clock may be behind the issuer's backdating, and
 *    notAfter is the controller's to renew.
 * The key is checked by the caller (pki_key_matches). 0, or MESHCA_EINVAL with a one-line
 * reason in errbuf (names and OpenSSL's verify reason only; no PEM).
 */
int agent_identity_check(const char *mesh_name, const char *dp_name, X509 *leaf,
                         const char *chain_pem, const char *bundle_pem, char *errbuf);

/* The answer's `certificate` (leaf_pem) is written to cert.pem as sent: it must hold exactly one
 * certificate (a second would stand in the proxy's chain). 0 or MESHCA_EINVAL. */
int agent_identity_check_leaf_pem(const char *leaf_pem, char *errbuf);

#endif
