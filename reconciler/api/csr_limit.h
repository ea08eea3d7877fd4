/* csr_limit.h - how many CSRs the API takes per dataplane: a burst, then one per interval. */
#ifndef MESHCA_API_CSR_LIMIT_H
#define MESHCA_API_CSR_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Every CSR the API accepts costs a signature on the next pass, a store write and a new
 * generation, so one token or certificate flooding CSRs for its dataplane must not get them
 * all: API_CSR_BURST at once, then one per API_CSR_INTERVAL_MS (GCRA, in memory, per
 * controller). An agent sends one CSR per renewal (`agent --renew` too), far below it.
 */
#define API_CSR_BURST 128
#define API_CSR_INTERVAL_MS 10000
/* Dataplanes are kept in this many slots by a hash of their names; a dataplane that lands on a
 * slot another holds takes it over with a full burst: memory stays fixed (16 bytes a slot)
 * whatever the number of dataplanes, and a slot is shared only by two dataplanes posting in
 * the same minutes. */
#define API_CSR_LIMIT_SLOTS 16384

typedef struct csr_limit csr_limit;

/* NULL when out of memory (then every CSR is taken: csr_limit_take admits with NULL). */
csr_limit *csr_limit_new(void);
void csr_limit_free(csr_limit *l);

/* Takes one CSR of (mesh, dp) at now_ms (monotonic): true when within the limit; false, with
 * *ret_retry_s (whole seconds, >= 1) until the next one is taken, when over it. */
bool csr_limit_take(csr_limit *l, const char *mesh_name, const char *dp_name, int64_t now_ms,
                    int64_t *ret_retry_s);

#endif
