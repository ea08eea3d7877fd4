/* test-etcd-keys.c - Check suite for the etcd key layout, compares, fencing, txn splitting, and the
 * client against fake members (no etcd). */
#define _GNU_SOURCE 1
#include "reconciler/store/etcd_client.h"
#include "reconciler/store/etcd_keys.h"

#include <arpa/inet.h>
#include <check.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

START_TEST(prefix_end_increments_the_last_byte_and_drops_trailing_ff)
{
    char out[8];

    ck_assert_uint_eq(etcd_prefix_end("/a/", 3, out), 3);
    ck_assert_int_eq(memcmp(out, "/a0", 3), 0);
    ck_assert_uint_eq(etcd_prefix_end("a\xff\xff", 3, out), 1);
    ck_assert_int_eq(out[0], 'b');
    /* Nothing to increment: "\0" means every key from the start key on. */
    ck_assert_uint_eq(etcd_prefix_end("\xff\xff", 2, out), 1);
    ck_assert_int_eq(out[0], '\0');
    ck_assert_uint_eq(etcd_prefix_end("x\xfe", 2, out), 2);
    ck_assert_int_eq((unsigned char)out[1], 0xff);
}
END_TEST

START_TEST(object_key_is_kind_mesh_name_and_parses_back)
{
    char key[ETCD_KEYS_KEY_MAX];
    size_t len = 0;
    etcd_keys_parsed p;

    ck_assert_int_eq(etcd_keys_object("dataplanes", "default", "web-01", key, &len), 0);
    ck_assert_str_eq(key, "/meshca/dataplanes/default/web-01");
    ck_assert_uint_eq(len, strlen(key));
    ck_assert_int_eq(etcd_keys_parse(key, len, &p), 0);
    ck_assert_str_eq(p.kind, "dataplanes");
    ck_assert_str_eq(p.mesh, "default");
    ck_assert_str_eq(p.name, "web-01");
    /* A mesh-level object repeats its name as mesh, so every kind lists alike. */
    ck_assert_int_eq(etcd_keys_object("meshes", "default", "default", key, NULL), 0);
    ck_assert_str_eq(key, "/meshca/meshes/default/default");
    ck_assert_int_eq(etcd_keys_list_prefix("dataplanes", NULL, key, &len), 0);
    ck_assert_str_eq(key, "/meshca/dataplanes/");
    ck_assert_int_eq(etcd_keys_list_prefix("dataplanes", "default", key, &len), 0);
    ck_assert_str_eq(key, "/meshca/dataplanes/default/");
    /* The longest names fit the buffer. */
    {
        char name[ETCD_KEYS_NAME_MAX + 1];
        memset(name, 'a', ETCD_KEYS_NAME_MAX);
        name[ETCD_KEYS_NAME_MAX] = '\0';
        ck_assert_int_eq(etcd_keys_object("dataplanes", name, name, key, &len), 0);
        ck_assert_int_eq(etcd_keys_parse(key, len, &p), 0);
        ck_assert_str_eq(p.name, name);
    }
}
END_TEST

START_TEST(names_that_could_escape_their_key_are_refused)
{
    char key[ETCD_KEYS_KEY_MAX];
    etcd_keys_parsed p;
    const char *bad[] = {"", "a/b", "..", "a..b", "A", "a b", "a\n"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(etcd_keys_object("secrets", bad[i], "n", key, NULL) == ETCD_EINVAL,
                      "mesh '%s'", bad[i]);
        ck_assert_msg(etcd_keys_object("secrets", "m", bad[i], key, NULL) == ETCD_EINVAL,
                      "name '%s'", bad[i]);
    }
    ck_assert_int_eq(etcd_keys_object("se/crets", "m", "n", key, NULL), ETCD_EINVAL);
    ck_assert_int_eq(etcd_keys_object("secrets", NULL, "n", key, NULL), ETCD_EINVAL);
    /* Keys that are not objects of the layout are not taken for one. */
    ck_assert_int_eq(etcd_keys_parse(ETCD_KEYS_LEADER, strlen(ETCD_KEYS_LEADER), &p), ETCD_EINVAL);
    ck_assert_int_eq(etcd_keys_parse("/other/a/b/c", 12, &p), ETCD_EINVAL);
    ck_assert_int_eq(etcd_keys_parse("/meshca/a/b/c/d", 15, &p), ETCD_EINVAL);
    ck_assert_int_eq(etcd_keys_parse("/meshca/a/../c", 14, &p), ETCD_EINVAL);
    ck_assert_int_eq(etcd_keys_parse("/meshca/a/b/c\0d", 15, &p), ETCD_EINVAL);
    ck_assert_int_eq(etcd_keys_parse("/meshca/a//c", 12, &p), ETCD_EINVAL);
}
END_TEST

START_TEST(expected_versions_map_to_create_and_mod_revision_compares)
{
    etcd_compare c;

    ck_assert_int_eq(etcd_keys_expect("k", 1, ETCD_KEYS_ANY_VERSION, 0, &c), 0);
    ck_assert_int_eq(etcd_keys_expect("k", 1, 0, 0, &c), 1);
    ck_assert_int_eq(c.target, ETCD_CMP_CREATE_REVISION);
    ck_assert_int_eq(c.result, ETCD_CMP_EQUAL);
    ck_assert_int_eq(c.number, 0);
    ck_assert_int_eq(etcd_keys_expect("k", 1, 42, 0, &c), 1);
    ck_assert_int_eq(c.target, ETCD_CMP_MOD_REVISION);
    ck_assert_int_eq(c.result, ETCD_CMP_EQUAL);
    ck_assert_int_eq(c.number, 42);
    ck_assert_int_eq(etcd_keys_expect("k", 1, 42, 1, &c), 1);
    ck_assert_int_eq(c.target, ETCD_CMP_MOD_REVISION);
    /* A delete needs the object to exist: create_revision > 0. */
    ck_assert_int_eq(etcd_keys_expect("k", 1, ETCD_KEYS_ANY_VERSION, 1, &c), 1);
    ck_assert_int_eq(c.target, ETCD_CMP_CREATE_REVISION);
    ck_assert_int_eq(c.result, ETCD_CMP_GREATER);
    ck_assert_int_eq(c.number, 0);
    ck_assert_int_eq(etcd_keys_expect("k", 1, 0, 1, &c), ETCD_EINVAL);
    ck_assert_int_eq(etcd_keys_expect("k", 1, (uint64_t)INT64_MAX + 1, 0, &c), ETCD_EINVAL);
}
END_TEST

