/* status.h - dataplane status (SPEC S7): what each proxy has loaded, read from and written as JSON. */
#ifndef MESHCA_STATUS_H
#define MESHCA_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifests/diag.h"
#include "manifests/error.h"
#include "manifests/model.h"

#define STATUS_MAX_FILE_BYTES (256u * 1024u * 1024u)

typedef struct dataplane_status {
    char *mesh;
    char *name;
    model_tag *tags;   /* marks unused (zero) */
    size_t ntags;
    /* mtls: what the agent acknowledged it has loaded */
    char *issued_backend;          /* NULL: holds no acknowledged certificate */
    char **supported_backends;     /* backends whose CA is in the loaded bundle */
    size_t nsupported;
    char *certificate_serial;
    char *certificate_expiration_time;   /* RFC 3339, UTC */
    char *last_certificate_regeneration; /* RFC 3339, UTC */
    long long certificate_regenerations;
    long long generation;                /* generation of the identity the controller issued */
    long long acknowledged_generation;   /* generation the agent loaded; 0 = never */
    char *last_seen;                     /* RFC 3339, UTC */
} dataplane_status;

typedef struct status_set {
    dataplane_status *items;
    size_t count;
    size_t capacity;
} status_set;

#define STATUS_SET_INIT {NULL, 0, 0}

/* Parses the S7 format: a JSON array of objects, or an object with that array under "items".
 * Returns 0, or -1 with diagnostics (code "bad-status") naming the item index and field. */
int status_parse_json(const char *name, const char *data, size_t len, status_set *ret_set,
                      diag_list *diags);
/* Reads a file; returns -2 when it cannot be read (diagnostic code "unreadable"). */
int status_load_file(const char *path, status_set *ret_set, diag_list *diags);

/* Encodes one status as a compact JSON object (caller frees); NULL on out-of-memory. */
char *status_to_json(const dataplane_status *st);

bool status_supports(const dataplane_status *st, const char *backend);

/* The statuses of one mesh sorted by dataplane name, so that looking every dataplane up costs
 * O(n log n), not n x statuses string compares (100,000 dataplanes). `items` borrows from the
 * array given to status_index_build, which must outlive the index. */
typedef struct status_index {
    const dataplane_status **items;
    size_t count;
} status_index;

#define STATUS_INDEX_INIT {NULL, 0}

/* Indexes the entries of `status` whose mesh is `mesh_name`. Returns 0 or MESHCA_ENOMEM. */
int status_index_build(const dataplane_status *status, size_t n, const char *mesh_name,
                       status_index *ret);
/* The slot of the status named `name` (the first when a snapshot lists it twice), or NULL;
 * slot - idx->items is its position. */
const dataplane_status *const *status_index_find(const status_index *idx, const char *name);
void status_index_free(status_index *idx);
void dataplane_status_clear(dataplane_status *st);
/* Deep copy; 0, or MESHCA_ENOMEM with *dst left empty. */
int dataplane_status_copy(dataplane_status *dst, const dataplane_status *src);
/* Takes ownership and zeroes *st (clears it on failure); 0 or MESHCA_ENOMEM. */
int status_set_append(status_set *set, dataplane_status *st);
void status_set_free(status_set *set);

#endif
