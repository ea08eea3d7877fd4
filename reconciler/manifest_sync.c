/* manifest_sync.c - `meshca run --manifests DIR`: apply what a GitOps checkout holds, holding a
 * change refused only for propagation (R3/R4) as pending until the dataplanes catch up. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "reconciler/manifest_sync.h"
#include "reconciler/apply.h"
#include "reconciler/manifest_prune.h"
#include "reconciler/state.h"

int manifest_watch_open(const char *dir)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0)
        return -1;
    /* Editors and `git checkout` write then rename: watch both, and deletions. */
    if (inotify_add_watch(fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
                                       IN_DELETE) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool manifest_watch_changed(int fd)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool changed = false;
    if (fd < 0)
        return false;
    /* Drain every queued event: one pass handles them all. */
    while (read(fd, buf, sizeof(buf)) > 0)
        changed = true;
    return changed;
}

/* Sets (or with reason NULL, clears) a mesh status field {"change","reason","since"}; writes only
 * when it differs, since every write wakes the controller loop again. */
static void set_status_field(store *s, const char *mesh_name, const char *field,
                             const char *change, const char *reason)
{
    json_t *status = NULL;
    uint64_t version = 0;
    if (state_get_mesh_status(s, mesh_name, &status, &version) < 0)
        return;
    json_t *old = json_object_get(status, field);
    const char *old_reason = json_string_value(json_object_get(old, "reason"));
    bool same = reason ? old_reason && strcmp(old_reason, reason) == 0 : old == NULL;
    if (!same) {
        if (reason) {
            char since[32];
            time_t now = time(NULL);
            strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
            json_object_set_new(status, field, json_pack("{s:s, s:s, s:s}", "change", change,
                                                         "reason", reason, "since", since));
        } else {
            json_object_del(status, field);
        }
        state_put_mesh_status(s, mesh_name, status, version);
    }
    json_decref(status);
}

/* Prints a line once: repeated identical outcomes (a change still pending) stay quiet. */
typedef struct sayer {
    manifest_sync_say_fn fn;
    void *ctx;
} sayer;

__attribute__((format(printf, 3, 4)))
static void say_once(const sayer *to, char **last, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (*last && strcmp(*last, line) == 0)
        return;
    free(*last);
    *last = strdup(line);
    if (to->fn)
        to->fn(to->ctx, line);
}

/* "FILE:LINE:COLUMN: PATH: MESSAGE", as the CLI prints a diagnostic, so that the log names the
 * place to fix (a YAML syntax error has no field path; a store-only problem no file). */
static const char *diag_line(const diag *d, char *buf, size_t size)
{
    int n = 0;
    if (d->file && d->line)
        n = snprintf(buf, size, "%s:%u:%u: ", d->file, d->line, d->column);
    else if (d->file)
        n = snprintf(buf, size, "%s: ", d->file);
    if (n < 0 || (size_t)n >= size)
        n = 0;
    snprintf(buf + n, size - (size_t)n, "%s%s%s", d->path && *d->path ? d->path : "",
             d->path && *d->path ? ": " : "", d->message ? d->message : "");
    return buf;
}

void manifest_sync(store *s, const char *dir, bool prune, char **last_said,
                   manifest_sync_say_fn say, void *say_ctx)
{
    const sayer to = {say, say_ctx};
    manifest_set *set = manifest_set_new();
    diag_list diags = DIAG_LIST_INIT;
    apply_result result = {0};
    apply_options opts = APPLY_OPTIONS_INIT;

    if (manifest_load_path(set, dir, &diags) != MANIFEST_OK || diag_has_errors(&diags)) {
        const diag *d = diags.count ? &diags.items[0] : NULL;
        for (size_t i = 0; d && i < diags.count && d->severity != DIAG_ERROR; i++)
            d = &diags.items[i];
        char where[768];
        if (d)
            say_once(&to, last_said, "manifests: not applied, %s", diag_line(d, where, sizeof(where)));
        else
            say_once(&to, last_said, "manifests: not applied, %s: unreadable", dir);
        goto out;
    }
    int rc = apply_set(s, set, &opts, &diags, &result);
    if (rc == MESHCA_EUNAVAILABLE && diag_has_errors(&diags)) {
        /* An external CA did not answer the backend checks: tried again on the next sync. */
        const diag *d = &diags.items[0];
        for (size_t i = 0; i < diags.count && d->severity != DIAG_ERROR; i++)
            d = &diags.items[i];
        char where[768];
        say_once(&to, last_said, "manifests: not applied, %s", diag_line(d, where, sizeof(where)));
        goto out;
    }
    if (rc < 0) {
        say_once(&to, last_said, "manifests: store error: %s", store_strerror(rc));
        goto out;
    }
    bool said = false;   /* a mesh's line gave the reason the set was refused */
    for (size_t m = 0; m < result.nmeshes; m++) {
        const apply_mesh_result *mr = &result.meshes[m];
        said = said || mr->refused;
        char *change = apply_describe_steps(mr->steps);
        if (!mr->refused) {
            set_status_field(s, mr->mesh, "pending", NULL, NULL);
            set_status_field(s, mr->mesh, "refused", NULL, NULL);
        } else if (result.waiting_only) {
            set_status_field(s, mr->mesh, "pending", change, mr->reason);
            set_status_field(s, mr->mesh, "refused", NULL, NULL);
            say_once(&to, last_said, "manifests: %s pending: %s", change, mr->reason);
        } else {
            /* R5/R6/R7 and static errors stay refused until the files change. */
            set_status_field(s, mr->mesh, "pending", NULL, NULL);
            set_status_field(s, mr->mesh, "refused", change, mr->reason ? mr->reason :
                             "another resource in the manifests is invalid");
            say_once(&to, last_said, "manifests: %s refused: %s", change,
                     mr->reason ? mr->reason : "another resource is invalid");
        }
        free(change);
    }
    /* Refused for another resource than a mesh (a Dataplane of a mesh that does not exist)
     * while every mesh of the set is fine: said too, or the log stays silent. */
    if (result.refused && !said && diags.count) {
        const diag *d = &diags.items[0];
        for (size_t i = 0; i < diags.count && d->severity != DIAG_ERROR; i++)
            d = &diags.items[i];
        char where[768];
        say_once(&to, last_said, "manifests: refused: %s", diag_line(d, where, sizeof(where)));
    }
    if (!result.refused) {
        for (size_t i = 0; i < result.nchanges; i++) {
            if (strcmp(result.changes[i].what, "unchanged") == 0)
                continue;
            const resource *res = result.changes[i].res;
            char line[1024];
            snprintf(line, sizeof(line), "manifests: %s %s %s", resource_kind_name(res->kind),
                     resource_name(res),
                     result.changes[i].what);
            if (say)
                say(say_ctx, line);
        }
        free(*last_said);
        *last_said = NULL;
        if (prune)
            manifest_prune(s, dir, set, say, say_ctx);
    }
out:
    apply_result_free(&result);
    diag_list_free(&diags);
    manifest_set_free(set);
}