START_TEST(fence_and_campaign_guard_the_leader_key)
{
    etcd_compare c;
    etcd_op put, get;

    etcd_keys_fence(7, &c);
    ck_assert_int_eq(c.target, ETCD_CMP_LEASE);
    ck_assert_int_eq(c.result, ETCD_CMP_EQUAL);
    ck_assert_int_eq(c.number, 7);
    ck_assert_int_eq(memcmp(c.key, "/meshca/leader", c.key_len), 0);
    etcd_keys_campaign("r1", 2, 9, &c, &put, &get);
    ck_assert_int_eq(c.target, ETCD_CMP_CREATE_REVISION);
    ck_assert_int_eq(c.number, 0);
    ck_assert_int_eq(put.type, ETCD_OP_PUT);
    ck_assert_int_eq(put.lease, 9);
    ck_assert_int_eq(memcmp(put.value, "r1", 2), 0);
    ck_assert_int_eq(get.type, ETCD_OP_GET);
}
END_TEST

START_TEST(failure_reads_name_the_op_and_its_class)
{
    etcd_kv leader = {.lease = 5}, other_leader = {.lease = 6}, obj = {.mod_revision = 10};
    etcd_txn_get gets[3] = {{&leader, 1}, {&obj, 1}, {NULL, 0}};
    etcd_keys_check checks[2] = {{10, 0}, {ETCD_KEYS_ANY_VERSION, 1}};
    size_t idx = 0;

    /* op 0 holds (version 10), op 1 deletes an absent object: not found, at index 1. */
    ck_assert_int_eq(etcd_keys_explain_failure(checks, 2, gets, 3, 1, 5, &idx), ETCD_ENOTFOUND);
    ck_assert_uint_eq(idx, 1);
    /* op 0 expected 9 but finds 10: conflict at index 0. */
    checks[0].expected_version = 9;
    ck_assert_int_eq(etcd_keys_explain_failure(checks, 2, gets, 3, 1, 5, &idx), ETCD_ECONFLICT);
    ck_assert_uint_eq(idx, 0);
    /* Create expected (0) but it exists: conflict. */
    checks[0].expected_version = 0;
    ck_assert_int_eq(etcd_keys_explain_failure(checks, 1, gets, 2, 1, 5, &idx), ETCD_ECONFLICT);
    /* The leader key on someone else's lease, or gone: leadership lost, before any op. */
    gets[0].kvs = &other_leader;
    ck_assert_int_eq(etcd_keys_explain_failure(checks, 2, gets, 3, 1, 5, &idx), MESHCA_ESTATE);
    ck_assert_uint_eq(idx, SIZE_MAX);
    gets[0].n = 0;
    ck_assert_int_eq(etcd_keys_explain_failure(checks, 2, gets, 3, 1, 5, &idx), MESHCA_ESTATE);
    /* Reads that do not match the ops: not a conflict to show a user. */
    ck_assert_int_eq(etcd_keys_explain_failure(checks, 2, gets, 2, 1, 5, &idx), ETCD_EIO);
    checks[0].expected_version = 10;
    checks[1].is_delete = 0;
    ck_assert_int_eq(etcd_keys_explain_failure(checks, 2, gets + 1, 2, 0, 0, &idx), ETCD_EIO);
}
END_TEST

START_TEST(plan_splits_a_pass_within_max_txn_ops_and_request_bytes)
{
    size_t bytes[300], ends[300], nb = 0, idx = 0;

    for (size_t i = 0; i < 300; i++)
        bytes[i] = etcd_keys_op_bytes(40, 100);
    /* Fenced: the fence takes one of the 128 compares, so 127 ops per txn. */
    ck_assert_int_eq(
        etcd_keys_plan(bytes, 300, 128, ETCD_DEFAULT_MAX_REQUEST_BYTES, 1, ends, &nb, &idx), 0);
    ck_assert_uint_eq(nb, 3);
    ck_assert_uint_eq(ends[0], 127);
    ck_assert_uint_eq(ends[1], 254);
    ck_assert_uint_eq(ends[2], 300);
    ck_assert_int_eq(
        etcd_keys_plan(bytes, 300, 128, ETCD_DEFAULT_MAX_REQUEST_BYTES, 0, ends, &nb, &idx), 0);
    ck_assert_uint_eq(ends[0], 128);
    /* Large values: cut by bytes. Each 600 KiB op: two fit 1.5 MiB, a third does not. */
    for (size_t i = 0; i < 5; i++)
        bytes[i] = etcd_keys_op_bytes(40, 600 * 1024);
    ck_assert_int_eq(
        etcd_keys_plan(bytes, 5, 128, ETCD_DEFAULT_MAX_REQUEST_BYTES, 1, ends, &nb, &idx), 0);
    ck_assert_uint_eq(nb, 3);
    ck_assert_uint_eq(ends[0], 2);
    ck_assert_uint_eq(ends[1], 4);
    ck_assert_uint_eq(ends[2], 5);
    /* One op above the limit on its own: refused, naming it. */
    bytes[3] = etcd_keys_op_bytes(40, 2 * 1024 * 1024);
    ck_assert_int_eq(
        etcd_keys_plan(bytes, 5, 128, ETCD_DEFAULT_MAX_REQUEST_BYTES, 1, ends, &nb, &idx),
        ETCD_EINVAL);
    ck_assert_uint_eq(idx, 3);
    /* Nothing to do: no batch. */
    ck_assert_int_eq(
        etcd_keys_plan(bytes, 0, 128, ETCD_DEFAULT_MAX_REQUEST_BYTES, 1, ends, &nb, &idx), 0);
    ck_assert_uint_eq(nb, 0);
}
END_TEST

