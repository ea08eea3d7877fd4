/* bench-all.c - the S11 bench in one JSON object: meshca's figures beside the machine's limit and its peers, same run. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "reconciler/pki.h"
#include "reconciler/sign_pool.h"
#include "test/bench/bench-etcd.h"
#include "test/bench/store_raw.h"
#include "test/bench/bench_clock.h"

/* Every loop is bounded by time and count, so the whole run stays within a few minutes. */
#define RAW_SECONDS 1.0
#define MESHCA_SECONDS 1.0
/* The machine is shared: the raw and meshca loops run interleaved, ROUNDS times (--rounds), and
 * each figure is its best round, so a burst of other load does not land on one side of a ratio
 * only. */
#define ROUNDS 3
#define ROUNDS_MAX 10
#define MESHCA_BATCH 1000
#define CLI_SECONDS 3.0
#define CLI_MAX_LEAVES 200
#define CFSSL_GENCERT_MAX 20
#define CFSSL_SERVE_SECONDS 3.0
#define CFSSL_SERVE_MAX 20000
#define CMD_MAX 2048

static const char *const URIS[] = {"spiffe://default/web", "kuma://kuma.io/service/web",
                                   "kuma://version/v1"};

static char tmpdir[64];
static char cfssl_pid_file[192];

static double best(double a, double b)
{
    return a > b ? a : b;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    char cmd[CMD_MAX];

    if (cfssl_pid_file[0]) {
        snprintf(cmd, sizeof(cmd), "kill $(cat %s) 2>/dev/null", cfssl_pid_file);
        if (system(cmd) != 0) { /* already gone */
        }
        cfssl_pid_file[0] = '\0';
    }
    if (tmpdir[0])
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    tmpdir[0] = '\0';
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("bench-all: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    cleanup();
    exit(2);
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[CMD_MAX];
    va_list ap;
    int n, st;

    va_start(ap, fmt);
    n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(cmd))
        die("command too long");
    st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *read_all(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        die("cannot read %s", path);
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
        die("cannot read %s", path);
    buf[n] = '\0';
    fclose(f);
    if (ret_len)
        *ret_len = (size_t)n;
    return buf;
}

/* ---- the machine's limit: OpenSSL's raw EC P-256 keygen, ECDSA sign and verify ------------- */

typedef struct raw_rates {
    double keygen, sign, verify;
    /* per CPU-second of this process: what a loop does with the CPU it got, whatever the load
     * of a shared machine (the meshca loops are counted the same way) */
    double sign_cpu, verify_cpu;
} raw_rates;

static double cpu_s(void);

/* Sign and verify are measured as a certificate uses them: SHA-256 over a TBS-sized message,
 * then the ECDSA operation, with the key's context prepared once (the cheapest loop there is). */
static raw_rates measure_raw(EVP_PKEY *ca_key)
{
    unsigned char msg[400], md[32], sig[128];
    raw_rates r;
    double start, cpu;
    size_t siglen = 0;
    long n;
    EVP_PKEY_CTX *sctx = EVP_PKEY_CTX_new(ca_key, NULL), *vctx = EVP_PKEY_CTX_new(ca_key, NULL);

    memset(msg, 0x5a, sizeof(msg));
    if (!sctx || !vctx || EVP_PKEY_sign_init(sctx) != 1 || EVP_PKEY_verify_init(vctx) != 1)
        die("raw contexts");
    start = now_s();
    for (n = 0; now_s() - start < RAW_SECONDS; n++) {
        EVP_PKEY *k = EVP_EC_gen("P-256");

        if (!k)
            die("raw keygen");
        EVP_PKEY_free(k);
    }
    r.keygen = n / (now_s() - start);
    start = now_s();
    cpu = cpu_s();
    for (n = 0; now_s() - start < RAW_SECONDS; n++) {
        siglen = sizeof(sig);
        if (EVP_Digest(msg, sizeof(msg), md, NULL, EVP_sha256(), NULL) != 1 ||
            EVP_PKEY_sign(sctx, sig, &siglen, md, sizeof(md)) != 1)
            die("raw sign");
    }
    r.sign = n / (now_s() - start);
    r.sign_cpu = n / (cpu_s() - cpu);
    start = now_s();
    cpu = cpu_s();
    for (n = 0; now_s() - start < RAW_SECONDS; n++) {
        if (EVP_Digest(msg, sizeof(msg), md, NULL, EVP_sha256(), NULL) != 1 ||
            EVP_PKEY_verify(vctx, sig, siglen, md, sizeof(md)) != 1)
            die("raw verify");
    }
    r.verify = n / (now_s() - start);
    r.verify_cpu = n / (cpu_s() - cpu);
    EVP_PKEY_CTX_free(sctx);
    EVP_PKEY_CTX_free(vctx);
    return r;
}

/* ---- meshca ----------------------------------------------------------------------------------- */

/* A CSR as an agent sends it: fresh EC P-256 key, empty subject. */
static char *make_csr(unsigned char **ret_spki, size_t *ret_spki_len)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509_REQ *req = X509_REQ_new();
    BIO *bio = BIO_new(BIO_s_mem());
    unsigned char *der = NULL;
    char *data, *pem;
    long n;
    int dn;

    if (!key || !req || !bio || !X509_REQ_set_pubkey(req, key) ||
        X509_REQ_sign(req, key, EVP_sha256()) <= 0 || !PEM_write_bio_X509_REQ(bio, req) ||
        (dn = i2d_PUBKEY(key, &der)) <= 0)
        die("cannot make a CSR");
    n = BIO_get_mem_data(bio, &data);
    pem = strndup(data, (size_t)n);
    *ret_spki = malloc((size_t)dn);
    if (!pem || !*ret_spki)
        die("out of memory");
    memcpy(*ret_spki, der, (size_t)dn);
    *ret_spki_len = (size_t)dn;
    OPENSSL_free(der);
    BIO_free(bio);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    return pem;
}

static double cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* Leaves per second through a sign_pool of `threads` workers: batches until MESHCA_SECONDS.
 * *ret_cores: CPU seconds per wall second the process got meanwhile; with the machine shared
 * (and autogroup scheduling), 2 workers may get less than 2 cores. */
