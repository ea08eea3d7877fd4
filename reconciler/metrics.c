/* metrics.c - the controller's Prometheus counters and pass histogram, and the text exposition
 * format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/). */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/metrics.h"

/* ---- text format ------------------------------------------------------------------------- */

static void reserve(metrics_text *t, size_t more)
{
    if (t->failed || t->len + more + 1 <= t->cap)
        return;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + more + 1)
        cap *= 2;
    char *buf = realloc(t->buf, cap);
    if (!buf) {
        t->failed = true;
        return;
    }
    t->buf = buf;
    t->cap = cap;
}

void metrics_text_append(metrics_text *t, const char *text, size_t len)
{
    reserve(t, len);
    if (t->failed)
        return;
    memcpy(t->buf + t->len, text, len);
    t->len += len;
    t->buf[t->len] = '\0';
}

static void put(metrics_text *t, const char *text)
{
    metrics_text_append(t, text, strlen(text));
}

/* The format escapes backslash and newline everywhere, and the double quote in label values. */
static void put_escaped(metrics_text *t, const char *text, bool quote)
{
    for (const char *p = text ? text : ""; *p; p++) {
        if (*p == '\\')
            put(t, "\\\\");
        else if (*p == '\n')
            put(t, "\\n");
        else if (*p == '"' && quote)
            put(t, "\\\"");
        else
            metrics_text_append(t, p, 1);
    }
}

/* Integers as integers (a notAfter of 1798765432, not 1.798765432e+09), the rest exactly. */
static void put_value(metrics_text *t, double v)
{
    char num[64];
    if (isnan(v))
        snprintf(num, sizeof(num), "NaN");
    else if (isinf(v))
        snprintf(num, sizeof(num), v > 0 ? "+Inf" : "-Inf");
    else if (v > -1e15 && v < 1e15 && v == (double)(long long)v)
        snprintf(num, sizeof(num), "%lld", (long long)v);
    else
        snprintf(num, sizeof(num), "%.17g", v);
    put(t, num);
}

void metrics_text_family(metrics_text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP ");
    put(t, name);
    put(t, " ");
    put_escaped(t, help, false);
    put(t, "\n# TYPE ");
    put(t, name);
    put(t, " ");
    put(t, type);
    put(t, "\n");
}

/* k1="v1",k2="v2" (escaped), without braces. */
static void put_labels(metrics_text *t, const char *const *labels)
{
    for (size_t i = 0; labels && labels[i]; i += 2) {
        if (i)
            put(t, ",");
        put(t, labels[i]);
        put(t, "=\"");
        put_escaped(t, labels[i + 1], true);
        put(t, "\"");
    }
}

void metrics_text_sample(metrics_text *t, const char *name, const char *const *labels,
                         double value)
{
    put(t, name);
    if (labels && labels[0]) {
        put(t, "{");
        put_labels(t, labels);
        put(t, "}");
    }
    put(t, " ");
    put_value(t, value);
    put(t, "\n");
}

void metrics_text_free(metrics_text *t)
{
    free(t->buf);
    *t = (metrics_text)METRICS_TEXT_INIT;
}

/* ---- the registry ------------------------------------------------------------------------ */

typedef struct series {
    char *labels;   /* escaped k="v",... as written */
    double value;
} series;

typedef struct family {
    const char *name, *help;
    series *items;
    size_t count, cap;
} family;

static const double pass_bounds[] = {METRICS_PASS_BUCKETS};
#define NBOUNDS (sizeof(pass_bounds) / sizeof(pass_bounds[0]))

struct metrics {
    /* Passes may sign on worker threads and the API counts on the loop thread. */
    pthread_mutex_t lock;
    family families[3];
    uint64_t passes;
    uint64_t buckets[NBOUNDS + 1];   /* per bucket, not cumulative; the last is +Inf */
    double pass_sum;
    int64_t last_pass;
};

int metrics_new(metrics **ret)
{
    metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return MESHCA_ENOMEM;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return MESHCA_ENOMEM;
    }
    m->families[0] = (family){METRICS_SIGNATURES,
                              "Certificates signed for dataplanes by this controller, by mesh and "
                              "signing backend.", NULL, 0, 0};
    m->families[1] = (family){METRICS_ERRORS,
                              "Errors of reconcile passes, by diagnostic code (doc/diagnostics.md).",
                              NULL, 0, 0};
    m->families[2] = (family){METRICS_API_REQUESTS,
                              "Dataplane API requests answered, by path class and HTTP status code.",
                              NULL, 0, 0};
    *ret = m;
    return 0;
}