START_TEST(bad_endpoint_lists_and_tls_options_are_refused_with_a_reason)
{
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    char err[MESHCA_ERRBUF];
    const char *bad[] = {"",           "host",       "host:",       "host:0",
                         "host:65536", "http://h:1", "user:pw@h:1", "h:1,",
                         ",h:1",       "h:1,,h:2",   ":1"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o.endpoints = bad[i];
        err[0] = '\0';
        ck_assert_msg(etcd_client_new(&o, &c, err) == ETCD_EINVAL, "'%s' accepted", bad[i]);
        ck_assert_msg(strncmp(err, "etcd: ", 6) == 0, "'%s': no reason: %s", bad[i], err);
        /* The reason never repeats user info that might be a password. */
        ck_assert_ptr_null(strstr(err, "pw"));
    }
    o.endpoints = "a:1,b:2,[::1]:3";
    ck_assert_int_eq(etcd_client_new(&o, &c, err), 0);
    ck_assert_uint_eq(etcd_client_endpoint_count(c), 3);
    ck_assert_str_eq(etcd_client_endpoint(c, 2), "[::1]:3");
    etcd_client_free(c);
    /* Certificates without TLS, a certificate without its key, an unreadable file. */
    o.cert = "/etc/hostname";
    ck_assert_int_eq(etcd_client_new(&o, &c, err), ETCD_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "etcds://"));
    o.tls = 1;
    ck_assert_int_eq(etcd_client_new(&o, &c, err), ETCD_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "needs its key"));
    o.cert = NULL;
    o.cacert = "/nonexistent/ca.pem";
    ck_assert_int_eq(etcd_client_new(&o, &c, err), ETCD_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/ca.pem"));
}
END_TEST

/* A port on 127.0.0.1 that refuses connections: bound, then closed. */
static int closed_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static long slept[16];
static int nslept;

static void record_sleep(void *ud, long ms)
{
    (void)ud;
    if (nslept < 16)
        slept[nslept++] = ms;
}

START_TEST(unreachable_members_give_no_member_answered_after_bounded_rounds_with_backoff)
{
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    char eps[64], err[MESHCA_ERRBUF] = "", a[32], b[32];
    int pa = closed_port(), pb = closed_port();

    snprintf(a, sizeof(a), "127.0.0.1:%d", pa);
    snprintf(b, sizeof(b), "127.0.0.1:%d", pb);
    snprintf(eps, sizeof(eps), "%s,%s", a, b);
    o.endpoints = eps;
    o.rounds = 4;
    o.backoff_initial_ms = 100;
    o.backoff_max_ms = 300;
    o.sleep_ms = record_sleep;
    ck_assert_int_eq(etcd_client_new(&o, &c, err), 0);
    nslept = 0;
    ck_assert_int_eq(etcd_put(c, "k", 1, "v", 1, 0, NULL, err), ETCD_EUNAVAILABLE);
    ck_assert_msg(strncmp(err, "no etcd member answered (", 25) == 0, "%s", err);
    ck_assert_msg(strstr(err, a) && strstr(err, b), "%s", err);
    /* Three sleeps between four rounds, doubling up to the cap. */
    ck_assert_int_eq(nslept, 3);
    ck_assert_int_eq(slept[0], 100);
    ck_assert_int_eq(slept[1], 200);
    ck_assert_int_eq(slept[2], 300);
    etcd_client_free(c);
}
END_TEST

START_TEST(txn_over_the_limits_is_refused_before_sending)
{
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    char eps[32], err[MESHCA_ERRBUF] = "";
    etcd_op ops[129];
    etcd_txn_request t = {NULL, 0, ops, 129, NULL, 0};
    static char big[ETCD_DEFAULT_MAX_REQUEST_BYTES];

    /* Nothing listens there: a request that got sent would fail as unavailable instead. */
    snprintf(eps, sizeof(eps), "127.0.0.1:%d", closed_port());
    o.endpoints = eps;
    o.sleep_ms = record_sleep;
    ck_assert_int_eq(etcd_client_new(&o, &c, err), 0);
    ck_assert_uint_eq(etcd_client_max_txn_ops(c), 128);
    ck_assert_uint_eq(etcd_client_max_request_bytes(c), 1536 * 1024);
    for (int i = 0; i < 129; i++)
        ops[i] = (etcd_op){.type = ETCD_OP_DELETE, .key = "k", .key_len = 1};
    ck_assert_int_eq(etcd_txn(c, &t, NULL, err), ETCD_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "max-txn-ops 128"));
    ops[0] = (etcd_op){
        .type = ETCD_OP_PUT, .key = "k", .key_len = 1, .value = big, .value_len = sizeof(big)};
    t.nsuccess = 1;
    ck_assert_int_eq(etcd_txn_request_size(&t) > sizeof(big), 1);
    ck_assert_int_eq(etcd_txn(c, &t, NULL, err), ETCD_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "request limit"));
    ck_assert_int_eq(etcd_put(c, "", 0, "v", 1, 0, NULL, err), ETCD_EINVAL);
    etcd_client_free(c);
}
END_TEST

/*
 * A fake member: answers every request on 127.0.0.1 with one canned HTTP answer (body
 * repeated `repeat` times) and writes one byte to a pipe per request, so a test sees which
 * member got what. Serves at most 20 connections; the test kills it.
 */
typedef struct fake {
    pid_t pid;
    int port;
    int count_fd; /* read end: one byte per request served */
} fake;

/* Connection k gets answer min(k, nanswers - 1); or, with needles, the first answer not given
 * yet whose needle is in the request's body (none: the connection is closed unanswered). Each
 * request body is appended to logfd (>= 0). */
