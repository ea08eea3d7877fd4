/* manifest_prune.h - `run --manifests DIR` prune: deleting what an earlier sync applied from DIR
 * and DIR no longer holds, under `delete`'s checks, never what was applied by hand. */
#ifndef MESHCA_MANIFEST_PRUNE_H
#define MESHCA_MANIFEST_PRUNE_H

#include "manifests/manifest.h"
#include "reconciler/store.h"

/* The mesh status field that lists what the sync applied (and so owns) in that mesh:
 * {"dir": DIR, "resources": ["mesh/default", "dataplane/web-01", "secret/ca-key", ...]}, sorted.
 * Like kubectl's applyset, only what is listed there is ever pruned. */
#define MANIFEST_PRUNE_FIELD "manifests"
/* The mesh status field of a prune `delete` refused: {"change","reason","since"} of the first,
 * and "resources": every "kind/name" whose prune was refused (each said once). */
#define MANIFEST_PRUNE_REFUSED_FIELD "pruneRefused"

/* One line said by the prune (the controller's output). */
typedef void (*manifest_prune_say_fn)(void *ctx, const char *line);

/*
 * After `set` (DIR's resources, borrowed) was applied: every resource an earlier sync recorded
 * as applied from DIR that `set` no longer holds is deleted with delete_resources() (its
 * checks: a Mesh that still has Dataplanes not pruned with it, a Secret a backend still reads,
 * are refused, not forced). A refused deletion stays recorded, is retried on the next call, and
 * is reported in its mesh status (MANIFEST_PRUNE_REFUSED_FIELD) and said once. Then each mesh's
 * record is rewritten (only when it changed: every write wakes the controller) to what `set`
 * holds plus what could not be pruned. A set with no resource at all prunes nothing (an empty
 * checkout is more likely a mistake than a wish to delete everything). Returns the number of
 * resources deleted, or a negative store code.
 */
int manifest_prune(store *s, const char *dir, const manifest_set *set, manifest_prune_say_fn say,
                   void *say_ctx);

#endif
