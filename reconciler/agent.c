/* agent.c - the dataplane side over the API: its own key, CSRs, blocking queries, files, reload, ack. */
#define _GNU_SOURCE 1
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "reconciler/agent.h"
#include "reconciler/agent_identity.h"
#include "reconciler/api/client.h"
#include "reconciler/atomic_dir.h"
#include "reconciler/pki.h"
#include "reconciler/reload.h"

#define KEY_FILE_MAX (64 * 1024)

/* What the agent keeps between iterations. */
typedef struct agent_state {
    const agent_options *o;
    EVP_PKEY *key;        /* key of the loaded cert.pem, or NULL */
    EVP_PKEY *next_key;   /* key whose CSR is with the controller, or NULL */
    bool next_sent;       /* its CSR was accepted (202) in this run */
    bool rsa;             /* key type the mesh asks for, as last learnt */
    uint64_t index;       /* generation last seen */
    uint64_t loaded;      /* generation loaded and acknowledged */
    int64_t renew_at;     /* of the loaded certificate; 0 unknown */
    int64_t not_after;
    bool use_token;       /* the controller refused our certificate: first-contact auth again */
    bool force_renew;     /* opts->renew, until its CSR is in */
    bool stale_skipped;   /* since the last CSR, a generation for another key was waited past */
    uint64_t failed_gen;  /* generation whose load (files, reload, ack) failed, being retried */
    unsigned load_failures; /* failed loads of failed_gen in a row */
    char last_error[MESHCA_ERRBUF];
} agent_state;

__attribute__((format(printf, 3, 4))) static void say(agent_state *st, bool error,
                                                     const char *fmt, ...)
{
    char line[MESHCA_ERRBUF];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* Trouble that repeats (a controller down for minutes) is said once. */
    if (error) {
        if (strcmp(st->last_error, line) == 0)
            return;
        memcpy(st->last_error, line, sizeof(line));
    } else {
        st->last_error[0] = '\0';
    }
    if (st->o->log)
        st->o->log(st->o->log_ctx, error, line);
}

static bool stopping(const agent_state *st)
{
    return st->o->stop_requested && st->o->stop_requested();
}

