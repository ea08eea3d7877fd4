/* build.c - document trees to typed resources (Universal and Kubernetes forms); shape checks only. */
#include "manifests/manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Field paths are logical: the Kubernetes form's `spec.` prefix is left out, so
 * `mtls.backends[1].name` reads the same whichever form the user wrote. `metadata.*` paths are
 * only used for Kubernetes metadata itself. */
#define FIELD_PATH_MAX 256

typedef struct builder {
    diag_list *diags;
    bool oom;   /* an allocation failed: the resource is incomplete and is dropped */
} builder;

/* Out of memory is reported once, as a diagnostic, and the resource is not returned. */
static void *oom(builder *b, const source_mark *m)
{
    if (!b->oom)
        diag_error(b->diags, "out-of-memory", m, "", "out of memory while building the resource");
    b->diags->out_of_memory = true;
    b->oom = true;
    return NULL;
}

/* Paths longer than the buffer are cut and end in "..." so a truncated path is visible. Built by
 * copying, not snprintf: every field of every stored resource gets its path, and snprintf was a
 * visible share of loading 100,000 Dataplanes. */
static void path_fmt(char *out, const char *parent, const char *sep, const char *key)
{
    const char *dot = (parent[0] && sep[0] == '.') ? "." : "";
    size_t np = strlen(parent), nd = strlen(dot), nk = strlen(key);
    if (np + nd + nk >= FIELD_PATH_MAX) {
        (void)snprintf(out, FIELD_PATH_MAX, "%s%s%s", parent, dot, key);
        memcpy(out + FIELD_PATH_MAX - 4, "...", 4);
        return;
    }
    memcpy(out, parent, np);
    memcpy(out + np, dot, nd);
    memcpy(out + np + nd, key, nk + 1);
}

static void path_key(char *out, const char *parent, const char *key)
{
    path_fmt(out, parent, ".", key);
}

static void path_index(char *out, const char *parent, size_t i)
{
    char idx[32];
    int n = snprintf(idx, sizeof(idx), "[%zu]", i);
    if (n < 0 || (size_t)n >= sizeof(idx))
        idx[0] = '\0';
    path_fmt(out, parent, "", idx);
}

static char *copy_scalar(builder *b, const mnode *v)
{
    char *d = malloc(v->scalar_len + 1);
    if (!d)
        return oom(b, &v->mark);
    memcpy(d, v->scalar, v->scalar_len);
    d[v->scalar_len] = '\0';
    return d;
}

static const char *article(const char *type_name)
{
    return strchr("aeiou", type_name[0]) ? "an" : "a";
}

static void wrong_type(builder *b, const mnode *v, const char *path, const char *expected)
{
    const char *got = mnode_type_name(v);
    diag_error(b->diags, "wrong-type", &v->mark, path, "expected %s, got %s %s", expected, article(got), got);
}

/* Absent and null both mean "not given". */
static bool given(const mnode *v)
{
    return v && !mnode_is_null(v);
}

static bool expect_map(builder *b, const mnode *v, const char *path)
{
    if (v->kind == MNODE_MAP)
        return true;
    wrong_type(b, v, path, "a mapping");
    return false;
}

static bool expect_seq(builder *b, const mnode *v, const char *path)
{
    if (v->kind == MNODE_SEQ)
        return true;
    wrong_type(b, v, path, "a sequence");
    return false;
}

/* Reports every key of `map` that is neither known nor accepted-and-ignored. */
static void check_fields(builder *b, const mnode *map, const char *path, const char *const *known,
                         const char *const *ignored)
{
    const char *all[64];
    size_t n = 0;
    for (size_t i = 0; known && known[i] && n < 63; i++)
        all[n++] = known[i];
    for (size_t i = 0; ignored && ignored[i] && n < 63; i++)
        all[n++] = ignored[i];
    all[n] = NULL;
    for (size_t i = 0; i < map->npairs; i++) {
        const mnode *k = map->pairs[i].key;
        bool found = false;
        for (size_t j = 0; all[j]; j++)
            if (k->scalar_len == strlen(all[j]) && !memcmp(k->scalar, all[j], k->scalar_len)) {
                found = true;
                break;
            }
        if (found)
            continue;
        char p[FIELD_PATH_MAX];
        path_key(p, path, k->scalar);
        const char *s = manifest_suggest(k->scalar, known);
        if (s)
            diag_error(b->diags, "unknown-field", &k->mark, p, "unknown field '%s'; did you mean '%s'?", k->scalar, s);
        else
            diag_error(b->diags, "unknown-field", &k->mark, p, "unknown field '%s'", k->scalar);
    }
}

