/* manifest_prune.c - `run --manifests DIR` prune: deleting what an earlier sync applied from DIR
 * and DIR no longer holds, under `delete`'s checks, never what was applied by hand. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "reconciler/delete.h"
#include "reconciler/manifest_prune.h"
#include "reconciler/state.h"

/* What the sync owns in one mesh, before and after. */
typedef struct mesh_rec {
    char *mesh;
    json_t *status;        /* the mesh status as read (owned); NULL until read */
    uint64_t version;
    json_t *owned;         /* array "kind/name": the new record (owned) */
    json_t *refused_items; /* array "kind/name" whose prune was refused (owned) */
    char *refused;         /* first refusal of a prune in this mesh, or NULL */
    char *refused_what;
    bool deleted;          /* the Mesh itself was pruned: its status went with it */
} mesh_rec;

typedef struct prune {
    store *s;
    const char *dir;
    mesh_rec *meshes;
    size_t n, cap;
    manifest_prune_say_fn say;
    void *say_ctx;
} prune;

__attribute__((format(printf, 2, 3)))
static void say(const prune *p, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (p->say)
        p->say(p->say_ctx, line);
}

static mesh_rec *rec_of(prune *p, const char *mesh_name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->meshes[i].mesh, mesh_name) == 0)
            return &p->meshes[i];
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        mesh_rec *m = realloc(p->meshes, cap * sizeof(*m));
        if (!m)
            return NULL;
        p->meshes = m;
        p->cap = cap;
    }
    mesh_rec *r = &p->meshes[p->n];
    memset(r, 0, sizeof(*r));
    r->mesh = strdup(mesh_name);
    r->owned = json_array();
    r->refused_items = json_array();
    if (!r->mesh || !r->owned || !r->refused_items) {
        free(r->mesh);
        json_decref(r->owned);
        json_decref(r->refused_items);
        return NULL;
    }
    p->n++;
    return r;
}

static const char *kind_word(resource_kind k)
{
    return delete_kind_word(k);
}

static bool holds_item(const json_t *arr, const char *item)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
        if (json_string_value(v) && strcmp(json_string_value(v), item) == 0)
            return true;
    return false;
}

static int add_item(json_t *arr, resource_kind kind, const char *name)
{
    char item[320];
    snprintf(item, sizeof(item), "%s/%s", kind_word(kind), name);
    if (holds_item(arr, item))
        return 0;
    return json_array_append_new(arr, json_string(item)) == 0 ? 0 : STORE_ENOMEM;
}

static int add_owned(mesh_rec *r, resource_kind kind, const char *name)
{
    return add_item(r->owned, kind, name);
}

/* "dataplane/web-01" into kind and name; false when it is not one. */
static bool parse_item(const char *item, resource_kind *kind, const char **name)
{
    const char *slash = item ? strchr(item, '/') : NULL;
    if (!slash || !slash[1])
        return false;
    size_t n = (size_t)(slash - item);
    if (n == 4 && strncmp(item, "mesh", 4) == 0)
        *kind = RESOURCE_MESH;
    else if (n == 9 && strncmp(item, "dataplane", 9) == 0)
        *kind = RESOURCE_DATAPLANE;
    else if (n == 6 && strncmp(item, "secret", 6) == 0)
        *kind = RESOURCE_SECRET;
    else
        return false;
    *name = slash + 1;
    return true;
}



static bool set_holds(const manifest_set *set, const char *mesh_name, resource_kind kind,
                      const char *name)
{
    for (size_t i = 0; i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind == kind && strcmp(resource_mesh(res), mesh_name) == 0 &&
            strcmp(resource_name(res), name) == 0)
            return true;
    }
    return false;
}

/* Deletes one group of targets, or with *ret_refused nothing; when refused and `report`, each
 * target stays owned with its reason recorded in its mesh. Returns the number deleted or a
 * negative store code. */