static void sleep_ms(const agent_state *st, int64_t ms)
{
    while (ms > 0 && !stopping(st)) {
        int64_t step = ms > 200 ? 200 : ms;
        struct timespec ts = {(time_t)(step / 1000), (long)(step % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static int path_of(const char *dir, const char *name, char *buf, size_t size)
{
    return (size_t)snprintf(buf, size, "%s/%s", dir, name) >= size ? -1 : 0;
}

/* Reads a small file (a key or certificate) into a NUL-terminated string; NULL when absent. */
static char *read_small(const char *path, size_t *ret_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = malloc(KEY_FILE_MAX + 1);
    size_t len = 0;
    ssize_t n;
    while (buf && len < KEY_FILE_MAX && (n = read(fd, buf + len, KEY_FILE_MAX - len)) > 0)
        len += (size_t)n;
    close(fd);
    if (!buf)
        return NULL;
    buf[len] = '\0';
    *ret_len = len;
    return buf;
}

static EVP_PKEY *load_key(const char *dir, const char *name)
{
    char path[PATH_MAX];
    size_t len = 0;
    if (path_of(dir, name, path, sizeof(path)) < 0)
        return NULL;
    char *pem = read_small(path, &len);
    EVP_PKEY *key = NULL;
    if (pem && pki_key_from_pem(pem, len, &key, NULL) < 0)
        key = NULL;
    if (pem) {
        OPENSSL_cleanse(pem, len);
        free(pem);
    }
    ERR_clear_error();
    return key;
}

/* The loaded certificate's validity, 0 when none. */
static int64_t loaded_not_after(const char *dir)
{
    char path[PATH_MAX];
    size_t len = 0;
    int64_t na = 0;
    if (path_of(dir, AGENT_CERT_FILE, path, sizeof(path)) < 0)
        return 0;
    char *pem = read_small(path, &len);
    X509 *cert = NULL;
    if (pem && pki_cert_from_pem(pem, len, &cert, NULL) == 0)
        pki_cert_not_after(cert, &na);
    X509_free(cert);
    free(pem);
    ERR_clear_error();
    return na;
}

/* Writes the next key 0600 through a temporary file and a rename (never half a key). */
static int save_next_key(const char *dir, EVP_PKEY *key, char *errbuf)
{
    char path[PATH_MAX], tmp[PATH_MAX], *pem = NULL;
    if (path_of(dir, AGENT_NEXT_KEY_FILE, path, sizeof(path)) < 0 ||
        path_of(dir, "." AGENT_NEXT_KEY_FILE ".tmp", tmp, sizeof(tmp)) < 0)
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s: path too long", dir);
    int rc = pki_key_to_pem(key, &pem, errbuf);
    if (rc < 0)
        return rc;
    size_t len = strlen(pem);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    bool ok = fd >= 0 && write(fd, pem, len) == (ssize_t)len && fsync(fd) == 0;
    int err = errno;
    if (fd >= 0)
        close(fd);
    pki_free_secret(pem);
    if (!ok || rename(tmp, path) < 0) {
        err = ok ? errno : err;
        unlink(tmp);
        return meshca_fail(errbuf, MESHCA_EIO, "cannot write %s: %s", path, strerror(err));
    }
    return 0;
}

static void drop_next_key(agent_state *st)
{
    char path[PATH_MAX];
    EVP_PKEY_free(st->next_key);
    st->next_key = NULL;
    st->next_sent = false;
    if (path_of(st->o->out_dir, AGENT_NEXT_KEY_FILE, path, sizeof(path)) == 0)
        unlink(path);
}

/* A client for one request: mTLS with the loaded certificate when we have one, else the token. */
static int make_client(agent_state *st, api_client **ret, char *errbuf)
{
    const agent_options *o = st->o;
    char cert[PATH_MAX], key[PATH_MAX];
    api_client_options co = API_CLIENT_OPTIONS_INIT;
    co.servers = o->servers;
    co.nservers = o->nservers;
    co.ca_file = o->ca_file;
    co.stop_requested = o->stop_requested;
    co.rounds = 1;   /* our own loop retries with backoff and keeps serving the files meanwhile */
    bool have_cert = st->key && st->not_after > (int64_t)time(NULL) &&
                     path_of(o->out_dir, AGENT_CERT_FILE, cert, sizeof(cert)) == 0 &&
                     path_of(o->out_dir, AGENT_KEY_FILE, key, sizeof(key)) == 0;
    if (have_cert && !(st->use_token && o->token)) {
        co.cert_file = cert;
        co.key_file = key;
    } else if (o->token) {
        co.token = o->token;
    } else {
        return meshca_fail(errbuf, MESHCA_EINVAL, "no certificate yet and no token: pass "
                           "--token-file (meshca token issue -m %s -d %s)", o->mesh, o->dataplane);
    }
    return api_client_new(&co, ret, errbuf);
}

/* Whether the controller refused our credential (so the token may do better). */
static bool unauthenticated(const char *errbuf)
{
    return strstr(errbuf, "HTTP 401") != NULL;
}

/* Generates a fresh key of the mesh's type, keeps it as the next key and sends its CSR. */
static int send_csr(agent_state *st, char *errbuf)
{
    const agent_options *o = st->o;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!st->next_key) {
            int rc = pki_generate_key(st->rsa, 2048, &st->next_key, errbuf);
            if (rc == 0)
                rc = save_next_key(o->out_dir, st->next_key, errbuf);
            if (rc < 0) {
                EVP_PKEY_free(st->next_key);
                st->next_key = NULL;
                return rc;
            }
        }
        char *csr = NULL;
        int rc = pki_make_csr(st->next_key, &csr, errbuf);
        if (rc < 0)
            return rc;
        api_client *c = NULL;
        rc = make_client(st, &c, errbuf);
        if (rc == 0)
            rc = api_client_post_csr(c, o->mesh, o->dataplane, csr, errbuf);
        api_client_free(c);
        free(csr);
        if (rc == 0) {
            st->next_sent = true;
            st->stale_skipped = false;
            say(st, false, "sent a CSR for a new %s key", st->rsa ? "rsa 2048" : "ecdsa P-256");
            return 0;
        }
        /* The mesh asks for the other key type (dpCert.keyType): a key of that type, once. */
        bool wants_rsa = strstr(errbuf, "asks for rsa") != NULL;
        bool wants_ec = strstr(errbuf, "asks for ecdsa") != NULL;
        if (rc == MESHCA_EINVAL && (wants_rsa || wants_ec) && wants_rsa != st->rsa) {
            st->rsa = wants_rsa;
            drop_next_key(st);
            continue;
        }
        if (rc == MESHCA_EINVAL && unauthenticated(errbuf) && !st->use_token && o->token)
            st->use_token = true;
        return rc;
    }
    return meshca_fail(errbuf, MESHCA_EINVAL, "the controller refused both key types");
}

/* Appends PEM text (adds a newline when missing). */
static int append_pem(char **buf, size_t *len, const char *text)
{
    size_t n = strlen(text);
    bool nl = n && text[n - 1] != '\n';
    char *p = realloc(*buf, *len + n + 2);
    if (!p)
        return MESHCA_ENOMEM;
    memcpy(p + *len, text, n);
    *len += n;
    if (nl)
        p[(*len)++] = '\n';
    p[*len] = '\0';
    *buf = p;
    return 0;
}

static int64_t parse_time(const char *text)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!text)
        return 0;
    const char *end = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return 0;
    return (int64_t)timegm(&tm);
}

