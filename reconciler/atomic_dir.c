/* atomic_dir.c - a directory whose files change together (Kubernetes' atomic-writer layout). */
#define _GNU_SOURCE 1
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "reconciler/atomic_dir.h"

#define DATA_TMP "..data_tmp"   /* a symlink being put in place by rename */
/* "..YYYY_MM_DD_HH_MM_SS." then mkdtemp's six characters */
#define GEN_PREFIX_LEN 22
#define GEN_NAME_LEN (GEN_PREFIX_LEN + 6)

/* A generation directory's name, as this module makes them (so a sweep removes only ours). */
static bool is_generation_name(const char *name)
{
    static const char shape[] = "..DDDD_DD_DD_DD_DD_DD.";
    if (strlen(name) != GEN_NAME_LEN)
        return false;
    for (size_t i = 0; i < GEN_PREFIX_LEN; i++) {
        if (shape[i] == 'D' ? (name[i] < '0' || name[i] > '9') : name[i] != shape[i])
            return false;
    }
    return true;
}

static bool valid_file_name(const char *name)
{
    return name && name[0] && name[0] != '.' && !strchr(name, '/') && strlen(name) < NAME_MAX;
}

int atomic_dir_prepare(const char *dir, bool *ret_created, char *warnbuf, char *errbuf)
{
    struct stat st;
    if (warnbuf)
        warnbuf[0] = '\0';
    if (ret_created)
        *ret_created = false;
    if (!dir || !dir[0])
        return meshca_fail(errbuf, MESHCA_EINVAL, "no output directory given");
    if (lstat(dir, &st) < 0) {
        if (errno != ENOENT)
            return meshca_fail(errbuf, MESHCA_EIO, "cannot inspect %s: %s", dir, strerror(errno));
        if (mkdir(dir, 0700) < 0) {
            if (errno == ENOENT)
                return meshca_fail(errbuf, MESHCA_EIO,
                                   "cannot create %s: its parent directory does not exist", dir);
            return meshca_fail(errbuf, MESHCA_EIO, "cannot create %s: %s", dir, strerror(errno));
        }
        /* mkdir's mode passes through the umask; the key's directory is 0700 whatever it is. */
        if (chmod(dir, 0700) < 0)
            return meshca_fail(errbuf, MESHCA_EIO, "cannot chmod 700 %s: %s", dir, strerror(errno));
        if (ret_created)
            *ret_created = true;
        return 0;
    }
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(dir, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        return meshca_fail(errbuf, MESHCA_EINVAL,
                           "%s is a symbolic link (to '%s'), refused: give the real directory", dir,
                           target);
    }
    if (!S_ISDIR(st.st_mode))
        return meshca_fail(errbuf, MESHCA_EINVAL, "%s exists and is not a directory", dir);
    if (access(dir, W_OK | X_OK) < 0)
        return meshca_fail(errbuf, MESHCA_EIO, "cannot write into %s: %s", dir, strerror(errno));
    /* Warn only: the key file itself is 0600, and the operator may share the directory with the
     * proxy's group on purpose. */
    if (st.st_uid != geteuid())
        meshca_fail(warnbuf, 0, "%s is owned by uid %u, not by this agent (uid %u)", dir,
                    (unsigned)st.st_uid, (unsigned)geteuid());
    else if (st.st_mode & 077)
        meshca_fail(warnbuf, 0,
                    "%s is open to group or others (mode %04o); it holds a private key: chmod 700 it",
                    dir, (unsigned)(st.st_mode & 07777));
    return 0;
}

/* Writes one file of a generation: exclusive create, full write, fsync. 0 or -1 (errno). */
static int write_file(int gen_fd, const atomic_dir_file *f)
{
    int fd = openat(gen_fd, f->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, f->mode);
    if (fd < 0)
        return -1;
    int err = 0;
    if (fchmod(fd, f->mode) < 0)   /* the umask must not loosen or tighten what was asked */
        err = errno;
    for (size_t off = 0; !err && off < f->len;) {
        ssize_t w = write(fd, f->data + off, f->len - off);
        if (w < 0 && errno != EINTR)
            err = errno;
        else if (w > 0)
            off += (size_t)w;
    }
    if (!err && fsync(fd) < 0)
        err = errno;
    if (close(fd) < 0 && !err)
        err = errno;
    errno = err;
    return err ? -1 : 0;
}

/* Removes a generation directory and the plain files in it (all it ever holds). */
static void remove_generation(int dir_fd, const char *name)
{
    int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        DIR *d = fdopendir(fd);
        if (!d) {
            close(fd);
        } else {
            struct dirent *e;
            while ((e = readdir(d)))
                if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                    unlinkat(fd, e->d_name, 0);
            closedir(d);
        }
    }
    unlinkat(dir_fd, name, AT_REMOVEDIR);
}

/* Removes every generation but `keep`: the previous one, and any a crash left half-written.
 * Best effort: a leftover is retried on the next write and never becomes current. */
