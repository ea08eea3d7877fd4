/* manifest_sync.h - `meshca run --manifests DIR`: GitOps-style sync of a manifest directory. */
#ifndef MESHCA_MANIFEST_SYNC_H
#define MESHCA_MANIFEST_SYNC_H

#include <stdbool.h>

#include "reconciler/store.h"

/* An inotify descriptor watching DIR (its top level), or -1. */
int manifest_watch_open(const char *dir);
/* Drains the watch; true when anything in DIR changed. */
bool manifest_watch_changed(int fd);

/* What manifest_sync says, one line at a time (the controller's output). */
typedef void (*manifest_sync_say_fn)(void *ctx, const char *line);

/* Loads DIR and applies it as `meshca apply` would (no force). A change refused only because
 * dataplanes have not caught up is recorded as "pending" in the mesh status with its reason and
 * retried on the next call; other refusals are recorded as "refused". Once DIR applied in full,
 * with `prune`, what an earlier call applied from DIR and DIR no longer holds is deleted
 * (manifest_prune.h). `last_said` remembers the last line said so that a pending change is
 * announced once (caller frees). */
void manifest_sync(store *s, const char *dir, bool prune, char **last_said,
                   manifest_sync_say_fn say, void *say_ctx);

#endif