static void get_string(builder *b, const mnode *map, const char *key, const char *parent, model_string *out)
{
    const mnode *v = mnode_get(map, key);
    if (!given(v))
        return;
    char p[FIELD_PATH_MAX];
    path_key(p, parent, key);
    if (!mnode_is_string(v)) {
        wrong_type(b, v, p, "a string");
        return;
    }
    free(out->value);
    out->value = copy_scalar(b, v);
    out->mark = v->mark;
}

static void get_duration(builder *b, const mnode *map, const char *key, const char *parent, model_duration *out)
{
    const mnode *v = mnode_get(map, key);
    if (!given(v))
        return;
    char p[FIELD_PATH_MAX];
    path_key(p, parent, key);
    if (v->kind != MNODE_SCALAR || mnode_as_bool(v, NULL)) {
        wrong_type(b, v, p, "a duration string such as '24h'");
        return;
    }
    int64_t ms = 0;
    if (strlen(v->scalar) != v->scalar_len || model_parse_duration(v->scalar, &ms) < 0) {
        diag_error(b->diags, "bad-duration", &v->mark, p,
                   "invalid duration '%.64s': expected a whole number and a unit (y, w, d, h, m, s, ms), e.g. '24h'",
                   v->scalar);
        return;
    }
    out->set = true;
    out->ms = ms;
    out->mark = v->mark;
    out->text[0] = '\0';
    if (v->scalar_len < sizeof(out->text))
        memcpy(out->text, v->scalar, v->scalar_len + 1);
}

static void missing(builder *b, const source_mark *mark, const char *path)
{
    diag_error(b->diags, "missing-field", mark, path, "required field '%s' is missing", path);
}

/* ---- Mesh ---- */

static const char *const mesh_fields[] = {"mtls", NULL};
static const char *const mesh_ignored[] = {"logging", "metrics", "tracing", "networking", "routing",
                                           "constraints", "meshServices", "skipCreatingInitialPolicies", NULL};
static const char *const mtls_fields[] = {"enabledBackend", "backends", "skipValidation", NULL};
static const char *const backend_fields[] = {"name", "type", "mode", "dpCert", "conf", NULL};
static const char *const backend_ignored[] = {"rootChain", NULL};
static const char *const dpcert_fields[] = {"rotation", "requestTimeout", "keyType", NULL};
static const char *const rotation_fields[] = {"expiration", NULL};

static void build_backend(builder *b, const mnode *item, const char *path, mesh_backend *be)
{
    be->mark = item->mark;
    if (!expect_map(b, item, path))
        return;
    check_fields(b, item, path, backend_fields, backend_ignored);
    get_string(b, item, "name", path, &be->name);
    get_string(b, item, "type", path, &be->type);
    get_string(b, item, "mode", path, &be->mode);
    if (!be->name.value && !mnode_get(item, "name")) {
        char p[FIELD_PATH_MAX];
        path_key(p, path, "name");
        missing(b, &item->mark, p);
    }

    char p[FIELD_PATH_MAX];
    const mnode *dp = mnode_get(item, "dpCert");
    path_key(p, path, "dpCert");
    if (given(dp) && expect_map(b, dp, p)) {
        check_fields(b, dp, p, dpcert_fields, NULL);
        get_duration(b, dp, "requestTimeout", p, &be->dp_cert.request_timeout);
        get_string(b, dp, "keyType", p, &be->dp_cert.key_type);
        const mnode *rot = mnode_get(dp, "rotation");
        char rp[FIELD_PATH_MAX];
        path_key(rp, p, "rotation");
        if (given(rot) && expect_map(b, rot, rp)) {
            check_fields(b, rot, rp, rotation_fields, NULL);
            get_duration(b, rot, "expiration", rp, &be->dp_cert.rotation_expiration);
        }
    }

    const mnode *conf = mnode_get(item, "conf");
    path_key(p, path, "conf");
    if (given(conf) && expect_map(b, conf, p) && !(be->conf = mnode_clone(conf)))
        oom(b, &conf->mark);
}

