/* bundle.c - builds a mesh trust bundle from the CA chains of its backends, de-duplicated by DER. */
#include "reconciler/bundle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/pki.h"

static int append(char **buf, size_t *len, const char *s)
{
    size_t n = strlen(s);
    char *grown = realloc(*buf, *len + n + 1);

    if (!grown)
        return PKI_ENOMEM;
    memcpy(grown + *len, s, n + 1);
    *buf = grown;
    *len += n;
    return PKI_OK;
}

/* X509_cmp compares the DER encodings' digests: equal certificates, not equal names. */
static int seen(STACK_OF(X509) *added, X509 *x)
{
    for (int i = 0; i < sk_X509_num(added); i++)
        if (X509_cmp(sk_X509_value(added, i), x) == 0)
            return 1;
    return 0;
}

int bundle_build(const char *const *chains, size_t n, size_t enabled, char **ret_pem,
                 char *errbuf)
{
    STACK_OF(X509) *added = sk_X509_new_null();
    char *out = NULL;
    size_t len = 0;
    int r = PKI_OK;

    if (!added || !ret_pem)
        return PKI_ENOMEM;
    for (size_t k = 0; k < n + 1 && r == PKI_OK; k++) {
        /* pass 0: the enabled backend; then all others in order */
        size_t i = k == 0 ? enabled : k - 1;
        STACK_OF(X509) *chain = NULL;

        if (i >= n || (k > 0 && i == enabled))
            continue;
        r = pki_chain_from_pem(chains[i], chains[i] ? strlen(chains[i]) : 0, &chain, errbuf);
        for (int j = 0; r == PKI_OK && j < sk_X509_num(chain); j++) {
            X509 *x = sk_X509_value(chain, j);
            char *pem;

            if (seen(added, x))
                continue;
            if ((r = pki_cert_to_pem(x, &pem, errbuf)) < 0)
                break;
            r = append(&out, &len, pem);
            free(pem);
            if (r == PKI_OK && !sk_X509_push(added, x))
                r = PKI_ENOMEM;
            else if (r == PKI_OK)
                X509_up_ref(x);
        }
        sk_X509_pop_free(chain, X509_free);
    }
    sk_X509_pop_free(added, X509_free);
    if (r == PKI_OK && !out) {
        if (errbuf)
            snprintf(errbuf, PKI_ERRBUF, "trust bundle would be empty");
        r = PKI_EINVAL;
    }
    if (r < 0) {
        free(out);
        return r;
    }
    *ret_pem = out;
    return PKI_OK;
}
