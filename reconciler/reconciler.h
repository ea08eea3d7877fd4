/* reconciler.h - the reconciler library: CA backends, issuance, stores, reconcile loop. */
#ifndef MESHCA_RECONCILER_H
#define MESHCA_RECONCILER_H

const char *reconciler_version(void);

#endif
