/* cmd_diff.c - `meshca diff -f`: what apply would change, as a unified diff of the YAML, with each mesh's transition and verdict. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include "manifests/encode.h"
#include "manifests/manifest.h"
#include "reconciler/apply.h"
#include "reconciler/state.h"
#include "validators/validators.h"

/* Lines of context around each change, as diff -u. */
#define DIFF_CONTEXT 3
/* The longest-common-subsequence table is lines(old) x lines(new) cells: above this, a
 * resource is shown as wholly replaced rather than spending the memory. */
#define DIFF_MAX_CELLS (4u * 1024u * 1024u)

const char cmd_diff_usage[] =
    "Usage: meshca diff -f PATH... [--force] [--force-without-cross-signing]\n"
    "\n"
    "Shows what 'meshca apply -f PATH...' would change: a unified diff, per resource, of the\n"
    "stored resource and the new one, both as 'meshca get -o yaml' prints them (Secret data\n"
    "and inline keys stay <redacted>; one that changes shows as '<redacted> (before)' and\n"
    "'<redacted> (after)'). Then, for each Mesh that changes, the transition it is (create,\n"
    "add, switch, remove, ...) and the verdict of the same checks as 'apply --dry-run',\n"
    "gated on what the dataplanes acknowledged. Changes nothing.\n"
    "\n"
    "Flags:\n"
    "  -f, --filename PATH              manifests to compare (repeatable; - reads stdin)\n"
    "      --force                      the verdict as 'apply --force' would give it\n"
    "      --force-without-cross-signing  the verdict as 'apply --force-without-cross-signing'\n"
    "\n"
    "Exit codes (kubectl diff's): 0 no change; 1 apply would change something (or refuse it:\n"
    "            see the verdict); 2 usage, unreadable or invalid manifests, store error.\n";

typedef struct diff_args {
    const char *files[CLI_MAX_PATHS];
    size_t nfiles;
    int force, no_cross_sign;
} diff_args;

static int parse_args(int argc, char **argv, diff_args *args)
{
    enum { OPT_FORCE = 256, OPT_NO_XSIGN };
    static const struct option options[] = {
        {"filename", required_argument, NULL, 'f'}, {"force", no_argument, NULL, OPT_FORCE},
        {"force-without-cross-signing", no_argument, NULL, OPT_NO_XSIGN},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:h", options, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (cli_add_path(args->files, &args->nfiles, optarg) < 0)
                return -1;
            break;
        case OPT_FORCE:
            args->force = 1;
            break;
        case OPT_NO_XSIGN:
            args->force = 1;
            args->no_cross_sign = 1;
            break;
        case 'h':
            fputs(cmd_diff_usage, stdout);
            exit(EXIT_OK);
        default:
            cli_flag_error(c, argc, argv);
            return -1;
        }
    }
    return cli_require_paths(argc, argv, args->nfiles, "compare", "diff");
}

/* --- the resources as get prints them, secrets masked --- */



static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static const resource *find_stored(const manifest_set *current, const resource *res)
{
    for (size_t i = 0; i < manifest_set_count(current); i++) {
        const resource *c = manifest_set_get(current, i);
        if (c->kind == res->kind && str_eq(resource_mesh(c), resource_mesh(res)) &&
            str_eq(resource_name(c), resource_name(res)))
            return c;
    }
    return NULL;
}

/* Wipes the string values of a JSON tree that held secret material before it is freed. */
static void wipe_json(json_t *v)
{
    const char *key;
    json_t *item;
    size_t i;
    if (json_is_string(v)) {
        /* jansson owns the text; json_string_set replaces it, so wipe in place first. */
        OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
    } else if (json_is_object(v)) {
        json_object_foreach(v, key, item)
            wipe_json(item);
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, item)
            wipe_json(item);
    }
}

static void set_masked(json_t *obj, const char *key, const char *text)
{
    json_t *old = json_object_get(obj, key);
    if (old)
        wipe_json(old);
    json_object_set_new(obj, key, json_string(text));
}

