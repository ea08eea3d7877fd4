/* bench-api.c - the dataplane API under load: CSRs signed per second through TLS keep-alive alone and with 1,000 and 10,000 agents parked, and controller memory per parked agent (S11, S13). */
#define _GNU_SOURCE 1
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "manifests/manifest.h"
#include "reconciler/api/token.h"
#include "reconciler/pki.h"
#include "reconciler/state.h"
#include "reconciler/store/identity_peek.h"
#include "test/bench/bench_clock.h"

/* Bounds: every loop ends, whatever the controller does. */
#define MAX_CSRS 100000
#define MAX_CONNECTIONS 20000
#define KEYS 64
#define IN_FLIGHT 2            /* as the cfssl serve reference: one client, 2 requests in flight */
#define MAX_IN_FLIGHT 64       /* the optional third argument: an extra figure, not the reference */
#define SIGNED_TIMEOUT_S 300.0
#define PARK_TIMEOUT_S 300.0
#define PER_DP_WAITERS 5       /* the API parks at most 8 queries per dataplane */
#define PARK_INDEX 1000000     /* above any generation the bench reaches */
#define FEW_PARKED 1000        /* S11: the rate with 1,000 and with CONNECTIONS agents connected */

static char tmpdir[64], url_base[64], ca_file[128], log_file[128];
static pid_t controller = -1;
static int in_flight = IN_FLIGHT;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    if (controller > 0) {
        kill(controller, SIGTERM);
        waitpid(controller, NULL, 0);
        controller = -1;
    }
    if (tmpdir[0])
        nftw(tmpdir, rm_entry, 64, FTW_DEPTH | FTW_PHYS);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench-api: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    /* What the controller said, for the cause. */
    FILE *f = log_file[0] ? fopen(log_file, "r") : NULL;
    if (f) {
        char buf[2048];
        size_t got;
        fseek(f, 0, SEEK_END);
        long end = ftell(f);
        fseek(f, end > (long)sizeof(buf) - 1 ? end - (long)sizeof(buf) + 1 : 0, SEEK_SET);
        got = fread(buf, 1, sizeof(buf) - 1, f);
        buf[got] = '\0';
        fprintf(stderr, "bench-api: the controller's last words:\n%s\n", buf);
        fclose(f);
    }
    cleanup();
    exit(2);
}

