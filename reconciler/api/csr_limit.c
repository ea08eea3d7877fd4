/* csr_limit.c - how many CSRs the API takes per dataplane: a burst, then one per interval. */
#include "reconciler/api/csr_limit.h"

#include <stdlib.h>

typedef struct slot {
    uint64_t tag;  /* the dataplane's hash (0: free) */
    int64_t tat;   /* GCRA's theoretical arrival time of the next CSR, in ms */
} slot;

struct csr_limit {
    slot slots[API_CSR_LIMIT_SLOTS];
};

csr_limit *csr_limit_new(void)
{
    return calloc(1, sizeof(csr_limit));
}

void csr_limit_free(csr_limit *l)
{
    free(l);
}

static uint64_t hash_names(const char *mesh_name, const char *dp_name)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a 64 */
    for (const char *p = mesh_name; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (const char *p = dp_name; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h ? h : 1;
}

bool csr_limit_take(csr_limit *l, const char *mesh_name, const char *dp_name, int64_t now_ms,
                    int64_t *ret_retry_s)
{
    if (!l)
        return true;
    uint64_t h = hash_names(mesh_name, dp_name);
    slot *s = &l->slots[h % API_CSR_LIMIT_SLOTS];
    if (s->tag != h) {
        s->tag = h;
        s->tat = now_ms;
    }
    int64_t tat = s->tat > now_ms ? s->tat : now_ms;
    const int64_t tolerance = (int64_t)(API_CSR_BURST - 1) * API_CSR_INTERVAL_MS;
    if (tat - now_ms > tolerance) {
        int64_t wait_ms = tat - now_ms - tolerance;
        *ret_retry_s = (wait_ms + 999) / 1000;
        return false;
    }
    s->tat = tat + API_CSR_INTERVAL_MS;
    return true;
}