/* Replaces every secret value (a Secret's data at the top, an inline datasource value
 * anywhere) in the stored and the new display of one resource: ENCODE_REDACTED where both hold
 * the same value, "<redacted> (before)" and "<redacted> (after)" where it changes, so the diff
 * shows that a secret changes and never the secret. Either side may be NULL. */
static void mask(json_t *old, json_t *new_, bool top_secret)
{
    const char *key;
    json_t *item;
    if (json_is_array(old) || json_is_array(new_)) {
        size_t n = json_array_size(old) > json_array_size(new_) ? json_array_size(old)
                                                                : json_array_size(new_);
        for (size_t i = 0; i < n; i++)
            mask(json_array_get(old, i), json_array_get(new_, i), false);
        return;
    }
    json_t *objs[2] = {json_is_object(new_) ? new_ : NULL, json_is_object(old) ? old : NULL};
    for (int side = 0; side < 2; side++) {
        if (!objs[side])
            continue;
        json_object_foreach(objs[side], key, item) {
            json_t *other = side == 0 ? json_object_get(old, key) : NULL;
            bool is_secret = (top_secret && strcmp(key, "data") == 0) || encode_is_inline_key(key);
            if (side == 1 && json_object_get(new_, key))
                continue;   /* done from the new side */
            if (!is_secret) {
                mask(side == 0 ? other : item, side == 0 ? item : NULL, false);
                continue;
            }
            if (side == 1) {
                set_masked(old, key, ENCODE_REDACTED " (before)");
            } else if (other && json_equal(other, item)) {
                set_masked(old, key, ENCODE_REDACTED);
                set_masked(new_, key, ENCODE_REDACTED);
            } else {
                if (other)
                    set_masked(old, key, ENCODE_REDACTED " (before)");
                set_masked(new_, key, ENCODE_REDACTED " (after)");
            }
        }
    }
}

/* A JSON document as YAML text (as get -o yaml prints it), split into lines. */
typedef struct lines {
    char *text;
    char **line;
    size_t n;
} lines;

static void lines_free(lines *l)
{
    free(l->text);
    free(l->line);
}

static int to_lines(const json_t *doc, lines *ret)
{
    size_t size = 0;
    FILE *f = open_memstream(&ret->text, &size);
    if (!f)
        return -1;
    int rc = doc ? cli_write_yaml(f, &doc, 1, false) : 0;
    if (fclose(f) != 0 || rc < 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < size; i++)
        n += ret->text[i] == '\n';
    ret->line = calloc(n + 1, sizeof(*ret->line));
    if (!ret->line)
        return -1;
    char *p = ret->text;
    for (size_t i = 0; i < n; i++) {
        char *nl = strchr(p, '\n');
        *nl = '\0';
        ret->line[ret->n++] = p;
        p = nl + 1;
    }
    return 0;
}

/* --- unified diff --- */

/* One line of the edit script: ' ' kept, '-' only in old, '+' only in new. */
typedef struct edit {
    char op;
    size_t a, b;   /* line index in old (for ' ' and '-') and in new (for ' ' and '+') */
} edit;

/* The shortest edit script from a to b through their longest common subsequence (the table
 * holds, per cell, the LCS length of the suffixes). Returns the number of edits, or -1. */
