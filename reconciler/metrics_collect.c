/* metrics_collect.c - what /metrics reads from the store (CA and certificate expiry, trust,
 * pending changes) and what a reconcile pass adds to the controller's counters. */
#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "manifests/manifest.h"
#include "reconciler/lifetime.h"
#include "reconciler/mesh_ca.h"
#include "reconciler/metrics_collect.h"
#include "reconciler/pki.h"
#include "reconciler/state.h"

/* Each family is written to its own buffer while the meshes are walked once, then the buffers
 * are joined: the format wants every sample of a family together, after its HELP and TYPE. */
enum {
    F_CA_NOT_AFTER,
    F_BACKEND_ENABLED,
    F_TRUSTING,
    F_HOLDING,
    F_MESH_DATAPLANES,
    F_PENDING,
    F_PENDING_SINCE,
    F_REFUSED,
    F_DP_NOT_AFTER,
    F_DP_NOT_BEFORE,
    F_DP_GENERATION,
    F_DP_ACKED,
    F_COUNT
};

static const struct {
    const char *name, *help;
} families[F_COUNT] = {
    {"meshca_ca_not_after_seconds",
     "When the CA certificate of a mesh's backend expires (seconds since the epoch)."},
    {"meshca_backend_enabled", "1 for the backend that signs a mesh's certificates, else 0."},
    {"meshca_backend_dataplanes_trusting",
     "Dataplanes whose acknowledged trust bundle holds the backend's CA."},
    {"meshca_backend_dataplanes_holding",
     "Dataplanes whose acknowledged certificate was issued by the backend."},
    {"meshca_mesh_dataplanes", "Dataplanes of the mesh."},
    {"meshca_mesh_pending_change",
     "1 while run --manifests holds a change of the mesh as pending until dataplanes catch up "
     "(reason: why), else 0."},
    {"meshca_mesh_pending_since_seconds",
     "Since when the mesh's pending change has been held (seconds since the epoch)."},
    {"meshca_mesh_refused_change",
     "1 while run --manifests refuses a change of the mesh until the files change (reason: why), "
     "else 0."},
    {"meshca_dataplane_cert_not_after_seconds",
     "When the dataplane's current certificate expires (seconds since the epoch)."},
    {"meshca_dataplane_cert_not_before_seconds",
     "When the dataplane's current certificate became valid (seconds since the epoch)."},
    {"meshca_dataplane_generation", "Generation of the identity issued to the dataplane."},
    {"meshca_dataplane_acknowledged_generation",
     "Generation the dataplane's agent acknowledged (its proxy loaded it); 0 = none."},
};

/* "2026-01-02T03:04:05Z" (as manifest_sync writes "since"); 0 when it is not that. */
static int64_t parse_rfc3339(const char *text)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = text ? strptime(text, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!end || strcmp(end, "Z") != 0)
        return 0;
    time_t t = timegm(&tm);
    return t > 0 ? (int64_t)t : 0;
}

/* A CA's notAfter, also when it refuses to open as expired (a builtin root's date is still in
 * its secret). 0 when unknown. */
static int64_t ca_not_after(store *s, const mesh *m, const mesh_ca *mc, int64_t now)
{
    if (mc->ca)
        return mc->not_after;
    if (mc->code != PKI_EEXPIRED || !mc->backend->type.value ||
        strcmp(mc->backend->type.value, "builtin") != 0)
        return 0;
    state_secrets secrets = {s, m->name.value, NULL};
    ca_context ctx = {.mesh = m->name.value, .backend = mc->backend,
                      .secret_lookup = state_secret_lookup, .secret_userdata = &secrets,
                      .now = now};
    int64_t not_after = 0;
    return lifetime_builtin_not_after(&ctx, &not_after) == 0 ? not_after : 0;
}

/* The pending or refused record of the mesh status: 1 with its reason, else 0 with "". */
static void change_record(metrics_text *f, const char *mesh_name, const json_t *rec)
{
    const char *reason = json_string_value(json_object_get(rec, "reason"));
    const char *labels[] = {"mesh", mesh_name, "reason", reason ? reason : "", NULL};
    metrics_text_sample(f, "", labels, rec ? 1 : 0);
}

