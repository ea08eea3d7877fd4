/* identity_since.h - whether a dataplane's client certificate still speaks for the identity the store holds. */
#ifndef MESHCA_IDENTITY_SINCE_H
#define MESHCA_IDENTITY_SINCE_H

#include <stdint.h>

#include "manifests/error.h"
#include "reconciler/pki.h"
#include "reconciler/state.h"
#include "reconciler/store.h"

/*
 * How much earlier than the record's `since` a certificate of it may start. The issuer backdates
 * notBefore (pki.c: PKI_LEAF_BACKDATE_S, 60 s; the Vault backend's signer 30 s by default), so
 * the first certificate of a record created at T starts at T - 60 s at the earliest. A
 * certificate issued to a deleted dataplane of the same name starts earlier than that unless it
 * was signed in the minute before the new record was made; a Vault whose not_before_duration
 * is longer than this makes the agent use its token until its next renewal (no outage).
 */
#define IDENTITY_SINCE_SLACK_S PKI_LEAF_BACKDATE_S

/* The `since` of a dataplane the store holds no identity of: no certificate speaks for it. */
#define IDENTITY_SINCE_NONE INT64_MAX

/*
 * Whether a client certificate with notBefore cert_not_before may act for mesh_name/dp_name
 * whose identity record has `since` (IDENTITY_SINCE_NONE: the store holds none, after a delete
 * or a restore from a backup older than the dataplane). 0 when it may: the record was written
 * before `since` was kept (0; a negative one is taken as 0), or the certificate starts at since - IDENTITY_SINCE_SLACK_S or
 * later. Else MESHCA_EUNAUTHENTICATED with a one-line message in errbuf telling the agent to
 * use its token (how a new host, and an agent after a restore, get in).
 */
int identity_since_admits(int64_t since, const char *mesh_name, const char *dp_name,
                          int64_t cert_not_before, char *errbuf);

/* The same for the record *id (NULL: none). */
int identity_admits_cert(const identity *id, const char *mesh_name, const char *dp_name,
                         int64_t cert_not_before, char *errbuf);

/*
 * identity_admits_cert on the record the store holds now, read with identity_peek (its small
 * fields: no certificate copied), for a handler that does not read the identity itself. A
 * record the peek does not take is read whole (identity_read). MESHCA_EUNAVAILABLE when the
 * store cannot be read, MESHCA_ECORRUPT when the record is not an identity.
 */
int identity_cert_current(store *s, const char *mesh_name, const char *dp_name,
                          int64_t cert_not_before, char *errbuf);

#endif
