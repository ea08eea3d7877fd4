/* fuzz-manifest.c - libFuzzer target for the manifest decoder and the static validators (SPEC S12):
 * any byte string must give diagnostics, never a crash, a leak or undefined behaviour. The
 * stored-object decoder (manifests/json_node.c) too: whatever it takes, the YAML decoder must
 * read without a word into the very same tree, or the target aborts. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "manifests/json_node.h"
#include "manifests/manifest.h"
#include "validators/validators.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Node for node: kind, scalar bytes, style and mark. */
static bool same_tree(const mnode *a, const mnode *b)
{
    if (!a || !b)
        return a == b;
    if (a->kind != b->kind || a->mark.line != b->mark.line || a->mark.column != b->mark.column)
        return false;
    if (a->kind == MNODE_SCALAR)
        return a->style == b->style && a->scalar_len == b->scalar_len &&
               memcmp(a->scalar, b->scalar, a->scalar_len) == 0;
    if (a->npairs != b->npairs || a->nitems != b->nitems)
        return false;
    for (size_t i = 0; i < a->npairs; i++)
        if (!same_tree(a->pairs[i].key, b->pairs[i].key) ||
            !same_tree(a->pairs[i].value, b->pairs[i].value))
            return false;
    for (size_t i = 0; i < a->nitems; i++)
        if (!same_tree(a->items[i], b->items[i]))
            return false;
    return true;
}

static void json_path_agrees_with_yaml(const char *data, size_t size)
{
    mnode *fast = NULL;
    if (json_node_parse("fuzz.json", data, size, &fast) != 0)
        return;
    mnode **docs = NULL;
    size_t ndocs = 0;
    diag_list diags = DIAG_LIST_INIT;
    manifest_parse_documents("fuzz.json", data, size, &docs, &ndocs, &diags);
    if (diags.count || ndocs != 1 || !same_tree(docs[0], fast))
        abort();
    for (size_t i = 0; i < ndocs; i++)
        mnode_free(docs[i]);
    free(docs);
    diag_list_free(&diags);
    mnode_free(fast);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_path_agrees_with_yaml((const char *)data, size);
    manifest_set *set = manifest_set_new();
    diag_list diags = DIAG_LIST_INIT;
    manifest_load_buffer(set, "fuzz.yaml", (const char *)data, size, &diags);
    /* As a stored object: the JSON path, or the YAML path where it declines. */
    manifest_load_json(set, "store:fuzz", (const char *)data, size, &diags);
    validate_set(set, &diags);
    /* Also drive the transition rules: each mesh against the first one, with no status. */
    const mesh *first = NULL;
    for (size_t i = 0; i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind != RESOURCE_MESH)
            continue;
        transition_options opts = TRANSITION_OPTIONS_INIT;
        transition_result result;
        validate_transition(first, &res->u.mesh, NULL, 0, NULL, 0, &opts, &diags, &result);
        if (!first)
            first = &res->u.mesh;
    }
    diag_list_free(&diags);
    manifest_set_free(set);
    return 0;
}