static long edit_script(const lines *a, const lines *b, edit *ret)
{
    size_t n = a->n, m = b->n, k = 0;
    unsigned *t = NULL;
    if (n && m && n * m <= DIFF_MAX_CELLS) {
        t = calloc((n + 1) * (m + 1), sizeof(*t));
        if (!t)
            return -1;
        for (size_t i = n; i-- > 0;)
            for (size_t j = m; j-- > 0;)
                t[i * (m + 1) + j] = strcmp(a->line[i], b->line[j]) == 0
                                         ? t[(i + 1) * (m + 1) + j + 1] + 1
                                     : t[(i + 1) * (m + 1) + j] >= t[i * (m + 1) + j + 1]
                                         ? t[(i + 1) * (m + 1) + j]
                                         : t[i * (m + 1) + j + 1];
    }
    size_t i = 0, j = 0;
    while (i < n || j < m) {
        if (t && i < n && j < m && strcmp(a->line[i], b->line[j]) == 0) {
            ret[k++] = (edit){' ', i++, j++};
        } else if (i < n && (j >= m || !t ||
                             t[(i + 1) * (m + 1) + j] >= t[i * (m + 1) + j + 1])) {
            ret[k++] = (edit){'-', i++, j};
        } else {
            ret[k++] = (edit){'+', i, j++};
        }
    }
    free(t);
    return (long)k;
}

/* Prints the hunks of an edit script, DIFF_CONTEXT lines of context around changes; changes
 * at most 2 * DIFF_CONTEXT kept lines apart share a hunk, as diff -u. */
static void print_hunks(const lines *a, const lines *b, const edit *e, size_t n)
{
    size_t i = 0;
    for (;;) {
        size_t c = i;
        while (c < n && e[c].op == ' ')
            c++;
        if (c == n)
            break;
        size_t start = c > i + DIFF_CONTEXT ? c - DIFF_CONTEXT : i, end = c;
        for (;;) {
            while (end < n && e[end].op != ' ')
                end++;
            size_t k = end;
            while (k < n && e[k].op == ' ')
                k++;
            if (k < n && k - end <= 2 * DIFF_CONTEXT) {
                end = k;
                continue;
            }
            end = end + DIFF_CONTEXT < n ? end + DIFF_CONTEXT : n;
            break;
        }
        size_t na = 0, nb = 0;
        for (size_t k = start; k < end; k++) {
            na += e[k].op != '+';
            nb += e[k].op != '-';
        }
        /* diff -u numbers an empty range by the line before it. */
        printf("@@ -%zu,%zu +%zu,%zu @@\n", na ? e[start].a + 1 : e[start].a, na,
               nb ? e[start].b + 1 : e[start].b, nb);
        for (size_t k = start; k < end; k++)
            printf("%c%s\n", e[k].op, e[k].op == '+' ? b->line[e[k].b] : a->line[e[k].a]);
        i = end;
    }
}

/* Prints the unified diff of one resource; returns 1 when it differs, 0 when not, -1 on
 * failure. `stored` NULL: created. */
static int diff_resource(const resource *stored, const resource *next, const char *label)
{
    json_t *old_doc = stored ? encode_resource(stored, 1) : NULL;
    json_t *new_doc = encode_resource(next, 1);
    lines a = {0}, b = {0};
    edit *script = NULL;
    int rc = -1;
    if (!new_doc || (stored && !old_doc))
        goto out;
    mask(old_doc, new_doc, next->kind == RESOURCE_SECRET);
    if (to_lines(old_doc, &a) < 0 || to_lines(new_doc, &b) < 0)
        goto out;
    if (!(script = calloc(a.n + b.n + 1, sizeof(*script))))
        goto out;
    long n = edit_script(&a, &b, script);
    if (n < 0)
        goto out;
    rc = 0;
    for (long k = 0; k < n; k++)
        if (script[k].op != ' ')
            rc = 1;
    if (rc == 1) {
        printf("--- %s%s\n+++ new/%s\n", stored ? "stored/" : "/dev/null", stored ? label : "",
               label);
        print_hunks(&a, &b, script, (size_t)n);
    }
out:
    if (old_doc)
        wipe_json(old_doc);
    if (new_doc)
        wipe_json(new_doc);
    json_decref(old_doc);
    json_decref(new_doc);
    lines_free(&a);
    lines_free(&b);
    free(script);
    return rc;
}

/* --- transitions --- */

static const resource *find_mesh_resource(const manifest_set *set, const char *name)
{
    for (size_t i = 0; i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind == RESOURCE_MESH && str_eq(res->u.mesh.name.value, name))
            return res;
    }
    return NULL;
}