static int delete_some(prune *p, const delete_target *t, size_t n, bool report, bool *ret_refused)
{
    delete_options o = DELETE_OPTIONS_INIT;
    o.ignore_not_found = true;
    diag_list diags = DIAG_LIST_INIT;
    delete_result res = {0};
    int rc = delete_resources(p->s, t, n, &o, &diags, &res);
    *ret_refused = rc == 0 && res.refused;
    if (rc == 0 && res.refused) {
        for (size_t i = 0; report && i < n; i++) {
            mesh_rec *r = rec_of(p, t[i].mesh);
            if (!r)
                continue;
            add_owned(r, t[i].kind, t[i].name);
            add_item(r->refused_items, t[i].kind, t[i].name);
            const char *why = diags.count ? diags.items[0].message : "refused";
            if (!r->refused) {
                char what[320];
                snprintf(what, sizeof(what), "delete %s '%s'", kind_word(t[i].kind), t[i].name);
                r->refused = strdup(why);
                r->refused_what = strdup(what);
            }
            /* Said once: a refusal already recorded in the mesh status is retried quietly. */
            char item[320];
            snprintf(item, sizeof(item), "%s/%s", kind_word(t[i].kind), t[i].name);
            json_t *was = json_object_get(json_object_get(r->status, MANIFEST_PRUNE_REFUSED_FIELD),
                                          "resources");
            if (!holds_item(was, item))
                say(p, "manifests: prune of %s %s/%s refused: %s", kind_word(t[i].kind),
                    t[i].mesh, t[i].name, why);
        }
    } else if (rc == 0) {
        for (size_t i = 0; i < res.nremoved; i++) {
            const delete_removed *d = &res.removed[i];
            if (d->owner)
                continue;
            say(p, "manifests: %s %s%s%s pruned (its manifest is gone)", kind_word(d->kind),
                d->kind == RESOURCE_MESH ? "" : d->mesh, d->kind == RESOURCE_MESH ? "" : "/",
                d->name);
            if (d->kind == RESOURCE_MESH) {
                mesh_rec *r = rec_of(p, d->name);
                if (r)
                    r->deleted = true;
            }
        }
        rc = (int)n;
    }
    delete_result_free(&res);
    diag_list_free(&diags);
    return rc;
}

static int cmp_target(const void *a, const void *b)
{
    /* Dataplanes first, then Secrets, then Meshes: each one alone passes delete's checks when
     * what needed it went first. */
    static const int rank[] = {[RESOURCE_DATAPLANE] = 0, [RESOURCE_SECRET] = 1,
                               [RESOURCE_MESH] = 2};
    const delete_target *x = a, *y = b;
    return rank[x->kind] - rank[y->kind];
}