void metrics_free(metrics *m)
{
    if (!m)
        return;
    for (size_t f = 0; f < sizeof(m->families) / sizeof(m->families[0]); f++) {
        for (size_t i = 0; i < m->families[f].count; i++)
            free(m->families[f].items[i].labels);
        free(m->families[f].items);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static const char overflow_labels[] = "overflow=\"true\"";

/* The series of labels in f, added with 0 when new; NULL when out of memory or when f is full
 * (the last slot is kept for the overflow series). Lock held. */
static series *find_series(family *f, const char *labels)
{
    for (size_t i = 0; i < f->count; i++)
        if (strcmp(f->items[i].labels, labels) == 0)
            return &f->items[i];
    if (f->count >= METRICS_MAX_SERIES - (strcmp(labels, overflow_labels) != 0))
        return NULL;
    if (f->count == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        series *items = realloc(f->items, cap * sizeof(*items));
        if (!items)
            return NULL;
        f->items = items;
        f->cap = cap;
    }
    char *copy = strdup(labels);
    if (!copy)
        return NULL;
    f->items[f->count] = (series){copy, 0};
    return &f->items[f->count++];
}

void metrics_count(metrics *m, const char *family_name, const char *const *labels, double n)
{
    if (!m)
        return;
    metrics_text key = METRICS_TEXT_INIT;
    put_labels(&key, labels);
    if (key.failed)
        return;
    pthread_mutex_lock(&m->lock);
    for (size_t f = 0; f < sizeof(m->families) / sizeof(m->families[0]); f++) {
        if (strcmp(m->families[f].name, family_name) != 0)
            continue;
        series *s = find_series(&m->families[f], key.buf ? key.buf : "");
        if (!s && m->families[f].count >= METRICS_MAX_SERIES - 1)
            s = find_series(&m->families[f], overflow_labels);
        if (s)
            s->value += n;
        break;
    }
    pthread_mutex_unlock(&m->lock);
    metrics_text_free(&key);
}

void metrics_observe_pass(metrics *m, double seconds, int64_t end, bool ok)
{
    if (!m)
        return;
    size_t b = 0;
    while (b < NBOUNDS && seconds > pass_bounds[b])
        b++;
    pthread_mutex_lock(&m->lock);
    m->passes++;
    m->buckets[b]++;
    m->pass_sum += seconds;
    if (ok)
        m->last_pass = end;
    pthread_mutex_unlock(&m->lock);
}

void metrics_render(metrics *m, metrics_text *t)
{
    pthread_mutex_lock(&m->lock);
    for (size_t f = 0; f < sizeof(m->families) / sizeof(m->families[0]); f++) {
        const family *fam = &m->families[f];
        metrics_text_family(t, fam->name, "counter", fam->help);
        for (size_t i = 0; i < fam->count; i++) {
            put(t, fam->name);
            if (fam->items[i].labels[0]) {
                put(t, "{");
                put(t, fam->items[i].labels);
                put(t, "}");
            }
            put(t, " ");
            put_value(t, fam->items[i].value);
            put(t, "\n");
        }
    }
    metrics_text_family(t, "meshca_reconcile_passes_total", "counter",
                        "Reconcile passes this controller ran.");
    metrics_text_sample(t, "meshca_reconcile_passes_total", NULL, (double)m->passes);
    static const char hist[] = "meshca_reconcile_pass_duration_seconds";
    metrics_text_family(t, hist, "histogram", "How long reconcile passes took.");
    uint64_t cumulative = 0;
    for (size_t b = 0; b <= NBOUNDS; b++) {
        char le[32];
        if (b < NBOUNDS)
            snprintf(le, sizeof(le), "%.15g", pass_bounds[b]);
        else
            snprintf(le, sizeof(le), "+Inf");
        cumulative += m->buckets[b];
        const char *labels[] = {"le", le, NULL};
        metrics_text_sample(t, "meshca_reconcile_pass_duration_seconds_bucket", labels,
                            (double)cumulative);
    }
    metrics_text_sample(t, "meshca_reconcile_pass_duration_seconds_sum", NULL, m->pass_sum);
    metrics_text_sample(t, "meshca_reconcile_pass_duration_seconds_count", NULL,
                        (double)m->passes);
    metrics_text_family(t, "meshca_reconcile_last_success_timestamp_seconds", "gauge",
                        "When the last reconcile pass that the store did not fail ended (seconds "
                        "since the epoch); 0 before the first.");
    metrics_text_sample(t, "meshca_reconcile_last_success_timestamp_seconds", NULL,
                        (double)m->last_pass);
    pthread_mutex_unlock(&m->lock);
}

const char *metrics_api_path_class(const char *path)
{
    static const char *const endings[] = {"/csr", "/identity", "/ack", "/roots"};
    if (!path)
        return "other";
    if (strcmp(path, "/healthz") == 0)
        return "healthz";
    if (strcmp(path, "/readyz") == 0)
        return "readyz";
    if (strcmp(path, "/metrics") == 0)
        return "metrics";
    if (strncmp(path, "/v1/meshes/", 11) != 0)
        return "other";
    size_t len = strlen(path);
    for (size_t i = 0; i < sizeof(endings) / sizeof(endings[0]); i++) {
        size_t n = strlen(endings[i]);
        if (len > n && strcmp(path + len - n, endings[i]) == 0)
            return endings[i] + 1;
    }
    return "other";
}
