/* ca_file.c - checks an agent's --ca-file once, before it is handed to libcurl. */
#include "reconciler/api/ca_file.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* libcurl reports a missing or empty CA file only when it connects, as "error setting
 * certificate file", which the agent takes for an unreachable controller and retries for
 * ever: a file that can never work is a mistake to name at start, not a reason to wait. */
int api_ca_file_check(const char *path, char *errbuf)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return meshca_fail(errbuf, MESHCA_EIO, "cannot read %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return meshca_fail(errbuf, MESHCA_EIO, "%s is not a regular file", path);
    FILE *f = fopen(path, "r");
    if (!f)
        return meshca_fail(errbuf, MESHCA_EIO, "cannot read %s: %s", path, strerror(errno));
    /* PEM_read_X509 skips blocks of other types (a key, parameters) up to a certificate. */
    X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ERR_clear_error();
    if (!cert)
        return meshca_fail(errbuf, MESHCA_EINVAL,
                           "%s holds no PEM certificate; pass the control-plane CA "
                           "('meshca cp-ca -o pem' against the controller's store)",
                           path);
    X509_free(cert);
    return 0;
}