/* Whether DIR/name holds exactly text. */
static bool same_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    size_t len = 0;
    if (path_of(dir, name, path, sizeof(path)) < 0)
        return false;
    char *have = read_small(path, &len);
    bool same = have && len == strlen(text) && memcmp(have, text, len) == 0;
    if (have) {
        OPENSSL_cleanse(have, len);
        free(have);
    }
    return same;
}

/* Remembers the generation acknowledged (best effort: without it a restart reloads once more). */
static void note_acked(const char *dir, const char *gen_text)
{
    char path[PATH_MAX];
    if (path_of(dir, AGENT_ACKED_FILE, path, sizeof(path)) < 0)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    if (write(fd, gen_text, strlen(gen_text)) < 0)
        unlink(path);
    close(fd);
}

/* Writes, reloads and acknowledges one generation. 0, or a code with errbuf. */
static int load_generation(agent_state *st, json_t *body, uint64_t gen, char *errbuf)
{
    const agent_options *o = st->o;
    const char *leaf = json_string_value(json_object_get(body, "certificate"));
    const char *chain = json_string_value(json_object_get(body, "chain"));
    const char *bundle = json_string_value(json_object_get(body, "caBundle"));
    if (!leaf || !bundle)
        return meshca_fail(errbuf, MESHCA_EINVAL, "identity answer without certificate or caBundle");
    X509 *cert = NULL;
    if (pki_cert_from_pem(leaf, strlen(leaf), &cert, errbuf) < 0)
        return MESHCA_EINVAL;
    EVP_PKEY *key = NULL;
    bool is_next = false;
    if (st->next_key && pki_key_matches(cert, st->next_key)) {
        key = st->next_key;
        is_next = true;
    } else if (st->key && pki_key_matches(cert, st->key)) {
        key = st->key;
    }
    ERR_clear_error();
    if (!key) {
        X509_free(cert);
        return meshca_fail(errbuf, MESHCA_ENOTFOUND, "generation %llu certifies a key this agent "
                           "does not hold", (unsigned long long)gen);
    }
    /* A controller that sends another dataplane's or mesh's certificate, or a bundle the
     * certificate does not chain to, must not get it in front of the proxy. */
    char refused[MESHCA_ERRBUF];
    int rc = agent_identity_check_leaf_pem(leaf, refused);
    if (rc == 0)
        rc = agent_identity_check(o->mesh, o->dataplane, cert, chain, bundle, refused);
    X509_free(cert);
    if (rc < 0)
        return meshca_fail(errbuf, rc, "generation %llu refused, the files are kept: %s",
                           (unsigned long long)gen, refused);

    char *cert_pem = NULL, *key_pem = NULL;
    size_t clen = 0;
    rc = append_pem(&cert_pem, &clen, leaf);
    if (rc == 0 && chain && *chain)
        rc = append_pem(&cert_pem, &clen, chain);
    if (rc == 0)
        rc = pki_key_to_pem(key, &key_pem, errbuf);
    if (rc < 0) {
        free(cert_pem);
        return rc == MESHCA_ENOMEM ? meshca_fail(errbuf, rc, "out of memory") : rc;
    }
    const atomic_dir_file files[3] = {
        {AGENT_BUNDLE_FILE, bundle, strlen(bundle), 0644},
        {AGENT_KEY_FILE, key_pem, strlen(key_pem), 0600},
        {AGENT_CERT_FILE, cert_pem, clen, 0644},
    };
    /* A restarted agent whose files already are this generation, loaded and acknowledged, does
     * not reload its proxy again. A generation whose reload failed is reloaded, from the files
     * already written: a retry does not swap ..data under the proxy again. */
    char gen_text[32];
    snprintf(gen_text, sizeof(gen_text), "%llu\n", (unsigned long long)gen);
    bool files_same = !is_next && same_file(o->out_dir, AGENT_CERT_FILE, cert_pem) &&
                      same_file(o->out_dir, AGENT_BUNDLE_FILE, bundle) &&
                      same_file(o->out_dir, AGENT_KEY_FILE, key_pem);
    bool same = files_same && same_file(o->out_dir, AGENT_ACKED_FILE, gen_text);
    rc = files_same ? 0 : atomic_dir_write(o->out_dir, files, 3, (int64_t)time(NULL), errbuf);
    pki_free_secret(key_pem);
    free(cert_pem);
    if (rc < 0)
        return rc;
    if (is_next) {
        /* The new key is now key.pem: it becomes the key of the loaded certificate. */
        EVP_PKEY_free(st->key);
        st->key = st->next_key;
        st->next_key = NULL;
        st->next_sent = false;
        char path[PATH_MAX];
        if (path_of(o->out_dir, AGENT_NEXT_KEY_FILE, path, sizeof(path)) == 0)
            unlink(path);
    }
    st->not_after = parse_time(json_string_value(json_object_get(body, "notAfter")));
    st->renew_at = parse_time(json_string_value(json_object_get(body, "renewAt")));
    if (o->reload_cmd && !same) {
        char why[MESHCA_ERRBUF];
        int64_t timeout = o->reload_timeout_ms > 0 ? o->reload_timeout_ms : RELOAD_DEFAULT_TIMEOUT_MS;
        if (reload_run(o->reload_cmd, timeout, o->stop_requested, NULL, why) < 0)
            return meshca_fail(errbuf, MESHCA_ESTATE, "%s; generation %llu not acknowledged", why,
                               (unsigned long long)gen);
    }
    api_client *c = NULL;
    rc = make_client(st, &c, errbuf);
    if (rc == 0)
        rc = api_client_put_ack(c, o->mesh, o->dataplane, gen, errbuf);
    api_client_free(c);
    if (rc == MESHCA_ECONFLICT)
        return 0;   /* a newer generation is on its way: the next query brings it */
    if (rc < 0)
        return rc;
    st->loaded = gen;
    note_acked(o->out_dir, gen_text);
    if (same)
        return 0;
    say(st, false, "generation %llu loaded and acknowledged (backend %s)", (unsigned long long)gen,
        json_string_value(json_object_get(body, "backend")) ?: "?");
    return 0;
}