static double measure_pool(X509 *ca, EVP_PKEY *ca_key, unsigned threads, bool csr,
                           const char *csr_pem, const unsigned char *spki, size_t spki_len,
                           double *ret_cores)
{
    double cpu_start = cpu_s();
    sign_pool_job *jobs = calloc(MESHCA_BATCH, sizeof(*jobs));
    sign_pool *pool = NULL;
    char err[PKI_ERRBUF];
    double start, elapsed;
    long done = 0;

    if (!jobs || sign_pool_new(ca, ca_key, threads, &pool, err) < 0)
        die("sign_pool_new: %s", jobs ? err : "out of memory");
    start = now_s();
    do {
        for (size_t i = 0; i < MESHCA_BATCH; i++) {
            sign_pool_job *j = &jobs[i];

            memset(j, 0, sizeof(*j));
            j->req = (pki_leaf_request)PKI_LEAF_REQUEST_INIT;
            j->req.uris = URIS;
            j->req.nuris = 3;
            if (csr) {
                j->csr_pem = csr_pem;
                j->csr_len = strlen(csr_pem);
            } else {
                j->spki_der = spki;
                j->spki_len = spki_len;
            }
        }
        if (sign_pool_run(pool, jobs, MESHCA_BATCH, time(NULL), err) < 0)
            die("sign_pool_run: %s", err);
        for (size_t i = 0; i < MESHCA_BATCH; i++)
            pki_signed_leaf_clear(&jobs[i].leaf);
        done += MESHCA_BATCH;
        elapsed = now_s() - start;
    } while (elapsed < MESHCA_SECONDS);
    *ret_cores = (cpu_s() - cpu_start) / elapsed;
    sign_pool_free(pool);
    free(jobs);
    return done / elapsed;
}

/* The stock path (fresh key per leaf), for comparison with the issue's first figures. */
static double measure_issue_leaf(X509 *ca, EVP_PKEY *ca_key)
{
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    double start = now_s(), elapsed;
    long n = 0;

    req.uris = URIS;
    req.nuris = 3;
    do {
        X509 *leaf;
        EVP_PKEY *key;

        if (pki_issue_leaf(&req, ca, ca_key, time(NULL), &leaf, &key, NULL) < 0)
            die("pki_issue_leaf");
        X509_free(leaf);
        EVP_PKEY_free(key);
        n++;
        elapsed = now_s() - start;
    } while (elapsed < MESHCA_SECONDS);
    return n / elapsed;
}

/* ---- peers: the openssl CLI, cfssl gencert, cfssl serve --------------------------------------- */

/* `openssl x509 -req` signing one CSR per process, with the same extensions as a meshca leaf. */
static double measure_openssl_cli(long *ret_count)
{
    double start, elapsed;
    long n = 0;

    if (sh("cd %s && cat > ext.cnf <<'EOF'\n"
           "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
           "extendedKeyUsage=serverAuth,clientAuth\nsubjectKeyIdentifier=hash\n"
           "authorityKeyIdentifier=keyid,issuer\n"
           "subjectAltName=critical,URI:spiffe://default/web,URI:kuma://kuma.io/service/web\n"
           "EOF", tmpdir) != 0)
        die("cannot write ext.cnf");
    start = now_s();
    do {
        if (sh("cd %s && openssl x509 -req -in csr.pem -CA ca.pem -CAkey ca-key.pem -set_serial %ld"
               " -days 1 -sha256 -extfile ext.cnf -out leaf.pem 2>/dev/null", tmpdir, n + 1) != 0)
            die("openssl x509 -req failed");
        n++;
        elapsed = now_s() - start;
    } while (elapsed < CLI_SECONDS && n < CLI_MAX_LEAVES);
    if (sh("openssl verify -x509_strict -CAfile %s/ca.pem %s/leaf.pem >/dev/null", tmpdir, tmpdir))
        die("the openssl CLI leaf does not verify");
    *ret_count = n;
    return n / elapsed;
}

/* `cfssl gencert`: one process per leaf, key generation included (what its users run). */
static double measure_cfssl_gencert(long *ret_count)
{
    double start, elapsed;
    long n = 0;

    if (sh("cd %s && echo '{\"hosts\":[\"spiffe://default/web\"],\"key\":{\"algo\":\"ecdsa\",\"size\":256}}'"
           " > leaf-csr.json && echo '{\"signing\":{\"default\":{\"expiry\":\"24h\",\"usages\":"
           "[\"digital signature\",\"key encipherment\",\"server auth\",\"client auth\"]}}}' > cfssl.json",
           tmpdir) != 0)
        die("cannot write cfssl inputs");
    start = now_s();
    do {
        if (sh("cd %s && cfssl gencert -ca ca.pem -ca-key ca-key.pem -config cfssl.json leaf-csr.json"
               " >gencert.json 2>/dev/null", tmpdir) != 0)
            die("cfssl gencert failed");
        n++;
        elapsed = now_s() - start;
    } while (elapsed < CLI_SECONDS && n < CFSSL_GENCERT_MAX);
    *ret_count = n;
    return n / elapsed;
}

static size_t discard(char *p, size_t size, size_t n, void *u)
{
    size_t *got = u;

    (void)p;
    *got += size * n;
    return size * n;
}

/* `cfssl serve` (started by test/extca/start-cfssl.sh) driven by one libcurl multi client: two
 * requests in flight on two kept-alive connections, each a CSR to /api/v1/cfssl/sign. */