static void build_mesh_body(builder *b, const mnode *body, mesh *m)
{
    const mnode *mtls = mnode_get(body, "mtls");
    if (!given(mtls) || !expect_map(b, mtls, "mtls"))
        return;
    m->mtls_present = true;
    m->mtls_mark = mtls->mark;
    check_fields(b, mtls, "mtls", mtls_fields, NULL);
    get_string(b, mtls, "enabledBackend", "mtls", &m->enabled_backend);

    const mnode *skip = mnode_get(mtls, "skipValidation");
    if (given(skip)) {
        bool v = false;
        if (mnode_as_bool(skip, &v)) {
            m->skip_validation = v;
            m->skip_validation_mark = skip->mark;
        } else {
            wrong_type(b, skip, "mtls.skipValidation", "a boolean");
        }
    }

    const mnode *backends = mnode_get(mtls, "backends");
    if (!given(backends) || !expect_seq(b, backends, "mtls.backends"))
        return;
    m->backends_mark = backends->mark;
    if (backends->nitems == 0)
        return;
    m->backends = calloc(backends->nitems, sizeof(*m->backends));
    if (!m->backends) {
        oom(b, &backends->mark);
        return;
    }
    /* The count limit (MODEL_MAX_BACKENDS) is a semantic check left to validators. */
    for (size_t i = 0; i < backends->nitems; i++) {
        char p[FIELD_PATH_MAX];
        path_index(p, "mtls.backends", i);
        build_backend(b, backends->items[i], p, &m->backends[m->nbackends++]);
    }
}

/* ---- Dataplane ---- */

static const char *const networking_fields[] = {"address", "inbound", NULL};
static const char *const networking_ignored[] = {"outbound", "gateway", "admin", "transparentProxying",
                                                 "advertisedAddress", NULL};
static const char *const inbound_fields[] = {"port", "tags", NULL};
static const char *const inbound_ignored[] = {"servicePort", "serviceAddress", "address", "health",
                                              "serviceProbe", "name", "state", NULL};

static void build_inbound(builder *b, const mnode *item, const char *path, dataplane_inbound *in)
{
    in->mark = item->mark;
    if (!expect_map(b, item, path))
        return;
    check_fields(b, item, path, inbound_fields, inbound_ignored);
    char p[FIELD_PATH_MAX];
    const mnode *port = mnode_get(item, "port");
    path_key(p, path, "port");
    long long v = 0;
    in->port_refused = true;
    if (!given(port))
        missing(b, &item->mark, p);
    else if (!mnode_as_int(port, &v))
        wrong_type(b, port, p, "an integer");
    else if (v < 0 || v > 65535)
        diag_error(b->diags, "bad-port", &port->mark, p, "port %lld is out of range 1-65535", v);
    else {
        in->port = (long)v;
        in->port_refused = false;
    }

    const mnode *tags = mnode_get(item, "tags");
    path_key(p, path, "tags");
    if (!given(tags) || !expect_map(b, tags, p))
        return;
    if (tags->npairs == 0)
        return;
    in->tags = calloc(tags->npairs, sizeof(*in->tags));
    if (!in->tags) {
        oom(b, &tags->mark);
        return;
    }
    for (size_t i = 0; i < tags->npairs; i++) {
        const mnode *k = tags->pairs[i].key, *val = tags->pairs[i].value;
        char tp[FIELD_PATH_MAX];
        path_key(tp, p, k->scalar);
        /* Tag values are text whatever they look like: `version: 1` means "1". */
        if (val->kind != MNODE_SCALAR || mnode_is_null(val)) {
            wrong_type(b, val, tp, "a string");
            continue;
        }
        model_tag *t = &in->tags[in->ntags++];
        t->key = copy_scalar(b, k);
        t->value = copy_scalar(b, val);
        t->mark = val->mark;
    }
}

