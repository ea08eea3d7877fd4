/* status_readd.c - forgets stored trust in a backend name that an apply adds (again): see the
 * header. */
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "reconciler/pki.h"
#include "reconciler/state.h"
#include "reconciler/status_readd.h"

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

bool status_readd_is_added(const mesh *prev, const mesh *next, const char *name)
{
    const mesh_backend *nb = mesh_find_backend(next, name);
    if (!nb)
        return false;
    const mesh_backend *pb = prev ? mesh_find_backend(prev, name) : NULL;
    return !pb || !mesh_backend_same_ca(pb, nb);
}

/* The names whose trust an apply of prev -> next forgets. */
typedef struct forget {
    const mesh *prev, *next;
    const char *const *keep;
    size_t nkeep;
} forget;

static bool forgets(const forget *f, const char *name)
{
    if (!status_readd_is_added(f->prev, f->next, name))
        return false;
    for (size_t i = 0; i < f->nkeep; i++)
        if (str_eq(f->keep[i], name))
            return false;
    return true;
}

/* Removes from st->supported_backends every name forgotten; true when any went. */
static bool forget_added(dataplane_status *st, const forget *f)
{
    size_t kept = 0;
    for (size_t i = 0; i < st->nsupported; i++) {
        if (forgets(f, st->supported_backends[i]))
            free(st->supported_backends[i]);
        else
            st->supported_backends[kept++] = st->supported_backends[i];
    }
    bool changed = kept != st->nsupported;
    st->nsupported = kept;
    return changed;
}

static bool lists_added(const dataplane_status *st, const forget *f)
{
    for (size_t i = 0; i < st->nsupported; i++)
        if (forgets(f, st->supported_backends[i]))
            return true;
    return false;
}

bool status_readd_bundle_serves(store *s, const char *mesh_name, const char *name,
                                const char *fp)
{
    mesh_bundle b;
    char errbuf[MESHCA_ERRBUF] = "";
    bool listed = false, holds = false;
    memset(&b, 0, sizeof(b));
    if (!fp || state_read_bundle(s, mesh_name, &b, NULL, errbuf) < 0 || !b.pem)
        goto out;
    size_t index = 0;
    for (size_t i = 0; i < b.nbackends && !listed; i++)
        if ((listed = str_eq(b.backends[i], name)))
            index = i;
    if (!listed)
        goto out;
    /* The certificate at the name's place, and only when the bundle has one per name: one
     * de-duplicated away (two backends with one CA) leaves the places unknown. */
    BIO *bio = BIO_new_mem_buf(b.pem, -1);
    size_t count = 0;
    for (X509 *cert; bio && (cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)); count++) {
        char got[64];   /* pki.h: a fingerprint needs 60 */
        if (count == index)
            holds = pki_fingerprint_sha1(cert, got, sizeof(got)) == 0 && str_eq(got, fp);
        X509_free(cert);
    }
    BIO_free(bio);
    ERR_clear_error();   /* the end of the PEM text reads as an error */
    holds = holds && count == b.nbackends;
out:
    mesh_bundle_clear(&b);
    return listed && holds;
}

void status_readd_free(status_readd *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->texts[i]);
    free(r->texts);
    free(r->ops);
    *r = (status_readd)STATUS_READD_INIT;
}

int status_readd_plan(store *s, const mesh *prev, const mesh *next, const status_set *status,
                      const char *const *keep, size_t nkeep, status_readd *ret)
{
    status_readd r = STATUS_READD_INIT;
    const forget f = {prev, next, keep, nkeep};
    const char *mesh_name = next->name.value;
    size_t want = 0;
    *ret = r;
    if (!mesh_name || !status)
        return 0;
    for (size_t i = 0; i < status->count; i++)
        if (str_eq(status->items[i].mesh, mesh_name) &&
            lists_added(&status->items[i], &f))
            want++;
    if (want == 0)
        return 0;
    r.ops = calloc(want, sizeof(*r.ops));
    r.texts = calloc(want, sizeof(*r.texts));
    if (!r.ops || !r.texts) {
        status_readd_free(&r);
        return STORE_ENOMEM;
    }
    for (size_t i = 0; i < status->count && r.n < want; i++) {
        const dataplane_status *seen = &status->items[i];
        if (!str_eq(seen->mesh, mesh_name) || !lists_added(seen, &f))
            continue;
        /* The version to compare against, and the status as it is now. */
        dataplane_status st;
        uint64_t version = 0;
        memset(&st, 0, sizeof(st));
        int rc = state_get_status(s, mesh_name, seen->name, &st, &version);
        if (rc == STORE_ENOTFOUND)
            continue;   /* deleted since: nothing to forget */
        if (rc < 0) {
            dataplane_status_clear(&st);
            status_readd_free(&r);
            return rc;
        }
        bool forgot = forget_added(&st, &f);
        char *text = forgot ? status_to_json(&st) : NULL;
        dataplane_status_clear(&st);
        if (!forgot)
            continue;   /* acknowledged again since without the name */
        if (!text) {
            status_readd_free(&r);
            return STORE_ENOMEM;
        }
        r.texts[r.n] = text;
        r.ops[r.n] = (store_op){STORE_OP_PUT, {STATE_DPSTATUS, mesh_name, seen->name}, text,
                                strlen(text), version};
        r.n++;
    }
    *ret = r;
    return 0;
}
