/* lifetime.c - the CA expiry the lifetime lint (validators/lifetime.c) needs, read from the store. */
#include "reconciler/lifetime.h"

#include <stdio.h>
#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

int lifetime_builtin_not_after(const ca_context *ctx, int64_t *ret_not_after)
{
    char name[320], errbuf[PKI_ERRBUF] = "";
    char *pem = NULL;
    size_t len = 0;
    X509 *cert = NULL;

    if (!ctx->secret_lookup || !ctx->backend->name.value)
        return PKI_ENOENT;
    if ((size_t)snprintf(name, sizeof(name), "%s.ca-builtin-cert-%s", ctx->mesh,
                         ctx->backend->name.value) >= sizeof(name))
        return PKI_EINVAL;
    int rc = ctx->secret_lookup(ctx->secret_userdata, name, &pem, &len);
    if (rc < 0)
        return rc;
    int64_t not_after = 0;
    rc = pki_cert_from_pem(pem, len, &cert, errbuf);
    if (rc == 0)
        rc = pki_cert_not_after(cert, &not_after);
    X509_free(cert);
    OPENSSL_cleanse(pem, len);   /* lookups hand out secret data: wiped whatever it holds */
    free(pem);
    if (rc < 0)
        return rc;
    *ret_not_after = not_after;
    return 0;
}
