/* bench-etcd.c - bench-all's reconcile figures on etcd: throwaway members, etcd's own put rate as the bound. */
#define _GNU_SOURCE 1
#include "bench-etcd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "manifests/error.h"
#include "reconciler/store.h"
#include "reconciler/store/etcd_client.h"
#include "test/etcd-harness.h"
#include "test/bench/bench_clock.h"

/* The put-rate loop: bounded by time and by count. */
#define PUT_SECONDS 3.0
#define PUT_MAX 200000
/* An identity record after a pass (key, CSR, leaf and chain PEM in JSON) is about 2 KiB. */
#define PUT_VALUE_BYTES 2048
#define CMD_MAX 2048

static json_t *fail(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static json_t *fail(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return NULL;
}

/* The member's version and database size (etcd's /v3/maintenance/status). */
static int member_status(const harness *h, etcd_member_status *st)
{
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c;
    char err[MESHCA_ERRBUF];
    int r;

    o.endpoints = h->endpoints;
    if (etcd_client_new(&o, &c, err) < 0)
        return -1;
    r = etcd_member_status_get(c, 0, st, err);
    etcd_client_free(c);
    return r;
}

/*
 * What etcd allows: store_txn of store_txn_limit(s) puts each (128 by default: the size a
 * reconcile pass's write is cut into), 2 KiB values under new keys, for PUT_SECONDS or PUT_MAX
 * puts. A full pass over n dataplanes writes n identities, so n / puts_per_s is the least time
 * its writes take on this member.
 */
static json_t *put_rate(const harness *h, char *why, size_t whylen)
{
    char url[300], err[MESHCA_ERRBUF], names[1024][16], *value;
    store *s = NULL;
    store_op *ops;
    size_t limit;
    long puts = 0, txns = 0;
    double t0, wall;

    snprintf(url, sizeof(url), "etcd://%s", h->endpoints);
    if (store_open(url, &s, err) != STORE_OK)
        return fail(why, whylen, "store_open %s: %s", url, err);
    limit = store_txn_limit(s);
    if (limit > sizeof(names) / sizeof(names[0]))
        limit = sizeof(names) / sizeof(names[0]);
    value = malloc(PUT_VALUE_BYTES + 1);
    ops = calloc(limit, sizeof(*ops));
    if (!value || !ops) {
        free(value);
        free(ops);
        store_close(s);
        return fail(why, whylen, "out of memory");
    }
    memset(value, 'x', PUT_VALUE_BYTES);
    memcpy(value, "{\"pad\":\"", 8);
    memcpy(value + PUT_VALUE_BYTES - 2, "\"}", 2);
    value[PUT_VALUE_BYTES] = '\0';
    t0 = now_s();
    while (puts < PUT_MAX && now_s() - t0 < PUT_SECONDS) {
        for (size_t i = 0; i < limit; i++) {
            snprintf(names[i], sizeof(names[i]), "k-%07ld", puts + (long)i);
            ops[i] = (store_op){.type = STORE_OP_PUT, .key = {"identities", "bench", names[i]},
                                .value = value, .len = PUT_VALUE_BYTES,
                                .expected_version = STORE_ANY_VERSION};
        }
        if (store_txn(s, ops, limit) != STORE_OK) {
            snprintf(why, whylen, "put-rate txn: %s", store_errmsg(s));
            free(value);
            free(ops);
            store_close(s);
            return NULL;
        }
        puts += (long)limit;
        txns++;
    }
    wall = now_s() - t0;
    free(value);
    free(ops);
    store_close(s);
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:f, s:f, s:f}", "what",
                     "store_txn of full-size txns (store_txn_limit puts each) of 2 KiB values "
                     "under new keys, through store_etcd, one client",
                     "ops_per_txn", (json_int_t)limit, "value_bytes", (json_int_t)PUT_VALUE_BYTES,
                     "puts", (json_int_t)puts, "txns", (json_int_t)txns, "wall_s", wall,
                     "puts_per_s", puts / wall, "txns_per_s", txns / wall);
}

/* etcd's own read of everything the passes read, at their revision (nothing changed since the
 * no-op pass): `etcdctl get --prefix` (gRPC, one request, protobuf), best of READ_RUNS. -1 when
 * etcdctl is missing or fails. */
#define READ_RUNS 2
static double read_everything(const harness *h, int64_t revision)
{
    char cmd[CMD_MAX];
    double best = -1;

    if (snprintf(cmd, sizeof(cmd),
                 "ETCDCTL_API=3 etcdctl --endpoints '%s' get --prefix /meshca/ --rev %lld "
                 "-w protobuf > /dev/null",
                 h->endpoints, (long long)revision) >= (int)sizeof(cmd))
        return -1;
    for (int i = 0; i < READ_RUNS; i++) {
        double t0 = now_s(), t;
        int r = system(cmd);

        if (!WIFEXITED(r) || WEXITSTATUS(r) != 0)
            return -1;
        t = now_s() - t0;
        if (best < 0 || t < best)
            best = t;
    }
    return best;
}

/* bench-reconcile N against a fresh member; its "reconcile"[0] entry, with the member's
 * database size after the run and etcd's own time to read everything (read_everything). */