static void sweep_generations(int dir_fd, const char *keep)
{
    int fd = dup(dir_fd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    char names[16][GEN_NAME_LEN + 1];
    size_t n = 0;
    struct dirent *e;
    /* Collect first: removing entries while readdir walks them may skip some. */
    while ((e = readdir(d)) && n < 16)
        if (is_generation_name(e->d_name) && strcmp(e->d_name, keep) != 0)
            memcpy(names[n++], e->d_name, GEN_NAME_LEN + 1);
    closedir(d);
    for (size_t i = 0; i < n; i++)
        remove_generation(dir_fd, names[i]);
}

/* Points `name` at `target` with one rename of a fresh symlink, so it never dangles or vanishes. */
static int swap_symlink(int dir_fd, const char *target, const char *name)
{
    if (unlinkat(dir_fd, DATA_TMP, 0) < 0 && errno != ENOENT)
        return -1;
    if (symlinkat(target, dir_fd, DATA_TMP) < 0)
        return -1;
    if (renameat(dir_fd, DATA_TMP, dir_fd, name) < 0) {
        int err = errno;
        unlinkat(dir_fd, DATA_TMP, 0);
        errno = err;
        return -1;
    }
    return 0;
}

/* Whether `name` already is the stable symlink ..data/name. */
static bool is_stable_link(int dir_fd, const char *name)
{
    char want[NAME_MAX + sizeof(ATOMIC_DIR_DATA) + 2], got[sizeof(want)];
    snprintf(want, sizeof(want), ATOMIC_DIR_DATA "/%s", name);
    ssize_t n = readlinkat(dir_fd, name, got, sizeof(got) - 1);
    if (n < 0)
        return false;
    got[n] = '\0';
    return strcmp(got, want) == 0;
}

int atomic_dir_write(const char *dir, const atomic_dir_file *files, size_t n, int64_t now,
                     char *errbuf)
{
    if (!dir || !files || n == 0 || n > ATOMIC_DIR_MAX_FILES)
        return meshca_fail(errbuf, MESHCA_EINVAL, "atomic_dir_write: no files, or too many");
    for (size_t i = 0; i < n; i++)
        if (!valid_file_name(files[i].name) || (!files[i].data && files[i].len))
            return meshca_fail(errbuf, MESHCA_EINVAL, "atomic_dir_write: bad file name '%s'",
                               files[i].name ? files[i].name : "(null)");

    int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir_fd < 0)
        return meshca_fail(errbuf, MESHCA_EIO, "cannot open %s: %s", dir, strerror(errno));
    /* Two writers on one directory (two agents given the same --out) would share ..data_tmp
     * and sweep each other's generations: one at a time. Released by close(). */
    while (flock(dir_fd, LOCK_EX) < 0)
        if (errno != EINTR) {
            int err = errno;
            close(dir_fd);
            return meshca_fail(errbuf, MESHCA_EIO, "cannot lock %s: %s", dir, strerror(err));
        }

    /* 1. A fresh generation directory, named after the time so an operator can read its age. */
    char gen[PATH_MAX], stamp[GEN_PREFIX_LEN + 1];
    time_t t = (time_t)(now ? now : time(NULL));
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof(stamp), "..%Y_%m_%d_%H_%M_%S.", &tm);
    if ((size_t)snprintf(gen, sizeof(gen), "%s/%sXXXXXX", dir, stamp) >= sizeof(gen)) {
        close(dir_fd);
        return meshca_fail(errbuf, MESHCA_EIO, "cannot write into %s: path too long", dir);
    }
    if (!mkdtemp(gen)) {
        int err = errno;
        close(dir_fd);
        return meshca_fail(errbuf, MESHCA_EIO, "cannot create a directory in %s: %s", dir,
                           strerror(err));
    }
    const char *gen_name = strrchr(gen, '/') + 1;
    int rc = 0;
    int gen_fd = open(gen, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    /* 0755 as Kubernetes: what guards the key is its own mode 0600 and DIR's 0700; a proxy
     * worker in DIR's group may still need the certificate. */
    if (gen_fd < 0 || fchmod(gen_fd, 0755) < 0) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "cannot open %s: %s", gen, strerror(errno));
        goto out;
    }

    /* 2. Every file, fsynced, then the directory entry naming them. */
    for (size_t i = 0; i < n; i++)
        if (write_file(gen_fd, &files[i]) < 0) {
            rc = meshca_fail(errbuf, MESHCA_EIO, "cannot write %s/%s: %s", gen, files[i].name,
                             strerror(errno));
            goto out;
        }
    if (fsync(gen_fd) < 0) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "cannot sync %s: %s", gen, strerror(errno));
        goto out;
    }

    /* 3. The one step that makes the generation current. */
    if (swap_symlink(dir_fd, gen_name, ATOMIC_DIR_DATA) < 0) {
        rc = meshca_fail(errbuf, MESHCA_EIO, "cannot point %s/" ATOMIC_DIR_DATA " at %s: %s", dir,
                         gen_name, strerror(errno));
        goto out;
    }

    /* 4. Stable names, made once (or replacing the plain files an earlier agent wrote). */
    for (size_t i = 0; i < n; i++) {
        if (is_stable_link(dir_fd, files[i].name))
            continue;
        char target[NAME_MAX + sizeof(ATOMIC_DIR_DATA) + 2];
        snprintf(target, sizeof(target), ATOMIC_DIR_DATA "/%s", files[i].name);
        if (swap_symlink(dir_fd, target, files[i].name) < 0) {
            rc = meshca_fail(errbuf, MESHCA_EIO, "cannot link %s/%s: %s", dir, files[i].name,
                             strerror(errno));
            break;
        }
    }
    if (rc == 0 && fsync(dir_fd) < 0)
        rc = meshca_fail(errbuf, MESHCA_EIO, "cannot sync %s: %s", dir, strerror(errno));

out:
    if (gen_fd >= 0)
        close(gen_fd);
    /* 5. Every generation but the current one goes: the previous one after a swap, the new one
     * when the swap did not happen. */
    char current[GEN_NAME_LEN + 2];
    ssize_t len = readlinkat(dir_fd, ATOMIC_DIR_DATA, current, sizeof(current) - 1);
    current[len > 0 ? len : 0] = '\0';
    sweep_generations(dir_fd, current);
    if (rc == 0)
        fsync(dir_fd);   /* the removals; losing them in a crash only leaves stale files */
    close(dir_fd);
    return rc;
}