/* A stored encoding may hold inline key material: wiped before freeing. */
static void free_secret_text(char *text)
{
    if (text) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
}

/* Appends "'a', 'b'" of the backends of `m` that `other` lacks (or, same_name, has with
 * another CA) to buf. Returns how many. */
static size_t list_backends(const mesh *m, const mesh *other, bool changed_in_place, char *buf,
                            size_t size)
{
    size_t count = 0;
    for (size_t i = 0; m && i < m->nbackends; i++) {
        const char *name = m->backends[i].name.value;
        const mesh_backend *ob = other && name ? mesh_find_backend(other, name) : NULL;
        if (changed_in_place ? !(ob && !mesh_backend_same_ca(ob, &m->backends[i])) : ob != NULL)
            continue;
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s'%s'", count ? ", " : "", name ? name : "?");
        count++;
    }
    return count;
}

/* "add 'ca-2'", "switch 'ca-1' -> 'ca-2'", ... of one Mesh's change, in the order of the
 * rotation's steps. */
static void describe(const mesh *prev, const mesh *next, unsigned steps, char *buf, size_t size)
{
    const char *from = prev ? mesh_enabled_backend(prev) : NULL;
    const char *to = mesh_enabled_backend(next);
    char names[256];
    buf[0] = '\0';
#define APPEND(...)                                                                            \
    do {                                                                                       \
        size_t used_ = strlen(buf);                                                            \
        snprintf(buf + used_, size - used_, "%s", used_ ? ", " : "");                          \
        used_ = strlen(buf);                                                                   \
        snprintf(buf + used_, size - used_, __VA_ARGS__);                                      \
    } while (0)
    if (steps & STEP_CREATE)
        APPEND("create (mTLS %s%s%s)", to ? "with '" : "off", to ? to : "", to ? "'" : "");
    if (steps & STEP_ENABLE)
        APPEND("enable mTLS with '%s'", to ? to : "?");
    names[0] = '\0';
    if ((steps & STEP_ADD) && list_backends(next, prev, false, names, sizeof(names)))
        APPEND("add %s", names);
    names[0] = '\0';
    if ((steps & STEP_CHANGE) && list_backends(next, prev, true, names, sizeof(names)))
        APPEND("change %s in place", names);
    if (steps & STEP_SWITCH)
        APPEND("switch '%s' -> '%s'", from ? from : "?", to ? to : "?");
    names[0] = '\0';
    if ((steps & STEP_REMOVE) && list_backends(prev, next, false, names, sizeof(names)))
        APPEND("remove %s", names);
    if (steps & STEP_DISABLE)
        APPEND("disable mTLS (was '%s')", from ? from : "?");
    if (!buf[0])
        APPEND("no CA step (mode, dpCert or other fields)");
#undef APPEND
}