static int cmp_json_str(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

/* The record's array sorted, as a new array. */
static json_t *sorted(json_t *arr)
{
    size_t n = json_array_size(arr);
    json_t **items = calloc(n + 1, sizeof(*items));
    json_t *out = json_array();
    if (!items || !out) {
        free(items);
        json_decref(out);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        items[i] = json_array_get(arr, i);
    qsort(items, n, sizeof(*items), cmp_json_str);
    for (size_t i = 0; i < n; i++)
        json_array_append(out, items[i]);
    free(items);
    return out;
}

/* Rewrites the mesh's record and refusal when they changed. */
static void write_record(prune *p, mesh_rec *r)
{
    if (r->deleted)
        return;
    if (!r->status && state_get_mesh_status(p->s, r->mesh, &r->status, &r->version) < 0)
        return;
    json_t *owned = sorted(r->owned);
    if (!owned)
        return;
    bool changed = false;
    json_t *old = json_object_get(r->status, MANIFEST_PRUNE_FIELD);
    if (json_array_size(owned) == 0) {
        if (old) {
            json_object_del(r->status, MANIFEST_PRUNE_FIELD);
            changed = true;
        }
    } else if (!json_equal(json_object_get(old, "resources"), owned) ||
               !json_string_value(json_object_get(old, "dir")) ||
               strcmp(json_string_value(json_object_get(old, "dir")), p->dir) != 0) {
        json_object_set_new(r->status, MANIFEST_PRUNE_FIELD,
                            json_pack("{s:s, s:O}", "dir", p->dir, "resources", owned));
        changed = true;
    }
    json_t *was = json_object_get(r->status, MANIFEST_PRUNE_REFUSED_FIELD);
    const char *was_reason = json_string_value(json_object_get(was, "reason"));
    if (!r->refused && was) {
        json_object_del(r->status, MANIFEST_PRUNE_REFUSED_FIELD);
        changed = true;
    } else if (r->refused && (!was_reason || strcmp(was_reason, r->refused) != 0 ||
                              !json_equal(json_object_get(was, "resources"), r->refused_items))) {
        char since[32];
        time_t now = time(NULL);
        strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        json_object_set_new(r->status, MANIFEST_PRUNE_REFUSED_FIELD,
                            json_pack("{s:s, s:s, s:s, s:O}", "change",
                                      r->refused_what ? r->refused_what : "", "reason", r->refused,
                                      "since", since, "resources", r->refused_items));
        changed = true;
    }
    /* A conflict (someone wrote the status meanwhile) leaves it to the next sync. */
    if (changed)
        state_put_mesh_status(p->s, r->mesh, r->status, r->version);
    json_decref(owned);
}

int manifest_prune(store *s, const char *dir, const manifest_set *set, manifest_prune_say_fn say_fn,
                   void *say_ctx)
{
    prune p = {s, dir, NULL, 0, 0, say_fn, say_ctx};
    store_entry *st = NULL;
    size_t nst = 0;
    delete_target *targets = NULL;
    size_t ntargets = 0;
    int deleted = 0;
    if (manifest_set_count(set) == 0)
        return 0;
    int rc = store_list(s, STATE_MESHSTATUS, NULL, &st, &nst);
    if (rc < 0)
        return rc;
    targets = calloc(1, sizeof(*targets));
    rc = targets ? 0 : STORE_ENOMEM;
    /* What earlier syncs of DIR applied and DIR no longer holds. */
    for (size_t i = 0; rc == 0 && i < nst; i++) {
        json_t *status = json_loadb(st[i].value, st[i].len, 0, NULL);
        json_t *rec = json_object_get(status, MANIFEST_PRUNE_FIELD);
        const char *rec_dir = json_string_value(json_object_get(rec, "dir"));
        mesh_rec *r = status ? rec_of(&p, st[i].mesh) : NULL;
        if (!r) {
            json_decref(status);
            continue;
        }
        r->status = status;
        r->version = st[i].version;
        /* Another directory's record is not ours to act on. */
        if (!rec_dir || strcmp(rec_dir, dir) != 0)
            continue;
        size_t j;
        json_t *v;
        json_array_foreach(json_object_get(rec, "resources"), j, v) {
            resource_kind kind;
            const char *name;
            if (!parse_item(json_string_value(v), &kind, &name) ||
                set_holds(set, st[i].mesh, kind, name))
                continue;
            delete_target *t = realloc(targets, (ntargets + 1) * sizeof(*targets));
            if (!t) {
                rc = STORE_ENOMEM;
                break;
            }
            targets = t;
            targets[ntargets++] = (delete_target){kind, r->mesh, name, SOURCE_MARK_NONE};
        }
    }
    if (rc == 0 && ntargets) {
        qsort(targets, ntargets, sizeof(*targets), cmp_target);
        /* All at once (a Mesh with the Dataplanes pruned with it passes); when refused, one by
         * one, so that one resource still needed does not hold back the others. */
        bool refused = false;
        int n = delete_some(&p, targets, ntargets, false, &refused);
        if (n >= 0 && refused) {
            n = 0;
            for (size_t i = 0; i < ntargets && rc == 0; i++) {
                int one = delete_some(&p, &targets[i], 1, true, &refused);
                if (one < 0)
                    rc = one;
                else
                    n += one;
            }
        }
        if (n < 0)
            rc = n;
        else
            deleted = n;
    }
    /* The new records: what DIR holds now, plus what could not be pruned. */
    for (size_t i = 0; rc == 0 && i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        mesh_rec *r = rec_of(&p, resource_mesh(res));
        if (!r || add_owned(r, res->kind, resource_name(res)) < 0)
            rc = STORE_ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < p.n; i++)
        write_record(&p, &p.meshes[i]);
    for (size_t i = 0; i < p.n; i++) {
        free(p.meshes[i].mesh);
        json_decref(p.meshes[i].status);
        json_decref(p.meshes[i].owned);
        json_decref(p.meshes[i].refused_items);
        free(p.meshes[i].refused);
        free(p.meshes[i].refused_what);
    }
    free(p.meshes);
    /* The targets borrow names from the records: freed after them is fine, they are not read. */
    free(targets);
    store_entries_free(st, nst);
    return rc < 0 ? rc : deleted;
}
