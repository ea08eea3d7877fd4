/* fuzz-manifest.c - libFuzzer target for the manifest decoder and the static validators (SPEC S12):
 * any byte string must give diagnostics, never a crash, a leak or undefined behaviour. */
#include <stddef.h>
#include <stdint.h>

#include "manifests/manifest.h"
#include "validators/validators.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    manifest_set *set = manifest_set_new();
    diag_list diags = DIAG_LIST_INIT;
    manifest_load_buffer(set, "fuzz.yaml", (const char *)data, size, &diags);
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
