/* lifetime.c - lifetime lint: CA lifetimes against the leaves they sign (warnings, pure). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "manifests/node.h"
#include "validators/validators.h"

/* Builtin default of conf.caCert.expiration (SPEC S2), in seconds. */
#define BUILTIN_DEFAULT_CA_S (10 * 365 * 86400LL)

/* RFC 3339 UTC, as the CA checks print times. */
static void format_time(int64_t t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "%lld", (long long)t);
}

void validate_lifetime_conf(const mesh *m, diag_list *out)
{
    for (size_t i = 0; i < m->nbackends; i++) {
        const mesh_backend *b = &m->backends[i];
        if (!b->type.value || strcmp(b->type.value, "builtin") != 0)
            continue;
        const mnode *exp = mnode_get(mnode_get(b->conf, "caCert"), "expiration");
        int64_t ca_ms = BUILTIN_DEFAULT_CA_S * 1000;
        /* A malformed value is the CA check's (ca-conf) to report. */
        if (exp && (!mnode_is_string(exp) || model_parse_duration(exp->scalar, &ca_ms) < 0))
            continue;
        int64_t leaf_ms = mesh_backend_leaf_lifetime_ms(b);
        if (ca_ms >= leaf_ms)
            continue;
        /* Both as the user wrote them, so the message quotes the manifest. */
        char ca_text[32], leaf_text[32], path[96];
        const model_duration *leaf = &b->dp_cert.rotation_expiration;
        if (exp && strlen(exp->scalar) < sizeof ca_text)
            snprintf(ca_text, sizeof ca_text, "%s", exp->scalar);
        else
            model_format_duration(ca_ms, ca_text, sizeof ca_text);
        if (leaf->set && leaf->text[0])
            snprintf(leaf_text, sizeof leaf_text, "%s", leaf->text);
        else
            model_format_duration(leaf_ms, leaf_text, sizeof leaf_text);
        snprintf(path, sizeof path, exp ? "mtls.backends[%zu].conf.caCert.expiration"
                                        : "mtls.backends[%zu]", i);
        diag_warning(out, "ca-shorter-than-leaf", exp ? &exp->mark : &b->mark,
                     path,
                     "backend '%s': caCert.expiration %s is shorter than dpCert.rotation.expiration "
                     "%s: every certificate is cut short at the CA's expiry and the mesh stops "
                     "working when the CA expires; make caCert.expiration much longer than the "
                     "leaves",
                     b->name.value ? b->name.value : "", ca_text, leaf_text);
    }
}

void validate_ca_lifetime(const mesh *m, size_t index, int64_t ca_not_after, int64_t now,
                          diag_list *out)
{
    if (index >= m->nbackends)
        return;
    const mesh_backend *b = &m->backends[index];
    const char *name = b->name.value ? b->name.value : "";
    int64_t leaf_s = mesh_backend_leaf_lifetime_ms(b) / 1000;
    /* The earliest renewal point of a leaf issued now (pki_renewal_point: 70-85 %). */
    int64_t renew_at = now + leaf_s * LIFETIME_RENEWAL_PERCENT / 100;
    char when[40], renew[40], path[48];
    format_time(ca_not_after, when, sizeof when);
    snprintf(path, sizeof path, "mtls.backends[%zu]", index);

    if (ca_not_after <= now) {
        diag_warning(out, "ca-expired", &b->mark, path,
                     "the CA of backend '%s' expired at %s: dataplanes cannot get certificates "
                     "from it; add a new backend and rotate to it (see 'meshca help apply')",
                     name, when);
    } else if (ca_not_after < renew_at) {
        format_time(renew_at, renew, sizeof renew);
        diag_warning(out, "renewal-after-ca-expiry", &b->mark, path,
                     "the CA of backend '%s' expires at %s, before a certificate issued now "
                     "would be renewed (%s at the earliest): certificates are cut short at the "
                     "CA's expiry and renewal cannot outlast it; rotate to a new CA now",
                     name, when, renew);
    } else if (ca_not_after < now + LIFETIME_EXPIRING_S) {
        diag_warning(out, "ca-expires-soon", &b->mark, path,
                     "the CA of backend '%s' expires within 30 days, at %s; plan a rotation to "
                     "a new CA now",
                     name, when);
    }
}