static void mesh_samples(store *s, const mesh *m, const manifest_set *set, const status_set *st,
                         int64_t now, metrics_text *f)
{
    const char *mname = m->name.value;
    const char *enabled = mesh_enabled_backend(m);
    status_index idx = STATUS_INDEX_INIT;
    status_index_build(st->items, st->count, mname, &idx);
    size_t ndps = 0;
    for (size_t i = 0; i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind != RESOURCE_DATAPLANE || strcmp(res->u.dataplane.mesh.value, mname) != 0)
            continue;
        ndps++;
        const char *dname = res->u.dataplane.name.value;
        const dataplane_status *const *slot = status_index_find(&idx, dname);
        const char *dl[] = {"mesh", mname, "dataplane", dname, NULL};
        identity id;
        if (identity_get(s, mname, dname, &id, NULL) == 0) {
            if (id.generation > 0 && id.not_after) {
                const char *bl[] = {"mesh", mname, "dataplane", dname, "backend",
                                    id.backend ? id.backend : "", NULL};
                metrics_text_sample(&f[F_DP_NOT_AFTER], "", bl, (double)id.not_after);
                metrics_text_sample(&f[F_DP_NOT_BEFORE], "", bl, (double)id.not_before);
            }
            metrics_text_sample(&f[F_DP_GENERATION], "", dl, (double)id.generation);
            identity_clear(&id);
        } else {
            metrics_text_sample(&f[F_DP_GENERATION], "", dl, 0);
        }
        metrics_text_sample(&f[F_DP_ACKED], "", dl,
                            slot ? (double)(*slot)->acknowledged_generation : 0);
    }
    const char *ml[] = {"mesh", mname, NULL};
    metrics_text_sample(&f[F_MESH_DATAPLANES], "", ml, (double)ndps);

    mesh_ca *cas = NULL;
    bool opened = mesh_cas_open(s, m, now, &cas) == 0;
    for (size_t b = 0; b < m->nbackends; b++) {
        const char *bname = m->backends[b].name.value;
        if (!bname)
            continue;
        const char *bl[] = {"mesh", mname, "backend", bname, NULL};
        size_t trusting = 0, holding = 0;
        for (size_t i = 0; i < idx.count; i++) {
            trusting += status_supports(idx.items[i], bname);
            holding += idx.items[i]->issued_backend &&
                       strcmp(idx.items[i]->issued_backend, bname) == 0;
        }
        metrics_text_sample(&f[F_TRUSTING], "", bl, (double)trusting);
        metrics_text_sample(&f[F_HOLDING], "", bl, (double)holding);
        metrics_text_sample(&f[F_BACKEND_ENABLED], "", bl,
                            enabled && strcmp(enabled, bname) == 0 ? 1 : 0);
        int64_t not_after = opened ? ca_not_after(s, m, &cas[b], now) : 0;
        if (not_after) {
            const char *tl[] = {"mesh", mname, "backend", bname, "type",
                                m->backends[b].type.value ? m->backends[b].type.value : "",
                                NULL};
            metrics_text_sample(&f[F_CA_NOT_AFTER], "", tl, (double)not_after);
        }
    }
    if (opened)
        mesh_cas_free(cas, m->nbackends);
    status_index_free(&idx);

    json_t *mstatus = NULL;
    if (state_get_mesh_status(s, mname, &mstatus, NULL) < 0)
        mstatus = NULL;
    const json_t *pending = json_object_get(mstatus, "pending");
    change_record(&f[F_PENDING], mname, pending);
    change_record(&f[F_REFUSED], mname, json_object_get(mstatus, "refused"));
    int64_t since = parse_rfc3339(json_string_value(json_object_get(pending, "since")));
    if (pending && since)
        metrics_text_sample(&f[F_PENDING_SINCE], "", ml, (double)since);
    json_decref(mstatus);
}

/* Prefixes each sample line of f (written with an empty name) with the family's name. */
static void join_family(metrics_text *out, size_t i, const metrics_text *f)
{
    metrics_text_family(out, families[i].name, "gauge", families[i].help);
    const char *p = f->buf, *end = f->buf ? f->buf + f->len : NULL;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
        metrics_text_append(out, families[i].name, strlen(families[i].name));
        metrics_text_append(out, p, n);
        p += n;
    }
}

int metrics_collect(store *s, int64_t now, metrics_text *t, char *errbuf)
{
    manifest_set *set = manifest_set_new();
    status_set st = STATUS_SET_INIT;
    diag_list diags = DIAG_LIST_INIT;
    if (!set)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    int rc = state_load_resources(s, NULL, set, &diags);
    if (rc == 0)
        rc = state_load_status(s, NULL, &st);
    diag_list_free(&diags);
    if (rc < 0) {
        manifest_set_free(set);
        status_set_free(&st);
        return meshca_fail(errbuf, rc, "cannot read the store: %s", store_strerror(rc));
    }
    metrics_text f[F_COUNT];
    for (size_t i = 0; i < F_COUNT; i++)
        f[i] = (metrics_text)METRICS_TEXT_INIT;
    for (size_t i = 0; i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind == RESOURCE_MESH)
            mesh_samples(s, &res->u.mesh, set, &st, now, f);
    }
    for (size_t i = 0; i < F_COUNT; i++) {
        join_family(t, i, &f[i]);
        if (f[i].failed)
            t->failed = true;
        metrics_text_free(&f[i]);
    }
    manifest_set_free(set);
    status_set_free(&st);
    return t->failed ? meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory") : 0;
}

void metrics_count_pass(metrics *m, int rc, const reconcile_report *rep, const diag_list *diags)
{
    if (!m)
        return;
    if (rc < 0) {
        const char *labels[] = {"code", "store-error", NULL};
        metrics_count(m, METRICS_ERRORS, labels, 1);
        return;
    }
    for (size_t i = 0; i < rep->nactions; i++) {
        const reconcile_action *a = &rep->actions[i];
        /* A rebundle rewrites the identity with the same certificate: nothing was signed. */
        if (a->verb == RECONCILE_REBUNDLED)
            continue;
        const char *labels[] = {"mesh", a->mesh, "backend", a->backend ? a->backend : "", NULL};
        metrics_count(m, METRICS_SIGNATURES, labels, 1);
    }
    for (size_t i = 0; diags && i < diags->count; i++) {
        if (diags->items[i].severity != DIAG_ERROR)
            continue;
        const char *labels[] = {"code", diags->items[i].code ? diags->items[i].code : "", NULL};
        metrics_count(m, METRICS_ERRORS, labels, 1);
    }
}
