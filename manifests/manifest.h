/* manifest.h - loading resources from YAML/JSON files, directories and strings. */
#ifndef MESHCA_MANIFEST_H
#define MESHCA_MANIFEST_H

#include <stddef.h>
#include <sys/stat.h>

#include "manifests/diag.h"
#include "manifests/error.h"
#include "manifests/model.h"

/* S2 limits, each enforced while parsing with a clear diagnostic. */
#define MANIFEST_MAX_FILE_BYTES (8u * 1024u * 1024u)
#define MANIFEST_MAX_DEPTH 64
#define MANIFEST_MAX_ALIAS_NODES 10000  /* nodes created by alias expansion, per file */
#define MANIFEST_MAX_SCALAR_BYTES (1024u * 1024u)
#define MANIFEST_MAX_DOCUMENTS 100000

/* Error codes returned by manifest functions. */
enum {
    MANIFEST_OK = 0,
    MANIFEST_EIO = MESHCA_EIO,    /* a file or directory could not be read (exit code 2) */
    MANIFEST_ENOMEM = MESHCA_ENOMEM,
};

/* A set of loaded resources. Owns the resources and the file names that marks point to. */
typedef struct manifest_set manifest_set;

manifest_set *manifest_set_new(void);
void manifest_set_free(manifest_set *set);   /* accepts NULL */

/* Loads a file, or every *.yaml / *.yml below a directory (recursive, sorted by path), or standard
 * input when `path` is "-". Problems in the content (syntax, limits, types, unknown fields) are
 * appended to `diags` and the valid documents are still added; returns MANIFEST_OK. Returns
 * MANIFEST_EIO (with a diagnostic of code "unreadable") when the path cannot be read at all, and
 * MANIFEST_ENOMEM with diags->out_of_memory set when memory ran out. */
int manifest_load_path(manifest_set *set, const char *path, diag_list *diags);

/* Loads from memory; `name` is used as the file name in marks. Same contract as above. */
int manifest_load_buffer(manifest_set *set, const char *name, const char *data, size_t len,
                         diag_list *diags);

/* Loads one object the store keeps (one-line JSON, as state_encode_resource writes it) with the
 * same result and diagnostics as manifest_load_buffer(), several times faster: a JSON decoder
 * builds the document tree (json_node.h), and whatever it declines, or whatever building the
 * resource from it reports at all, is decoded again by manifest_load_buffer(), whose diagnostics
 * are the ones added. Same contract as manifest_load_buffer(). */
int manifest_load_json(manifest_set *set, const char *name, const char *data, size_t len,
                       diag_list *diags);

/* Parses one buffer into document trees without building resources (used for status files and
 * tests). Returns MANIFEST_OK and the trees in *ret_docs (caller frees each with mnode_free()
 * and the array with free()), with syntax problems in `diags`. `name` must outlive the trees'
 * marks: pass a string owned by something that lives long enough (e.g. manifest_set_intern()). */
int manifest_parse_documents(const char *name, const char *data, size_t len, mnode ***ret_docs,
                             size_t *ret_ndocs, diag_list *diags);

/* Opens `path` for reading without blocking (a FIFO with no writer would wait forever) and
 * refuses what is not a regular file. Returns the descriptor (caller closes), or MESHCA_ENOTFOUND
 * (absent) / MESHCA_EIO (unreadable, or not a regular file) with the reason (e.g. "a FIFO, not a
 * regular file") in errbuf (MESHCA_ERRBUF bytes), for the caller to put after the path;
 * *ret_st gets the file's fstat. */
int manifest_open_regular(const char *path, struct stat *ret_st, char *errbuf);

/* Copies `name` into the set and returns the set's copy (borrowed, valid until set is freed);
 * NULL on out-of-memory. */
const char *manifest_set_intern(manifest_set *set, const char *name);

/* Builds one resource from a document tree, reporting wrong types, missing required fields and
 * unknown fields (with did-you-mean) to `diags`. Returns 0 and fills *ret_res (caller clears with
 * resource_clear()), or -1 when the document is not a resource at all (no/unknown kind) or
 * memory ran out (diagnostic "out-of-memory"). */
int manifest_build_resource(const mnode *doc, unsigned doc_index, resource *ret_res,
                            diag_list *diags);

/* Access to the loaded resources, in load order. Borrowed. */
size_t manifest_set_count(const manifest_set *set);
const resource *manifest_set_get(const manifest_set *set, size_t index);
/* First Mesh named `name`, or NULL. */
const mesh *manifest_set_find_mesh(const manifest_set *set, const char *name);
/* The Dataplanes of mesh `mesh_name`, in load order: the one walk every
 * command and the controller share. *ret is a NULL-terminated array the caller frees with free()
 * (the dataplanes are borrowed from the set). Returns 0 or MESHCA_ENOMEM. */
int manifest_set_dataplanes_of(const manifest_set *set, const char *mesh_name,
                               const dataplane ***ret, size_t *ret_n);

/* Takes ownership of *res (which is zeroed), also on failure (it is cleared then). Returns 0 or
 * MANIFEST_ENOMEM. */
int manifest_set_add(manifest_set *set, resource *res);

/* Did-you-mean: the candidate closest to `word` by edit distance, ignoring ASCII case (so
 * "BUILTIN" finds "builtin"), or NULL when none is close (distance > max(2, strlen(word)/3)).
 * The first of equally close candidates wins. `candidates` is NULL-terminated. */
const char *manifest_suggest(const char *word, const char *const *candidates);

#endif
