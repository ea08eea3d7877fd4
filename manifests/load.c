/* load.c - the manifest set, and loading it from files, directories, standard input and memory. */
#include "manifests/manifest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Directory symlink loops must end somewhere. */
#define LOAD_MAX_DIR_DEPTH 32

struct manifest_set {
    resource *items;
    size_t count, capacity;
    char **names;        /* interned file names; marks borrow them */
    size_t *hashes;      /* name_hash of each name: compared before the names, kept for growth */
    size_t nnames, cnames;
    /* Open addressing over names (index + 1, 0 empty), 2x the count at most: a store load
     * interns one name per object (store:<kind>/<mesh>/<name>), so a scan would be O(n^2). */
    size_t *slots;
    size_t nslots;
};

manifest_set *manifest_set_new(void)
{
    return calloc(1, sizeof(manifest_set));
}

void manifest_set_free(manifest_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->count; i++)
        resource_clear(&set->items[i]);
    free(set->items);
    for (size_t i = 0; i < set->nnames; i++)
        free(set->names[i]);
    free(set->names);
    free(set->hashes);
    free(set->slots);
    free(set);
}

/* FNV-1a: names are short; any spread will do. */
static size_t name_hash(const char *name)
{
    size_t h = (size_t)14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * (size_t)1099511628211ULL;
    return h;
}

/* Grows the table to hold one more name at most half full. False when out of memory. */
static bool slots_reserve(manifest_set *set)
{
    if ((set->nnames + 1) * 2 <= set->nslots)
        return true;
    size_t n = set->nslots ? set->nslots * 2 : 64;
    size_t *slots = calloc(n, sizeof(*slots));
    if (!slots)
        return false;
    for (size_t i = 0; i < set->nnames; i++) {
        size_t j = set->hashes[i] & (n - 1);
        while (slots[j])
            j = (j + 1) & (n - 1);
        slots[j] = i + 1;
    }
    free(set->slots);
    set->slots = slots;
    set->nslots = n;
    return true;
}

const char *manifest_set_intern(manifest_set *set, const char *name)
{
    if (!slots_reserve(set))
        return NULL;
    size_t h = name_hash(name), j = h & (set->nslots - 1);
    /* Store names share long prefixes ("store:dataplanes/default/..."): the hash tells most
     * apart without a strcmp. */
    for (; set->slots[j]; j = (j + 1) & (set->nslots - 1))
        if (set->hashes[set->slots[j] - 1] == h && !strcmp(set->names[set->slots[j] - 1], name))
            return set->names[set->slots[j] - 1];
    if (set->nnames == set->cnames) {
        size_t n = set->cnames ? set->cnames * 2 : 8;
        char **names = realloc(set->names, n * sizeof(*names));
        if (!names)
            return NULL;
        set->names = names;
        size_t *hashes = realloc(set->hashes, n * sizeof(*hashes));
        if (!hashes)
            return NULL;
        set->hashes = hashes;
        set->cnames = n;
    }
    char *copy = strdup(name);
    if (!copy)
        return NULL;
    set->hashes[set->nnames] = h;
    set->names[set->nnames++] = copy;
    set->slots[j] = set->nnames;
    return copy;
}

int manifest_set_add(manifest_set *set, resource *res)
{
    if (set->count == set->capacity) {
        size_t n = set->capacity ? set->capacity * 2 : 16;
        resource *items = realloc(set->items, n * sizeof(*items));
        if (!items) {
            resource_clear(res);
            return MANIFEST_ENOMEM;
        }
        set->items = items;
        set->capacity = n;
    }
    set->items[set->count++] = *res;
    memset(res, 0, sizeof(*res));
    return 0;
}

size_t manifest_set_count(const manifest_set *set)
{
    return set ? set->count : 0;
}

const resource *manifest_set_get(const manifest_set *set, size_t index)
{
    if (!set || index >= set->count)
        return NULL;
    return &set->items[index];
}

