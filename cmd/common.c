/* common.c - helpers shared by the store-backed commands: opening the store, loading state. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd/cli.h"
#include "cmd/common.h"

/* A SQLite store directory others can list (0755: the store refuses only one they can write)
 * shows who runs meshca and when the database changes: warned, with the fix, not refused, so an
 * existing installation keeps working. */
static void warn_loose_store_dir(void)
{
    const char *url = getenv("MESHCA_STORE");
    char dir[4096];
    struct stat st;

    if (!url || !*url)
        url = STORE_DEFAULT_URL;
    if (strncmp(url, "sqlite://", 9) != 0)
        return;
    int n = snprintf(dir, sizeof(dir), "%s", url + 9);
    char *slash = n > 0 && (size_t)n < sizeof(dir) ? strrchr(dir, '/') : NULL;
    if (!slash)
        return; /* the working directory: the user's own choice of place */
    if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    if (stat(dir, &st) == 0 && (st.st_mode & 0077))
        fprintf(stderr, "meshca: warning: store directory '%s' has mode %04o: other users can list "
                "it; run: chmod 700 '%s'\n", dir, (unsigned)(st.st_mode & 07777), dir);
}

/* The database path of a sqlite:// URL (NULL = $MESHCA_STORE or the default), or NULL. */
static const char *sqlite_path(const char *url)
{
    if (!url || !*url)
        url = getenv("MESHCA_STORE");
    if (!url || !*url)
        url = STORE_DEFAULT_URL;
    if (strncmp(url, "sqlite://", 9) != 0)
        return NULL;
    return url + 9;
}

/* Opens url (NULL: --store / $MESHCA_STORE / the default, whose directory's mode is checked). */
static store *open_url(const char *url)
{
    char errbuf[MESHCA_ERRBUF] = "";
    store *s = NULL;
    int rc = store_open(url, &s, errbuf);
    if (rc < 0) {
        cli_error("cannot open the store: %s", errbuf[0] ? errbuf : store_strerror(rc));
        return NULL;
    }
    if (!url)
        warn_loose_store_dir();
    return s;
}

/* A SQLite store that does not exist yet is read as the empty in-memory store, not created;
 * note: say so on stderr. */
static store *open_to_read(const char *url, bool note)
{
    const char *path = sqlite_path(url);
    struct stat st;
    if (path && *path && strcmp(path, SQLITE_MEMORY_PATH) != 0 && stat(path, &st) < 0 &&
        errno == ENOENT) {
        if (note)
            fprintf(stderr, "meshca: note: no store at '%s' yet (nothing was applied there): "
                    "reading it as empty\n", path);
        url = "sqlite://" SQLITE_MEMORY_PATH;
    }
    return open_url(url);
}

store *cli_open_store_to_read(const char *url)
{
    return open_to_read(url, true);
}

store *cli_open_store_to_check(void)
{
    return open_to_read(NULL, false);
}

store *cli_open_store(void)
{
    /* An in-memory store is gone when the command exits: a command that writes would report
     * what it did and keep none of it. */
    const char *path = sqlite_path(NULL);
    if (path && strcmp(path, SQLITE_MEMORY_PATH) == 0) {
        cli_error("sqlite://%s keeps nothing after this command: give a store that lasts "
                  "(a file, or etcd); only read-only commands accept it", SQLITE_MEMORY_PATH);
        return NULL;
    }
    return open_url(NULL);
}

const dataplane **cli_dataplanes_of(const manifest_set *set, const char *mesh_name, size_t *ret_n)
{
    const dataplane **list = NULL;
    *ret_n = 0;
    if (manifest_set_dataplanes_of(set, mesh_name, &list, ret_n) < 0)
        return NULL;   /* out of memory: the caller reports it */
    return list;
}

const dataplane_status *cli_find_status(const status_set *status, const char *mesh_name,
                                        const char *name)
{
    for (size_t i = 0; i < status->count; i++)
        if (status->items[i].mesh && status->items[i].name &&
            strcmp(status->items[i].mesh, mesh_name) == 0 &&
            strcmp(status->items[i].name, name) == 0)
            return &status->items[i];
    return NULL;
}

char *cli_dataplane_services(const dataplane *dp)
{
    size_t cap = 1;
    dataplane_tag_iter it = DATAPLANE_TAG_ITER_INIT(dp);
    for (const model_tag *tag; (tag = dataplane_tag_next(&it)) != NULL;)
        if (strcmp(tag->key, MODEL_SERVICE_TAG) == 0)
            cap += strlen(tag->value) + 1;
    char *out = calloc(1, cap);
    if (!out)
        return NULL;
    it = (dataplane_tag_iter)DATAPLANE_TAG_ITER_INIT(dp);
    for (const model_tag *tag; (tag = dataplane_tag_next(&it)) != NULL;)
        if (strcmp(tag->key, MODEL_SERVICE_TAG) == 0) {
            if (out[0])
                strcat(out, ",");
            strcat(out, tag->value);
        }
    return out;
}

int cli_add_path(const char **list, size_t *n, const char *path)
{
    if (*n >= CLI_MAX_PATHS) {
        cli_error("too many paths (at most %d)", CLI_MAX_PATHS);
        return -1;
    }
    list[(*n)++] = path;
    return 0;
}

int cli_load_paths(manifest_set *set, const char *const *paths, size_t n, diag_list *diags)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        if (manifest_load_path(set, paths[i], diags) != MANIFEST_OK)
            rc = -1;
    return rc;
}

int cli_require_paths(int argc, char **argv, size_t npaths, const char *verb, const char *command)
{
    if (optind < argc) {
        cli_error("unexpected argument '%s' (use -f PATH)", argv[optind]);
        return -1;
    }
    if (npaths == 0) {
        cli_error("nothing to %s: give -f PATH; run 'meshca help %s'", verb, command);
        return -1;
    }
    return 0;
}

void cli_note_unknown_mesh(const manifest_set *set, const char *mesh_name)
{
    if (mesh_name && !manifest_set_find_mesh(set, mesh_name))
        fprintf(stderr, "meshca: note: no mesh '%s' in the store\n", mesh_name);
}