/* One round: make sure a CSR is in when needed, wait for the identity, load it. */
static int step(agent_state *st, char *errbuf)
{
    const agent_options *o = st->o;
    int64_t now = (int64_t)time(NULL);
    bool have_cert = st->key && st->not_after > 0;
    bool renew_due = have_cert && ((st->renew_at > 0 && now >= st->renew_at) || st->force_renew);
    if ((!have_cert || renew_due) && !st->next_sent) {
        int rc = send_csr(st, errbuf);
        if (rc < 0)
            return rc;
        st->force_renew = false;
    }
    int wait_s = o->wait_s > 0 ? o->wait_s : AGENT_DEFAULT_WAIT_S;
    if (have_cert && st->renew_at > now && st->renew_at - now < wait_s)
        wait_s = (int)(st->renew_at - now) + 1;
    /* A store that has this dataplane's identity answers the first query (index 0) at once. One
     * that has none (restored from a backup older than the first certificate, or the Dataplane
     * deleted and applied again) waits for a CSR that an agent holding a certificate would
     * never send: it renews at a point learnt from an answer. Ask briefly, to find out soon. */
    if (have_cert && st->index == 0 && !st->next_sent)
        wait_s = 1;
    api_client *c = NULL;
    int rc = make_client(st, &c, errbuf);
    json_t *body = NULL;
    uint64_t index = 0;
    if (rc == 0)
        rc = api_client_get_identity(c, o->mesh, o->dataplane, st->index, wait_s, &body, &index,
                                     errbuf);
    api_client_free(c);
    if (rc == MESHCA_ENOTFOUND) {
        /* Nothing issued yet: the controller answers so once the wait has passed; ask again. */
        if (strstr(errbuf, "has been issued")) {
            if (have_cert && !st->next_sent && !st->force_renew) {
                say(st, false, "the controller has no certificate for this dataplane (a store "
                    "restored from an older backup, or the Dataplane re-created); sending a CSR");
                st->force_renew = true;
            }
            return 0;
        }
        /* Any other 404 comes at once: the dataplane was deleted, or --server has a path and
         * is not the API. Asking again at once would spin against the controller: the run
         * loop reports it and backs off (--once: exit 1). Our CSR, if any, went with it. */
        st->next_sent = false;
        return rc;
    }
    if (rc == MESHCA_EINVAL && unauthenticated(errbuf) && !st->use_token && o->token) {
        st->use_token = true;
        return 0;
    }
    if (rc < 0)
        return rc;
    const char *kt = json_string_value(json_object_get(body, "keyType"));
    if (kt)
        st->rsa = strcmp(kt, "rsa") == 0;
    st->index = index;
    if (index != st->loaded) {
        rc = load_generation(st, body, index, errbuf);
        if (rc == MESHCA_ENOTFOUND && st->next_sent && !st->stale_skipped) {
            /* Our CSR is in, and this answer predates it: a fresh --out for a dataplane that
             * already has an identity gets that identity at once (index 0). The next
             * generation is ours; a new CSR now would make this one stale too, and the two
             * could chase each other for many rounds. Once per CSR: a second miss means
             * another agent's key, and a new CSR is the way out. */
            st->stale_skipped = true;
            rc = 0;
        } else if (rc == MESHCA_ENOTFOUND) {
            /* Signed for a key we lost (restart between CSR and answer): start over. */
            say(st, true, "%s; sending a new CSR", errbuf);
            drop_next_key(st);
            st->force_renew = true;
            rc = 0;
        }
    } else {
        st->renew_at = parse_time(json_string_value(json_object_get(body, "renewAt")));
    }
    if (rc < 0) {
        /* Not loaded (the files, the reload or the ack failed). A blocking query from this
         * index would wait for the NEXT generation, up to wait_s, while this one is neither
         * loaded nor acknowledged: ask from just below it instead, so that the next query
         * answers at once and the run loop's backoff paces the retries of this generation. */
        st->load_failures = st->failed_gen == index ? st->load_failures + 1 : 1;
        st->failed_gen = index;
        st->index = index > 0 ? index - 1 : 0;   /* generation 0 is never loaded */
        size_t n = strlen(errbuf);
        if (st->load_failures > 1 && n < MESHCA_ERRBUF)
            snprintf(errbuf + n, MESHCA_ERRBUF - n, " (attempt %u)", st->load_failures);
    } else if (st->failed_gen && st->loaded >= st->failed_gen) {
        st->failed_gen = 0;
        st->load_failures = 0;
    }
    if (rc == 0)
        st->use_token = false;
    json_decref(body);
    return rc;
}

