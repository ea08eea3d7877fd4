/* atomic_dir.h - a directory whose files change together (Kubernetes' atomic-writer layout). */
#ifndef MESHCA_ATOMIC_DIR_H
#define MESHCA_ATOMIC_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "manifests/error.h"

/*
 * Layout of a directory DIR written by atomic_dir_write:
 *
 *   DIR/..2026_11_29_11_24_21.Ab3xYz/   one generation: every file, written and fsynced
 *   DIR/..data -> ..2026_11_29_11_24_21.Ab3xYz   the current generation
 *   DIR/NAME -> ..data/NAME             one stable symlink per file
 *
 * A generation becomes current by one rename of the ..data symlink, so a reader that resolves
 * ..data once (or reloads after it changed) sees every file of one generation, never a mix.
 * The previous generation's directory is removed after the swap.
 */
#define ATOMIC_DIR_DATA "..data"
#define ATOMIC_DIR_MAX_FILES 8

typedef struct atomic_dir_file {
    const char *name;   /* plain file name: no '/', not starting with "." */
    const char *data;   /* borrowed */
    size_t len;
    mode_t mode;        /* e.g. 0600 for a private key */
} atomic_dir_file;

/*
 * Makes dir usable as an output directory: creates it 0700 when missing (its parent must
 * exist); refuses a symlink, or something that is not a directory, with MESHCA_EINVAL, and an
 * uncreatable or unwritable directory with MESHCA_EIO (reason in errbuf). When an existing dir
 * is open to group or others, or owned by another user, returns 0 with a one-line warning in
 * warnbuf (MESHCA_ERRBUF bytes; empty when none). *ret_created (may be NULL): made it now.
 */
int atomic_dir_prepare(const char *dir, bool *ret_created, char *warnbuf, char *errbuf);

/*
 * Writes files[0..n) as a new generation of dir (layout above); `now` (seconds since the epoch)
 * names the generation. Replaces earlier plain files of the same names by their symlinks.
 * Returns 0, MESHCA_EINVAL (bad name, n), or MESHCA_EIO with the path and errno in errbuf; on
 * failure the current generation stays as it was.
 */
int atomic_dir_write(const char *dir, const atomic_dir_file *files, size_t n, int64_t now,
                     char *errbuf);

#endif