int cmd_diff(int argc, char **argv)
{
    diff_args args = {0};
    diag_list diags = DIAG_LIST_INIT, checks = DIAG_LIST_INIT;
    apply_result result = {0};
    manifest_set *next = manifest_set_new(), *current = manifest_set_new();
    store *s = NULL;
    int exit_code = EXIT_TROUBLE, unreadable = 0;

    if (!next || !current) {
        cli_error("out of memory");
        goto out;
    }
    if (parse_args(argc, argv, &args) < 0)
        goto out;
    if (cli_load_paths(next, args.files, args.nfiles, &diags) < 0)
        unreadable = 1;
    if (unreadable) {
        diag_list_sort(&diags);
        output_diagnostics(stderr, OUTPUT_TEXT, &diags, 0);
        goto out;
    }
    if (!(s = cli_open_store_to_read(NULL)))
        goto out;
    int rc = state_load_resources(s, NULL, current, &checks);
    if (checks.out_of_memory)
        goto out;   /* reported at out */
    diag_list_free(&checks);
    if (rc < 0) {
        cli_error("cannot read the store: %s", store_strerror(rc));
        goto out;
    }
    /* The verdict from apply's own checks; a dry run also puts the stored value in place of
     * each <redacted> one, so the diff compares what apply would store. */
    apply_options opts = APPLY_OPTIONS_INIT;
    opts.dry_run = true;
    opts.force = args.force;
    opts.cross_sign = !args.no_cross_sign;
    rc = apply_set(s, next, &opts, &diags, &result);
    if (rc == MESHCA_EUNAVAILABLE && diag_has_errors(&diags)) {
        /* An external CA did not answer the backend checks: its diagnostics say which. */
        diag_list_sort(&diags);
        output_diagnostics(stderr, OUTPUT_TEXT, &diags, 0);
        goto out;
    }
    if (rc < 0) {
        cli_error("cannot use the store: %s", store_strerror(rc));
        goto out;
    }
    /* Manifests that do not even validate (checked after apply put stored values in place of
     * <redacted> ones) have no diff to show: trouble, not "changes". */
    validate_set(next, &checks);
    if (diag_has_errors(&checks)) {
        diag_list_sort(&diags);
        output_diagnostics(stderr, OUTPUT_TEXT, &diags, 0);
        fputs("cannot diff: the manifests are invalid\n", stderr);
        goto out;
    }

    size_t changed = 0;
    for (size_t i = 0; i < manifest_set_count(next); i++) {
        const resource *res = manifest_set_get(next, i);
        char label[600];
        if (res->kind == RESOURCE_MESH)
            snprintf(label, sizeof(label), "mesh/%s", resource_name(res));
        else
            snprintf(label, sizeof(label), "%s/%s/%s",
                     res->kind == RESOURCE_DATAPLANE ? "dataplane" : "secret", resource_mesh(res),
                     resource_name(res));
        int d = diff_resource(find_stored(current, res), res, label);
        if (d < 0) {
            cli_error("cannot diff %s: out of memory", label);
            goto out;
        }
        changed += (size_t)d;
    }
    /* Each changed Mesh: its transition and what apply says of it. */
    for (size_t m = 0; m < result.nmeshes; m++) {
        const apply_mesh_result *mr = &result.meshes[m];
        const resource *nres = find_mesh_resource(next, mr->mesh);
        const resource *stored = find_mesh_resource(current, mr->mesh);
        if (!nres)
            continue;
        if (stored) {
            char *a = state_encode_resource(stored), *b = state_encode_resource(nres);
            bool same = a && b && strcmp(a, b) == 0;
            free_secret_text(a);
            free_secret_text(b);
            if (same)
                continue;   /* unchanged: no transition */
        }
        const mesh *n = &nres->u.mesh, *p = stored ? &stored->u.mesh : NULL;
        char what[512];
        describe(p, n, mr->steps, what, sizeof(what));
        if (mr->refused)
            printf("mesh/%s: %s: apply would refuse it%s: %s\n", mr->mesh, what,
                   mr->waiting_only ? " until the dataplanes catch up" : "",
                   mr->reason ? mr->reason : "see the errors");
        else
            printf("mesh/%s: %s: apply would accept it\n", mr->mesh, what);
    }
    diag_list_sort(&diags);
    output_diagnostics(stderr, OUTPUT_TEXT, &diags, !result.refused);
    if (result.refused) {
        size_t n = diag_count(&diags, DIAG_ERROR);
        fprintf(stderr, "apply would refuse these changes: %zu error%s\n", n, n == 1 ? "" : "s");
    }
    exit_code = changed || result.refused ? EXIT_INVALID : EXIT_OK;
out:
    if (cli_diagnostics_out_of_memory(&diags) || cli_diagnostics_out_of_memory(&checks))
        exit_code = EXIT_TROUBLE;
    apply_result_free(&result);
    manifest_set_free(next);
    manifest_set_free(current);
    diag_list_free(&diags);
    diag_list_free(&checks);
    store_close(s);
    return exit_code;
}
