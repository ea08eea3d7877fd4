/* bench-reconcile.c - full and no-op reconcile of N dataplanes, and validate of a 100,000-dataplane status (S11). */
#define _GNU_SOURCE 1
#include <ftw.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "manifests/manifest.h"
#include "manifests/status.h"
#include "reconciler/pki.h"
#include "reconciler/reconcile.h"
#include "reconciler/sign_pool.h"
#include "reconciler/state.h"
#include "validators/validators.h"

#include "store_raw.h"
#include "test/bench/bench_clock.h"

/* Sizes are bounded: each reconcile size writes N identities to a temp dir. */
#define BENCH_MAX_DATAPLANES 200000
#define BENCH_MAX_SIZES 4
#define BENCH_DEFAULT_DATAPLANES 10000
#define BENCH_VALIDATE_DATAPLANES 100000
#define BENCH_RAW_SECONDS 2.0
#define BENCH_FRAGMENT_MAX 4096

static const char MESH_ADD[] =
    "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
    "  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n";
static const char MESH_SWITCH[] =
    "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-2\n  backends:\n"
    "  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n";

/* Peak resident set of this process so far, in KiB (Linux ru_maxrss unit). */
static long maxrss_kib(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* The temp dir of the running child, removed by die() too: a failed run leaves nothing behind. */
static char tmp_to_remove[64];

static void remove_tree(const char *dir);

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("bench-reconcile: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (tmp_to_remove[0])
        remove_tree(tmp_to_remove);
    exit(2);
}

/* The machine's own limit, the same loop as bench-issue: EC P-256 keygen + sign with a CA key. */
static double raw_keygen_sign_rate(double max_s, int *ret_count)
{
    EVP_PKEY *ca_key = NULL;
    X509 *ca = NULL;
    double start, elapsed;
    int n = 0;

    if (pki_generate_key(false, 0, &ca_key, NULL) < 0 ||
        pki_make_root(ca_key, "bench", "spiffe://bench", time(NULL) - 60, 86400 * 365, &ca,
                      NULL) < 0)
        die("cannot make a CA for the raw loop");
    start = now_s();
    do {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *x = X509_new();
        int ok = key && x && X509_set_pubkey(x, key) &&
                 X509_set_issuer_name(x, X509_get_subject_name(ca)) &&
                 X509_sign(x, ca_key, EVP_sha256()) > 0;

        X509_free(x);
        EVP_PKEY_free(key);
        if (!ok)
            die("raw keygen+sign failed");
        n++;
        elapsed = now_s() - start;
    } while (elapsed < max_s);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    *ret_count = n;
    return n / elapsed;
}

/* Stores every resource of `yaml` as apply would. */
static void seed(store *s, const char *yaml, size_t len)
{
    manifest_set *set = manifest_set_new();
    diag_list diags = DIAG_LIST_INIT;

    if (manifest_load_buffer(set, "seed.yaml", yaml, len, &diags) != MANIFEST_OK ||
        diag_has_errors(&diags))
        die("seed: %s", diags.count ? diags.items[0].message : "load failed");
    for (size_t i = 0; i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        const char *name = resource_name(res);
        const char *mesh_name = resource_mesh(res);
        store_key key = {state_kind_of(res->kind), mesh_name, name};
        char *text = state_encode_resource(res);
        int r;

        if (!text)
            die("state_encode_resource failed");
        r = store_put(s, &key, text, strlen(text), STORE_ANY_VERSION, NULL);
        free(text);
        if (r != STORE_OK)
            die("store_put: %s", store_strerror(r));
    }
    diag_list_free(&diags);
    manifest_set_free(set);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Our own mkdtemp result: removed depth-first without following symlinks. */
static void remove_tree(const char *dir)
{
    if (nftw(dir, rm_entry, 64, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "bench-reconcile: could not remove %s\n", dir);
}

/* Signing workers of every pass and of the pure-signing reference (0: the online CPUs). */
static unsigned bench_workers;

/* CPU seconds (every thread) of the last run_pass and pure_resign_s: on a loaded machine the
 * wall times hold other engineers' load, the CPU time only this process's work. */
static double last_cpu_s;

static double run_pass(store *s, int64_t now, reconcile_report *ret)
{
    reconcile_options opts = RECONCILE_OPTIONS_INIT;
    diag_list diags = DIAG_LIST_INIT;
    double start;
    int r;

    opts.now = now;
    opts.sign_workers = bench_workers;
    *ret = (reconcile_report)RECONCILE_REPORT_INIT;
    last_cpu_s = cpu_now_s();
    start = now_s();
    r = reconcile_once(s, &opts, ret, &diags);
    start = now_s() - start;
    last_cpu_s = cpu_now_s() - last_cpu_s;
    if (r < 0 || diag_has_errors(&diags))
        die("reconcile_once: %d %s", r, diags.count ? diags.items[0].message : "");
    diag_list_free(&diags);
    return start;
}

/* Agents' keys: a few distinct ones, cycled (the signer does the same work for each). */
#define BENCH_KEYS 64
typedef struct bench_key {
    char *pub_pem, *csr_pem;
    unsigned char *spki;
    size_t spki_len;
} bench_key;

static void make_keys(bench_key *keys)
{
    for (int i = 0; i < BENCH_KEYS; i++) {
        EVP_PKEY *k = NULL;
        unsigned char *der = NULL;
        int n;

        if (pki_generate_key(false, 0, &k, NULL) < 0 || pki_make_csr(k, &keys[i].csr_pem, NULL) < 0 ||
            pki_pubkey_to_pem(k, &keys[i].pub_pem, NULL) < 0 || (n = i2d_PUBKEY(k, &der)) <= 0 ||
            !(keys[i].spki = malloc((size_t)n)))
            die("cannot make the agents' keys");
        memcpy(keys[i].spki, der, (size_t)n);
        keys[i].spki_len = (size_t)n;
        OPENSSL_free(der);
        EVP_PKEY_free(k);
    }
}

static void free_keys(bench_key *keys)
{
    for (int i = 0; i < BENCH_KEYS; i++) {
        free(keys[i].pub_pem);
        free(keys[i].csr_pem);
        free(keys[i].spki);
    }
}

/* n dataplanes, each with the pending key and CSR its agent sent (as reconcile_submit_key
 * stores them), written 500 at a time: seeding is not what is measured. */
static void seed_agents(store *s, long n, const bench_key *keys)
{
    enum { CHUNK = 500 };
    store_op ops[2 * CHUNK];
    char *vals[2 * CHUNK], names[CHUNK][32];
    char yaml[512];

    for (long base = 0; base < n; base += CHUNK) {
        size_t nops = 0;

        for (long i = base; i < n && i < base + CHUNK; i++) {
            manifest_set *set = manifest_set_new();
            diag_list d = DIAG_LIST_INIT;
            char *name = names[i - base];
            int len;

            snprintf(name, sizeof(names[0]), "dp-%06ld", i);
            len = snprintf(yaml, sizeof(yaml),
                           "type: Dataplane\nmesh: default\nname: %s\nnetworking:\n"
                           "  address: 127.0.0.1\n  inbound:\n  - port: 8443\n    tags:\n"
                           "      kuma.io/service: svc-%03ld\n      version: v1\n",
                           name, i % 100);
            if (!set || manifest_load_buffer(set, "dp.yaml", yaml, (size_t)len, &d) != MANIFEST_OK ||
                diag_has_errors(&d) || !(vals[nops] = state_encode_resource(manifest_set_get(set, 0))))
                die("cannot encode dataplane %s", name);
            ops[nops] = (store_op){.type = STORE_OP_PUT, .key = {STATE_DATAPLANES, "default", name},
                                   .value = vals[nops], .len = strlen(vals[nops]),
                                   .expected_version = STORE_ANY_VERSION};
            nops++;
            diag_list_free(&d);
            manifest_set_free(set);

            identity id = {.mesh = "default", .dataplane = name,
                           .pending_key_pem = keys[i % BENCH_KEYS].pub_pem,
                           .pending_csr_pem = keys[i % BENCH_KEYS].csr_pem};
            if (!(vals[nops] = identity_encode(&id)))
                die("identity_encode failed");
            ops[nops] = (store_op){.type = STORE_OP_PUT, .key = {STATE_IDENTITIES, "default", name},
                                   .value = vals[nops], .len = strlen(vals[nops]),
                                   .expected_version = STORE_ANY_VERSION};
            nops++;
        }
        if (store_txn(s, ops, nops) != STORE_OK)
            die("seeding: store_txn failed");
        for (size_t i = 0; i < nops; i++)
            free(vals[i]);
    }
}

/* The reference for a full pass: the same leaves (SANs, lifetime, keys) re-signed on a pool of
 * the same worker count, nothing else. Returns seconds. */
static double pure_resign_s(long n, const bench_key *keys, unsigned *ret_threads)
{
    EVP_PKEY *ca_key = NULL;
    X509 *ca = NULL;
    sign_pool *pool = NULL;
    sign_pool_job *jobs = calloc((size_t)n, sizeof(*jobs));
    char (*uris)[4][64] = calloc((size_t)n, sizeof(*uris));
    const char *(*ptrs)[4] = calloc((size_t)n, sizeof(*ptrs));
    double t;

    if (!jobs || !uris || !ptrs || pki_generate_key(false, 0, &ca_key, NULL) < 0 ||
        pki_make_root(ca_key, "default", "spiffe://default", time(NULL) - 60, 86400 * 365, &ca,
                      NULL) < 0 || sign_pool_new(ca, ca_key, bench_workers, &pool, NULL) < 0)
        die("cannot set up the pure signing reference");
    for (long i = 0; i < n; i++) {
        snprintf(uris[i][0], 64, "spiffe://default/svc-%03ld", i % 100);
        snprintf(uris[i][1], 64, "kuma://kuma.io/service/svc-%03ld", i % 100);
        snprintf(uris[i][2], 64, "kuma://version/v1");
        snprintf(uris[i][3], 64, "urn:meshca:dataplane:default:dp-%06ld", i);
        for (int k = 0; k < 4; k++)
            ptrs[i][k] = uris[i][k];
        jobs[i].spki_der = keys[i % BENCH_KEYS].spki;
        jobs[i].spki_len = keys[i % BENCH_KEYS].spki_len;
        jobs[i].req = (pki_leaf_request)PKI_LEAF_REQUEST_INIT;
        jobs[i].req.uris = ptrs[i];
        jobs[i].req.nuris = 4;
    }
    last_cpu_s = cpu_now_s();
    t = now_s();
    if (sign_pool_run(pool, jobs, (size_t)n, time(NULL), NULL) < 0)
        die("pure signing failed");
    t = now_s() - t;
    last_cpu_s = cpu_now_s() - last_cpu_s;
    *ret_threads = sign_pool_threads(pool);
    for (long i = 0; i < n; i++)
        pki_signed_leaf_clear(&jobs[i].leaf);
    sign_pool_free(pool);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    free(jobs);
    free(uris);
    free(ptrs);
    return t;
}

/* The mean size of the stored identity records, which the raw store loop writes. */
static size_t mean_identity_bytes(store *s)
{
    store_entry *entries = NULL;
    size_t count = 0, total = 0;

    if (store_list(s, "identities", "default", &entries, &count) != STORE_OK || count == 0)
        die("cannot list the identities: %s", store_errmsg(s));
    for (size_t i = 0; i < count; i++)
        total += entries[i].len;
    store_entries_free(entries, count);
    return total / count;
}

/* The least time a full pass can take on this machine: the signatures at this worker count
 * (pure_s), and the store's own read and rewrite of every record (raw_cpu_s, one thread, as
 * the pass's own thread does it), all of it sharing the machine's cpus. With one worker the
 * two overlap on two cores (the bound is the longer); with a worker per core they compete. */
static double full_pass_bound_s(double pure_s, double pure_cpu_s, double raw_cpu_s, long cpus)
{
    double bound = pure_s;

    if (raw_cpu_s > bound)
        bound = raw_cpu_s;
    if ((pure_cpu_s + raw_cpu_s) / (double)cpus > bound)
        bound = (pure_cpu_s + raw_cpu_s) / (double)cpus;
    return bound;
}

/* CSR pass, full pass (a switch: every key re-signed), then no-op pass over n dataplanes, and
 * the pure re-signing of the same leaves; writes one JSON object to out. */
static void bench_reconcile(long n, double raw_rate, char *out, size_t outlen)
{
    char tmpl[] = "/tmp/meshca-bench-reconcile-XXXXXX";
    char url[128], err[256] = "";
    store *s = NULL;
    reconcile_report rep;
    uint64_t rev_before = 0, rev_after = 0;
    int64_t now = time(NULL);
    double seed_s, csr_s, full_s, noop_s, pure_s, full_cpu_s, pure_cpu_s, bound_s;
    store_raw_result raw = {0, 0, 0};
    size_t record_bytes = 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long rss_seeded, rss_full, rss_noop;
    size_t csr_issued, full_reissued, noop_changed, noop_unchanged, noop_signed;
    unsigned threads = 0;
    bench_key keys[BENCH_KEYS];

    /* BENCH_KEEP_STORE=DIR: the store is made there and kept, for profiling `meshca reconcile`
     * on it (doc/performance.md). BENCH_STORE=URL (etcd://HOST:PORT): the passes run on that
     * store, which must hold no dataplane (bench-all starts a fresh etcd member per size). */
    const char *keep = getenv("BENCH_STORE");
    if (keep && *keep) {
        store_entry *entries = NULL;
        size_t count = 0;

        if (store_open(keep, &s, err) != STORE_OK)
            die("store_open %s: %s", keep, err);
        if (store_list(s, "dataplanes", NULL, &entries, &count) != STORE_OK)
            die("BENCH_STORE %s: %s", keep, store_errmsg(s));
        store_entries_free(entries, count);
        if (count)
            die("BENCH_STORE %s holds %zu dataplanes: the bench needs an empty store", keep, count);
        keep = "";
    } else if ((keep = getenv("BENCH_KEEP_STORE")))
        snprintf(url, sizeof(url), "sqlite://%s/store/meshca.db", keep);
    else if (!mkdtemp(tmpl))
        die("mkdtemp failed");
    else
        snprintf(tmp_to_remove, sizeof(tmp_to_remove), "%s", tmpl);
    if (!keep)
        snprintf(url, sizeof(url), "sqlite://%s/store/meshca.db", tmpl);
    if (!s && store_open(url, &s, err) != STORE_OK)
        die("store_open: %s", err);

    make_keys(keys);
    seed_s = now_s();
    seed(s, MESH_ADD, strlen(MESH_ADD));
    seed_agents(s, n, keys);
    seed_s = now_s() - seed_s;
    rss_seeded = maxrss_kib();

    csr_s = run_pass(s, now, &rep);
    csr_issued = rep.issued;
    reconcile_report_free(&rep);
    if (csr_issued != (size_t)n)
        die("CSR pass issued %zu of %ld", csr_issued, n);

    seed(s, MESH_SWITCH, strlen(MESH_SWITCH));
    full_s = run_pass(s, now, &rep);
    full_cpu_s = last_cpu_s;
    full_reissued = rep.reissued;
    reconcile_report_free(&rep);
    rss_full = maxrss_kib();
    if (full_reissued != (size_t)n)
        die("full (switch) pass re-signed %zu of %ld", full_reissued, n);

    store_revision(s, &rev_before);
    noop_s = run_pass(s, now, &rep);
    noop_changed = rep.issued + rep.reissued + rep.renewed + rep.rebundled;
    /* Signatures: every leaf a pass signs is an issued, reissued or renewed action. */
    noop_signed = rep.issued + rep.reissued + rep.renewed;
    noop_unchanged = rep.unchanged;
    reconcile_report_free(&rep);
    store_revision(s, &rev_after);
    rss_noop = maxrss_kib();
    if (noop_changed != 0 || rev_before != rev_after)
        die("no-op reconcile changed %zu dataplanes", noop_changed);

    /* The store's own limit for these records (SQLite only; after the peak memory was read). */
    if (!keep || *keep) {
        record_bytes = mean_identity_bytes(s);
        if (store_raw_rewrite(keep ? keep : tmpl, n, record_bytes, &raw) < 0)
            die("the raw store loop failed");
    }
    store_close(s);
    if (!keep)
        remove_tree(tmpl);
    tmp_to_remove[0] = '\0';
    pure_s = pure_resign_s(n, keys, &threads);
    pure_cpu_s = last_cpu_s;
    free_keys(keys);
    bound_s = full_pass_bound_s(pure_s, pure_cpu_s, raw.cpu_s, cpus > 0 ? cpus : 1);

    snprintf(out, outlen,
             "{\"dataplanes\":%ld,\"sign_workers\":%u,\"seed_s\":%.3f,"
             "\"csr_pass\":{\"wall_s\":%.3f,\"dataplanes_per_s\":%.1f,\"issued\":%zu},"
             "\"full\":{\"what\":\"switch: every stored key re-signed\",\"wall_s\":%.3f,"
             "\"dataplanes_per_s\":%.1f,\"reissued\":%zu,\"pure_resign_s\":%.3f,"
             "\"ratio_to_pure_signing\":%.3f,\"cpu_s\":%.3f,\"pure_resign_cpu_s\":%.3f,"
             "\"cpu_ratio_to_pure_signing\":%.3f,\"identity_record_bytes\":%zu,"
             "\"store_raw_rewrite_cpu_s\":%.3f,\"store_raw_rewrite_s\":%.3f,\"online_cpus\":%ld,"
             "\"bound_s\":%.3f,\"bound_ratio_to_pure_signing\":%.3f,"
             "\"fraction_of_raw_keygen_sign\":%.3f,\"peak_rss_kib\":%ld,"
             "\"rss_growth_per_dataplane_bytes\":%.0f},"
             "\"noop\":{\"wall_s\":%.3f,\"dataplanes_per_s\":%.1f,\"unchanged\":%zu,"
             "\"signatures\":%zu,\"writes\":%llu,\"peak_rss_kib\":%ld},"
             "\"rss_before_reconcile_kib\":%ld,\"peak_rss_per_dataplane_bytes\":%.0f}",
             n, threads, seed_s, csr_s, n / csr_s, csr_issued, full_s, n / full_s,
             full_reissued, pure_s, full_s / pure_s, full_cpu_s, pure_cpu_s,
             full_cpu_s / pure_cpu_s, record_bytes, raw.cpu_s, raw.wall_s, cpus, bound_s,
             bound_s / pure_s, (n / full_s) / raw_rate, rss_full,
             (rss_full - rss_seeded) * 1024.0 / n, noop_s, n / noop_s, noop_unchanged,
             noop_signed, (unsigned long long)(rev_after - rev_before), rss_noop, rss_seeded,
             rss_noop * 1024.0 / n);
}

static manifest_set *load_mesh(const char *yaml, const mesh **ret)
{
    manifest_set *set = manifest_set_new();
    diag_list d = DIAG_LIST_INIT;

    if (manifest_load_buffer(set, "mesh.yaml", yaml, strlen(yaml), &d) != MANIFEST_OK ||
        diag_has_errors(&d) || !(*ret = manifest_set_find_mesh(set, "default")))
        die("mesh does not load");
    diag_list_free(&d);
    return set;
}

/* validate of a switch ca-1 -> ca-2 against a status where every dataplane trusts ca-2. */
static void bench_validate(long n, char *out, size_t outlen)
{
    size_t cap = (size_t)n * 320 + 64, len = 0;
    char *buf = malloc(cap);
    const mesh *prev, *next;
    manifest_set *pset, *nset;
    status_set st = STATUS_SET_INIT;
    diag_list d = DIAG_LIST_INIT;
    transition_options opts = TRANSITION_OPTIONS_INIT;
    transition_result res;
    long rss_start = maxrss_kib(), rss_generated;
    double parse_s, validate_s, cpu_s;

    if (!buf)
        die("out of memory");
    len += (size_t)snprintf(buf + len, cap - len, "{\"items\":[");
    for (long i = 0; i < n; i++) {
        int w = snprintf(buf + len, cap - len,
                         "%s{\"mesh\":\"default\",\"name\":\"dp-%06ld\","
                         "\"tags\":{\"kuma.io/service\":\"svc-%03ld\"},"
                         "\"mtls\":{\"issuedBackend\":\"ca-1\",\"supportedBackends\":[\"ca-1\",\"ca-2\"],"
                         "\"certificateSerial\":\"%032lx\",\"certificateExpirationTime\":\"2030-01-01T00:00:00Z\","
                         "\"generation\":2,\"acknowledgedGeneration\":2}}",
                         i ? "," : "", i, i % 100, (unsigned long)i);
        if (w < 0 || (size_t)w >= cap - len)
            die("status buffer too small");
        len += (size_t)w;
    }
    if (cap - len < 3)
        die("status buffer too small");
    len += (size_t)snprintf(buf + len, cap - len, "]}");
    rss_generated = maxrss_kib();

    pset = load_mesh(MESH_ADD, &prev);
    nset = load_mesh(MESH_SWITCH, &next);
    opts.have_status = true;

    cpu_s = cpu_now_s();
    parse_s = now_s();
    if (status_parse_json("status.json", buf, len, &st, &d) != 0 || st.count != (size_t)n)
        die("status_parse_json: %s", d.count ? d.items[0].message : "wrong count");
    parse_s = now_s() - parse_s;

    validate_s = now_s();
    validate_transition(prev, next, st.items, st.count, NULL, 0, &opts, &d, &res);
    validate_s = now_s() - validate_s;
    cpu_s = cpu_now_s() - cpu_s;
    if (res.refused || diag_has_errors(&d) || res.steps != STEP_SWITCH)
        die("switch refused: %s", d.count ? d.items[0].message : "");

    snprintf(out, outlen,
             "{\"dataplanes\":%ld,\"status_bytes\":%zu,\"parse_s\":%.3f,\"validate_transition_s\":%.4f,"
             "\"total_s\":%.3f,\"total_cpu_s\":%.3f,\"per_dataplane_us\":%.2f,\"peak_rss_kib\":%ld,"
             "\"rss_before_kib\":%ld,\"rss_after_generating_json_kib\":%ld,"
             "\"peak_rss_per_dataplane_bytes\":%.0f}",
             n, len, parse_s, validate_s, parse_s + validate_s, cpu_s,
             (parse_s + validate_s) * 1e6 / n, maxrss_kib(), rss_start, rss_generated,
             (maxrss_kib() - rss_start) * 1024.0 / n);

    status_set_free(&st);
    diag_list_free(&d);
    manifest_set_free(pset);
    manifest_set_free(nset);
    free(buf);
}

/*
 * Each measurement runs in a child forked from a small parent, so its ru_maxrss is its own and
 * not the peak of an earlier one. The child writes its JSON object to a pipe.
 */
typedef void (*bench_fn)(long n, double raw_rate, char *out, size_t outlen);

static void validate_adapter(long n, double raw_rate, char *out, size_t outlen)
{
    (void)raw_rate;
    bench_validate(n, out, outlen);
}

static void run_child(bench_fn fn, long n, double raw_rate, char *out, size_t outlen)
{
    int fds[2], status;
    size_t got = 0;
    ssize_t r;
    pid_t pid;

    fflush(stdout);
    if (pipe(fds) < 0 || (pid = fork()) < 0)
        die("pipe/fork failed");
    if (pid == 0) {
        char frag[BENCH_FRAGMENT_MAX];
        size_t flen, off = 0;

        close(fds[0]);
        fn(n, raw_rate, frag, sizeof(frag));
        flen = strlen(frag);
        while (off < flen && (r = write(fds[1], frag + off, flen - off)) > 0)
            off += (size_t)r;
        _exit(off == flen ? 0 : 2);
    }
    close(fds[1]);
    while (got + 1 < outlen && (r = read(fds[0], out + got, outlen - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = '\0';
    close(fds[0]);
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || !got)
        die("benchmark child failed");
}

int main(int argc, char **argv)
{
    long sizes[BENCH_MAX_SIZES];
    int nsizes = 0, raw_count;
    char frag[BENCH_FRAGMENT_MAX];
    double raw_rate;

    for (int i = 1; i < argc; i++) {
        char *end;
        long n;

        /* --workers N: the signing workers of every pass and of the pure signing reference
         * (default 0: the online CPUs), so the full/pure ratio is measured at 1 worker too. */
        if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
            n = strtol(argv[++i], &end, 10);
            if (*end || n < 0 || n > SIGN_POOL_MAX_THREADS)
                goto usage;
            bench_workers = (unsigned)n;
            continue;
        }
        n = strtol(argv[i], &end, 10);
        if (*end || n <= 0 || n > BENCH_MAX_DATAPLANES || nsizes == BENCH_MAX_SIZES)
            goto usage;
        sizes[nsizes++] = n;
    }
    if (nsizes == 0)
        sizes[nsizes++] = BENCH_DEFAULT_DATAPLANES;

    raw_rate = raw_keygen_sign_rate(BENCH_RAW_SECONDS, &raw_count);
    printf("{\"benchmark\":\"reconcile\",\"ca\":\"builtin ec-p256\",\"leaf_key\":\"ec-p256\","
           "\"store\":\"%s\",\"cpus_online\":%ld,"
           "\"raw_keygen_sign_per_s\":%.1f,\"raw_count\":%d,\"parent_rss_kib\":%ld,\"reconcile\":[",
           getenv("BENCH_STORE") && strncmp(getenv("BENCH_STORE"), "etcd", 4) == 0 ? "etcd" : "sqlite",
           sysconf(_SC_NPROCESSORS_ONLN), raw_rate, raw_count, maxrss_kib());
    for (int i = 0; i < nsizes; i++) {
        run_child(bench_reconcile, sizes[i], raw_rate, frag, sizeof(frag));
        printf("%s%s", i ? "," : "", frag);
    }
    run_child(validate_adapter, BENCH_VALIDATE_DATAPLANES, raw_rate, frag, sizeof(frag));
    printf("],\"validate_switch\":%s}\n", frag);
    return 0;
usage:
    fprintf(stderr, "usage: bench-reconcile [--workers N<=%d] [N<=%d ...] (at most %d sizes; "
            "default %d)\n", SIGN_POOL_MAX_THREADS, BENCH_MAX_DATAPLANES, BENCH_MAX_SIZES,
            BENCH_DEFAULT_DATAPLANES);
    return 2;
}
