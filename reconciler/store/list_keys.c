/* list_keys.c - store_list_keys: the keys and versions of a kind's objects, without their values. */
#include <stdlib.h>
#include <string.h>

#include "reconciler/store.h"
#include "reconciler/store/backend.h"

typedef struct key_list {
    store_entry *items;
    size_t n, cap;
} key_list;

static int add_key(void *userdata, const store_entry *e)
{
    key_list *l = userdata;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        store_entry *items = realloc(l->items, cap * sizeof(*items));
        if (!items)
            return STORE_ENOMEM;
        l->items = items;
        l->cap = cap;
    }
    store_entry k = {strdup(e->kind), strdup(e->mesh), strdup(e->name), NULL, 0, e->version};
    if (!k.kind || !k.mesh || !k.name) {
        free(k.kind);
        free(k.mesh);
        free(k.name);
        return STORE_ENOMEM;
    }
    l->items[l->n++] = k;
    return 0;
}

int store_list_keys(store *s, const char *kind, const char *mesh_name, store_entry **ret_entries,
                    size_t *ret_count)
{
    key_list l = {0};
    /* A backend that can leave the values where they are (etcd: keys_only) does. */
    int rc = store_backend_list_keys(s, kind, mesh_name, ret_entries, ret_count);
    if (rc <= 0)
        return rc;
    rc = store_scan(s, kind, mesh_name, add_key, &l);
    if (rc < 0) {
        store_entries_free(l.items, l.n);
        return rc;
    }
    *ret_entries = l.items;
    *ret_count = l.n;
    return 0;
}