const mesh *manifest_set_find_mesh(const manifest_set *set, const char *name)
{
    if (!set || !name)
        return NULL;
    for (size_t i = 0; i < set->count; i++)
        if (set->items[i].kind == RESOURCE_MESH && set->items[i].u.mesh.name.value &&
            !strcmp(set->items[i].u.mesh.name.value, name))
            return &set->items[i].u.mesh;
    return NULL;
}

int manifest_set_dataplanes_of(const manifest_set *set, const char *mesh_name,
                               const dataplane ***ret, size_t *ret_n)
{
    const dataplane **list = calloc(manifest_set_count(set) + 1, sizeof(*list));
    size_t n = 0;
    if (!list)
        return MESHCA_ENOMEM;
    for (size_t i = 0; i < manifest_set_count(set) && mesh_name; i++) {
        const resource *res = &set->items[i];
        if (res->kind == RESOURCE_DATAPLANE && res->u.dataplane.mesh.value &&
            strcmp(res->u.dataplane.mesh.value, mesh_name) == 0)
            list[n++] = &res->u.dataplane;
    }
    *ret = list;
    *ret_n = n;
    return 0;
}

static int load_buffer(manifest_set *set, const char *name, const char *data, size_t len,
                       diag_list *diags)
{
    const char *file = manifest_set_intern(set, name);
    mnode **docs = NULL;
    size_t ndocs = 0;
    if (!file)
        return MANIFEST_ENOMEM;
    int r = manifest_parse_documents(file, data, len, &docs, &ndocs, diags);
    if (r < 0)
        return r;
    for (size_t i = 0; i < ndocs; i++) {
        /* An empty document (a stray `---`) is not a resource and not a mistake. */
        if (r == 0 && docs[i]->kind == MNODE_SEQ) {
            /* One JSON array of resources, as `meshca get -o json` prints: each item is one. */
            for (size_t j = 0; r == 0 && j < docs[i]->nitems; j++) {
                resource res;
                if (manifest_build_resource(docs[i]->items[j], (unsigned)i, &res, diags) == 0)
                    r = manifest_set_add(set, &res);
            }
        } else if (r == 0 && !mnode_is_null(docs[i])) {
            resource res;
            if (manifest_build_resource(docs[i], (unsigned)i, &res, diags) == 0)
                r = manifest_set_add(set, &res);
        }
        mnode_free(docs[i]);
    }
    free(docs);
    return r;
}

/* Out of memory anywhere below marks the diagnostics too, so that every command that prints
 * them learns the load is incomplete (and exits 2) even where no diagnostic was added. */
static int mark_oom(int r, diag_list *diags)
{
    if (r == MANIFEST_ENOMEM)
        diags->out_of_memory = true;
    return r;
}

int manifest_load_buffer(manifest_set *set, const char *name, const char *data, size_t len,
                         diag_list *diags)
{
    return mark_oom(load_buffer(set, name, data, len, diags), diags);
}

/* Marks borrow the set's copy of the path; without one (out of memory) the diagnostic has no file
 * but the message still names the path. */
static int unreadable(manifest_set *set, const char *path, diag_list *diags, int err)
{
    source_mark m = {manifest_set_intern(set, path), 0, 0};
    diag_error(diags, "unreadable", &m, "", "cannot read '%s': %s", path, strerror(err));
    return MANIFEST_EIO;
}

static const char *file_type_name(mode_t mode)
{
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISDIR(mode))
        return "a directory";
    return "not a regular file";
}

