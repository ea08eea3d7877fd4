/* pass_targets.c - the dataplanes a targeted reconcile pass visits, and their loading: one store read per object instead of every resource of the store. */
#include "reconciler/pass_targets.h"

#include <stdlib.h>
#include <string.h>

#include "manifests/error.h"
#include "reconciler/state.h"

int pass_targets_add(pass_targets *t, const char *mesh_name, const char *dp_name)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        pass_target *items = realloc(t->items, cap * sizeof(*items));
        if (!items)
            return MESHCA_ENOMEM;
        t->items = items;
        t->cap = cap;
    }
    pass_target *p = &t->items[t->n];
    p->mesh = strdup(mesh_name);
    p->dataplane = strdup(dp_name);
    if (!p->mesh || !p->dataplane) {
        free(p->mesh);
        free(p->dataplane);
        return MESHCA_ENOMEM;
    }
    t->n++;
    return 0;
}

void pass_targets_clear(pass_targets *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->items[i].mesh);
        free(t->items[i].dataplane);
    }
    free(t->items);
    memset(t, 0, sizeof(*t));
}

void pass_targets_take(pass_targets *to, pass_targets *from)
{
    pass_targets_clear(to);
    *to = *from;
    memset(from, 0, sizeof(*from));
}

static int cmp_target(const void *a, const void *b)
{
    const pass_target *x = a, *y = b;
    int c = strcmp(x->mesh, y->mesh);
    return c ? c : strcmp(x->dataplane, y->dataplane);
}

/* Sorted, each pair once. */
static void sort_unique(pass_targets *t)
{
    if (t->n < 2)
        return;
    qsort(t->items, t->n, sizeof(*t->items), cmp_target);
    size_t k = 1;
    for (size_t i = 1; i < t->n; i++) {
        if (cmp_target(&t->items[k - 1], &t->items[i]) == 0) {
            free(t->items[i].mesh);
            free(t->items[i].dataplane);
        } else {
            t->items[k++] = t->items[i];
        }
    }
    t->n = k;
}

/*
 * Reads one object, decodes it into set (state_decode_object, as a full pass loads it) and appends its version to entries (n
 * NULL: not kept). Absent: 0, nothing added.
 */
static int load_one(store *s, const char *kind, const char *mesh_name, const char *name,
                    manifest_set *set, store_entry *entries, size_t *n, diag_list *diags)
{
    store_key key = {kind, mesh_name, name};
    char *value = NULL;
    size_t len = 0;
    uint64_t version = 0;
    int rc = store_get(s, &key, &value, &len, &version);
    if (rc == STORE_ENOTFOUND)
        return 0;
    if (rc < 0)
        return rc;
    store_entry obj = {NULL, (char *)mesh_name, (char *)name, value, len, version};
    state_decode_object(set, kind, &obj, diags);   /* wipes a Mesh's value: it may hold a CA key */
    free(value);
    if (!n)
        return 0;
    store_entry *e = &entries[*n];
    memset(e, 0, sizeof(*e));
    e->kind = strdup(kind);
    e->mesh = strdup(mesh_name);
    e->name = strdup(name);
    e->version = version;
    (*n)++;
    return !e->kind || !e->mesh || !e->name ? MESHCA_ENOMEM : 0;
}

int pass_targets_load(store *s, pass_targets *t, manifest_set *set, store_entry **ret_meshes,
                      size_t *ret_nmeshes, store_entry **ret_dps, size_t *ret_ndps,
                      diag_list *diags)
{
    sort_unique(t);
    store_entry *meshes = calloc(t->n + 1, sizeof(*meshes));
    store_entry *dps = calloc(t->n + 1, sizeof(*dps));
    size_t nm = 0, nd = 0;
    int rc = meshes && dps ? 0 : MESHCA_ENOMEM;
    for (size_t i = 0; rc == 0 && i < t->n; i++) {
        const pass_target *p = &t->items[i];
        /* Sorted: a mesh's pairs are together, its Mesh read once. */
        if (i == 0 || strcmp(p->mesh, t->items[i - 1].mesh) != 0)
            rc = load_one(s, STATE_MESHES, p->mesh, p->mesh, set, meshes, &nm, diags);
        if (rc == 0)
            rc = load_one(s, STATE_DATAPLANES, p->mesh, p->dataplane, set, dps, &nd, diags);
    }
    *ret_meshes = meshes;
    *ret_nmeshes = nm;
    *ret_dps = dps;
    *ret_ndps = nd;
    return rc;
}

int pass_targets_load_object(store *s, const char *kind, const char *mesh_name, const char *name,
                             manifest_set *set, diag_list *diags)
{
    return load_one(s, kind, mesh_name, name, set, NULL, NULL, diags);
}