static void build_dataplane_body(builder *b, const mnode *body, dataplane *dp)
{
    const mnode *net = mnode_get(body, "networking");
    if (!given(net)) {
        missing(b, &body->mark, "networking");
        return;
    }
    if (!expect_map(b, net, "networking"))
        return;
    check_fields(b, net, "networking", networking_fields, networking_ignored);
    get_string(b, net, "address", "networking", &dp->address);
    const mnode *inb = mnode_get(net, "inbound");
    if (!given(inb) || !expect_seq(b, inb, "networking.inbound") || inb->nitems == 0)
        return;
    dp->inbounds = calloc(inb->nitems, sizeof(*dp->inbounds));
    if (!dp->inbounds) {
        oom(b, &inb->mark);
        return;
    }
    for (size_t i = 0; i < inb->nitems; i++) {
        char p[FIELD_PATH_MAX];
        path_index(p, "networking.inbound", i);
        build_inbound(b, inb->items[i], p, &dp->inbounds[dp->ninbounds++]);
    }
}

/* ---- Kinds and forms ---- */

static const char *const kind_names[] = {"Mesh", "Dataplane", "Secret", NULL};

static int kind_from_node(builder *b, const mnode *v, const char *path, resource_kind *ret)
{
    if (!mnode_is_string(v)) {
        wrong_type(b, v, path, "a string");
        return -1;
    }
    for (int i = 0; kind_names[i]; i++)
        if (!strcmp(v->scalar, kind_names[i])) {
            *ret = (resource_kind)i;
            return 0;
        }
    const char *s = manifest_suggest(v->scalar, kind_names);
    if (s)
        diag_error(b->diags, "unknown-kind", &v->mark, path, "unknown resource kind '%.64s'; did you mean '%s'?", v->scalar, s);
    else
        diag_error(b->diags, "unknown-kind", &v->mark, path, "unknown resource kind '%.64s'; expected Mesh, Dataplane or Secret",
                   v->scalar);
    return -1;
}

static const char *const universal_mesh_fields[] = {"type", "name", "mtls", NULL};
static const char *const universal_dp_fields[] = {"type", "name", "mesh", "networking", NULL};
static const char *const universal_secret_fields[] = {"type", "name", "mesh", "data", NULL};
/* Universal resources exported by kumactl carry these; they do not change the meaning. */
static const char *const universal_ignored[] = {"labels", "creationTime", "modificationTime", NULL};

static void build_universal(builder *b, const mnode *doc, resource *res)
{
    const char *const *known = res->kind == RESOURCE_MESH ? universal_mesh_fields
                             : res->kind == RESOURCE_DATAPLANE ? universal_dp_fields
                                                               : universal_secret_fields;
    const char *ignored[16];
    size_t n = 0;
    for (size_t i = 0; universal_ignored[i]; i++)
        ignored[n++] = universal_ignored[i];
    if (res->kind == RESOURCE_MESH)
        for (size_t i = 0; mesh_ignored[i]; i++)
            ignored[n++] = mesh_ignored[i];
    ignored[n] = NULL;
    check_fields(b, doc, "", known, ignored);

    model_string *name = res->kind == RESOURCE_MESH ? &res->u.mesh.name
                       : res->kind == RESOURCE_DATAPLANE ? &res->u.dataplane.name
                                                         : &res->u.secret.name;
    get_string(b, doc, "name", "", name);
    if (!mnode_get(doc, "name"))
        missing(b, &doc->mark, "name");

    switch (res->kind) {
    case RESOURCE_MESH:
        build_mesh_body(b, doc, &res->u.mesh);
        break;
    case RESOURCE_DATAPLANE:
        get_string(b, doc, "mesh", "", &res->u.dataplane.mesh);
        if (!mnode_get(doc, "mesh"))
            missing(b, &doc->mark, "mesh");
        build_dataplane_body(b, doc, &res->u.dataplane);
        break;
    case RESOURCE_SECRET:
        get_string(b, doc, "mesh", "", &res->u.secret.mesh);
        if (!mnode_get(doc, "mesh"))
            missing(b, &doc->mark, "mesh");
        get_string(b, doc, "data", "", &res->u.secret.data);
        if (!mnode_get(doc, "data"))
            missing(b, &doc->mark, "data");
        break;
    }
}

