/* load_json.c - loading one stored object: the JSON fast path, the YAML decoder when it declines. */
#include "manifests/manifest.h"

#include <stdbool.h>
#include <string.h>

#include "manifests/json_node.h"

/* A stored Secret's data (and a Mesh's inline keys) sit in the tree's scalars: wipe them. */
static void wipe_tree(mnode *n)
{
    if (!n)
        return;
    if (n->scalar)
        explicit_bzero(n->scalar, n->scalar_len);
    for (size_t i = 0; i < n->npairs; i++) {
        wipe_tree(n->pairs[i].key);
        wipe_tree(n->pairs[i].value);
    }
    for (size_t i = 0; i < n->nitems; i++)
        wipe_tree(n->items[i]);
}

/* 0 with the resource added, 1 when the YAML path must decode the object instead (the fast path
 * declined it, or building it said anything at all), or MANIFEST_ENOMEM. */
static int load_fast(manifest_set *set, const char *file, const char *data, size_t len)
{
    mnode *doc = NULL;
    int r = json_node_parse(file, data, len, &doc);
    if (r != 0)
        return r == JSON_NODE_DECLINED ? 1 : MANIFEST_ENOMEM;
    diag_list quiet = DIAG_LIST_INIT;
    resource res;
    bool built = manifest_build_resource(doc, 0, &res, &quiet) == 0;
    if (!built || res.kind != RESOURCE_DATAPLANE)   /* a Dataplane holds nothing secret */
        wipe_tree(doc);
    mnode_free(doc);
    bool clean = quiet.count == 0 && !quiet.out_of_memory;
    diag_list_free(&quiet);
    if (built && clean)
        return manifest_set_add(set, &res);
    if (built)
        resource_clear(&res);
    /* Whatever was said (a wrong type, an unknown field) is said again by the YAML path, with
     * its marks, so a corrupt object is reported exactly as before. */
    return 1;
}

int manifest_load_json(manifest_set *set, const char *name, const char *data, size_t len,
                       diag_list *diags)
{
    const char *file = manifest_set_intern(set, name);
    int r = file ? load_fast(set, file, data, len) : MANIFEST_ENOMEM;
    if (r == 1)
        return manifest_load_buffer(set, name, data, len, diags);
    if (r == MANIFEST_ENOMEM)
        diags->out_of_memory = true;
    return r;
}
