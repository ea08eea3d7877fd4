/* fuzz-status.c - libFuzzer target for the dataplane status reader (SPEC S7, S12): any byte string
 * must be parsed or refused with a "bad-status" diagnostic, never crash, leak or reach UB. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "manifests/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    status_set set = STATUS_SET_INIT;
    diag_list diags = DIAG_LIST_INIT;
    int rc = status_parse_json("fuzz.json", (const char *)data, size, &set, &diags);
    /* The contract: a refusal always says why. */
    if (rc < 0 && diags.count == 0)
        abort();
    /* Drive what callers do with a parsed set: index it, look each name up, encode it back. */
    for (size_t i = 0; rc == 0 && i < set.count; i++) {
        const dataplane_status *st = &set.items[i];
        status_index idx = STATUS_INDEX_INIT;
        if (st->mesh && status_index_build(set.items, set.count, st->mesh, &idx) == 0) {
            if (st->name && !status_index_find(&idx, st->name))
                abort(); /* an indexed status must be found by its own name */
            status_index_free(&idx);
        }
        (void)status_supports(st, "ca-1");
        free(status_to_json(st));
        dataplane_status copy;
        if (dataplane_status_copy(&copy, st) == 0)
            dataplane_status_clear(&copy);
    }
    status_set_free(&set);
    diag_list_free(&diags);
    return 0;
}
