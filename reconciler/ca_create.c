/* ca_create.c - `meshca ca create`: writes a new CA certificate and key, refusing to overwrite. */
#include "reconciler/ca_create.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reconciler/pki.h"

__attribute__((format(printf, 3, 4))) static int msg(char *errbuf, int code, const char *fmt, ...)
{
    va_list ap;

    if (errbuf) {
        va_start(ap, fmt);
        vsnprintf(errbuf, PKI_ERRBUF, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int exists_or_io(char *errbuf, int err, const char *path)
{
    if (err == EEXIST)
        return msg(errbuf, PKI_EEXIST, "%s already exists, refusing to overwrite", path);
    return msg(errbuf, PKI_EIO, "cannot create %s: %s", path, strerror(err));
}

static int write_all(int fd, const char *data)
{
    size_t len = strlen(data), off = 0;

    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return fsync(fd);
}

int ca_create(const ca_create_options *opts, char *errbuf)
{
    const char *dir = opts && opts->out_dir ? opts->out_dir : ".";
    const char *cn = opts && opts->common_name && *opts->common_name ? opts->common_name
                                                                     : "meshca CA";
    char cert_path[PATH_MAX], key_path[PATH_MAX];
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char *cert_pem = NULL, *key_pem = NULL;
    int cert_fd = -1, key_fd = -1, r;

    if (!opts || opts->days < 1 || opts->days > CA_CREATE_MAX_DAYS)
        return msg(errbuf, PKI_EINVAL, "%s", "--days must be between 1 and 36500");
    if (opts->rsa && opts->bits != 0 && opts->bits != 2048 && opts->bits != 3072 &&
        opts->bits != 4096)
        return msg(errbuf, PKI_EINVAL, "%s", "--key-bits must be 2048, 3072 or 4096");
    if ((size_t)snprintf(cert_path, sizeof(cert_path), "%s/%s", dir, CA_CREATE_CERT_FILE) >=
            sizeof(cert_path) ||
        (size_t)snprintf(key_path, sizeof(key_path), "%s/%s", dir, CA_CREATE_KEY_FILE) >=
            sizeof(key_path))
        return msg(errbuf, PKI_EINVAL, "%s", "output directory path too long");

    r = pki_generate_key(opts->rsa, opts->bits, &key, errbuf);
    if (r < 0)
        goto out;
    r = pki_make_root(key, cn, NULL, opts->now, (int64_t)opts->days * 86400, &cert, errbuf);
    if (r < 0)
        goto out;
    if ((r = pki_cert_to_pem(cert, &cert_pem, errbuf)) < 0 ||
        (r = pki_key_to_pem(key, &key_pem, errbuf)) < 0)
        goto out;

    /* Claim both names with O_EXCL before writing anything, so an existing file stays as is. */
    cert_fd = open(cert_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (cert_fd < 0) {
        r = exists_or_io(errbuf, errno, cert_path);
        goto out;
    }
    key_fd = open(key_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (key_fd < 0) {
        r = exists_or_io(errbuf, errno, key_path);
        close(cert_fd);
        cert_fd = -1;
        unlink(cert_path);
        goto out;
    }
    if (write_all(key_fd, key_pem) < 0 || write_all(cert_fd, cert_pem) < 0) {
        r = msg(errbuf, PKI_EIO, "cannot write CA files in %s", dir);
        unlink(cert_path);
        unlink(key_path);
        goto out;
    }
    r = PKI_OK;
out:
    if (cert_fd >= 0 && close(cert_fd) < 0 && r == PKI_OK)
        r = msg(errbuf, PKI_EIO, "cannot write %s", cert_path);
    if (key_fd >= 0 && close(key_fd) < 0 && r == PKI_OK)
        r = msg(errbuf, PKI_EIO, "cannot write %s", key_path);
    pki_free_secret(key_pem);
    free(cert_pem);
    X509_free(cert);
    EVP_PKEY_free(key);
    return r;
}