static json_t *reconcile_on_etcd(const char *bench_dir, const char *tmpdir, long n, char *why,
                                 size_t whylen)
{
    char cmd[CMD_MAX], out[512];
    harness h;
    json_t *j, *e = NULL;
    json_error_t je;
    etcd_member_status st;
    double read_s;
    int r;

    if (harness_start(&h, 1) < 0)
        return fail(why, whylen, "the etcd member for %ld dataplanes did not start", n);
    snprintf(out, sizeof(out), "%s/reconcile-etcd-%ld.json", tmpdir, n);
    if (snprintf(cmd, sizeof(cmd), "BENCH_STORE='etcd://%s' '%s/bench-reconcile' %ld > '%s'",
                 h.endpoints, bench_dir, n, out) >= (int)sizeof(cmd)) {
        harness_stop(&h);
        return fail(why, whylen, "command too long");
    }
    r = system(cmd);
    if (!WIFEXITED(r) || WEXITSTATUS(r) != 0) {
        harness_stop(&h);
        return fail(why, whylen, "bench-reconcile %ld on etcd failed", n);
    }
    memset(&st, 0, sizeof(st));
    if (member_status(&h, &st) < 0)
        st.db_size = -1;
    read_s = st.db_size >= 0 ? read_everything(&h, st.revision) : -1;
    harness_stop(&h);
    j = json_load_file(out, 0, &je);
    if (j)
        e = json_array_get(json_object_get(j, "reconcile"), 0);
    if (!e) {
        json_decref(j);
        return fail(why, whylen, "bench-reconcile %ld on etcd printed no reconcile entry", n);
    }
    json_incref(e);
    json_decref(j);
    json_object_set_new(e, "etcd_db_size_bytes_after", json_integer(st.db_size));
    json_object_set_new(e, "etcd_read_everything",
                        json_pack("{s:s, s:f}", "what",
                                  "etcdctl get --prefix /meshca/ --rev R -w protobuf > /dev/null: "
                                  "every object the passes read, at their revision, in one gRPC "
                                  "request (etcd's own client), best of 2",
                                  "wall_s", read_s));
    return e;
}

/* Each size's passes beside etcd's own bounds from this run: the full pass beside etcd's put
 * time for its identities (and pure signing), the no-op pass beside etcd's read of everything. */
static json_t *beside_bounds(json_t *rate, json_t *list)
{
    double puts = json_number_value(json_object_get(rate, "puts_per_s"));
    json_t *out = json_array(), *e;
    size_t i;

    json_array_foreach(list, i, e) {
        json_int_t n = json_integer_value(json_object_get(e, "dataplanes"));
        json_t *full = json_object_get(e, "full"), *noop = json_object_get(e, "noop");
        double full_s = json_number_value(json_object_get(full, "wall_s"));
        double pure_s = json_number_value(json_object_get(full, "pure_resign_s"));
        double put_s = puts > 0 ? (double)n / puts : 0, bound = put_s > pure_s ? put_s : pure_s;
        double noop_s = json_number_value(json_object_get(noop, "wall_s"));
        double read_s =
            json_number_value(json_object_get(json_object_get(e, "etcd_read_everything"), "wall_s"));

        json_array_append_new(
            out, json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "dataplanes", n,
                           "full_pass_s", full_s, "etcd_put_time_s", put_s, "pure_signing_s",
                           pure_s, "full_over_bound", bound > 0 ? full_s / bound : 0,
                           "noop_pass_s", noop_s, "etcd_read_everything_s", read_s,
                           "noop_over_read_everything", read_s > 0 ? noop_s / read_s : 0));
    }
    return out;
}

json_t *bench_etcd(const char *bench_dir, const char *tmpdir, bool large, char *why, size_t whylen)
{
    const long sizes[2] = {10000, 100000};
    harness h;
    etcd_member_status st;
    json_t *out, *rate, *list;

    if (!harness_available())
        return fail(why, whylen, "%s is not installed (Debian etcd-server)", ETCD_BIN);
    if (harness_start(&h, 1) < 0)
        return fail(why, whylen, "the etcd member for the put rate did not start");
    memset(&st, 0, sizeof(st));
    if (member_status(&h, &st) < 0)
        snprintf(st.version, sizeof(st.version), "?");
    rate = put_rate(&h, why, whylen);
    harness_stop(&h);
    if (!rate)
        return NULL;
    list = json_array();
    for (int i = 0; i < (large ? 2 : 1); i++) {
        json_t *e = reconcile_on_etcd(bench_dir, tmpdir, sizes[i], why, whylen);

        if (!e) {
            json_decref(rate);
            json_decref(list);
            return NULL;
        }
        json_array_append_new(list, e);
    }
    out = json_pack("{s:s, s:s, s:o, s:o, s:o}", "store",
                    "etcd: one throwaway member per measurement on 127.0.0.1, data dir on the "
                    "local disk (fsync per txn), etcd's defaults (--max-txn-ops 128, "
                    "--max-request-bytes 1.5 MiB, 2 GiB quota: 100,000 dataplanes' writes, old "
                    "revisions included, stay well within it, see etcd_db_size_bytes_after)",
                    "etcd_version", st.version, "txn_put_rate", rate, "reconcile", list,
                    "beside_bounds", beside_bounds(rate, list));
    return out;
}
