/* fuzz-api-body.c - libFuzzer target for the dataplane API's request bodies (SPEC S12, S13): the
 * JSON body of POST .../csr and PUT .../ack through the server's own handlers; any body must get
 * 202/200 or a 4xx/503 reply, never a crash, a leak, undefined behaviour or no reply at all. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

/* The handlers and their body parsing are file-static in server.c, so the target compiles it in.
 * A request without a connection is freed by evhttp_send_reply (libevent's evhttp_send), so the
 * reply's status is recorded first by wrapping that one call. */
static int fuzz_replied_status;
static int fuzz_replies;

static void fuzz_send_reply(struct evhttp_request *req, int code, const char *reason,
                            struct evbuffer *body)
{
    fuzz_replied_status = code;
    fuzz_replies++;
    evhttp_send_reply(req, code, reason, body);
}

#define evhttp_send_reply fuzz_send_reply
#include "reconciler/api/server.c"
#undef evhttp_send_reply

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fake_key_type(void *ctx, const char *mesh_name, const char *dp_name, csr_key_type *ret,
                         char *errbuf)
{
    *ret = *(const csr_key_type *)ctx;
    return 0;
}

static int fake_submit_csr(void *ctx, const api_principal *who, const char *mesh_name,
                           const char *dp_name, const unsigned char *spki, size_t spki_len,
                           const char *csr_pem, char *errbuf)
{
    /* The handler must hand over a checked key and the request it came from. */
    if (!spki || spki_len == 0 || !csr_pem)
        abort();
    return 0;
}

static int fake_ack(void *ctx, const api_principal *who, const char *mesh_name,
                    const char *dp_name, uint64_t generation, char *errbuf)
{
    if (generation < 1)
        abort(); /* the handler refuses a generation below 1 itself */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte picks the route and the key type the mesh asks for; the rest is the body. */
    if (size < 1)
        return 0;
    unsigned sel = data[0];
    csr_key_type want = (sel & 2) ? CSR_KEY_RSA_2048 : CSR_KEY_EC_P256;
    api_handlers handlers = {
        .ctx = &want, .key_type = fake_key_type, .submit_csr = fake_submit_csr, .ack = fake_ack};
    api_server srv;
    memset(&srv, 0, sizeof(srv));
    srv.opts.handlers = &handlers;
    route_params params;
    memset(&params, 0, sizeof(params));
    snprintf(params.mesh, sizeof(params.mesh), "default");
    snprintf(params.dataplane, sizeof(params.dataplane), "web-01");
    api_principal who;
    memset(&who, 0, sizeof(who));

    struct evhttp_request *req = evhttp_request_new(NULL, NULL);
    if (!req)
        return 0;
    evbuffer_add(evhttp_request_get_input_buffer(req), data + 1, size - 1);
    request_ctx rc = {.srv = &srv, .req = req, .params = &params, .who = &who};
    fuzz_replies = 0;
    fuzz_replied_status = 0;
    if (sel & 1)
        route_ack(&rc);
    else
        route_csr(&rc);
    /* Exactly one reply (which freed the request), with a status the API documents. */
    if (fuzz_replies != 1)
        abort();
    switch (fuzz_replied_status) {
    case 200: case 202: case 400: case 413: case 503:
        break;
    default:
        abort();
    }
    return 0;
}