/* Resident memory of a process, KiB (VmRSS). */
static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* CPU seconds a process used so far (user + system). */
static double cpu_s_of(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long long ut = 0, st = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t got = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[got] = '\0';
    const char *p = strrchr(buf, ')');
    /* after "pid (comm)": state is field 3; utime and stime are fields 14 and 15 */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* A free TCP port on 127.0.0.1 (bound, read, released). */
static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        die("no free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

/* One mesh with a builtin CA, n dataplanes, each with a token (tokens[i], caller frees). */
static void seed(store *s, long n, char **tokens)
{
    static const char mesh_yaml[] = "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n"
                               "  backends:\n  - name: ca-1\n    type: builtin\n";
    char yaml[512], name[32], err[MESHCA_ERRBUF] = "";
    for (long i = -1; i < n; i++) {
        manifest_set *set = manifest_set_new();
        diag_list d = DIAG_LIST_INIT;
        int len = i < 0 ? snprintf(yaml, sizeof(yaml), "%s", mesh_yaml)
                        : snprintf(yaml, sizeof(yaml),
                                   "type: Dataplane\nmesh: default\nname: dp-%06ld\nnetworking:\n"
                                   "  address: 127.0.0.1\n  inbound:\n  - port: 8443\n    tags:\n"
                                   "      kuma.io/service: svc-%03ld\n",
                                   i, i % 100);
        const resource *res;
        char *text;
        if (!set || manifest_load_buffer(set, "seed.yaml", yaml, (size_t)len, &d) != MANIFEST_OK ||
            diag_has_errors(&d) || !(res = manifest_set_get(set, 0)) ||
            !(text = state_encode_resource(res)))
            die("cannot encode the seed");
        snprintf(name, sizeof(name), "dp-%06ld", i);
        store_key key = {state_kind_of(res->kind), "default", i < 0 ? "default" : name};
        if (store_put(s, &key, text, strlen(text), STORE_ANY_VERSION, NULL) != STORE_OK)
            die("cannot seed the store");
        free(text);
        diag_list_free(&d);
        manifest_set_free(set);
        if (i >= 0 && token_issue(s, "default", name, time(NULL), 86400, &tokens[i], err) < 0)
            die("token_issue: %s", err);
    }
}

static void start_controller(const char *meshca, const char *store_url)
{
    int port = free_port();
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    snprintf(url_base, sizeof(url_base), "https://127.0.0.1:%d", port);
    snprintf(log_file, sizeof(log_file), "%s/controller.log", tmpdir);
    fflush(stdout);
    controller = fork();
    if (controller < 0)
        die("fork: %s", strerror(errno));
    if (controller == 0) {
        FILE *f = freopen(log_file, "w", stdout);
        if (!f || dup2(fileno(stdout), 2) < 0)
            _exit(2);
        setenv("MESHCA_STORE", store_url, 1);
        execl(meshca, meshca, "run", "--listen", listen, "--interval", "1h", (char *)NULL);
        _exit(2);
    }
    for (int i = 0; i < 300; i++) {
        char buf[4096] = "";
        FILE *f = fopen(log_file, "r");
        size_t got = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
        if (f)
            fclose(f);
        buf[got] = '\0';
        if (strstr(buf, "serving the dataplane API"))
            return;
        if (waitpid(controller, NULL, WNOHANG) == controller) {
            controller = -1;
            die("meshca run exited: %s", buf);
        }
        usleep(100000);
    }
    die("meshca run did not start serving within 30 s");
}

static size_t discard(char *p, size_t size, size_t n, void *u)
{
    (void)p, (void)u;
    return size * n;
}

static CURL *easy(CURLSH *share, struct curl_slist *hdr, const char *url, long timeout_ms)
{
    CURL *h = curl_easy_init();
    if (!h)
        die("curl_easy_init");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
    curl_easy_setopt(h, CURLOPT_SHARE, share);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    return h;
}

/* Identities of the mesh with a certificate (generation > 0). */
static long count_signed(store *s)
{
    store_entry *e = NULL;
    size_t n = 0;
    long got = 0;
    if (store_list(s, STATE_IDENTITIES, "default", &e, &n) < 0)
        die("store_list identities failed");
    for (size_t i = 0; i < n; i++) {
        identity id;
        unsigned flags;
        if (identity_peek(e[i].value, e[i].len, &id, &flags) == 0) {
            got += id.generation > 0 && !(flags & PEEK_PENDING_KEY);
            identity_clear(&id);
        }
    }
    store_entries_free(e, n);
    return got;
}

/* n CSRs, one per dataplane, POSTed by one client with in_flight requests on keep-alive TLS
 * connections; the clock stops when the store holds every certificate signed. */
static double csr_phase(store *s, long n, char **tokens, double *ret_post_s, long *ret_conns)
{
    char *bodies[KEYS], url[256];
    for (int k = 0; k < KEYS; k++) {
        EVP_PKEY *key = NULL;
        char *pem = NULL;
        json_t *j;
        if (pki_generate_key(false, 0, &key, NULL) < 0 || pki_make_csr(key, &pem, NULL) < 0 ||
            !(j = json_pack("{s:s}", "csr", pem)) || !(bodies[k] = json_dumps(j, JSON_COMPACT)))
            die("cannot make the CSRs");
        json_decref(j);
        free(pem);
        EVP_PKEY_free(key);
    }
    CURLSH *share = curl_share_init();
    CURLM *multi = curl_multi_init();
    CURL *h[MAX_IN_FLIGHT];
    struct curl_slist *hdr[MAX_IN_FLIGHT];
    long next = 0, done = 0, conns = 0, retries = 0;
    long current[MAX_IN_FLIGHT];
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    double t0 = now_s();
    for (int i = 0; i < in_flight; i++) {
        h[i] = NULL;
        hdr[i] = NULL;
    }
    while (done < n) {
        for (int i = 0; i < in_flight && next < n; i++) {
            if (h[i] && hdr[i])
                continue;
            char auth[512];
            snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tokens[next]);
            curl_slist_free_all(hdr[i]);
            hdr[i] = curl_slist_append(curl_slist_append(curl_slist_append(NULL, "Expect:"),
                                                         "Content-Type: application/json"), auth);
            snprintf(url, sizeof(url), "%s/v1/meshes/default/dataplanes/dp-%06ld/csr", url_base, next);
            if (!h[i])
                h[i] = easy(share, hdr[i], url, 30000);
            curl_easy_setopt(h[i], CURLOPT_URL, url);
            curl_easy_setopt(h[i], CURLOPT_HTTPHEADER, hdr[i]);
            curl_easy_setopt(h[i], CURLOPT_POSTFIELDS, bodies[next % KEYS]);
            curl_easy_setopt(h[i], CURLOPT_PRIVATE, (char *)(intptr_t)i);
            curl_multi_add_handle(multi, h[i]);
            current[i] = next++;
        }
        int running = 0, left = 0;
        CURLMsg *msg;
        if (curl_multi_perform(multi, &running) != CURLM_OK)
            die("curl_multi_perform");
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            long status = 0, c = 0;
            char *priv = NULL;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            curl_easy_getinfo(msg->easy_handle, CURLINFO_NUM_CONNECTS, &c);
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            /* A connection that did not come up (a loaded machine) is tried again, a few times. */
            if ((msg->data.result == CURLE_SSL_CONNECT_ERROR ||
                 msg->data.result == CURLE_COULDNT_CONNECT) && retries < 10) {
                retries++;
                curl_multi_remove_handle(multi, msg->easy_handle);
                curl_multi_add_handle(multi, msg->easy_handle);
                continue;
            }
            if (msg->data.result != CURLE_OK || status != 202)
                die("POST csr for dp-%06ld answered %ld: %s", current[(intptr_t)priv], status,
                    curl_easy_strerror(msg->data.result));
            conns += c;
            curl_multi_remove_handle(multi, msg->easy_handle);
            curl_slist_free_all(hdr[(intptr_t)priv]);
            hdr[(intptr_t)priv] = NULL;   /* free for the next request, same handle: keep-alive */
            done++;
        }
        if (done < n && curl_multi_poll(multi, NULL, 0, 100, NULL) != CURLM_OK)
            die("curl_multi_poll");
    }
    *ret_post_s = now_s() - t0;
    *ret_conns = conns;
    if (retries)
        fprintf(stderr, "bench-api: %ld CSR POSTs retried after a failed connection\n", retries);
    for (int i = 0; i < in_flight; i++) {
        curl_easy_cleanup(h[i]);
        curl_slist_free_all(hdr[i]);
    }
    curl_multi_cleanup(multi);
    curl_share_cleanup(share);
    for (int k = 0; k < KEYS; k++)
        free(bodies[k]);
    /* The controller signs on its passes (one starts when a CSR arrives). */
    while (count_signed(s) < n) {
        if (now_s() - t0 > SIGNED_TIMEOUT_S)
            die("not every CSR was signed within %.0f s", SIGNED_TIMEOUT_S);
        usleep(20000);
    }
    return now_s() - t0;
}

