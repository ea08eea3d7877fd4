/* ca_offline.c - the CA checks `validate` can make without a store: what the manifest holds. */
#include "reconciler/ca_offline.h"

#include <string.h>

#include "reconciler/ca/ca_cfssl.h"
#include "reconciler/ca_backend.h"
#include "reconciler/ca_provided.h"

size_t ca_check_offline(const mesh *m, int64_t now, diag_list *diags)
{
    size_t before = diag_count(diags, DIAG_ERROR);

    if (!m || m->skip_validation)
        return 0;
    for (size_t i = 0; i < m->nbackends; i++) {
        const mesh_backend *b = &m->backends[i];
        /* No secret lookup or store: only what the manifest itself holds can be read. */
        ca_context ctx = {.mesh = m->name.value, .backend = b, .backend_index = i, .now = now};

        if (!b->type.value)
            continue;
        if (strcmp(b->type.value, ca_builtin_ops.type) == 0)
            ca_backend_check(&ctx, diags);   /* reads conf only: the one place of its rules */
        else if (strcmp(b->type.value, ca_provided_ops.type) == 0)
            ca_provided_check_inline(b, &ctx, diags);
        else if (strcmp(b->type.value, ca_cfssl_ops.type) == 0)
            ca_cfssl_check_conf(&ctx, diags);   /* its conf only: cfssl is asked by apply */
    }
    return diag_count(diags, DIAG_ERROR) - before;
}