static double measure_cfssl_serve(const char *source_root, const char *csr_pem, long *ret_count)
{
    char dir[96], url[128], path[192], err[2][CURL_ERROR_SIZE];
    json_t *body = json_pack("{s:s, s:s}", "certificate_request", csr_pem, "profile", "leaf");
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    CURL *h[2];
    CURLM *multi = curl_multi_init();
    /* No "Expect: 100-continue": curl would wait for cfssl's interim answer on every POST. */
    struct curl_slist *hdr = curl_slist_append(curl_slist_append(NULL, "Expect:"),
                                               "Content-Type: application/json");
    size_t got[2] = {0, 0};
    double start, elapsed = 0;
    long n = 0, port, connects = 0;
    int running;
    char *portstr;

    snprintf(dir, sizeof(dir), "%s/cfssl", tmpdir);
    snprintf(cfssl_pid_file, sizeof(cfssl_pid_file), "%s/pid", dir);
    if (!text || !multi || !hdr ||
        sh("timeout 60 bash %s/test/extca/start-cfssl.sh %s >/dev/null", source_root, dir) != 0)
        die("cannot start cfssl serve");
    snprintf(path, sizeof(path), "%s/port", dir);
    portstr = read_all(path, NULL);
    port = strtol(portstr, NULL, 10);
    free(portstr);
    snprintf(url, sizeof(url), "http://127.0.0.1:%ld/api/v1/cfssl/sign", port);
    for (int i = 0; i < 2; i++) {
        h[i] = curl_easy_init();
        if (!h[i])
            die("curl_easy_init");
        curl_easy_setopt(h[i], CURLOPT_URL, url);
        curl_easy_setopt(h[i], CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(h[i], CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(h[i], CURLOPT_WRITEDATA, &got[i]);
        curl_easy_setopt(h[i], CURLOPT_ERRORBUFFER, err[i]);
        curl_easy_setopt(h[i], CURLOPT_CONNECTTIMEOUT_MS, 5000L);
        curl_easy_setopt(h[i], CURLOPT_TIMEOUT_MS, 10000L);
        curl_multi_add_handle(multi, h[i]);
    }
    start = now_s();
    for (;;) {
        CURLMsg *msg;
        int left, readded = 0;

        if (curl_multi_perform(multi, &running) != CURLM_OK)
            die("curl multi failed");
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            long status = 0, conns = 0;

            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            curl_easy_getinfo(msg->easy_handle, CURLINFO_NUM_CONNECTS, &conns);
            if (msg->data.result != CURLE_OK || status != 200)
                die("cfssl serve answered %ld: %s", status, curl_easy_strerror(msg->data.result));
            connects += conns;
            n++;
            elapsed = now_s() - start;
            curl_multi_remove_handle(multi, msg->easy_handle);
            /* Restarted on the same handle: its connection is kept alive and reused. */
            if (elapsed < CFSSL_SERVE_SECONDS && n < CFSSL_SERVE_MAX) {
                curl_multi_add_handle(multi, msg->easy_handle);
                readded++;
            }
        }
        if (running == 0 && readded == 0)
            break;
        /* A request re-added is started by the next perform, not by waiting. */
        if (readded == 0 && curl_multi_poll(multi, NULL, 0, 1000, NULL) != CURLM_OK)
            die("curl multi poll failed");
    }
    for (int i = 0; i < 2; i++)
        curl_easy_cleanup(h[i]);
    curl_multi_cleanup(multi);
    curl_slist_free_all(hdr);
    free(text);
    json_decref(body);
    sh("kill $(cat %s) 2>/dev/null", cfssl_pid_file);
    cfssl_pid_file[0] = '\0';
    if (connects > 2)
        fprintf(stderr, "bench-all: cfssl serve: %ld new connections (keep-alive not kept)\n",
                connects);
    *ret_count = n;
    return n / elapsed;
}

/* ---- reconcile and validate: bench-reconcile, next to this binary ----------------------------- */

/* bench-reconcile ARGS (its sizes, and --workers): its JSON object. */
/* The directory of this binary, where the other bench binaries are built. */
static void bench_dir(const char *self, char *dir, size_t size)
{
    char *slash;

    snprintf(dir, size, "%s", self);
    slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, size, ".");
}

static json_t *run_bench_reconcile(const char *self, const char *args)
{
    char dir[CMD_MAX / 2], cmd[CMD_MAX];
    json_t *j;
    json_error_t e;
    char *out;
    size_t len;

    bench_dir(self, dir, sizeof(dir));
    if (sh("'%s/bench-reconcile' %s > %s/reconcile.json", dir, args, tmpdir) != 0)
        die("bench-reconcile failed");
    snprintf(cmd, sizeof(cmd), "%s/reconcile.json", tmpdir);
    out = read_all(cmd, &len);
    j = json_loadb(out, len, 0, &e);
    free(out);
    if (!j)
        die("bench-reconcile printed no JSON: %s", e.text);
    return j;
}

/* ---- the dataplane API: bench-api, next to this binary ----------------------------------------- */

/* 1,000 CSRs through TLS keep-alive (2 in flight) to a controller holding 2,000 dataplanes, alone,
 * with 1,000 and with 10,000 agents parked on blocking queries (the last also gives the memory
 * per parked agent). */
static json_t *run_bench_api(const char *self)
{
    char dir[CMD_MAX / 2], path[256], *out;
    json_error_t e;
    json_t *j;
    size_t len;

    bench_dir(self, dir, sizeof(dir));
    /* 1,000 CSRs a measurement: 300 took under a second, and their rate swung 2x from run to
     * run on the shared machine. */
    if (sh("'%s/bench-api' 1000 10000 > %s/api.json", dir, tmpdir) != 0)
        die("bench-api failed");
    snprintf(path, sizeof(path), "%s/api.json", tmpdir);
    out = read_all(path, &len);
    j = json_loadb(out, len, 0, &e);
    free(out);
    if (!j)
        die("bench-api printed no JSON: %s", e.text);
    /* An extra figure, not the reference (cfssl serve's client keeps 2 in flight): the same
     * client with 8 requests in flight, where group commit carries several CSRs per commit. */
    if (sh("'%s/bench-api' 1000 0 8 > %s/api8.json", dir, tmpdir) != 0)
        die("bench-api with 8 in flight failed");
    snprintf(path, sizeof(path), "%s/api8.json", tmpdir);
    out = read_all(path, &len);
    json_t *j8 = json_loadb(out, len, 0, &e);
    free(out);
    if (!j8)
        die("bench-api printed no JSON: %s", e.text);
    json_object_set_new(j, "with_8_in_flight", j8);
    return j;
}

/* ---- validate through the CLI: `meshca validate --status` of 100,000 dataplanes ------------- */

typedef struct cli_validate {
    double wall_s, cpu_s;
    long peak_rss_kib, status_bytes;
    bool valid;
} cli_validate;

/* /usr/bin/time -v of the built meshca (next to this binary: ../../cmd/meshca) checking a switch
 * ca-1 -> ca-2 against a status where every dataplane trusts ca-2, as a user runs it. */