/* Agents parked on blocking queries, each its own TLS connection, spread over the dataplanes.
 * They stay parked while CSRs are measured (S11: the rate WITH 1,000 and 10,000 agents
 * connected), so the set is grown in steps and checked after each measurement. */
typedef struct parked_set {
    CURLM *multi;
    CURL **h;
    struct curl_slist **hdr;
    long n, cap;
} parked_set;

static void parked_init(parked_set *ps, long cap)
{
    ps->multi = curl_multi_init();
    ps->h = calloc((size_t)(cap ? cap : 1), sizeof(*ps->h));
    ps->hdr = calloc((size_t)(cap ? cap : 1), sizeof(*ps->hdr));
    ps->n = 0;
    ps->cap = cap;
    if (!ps->multi || !ps->h || !ps->hdr)
        die("out of memory");
}

/* Drives the parked connections once; every query must still be waiting: an answer (or a
 * closed connection) means an agent was dropped while the CSRs were measured. */
static void parked_check(parked_set *ps, const char *when)
{
    int running = 0, left = 0;
    CURLMsg *msg;
    if (curl_multi_perform(ps->multi, &running) != CURLM_OK)
        die("curl_multi_perform");
    while ((msg = curl_multi_info_read(ps->multi, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE) {
            long status = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            die("a parked query ended %s: %ld %s", when, status,
                curl_easy_strerror(msg->data.result));
        }
}

/* Grows the set to `upto` parked agents; returns how many the controller holds once every
 * request was sent. */
static long park_more(parked_set *ps, long upto, long ndps, char **tokens)
{
    char url[256], auth[512];
    long parked = 0;
    if (upto > ps->cap)
        upto = ps->cap;
    for (long i = ps->n; i < upto; i++) {
        long dp = i % ndps;
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tokens[dp]);
        ps->hdr[i] = curl_slist_append(NULL, auth);
        /* An index no generation reaches in the bench: the query parks whether the dataplane
         * is signed or not, and stays parked while the CSR phases re-sign it (each signing
         * still wakes it: the controller reads the identity and parks it again). */
        snprintf(url, sizeof(url),
                 "%s/v1/meshes/default/dataplanes/dp-%06ld/identity?index=%d&wait=600s", url_base,
                 dp, PARK_INDEX);
        ps->h[i] = easy(NULL, ps->hdr[i], url, (long)(PARK_TIMEOUT_S * 4000));
        curl_easy_setopt(ps->h[i], CURLOPT_FORBID_REUSE, 1L);
        /* 10,000 handshakes queue on the controller's one loop: allow for them. */
        curl_easy_setopt(ps->h[i], CURLOPT_CONNECTTIMEOUT_MS, (long)(PARK_TIMEOUT_S * 1000));
        curl_multi_add_handle(ps->multi, ps->h[i]);
    }
    ps->n = upto > ps->n ? upto : ps->n;
    double t0 = now_s();
    for (;;) {
        parked_check(ps, "early");
        parked = 0;
        for (long i = 0; i < ps->n; i++) {
            curl_off_t pre = 0;
            curl_easy_getinfo(ps->h[i], CURLINFO_PRETRANSFER_TIME_T, &pre);
            parked += pre > 0;
        }
        if (parked == ps->n || now_s() - t0 > PARK_TIMEOUT_S)
            break;
        curl_multi_poll(ps->multi, NULL, 0, 200, NULL);
    }
    /* Let the controller read every request sent before anything is measured. */
    for (double t1 = now_s(); now_s() - t1 < 2.0;) {
        parked_check(ps, "early");
        curl_multi_poll(ps->multi, NULL, 0, 100, NULL);
    }
    return parked;
}

static void parked_free(parked_set *ps)
{
    for (long i = 0; i < ps->n; i++) {
        curl_multi_remove_handle(ps->multi, ps->h[i]);
        curl_easy_cleanup(ps->h[i]);
        curl_slist_free_all(ps->hdr[i]);
    }
    free(ps->h);
    free(ps->hdr);
    curl_multi_cleanup(ps->multi);
}

/* One CSR rate measurement: n CSRs while `parked` agents wait. */
typedef struct csr_rate {
    long parked;
    double posted_s, all_signed_s, cpu_s;
    long conns;
} csr_rate;

static void measure_csrs(store *s, long n, char **tokens, long parked, csr_rate *r)
{
    double cpu0 = cpu_s_of(controller);
    r->parked = parked;
    r->all_signed_s = csr_phase(s, n, tokens, &r->posted_s, &r->conns);
    r->cpu_s = cpu_s_of(controller) - cpu0;
}

static void print_rate(const csr_rate *r, long n)
{
    printf("{\"parked\":%ld,\"csrs\":%ld,\"tls_connections_opened\":%ld,\"posted_s\":%.3f,"
           "\"all_signed_s\":%.3f,\"csrs_signed_per_s\":%.1f,\"controller_cpu_s\":%.3f}",
           r->parked, n, r->conns, r->posted_s, r->all_signed_s, n / r->all_signed_s, r->cpu_s);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 2000;
    long c = argc > 2 ? strtol(argv[2], NULL, 10) : 10000;
    char meshca[512], store_url[128], err[MESHCA_ERRBUF] = "", *slash;
    const char *env = getenv("MESHCA");
    struct rlimit rl;
    store *s = NULL;

    in_flight = argc > 3 ? (int)strtol(argv[3], NULL, 10) : IN_FLIGHT;
    if (argc > 4 || n < 1 || n > MAX_CSRS || c < 0 || c > MAX_CONNECTIONS || in_flight < 1 ||
        in_flight > MAX_IN_FLIGHT) {
        fprintf(stderr, "usage: bench-api [CSRS<=%d [CONNECTIONS<=%d [IN_FLIGHT<=%d]]] (default "
                        "2000 10000 2); MESHCA=path of meshca (default ../../cmd/meshca)\n",
                MAX_CSRS, MAX_CONNECTIONS, MAX_IN_FLIGHT);
        return 2;
    }
    /* Dataplanes: one per CSR, and enough that no dataplane parks more than PER_DP_WAITERS. */
    long ndps = n > (c + PER_DP_WAITERS - 1) / PER_DP_WAITERS ? n
                                                               : (c + PER_DP_WAITERS - 1) / PER_DP_WAITERS;
    if (env)
        snprintf(meshca, sizeof(meshca), "%s", env);
    else {
        snprintf(meshca, sizeof(meshca), "%s", argv[0]);
        slash = strrchr(meshca, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(meshca, sizeof(meshca), ".");
        strncat(meshca, "/../../cmd/meshca", sizeof(meshca) - strlen(meshca) - 1);
    }
    /* One descriptor per parked agent, here and in the controller (which raises its own). */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t)c + 64)
            die("the descriptor limit (%llu) is below %ld connections", (unsigned long long)rl.rlim_cur, c);
    }
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/meshca-bench-api-XXXXXX");
    if (!mkdtemp(tmpdir))
        die("mkdtemp: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(store_url, sizeof(store_url), "sqlite://%s/store/meshca.db", tmpdir);
    if (store_open(store_url, &s, err) != STORE_OK)
        die("store_open: %s", err);
    char **tokens = calloc((size_t)ndps, sizeof(*tokens));
    if (!tokens)
        die("out of memory");
    seed(s, ndps, tokens);
    start_controller(meshca, store_url);
    snprintf(ca_file, sizeof(ca_file), "%s/cp-ca.pem", tmpdir);
    {
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "MESHCA_STORE='%s' '%s' cp-ca -o pem > '%s'", store_url, meshca,
                 ca_file);
        if (system(cmd) != 0)
            die("meshca cp-ca failed");
    }
    /* The rate alone, then with FEW_PARKED agents connected, then with all c (S11); memory per
     * connection from before the first agent to all c parked. */
    csr_rate rates[3];
    size_t nrates = 0;
    long before = 0, after = 0, parked = 0;
    parked_set ps;
    parked_init(&ps, c);
    measure_csrs(s, n, tokens, 0, &rates[nrates++]);
    before = rss_kib(controller);
    if (c > FEW_PARKED) {
        parked = park_more(&ps, FEW_PARKED, ndps, tokens);
        if (parked == FEW_PARKED) {
            measure_csrs(s, n, tokens, parked, &rates[nrates++]);
            parked_check(&ps, "while CSRs were signed");
        }
    }
    if (c > 0 && parked == ps.n) {
        parked = park_more(&ps, c, ndps, tokens);
        after = rss_kib(controller);
        if (parked == c) {
            measure_csrs(s, n, tokens, parked, &rates[nrates++]);
            parked_check(&ps, "while CSRs were signed");
        }
    }
    printf("{\"benchmark\":\"api\",\"tls\":true,\"csrs\":%ld,\"clients_in_flight\":%d,"
           "\"tls_connections_opened\":%ld,\"posted_s\":%.3f,\"all_signed_s\":%.3f,"
           "\"csrs_signed_per_s\":%.1f,\"controller_cpu_s\":%.3f,\"connections\":%ld,\"parked\":%ld,"
           "\"controller_rss_before_kib\":%ld,\"controller_rss_parked_kib\":%ld,"
           "\"rss_per_connection_kib\":%.1f,\"with_parked\":[",
           n, in_flight, rates[0].conns, rates[0].posted_s, rates[0].all_signed_s,
           n / rates[0].all_signed_s, rates[0].cpu_s, c, parked, before, after,
           parked > 0 ? (double)(after - before) / (double)parked : 0.0);
    for (size_t i = 0; i < nrates; i++) {
        if (i)
            putchar(',');
        print_rate(&rates[i], n);
    }
    printf("]}\n");
    parked_free(&ps);
    for (long i = 0; i < ndps; i++)
        token_free(tokens[i]);
    free(tokens);
    store_close(s);
    curl_global_cleanup();
    cleanup();
    return parked == c ? 0 : 1;
}
