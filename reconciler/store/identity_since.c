/* identity_since.c - whether a dataplane's client certificate still speaks for the identity the store holds. */
#include "reconciler/store/identity_since.h"

#include <stdlib.h>

#include "reconciler/store/identity_peek.h"

/* The one answer every refusal gives: what to do, not only what is wrong. */
static int refuse(char *errbuf, const char *mesh_name, const char *dp_name, const char *why)
{
    return meshca_fail(errbuf, MESHCA_EUNAUTHENTICATED,
                       "client certificate refused: %s/%s %s; authenticate with the dataplane "
                       "token (meshca token issue -m %s -d %s) to get a new certificate",
                       mesh_name, dp_name, why, mesh_name, dp_name);
}

int identity_since_admits(int64_t since, const char *mesh_name, const char *dp_name,
                          int64_t cert_not_before, char *errbuf)
{
    if (since == IDENTITY_SINCE_NONE)
        return refuse(errbuf, mesh_name, dp_name,
                      "has no identity in the store (deleted, re-created or restored)");
    if (since > 0 && cert_not_before < since - IDENTITY_SINCE_SLACK_S)
        return refuse(errbuf, mesh_name, dp_name,
                      "was registered again after this certificate was issued");
    return 0;
}

int identity_admits_cert(const identity *id, const char *mesh_name, const char *dp_name,
                         int64_t cert_not_before, char *errbuf)
{
    return identity_since_admits(id ? id->since : IDENTITY_SINCE_NONE, mesh_name, dp_name,
                                 cert_not_before, errbuf);
}

int identity_cert_current(store *s, const char *mesh_name, const char *dp_name,
                          int64_t cert_not_before, char *errbuf)
{
    char *value = NULL;
    size_t len = 0;
    int rc = store_get(s, &(store_key){STATE_IDENTITIES, mesh_name, dp_name}, &value, &len, NULL);
    if (rc == STORE_ENOTFOUND)
        return identity_admits_cert(NULL, mesh_name, dp_name, cert_not_before, errbuf);
    if (rc < 0)
        return meshca_fail(errbuf, MESHCA_EUNAVAILABLE, "cannot read the store: %s",
                           store_strerror(rc));
    identity id = {0};
    unsigned flags = 0;
    rc = identity_peek(value, len, &id, &flags);
    free(value);
    /* What the peek does not take (a \u escape, say) is read whole; errbuf says why not. */
    if (rc < 0 && (rc = identity_read(s, mesh_name, dp_name, &id, NULL, errbuf)) < 0) {
        if (rc == STORE_ENOTFOUND) /* deleted since the first read */
            return identity_admits_cert(NULL, mesh_name, dp_name, cert_not_before, errbuf);
        return rc == STORE_EIO || rc == STORE_EUNAVAILABLE ? MESHCA_EUNAVAILABLE : rc;
    }
    rc = identity_admits_cert(&id, mesh_name, dp_name, cert_not_before, errbuf);
    identity_clear(&id);
    return rc;
}
