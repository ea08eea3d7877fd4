/* cpca_watch.c - what the controller holds of the control-plane CA between its checks: the
 * rotation's phase and each certificate's expiry, decoded only when the object moved. */
#define _GNU_SOURCE 1 /* strptime, timegm */
#define _GNU_SOURCE 1 /* strptime, timegm */
#include "reconciler/api/cpca_watch.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "manifests/error.h"
#include "reconciler/pki.h"

static const char *const role_names[] = {"current", "next", "previous"};

/* notAfter of a PEM certificate; 0 when there is none or it cannot be read. */
static int64_t not_after_of(const char *pem)
{
    X509 *cert = NULL;
    int64_t t = 0;
    char err[MESHCA_ERRBUF];
    if (!pem || !pem[0])
        return 0;
    if (pki_cert_from_pem(pem, strlen(pem), &cert, err) != 0 || pki_cert_not_after(cert, &t) < 0)
        t = 0;
    X509_free(cert);
    ERR_clear_error();
    return t;
}

/* An RFC 3339 UTC time as cpca_rotate writes it (pki_format_time); 0 when absent or odd. */
static int64_t parse_time(const char *text)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!text || !text[0])
        return 0;
    const char *end = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    return end ? (int64_t)timegm(&tm) : 0;
}

void cpca_watch_free(cpca_watch *w)
{
    if (!w)
        return;
    cpca_rotation_free(&w->r);
    unsigned long decodes = w->decodes;
    *w = (cpca_watch)CPCA_WATCH_INIT;
    w->decodes = decodes;
}

int cpca_watch_poll(cpca_watch *w, store *s, char *errbuf)
{
    uint64_t rev = 0;
    int rc = store_revision(s, &rev);
    if (rc < 0)
        return meshca_fail(errbuf, rc, "cannot read the store's revision: %s",
                           store_errmsg(s)[0] ? store_errmsg(s) : store_strerror(rc));
    /* Nothing was written anywhere since the last check: the object is as held. */
    if (w->revision && rev == w->revision)
        return 0;
    const store_key k = {CPCA_KIND, CPCA_MESH, CPCA_NAME};
    char *value = NULL;
    size_t len = 0;
    uint64_t version = 0;
    rc = store_get(s, &k, &value, &len, &version);
    if (rc == STORE_ENOTFOUND) {
        bool had = w->known;
        cpca_watch_free(w);
        w->revision = rev;
        return had;
    }
    if (rc < 0)
        return meshca_fail(errbuf, rc, "cp-ca: cannot read the control-plane CA: %s",
                           store_errmsg(s)[0] ? store_errmsg(s) : store_strerror(rc));
    /* Other objects were written (dataplanes, identities): this one is as held. */
    if (w->known && version == w->version) {
        pki_free_secret(value);
        w->revision = rev;
        return 0;
    }
    cpca_rotation r = {0};
    rc = cpca_rotation_decode(value, len, &r, errbuf);
    pki_free_secret(value); /* it holds the CA's key */
    if (rc < 0)
        return rc;
    cpca_watch_free(w);
    w->decodes++;
    w->r = r;
    w->known = true;
    w->revision = rev;
    w->version = version;
    w->not_after[CPCA_WATCH_ROLE_CURRENT] = not_after_of(r.current_cert);
    w->not_after[CPCA_WATCH_ROLE_NEXT] = not_after_of(r.next_cert);
    w->not_after[CPCA_WATCH_ROLE_PREVIOUS] = not_after_of(r.previous_cert);
    w->phase_since = r.phase == CPCA_PHASE_STARTED    ? parse_time(r.next_created)
                     : r.phase == CPCA_PHASE_SWITCHED ? parse_time(r.switched_at)
                                                      : 0;
    return 1;
}

void cpca_watch_render(const cpca_watch *w, metrics_text *t)
{
    if (!w || !w->known)
        return;
    static const char na[] = "meshca_cp_ca_cert_not_after_seconds";
    metrics_text_family(t, na, "gauge",
                        "When each control-plane CA certificate expires (seconds since the epoch), "
                        "by role: current signs the API's certificate, next is the one cp-ca "
                        "rotate made, previous the one --switch replaced");
    for (size_t i = 0; i < 3; i++)
        if (w->not_after[i])
            metrics_text_sample(t, na, (const char *const[]){"role", role_names[i], NULL},
                                (double)w->not_after[i]);
    static const char ph[] = "meshca_cp_ca_rotation_phase";
    metrics_text_family(t, ph, "gauge",
                        "The control-plane CA rotation's phase (cp-ca rotate): 1 for the phase it "
                        "is in, 0 for the others");
    static const cpca_phase phases[] = {CPCA_PHASE_NONE, CPCA_PHASE_STARTED, CPCA_PHASE_SWITCHED};
    for (size_t i = 0; i < 3; i++)
        metrics_text_sample(t, ph, (const char *const[]){"phase", cpca_phase_name(phases[i]), NULL},
                            w->r.phase == phases[i] ? 1 : 0);
    static const char since[] = "meshca_cp_ca_rotation_phase_since_seconds";
    metrics_text_family(t, since, "gauge",
                        "Since when the control-plane CA rotation is in its phase (seconds since "
                        "the epoch); absent when no rotation is in progress");
    if (w->r.phase != CPCA_PHASE_NONE && w->phase_since)
        metrics_text_sample(t, since,
                            (const char *const[]){"phase", cpca_phase_name(w->r.phase), NULL},
                            (double)w->phase_since);
}
