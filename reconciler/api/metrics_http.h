/* metrics_http.h - serving /metrics over plain HTTP (run --metrics ADDR:PORT), and the answer
 * the dataplane API gives on GET /metrics when no separate port is set. */
#ifndef MESHCA_METRICS_HTTP_H
#define MESHCA_METRICS_HTTP_H

#include <stdint.h>

#include "manifests/error.h"
#include "reconciler/metrics.h"

struct event_base;
struct evhttp_request;

/* Writes the whole exposition to t: 0, or a MESHCA_E* code with a line in errbuf (answered with
 * 503 and that line: it must hold no secret). Called on the loop thread. */
typedef int (*metrics_http_render_fn)(void *ctx, metrics_text *t, char *errbuf);

/* Answers req with the exposition (200, METRICS_CONTENT_TYPE) or 503 and the error line. */
void metrics_http_reply(struct evhttp_request *req, metrics_http_render_fn render, void *ctx);

typedef struct metrics_http metrics_http;

/* Listens on address:port (port 0: any free port) on `base` (borrowed, outlives the listener)
 * and answers GET /metrics; any other path is 404. Caller frees *ret with metrics_http_free().
 * MESHCA_EIO when the address cannot be bound. */
int metrics_http_new(struct event_base *base, const char *address, uint16_t port,
                     metrics_http_render_fn render, void *ctx, metrics_http **ret, char *errbuf);
/* The bound port (useful after port 0). */
uint16_t metrics_http_port(const metrics_http *mh);
/* Accepts NULL. */
void metrics_http_free(metrics_http *mh);

#endif