/* An agent that fails before the controller accepted anything (refused: 401, 403, 404; none
 * reachable with --once) removes the --out directory this run created: it holds at most the
 * key of a CSR that was never accepted, which the next run would replace anyway. Only when
 * nothing else is in it. */
static void forget_created_dir(agent_state *st)
{
    const char *dir = st->o->out_dir;
    DIR *d = opendir(dir);
    if (!d)
        return;
    bool other = false;
    struct dirent *e;
    while (!other && (e = readdir(d)))
        other = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
                strcmp(e->d_name, AGENT_NEXT_KEY_FILE) != 0;
    closedir(d);
    char path[PATH_MAX];
    if (other || path_of(dir, AGENT_NEXT_KEY_FILE, path, sizeof(path)) < 0)
        return;
    if ((unlink(path) == 0 || errno == ENOENT) && rmdir(dir) == 0)
        say(st, false, "removed %s again: this run created it and the controller accepted nothing",
            dir);
}

int agent_run(const agent_options *o, char *errbuf)
{
    if (!o || !o->mesh || !o->dataplane || !o->out_dir || !o->servers || !o->nservers ||
        !o->ca_file)
        return meshca_fail(errbuf, MESHCA_EINVAL, "agent: missing option");
    agent_state st;
    memset(&st, 0, sizeof(st));
    st.o = o;
    st.force_renew = o->renew;
    /* What a previous run left: the loaded key and certificate, and a key whose CSR may still
     * be with the controller. */
    st.key = load_key(o->out_dir, AGENT_KEY_FILE);
    st.not_after = st.key ? loaded_not_after(o->out_dir) : 0;
    st.next_key = load_key(o->out_dir, AGENT_NEXT_KEY_FILE);
    if (st.key)
        st.rsa = strcmp(pki_key_type(st.key), "rsa") == 0;
    if (st.not_after > 0 && !st.next_key)
        st.renew_at = 0;   /* learnt from the first answer */

    int64_t backoff = 0;
    int rc = 0;
    bool done = false;   /* --once: a generation loaded and acknowledged */
    while (!stopping(&st)) {
        char err[MESHCA_ERRBUF] = "";
        rc = step(&st, err);
        if (rc == 0) {
            backoff = 0;
            if (o->once && st.loaded && st.loaded == st.index && !st.next_sent && !st.force_renew) {
                done = true;
                break;
            }
            continue;
        }
        if (rc == MESHCA_ENOMEM || rc == MESHCA_EIO) {
            meshca_fail(errbuf, rc, "%s", err);
            break;
        }
        /* Stopped (Ctrl-C, SIGTERM) in the middle of a request: the files stay as they are,
         * and the interrupted request is no error to report, except to a --once caller. */
        if (stopping(&st) && rc == MESHCA_EUNAVAILABLE) {
            if (o->once)
                meshca_fail(errbuf, rc, "%s", err);
            else
                rc = 0;
            break;
        }
        /* With --once, the failure that ends the run is the caller's to print, once. */
        if (o->once && (rc != MESHCA_EUNAVAILABLE || backoff >= AGENT_MAX_BACKOFF_MS)) {
            meshca_fail(errbuf, rc, "%s", err);
            break;
        }
        /* Keep serving the files we have; retry with backoff. */
        /* --once gives up only after the backoff reaches its longest step, about a minute
         * later: said, so that the silence until then does not look like a hang. */
        say(&st, true, "%s%s%s", err, rc == MESHCA_EUNAVAILABLE ? "; keeping the current files" : "",
            o->once && rc == MESHCA_EUNAVAILABLE
                ? " (--once: trying again for about a minute before giving up)"
                : "");
        backoff = !backoff ? 500 : backoff * 2 > AGENT_MAX_BACKOFF_MS ? AGENT_MAX_BACKOFF_MS
                                                                     : backoff * 2;
        sleep_ms(&st, backoff);
        rc = 0;
    }
    /* --once stopped (Ctrl-C, SIGTERM) before it got anywhere is no success for a script. */
    if (o->once && !done && rc == 0)
        rc = meshca_fail(errbuf, MESHCA_EUNAVAILABLE,
                         "stopped before a generation was loaded and acknowledged");
    if (rc < 0 && o->out_created && !st.key && !st.next_sent)
        forget_created_dir(&st);
    EVP_PKEY_free(st.key);
    EVP_PKEY_free(st.next_key);
    return rc;
}
