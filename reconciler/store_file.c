/* store_file.c - the embedded file://DIR store: one file per object, atomic replace, flock between processes. */
#define _GNU_SOURCE 1
#include "reconciler/store_backend.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/*
 * Layout (also in doc/store.md):
 *
 *   DIR/                       0700
 *   DIR/.lock                  0600, flock()ed: LOCK_SH by readers, LOCK_EX by writers
 *   DIR/revision               store-wide revision counter (an object with an empty value)
 *   DIR/<kind>/<mesh>/         0700
 *   DIR/<kind>/<mesh>/<name>.json   0600, one object
 *   .../.tmp-<pid>-<n>         a write in progress, or a crash leftover (removed at open)
 *
 * For "meshes" and "meshstatus" the mesh is the object: DIR/meshes/<mesh>/<mesh>.json.
 *
 * Object file = header line, then the value bytes exactly as given:
 *   "meshca-store v1 <version> <length>\n" <length bytes>
 * The value is opaque (it need not be JSON), and the length lets a reader reject a file that
 * is not whole instead of returning a cut value.
 *
 * Every file is written to a temp file in the same directory (O_EXCL), fsync'ed, renamed over
 * the old one and the directory fsync'ed, so after a crash each object is old or new, never
 * torn. The revision counter is written before the objects: a crash in between leaves an
 * unused revision, never two different contents with the same version.
 *
 * All files are 0600 and directories 0700 whatever the umask (fchmod), because secrets and
 * identities hold private keys and one rule for everything is simpler to audit.
 */

#define HEADER_MAGIC "meshca-store v1 "
#define HEADER_MAX 64
#define TMP_PREFIX ".tmp-"
#define OBJ_SUFFIX ".json"
#define TMP_TRIES 100

static const char *const file_kinds[] = {
    "meshes", "dataplanes", "secrets", "identities", "dpstatus", "meshstatus",
};

typedef struct file_store {
    int root_fd;
    int lock_fd;
    unsigned tmp_counter;
} file_store;

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *errbuf, size_t errlen, const char *fmt, ...) {
    va_list ap;

    if (!errbuf || errlen == 0)
        return;
    va_start(ap, fmt);
    (void) vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

static int lock_store(file_store *fs, int how) {
    while (flock(fs->lock_fd, how) < 0)
        if (errno != EINTR)
            return STORE_EIO;
    return STORE_OK;
}

static void unlock_store(file_store *fs) {
    (void) flock(fs->lock_fd, LOCK_UN);
}

static void close_fd(int *fd) {
    if (*fd >= 0)
        (void) close(*fd);
    *fd = -1;
}

/* Opens parent/name as a directory, creating it 0700 when asked. */
static int open_dir(int parent, const char *name, int create, int *ret_fd) {
    int fd, created = 0;

    for (;;) {
        fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0)
            break;
        if (errno != ENOENT)
            return STORE_EIO;
        if (!create)
            return STORE_ENOTFOUND;
        if (mkdirat(parent, name, 0700) < 0 && errno != EEXIST)
            return STORE_EIO;
        created = 1;
        create = 0;
    }
    if (created) {
        /* umask may have narrowed or (for a permissive umask) not; fix it either way, and make the entry durable. */
        if (fchmod(fd, 0700) < 0 || fsync(parent) < 0) {
            close(fd);
            return STORE_EIO;
        }
    }
    *ret_fd = fd;
    return STORE_OK;
}

static int mesh_dir(file_store *fs, const char *kind, const char *mesh, int create, int *ret_fd) {
    int kfd = -1, r;

    r = open_dir(fs->root_fd, kind, create, &kfd);
    if (r < 0)
        return r;
    r = open_dir(kfd, mesh, create, ret_fd);
    close(kfd);
    return r;
}

static int object_file_name(const char *name, char *buf, size_t buflen) {
    int n = snprintf(buf, buflen, "%s" OBJ_SUFFIX, name);
    if (n < 0 || (size_t) n >= buflen)
        return STORE_EINVAL;
    return STORE_OK;
}

static int parse_u64(const char *s, char **end, uint64_t *ret) {
    unsigned long long v;

    /* strtoull takes signs and spaces; a header holds plain digits only. */
    if (*s < '0' || *s > '9')
        return STORE_EIO;
    errno = 0;
    v = strtoull(s, end, 10);
    if (errno != 0)
        return STORE_EIO;
    *ret = (uint64_t) v;
    return STORE_OK;
}

