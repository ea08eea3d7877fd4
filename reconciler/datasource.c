/* datasource.c - reads CA material from a secret, a file, inline base64 or an inline string. */
#include "reconciler/datasource.h"

#include "manifests/base64.h"
#include "manifests/manifest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

static int msg(char *errbuf, int code, const char *what, const char *arg)
{
    if (errbuf)
        snprintf(errbuf, PKI_ERRBUF, "%s%s%s", what, arg ? ": " : "", arg ? arg : "");
    return code;
}

void datasource_free(char *data, size_t len)
{
    if (!data)
        return;
    OPENSSL_cleanse(data, len);
    free(data);
}

static int copy_bytes(const char *src, size_t len, char **ret_data, size_t *ret_len)
{
    char *d = malloc(len + 1);

    if (!d)
        return PKI_ENOMEM;
    memcpy(d, src, len);
    d[len] = '\0';
    *ret_data = d;
    *ret_len = len;
    return PKI_OK;
}

static int decode_base64(const char *text, size_t len, char **ret_data, size_t *ret_len,
                         char *errbuf)
{
    if (len > DATASOURCE_MAX_BYTES * 4 / 3 + 4)
        return msg(errbuf, PKI_EINVAL, "inline data too large", NULL);
    /* The same decoder the validators use, so what validate accepts apply reads. */
    int r = base64_decode(text, len, ret_data, ret_len);
    if (r == MESHCA_ENOMEM)
        return PKI_ENOMEM;
    if (r < 0)
        return msg(errbuf, PKI_EINVAL, "inline is not valid base64", NULL);
    return PKI_OK;
}

static int read_file(const char *path, char **ret_data, size_t *ret_len, char *errbuf)
{
    struct stat st;
    char why[MESHCA_ERRBUF];
    FILE *f = NULL;
    char *buf;
    size_t n;

    /* Opened without blocking and refused unless regular: `file: FIFO` would hang apply and
     * every reconcile pass. */
    int fd = manifest_open_regular(path, &st, why);
    if (fd < 0)
        return meshca_fail(errbuf, fd == MESHCA_ENOTFOUND ? PKI_ENOENT : PKI_EIO,
                           "cannot open file '%s': %s", path, why);
    if (!(f = fdopen(fd, "rb"))) {
        int e = errno;
        close(fd);
        return meshca_fail(errbuf, PKI_EIO, "cannot open file '%s': %s", path, strerror(e));
    }
    buf = malloc(DATASOURCE_MAX_BYTES + 1);
    if (!buf) {
        fclose(f);
        return PKI_ENOMEM;
    }
    n = fread(buf, 1, DATASOURCE_MAX_BYTES + 1, f);
    if (ferror(f) || n > DATASOURCE_MAX_BYTES) {
        fclose(f);
        datasource_free(buf, DATASOURCE_MAX_BYTES + 1);
        return msg(errbuf, PKI_EIO, "cannot read file (error or larger than 1 MiB)", path);
    }
    fclose(f);
    buf[n] = '\0';
    *ret_data = buf;
    *ret_len = n;
    return PKI_OK;
}

bool datasource_is_inline(const mnode *ds)
{
    if (!ds || ds->kind != MNODE_MAP || ds->npairs != 1)
        return false;
    return mnode_get(ds, "inline") || mnode_get(ds, "inlineString");
}

int datasource_read(const mnode *ds, const ca_context *ctx, char **ret_data, size_t *ret_len,
                    char *errbuf)
{
    static const char *const kinds[] = {"secret", "file", "inline", "inlineString"};
    const mnode *v = NULL;
    const char *kind = NULL;

    if (!ds || ds->kind != MNODE_MAP)
        return msg(errbuf, PKI_EINVAL,
                   "datasource must be a mapping with secret, file, inline or inlineString", NULL);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        const mnode *n = mnode_get(ds, kinds[i]);

        if (!n)
            continue;
        if (v)
            return msg(errbuf, PKI_EINVAL, "datasource has more than one source", NULL);
        v = n;
        kind = kinds[i];
    }
    if (!v)
        return msg(errbuf, PKI_EINVAL,
                   "datasource needs one of secret, file, inline, inlineString", NULL);
    if (v->kind != MNODE_SCALAR || !v->scalar)
        return msg(errbuf, PKI_EINVAL, "datasource value must be a string", kind);
    if (v->scalar_len > DATASOURCE_MAX_BYTES * 2)
        return msg(errbuf, PKI_EINVAL, "datasource value too large", kind);

    if (strcmp(kind, "inlineString") == 0)
        return copy_bytes(v->scalar, v->scalar_len, ret_data, ret_len);
    if (strcmp(kind, "inline") == 0)
        return decode_base64(v->scalar, v->scalar_len, ret_data, ret_len, errbuf);
    if (strcmp(kind, "file") == 0)
        return read_file(v->scalar, ret_data, ret_len, errbuf);
    if (!ctx || !ctx->secret_lookup)
        return msg(errbuf, PKI_ENOENT, "no secret store to read secret", v->scalar);
    int r = ctx->secret_lookup(ctx->secret_userdata, v->scalar, ret_data, ret_len);
    if (r == PKI_ENOENT)
        return msg(errbuf, r, "secret not found", v->scalar);
    if (r < 0)
        return msg(errbuf, r, "cannot read secret", v->scalar);
    return PKI_OK;
}