int manifest_open_regular(const char *path, struct stat *ret_st, char *errbuf)
{
    /* O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever. Reads of a regular
     * file never block, so the flag changes nothing for what is accepted. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return meshca_fail(errbuf, e == ENOENT ? MESHCA_ENOTFOUND : MESHCA_EIO, "%s", strerror(e));
    }
    if (fstat(fd, ret_st) < 0) {
        int e = errno;
        close(fd);
        return meshca_fail(errbuf, MESHCA_EIO, "%s", strerror(e));
    }
    if (!S_ISREG(ret_st->st_mode)) {
        close(fd);
        return meshca_fail(errbuf, MESHCA_EIO, "%s, not a regular file", file_type_name(ret_st->st_mode));
    }
    return fd;
}

static void too_large(manifest_set *set, const char *path, diag_list *diags, unsigned long long size)
{
    source_mark m = {manifest_set_intern(set, path), 0, 0};
    diag_error(diags, "too-large", &m, "", "file of %llu bytes is larger than the limit of %u bytes", size,
               MANIFEST_MAX_FILE_BYTES);
}

/* Reads at most the limit plus one byte, so an endless stream is cut without being stored. */
static int read_fd(int fd, char **ret_buf, size_t *ret_len, bool *ret_too_large)
{
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return MANIFEST_ENOMEM;
    *ret_too_large = false;
    for (;;) {
        if (len == cap) {
            if (cap > MANIFEST_MAX_FILE_BYTES) {
                *ret_too_large = true;
                break;
            }
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                return MANIFEST_ENOMEM;
            }
            buf = nb;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            errno = e;
            return MANIFEST_EIO;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > MANIFEST_MAX_FILE_BYTES) {
            *ret_too_large = true;
            break;
        }
    }
    *ret_buf = buf;
    *ret_len = len;
    return 0;
}

static int load_fd(manifest_set *set, const char *path, int fd, diag_list *diags)
{
    char *buf = NULL;
    size_t len = 0;
    bool big = false;
    int r = read_fd(fd, &buf, &len, &big);
    if (r == MANIFEST_EIO)
        return unreadable(set, path, diags, errno);
    if (r < 0)
        return r;
    if (big)
        too_large(set, path, diags, (unsigned long long)len);
    else
        r = manifest_load_buffer(set, path, buf, len, diags);
    free(buf);
    return r;
}

static int load_file(manifest_set *set, const char *path, diag_list *diags)
{
    struct stat st;
    char err[MESHCA_ERRBUF];
    int fd = manifest_open_regular(path, &st, err);
    if (fd < 0) {
        source_mark m = {manifest_set_intern(set, path), 0, 0};
        diag_error(diags, "unreadable", &m, "", "cannot read '%s': %s", path, err);
        return MANIFEST_EIO;
    }
    /* Refuse by size before reading, so a huge file costs nothing. */
    if ((unsigned long long)st.st_size > MANIFEST_MAX_FILE_BYTES) {
        close(fd);
        too_large(set, path, diags, (unsigned long long)st.st_size);
        return MANIFEST_OK;
    }
    int r = load_fd(set, path, fd, diags);
    close(fd);
    return r;
}

static bool has_yaml_suffix(const char *name)
{
    size_t n = strlen(name);
    return (n > 5 && !strcmp(name + n - 5, ".yaml")) || (n > 4 && !strcmp(name + n - 4, ".yml"));
}

typedef struct path_list {
    char **items;
    size_t count, capacity;
} path_list;

static int path_list_add(path_list *l, char *p)
{
    if (l->count == l->capacity) {
        size_t n = l->capacity ? l->capacity * 2 : 16;
        char **items = realloc(l->items, n * sizeof(*items));
        if (!items) {
            free(p);
            return MANIFEST_ENOMEM;
        }
        l->items = items;
        l->capacity = n;
    }
    l->items[l->count++] = p;
    return 0;
}

/* Directories already walked, by device and inode, sorted: a symlink back to an ancestor (or two
 * symlinks to the same directory) would otherwise walk the tree again for every path to it,
 * exponentially many. */
typedef struct dir_set {
    struct dir_id {
        dev_t dev;
        ino_t ino;
    } *items;
    size_t count, capacity;
} dir_set;

static int dir_id_cmp(const struct dir_id *a, dev_t dev, ino_t ino)
{
    if (a->dev != dev)
        return a->dev < dev ? -1 : 1;
    if (a->ino != ino)
        return a->ino < ino ? -1 : 1;
    return 0;
}