static int read_all(int fd, char *buf, size_t len) {
    size_t off = 0;

    while (off < len) {
        ssize_t n = read(fd, buf + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return STORE_EIO;
        off += (size_t) n;
    }
    return STORE_OK;
}

/* Reads dir/fname. Checks the header and that the length matches the file. */
static int read_object(int dfd, const char *fname, char **ret_value, size_t *ret_len, uint64_t *ret_version) {
    struct stat st;
    char *buf = NULL, *nl, *p, *end;
    uint64_t version, len;
    size_t size, hlen;
    int fd, r;

    fd = openat(dfd, fname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? STORE_ENOTFOUND : STORE_EIO;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
        (uint64_t) st.st_size > (uint64_t) STORE_VALUE_MAX + HEADER_MAX) {
        r = STORE_EIO;
        goto out;
    }
    size = (size_t) st.st_size;
    buf = malloc(size + 1);
    if (!buf) {
        r = STORE_ENOMEM;
        goto out;
    }
    r = read_all(fd, buf, size);
    if (r < 0)
        goto out;
    buf[size] = '\0';

    r = STORE_EIO;
    nl = memchr(buf, '\n', size < HEADER_MAX ? size : HEADER_MAX);
    if (!nl || strncmp(buf, HEADER_MAGIC, strlen(HEADER_MAGIC)) != 0)
        goto out;
    p = buf + strlen(HEADER_MAGIC);
    if (parse_u64(p, &end, &version) < 0 || *end != ' ')
        goto out;
    if (parse_u64(end + 1, &end, &len) < 0 || end != nl)
        goto out;
    hlen = (size_t) (nl - buf) + 1;
    if (len != size - hlen)
        goto out;

    /* Shift the value to the front so the caller gets one plain allocation. */
    memmove(buf, buf + hlen, (size_t) len + 1);
    *ret_value = buf;
    buf = NULL;
    if (ret_len)
        *ret_len = (size_t) len;
    if (ret_version)
        *ret_version = version;
    r = STORE_OK;
out:
    free(buf);
    close(fd);
    return r;
}

static int object_version(int dfd, const char *fname, uint64_t *ret_version) {
    char *value = NULL;
    int r = read_object(dfd, fname, &value, NULL, ret_version);
    free(value);
    return r;
}

static int write_all(int fd, const char *buf, size_t len) {
    size_t off = 0;

    while (off < len) {
        ssize_t n = write(fd, buf + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return STORE_EIO;
        off += (size_t) n;
    }
    return STORE_OK;
}

/* Atomically replaces dir/fname. Caller holds LOCK_EX. */
static int write_object(file_store *fs, int dfd, const char *fname, const char *value, size_t len,
                        uint64_t version) {
    char tmp[64], header[HEADER_MAX];
    int fd = -1, n, r = STORE_EIO;

    n = snprintf(header, sizeof(header), HEADER_MAGIC "%" PRIu64 " %zu\n", version, len);
    if (n < 0 || (size_t) n >= sizeof(header))
        return STORE_EIO;

    for (int tries = 0; fd < 0; tries++) {
        int t = snprintf(tmp, sizeof(tmp), TMP_PREFIX "%ld-%u", (long) getpid(), fs->tmp_counter++);
        if (t < 0 || (size_t) t >= sizeof(tmp) || tries >= TMP_TRIES)
            return STORE_EIO;
        /* O_EXCL: never write through a leftover file or a planted symlink. */
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            return STORE_EIO;
    }
    if (fchmod(fd, 0600) < 0)
        goto fail;
    if (write_all(fd, header, (size_t) n) < 0 || write_all(fd, value, len) < 0)
        goto fail;
    if (fsync(fd) < 0)
        goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (renameat(dfd, tmp, dfd, fname) < 0)
        goto fail;
    /* The rename is only durable once the directory is. */
    if (fsync(dfd) < 0)
        return STORE_EIO;
    return STORE_OK;
fail:
    close_fd(&fd);
    (void) unlinkat(dfd, tmp, 0);
    return r;
}

static int read_revision(file_store *fs, uint64_t *ret) {
    uint64_t rev;
    int r = object_version(fs->root_fd, "revision", &rev);

    if (r == STORE_ENOTFOUND) {
        *ret = 0;
        return STORE_OK;
    }
    if (r < 0)
        return r;
    *ret = rev;
    return STORE_OK;
}

/* Removes temp files left by a crash in one directory. Caller holds LOCK_EX, so no write is in flight. */
static void clean_dir(int dfd) {
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct dirent *de;
    DIR *d;

    if (fd < 0)
        return;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    while ((de = readdir(d)))
        if (strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0)
            (void) unlinkat(dfd, de->d_name, 0);
    closedir(d);
}

static void clean_leftovers(file_store *fs) {
    clean_dir(fs->root_fd);
    for (size_t i = 0; i < sizeof(file_kinds) / sizeof(file_kinds[0]); i++) {
        int kfd = -1, fd;
        struct dirent *de;
        DIR *d;

        if (open_dir(fs->root_fd, file_kinds[i], 0, &kfd) < 0)
            continue;
        fd = openat(kfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d) {
            if (fd >= 0)
                close(fd);
            close(kfd);
            continue;
        }
        while ((de = readdir(d))) {
            int mfd = -1;
            if (!store_name_valid(de->d_name))
                continue;
            if (open_dir(kfd, de->d_name, 0, &mfd) < 0)
                continue;
            clean_dir(mfd);
            close(mfd);
        }
        closedir(d);
        close(kfd);
    }
}

int store_file_open(const char *dir, void **ret_impl, char *errbuf, size_t errlen) {
    file_store *fs;
    int created = 0;

    fs = calloc(1, sizeof(*fs));
    if (!fs) {
        set_err(errbuf, errlen, "file store: out of memory");
        return STORE_ENOMEM;
    }
    fs->root_fd = fs->lock_fd = -1;

    if (mkdir(dir, 0700) == 0)
        created = 1;
    else if (errno != EEXIST) {
        set_err(errbuf, errlen, "file store '%s': cannot create directory: %s", dir, strerror(errno));
        goto fail;
    }
    fs->root_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fs->root_fd < 0) {
        set_err(errbuf, errlen, "file store '%s': cannot open directory: %s", dir, strerror(errno));
        goto fail;
    }
    if (created && fchmod(fs->root_fd, 0700) < 0) {
        set_err(errbuf, errlen, "file store '%s': cannot set mode 0700: %s", dir, strerror(errno));
        goto fail;
    }
    fs->lock_fd = openat(fs->root_fd, ".lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fs->lock_fd < 0 || fchmod(fs->lock_fd, 0600) < 0) {
        set_err(errbuf, errlen, "file store '%s': cannot open lock file: %s", dir, strerror(errno));
        goto fail;
    }
    if (lock_store(fs, LOCK_EX) < 0) {
        set_err(errbuf, errlen, "file store '%s': cannot lock: %s", dir, strerror(errno));
        goto fail;
    }
    clean_leftovers(fs);
    unlock_store(fs);

    *ret_impl = fs;
    return STORE_OK;
fail:
    close_fd(&fs->lock_fd);
    close_fd(&fs->root_fd);
    free(fs);
    return STORE_EIO;
}

static void file_close(void *impl) {
    file_store *fs = impl;

    if (!fs)
        return;
    close_fd(&fs->lock_fd);
    close_fd(&fs->root_fd);
    free(fs);
}

static int file_get(void *impl, const store_key *key, char **ret_value, size_t *ret_len, uint64_t *ret_version) {
    file_store *fs = impl;
    char fname[STORE_NAME_MAX + sizeof(OBJ_SUFFIX)];
    int dfd = -1, r;

    r = object_file_name(key->name, fname, sizeof(fname));
    if (r < 0)
        return r;
    r = lock_store(fs, LOCK_SH);
    if (r < 0)
        return r;
    r = mesh_dir(fs, key->kind, key->mesh, 0, &dfd);
    if (r == STORE_OK) {
        r = read_object(dfd, fname, ret_value, ret_len, ret_version);
        close(dfd);
    }
    unlock_store(fs);
    return r;
}

/* Current version of an object, 0 when absent. Caller holds the lock. */
static int current_version(file_store *fs, const store_key *key, uint64_t *ret) {
    char fname[STORE_NAME_MAX + sizeof(OBJ_SUFFIX)];
    int dfd = -1, r;

    r = object_file_name(key->name, fname, sizeof(fname));
    if (r < 0)
        return r;
    r = mesh_dir(fs, key->kind, key->mesh, 0, &dfd);
    if (r == STORE_ENOTFOUND) {
        *ret = 0;
        return STORE_OK;
    }
    if (r < 0)
        return r;
    r = object_version(dfd, fname, ret);
    close(dfd);
    if (r == STORE_ENOTFOUND) {
        *ret = 0;
        return STORE_OK;
    }
    return r;
}

static int check_op(file_store *fs, const store_op *op, uint64_t *max_version) {
    uint64_t cur;
    int r = current_version(fs, &op->key, &cur);

    if (r < 0)
        return r;
    if (cur > *max_version)
        *max_version = cur;
    if (op->type == STORE_OP_DELETE) {
        if (cur == 0)
            return STORE_ENOTFOUND;
        if (op->expected_version != STORE_ANY_VERSION && op->expected_version != cur)
            return STORE_ECONFLICT;
        return STORE_OK;
    }
    if (op->expected_version != STORE_ANY_VERSION && op->expected_version != cur)
        return STORE_ECONFLICT;
    return STORE_OK;
}

static int apply_op(file_store *fs, const store_op *op, uint64_t version) {
    char fname[STORE_NAME_MAX + sizeof(OBJ_SUFFIX)];
    int dfd = -1, r;

    r = object_file_name(op->key.name, fname, sizeof(fname));
    if (r < 0)
        return r;
    r = mesh_dir(fs, op->key.kind, op->key.mesh, op->type == STORE_OP_PUT, &dfd);
    if (r < 0)
        return r == STORE_ENOTFOUND ? STORE_EIO : r;
    if (op->type == STORE_OP_PUT)
        r = write_object(fs, dfd, fname, op->value, op->len, version);
    else if (unlinkat(dfd, fname, 0) < 0 || fsync(dfd) < 0)
        r = STORE_EIO;
    close(dfd);
    return r;
}

/* Checks every op, then bumps the revision, then writes: see the layout comment for why in this order. */
static int txn_locked(file_store *fs, const store_op *ops, size_t nops, uint64_t *ret_version) {
    uint64_t rev, max_version = 0;
    int r;

    for (size_t i = 0; i < nops; i++) {
        r = check_op(fs, &ops[i], &max_version);
        if (r < 0)
            return r;
    }
    r = read_revision(fs, &rev);
    if (r < 0)
        return r;
    /* A lost or restored revision file must not make a version go backwards. */
    if (max_version > rev)
        rev = max_version;
    if (rev >= STORE_ANY_VERSION - 1)
        return STORE_EIO;
    rev++;
    r = write_object(fs, fs->root_fd, "revision", "", 0, rev);
    if (r < 0)
        return r;
    for (size_t i = 0; i < nops; i++) {
        r = apply_op(fs, &ops[i], rev);
        if (r < 0)
            return r;
    }
    if (ret_version)
        *ret_version = rev;
    return STORE_OK;
}

static int file_txn(void *impl, const store_op *ops, size_t nops) {
    file_store *fs = impl;
    int r = lock_store(fs, LOCK_EX);

    if (r < 0)
        return r;
    r = txn_locked(fs, ops, nops, NULL);
    unlock_store(fs);
    return r;
}

static int file_put(void *impl, const store_key *key, const char *value, size_t len, uint64_t expected_version,
                    uint64_t *ret_version) {
    file_store *fs = impl;
    store_op op = { .type = STORE_OP_PUT, .key = *key, .value = value, .len = len,
                    .expected_version = expected_version };
    int r = lock_store(fs, LOCK_EX);

    if (r < 0)
        return r;
    r = txn_locked(fs, &op, 1, ret_version);
    unlock_store(fs);
    return r;
}

static int file_del(void *impl, const store_key *key, uint64_t expected_version) {
    store_op op = { .type = STORE_OP_DELETE, .key = *key, .expected_version = expected_version };

    return file_txn(impl, &op, 1);
}

static int file_revision(void *impl, uint64_t *ret) {
    file_store *fs = impl;
    uint64_t rev;
    int r = lock_store(fs, LOCK_SH);

    if (r < 0)
        return r;
    r = read_revision(fs, &rev);
    unlock_store(fs);
    if (r < 0)
        return r;
    *ret = rev;
    return STORE_OK;
}

typedef struct entry_vec {
    store_entry *v;
    size_t n, cap;
} entry_vec;

static int vec_push(entry_vec *ev, const char *kind, const char *mesh, const char *name, char *value, size_t len,
                    uint64_t version) {
    store_entry *e;

    if (ev->n == ev->cap) {
        size_t cap = ev->cap ? ev->cap * 2 : 16;
        store_entry *nv = realloc(ev->v, cap * sizeof(*nv));
        if (!nv)
            return STORE_ENOMEM;
        ev->v = nv;
        ev->cap = cap;
    }
    e = &ev->v[ev->n];
    e->kind = strdup(kind);
    e->mesh = strdup(mesh);
    e->name = strdup(name);
    if (!e->kind || !e->mesh || !e->name) {
        free(e->kind);
        free(e->mesh);
        free(e->name);
        return STORE_ENOMEM;
    }
    e->value = value;
    e->len = len;
    e->version = version;
    ev->n++;
    return STORE_OK;
}

/* Opens a directory stream on a copy of dfd, so the caller keeps its own descriptor. */
static DIR *dir_stream(int dfd) {
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;

    if (fd < 0)
        return NULL;
    d = fdopendir(fd);
    if (!d)
        close(fd);
    return d;
}

static int list_mesh(int kfd, const char *kind, const char *mesh, entry_vec *ev) {
    char stem[STORE_NAME_MAX + 1];
    struct dirent *de;
    int mfd = -1, r = STORE_OK;
    DIR *d;

    r = open_dir(kfd, mesh, 0, &mfd);
    if (r == STORE_ENOTFOUND)
        return STORE_OK;
    if (r < 0)
        return r;
    d = dir_stream(mfd);
    if (!d) {
        close(mfd);
        return STORE_EIO;
    }
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name), sl = strlen(OBJ_SUFFIX);
        char *value = NULL;
        uint64_t version;
        size_t len;

        /* Temp files, dotfiles and anything else that is not "<valid name>.json" are not objects. */
        if (n <= sl || n - sl > STORE_NAME_MAX || strcmp(de->d_name + n - sl, OBJ_SUFFIX) != 0)
            continue;
        memcpy(stem, de->d_name, n - sl);
        stem[n - sl] = '\0';
        if (!store_name_valid(stem))
            continue;
        r = read_object(mfd, de->d_name, &value, &len, &version);
        if (r == STORE_ENOTFOUND) {
            r = STORE_OK;
            continue;
        }
        if (r < 0)
            break;
        r = vec_push(ev, kind, mesh, stem, value, len, version);
        if (r < 0) {
            free(value);
            break;
        }
    }
    closedir(d);
    close(mfd);
    return r;
}