static void fake_serve(int lfd, int wfd, const char *const *statuses, const char *const *bodies,
                       const char *const *needles, int nanswers, size_t repeat, int logfd)
{
    bool given[16] = {false};

    for (int conns = 0; conns < 20; conns++) {
        int k = conns < nanswers ? conns : nanswers - 1;
        char req[8192];
        size_t got = 0;
        int fd = accept(lfd, NULL, NULL);
        char *hdr_end = NULL, *cl;
        size_t need;

        if (fd < 0)
            _exit(1);
        while (!hdr_end && got < sizeof(req) - 1) {
            ssize_t n = read(fd, req + got, sizeof(req) - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            req[got] = '\0';
            hdr_end = strstr(req, "\r\n\r\n");
        }
        cl = hdr_end ? strcasestr(req, "content-length:") : NULL;
        need = cl ? (size_t)strtoul(cl + 15, NULL, 10) + (size_t)(hdr_end + 4 - req) : got;
        while (got < need && got < sizeof(req) - 1) {
            ssize_t n = read(fd, req + got, sizeof(req) - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        if (logfd >= 0 && hdr_end)
            dprintf(logfd, "%.*s\n", (int)(got - (size_t)(hdr_end + 4 - req)), hdr_end + 4);
        if (write(wfd, "r", 1) != 1)
            _exit(1);
        req[got] = '\0';
        for (k = needles ? 0 : k; needles && k < nanswers; k++)
            if (!given[k] && hdr_end && strstr(hdr_end + 4, needles[k]))
                break;
        if (k == nanswers) {
            close(fd);
            continue;
        }
        given[k] = true;
        const char *status = statuses[k], *body = bodies[k];
        dprintf(fd,
                "HTTP/1.1 %s\r\nContent-Type: application/json\r\nConnection: close\r\n"
                "Content-Length: %zu\r\n\r\n",
                status, strlen(body) * repeat);
        for (size_t i = 0; i < repeat; i++)
            if (write(fd, body, strlen(body)) < 0)
                break;
        close(fd);
    }
    _exit(0);
}

static fake fake_start_answers(const char *const *statuses, const char *const *bodies,
                               const char *const *needles, int nanswers, size_t repeat, int logfd)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    int lfd = socket(AF_INET, SOCK_STREAM, 0), p[2];
    fake f = {0};

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_ge(lfd, 0);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(lfd, 16), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    f.port = ntohs(a.sin_port);
    f.pid = fork();
    ck_assert_int_ge(f.pid, 0);
    if (f.pid == 0) {
        close(p[0]);
        fake_serve(lfd, p[1], statuses, bodies, needles, nanswers, repeat, logfd);
    }
    close(lfd);
    close(p[1]);
    f.count_fd = p[0];
    ck_assert_int_eq(fcntl(f.count_fd, F_SETFL, O_NONBLOCK), 0);
    return f;
}

static fake fake_start_seq(const char *const *statuses, const char *const *bodies, int nanswers,
                           size_t repeat, int logfd)
{
    return fake_start_answers(statuses, bodies, NULL, nanswers, repeat, logfd);
}

static fake fake_start(const char *status, const char *body, size_t repeat)
{
    return fake_start_seq(&status, &body, 1, repeat, -1);
}

/* Requests served so far (the fake writes before it answers, so none is missed). */
static int fake_count(fake *f)
{
    char b[64];
    static int counts[65536];
    ssize_t n;

    while ((n = read(f->count_fd, b, sizeof(b))) > 0)
        counts[f->port] += (int)n;
    return counts[f->port];
}

static void fake_stop(fake *f)
{
    kill(f->pid, SIGKILL);
    waitpid(f->pid, NULL, 0);
    close(f->count_fd);
}

static etcd_client *client_of(const fake *a, const fake *b)
{
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    char eps[64], err[MESHCA_ERRBUF] = "";

    snprintf(eps, sizeof(eps), "127.0.0.1:%d,127.0.0.1:%d", a->port, b->port);
    o.endpoints = eps;
    o.rounds = 1;
    o.sleep_ms = record_sleep;
    ck_assert_msg(etcd_client_new(&o, &c, err) == 0, "%s", err);
    return c;
}

#define TIMED_OUT                                                                                  \
    "{\"error\":\"etcdserver: request timed out\",\"message\":\"etcdserver: request timed "        \
    "out\",\"code\":14}"
#define NO_LEADER                                                                                  \
    "{\"error\":\"etcdserver: no leader\",\"message\":\"etcdserver: no leader\",\"code\":14}"
#define TXN_OK "{\"header\":{\"revision\":\"7\"},\"succeeded\":true}"

START_TEST(txn_whose_outcome_is_unknown_is_not_replayed_on_another_member)
{
    fake a = fake_start("503 Service Unavailable", TIMED_OUT, 1),
         b = fake_start("200 OK", TXN_OK, 1);
    etcd_client *c = client_of(&a, &b);
    etcd_op op = {.type = ETCD_OP_PUT, .key = "k", .key_len = 1, .value = "v", .value_len = 1};
    etcd_txn_request t = {NULL, 0, &op, 1, NULL, 0};
    etcd_txn_result res;
    char err[MESHCA_ERRBUF] = "";

    /* Member a may have applied it: sending it to b as well could apply it twice. */
    ck_assert_int_eq(etcd_txn(c, &t, &res, err), ETCD_EUNAVAILABLE);
    ck_assert_msg(strstr(err, "outcome unknown") && strstr(err, "etcdserver: request timed out"),
                  "%s", err);
    ck_assert_int_eq(fake_count(&a), 1);
    ck_assert_int_eq(fake_count(&b), 0);
    /* The caller's retry starts at the next member, which answers. */
    ck_assert_int_eq(etcd_txn(c, &t, &res, err), 0);
    ck_assert_int_eq(res.succeeded, 1);
    ck_assert_int_eq(res.revision, 7);
    etcd_txn_result_free(&res);
    ck_assert_int_eq(fake_count(&b), 1);
    etcd_client_free(c);
    fake_stop(&a);
    fake_stop(&b);
}
END_TEST

START_TEST(txn_refused_for_no_leader_and_idempotent_ops_fail_over_at_once)
{
    fake a = fake_start("503 Service Unavailable", NO_LEADER, 1),
         b = fake_start("200 OK", TXN_OK, 1);
    fake a2 = fake_start("503 Service Unavailable", TIMED_OUT, 1);
    etcd_client *c = client_of(&a, &b);
    etcd_op op = {.type = ETCD_OP_PUT, .key = "k", .key_len = 1, .value = "v", .value_len = 1};
    etcd_txn_request t = {NULL, 0, &op, 1, NULL, 0};
    char err[MESHCA_ERRBUF] = "";
    int64_t rev = 0;

    /* "no leader": refused before it was proposed, so the txn safely moves on to b. */
    ck_assert_msg(etcd_txn(c, &t, NULL, err) == 0, "%s", err);
    ck_assert_int_eq(fake_count(&a), 1);
    ck_assert_int_eq(fake_count(&b), 1);
    etcd_client_free(c);
    /* A plain put may be replayed whatever happened: a2 times out, b takes it. */
    c = client_of(&a2, &b);
    ck_assert_msg(etcd_put(c, "k", 1, "v", 1, 0, &rev, err) == 0, "%s", err);
    ck_assert_int_eq(rev, 7);
    ck_assert_int_eq(fake_count(&a2), 1);
    ck_assert_int_eq(fake_count(&b), 2);
    etcd_client_free(c);
    fake_stop(&a);
    fake_stop(&a2);
    fake_stop(&b);
}
END_TEST

START_TEST(answer_above_the_response_limit_is_cut_off_not_buffered)
{
    fake a = fake_start("200 OK", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                        64 * 1024);
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    char eps[32], err[MESHCA_ERRBUF] = "";
    etcd_kv *kv = NULL;

    snprintf(eps, sizeof(eps), "127.0.0.1:%d", a.port);
    o.endpoints = eps;
    o.max_response = 1024 * 1024; /* the fake sends 4 MiB */
    o.rounds = 1;
    ck_assert_int_eq(etcd_client_new(&o, &c, err), 0);
    ck_assert_int_eq(etcd_get(c, "k", 1, &kv, NULL, err), ETCD_EIO);
    ck_assert_msg(strstr(err, "answer larger than 1048576 bytes") && strstr(err, eps), "%s", err);
    etcd_client_free(c);
    fake_stop(&a);
}
END_TEST

START_TEST(range_pages_read_the_first_pages_revision_and_report_its_compaction)
{
    /* Page 1: key "/p/a" at revision 42, more to come; page 2: etcd says 42 is compacted. */
    const char *statuses[] = {"200 OK", "400 Bad Request"};
    const char *bodies[] = {
        "{\"header\":{\"revision\":\"42\"},\"kvs\":[{\"key\":\"L3AvYQ==\",\"mod_revision\":\"40\","
        "\"value\":\"eA==\"}],\"more\":true,\"count\":\"2\"}",
        "{\"error\":\"etcdserver: mvcc: required revision has been "
        "compacted\",\"message\":\"etcdserver: mvcc: "
        "required revision has been compacted\",\"code\":11}",
    };
    char logpath[] = "/tmp/meshca-test-etcd-log-XXXXXX", eps[32], err[MESHCA_ERRBUF] = "",
         line[512];
    int logfd = mkstemp(logpath);
    fake a;
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    etcd_kv *kvs = NULL;
    size_t n = 0;
    FILE *f;

    ck_assert_int_ge(logfd, 0);
    a = fake_start_seq(statuses, bodies, 2, 1, logfd);
    snprintf(eps, sizeof(eps), "127.0.0.1:%d", a.port);
    o.endpoints = eps;
    o.page_limit = 1;
    o.rounds = 1;
    ck_assert_int_eq(etcd_client_new(&o, &c, err), 0);
    ck_assert_int_eq(etcd_range(c, "/p/", 3, NULL, 0, &kvs, &n, NULL, err), ETCD_ECOMPACTED);
    ck_assert_msg(strstr(err, "required revision has been compacted") && strstr(err, eps), "%s",
                  err);
    ck_assert_ptr_null(kvs);
    etcd_client_free(c);
    fake_stop(&a);

    /* The second page asked for revision 42 and started just after "/p/a" ("/p/a\0"). */
    f = fdopen(logfd, "r");
    ck_assert_ptr_nonnull(f);
    rewind(f);
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
    ck_assert_ptr_null(strstr(line, "\"revision\""));
    ck_assert_ptr_nonnull(strstr(line, "\"limit\":1"));
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
    ck_assert_msg(strstr(line, "\"revision\":\"42\""), "%s", line);
    ck_assert_msg(strstr(line, "\"key\":\"L3AvYQA=\""), "%s", line);
    ck_assert_msg(strstr(line, "\"range_end\":\"L3Aw\""), "%s", line); /* "/p0" */
    fclose(f);
    unlink(logpath);
}
END_TEST

/* The requests of a listing over more than one page: the first page (linearizable, limit), the
 * keys after it (keys_only, pinned, serializable), then the values between listed keys (pinned,
 * serializable, no limit, range_end the next page's first key). A member behind the leader
 * answers "future revision" to a serializable read of the pinned revision: that request is
 * asked again, linearizable (which waits until the member caught up), not failed. */
START_TEST(range_pages_after_the_first_are_bounded_serializable_and_survive_a_future_revision)
{
    /* "/p/a" L3AvYQ==, "/p/b" L3AvYg==, "/p/c" L3AvYw== */
    const char *statuses[] = {"200 OK", "400 Bad Request", "200 OK", "200 OK", "200 OK"};
    const char *bodies[] = {
        "{\"header\":{\"revision\":\"42\"},\"kvs\":[{\"key\":\"L3AvYQ==\",\"mod_revision\":\"40\","
        "\"value\":\"eA==\"}],\"more\":true,\"count\":\"3\"}",
        "{\"error\":\"etcdserver: mvcc: required revision is a future revision\",\"message\":"
        "\"etcdserver: mvcc: required revision is a future revision\",\"code\":11}",
        "{\"header\":{\"revision\":\"43\"},\"kvs\":[{\"key\":\"L3AvYg==\",\"mod_revision\":\"41\"},"
        "{\"key\":\"L3AvYw==\",\"mod_revision\":\"42\"}],\"count\":\"2\"}",
        "{\"header\":{\"revision\":\"43\"},\"kvs\":[{\"key\":\"L3AvYg==\",\"mod_revision\":\"41\","
        "\"value\":\"eQ==\"}],\"count\":\"1\"}",
        "{\"header\":{\"revision\":\"43\"},\"kvs\":[{\"key\":\"L3AvYw==\",\"mod_revision\":\"42\","
        "\"value\":\"eg==\"}],\"count\":\"1\"}",
    };
    char logpath[] = "/tmp/meshca-test-etcd-log-XXXXXX", eps[32], err[MESHCA_ERRBUF] = "",
         line[5][512];
    int logfd = mkstemp(logpath);
    fake a;
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    etcd_kv *kvs = NULL;
    size_t n = 0;
    int64_t rev = 0;
    FILE *f;

    ck_assert_int_ge(logfd, 0);
    a = fake_start_seq(statuses, bodies, 5, 1, logfd);
    snprintf(eps, sizeof(eps), "127.0.0.1:%d", a.port);
    o.endpoints = eps;
    o.page_limit = 1;
    o.rounds = 1;
    o.parallel_pages = 0; /* the fake answers in the order it is asked */
    ck_assert_int_eq(etcd_client_new(&o, &c, err), 0);
    ck_assert_msg(etcd_range(c, "/p/", 3, NULL, 0, &kvs, &n, &rev, err) == 0, "%s", err);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(rev, 42);
    ck_assert_str_eq(kvs[0].value, "x");
    ck_assert_str_eq(kvs[1].key, "/p/b");
    ck_assert_str_eq(kvs[1].value, "y");
    ck_assert_str_eq(kvs[2].value, "z");
    ck_assert_int_eq(kvs[2].mod_revision, 42);
    /* etcd's work: the counts of the five answers (the error has none). */
    ck_assert_uint_eq(etcd_client_range_keys(c), 3 + 2 + 1 + 1);
    etcd_kvs_free(kvs, n);
    etcd_client_free(c);
    fake_stop(&a);

    f = fdopen(logfd, "r");
    ck_assert_ptr_nonnull(f);
    rewind(f);
    for (int i = 0; i < 5; i++)
        ck_assert_ptr_nonnull(fgets(line[i], sizeof(line[i]), f));
    fclose(f);
    unlink(logpath);
    ck_assert_ptr_null(strstr(line[0], "\"revision\""));
    ck_assert_ptr_null(strstr(line[0], "serializable"));
    /* The keys after "/p/a", at 42, from a member that may be behind: then linearizable. */
    for (int i = 1; i <= 2; i++) {
        ck_assert_msg(strstr(line[i], "\"keys_only\":true"), "%s", line[i]);
        ck_assert_msg(strstr(line[i], "\"revision\":\"42\""), "%s", line[i]);
        ck_assert_msg(strstr(line[i], "\"key\":\"L3AvYQA=\""), "%s", line[i]);
        ck_assert_msg(strstr(line[i], "\"range_end\":\"L3Aw\""), "%s", line[i]);
    }
    ck_assert_msg(strstr(line[1], "\"serializable\":true"), "%s", line[1]);
    ck_assert_msg(!strstr(line[2], "serializable"), "%s", line[2]);
    /* Values: ["/p/b", "/p/c") then ["/p/c", "/p0"), no limit, no keys_only. */
    ck_assert_msg(strstr(line[3], "\"key\":\"L3AvYg==\"") &&
                      strstr(line[3], "\"range_end\":\"L3AvYw==\""), "%s", line[3]);
    ck_assert_msg(strstr(line[4], "\"key\":\"L3AvYw==\"") &&
                      strstr(line[4], "\"range_end\":\"L3Aw\""), "%s", line[4]);
    for (int i = 3; i < 5; i++) {
        ck_assert_msg(strstr(line[i], "\"revision\":\"42\"") &&
                          strstr(line[i], "\"serializable\":true"), "%s", line[i]);
        ck_assert_msg(!strstr(line[i], "limit") && !strstr(line[i], "keys_only"), "%s", line[i]);
    }
}
END_TEST

/* Value pages are asked two at a time (on two connections); when one of the pair fails, that
 * page is asked again alone, and the listing is whole and in order. The fake answers by what a
 * request asks for, as the pair's order of arrival is not fixed. */
START_TEST(range_page_of_a_pair_that_fails_is_asked_again_alone)
{
    /* "/p/" L3Av; "/p/a" L3AvYQ==, "/p/b" L3AvYg==, "/p/c" L3AvYw==, "/p/d" L3AvZA== */
    const char *needles[] = {
        "\"key\":\"L3Av\"",          /* the first page */
        "\"keys_only\":true",        /* the keys after it */
        "\"key\":\"L3AvYg==\"",      /* the page [b, c): fails the first time */
        "\"key\":\"L3AvYg==\"",      /* ... and is answered when asked alone */
        "\"key\":\"L3AvYw==\"",      /* the page [c, d), its pair */
        "\"key\":\"L3AvZA==\"",      /* the page [d, end), alone */
    };
    const char *statuses[] = {"200 OK", "200 OK", "503 Service Unavailable", "200 OK", "200 OK",
                              "200 OK"};
    const char *bodies[] = {
        "{\"header\":{\"revision\":\"42\"},\"kvs\":[{\"key\":\"L3AvYQ==\",\"mod_revision\":\"40\","
        "\"value\":\"dw==\"}],\"more\":true,\"count\":\"4\"}",
        "{\"header\":{\"revision\":\"42\"},\"kvs\":[{\"key\":\"L3AvYg==\",\"mod_revision\":\"41\"},"
        "{\"key\":\"L3AvYw==\",\"mod_revision\":\"41\"},{\"key\":\"L3AvZA==\",\"mod_revision\":"
        "\"42\"}],\"count\":\"3\"}",
        TIMED_OUT,
        "{\"header\":{\"revision\":\"42\"},\"kvs\":[{\"key\":\"L3AvYg==\",\"mod_revision\":\"41\","
        "\"value\":\"eA==\"}],\"count\":\"1\"}",
        "{\"header\":{\"revision\":\"42\"},\"kvs\":[{\"key\":\"L3AvYw==\",\"mod_revision\":\"41\","
        "\"value\":\"eQ==\"}],\"count\":\"1\"}",
        "{\"header\":{\"revision\":\"42\"},\"kvs\":[{\"key\":\"L3AvZA==\",\"mod_revision\":\"42\","
        "\"value\":\"eg==\"}],\"count\":\"1\"}",
    };
    char eps[32], err[MESHCA_ERRBUF] = "";
    fake a = fake_start_answers(statuses, bodies, needles, 6, 1, -1);
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    etcd_kv *kvs = NULL;
    size_t n = 0;
    int64_t rev = 0;

    snprintf(eps, sizeof(eps), "127.0.0.1:%d", a.port);
    o.endpoints = eps;
    o.page_limit = 1;
    o.rounds = 1;
    o.sleep_ms = record_sleep;
    ck_assert(o.parallel_pages);
    ck_assert_int_eq(etcd_client_new(&o, &c, err), 0);
    ck_assert_msg(etcd_range(c, "/p/", 3, NULL, 0, &kvs, &n, &rev, err) == 0, "%s", err);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(rev, 42);
    const char *want_keys[] = {"/p/a", "/p/b", "/p/c", "/p/d"}, *want_values[] = {"w", "x", "y", "z"};
    for (size_t i = 0; i < 4; i++) {
        ck_assert_str_eq(kvs[i].key, want_keys[i]);
        ck_assert_str_eq(kvs[i].value, want_values[i]);
    }
    /* Every answer was asked for: the failed page twice (the pair's, then alone). */
    ck_assert_int_eq(fake_count(&a), 6);
    etcd_kvs_free(kvs, n);
    etcd_client_free(c);
    fake_stop(&a);
}
END_TEST

/* ---- listings whose answers are wrong: refused, never a listing with keys missing ---------- */

/* "/p/a" L3AvYQ==, "/p/b" L3AvYg==, "/p/c" L3AvYw== at revision 42 */
#define FIRST_A                                                                                    \
    "{\"header\":{\"revision\":\"42\"},\"kvs\":[{\"key\":\"L3AvYQ==\",\"mod_revision\":\"40\","    \
    "\"value\":\"eA==\"}],\"more\":true,\"count\":\"3\"}"
#define KEYS_BC                                                                                    \
    "{\"header\":{\"revision\":\"42\"},\"kvs\":[{\"key\":\"L3AvYg==\",\"mod_revision\":\"41\"},"   \
    "{\"key\":\"L3AvYw==\",\"mod_revision\":\"42\"}],\"count\":\"2\"}"
#define VALUE_C                                                                                    \
    "{\"header\":{\"revision\":\"42\"},\"kvs\":[{\"key\":\"L3AvYw==\",\"mod_revision\":\"42\","    \
    "\"value\":\"eg==\"}],\"count\":\"1\"}"

/* etcd_range (keys_only: etcd_range_keys) of "/p/" against one fake member answering `bodies`
 * with `status` (NULL: all 200) in order, one value page at a time; *ret_requests: the requests
 * it got. */
static int list_status_against(const char *const *status, const char *const *bodies, int nbodies,
                               bool keys_only, etcd_kv **kvs, size_t *n, int64_t *rev, char *err,
                               char *eps, int *ret_requests)
{
    const char *statuses[8];
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    for (int i = 0; i < nbodies; i++)
        statuses[i] = status ? status[i] : "200 OK";
    fake a = fake_start_seq(statuses, bodies, nbodies, 1, -1);
    snprintf(eps, 32, "127.0.0.1:%d", a.port);
    o.endpoints = eps;
    o.page_limit = 1;
    o.keys_page_limit = 2;
    o.rounds = 1;
    o.sleep_ms = record_sleep;
    o.parallel_pages = 0; /* the fake answers in the order it is asked */
    ck_assert_int_eq(etcd_client_new(&o, &c, err), 0);
    *kvs = NULL;
    *n = 0;
    int r = keys_only ? etcd_range_keys(c, "/p/", 3, kvs, n, rev, err)
                      : etcd_range(c, "/p/", 3, NULL, 0, kvs, n, rev, err);
    etcd_client_free(c);
    *ret_requests = fake_count(&a);
    fake_stop(&a);
    return r;
}

static int list_against(const char *const *bodies, int nbodies, bool keys_only, etcd_kv **kvs,
                        size_t *n, int64_t *rev, char *err, char *eps, int *ret_requests)
{
    return list_status_against(NULL, bodies, nbodies, keys_only, kvs, n, rev, err, eps,
                               ret_requests);
}

/* The revision compacted between the keys-only pages and a value page: the listing fails with
 * ETCD_ECOMPACTED (which the etcd store answers by listing again), not with EIO, and returns no
 * part of it. */
START_TEST(value_page_of_a_compacted_revision_fails_the_listing_as_compacted)
{
    const char *status[] = {"200 OK", "200 OK", "400 Bad Request", "200 OK"};
    const char *bodies[] = {
        FIRST_A, KEYS_BC,
        "{\"error\":\"etcdserver: mvcc: required revision has been compacted\",\"message\":"
        "\"etcdserver: mvcc: required revision has been compacted\",\"code\":11}",
        VALUE_C};
    char err[MESHCA_ERRBUF] = "", eps[32];
    etcd_kv *kvs;
    size_t n;
    int requests = 0;
    int r = list_status_against(status, bodies, 4, false, &kvs, &n, NULL, err, eps, &requests);
    ck_assert_msg(r == ETCD_ECOMPACTED, "%d (%s)", r, err);
    ck_assert_msg(strstr(err, "required revision has been compacted") && strstr(err, eps), "%s",
                  err);
    ck_assert_ptr_null(kvs);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(requests, 3);
}
END_TEST

/* A value page must hold exactly the keys the keys-only pages listed at that revision: one that
 * holds another key, or none (a member that lost "/p/b"), fails the listing with EIO naming the
 * member and revision; a listing without "/p/b" would have a pass take it for deleted. */
START_TEST(value_page_with_other_keys_than_listed_fails_the_listing)
{
    static const char *const wrong_b[] = {
        /* [b, c) answered with "/p/c" */
        VALUE_C,
        /* [b, c) answered with no key */
        "{\"header\":{\"revision\":\"42\"},\"count\":\"0\"}",
        /* [b, c) answered with "/p/b" and "/p/c" */
        "{\"header\":{\"revision\":\"42\"},\"kvs\":[{\"key\":\"L3AvYg==\",\"mod_revision\":\"41\","
        "\"value\":\"eQ==\"},{\"key\":\"L3AvYw==\",\"mod_revision\":\"42\",\"value\":\"eg==\"}],"
        "\"count\":\"2\"}",
    };
    for (size_t w = 0; w < sizeof(wrong_b) / sizeof(wrong_b[0]); w++) {
        const char *bodies[] = {FIRST_A, KEYS_BC, wrong_b[w], VALUE_C};
        char err[MESHCA_ERRBUF] = "", eps[32], want[160];
        etcd_kv *kvs;
        size_t n;
        int64_t rev = 0;
        int requests = 0;
        int r = list_against(bodies, 4, false, &kvs, &n, &rev, err, eps, &requests);
        ck_assert_msg(r == ETCD_EIO, "answer %zu: %d, %zu keys (%s)", w, r, n, err);
        snprintf(want, sizeof(want), "etcd: %s answered other keys at revision 42 than it listed",
                 eps);
        ck_assert_str_eq(err, want);
        ck_assert_ptr_null(kvs);
        ck_assert_uint_eq(n, 0);
        /* refused at the wrong page: the one after it was not asked */
        ck_assert_int_eq(requests, 3);
    }
}
END_TEST

/* A page that says "more" but holds no key cannot say where the next page starts: the listing
 * fails with EIO at once (the first page: no key to start after; a keys-only page: no end). */
START_TEST(page_saying_more_without_a_key_fails_the_listing_at_once)
{
    static const char more_none[] = "{\"header\":{\"revision\":\"42\"},\"more\":true,\"count\":\"3\"}";
    static const struct {
        const char *bodies[3];
        int nbodies;
        bool keys_only;
        int requests;
    } cases[] = {
        {{more_none, FIRST_A}, 2, false, 1},         /* the first page */
        {{FIRST_A, more_none, KEYS_BC}, 3, false, 2}, /* a keys-only page after it */
        {{more_none, KEYS_BC}, 2, true, 1},          /* etcd_range_keys' first page */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[MESHCA_ERRBUF] = "", eps[32];
        etcd_kv *kvs;
        size_t n;
        int requests = 0;
        int r = list_against(cases[i].bodies, cases[i].nbodies, cases[i].keys_only, &kvs, &n, NULL,
                             err, eps, &requests);
        ck_assert_msg(r == ETCD_EIO, "case %zu: %d (%s)", i, r, err);
        ck_assert_str_eq(err, "etcd: range answer says 'more' but holds no key");
        ck_assert_ptr_null(kvs);
        ck_assert_int_eq(requests, cases[i].requests);
    }
}
END_TEST

/* An answer the direct reader does not take (a string with an escape) is read as JSON, with the
 * same keys, values and revision; one with a key that is not base64 is a malformed answer (EIO
 * naming the member), not a listing without that key. */
START_TEST(range_answer_with_an_escape_is_read_as_json_and_a_malformed_one_refused)
{
    static const char *const escaped[] = {
        "{\"header\":{\"member\":\"a\\/b\",\"revision\":\"42\"},\"kvs\":[{\"key\":\"L3AvYQ==\","
        "\"mod_revision\":\"40\",\"value\":\"eA==\"},{\"key\":\"L3AvYg==\",\"mod_revision\":\"41\","
        "\"value\":\"eQ==\"}],\"count\":\"2\"}",
    };
    static const char *const malformed[] = {
        "{\"header\":{\"member\":\"a\\/b\",\"revision\":\"42\"},\"kvs\":[{\"key\":\"L3AvYQ==\","
        "\"value\":\"eA==\"},{\"key\":\"not base64!\",\"value\":\"eQ==\"}],\"count\":\"2\"}",
    };
    char err[MESHCA_ERRBUF] = "", eps[32], want[128];
    etcd_kv *kvs;
    size_t n;
    int64_t rev = 0;
    int requests = 0;
    ck_assert_msg(list_against(escaped, 1, false, &kvs, &n, &rev, err, eps, &requests) == 0, "%s",
                  err);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(rev, 42);
    ck_assert_str_eq(kvs[0].key, "/p/a");
    ck_assert_str_eq(kvs[0].value, "x");
    ck_assert_str_eq(kvs[1].key, "/p/b");
    ck_assert_str_eq(kvs[1].value, "y");
    ck_assert_int_eq(kvs[1].mod_revision, 41);
    etcd_kvs_free(kvs, n);
    ck_assert_int_eq(list_against(malformed, 1, false, &kvs, &n, &rev, err, eps, &requests),
                     ETCD_EIO);
    snprintf(want, sizeof(want), "etcd: malformed range answer from %s", eps);
    ck_assert_str_eq(err, want);
    ck_assert_ptr_null(kvs);
}
END_TEST

static Suite *etcd_keys_suite(void)
{
    Suite *s = suite_create("etcd-keys");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, prefix_end_increments_the_last_byte_and_drops_trailing_ff);
    tcase_add_test(tc, object_key_is_kind_mesh_name_and_parses_back);
    tcase_add_test(tc, names_that_could_escape_their_key_are_refused);
    tcase_add_test(tc, expected_versions_map_to_create_and_mod_revision_compares);
    tcase_add_test(tc, fence_and_campaign_guard_the_leader_key);
    tcase_add_test(tc, failure_reads_name_the_op_and_its_class);
    tcase_add_test(tc, plan_splits_a_pass_within_max_txn_ops_and_request_bytes);
    tcase_add_test(tc, bad_endpoint_lists_and_tls_options_are_refused_with_a_reason);
    tcase_add_test(tc,
                   unreachable_members_give_no_member_answered_after_bounded_rounds_with_backoff);
    tcase_add_test(tc, txn_over_the_limits_is_refused_before_sending);
    tcase_add_test(tc, txn_whose_outcome_is_unknown_is_not_replayed_on_another_member);
    tcase_add_test(tc, txn_refused_for_no_leader_and_idempotent_ops_fail_over_at_once);
    tcase_add_test(tc, answer_above_the_response_limit_is_cut_off_not_buffered);
    tcase_add_test(tc, range_pages_read_the_first_pages_revision_and_report_its_compaction);
    tcase_add_test(tc,
                   range_pages_after_the_first_are_bounded_serializable_and_survive_a_future_revision);
    tcase_add_test(tc, range_page_of_a_pair_that_fails_is_asked_again_alone);
    tcase_add_test(tc, value_page_with_other_keys_than_listed_fails_the_listing);
    tcase_add_test(tc, page_saying_more_without_a_key_fails_the_listing_at_once);
    tcase_add_test(tc, range_answer_with_an_escape_is_read_as_json_and_a_malformed_one_refused);
    tcase_add_test(tc, value_page_of_a_compacted_revision_fails_the_listing_as_compacted);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(etcd_keys_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