static const char *const k8s_fields[] = {"apiVersion", "kind", "metadata", "spec", NULL};
static const char *const k8s_dp_fields[] = {"apiVersion", "kind", "metadata", "spec", "mesh", NULL};
static const char *const k8s_secret_fields[] = {"apiVersion", "kind", "metadata", "type", "data", NULL};
static const char *const k8s_secret_ignored[] = {"immutable", "stringData", NULL};
static const char *const metadata_fields[] = {"name", "namespace", "labels", "annotations", NULL};
static const char *const metadata_ignored[] = {"uid", "resourceVersion", "generation", "creationTimestamp",
                                               "managedFields", "ownerReferences", "finalizers",
                                               "generateName", "deletionTimestamp", NULL};
static const char *const k8s_secret_data_fields[] = {"value", NULL};
static const char *const dp_spec_fields[] = {"networking", "mesh", NULL};
static const char *const dp_spec_ignored[] = {"metrics", "probes", NULL};

#define KUMA_API_VERSION "kuma.io/v1alpha1"
#define SECRET_API_VERSION "v1"
#define KUMA_SECRET_TYPE "system.kuma.io/secret"
#define KUMA_MESH_LABEL "kuma.io/mesh"

static void build_kubernetes(builder *b, const mnode *doc, resource *res)
{
    if (res->kind == RESOURCE_MESH)
        check_fields(b, doc, "", k8s_fields, NULL);
    else if (res->kind == RESOURCE_DATAPLANE)
        check_fields(b, doc, "", k8s_dp_fields, NULL);
    else
        check_fields(b, doc, "", k8s_secret_fields, k8s_secret_ignored);

    const char *want_api = res->kind == RESOURCE_SECRET ? SECRET_API_VERSION : KUMA_API_VERSION;
    const mnode *api = mnode_get(doc, "apiVersion");
    if (!given(api))
        missing(b, &doc->mark, "apiVersion");
    else if (!mnode_is_string(api))
        wrong_type(b, api, "apiVersion", "a string");
    else if (strcmp(api->scalar, want_api))
        diag_error(b->diags, "bad-api-version", &api->mark, "apiVersion", "apiVersion of a %s must be '%s', not '%.64s'",
                   resource_kind_name(res->kind), want_api, api->scalar);

    model_string *name = res->kind == RESOURCE_MESH ? &res->u.mesh.name
                       : res->kind == RESOURCE_DATAPLANE ? &res->u.dataplane.name
                                                         : &res->u.secret.name;
    model_string *mesh_name = res->kind == RESOURCE_DATAPLANE ? &res->u.dataplane.mesh
                            : res->kind == RESOURCE_SECRET ? &res->u.secret.mesh
                                                           : NULL;
    const mnode *md = mnode_get(doc, "metadata");
    if (!given(md)) {
        missing(b, &doc->mark, "metadata");
    } else if (expect_map(b, md, "metadata")) {
        check_fields(b, md, "metadata", metadata_fields, metadata_ignored);
        get_string(b, md, "name", "metadata", name);
        if (!mnode_get(md, "name"))
            missing(b, &md->mark, "metadata.name");
        const mnode *labels = mnode_get(md, "labels");
        if (given(labels) && expect_map(b, labels, "metadata.labels") && mesh_name)
            get_string(b, labels, KUMA_MESH_LABEL, "metadata.labels", mesh_name);
        const mnode *ann = mnode_get(md, "annotations");
        if (given(ann))
            expect_map(b, ann, "metadata.annotations");
    }

    if (res->kind == RESOURCE_SECRET) {
        const mnode *type = mnode_get(doc, "type");
        if (!given(type))
            missing(b, &doc->mark, "type");
        else if (!mnode_is_string(type))
            wrong_type(b, type, "type", "a string");
        else if (strcmp(type->scalar, KUMA_SECRET_TYPE))
            diag_error(b->diags, "bad-secret-type", &type->mark, "type", "a Kuma secret has type '%s', not '%.64s'",
                       KUMA_SECRET_TYPE, type->scalar);
        if (!res->u.secret.mesh.value)
            missing(b, md ? &md->mark : &doc->mark, "metadata.labels." KUMA_MESH_LABEL);
        const mnode *data = mnode_get(doc, "data");
        if (!given(data)) {
            missing(b, &doc->mark, "data");
        } else if (expect_map(b, data, "data")) {
            check_fields(b, data, "data", k8s_secret_data_fields, NULL);
            get_string(b, data, "value", "data", &res->u.secret.data);
            if (!mnode_get(data, "value"))
                missing(b, &data->mark, "data.value");
        }
        return;
    }

    if (res->kind == RESOURCE_DATAPLANE)
        get_string(b, doc, "mesh", "", mesh_name);   /* Kuma puts it at the top level */

    const mnode *spec = mnode_get(doc, "spec");
    if (!given(spec)) {
        if (res->kind == RESOURCE_DATAPLANE)
            missing(b, &doc->mark, "spec");
        return;
    }
    /* The path stays "spec" only for the spec node itself; fields below it use logical paths. */
    if (!expect_map(b, spec, "spec"))
        return;
    if (res->kind == RESOURCE_MESH) {
        check_fields(b, spec, "", mesh_fields, mesh_ignored);
        build_mesh_body(b, spec, &res->u.mesh);
    } else {
        check_fields(b, spec, "", dp_spec_fields, dp_spec_ignored);
        if (!mesh_name->value)
            get_string(b, spec, "mesh", "", mesh_name);
        build_dataplane_body(b, spec, &res->u.dataplane);
    }
    if (res->kind == RESOURCE_DATAPLANE && !mesh_name->value)
        missing(b, &doc->mark, "mesh");
}

