/* diag.h - diagnostics: collected problems with severity, stable code, source mark and field path. */
#ifndef MESHCA_DIAG_H
#define MESHCA_DIAG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* Where a value came from. `file` is borrowed: it points into the manifest_set (or other owner)
 * that produced the mark and is valid as long as that owner. line/column are 1-based; 0 means
 * "unknown" (e.g. a value that came from a default). */
typedef struct source_mark {
    const char *file;
    unsigned line;
    unsigned column;
} source_mark;

#define SOURCE_MARK_NONE ((source_mark){NULL, 0, 0})

typedef enum diag_severity {
    DIAG_ERROR = 0,
    DIAG_WARNING = 1,
} diag_severity;

/* One problem. All strings are owned by the diag (copied on add). */
typedef struct diag {
    diag_severity severity;
    char *code;    /* stable machine-readable code, e.g. "duplicate-backend" (doc/diagnostics.md) */
    char *file;    /* may be NULL when the problem has no source location */
    unsigned line; /* 1-based, 0 = unknown */
    unsigned column;
    char *path;    /* field path, e.g. "mtls.backends[1].name"; may be "" */
    char *message; /* one line, never contains secret material */
} diag;

/* A growable list of diagnostics. Zero-initialise with DIAG_LIST_INIT; free with diag_list_free().
 * `out_of_memory` is sticky: set when a diagnostic could not be stored (or a validator could not
 * allocate what it needed to check), so the list is incomplete and the check unfinished. Whoever
 * prints diagnostics must test it and fail (exit 2, "out of memory") instead of reporting a
 * possibly clean result. */
typedef struct diag_list {
    diag *items;
    size_t count;
    size_t capacity;
    bool out_of_memory;
} diag_list;

#define DIAG_LIST_INIT {NULL, 0, 0, false}

/* Appends a diagnostic. `mark` may be NULL. `path` may be NULL (stored as ""). The message is
 * printf-formatted and cut at one line. Never aborts: out of memory drops the diagnostic and sets
 * list->out_of_memory. */
void diag_add(diag_list *list, diag_severity severity, const char *code, const source_mark *mark,
              const char *path, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void diag_addv(diag_list *list, diag_severity severity, const char *code, const source_mark *mark,
               const char *path, const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));

/* Shorthands. */
#define diag_error(list, code, mark, path, ...) diag_add((list), DIAG_ERROR, (code), (mark), (path), __VA_ARGS__)
#define diag_warning(list, code, mark, path, ...) diag_add((list), DIAG_WARNING, (code), (mark), (path), __VA_ARGS__)

size_t diag_count(const diag_list *list, diag_severity severity);
int diag_has_errors(const diag_list *list);

/* Moves every diagnostic of `from` to the end of `to`; `from` is left empty. An out_of_memory
 * flag of `from` carries over to `to`; so does a failure to grow `to` (the moved diagnostics are
 * then dropped). */
void diag_list_move(diag_list *to, diag_list *from);

/* Stable sort by file, line, column (diagnostics without a file last). */
void diag_list_sort(diag_list *list);

void diag_list_free(diag_list *list);

#endif
