/* common.h - helpers shared by the store-backed commands: opening the store, loading state. */
#ifndef MESHCA_CMD_COMMON_H
#define MESHCA_CMD_COMMON_H

#include "manifests/manifest.h"
#include "manifests/status.h"
#include "reconciler/store.h"

/* Paths given with -f (and validate's --from): at most CLI_MAX_PATHS per flag. */
#define CLI_MAX_PATHS 256

/* Appends `path` to list[*n] (CLI_MAX_PATHS entries); -1 with an error printed when full. */
int cli_add_path(const char **list, size_t *n, const char *path);

/* After getopt: no operand left and at least one -f path, else -1 with the error printed
 * ("nothing to <verb>: give -f PATH; run 'meshca help <command>'"). */
int cli_require_paths(int argc, char **argv, size_t npaths, const char *verb, const char *command);

/* Loads every path into `set`, problems into `diags`; -1 when a path could not be read at all. */
int cli_load_paths(manifest_set *set, const char *const *paths, size_t n, diag_list *diags);

/* Opens the store of --store / $MESHCA_STORE / sqlite://.meshca/meshca.db; prints the reason on failure. */
store *cli_open_store(void);
/* The same for a command that only reads (get, inspect, roots, diff, dry runs, validate
 * --store; url NULL = --store / $MESHCA_STORE / the default): a SQLite store that does not
 * exist yet is read as an empty one, with a note on stderr, and no file or directory is made
 * (a mistyped path must not leave a new empty store behind). */
store *cli_open_store_to_read(const char *url);
/* The same without the note, for input a command already refuses (apply of files with errors:
 * checked against the store for the rest of its diagnostics, stored nowhere). */
store *cli_open_store_to_check(void);
/* An empty listing for -m MESH when MESH is not in the store (a typo) says so on stderr, as
 * kubectl's "No resources found in NS namespace"; the exit code stays 0 for scripts. */
void cli_note_unknown_mesh(const manifest_set *set, const char *mesh_name);

/* Dataplanes of `mesh_name` in `set`, as a malloc'd array of borrowed pointers (caller frees);
 * NULL (and *ret_n 0) when out of memory. */
const dataplane **cli_dataplanes_of(const manifest_set *set, const char *mesh_name, size_t *ret_n);

/* The status of `name` in `status`, or NULL. */
const dataplane_status *cli_find_status(const status_set *status, const char *mesh_name,
                                        const char *name);

/* The kuma.io/service values of a dataplane, all inbounds, as "a,b" (caller frees); NULL when
 * out of memory. */
char *cli_dataplane_services(const dataplane *dp);

#endif