static int entry_cmp(const void *a, const void *b) {
    const store_entry *x = a, *y = b;
    int c = strcmp(x->mesh, y->mesh);

    return c ? c : strcmp(x->name, y->name);
}

static int file_list(void *impl, const char *kind, const char *mesh, store_entry **ret_entries, size_t *ret_count) {
    file_store *fs = impl;
    entry_vec ev = { 0 };
    int kfd = -1, r;

    r = lock_store(fs, LOCK_SH);
    if (r < 0)
        return r;
    r = open_dir(fs->root_fd, kind, 0, &kfd);
    if (r == STORE_ENOTFOUND) {
        r = STORE_OK;
        goto out;
    }
    if (r < 0)
        goto out;
    if (mesh) {
        r = list_mesh(kfd, kind, mesh, &ev);
    } else {
        struct dirent *de;
        DIR *d = dir_stream(kfd);

        if (!d) {
            r = STORE_EIO;
            goto out;
        }
        while ((de = readdir(d))) {
            if (!store_name_valid(de->d_name))
                continue;
            r = list_mesh(kfd, kind, de->d_name, &ev);
            if (r < 0)
                break;
        }
        closedir(d);
    }
out:
    if (kfd >= 0)
        close(kfd);
    unlock_store(fs);
    if (r < 0) {
        store_entries_free(ev.v, ev.n);
        return r;
    }
    if (ev.n > 1)
        qsort(ev.v, ev.n, sizeof(*ev.v), entry_cmp);
    if (ev.n == 0) {
        free(ev.v);
        ev.v = NULL;
    }
    *ret_entries = ev.v;
    *ret_count = ev.n;
    return STORE_OK;
}

const struct store_ops store_file_ops = {
    .name = "file",
    .get = file_get,
    .put = file_put,
    .del = file_del,
    .list = file_list,
    .txn = file_txn,
    .revision = file_revision,
    .close = file_close,
};
