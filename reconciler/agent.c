/* agent.c - the dataplane side: writes the issued identity to files, reloads, acknowledges. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "manifests/manifest.h"
#include "reconciler/agent.h"
#include "reconciler/pki.h"
#include "reconciler/state.h"

static int fail(int code, char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(int code, char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (errbuf && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static char *xstrdup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

/* A written-but-not-yet-renamed file. */
typedef struct pending_file {
    char tmp[PATH_MAX];
    char final[PATH_MAX];
} pending_file;

/* Writes data to a fresh temp file in dir and fsyncs it. Returns 0 or -1 (errno kept). */
static int write_temp(const char *dir, const char *name, const char *data, mode_t mode,
                      pending_file *pf)
{
    if ((size_t)snprintf(pf->final, sizeof(pf->final), "%s/%s", dir, name) >= sizeof(pf->final) ||
        (size_t)snprintf(pf->tmp, sizeof(pf->tmp), "%s/.%s.XXXXXX", dir, name) >= sizeof(pf->tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = mkstemp(pf->tmp);
    if (fd < 0)
        return -1;
    size_t len = strlen(data), off = 0;
    int err = 0;
    if (fchmod(fd, mode) < 0)
        err = errno;
    while (!err && off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            err = errno;
        else
            off += (size_t)w;
    }
    if (!err && fsync(fd) < 0)
        err = errno;
    if (close(fd) < 0 && !err)
        err = errno;
    if (err) {
        unlink(pf->tmp);
        errno = err;
        return -1;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

static bool file_exists(const char *dir, const char *name)
{
    char path[PATH_MAX];
    struct stat st;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return false;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Bundle first (trusting the new CA is always safe), then key and cert back to back, so the
 * window where key and cert do not match is two renames long. */
static int write_files(const char *out_dir, const identity *id, char *errbuf, size_t errlen)
{
    static const char *const names[3] = {AGENT_BUNDLE_FILE, AGENT_KEY_FILE, AGENT_CERT_FILE};
    const char *data[3] = {id->bundle_pem, id->key_pem, id->cert_pem};
    const mode_t modes[3] = {0644, 0600, 0644};
    pending_file pf[3];
    int n = 0;

    for (; n < 3; n++)
        if (write_temp(out_dir, names[n], data[n], modes[n], &pf[n]) < 0) {
            int err = errno;
            for (int j = 0; j < n; j++)
                unlink(pf[j].tmp);
            return fail(AGENT_EIO, errbuf, errlen, "cannot write %s/%s: %s", out_dir, names[n],
                        strerror(err));
        }
    for (int i = 0; i < 3; i++)
        if (rename(pf[i].tmp, pf[i].final) < 0) {
            int err = errno;
            for (int j = i; j < 3; j++)
                unlink(pf[j].tmp);
            return fail(AGENT_EIO, errbuf, errlen, "cannot rename into %s: %s", pf[i].final,
                        strerror(err));
        }
    if (fsync_dir(out_dir) < 0)
        return fail(AGENT_EIO, errbuf, errlen, "cannot sync %s: %s", out_dir, strerror(errno));
    return 0;
}

/* Runs cmd with /bin/sh -c; returns its exit status, or -1 when it did not exit normally. */
static int run_reload(const char *cmd)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The dataplane's tags from the store, as a model_tag array (caller frees). */
static void load_tags(store *s, const char *mesh_name, const char *dp, model_tag **ret, size_t *ret_n)
{
    store_key key = {STATE_DATAPLANES, mesh_name, dp};
    char *value = NULL;
    size_t len = 0;
    *ret = NULL;
    *ret_n = 0;
    if (store_get(s, &key, &value, &len, NULL) < 0)
        return;
    manifest_set *set = manifest_set_new();
    diag_list ignored = DIAG_LIST_INIT;
    if (set && manifest_load_buffer(set, "store", value, len, &ignored) == 0 &&
        manifest_set_count(set) == 1 && manifest_set_get(set, 0)->kind == RESOURCE_DATAPLANE) {
        const dataplane *d = &manifest_set_get(set, 0)->u.dataplane;
        size_t n = 0;
        for (size_t i = 0; i < d->ninbounds; i++)
            n += d->inbounds[i].ntags;
        model_tag *tags = calloc(n + 1, sizeof(*tags));
        if (!tags)
            abort();
        size_t k = 0;
        for (size_t i = 0; i < d->ninbounds; i++)
            for (size_t t = 0; t < d->inbounds[i].ntags; t++) {
                const model_tag *src = &d->inbounds[i].tags[t];
                bool dup = false;
                for (size_t j = 0; j < k && !dup; j++)
                    dup = strcmp(tags[j].key, src->key) == 0;
                if (dup)   /* one value per key in the status object */
                    continue;
                tags[k].key = xstrdup(src->key);
                tags[k].value = xstrdup(src->value);
                k++;
            }
        *ret = tags;
        *ret_n = k;
    }
    diag_list_free(&ignored);
    manifest_set_free(set);
    free(value);
}

static void fill_status(dataplane_status *st, const identity *id, int64_t now, model_tag *tags,
                        size_t ntags)
{
    char when[32];

    free(st->issued_backend);
    st->issued_backend = xstrdup(id->backend);
    for (size_t i = 0; i < st->nsupported; i++)
        free(st->supported_backends[i]);
    free(st->supported_backends);
    st->supported_backends = calloc(id->nbundle_backends + 1, sizeof(char *));
    if (!st->supported_backends)
        abort();
    for (size_t i = 0; i < id->nbundle_backends; i++)
        st->supported_backends[i] = xstrdup(id->bundle_backends[i]);
    st->nsupported = id->nbundle_backends;
    free(st->certificate_serial);
    st->certificate_serial = xstrdup(id->serial);
    pki_format_time(id->not_after, when, sizeof(when));
    free(st->certificate_expiration_time);
    st->certificate_expiration_time = xstrdup(when);
    free(st->last_certificate_regeneration);
    st->last_certificate_regeneration = xstrdup(id->last_regeneration);
    st->certificate_regenerations = id->regenerations;
    st->generation = id->generation;
    st->acknowledged_generation = id->generation;
    pki_format_time(now, when, sizeof(when));
    free(st->last_seen);
    st->last_seen = xstrdup(when);
    if (tags) {
        for (size_t i = 0; i < st->ntags; i++) {
            free(st->tags[i].key);
            free(st->tags[i].value);
        }
        free(st->tags);
        st->tags = calloc(ntags + 1, sizeof(*st->tags));
        if (!st->tags)
            abort();
        for (size_t i = 0; i < ntags; i++) {
            st->tags[i].key = xstrdup(tags[i].key);
            st->tags[i].value = xstrdup(tags[i].value);
        }
        st->ntags = ntags;
    }
}

static void free_tags(model_tag *tags, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(tags[i].key);
        free(tags[i].value);
    }
    free(tags);
}

/* Records what was loaded, retrying the compare-and-swap. */
static int acknowledge(store *s, const char *mesh_name, const char *dp, const identity *id, int64_t now,
                       char *errbuf, size_t errlen)
{
    model_tag *tags = NULL;
    size_t ntags = 0;
    int rc = STORE_ECONFLICT;

    load_tags(s, mesh_name, dp, &tags, &ntags);
    for (int attempt = 0; attempt < AGENT_STATUS_RETRIES && rc == STORE_ECONFLICT; attempt++) {
        dataplane_status st;
        uint64_t version = 0;
        memset(&st, 0, sizeof(st));
        rc = state_get_status(s, mesh_name, dp, &st, &version);
        if (rc == STORE_ENOTFOUND) {
            memset(&st, 0, sizeof(st));
            st.mesh = xstrdup(mesh_name);
            st.name = xstrdup(dp);
            version = 0;
        } else if (rc < 0) {
            break;
        }
        fill_status(&st, id, now, tags, ntags);
        rc = state_put_status(s, &st, version);
        dataplane_status_clear(&st);
    }
    free_tags(tags, ntags);
    if (rc < 0)
        return fail(AGENT_ESTORE, errbuf, errlen, "cannot record the status of '%s/%s': %s", mesh_name,
                    dp, store_strerror(rc));
    return 0;
}

int agent_sync(store *s, const char *mesh_name, const char *dp, const char *out_dir,
               const char *reload_cmd, int64_t now, bool *ret_changed, char *errbuf, size_t errlen)
{
    if (!s || !mesh_name || !dp || !out_dir)
        return fail(AGENT_EINVAL, errbuf, errlen, "missing argument");
    if (!now)
        now = (int64_t)time(NULL);

    identity id = {0};
    int rc = identity_get(s, mesh_name, dp, &id, NULL);
    if (rc == STORE_ENOTFOUND || rc == STORE_EINVAL)
        return fail(AGENT_ENOTISSUED, errbuf, errlen,
                    "no certificate issued to dataplane '%s/%s' yet", mesh_name, dp);
    if (rc < 0)
        return fail(AGENT_ESTORE, errbuf, errlen, "cannot read the identity of '%s/%s': %s", mesh_name,
                    dp, store_strerror(rc));
    if (!id.key_pem) {
        identity_clear(&id);
        return fail(AGENT_EINVAL, errbuf, errlen,
                    "identity of '%s/%s' has no key (CSR mode is not supported yet)", mesh_name, dp);
    }

    dataplane_status st;
    memset(&st, 0, sizeof(st));
    long long acked = 0;
    rc = state_get_status(s, mesh_name, dp, &st, NULL);
    if (rc == 0)
        acked = st.acknowledged_generation;
    dataplane_status_clear(&st);
    if (rc < 0 && rc != STORE_ENOTFOUND) {
        identity_clear(&id);
        return fail(AGENT_ESTORE, errbuf, errlen, "cannot read the status of '%s/%s': %s", mesh_name,
                    dp, store_strerror(rc));
    }

    bool files = file_exists(out_dir, AGENT_CERT_FILE) && file_exists(out_dir, AGENT_KEY_FILE) &&
                 file_exists(out_dir, AGENT_BUNDLE_FILE);
    if (acked == id.generation && files) {
        identity_clear(&id);
        if (ret_changed)
            *ret_changed = false;
        return 0;
    }

    rc = write_files(out_dir, &id, errbuf, errlen);
    if (rc == 0 && reload_cmd) {
        int status = run_reload(reload_cmd);
        if (status != 0)
            rc = fail(AGENT_ERELOAD, errbuf, errlen,
                      "reload command failed (%s %d); generation %lld not acknowledged",
                      status < 0 ? "did not exit, status" : "exit", status, id.generation);
    }
    if (rc == 0)
        rc = acknowledge(s, mesh_name, dp, &id, now, errbuf, errlen);
    identity_clear(&id);
    if (rc == 0 && ret_changed)
        *ret_changed = true;
    return rc;
}