int manifest_build_resource(const mnode *doc, unsigned doc_index, resource *ret_res, diag_list *diags)
{
    builder b = {diags, false};
    if (!doc || doc->kind != MNODE_MAP) {
        if (doc)
            diag_error(diags, "not-a-resource", &doc->mark, "", "a manifest document must be a mapping, got %s %s",
                       article(mnode_type_name(doc)), mnode_type_name(doc));
        return -1;
    }
    resource res;
    memset(&res, 0, sizeof(res));
    res.mark = doc->mark;
    res.doc_index = doc_index;

    const mnode *kind = mnode_get(doc, "kind");
    const mnode *type = mnode_get(doc, "type");
    if (given(kind)) {
        res.form = FORM_KUBERNETES;
        if (kind_from_node(&b, kind, "kind", &res.kind) < 0)
            return -1;
    } else if (given(type)) {
        res.form = FORM_UNIVERSAL;
        if (kind_from_node(&b, type, "type", &res.kind) < 0)
            return -1;
    } else {
        diag_error(diags, "missing-field", &doc->mark, "type",
                   "document has neither 'type' (Universal form) nor 'kind' (Kubernetes form)");
        return -1;
    }

    if (res.form == FORM_UNIVERSAL)
        build_universal(&b, doc, &res);
    else
        build_kubernetes(&b, doc, &res);
    if (b.oom) {
        resource_clear(&res);
        return -1;
    }
    *ret_res = res;
    return 0;
}
