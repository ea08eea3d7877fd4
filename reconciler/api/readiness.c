/* readiness.c - whether a controller replica can serve the dataplane API now (GET /readyz), decided
 * from what its loop last saw, without I/O. */
#include "reconciler/api/readiness.h"

#include <stdio.h>

#include "manifests/error.h"
#include "reconciler/pki.h"

static bool failing(const char *line)
{
    return line && line[0];
}

const char *readiness_check(const readiness_input *in, char *errbuf)
{
    const char *store = failing(in->election_failure)              ? in->election_failure
                        : failing(in->ca_check_failure)            ? in->ca_check_failure
                        : in->leading && failing(in->pass_failure) ? in->pass_failure
                                                                   : NULL;
    if (store) {
        snprintf(errbuf, MESHCA_ERRBUF, "the store failed on its last attempt: %s", store);
        return READINESS_STORE;
    }
    if (!in->tls_loaded) {
        snprintf(errbuf, MESHCA_ERRBUF, "the dataplane API has no certificate loaded");
        return READINESS_TLS;
    }
    if (in->tls_not_after && in->tls_not_after <= in->now) {
        char when[32] = "";
        pki_format_time(in->tls_not_after, when, sizeof(when));
        snprintf(errbuf, MESHCA_ERRBUF,
                 "the dataplane API's certificate expired at %s (renew it: doc/cp-ca.md)", when);
        return READINESS_TLS;
    }
    if (!in->leading && !failing(in->leader)) {
        snprintf(errbuf, MESHCA_ERRBUF,
                 "this replica follows and sees no leader: nothing would sign the keys it stores");
        return READINESS_LEADER;
    }
    return NULL;
}
