/* metrics.h - the controller's Prometheus metrics: counters and the pass-duration histogram that
 * passes and the API increment (thread-safe), and the text exposition format 0.0.4. */
#ifndef MESHCA_METRICS_H
#define MESHCA_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifests/error.h"

/* The text exposition format 0.0.4, as served (Content-Type). */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* Upper bounds (seconds) of the pass-duration histogram's buckets, then +Inf. */
#define METRICS_PASS_BUCKETS 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120
/* Distinct label sets one counter family keeps; more are folded into one "overflow" series so
 * that a stream of odd values (error codes, paths) cannot grow the controller without bound. */
#define METRICS_MAX_SERIES 1024

/* ---- text format ------------------------------------------------------------------------- */

/* A growing text buffer. A failed allocation sets `failed` and later writes do nothing, so a
 * writer checks once at the end. */
typedef struct metrics_text {
    char *buf;
    size_t len, cap;
    bool failed;
} metrics_text;

#define METRICS_TEXT_INIT {NULL, 0, 0, false}

/* "# HELP name help" and "# TYPE name type" (type: counter, gauge, histogram). help is escaped
 * (backslash, newline) as the format asks. */
void metrics_text_family(metrics_text *t, const char *name, const char *type, const char *help);
/* One sample: name{k="v",...} value. labels is NULL or pairs k, v, ..., NULL; values are
 * escaped (backslash, double quote, newline); a NULL value is written as "". */
void metrics_text_sample(metrics_text *t, const char *name, const char *const *labels,
                         double value);
/* Appends raw text (another buffer's contents). */
void metrics_text_append(metrics_text *t, const char *text, size_t len);
/* Frees the buffer and resets it. Accepts an empty one. */
void metrics_text_free(metrics_text *t);

/* ---- the registry ------------------------------------------------------------------------ */

typedef struct metrics metrics;

/* The counters of one controller; caller frees with metrics_free(). 0 or MESHCA_ENOMEM. */
int metrics_new(metrics **ret);
void metrics_free(metrics *m);

/* Counters (any thread). Labels as in metrics_text_sample; the family must be one of those
 * metrics_render writes (METRICS_SIGNATURES, METRICS_ERRORS, METRICS_API_REQUESTS). An
 * allocation failure loses the increment, never the controller. */
#define METRICS_SIGNATURES "meshca_signatures_total"
#define METRICS_ERRORS "meshca_errors_total"
#define METRICS_API_REQUESTS "meshca_api_requests_total"
void metrics_count(metrics *m, const char *family, const char *const *labels, double n);

/* One reconcile pass ended at `end` (seconds since the epoch) after `seconds`; `ok` when the
 * store did not fail under it (only those move the last-success time an alert watches). */
void metrics_observe_pass(metrics *m, double seconds, int64_t end, bool ok);

/* Writes every family of the registry (counters, passes, the pass histogram with cumulative
 * buckets, _sum and _count, the last pass's time) to t. */
void metrics_render(metrics *m, metrics_text *t);

/* The class of an API request path, a bounded label value: "csr", "identity", "ack", "roots",
 * "healthz", "readyz", "metrics" or "other". */
const char *metrics_api_path_class(const char *path);

#endif
