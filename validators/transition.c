/* transition.c - the rotation rules R1-R7 of SPEC S4: may a mesh go from P to N given what its
 * dataplanes have loaded?
 *
 * Codes: switch-not-added, switch-drops-old, switch-not-propagated, remove-enabled,
 * remove-still-in-use, backend-changed-in-place, disable-mtls, multi-step (errors);
 * status-unknown, forced (warnings).
 *
 * Precedence, chosen so that a user learns everything wrong with a change in one run but is never
 * told to wait for something that will not help:
 *  - R7 (multi-step) is reported whenever more than one of add / change / switch / remove happen
 *    at once. The structural refusals of the individual steps (switch-not-added,
 *    switch-drops-old, remove-enabled, backend-changed-in-place, disable-mtls) are still
 *    reported beside it, because each of them would refuse that step on its own as well; the
 *    status gates (switch-not-propagated, remove-still-in-use) are not evaluated, since the
 *    change can never pass as it stands and waiting would not help.
 *    So "switch ca-1 -> ca-2 and drop ca-1" gives multi-step and switch-drops-old.
 *  - When the switch target was not added before (switch-not-added), propagation is not
 *    checked: nobody can trust a CA that was never distributed.
 *  - Removing the old enabled backend during a switch is reported as switch-drops-old, not
 *    also as remove-enabled.
 *  - While P has mTLS off, nothing has been issued, so any N that passes the static checks is
 *    allowed (R1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validators/validators.h"

/* Blocking dataplanes named in one message; the rest are counted. */
#define MAX_NAMED 10

const char *transition_step_name(transition_step step)
{
    switch (step) {
    case STEP_CREATE: return "create";
    case STEP_ENABLE: return "enable";
    case STEP_ADD: return "add";
    case STEP_CHANGE: return "change";
    case STEP_SWITCH: return "switch";
    case STEP_REMOVE: return "remove";
    case STEP_DISABLE: return "disable";
    }
    return "unknown";
}

/* A growable string for messages. Out of memory marks `out` (the diagnostics the message is
 * for) out_of_memory and leaves the text short, as diag_add does with a diagnostic. */
typedef struct sbuf {
    char *data;
    size_t len, cap;
    diag_list *out;
} sbuf;