/* Returns 1 when added, 0 when already present, MANIFEST_ENOMEM. */
static int dir_set_add(dir_set *set, dev_t dev, ino_t ino)
{
    size_t lo = 0, hi = set->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = dir_id_cmp(&set->items[mid], dev, ino);
        if (c == 0)
            return 0;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (set->count == set->capacity) {
        size_t n = set->capacity ? set->capacity * 2 : 16;
        struct dir_id *items = realloc(set->items, n * sizeof(*items));
        if (!items)
            return MANIFEST_ENOMEM;
        set->items = items;
        set->capacity = n;
    }
    memmove(&set->items[lo + 1], &set->items[lo], (set->count - lo) * sizeof(*set->items));
    set->items[lo] = (struct dir_id){dev, ino};
    set->count++;
    return 1;
}

static int collect(manifest_set *set, const char *dir, unsigned depth, dir_set *seen, path_list *out,
                   diag_list *diags)
{
    if (depth > LOAD_MAX_DIR_DEPTH)
        return unreadable(set, dir, diags, ELOOP);
    DIR *d = opendir(dir);
    if (!d)
        return unreadable(set, dir, diags, errno);
    int ret = MANIFEST_OK;
    struct stat dst;
    if (fstat(dirfd(d), &dst) < 0) {
        ret = unreadable(set, dir, diags, errno);
        closedir(d);
        return ret;
    }
    int added = dir_set_add(seen, dst.st_dev, dst.st_ino);
    if (added <= 0) {
        closedir(d);
        return added;   /* 0: walked already, through another path */
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        size_t n = strlen(dir) + 1 + strlen(e->d_name) + 1;
        char *p = malloc(n);
        if (!p) {
            ret = MANIFEST_ENOMEM;
            break;
        }
        int w = snprintf(p, n, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", e->d_name);
        if (w < 0 || (size_t)w >= n) {
            free(p);
            continue;
        }
        struct stat st;
        if (stat(p, &st) < 0) {
            /* A dangling symlink that does not look like a manifest is nothing to report. */
            if (has_yaml_suffix(e->d_name))
                ret = unreadable(set, p, diags, errno);
            free(p);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            int r = collect(set, p, depth + 1, seen, out, diags);
            if (r < 0)
                ret = r;
            free(p);
            if (r == MANIFEST_ENOMEM)
                break;
        } else if (has_yaml_suffix(e->d_name)) {
            /* Named like a manifest: a FIFO or device here is refused when opened, by name. */
            if (path_list_add(out, p) < 0) {
                ret = MANIFEST_ENOMEM;
                break;
            }
        } else {
            free(p);
        }
    }
    closedir(d);
    return ret;
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_path(manifest_set *set, const char *path, diag_list *diags)
{
    if (!strcmp(path, "-"))
        return load_fd(set, "-", STDIN_FILENO, diags);
    struct stat st;
    if (stat(path, &st) < 0)
        return unreadable(set, path, diags, errno);
    if (!S_ISDIR(st.st_mode))
        return load_file(set, path, diags);

    path_list files = {0};
    dir_set seen = {0};
    int ret = collect(set, path, 0, &seen, &files, diags);
    free(seen.items);
    /* qsort(NULL, 0, ...) is undefined behaviour: an empty directory has no list at all. */
    if (files.count)
        qsort(files.items, files.count, sizeof(*files.items), cmp_path);
    for (size_t i = 0; i < files.count; i++) {
        int r = ret == MANIFEST_ENOMEM ? ret : load_file(set, files.items[i], diags);
        if (r < 0)
            ret = r;
        free(files.items[i]);
    }
    free(files.items);
    return ret;
}

int manifest_load_path(manifest_set *set, const char *path, diag_list *diags)
{
    return mark_oom(load_path(set, path, diags), diags);
}
