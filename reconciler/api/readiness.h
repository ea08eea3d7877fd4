/* readiness.h - whether a controller replica can serve the dataplane API now (GET /readyz), decided
 * from what its loop last saw, without I/O. */
#ifndef MESHCA_API_READINESS_H
#define MESHCA_API_READINESS_H

#include <stdbool.h>
#include <stdint.h>

/*
 * What the controller's loop last saw. The failure strings are the lines each store user last
 * said ("" or NULL while it works), so readiness follows the store's last attempts without a
 * read of its own: a probe every few seconds adds nothing to the store's load.
 */
typedef struct readiness_input {
    const char *election_failure; /* the leader election's last step */
    const char *ca_check_failure; /* the control-plane CA check's last tick */
    const char *pass_failure;     /* the last reconcile pass's store failure (leader only) */
    bool tls_loaded;              /* the API's SSL_CTX holds a certificate */
    int64_t tls_not_after;        /* its notAfter (0: unknown) */
    bool leading;                 /* this replica leads now */
    const char *leader;           /* the leader this follower last saw ("" or NULL: none) */
    int64_t now;                  /* seconds since the epoch */
} readiness_input;

/* The reason codes of a 503 from /readyz (its JSON error code). */
#define READINESS_STORE "store-unreachable"
#define READINESS_TLS "tls-not-loaded"
#define READINESS_LEADER "no-leader"

/*
 * NULL when the replica can serve: the store answered on its last attempts, a certificate that
 * has not expired is loaded, and, for a follower, a leader is known (one signs the keys it
 * stores). Otherwise the first reason that holds, as a static code above, with one line in
 * errbuf (MESHCA_ERRBUF bytes) saying why.
 */
const char *readiness_check(const readiness_input *in, char *errbuf);

#endif