static void sb_add(sbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (sb->len + (size_t)n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 128;
        while (cap < sb->len + (size_t)n + 1)
            cap *= 2;
        char *data = realloc(sb->data, cap);
        if (!data) {
            sb->out->out_of_memory = true;
            return;
        }
        sb->data = data;
        sb->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, sb->cap - sb->len, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

static const char *sb_str(const sbuf *sb)
{
    return sb->data ? sb->data : "";
}

/* One dataplane of the mesh as the gates see it: its name and what it acknowledged (NULL when it
 * never reported, or never acknowledged a generation). A snapshot that lists the same dataplane
 * more than once (two snapshots merged, one taken during a pass) holds `nst` entries from `st` on
 * (adjacent in the index): each gate reads them the careful way, so the verdict does not depend
 * on which of them the sort put first. */
typedef struct member {
    const char *name;
    const dataplane_status *const *st;
    size_t nst;
} member;

/* The controller issued something the agent never loaded: the lists describe nothing real. */
static bool never_acknowledged(const dataplane_status *st)
{
    return st->acknowledged_generation == 0 && st->generation > 0;
}

/* How many entries of the index, from `first` on, name the same dataplane. */
static size_t run_length(const status_index *idx, const dataplane_status *const *first)
{
    const dataplane_status *const *end = (const dataplane_status *const *)idx->items + idx->count;
    size_t n = 1;
    while (first + n < end && strcmp(first[n]->name, first[0]->name) == 0)
        n++;
    return n;
}

/* Builds the union of `dataplanes` and the mesh's entries of `status`, each once, in a stable
 * order (declared dataplanes first, then status-only ones sorted by name). O(n log n) so that a
 * 100,000-dataplane status is cheap. Members point into *idx, which the caller builds and frees
 * after them. Caller frees the array; NULL when out of memory. */
static member *collect_members(const status_index *idx, const dataplane *const *dataplanes,
                               size_t ndataplanes, const char *mesh_name, size_t *ret_count)
{
    bool *used = calloc(idx->count + 1, sizeof *used);
    member *members = calloc(idx->count + ndataplanes + 1, sizeof *members);
    if (!used || !members) {
        free(used);
        free(members);
        return NULL;
    }
    const dataplane_status **sorted = idx->items;
    size_t ns = idx->count, count = 0;

    for (size_t i = 0; i < ndataplanes; i++) {
        const dataplane *dp = dataplanes[i];
        if (!dp || !dp->name.value)
            continue;
        if (dp->mesh.value && *dp->mesh.value && mesh_name && strcmp(dp->mesh.value, mesh_name) != 0)
            continue;
        const dataplane_status *const *hit = status_index_find(idx, dp->name.value);
        size_t n = hit ? run_length(idx, hit) : 0;
        if (hit)
            used[hit - sorted] = true;
        members[count++] = (member){dp->name.value, hit, n};
    }
    for (size_t i = 0; i < ns; i++) {
        if (used[i])
            continue;
        /* The same name twice in a status snapshot is one dataplane. */
        if (i > 0 && strcmp(sorted[i]->name, sorted[i - 1]->name) == 0)
            continue;
        members[count++] = (member){sorted[i]->name, &sorted[i], run_length(idx, &sorted[i])};
    }
    free(used);
    *ret_count = count;
    return members;
}

/* "web-01, web-02 and 3 more" */
static void list_names(sbuf *sb, const char *const *names, size_t n)
{
    size_t shown = n < MAX_NAMED ? n : MAX_NAMED;
    for (size_t i = 0; i < shown; i++)
        sb_add(sb, "%s%s", i ? ", " : "", names[i]);
    if (n > shown)
        sb_add(sb, " and %zu more", n - shown);
}

static bool same_name(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* An entry that acknowledged nothing holds no certificate and trusts nothing (SPEC S4). */
static bool entry_holds(const dataplane_status *st, const char *backend)
{
    return !never_acknowledged(st) && same_name(st->issued_backend, backend);
}

static bool entry_trusts(const dataplane_status *st, const char *backend)
{
    return !never_acknowledged(st) && status_supports(st, backend);
}

/* Still holds a certificate of `backend` by any of its entries: blocks a removal. */
static bool holds_issued(const member *m, const char *backend)
{
    for (size_t i = 0; i < m->nst; i++)
        if (entry_holds(m->st[i], backend))
            return true;
    return false;
}

/* Trusts `backend` by every one of its entries: only then may a switch count it. */
static bool trusts(const member *m, const char *backend)
{
    for (size_t i = 0; i < m->nst; i++)
        if (!entry_trusts(m->st[i], backend))
            return false;
    return m->nst > 0;
}

/* Trusts `backend` by any of its entries: an in-place change would break it. */
static bool trusts_any(const member *m, const char *backend)
{
    for (size_t i = 0; i < m->nst; i++)
        if (entry_trusts(m->st[i], backend))
            return true;
    return false;
}

typedef struct ctx {
    const mesh *prev, *next;
    const transition_options *opts;
    diag_list *out;
    transition_result *res;
    member *members;
    size_t nmembers;
    bool status_warned;
} ctx;

/* Counts a dataplane that a forced step went past; the first ones are named. */
static void add_bypassed(transition_result *r, const char *name)
{
    if (r->nbypassed < TRANSITION_MAX_BYPASSED)
        r->bypassed[r->nbypassed++] = name;
    r->nbypassed_total++;
}

/* Records a step that --force let through, and the dataplanes it went past. */
static void record_forced(transition_result *r, transition_step step, const char *const *names,
                          size_t n)
{
    r->forced = true;
    r->forced_steps |= step;
    for (size_t i = 0; i < n; i++)
        add_bypassed(r, names[i]);
}

/* The mark of a field that may be absent: the first of the given marks that has a position,
 * else the mesh's name (with the mtls block gone there is no field left to point at). */
static const source_mark *mark_or_mesh(const mesh *m, const source_mark *a, const source_mark *b)
{
    if (a && a->line)
        return a;
    if (b && b->line)
        return b;
    return &m->name.mark;
}

static void warn_status_unknown(ctx *c, const source_mark *mark, const char *path)
{
    if (c->status_warned)
        return;
    c->status_warned = true;
    diag_warning(c->out, "status-unknown", mark, path,
                 "dataplane status is unknown: cannot check that every dataplane trusts the new "
                 "backend or that none still holds a certificate of a removed one; pass --status "
                 "or --store to check");
}

/* The gating checks cannot be made (no status), or (a snapshot holding none of the mesh's
 * dataplanes) may be made against the wrong store: warns once and says whether to go on. */
static bool status_usable(ctx *c, const source_mark *mark, const char *path)
{
    if (!c->opts->have_status) {
        warn_status_unknown(c, mark, path);
        return false;
    }
    if (c->opts->status_snapshot && c->nmembers == 0 && !c->status_warned) {
        c->status_warned = true;
        diag_warning(c->out, "status-unknown", mark, path,
                     "the status given holds no dataplane of mesh '%s' and the manifests name "
                     "none: this step is checked against no dataplane at all; if the mesh has "
                     "proxies, the snapshot was taken from another store (e.g. the default "
                     "store of the directory it ran in, not the controller's)",
                     c->next->name.value ? c->next->name.value : "");
    }
    return true;
}

static void check_switch(ctx *c, const char *from, const char *to, bool multi)
{
    const mesh *prev = c->prev, *next = c->next;
    const source_mark *mark = &next->enabled_backend.mark;
    const char *path = "mtls.enabledBackend";
    const mesh_backend *before = mesh_find_backend(prev, to);
    const mesh_backend *after = mesh_find_backend(next, to);
    bool not_added = false;

    if (!before) {
        diag_error(c->out, "switch-not-added", mark, path,
                   "cannot switch to '%s': it is not among the backends applied before; add it "
                   "first, wait until every dataplane trusts it, then switch",
                   to);
        not_added = true;
    } else if (after && !mesh_backend_same_ca(before, after)) {
        diag_error(c->out, "switch-not-added", mark, path,
                   "cannot switch to '%s': its type or conf differs from the one applied before, "
                   "so dataplanes do not trust this CA yet; add the new CA under a new name first",
                   to);
        not_added = true;
    }
    if (!mesh_find_backend(next, from))
        diag_error(c->out, "switch-drops-old", mark, path,
                   "cannot switch from '%s' to '%s' while removing '%s': dataplanes still hold "
                   "certificates it issued; keep '%s' until every dataplane has a '%s' certificate, "
                   "then remove it",
                   from, to, from, from, to);

    if (not_added || multi)
        return;
    if (!status_usable(c, mark, path))
        return;
    const char **blocking = calloc(c->nmembers + 1, sizeof *blocking);
    if (!blocking) {
        c->out->out_of_memory = true;
        return;
    }
    size_t nblocking = 0;
    for (size_t i = 0; i < c->nmembers; i++)
        if (!trusts(&c->members[i], to))
            blocking[nblocking++] = c->members[i].name;
    if (nblocking > 0) {
        sbuf sb = {.out = c->out};
        list_names(&sb, blocking, nblocking);
        if (c->opts->force) {
            record_forced(c->res, STEP_SWITCH, blocking, nblocking);
            diag_warning(c->out, "forced", mark, path,
                         "forced switch to '%s' although %zu of %zu dataplanes do not trust it (%s)",
                         to, nblocking, c->nmembers, sb_str(&sb));
        } else {
            diag_error(c->out, "switch-not-propagated", mark, path,
                       "cannot switch to '%s' yet: %zu of %zu dataplanes do not trust it (%s); "
                       "wait until 'meshca inspect dataplanes' shows %s in SUPPORTED for all",
                       to, nblocking, c->nmembers, sb_str(&sb), to);
        }
        free(sb.data);
    }
    free(blocking);
}

static void check_remove(ctx *c, const char *name, const char *from, const char *to, bool multi)
{
    const source_mark *mark = mark_or_mesh(c->next, &c->next->backends_mark, &c->next->mtls_mark);
    const char *path = "mtls.backends";
    bool switching = from && to && strcmp(from, to) != 0;

    if (same_name(name, to) || (same_name(name, from) && !switching)) {
        diag_error(c->out, "remove-enabled", mark, path,
                   "cannot remove '%s': it is the enabled backend; switch to another backend "
                   "first and remove it once no dataplane holds its certificates",
                   name);
        return;
    }
    if (same_name(name, from))
        return;   /* switch-drops-old says it */
    if (multi)
        return;
    if (!status_usable(c, mark, path))
        return;
    const char **holding = calloc(c->nmembers + 1, sizeof *holding);
    if (!holding) {
        c->out->out_of_memory = true;
        return;
    }
    size_t nholding = 0;
    for (size_t i = 0; i < c->nmembers; i++)
        if (holds_issued(&c->members[i], name))
            holding[nholding++] = c->members[i].name;
    if (nholding > 0) {
        sbuf sb = {.out = c->out};
        list_names(&sb, holding, nholding);
        if (c->opts->force) {
            record_forced(c->res, STEP_REMOVE, holding, nholding);
            diag_warning(c->out, "forced", mark, path,
                         "forced removal of '%s' although %zu of %zu dataplanes still use a "
                         "certificate it issued (%s)",
                         name, nholding, c->nmembers, sb_str(&sb));
        } else {
            diag_error(c->out, "remove-still-in-use", mark, path,
                       "cannot remove '%s' yet: %zu of %zu dataplanes still use a certificate it "
                       "issued (%s); wait until 'meshca inspect dataplanes' shows no CERT BACKEND "
                       "%s",
                       name, nholding, c->nmembers, sb_str(&sb), name);
        }
        free(sb.data);
    }
    free(holding);
}

/* A type the static rules refuse (unknown-backend-type, missing-field), e.g. a misspelt
 * 'bultin': that error says what to fix, and an in-place change it would also be is noise. */
static bool type_refused(const mesh_backend *b)
{
    if (!b->type.value || !*b->type.value)
        return true;
    for (size_t i = 0; validate_backend_types[i]; i++)
        if (strcmp(b->type.value, validate_backend_types[i]) == 0)
            return false;
    return true;
}

static void check_change(ctx *c, const char *name, size_t index, const char *from, const char *to)
{
    const mesh_backend *b = &c->next->backends[index];
    if (type_refused(b))
        return;
    /* Same type and conf: the CA changed through a Secret the backend reads. */
    const char *what = mesh_backend_same_ca(mesh_find_backend(c->prev, name), b)
                           ? "its CA (a Secret it reads holds another CA now)"
                           : "type or conf";
    char path[64];
    snprintf(path, sizeof path, "mtls.backends[%zu]", index);
    if (same_name(name, from) || same_name(name, to)) {
        diag_error(c->out, "backend-changed-in-place", &b->mark, path,
                   "backend '%s' changed %s in place while it is the enabled backend; "
                   "add the new CA under a new name and rotate to it",
                   name, what);
        return;
    }
    if (!status_usable(c, &b->mark, path))
        return;
    size_t using = 0;
    const char *first = NULL;
    for (size_t i = 0; i < c->nmembers; i++)
        if (trusts_any(&c->members[i], name) || holds_issued(&c->members[i], name)) {
            if (!first)
                first = c->members[i].name;
            using++;
        }
    if (using > 0)
        diag_error(c->out, "backend-changed-in-place", &b->mark, path,
                   "backend '%s' changed %s in place while %zu dataplane%s trust%s it "
                   "(first: %s); add the new CA under a new name and rotate to it",
                   name, what, using, using == 1 ? "" : "s", using == 1 ? "s" : "", first);
}

static bool ca_changed(const transition_options *opts, const char *name)
{
    for (size_t i = 0; i < opts->nca_changed; i++)
        if (same_name(opts->ca_changed[i], name))
            return true;
    return false;
}

/* Appends "add 'a' and 'b'" style text for the backends of one kind of step. */
static void describe_names(sbuf *sb, const char *verb, const char *const *names, size_t n)
{
    sb_add(sb, "%s", verb);
    for (size_t i = 0; i < n; i++)
        sb_add(sb, "%s'%s'", i == 0 ? " " : (i + 1 == n ? " and " : ", "), names[i]);
}

void validate_transition(const mesh *prev, const mesh *next, const dataplane_status *status,
                         size_t nstatus, const dataplane *const *dataplanes, size_t ndataplanes,
                         const transition_options *opts, diag_list *out,
                         transition_result *ret_result)
{
    static const transition_options defaults = TRANSITION_OPTIONS_INIT;
    transition_result res = {0};
    size_t first_diag = out->count;
    if (!opts)
        opts = &defaults;

    if (!prev) {
        res.steps = STEP_CREATE;   /* R1: the static checks are all there is */
        goto done;
    }

    const char *from = mesh_enabled_backend(prev);
    const char *to = mesh_enabled_backend(next);

    /* Backends by name: added, removed, changed in place. Bounded by the static limit, and the
     * static checks refuse anything larger, so the quadratic lookups stay small. */
    const char **added = calloc(next->nbackends + 1, sizeof *added);
    const char **removed = calloc(prev->nbackends + 1, sizeof *removed);
    const char **changed = calloc(next->nbackends + 1, sizeof *changed);
    size_t *changed_index = calloc(next->nbackends + 1, sizeof *changed_index);
    if (!added || !removed || !changed || !changed_index) {
        out->out_of_memory = true;
        goto free_lists;
    }
    size_t nadded = 0, nremoved = 0, nchanged = 0;
    for (size_t i = 0; i < next->nbackends; i++) {
        const mesh_backend *b = &next->backends[i];
        if (!b->name.value)
            continue;
        if (mesh_find_backend(next, b->name.value) != b)
            continue;   /* a duplicate name: static checks report it */
        const mesh_backend *old = mesh_find_backend(prev, b->name.value);
        if (!old) {
            added[nadded++] = b->name.value;
        } else if (!mesh_backend_same_ca(old, b) || ca_changed(opts, b->name.value)) {
            changed_index[nchanged] = i;
            changed[nchanged++] = b->name.value;
        }
    }
    for (size_t i = 0; i < prev->nbackends; i++) {
        const mesh_backend *b = &prev->backends[i];
        if (b->name.value && mesh_find_backend(prev, b->name.value) == b &&
            !mesh_find_backend(next, b->name.value))
            removed[nremoved++] = b->name.value;
    }

    if (nadded)
        res.steps |= STEP_ADD;
    if (nremoved)
        res.steps |= STEP_REMOVE;
    if (nchanged)
        res.steps |= STEP_CHANGE;
    if (!from && to)
        res.steps |= STEP_ENABLE;
    else if (from && !to)
        res.steps |= STEP_DISABLE;
    else if (from && to && strcmp(from, to) != 0)
        res.steps |= STEP_SWITCH;

    if (!from)
        goto free_lists;   /* mTLS was off: nothing issued yet, R1 applies */

    size_t nkinds = 0;
    static const transition_step rotation[] = {STEP_ADD, STEP_CHANGE, STEP_SWITCH, STEP_REMOVE};
    for (size_t i = 0; i < sizeof rotation / sizeof rotation[0]; i++)
        if (res.steps & rotation[i])
            nkinds++;
    bool multi = nkinds > 1;
    if (multi) {
        sbuf sb = {.out = out};
        bool any = false;
        if (nadded) {
            describe_names(&sb, "add", added, nadded);
            any = true;
        }
        if (nchanged) {
            sb_add(&sb, "%s", any ? ", then " : "");
            describe_names(&sb, "change", changed, nchanged);
            sb_add(&sb, " in place");
            any = true;
        }
        if (res.steps & STEP_SWITCH) {
            sb_add(&sb, "%sswitch to '%s'", any ? ", then " : "", to);
            any = true;
        }
        if (nremoved) {
            sb_add(&sb, "%s", any ? ", then " : "");
            describe_names(&sb, "remove", removed, nremoved);
        }
        const source_mark *mark = (res.steps & STEP_SWITCH)
                                      ? &next->enabled_backend.mark
                                      : mark_or_mesh(next, &next->backends_mark, &next->mtls_mark);
        diag_error(out, "multi-step", mark,
                   (res.steps & STEP_SWITCH) ? "mtls.enabledBackend" : "mtls.backends",
                   "several rotation steps at once: %s; apply them one at a time", sb_str(&sb));
        free(sb.data);
    }

    size_t nmembers = 0;
    const char *mesh_name = next->name.value ? next->name.value : prev->name.value;
    status_index idx = STATUS_INDEX_INIT;
    member *members = NULL;
    if (status_index_build(status, nstatus, mesh_name, &idx) == 0)
        members = collect_members(&idx, dataplanes, ndataplanes, mesh_name, &nmembers);
    if (!members) {
        status_index_free(&idx);
        out->out_of_memory = true;
        goto free_lists;
    }
    ctx c = {prev, next, opts, out, &res, members, nmembers, false};

    for (size_t i = 0; i < nchanged; i++)
        check_change(&c, changed[i], changed_index[i], from, to);
    if (res.steps & STEP_SWITCH)
        check_switch(&c, from, to, multi);
    /* Disabling mTLS drops every certificate: backends removed with it (the whole mtls block
     * gone) are part of that one step, which R6 and --force cover, not removals to gate. */
    for (size_t i = 0; i < nremoved && !(res.steps & STEP_DISABLE); i++)
        check_remove(&c, removed[i], from, to, multi);
    if (res.steps & STEP_DISABLE) {
        const source_mark *mark = mark_or_mesh(next, &next->enabled_backend.mark, &next->mtls_mark);
        sbuf also = {.out = out};
        if (nremoved)
            describe_names(&also, ", removing", removed, nremoved);
        if (opts->force) {
            /* every dataplane of the mesh loses its certificate */
            record_forced(&res, STEP_DISABLE, NULL, 0);
            for (size_t i = 0; i < nmembers; i++)
                add_bypassed(&res, members[i].name);
            diag_warning(out, "forced", mark, "mtls.enabledBackend",
                         "forced: mTLS disabled on mesh '%s'%s; %zu dataplane%s lose%s "
                         "%s certificates",
                         next->name.value ? next->name.value : "", sb_str(&also), nmembers,
                         nmembers == 1 ? "" : "s", nmembers == 1 ? "s" : "",
                         nmembers == 1 ? "its" : "their");
        } else {
            diag_error(out, "disable-mtls", mark, "mtls.enabledBackend",
                       "disabling mTLS on mesh '%s' (enabledBackend '%s' -> none%s) drops every "
                       "dataplane's certificate and breaks STRICT traffic; pass --force to do it",
                       next->name.value ? next->name.value : "", from, sb_str(&also));
        }
        free(also.data);
    }
    free(members);
    status_index_free(&idx);

free_lists:
    free(added);
    free(removed);
    free(changed);
    free(changed_index);

done:
    res.refused = false;
    res.waiting_only = false;
    bool only_waiting = true;
    for (size_t i = first_diag; i < out->count; i++) {
        const diag *d = &out->items[i];
        if (d->severity != DIAG_ERROR)
            continue;
        res.refused = true;
        if (strcmp(d->code, "switch-not-propagated") != 0 &&
            strcmp(d->code, "remove-still-in-use") != 0)
            only_waiting = false;
    }
    res.waiting_only = res.refused && only_waiting;
    /* An unfinished check never passes: the gates it skipped might have refused. */
    if (out->out_of_memory) {
        res.refused = true;
        res.waiting_only = false;
    }
    if (ret_result)
        *ret_result = res;
}
