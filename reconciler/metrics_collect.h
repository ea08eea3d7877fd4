/* metrics_collect.h - what /metrics reads from the store (CA and certificate expiry, trust,
 * pending changes) and what a reconcile pass adds to the controller's counters. */
#ifndef MESHCA_METRICS_COLLECT_H
#define MESHCA_METRICS_COLLECT_H

#include <stdint.h>

#include "manifests/diag.h"
#include "reconciler/metrics.h"
#include "reconciler/reconcile.h"
#include "reconciler/store.h"

/*
 * Writes the gauges read from store s at `now` to t: per mesh and backend the CA's notAfter,
 * whether it is enabled, how many dataplanes trust it and hold its certificates; per mesh the
 * dataplanes and the pending (or refused) change of `run --manifests`; per dataplane its
 * certificate's notBefore/notAfter, the generation issued and the one acknowledged. Returns 0,
 * or a negative STORE_* code (nothing written) with a line in errbuf when the store cannot be read.
 */
int metrics_collect(store *s, int64_t now, metrics_text *t, char *errbuf);

/* A pass that ended (rc from reconcile_once, its report and diagnostics): signatures by mesh and
 * backend, errors by code ("store-error" when the store could not be read). */
void metrics_count_pass(metrics *m, int rc, const reconcile_report *rep, const diag_list *diags);

#endif
