/* delete.h - removing Meshes, Dataplanes and Secrets from the store, refused while something needs them. */
#ifndef MESHCA_DELETE_H
#define MESHCA_DELETE_H

#include <stdbool.h>
#include <stddef.h>

#include "manifests/diag.h"
#include "manifests/model.h"
#include "reconciler/store.h"

/* One resource to delete, as named on the command line or by a document of `delete -f`.
 * Strings borrowed for the call. */
typedef struct delete_target {
    resource_kind kind;
    const char *mesh;   /* Dataplane, Secret: its mesh; NULL = the one mesh that has `name`
                         * (refused as ambiguous when several do). Ignored for a Mesh. */
    const char *name;
    source_mark mark;   /* the document of `delete -f`; SOURCE_MARK_NONE for a name */
} delete_target;

typedef struct delete_options {
    bool dry_run;            /* every check, nothing deleted */
    bool ignore_not_found;   /* a target that does not exist is skipped, not an error (kubectl) */
} delete_options;

#define DELETE_OPTIONS_INIT {false, false}

/* A Mesh, Dataplane or Secret that was (or, dry run, would be) deleted. Strings owned. */
typedef struct delete_removed {
    resource_kind kind;
    char *mesh;
    char *name;
    char *owner;   /* NULL: a target; else the Mesh whose deletion takes it along */
} delete_removed;

typedef struct delete_result {
    bool refused;              /* nothing was deleted; the reasons are in diags */
    delete_removed *removed;   /* targets first (in the order given), then what went with them */
    size_t nremoved;
    size_t nrecords;           /* identities, statuses and tokens deleted with them */
} delete_result;

/*
 * Deletes `targets` and what belongs to them, in one store transaction, or nothing:
 *  - a Dataplane takes its identity, its status and its tokens (kind "tokens", when the store
 *    knows it) along;
 *  - a Mesh takes its mesh status, its Secrets (the builtin CA keys `<mesh>.ca-builtin-*` and
 *    those users applied, as Kuma deletes a mesh's resources with it) and whatever identity,
 *    status or token of the mesh is left;
 * and is refused ("not-found", "ambiguous", "mesh-has-dataplanes", "secret-in-use", one
 * diagnostic per reason, each naming what needs the target) while something not deleted by
 * the same call needs a target: a Mesh that has Dataplanes, a Secret that a backend of its Mesh
 * reads (`secret: NAME`) or that holds a builtin backend's CA. The transaction is
 * compare-and-swap on every version read, and checks the version of each Mesh whose backends
 * cleared a Secret, so a change made meanwhile is never lost: STORE_ECONFLICT, with a "conflict"
 * diagnostic, nothing deleted. Returns 0 (see ret->refused) or a negative store code.
 * The caller frees *ret with delete_result_free().
 */
int delete_resources(store *s, const delete_target *targets, size_t ntargets,
                     const delete_options *opts, diag_list *diags, delete_result *ret);
void delete_result_free(delete_result *result);

/* "mesh", "dataplane", "secret". */
const char *delete_kind_word(resource_kind kind);

#endif
