/* metrics_http.c - serving /metrics over plain HTTP (run --metrics ADDR:PORT), and the answer
 * the dataplane API gives on GET /metrics when no separate port is set. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "reconciler/api/metrics_http.h"

/* A scrape is read in one go; a slow scraper cannot hold the loop longer than this. */
#define METRICS_HTTP_TIMEOUT_S 30

struct metrics_http {
    struct evhttp *http;
    struct evhttp_bound_socket *socket;
    metrics_http_render_fn render;
    void *ctx;
    uint16_t port;
};

static void send_text(struct evhttp_request *req, int status, const char *reason,
                      const char *type, const char *text, size_t len)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Content-Type", type);
    evhttp_add_header(out, "Cache-Control", "no-store");
    struct evbuffer *body = evbuffer_new();
    if (!body) {
        evhttp_send_reply(req, 503, "Service Unavailable", NULL);
        return;
    }
    evbuffer_add(body, text, len);
    evhttp_send_reply(req, status, reason, body);
    evbuffer_free(body);
}

void metrics_http_reply(struct evhttp_request *req, metrics_http_render_fn render, void *ctx)
{
    metrics_text t = METRICS_TEXT_INIT;
    char err[MESHCA_ERRBUF] = "";
    int rc = render(ctx, &t, err);
    if (rc < 0 || t.failed) {
        char line[MESHCA_ERRBUF + 2];
        size_t n = (size_t)snprintf(line, sizeof(line), "%s\n",
                                    err[0] ? err : meshca_strerror(rc < 0 ? rc : MESHCA_ENOMEM));
        send_text(req, 503, "Service Unavailable", "text/plain; charset=utf-8", line,
                  n < sizeof(line) ? n : sizeof(line) - 1);
    } else {
        send_text(req, 200, "OK", METRICS_CONTENT_TYPE, t.buf ? t.buf : "", t.len);
    }
    metrics_text_free(&t);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    metrics_http *mh = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    static const char not_found[] = "not found: this port serves GET /metrics only\n";
    if (!path || strcmp(path, "/metrics") != 0) {
        send_text(req, 404, "Not Found", "text/plain; charset=utf-8", not_found,
                  sizeof(not_found) - 1);
        return;
    }
    metrics_http_reply(req, mh->render, mh->ctx);
}

int metrics_http_new(struct event_base *base, const char *address, uint16_t port,
                     metrics_http_render_fn render, void *ctx, metrics_http **ret, char *errbuf)
{
    metrics_http *mh = calloc(1, sizeof(*mh));
    if (!mh)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "metrics: out of memory");
    mh->render = render;
    mh->ctx = ctx;
    mh->http = evhttp_new(base);
    if (!mh->http) {
        free(mh);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "metrics: cannot create the HTTP server");
    }
    evhttp_set_gencb(mh->http, on_request, mh);
    evhttp_set_timeout(mh->http, METRICS_HTTP_TIMEOUT_S);
    /* A scrape is a bodiless GET. */
    evhttp_set_max_body_size(mh->http, 0);
    evhttp_set_max_headers_size(mh->http, 16 * 1024);
    evhttp_set_allowed_methods(mh->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    mh->socket = evhttp_bind_socket_with_handle(mh->http, address, port);
    if (!mh->socket) {
        int e = errno;
        evhttp_free(mh->http);
        free(mh);
        return meshca_fail(errbuf, MESHCA_EIO, "--metrics: cannot listen on %s:%u: %s", address,
                           (unsigned)port, strerror(e));
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(evhttp_bound_socket_get_fd(mh->socket), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            mh->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            mh->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    *ret = mh;
    return 0;
}

uint16_t metrics_http_port(const metrics_http *mh)
{
    return mh ? mh->port : 0;
}

void metrics_http_free(metrics_http *mh)
{
    if (!mh)
        return;
    evhttp_free(mh->http);
    free(mh);
}