static cli_validate measure_cli_validate(const char *self, long n)
{
    char dir[CMD_MAX / 2], path[256], *out, *p;
    cli_validate r = {0, 0, 0, 0, false};
    FILE *f;
    double user = 0, sys = 0;
    int min = 0;
    double sec = 0;

    bench_dir(self, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/status.json", tmpdir);
    if (!(f = fopen(path, "w")))
        die("cannot write %s", path);
    fputs("{\"items\":[", f);
    for (long i = 0; i < n; i++)
        fprintf(f, "%s{\"mesh\":\"default\",\"name\":\"dp-%06ld\",\"tags\":{\"kuma.io/service\":"
                "\"svc-%03ld\"},\"mtls\":{\"issuedBackend\":\"ca-1\",\"supportedBackends\":[\"ca-1\","
                "\"ca-2\"],\"certificateSerial\":\"%032lx\",\"certificateExpirationTime\":"
                "\"2030-01-01T00:00:00Z\",\"generation\":2,\"acknowledgedGeneration\":2}}",
                i ? "," : "", i, i % 100, (unsigned long)i);
    fputs("]}", f);
    r.status_bytes = ftell(f);
    fclose(f);
    if (sh("printf 'type: Mesh\\nname: default\\nmtls:\\n  enabledBackend: %%s\\n  backends:\\n"
           "  - name: ca-1\\n    type: builtin\\n  - name: ca-2\\n    type: builtin\\n' ca-1 > %s/prev.yaml && "
           "printf 'type: Mesh\\nname: default\\nmtls:\\n  enabledBackend: %%s\\n  backends:\\n"
           "  - name: ca-1\\n    type: builtin\\n  - name: ca-2\\n    type: builtin\\n' ca-2 > %s/next.yaml",
           tmpdir, tmpdir) != 0)
        die("cannot write the meshes");
    r.valid = sh("/usr/bin/time -v '%s/../../cmd/meshca' validate -f %s/next.yaml --from %s/prev.yaml "
                 "--status %s/status.json > %s/validate.out 2> %s/validate.time",
                 dir, tmpdir, tmpdir, tmpdir, tmpdir, tmpdir) == 0;
    snprintf(path, sizeof(path), "%s/validate.time", tmpdir);
    out = read_all(path, NULL);
    if ((p = strstr(out, "User time (seconds): ")))
        user = atof(p + strlen("User time (seconds): "));
    if ((p = strstr(out, "System time (seconds): ")))
        sys = atof(p + strlen("System time (seconds): "));
    if ((p = strstr(out, "Maximum resident set size (kbytes): ")))
        r.peak_rss_kib = atol(p + strlen("Maximum resident set size (kbytes): "));
    if ((p = strstr(out, "Elapsed (wall clock) time (h:mm:ss or m:ss): ")) &&
        sscanf(p + strlen("Elapsed (wall clock) time (h:mm:ss or m:ss): "), "%d:%lf", &min, &sec) == 2)
        r.wall_s = min * 60 + sec;
    r.cpu_s = user + sys;
    free(out);
    if (!r.peak_rss_kib)
        die("/usr/bin/time -v gave no figures (is GNU time installed?)");
    return r;
}

/* ---- the issue's "Done when" list ------------------------------------------------------------- */

static double round3(double x);

/* One "Done when" entry: the figure and the reference it is held against stand beside their
 * ratio (S11), in UNIT; for a limit such as "< 1 s" the reference is the limit itself. */
static json_t *target(const char *what, double value, double reference, const char *unit,
                      double goal, bool at_least, const char *note)
{
    double ratio = reference > 0 ? value / reference : 0;
    bool met = at_least ? ratio >= goal : ratio <= goal;
    json_t *t = json_pack("{s:s, s:f, s:f, s:s, s:f, s:s, s:f, s:b}", "target", what, "value",
                          round3(value), "reference", round3(reference), "unit", unit, "ratio",
                          (double)(long)(ratio * 1000 + 0.5) / 1000, "goal",
                          at_least ? ">=" : "<=", "goal_value", goal, "met", met);

    if (note)
        json_object_set_new(t, "note", json_string(note));
    return t;
}

/* The same entry when a flag or a failure left it out, so that every run lists every target
 * under the same name. */
static json_t *not_measured(const char *what, const char *why)
{
    return json_pack("{s:s, s:n, s:n, s:n, s:b, s:s}", "target", what, "value", "reference",
                     "ratio", "met", 0, "note", why);
}

static double round3(double x)
{
    return (double)(long long)(x * 1000 + (x < 0 ? -0.5 : 0.5)) / 1000;
}

/* Target names, the same whether measured or left out (not_measured). */
#define T_CSR_CLI "sign a CSR, 1 worker / openssl CLI loop"
#define T_CSR_SERVE "sign a CSR, 2 workers / cfssl serve (2 in flight)"
#define T_FULL "full reconcile / pure signing time (SQLite)"
#define T_FULL_1 "full reconcile / pure signing time (SQLite), 1 worker"
#define T_NOOP "no-op reconcile wall seconds"
#define T_ETCD_FULL "full reconcile on etcd / its bound (max of pure signing and etcd's put time)"
#define T_ETCD_NOOP "no-op reconcile on etcd wall seconds"
#define T_VALIDATE "validate 100,000-dataplane status, seconds"
#define T_VALIDATE_PEAK "validate peak bytes per dataplane / 4 KiB"
#define T_VALIDATE_CLI "meshca validate CLI, 100,000 dataplanes, CPU seconds"
#define T_VALIDATE_CLI_PEAK "meshca validate CLI peak bytes per dataplane / 4 KiB"
#define T_PARKED "10,000 agents with blocking queries, KiB per connection / 64"

/* The API rate's target name for a measurement with PARKED agents connected (0: alone). */
static void api_target_name(char *buf, size_t size, long long parked)
{
    if (parked >= 1000)
        snprintf(buf, size, "API CSRs per second with TLS and keep-alive, %lld,%03lld agents "
                 "connected / cfssl serve", parked / 1000, parked % 1000);
    else if (parked)
        snprintf(buf, size, "API CSRs per second with TLS and keep-alive, %lld agents "
                 "connected / cfssl serve", parked);
    else
        snprintf(buf, size, "API CSRs per second with TLS and keep-alive / cfssl serve");
}

static json_t *reconcile_entry(json_t *rec, long n)
{
    size_t i;
    json_t *v;

    json_array_foreach(json_object_get(rec, "reconcile"), i, v)
        if (json_integer_value(json_object_get(v, "dataplanes")) == n)
            return v;
    return NULL;
}

int main(int argc, char **argv)
{
    bool large = true, skip_peers = false, skip_reconcile = false, skip_api = false;
    long rounds = ROUNDS;
    const char *source_root = getenv("MESHCA_SOURCE_ROOT");
    char path[256], *csr_pem;
    unsigned char *spki;
    size_t spki_len;
    EVP_PKEY *ca_key;
    X509 *ca;
    raw_rates raw;
    double cores[4] = {0, 0, 0, 0}, c, rate, load[3] = {0, 0, 0};
    double issue, csr1, csr2, rs1, rs2, cli = 0, gencert = 0, serve = 0, raw_vs, raw_vs_cpu;
    double cpu_rate[4] = {0, 0, 0, 0};   /* the pool's leaves per CPU-second, best round */
    long cli_n = 0, gencert_n = 0, serve_n = 0;
    json_t *out, *meshca, *peers, *targets, *rec, *v, *etcd = NULL;
    char etcd_why[256] = "--no-reconcile", loop[160];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            large = false;
        else if (strcmp(argv[i], "--no-peers") == 0)
            skip_peers = true;
        else if (strcmp(argv[i], "--no-reconcile") == 0)
            skip_reconcile = true;
        else if (strcmp(argv[i], "--no-api") == 0)
            skip_api = true;
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            char *end;

            errno = 0;
            rounds = strtol(argv[++i], &end, 10);
            if (errno || *end || end == argv[i] || rounds < 1 || rounds > ROUNDS_MAX) {
                fprintf(stderr, "bench-all: --rounds takes 1 to %d\n", ROUNDS_MAX);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench-all [--quick] [--no-peers] [--no-reconcile] [--no-api] [--rounds N]\n"
                            "  --quick         reconcile 10,000 dataplanes only, not 100,000 too\n"
                            "  --no-peers      skip the openssl CLI and cfssl figures\n"
                            "  --no-reconcile  skip bench-reconcile (reconcile and validate, on SQLite and on etcd)\n"
                            "  --no-api        skip bench-api (CSRs through the API, parked agents)\n"
                            "  --rounds N      rounds of the raw and signing loops, best kept (default 3)\n");
            return 2;
        }
    }
    if (!source_root)
        source_root = MESHCA_SOURCE_ROOT;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/meshca-bench-all-XXXXXX");
    if (!mkdtemp(tmpdir))
        die("mkdtemp: %s", strerror(errno));
    curl_global_init(CURL_GLOBAL_DEFAULT);

    if (pki_generate_key(false, 0, &ca_key, NULL) < 0 ||
        pki_make_root(ca_key, "bench", "spiffe://bench", time(NULL) - 60, 86400 * 365, &ca, NULL) < 0)
        die("cannot make a CA");
    csr_pem = make_csr(&spki, &spki_len);
    {
        char *pem;
        FILE *f;

        snprintf(path, sizeof(path), "%s/ca.pem", tmpdir);
        if (pki_cert_to_pem(ca, &pem, NULL) < 0 || !(f = fopen(path, "w")))
            die("cannot write ca.pem");
        fputs(pem, f);
        fclose(f);
        free(pem);
        snprintf(path, sizeof(path), "%s/ca-key.pem", tmpdir);
        if (pki_key_to_pem(ca_key, &pem, NULL) < 0 || !(f = fopen(path, "w")))
            die("cannot write ca-key.pem");
        fputs(pem, f);
        fclose(f);
        pki_free_secret(pem);
        snprintf(path, sizeof(path), "%s/csr.pem", tmpdir);
        if (!(f = fopen(path, "w")))
            die("cannot write csr.pem");
        fputs(csr_pem, f);
        fclose(f);
    }

    memset(&raw, 0, sizeof(raw));
    issue = csr1 = csr2 = rs1 = rs2 = 0;
    for (long round = 0; round < rounds; round++) {
        raw_rates r = measure_raw(ca_key);

        raw.keygen = best(raw.keygen, r.keygen);
        raw.sign = best(raw.sign, r.sign);
        raw.verify = best(raw.verify, r.verify);
        raw.sign_cpu = best(raw.sign_cpu, r.sign_cpu);
        raw.verify_cpu = best(raw.verify_cpu, r.verify_cpu);
        issue = best(issue, measure_issue_leaf(ca, ca_key));
        /* each rate with the cores its own best round got */
#define POOL(var, i, threads, csr)                                                      \
    rate = measure_pool(ca, ca_key, threads, csr, csr_pem, spki, spki_len, &c);         \
    if (rate > var) {                                                                   \
        var = rate;                                                                     \
        cores[i] = c;                                                                   \
    }                                                                                   \
    cpu_rate[i] = best(cpu_rate[i], c > 0 ? rate / c : 0);
        POOL(csr1, 0, 1, true)
        POOL(csr2, 1, 2, true)
        POOL(rs1, 2, 1, false)
        POOL(rs2, 3, 2, false)
#undef POOL
    }
    if (!skip_peers) {
        cli = measure_openssl_cli(&cli_n);
        gencert = measure_cfssl_gencert(&gencert_n);
        serve = measure_cfssl_serve(source_root, csr_pem, &serve_n);
    }
    rec = skip_reconcile ? json_object() : run_bench_reconcile(argv[0], large ? "10000 100000" : "10000");
    /* The full pass against pure signing at 1 worker too (issue 13: "at the same worker
     * count"): with one worker the pass's own work has a core of its own. */
    json_t *rec1 = skip_reconcile ? json_object()
                                  : run_bench_reconcile(argv[0], large ? "--workers 1 100000"
                                                                       : "--workers 1 10000");
    json_object_set(rec, "reconcile_1_worker", json_object_get(rec1, "reconcile"));
    if (!skip_reconcile) {
        char dir[CMD_MAX / 2];

        bench_dir(argv[0], dir, sizeof(dir));
        etcd = bench_etcd(dir, tmpdir, large, etcd_why, sizeof(etcd_why));
    }
    json_t *api = skip_api ? json_null() : run_bench_api(argv[0]);
    /* The API's own bound: with 2 requests in flight, each answered 202 only once its key is
     * durable, no more than 2 keys go in one commit; SQLite alone, same settings, same disk. */
    double commits = 0;
    if (!skip_api && store_raw_commit_rate(tmpdir, 2048, 2.0, 20000, &commits) < 0)
        die("the raw SQLite commit loop failed");
    cli_validate cv = {0, 0, 0, 0, false};
    if (!skip_reconcile) {
        cv = measure_cli_validate(argv[0], 100000);
        json_object_set_new(rec, "validate_cli",
                            json_pack("{s:s, s:I, s:I, s:b, s:f, s:f, s:I, s:f}", "what",
                                      "/usr/bin/time -v meshca validate -f next.yaml --from prev.yaml --status status.json (switch ca-1 -> ca-2)",
                                      "dataplanes", (json_int_t)100000, "status_bytes",
                                      (json_int_t)cv.status_bytes, "valid", cv.valid, "wall_s",
                                      round3(cv.wall_s), "cpu_s", round3(cv.cpu_s), "peak_rss_kib",
                                      (json_int_t)cv.peak_rss_kib, "peak_rss_per_dataplane_bytes",
                                      round3(cv.peak_rss_kib * 1024.0 / 100000)));
    }
    raw_vs = 1.0 / (1.0 / raw.sign + 1.0 / raw.verify);
    raw_vs_cpu = 1.0 / (1.0 / raw.sign_cpu + 1.0 / raw.verify_cpu);

    out = json_object();
    json_object_set_new(out, "benchmark", json_string("meshca S11"));
    json_object_set_new(out, "cpus_online", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    json_object_set_new(out, "openssl", json_string(OpenSSL_version(OPENSSL_VERSION)));
    snprintf(loop, sizeof(loop), "one thread; SHA-256 of 400 bytes + the EC operation, key context "
             "prepared once; best of %ld round%s interleaved with meshca's", rounds,
             rounds == 1 ? "" : "s");
    json_object_set_new(out, "raw_openssl_per_s",
                        json_pack("{s:f, s:f, s:f, s:f, s:s, s:I}", "ec_p256_keygen", round3(raw.keygen),
                                  "ecdsa_sign", round3(raw.sign), "ecdsa_verify",
                                  round3(raw.verify), "verify_plus_sign", round3(raw_vs), "loop",
                                  loop, "rounds", (json_int_t)rounds));
    meshca = json_pack("{s:f, s:{s:f, s:f}, s:{s:f, s:f}, s:{s:f, s:f, s:f, s:f}}",
                       "pki_issue_leaf_fresh_key_per_s", round3(issue), "sign_csr_per_s",
                       "workers_1", round3(csr1), "workers_2", round3(csr2),
                       "resign_public_key_per_s", "workers_1", round3(rs1), "workers_2", round3(rs2),
                       "cores_used", "sign_csr_workers_1", round3(cores[0]), "sign_csr_workers_2",
                       round3(cores[1]), "resign_workers_1", round3(cores[2]), "resign_workers_2",
                       round3(cores[3]));
    json_object_set_new(meshca, "per_cpu_s",
                        json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:s}", "raw_ecdsa_sign",
                                  round3(raw.sign_cpu), "raw_ecdsa_verify", round3(raw.verify_cpu),
                                  "raw_verify_plus_sign", round3(raw_vs_cpu), "sign_csr_workers_1",
                                  round3(cpu_rate[0]), "sign_csr_workers_2", round3(cpu_rate[1]),
                                  "resign_workers_1", round3(cpu_rate[2]), "resign_workers_2",
                                  round3(cpu_rate[3]), "what",
                                  "operations per CPU-second of the process (best round): the ratios "
                                  "of these hold on a loaded machine, where the wall rates depend "
                                  "on the cores the run got"));
    json_object_set_new(out, "meshca", meshca);
    if (skip_peers)
        peers = json_null();
    else
        peers = json_pack("{s:{s:f, s:I, s:s}, s:{s:f, s:I, s:s}, s:{s:f, s:I, s:s}}",
                          "openssl_cli_x509_req", "leaves_per_s", round3(cli), "count", (json_int_t)cli_n, "what",
                          "one `openssl x509 -req` process per CSR, meshca's extensions",
                          "cfssl_gencert", "leaves_per_s", round3(gencert), "count", (json_int_t)gencert_n,
                          "what", "one `cfssl gencert` process per leaf (key generation included)",
                          "cfssl_serve", "csrs_per_s", round3(serve), "count", (json_int_t)serve_n, "what",
                          "POST /api/v1/cfssl/sign, one libcurl multi client, 2 requests in flight, keep-alive");
    json_object_set_new(out, "peers", peers);
    json_object_set_new(out, "reconcile_and_validate", json_incref(rec));
    json_object_set_new(out, "reconcile_on_etcd", etcd ? json_incref(etcd) : json_string(etcd_why));
    json_object_set_new(out, "api", json_incref(api));
    if (!skip_api)
        json_object_set_new(out, "raw_sqlite_durable_commits_per_s",
                            json_pack("{s:f, s:s}", "commits_per_s", round3(commits), "what",
                                      "SQLite alone (test/bench/store_raw.c): one 2,048-byte record "
                                      "put per transaction, WAL, synchronous = FULL, 16 KiB pages, "
                                      "for 2 s, in the bench's temporary directory"));

    targets = json_array();
    {
        char note[200];

        snprintf(note, sizeof(note), "per CPU-second: %.3f (%.0f / %.0f); the wall rates got "
                 "%.2f cores for meshca", cpu_rate[2] / raw.sign_cpu, cpu_rate[2], raw.sign_cpu,
                 cores[2]);
        json_array_append_new(targets, target("re-sign a known public key, 1 worker / raw ECDSA sign",
                                              rs1, raw.sign, "per s", 0.5, true, note));
    }
    {
        char note[400];

        /* Per CPU-second, 2 workers against 1: near 1 means no contention, so a missed ratio is
         * the CPU the machine gave this process, not the pool. */
        getloadavg(load, 3);
        snprintf(note, sizeof(note),
                 "the 2-worker run got %.2f cores (load average %.1f on %ld CPUs); per CPU-second "
                 "2 workers sign %.2f of what 1 worker signs", cores[3], load[0],
                 sysconf(_SC_NPROCESSORS_ONLN), (rs2 / cores[3]) / (rs1 / cores[2]));
        json_array_append_new(targets, target("re-sign a known public key, 2 workers / 1 worker",
                                              rs2, rs1, "per s", 1.8, true, note));
    }
    {
        char note[200];

        snprintf(note, sizeof(note), "per CPU-second: %.3f (%.0f / %.0f); the wall rates got "
                 "%.2f cores for meshca", cpu_rate[0] / raw_vs_cpu, cpu_rate[0], raw_vs_cpu,
                 cores[0]);
        json_array_append_new(targets, target("sign a CSR, 1 worker / raw verify+sign",
                                              csr1, raw_vs, "per s", 0.5, true, note));
    }
    if (skip_peers) {
        json_array_append_new(targets, not_measured(T_CSR_CLI, "--no-peers"));
        json_array_append_new(targets, not_measured(T_CSR_SERVE, "--no-peers"));
    } else {
        char note[300];

        json_array_append_new(targets, target(T_CSR_CLI, csr1, cli, "per s", 300, true, NULL));
        /* What the crypto allows: every CSR is one verify and one sign, on at most 2 cores. */
        snprintf(note, sizeof(note),
                 "bound: at 100 %% of raw verify+sign on 2 cores (%.0f/s) the ratio would be %.1f",
                 2 * raw_vs, 2 * raw_vs / serve);
        json_array_append_new(targets, target(T_CSR_SERVE, csr2, serve, "per s", 8, true, note));
    }
    {
        long nbig = large ? 100000 : 10000;
        json_t *e = skip_reconcile ? NULL : reconcile_entry(rec, nbig);
        const char *why = skip_reconcile ? "--no-reconcile" : "bench-reconcile printed no such size";
        char note[900];

        if (e) {
            json_t *full = json_object_get(e, "full"), *noop = json_object_get(e, "noop");
            double noop_s = json_number_value(json_object_get(noop, "wall_s"));
            json_t *e1 = NULL, *one;
            size_t k;

            json_array_foreach(json_object_get(rec, "reconcile_1_worker"), k, one)
                if (json_integer_value(json_object_get(one, "dataplanes")) == nbig)
                    e1 = one;
            for (int pass = 0; pass < 2; pass++) {
                json_t *f = pass == 0 ? full : json_object_get(e1, "full");
                json_t *entry = pass == 0 ? e : e1;
                const char *what = pass == 0 ? T_FULL : T_FULL_1;

                if (!entry) {
                    json_array_append_new(targets, not_measured(what, why));
                    continue;
                }
                snprintf(note, sizeof(note),
                         "%ld dataplanes%s, signing workers: %lld; pure signing = the same leaves "
                         "re-signed on a sign_pool of the same worker count; CPU seconds %.2f vs "
                         "%.2f (ratio %.2f). The machine's bound: SQLite alone reading and "
                         "rewriting %ld records of %lld bytes (the stored identities' mean) in "
                         "one durable transaction takes %.2f CPU s; with the signatures on %lld "
                         "cpus no pass can take less than %.2f s = %.2fx pure signing. The rest "
                         "is the pass's own thread (decode, decide, encode, the store front; "
                         "perf in doc/performance.md)",
                         nbig, large ? "" : " (--quick: 100,000 without it)",
                         (long long)json_integer_value(json_object_get(entry, "sign_workers")),
                         json_number_value(json_object_get(f, "cpu_s")),
                         json_number_value(json_object_get(f, "pure_resign_cpu_s")),
                         json_number_value(json_object_get(f, "cpu_ratio_to_pure_signing")), nbig,
                         (long long)json_integer_value(json_object_get(f, "identity_record_bytes")),
                         json_number_value(json_object_get(f, "store_raw_rewrite_cpu_s")),
                         (long long)json_integer_value(json_object_get(f, "online_cpus")),
                         json_number_value(json_object_get(f, "bound_s")),
                         json_number_value(json_object_get(f, "bound_ratio_to_pure_signing")));
                json_array_append_new(
                    targets, target(what, json_number_value(json_object_get(f, "wall_s")),
                                    json_number_value(json_object_get(f, "pure_resign_s")), "s",
                                    1.3, false, note));
            }
            snprintf(note, sizeof(note), "%ld dataplanes%s: %lld signatures, %lld writes (store "
                     "revision before/after). Bound (perf, doc/performance.md): SQLite's reads of the "
                     "identity records (~1.9 KB each, past what a 4 KiB page keeps: an overflow "
                     "page each), the identity peek and tags digest, then decoding the stored "
                     "resources (JSON, manifests/json_node.c)",
                     nbig, large ? "" : " (--quick: 100,000 without it)",
                     (long long)json_integer_value(json_object_get(noop, "signatures")),
                     (long long)json_integer_value(json_object_get(noop, "writes")));
            json_array_append_new(targets, target(T_NOOP, noop_s, 1.0, "s", 1.0, false, note));
        } else {
            json_array_append_new(targets, not_measured(T_FULL, why));
            json_array_append_new(targets, not_measured(T_FULL_1, why));
            json_array_append_new(targets, not_measured(T_NOOP, why));
        }
        e = NULL;
        if (etcd) {
            size_t i;

            json_array_foreach(json_object_get(etcd, "reconcile"), i, v)
                if (json_integer_value(json_object_get(v, "dataplanes")) == nbig)
                    e = v;
        }
        if (e) {
            /* Its own bound: the pass must sign every leaf and write every identity; etcd's put
             * rate of this run (same member settings, full-size txns of 2 KiB values) gives the
             * least time for the writes, pure signing the least for the signatures. */
            json_t *full = json_object_get(e, "full"), *noop = json_object_get(e, "noop");
            double full_s = json_number_value(json_object_get(full, "wall_s"));
            double pure_s = json_number_value(json_object_get(full, "pure_resign_s"));
            double puts = json_number_value(
                json_object_get(json_object_get(etcd, "txn_put_rate"), "puts_per_s"));
            double write_s = puts > 0 ? nbig / puts : 0, bound = write_s > pure_s ? write_s : pure_s;

            snprintf(note, sizeof(note),
                     "%ld dataplanes%s on a one-member etcd: full pass %.2f s; bound = the larger of "
                     "pure signing (%.2f s) and etcd's own put time for %ld identities at the put "
                     "rate measured in this run (%.0f puts/s in txns of %lld: %.2f s); %.2f of "
                     "the pass is neither",
                     nbig, large ? "" : " (--quick: 100,000 without it)", full_s, pure_s, nbig,
                     puts,
                     (long long)json_integer_value(json_object_get(
                         json_object_get(etcd, "txn_put_rate"), "ops_per_txn")),
                     write_s, full_s > 0 ? (full_s - bound) / full_s : 0);
            json_array_append_new(targets, target(T_ETCD_FULL, full_s, bound, "s", 1.3, false, note));
            snprintf(note, sizeof(note), "%ld dataplanes%s on etcd: %lld signatures, %lld writes "
                     "(etcd revision before/after); its bound: etcd's own read of everything "
                     "(etcdctl get --prefix, one gRPC request) %.2f s in this run",
                     nbig, large ? "" : " (--quick: 100,000 without it)",
                     (long long)json_integer_value(json_object_get(noop, "signatures")),
                     (long long)json_integer_value(json_object_get(noop, "writes")),
                     json_number_value(json_object_get(json_object_get(e, "etcd_read_everything"),
                                                       "wall_s")));
            json_array_append_new(targets,
                                  target(T_ETCD_NOOP, json_number_value(json_object_get(noop, "wall_s")),
                                         1.0, "s", 1.0, false, note));
        } else {
            json_array_append_new(targets, not_measured(T_ETCD_FULL, skip_reconcile ? why : etcd_why));
            json_array_append_new(targets, not_measured(T_ETCD_NOOP, skip_reconcile ? why : etcd_why));
        }
    }
    v = json_object_get(rec, "validate_switch");
    if (v) {
        double total = json_number_value(json_object_get(v, "total_s"));
        double per = json_number_value(json_object_get(v, "peak_rss_per_dataplane_bytes"));

        double cpu = json_number_value(json_object_get(v, "total_cpu_s"));
        char note[300];

        snprintf(note, sizeof(note),
                 "wall seconds; this process's CPU seconds: %.3f. Bound (perf): jansson's lexer, "
                 "json_loadb ~73 %% of the parse; the rest is one allocation per field", cpu);
        json_array_append_new(targets, target(T_VALIDATE, total, 1.0, "s", 1.0, false, note));
        json_array_append_new(targets, target(T_VALIDATE_PEAK, per, 4096, "bytes per dataplane",
                                              1.0, false, NULL));
    } else {
        json_array_append_new(targets, not_measured(T_VALIDATE, "--no-reconcile"));
        json_array_append_new(targets, not_measured(T_VALIDATE_PEAK, "--no-reconcile"));
    }
    if (cv.peak_rss_kib) {
        char note[200];

        snprintf(note, sizeof(note), "through the CLI (/usr/bin/time -v): %.3f s wall, %.3f s CPU, "
                 "%ld KiB peak; on a loaded machine the CPU seconds are the figure", cv.wall_s,
                 cv.cpu_s, cv.peak_rss_kib);
        json_array_append_new(targets, target(T_VALIDATE_CLI, cv.cpu_s, 1.0, "s", 1.0, false, note));
        json_array_append_new(targets, target(T_VALIDATE_CLI_PEAK,
                                              cv.peak_rss_kib * 1024.0 / 100000, 4096,
                                              "bytes per dataplane", 1.0, false, NULL));
    } else {
        json_array_append_new(targets, not_measured(T_VALIDATE_CLI, "--no-reconcile"));
        json_array_append_new(targets, not_measured(T_VALIDATE_CLI_PEAK, "--no-reconcile"));
    }
    if (json_is_object(api)) {
        double per_conn = json_number_value(json_object_get(api, "rss_per_connection_kib"));
        json_t *rates = json_object_get(api, "with_parked");
        char note[700], what[160];
        size_t i;
        json_t *r;

        /* One target per measurement: alone, with 1,000 and with 10,000 agents parked (S11). */
        json_array_foreach(rates, i, r) {
            long long parked = json_integer_value(json_object_get(r, "parked"));
            double api_rate = json_number_value(json_object_get(r, "csrs_signed_per_s"));

            api_target_name(what, sizeof(what), parked);
            snprintf(note, sizeof(note),
                     "%.1f CSRs/s to a controller holding 2,000 dataplanes and %lld agents parked on "
                     "blocking queries (%.2f s of controller CPU for %lld CSRs). The machine's "
                     "bound: one client with 2 requests in flight, each answered only after a "
                     "durable commit of its key; SQLite alone commits %.0f times per s on this "
                     "disk, so at most %.0f CSRs/s = %.2fx cfssl serve, before any TLS round trip "
                     "or CPU (doc/performance.md)",
                     api_rate, parked, json_number_value(json_object_get(r, "controller_cpu_s")),
                     json_integer_value(json_object_get(r, "csrs")), commits, 2 * commits,
                     serve > 0 ? 2 * commits / serve : 0);
            if (skip_peers)
                json_array_append_new(targets, not_measured(what, "--no-peers"));
            else
                json_array_append_new(targets, target(what, api_rate, serve, "CSRs per s", 4, true,
                                                      note));
        }
        snprintf(note, sizeof(note), "%lld of %lld agents parked; controller RSS %lld -> %lld KiB",
                 (long long)json_integer_value(json_object_get(api, "parked")),
                 (long long)json_integer_value(json_object_get(api, "connections")),
                 (long long)json_integer_value(json_object_get(api, "controller_rss_before_kib")),
                 (long long)json_integer_value(json_object_get(api, "controller_rss_parked_kib")));
        json_array_append_new(targets, target(T_PARKED, per_conn, 64, "KiB per connection", 1.0,
                                              false, note));
    } else {
        /* the names bench-api's three measurements get (run_bench_api: 10,000 connections) */
        static const long long parked[] = {0, 1000, 10000};
        char what[160];

        for (size_t i = 0; i < sizeof(parked) / sizeof(parked[0]); i++) {
            api_target_name(what, sizeof(what), parked[i]);
            json_array_append_new(targets, not_measured(what, "--no-api"));
        }
        json_array_append_new(targets, not_measured(T_PARKED, "--no-api"));
    }
    json_object_set_new(out, "done_when", targets);
    json_dumpf(out, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    putchar('\n');

    json_decref(out);
    json_decref(rec);
    json_decref(rec1);
    json_decref(etcd);
    json_decref(api);
    free(csr_pem);
    free(spki);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    curl_global_cleanup();
    cleanup();
    return 0;
}
