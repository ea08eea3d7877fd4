/* delete.c - removing Meshes, Dataplanes and Secrets with what belongs to them, in one transaction, refused while needed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "manifests/manifest.h"
#include "reconciler/delete.h"
#include "reconciler/state.h"

/* The kind the API's dataplane tokens are stored under (reconciler/api/token.h). Handled only
 * when the store knows the kind, so this builds and works before and after tokens exist. */
#define DELETE_TOKENS_KIND "tokens"

/* How many blocking names a refusal lists before "and N more". */
#define DELETE_NAMES_SHOWN 5

const char *delete_kind_word(resource_kind kind)
{
    return kind == RESOURCE_MESH ? "mesh" : kind == RESOURCE_DATAPLANE ? "dataplane" : "secret";
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* The objects of one kind as listed, with a flag per object: deleted by this call. */
typedef struct listing {
    const char *kind;
    store_entry *entries;
    size_t n;
    bool *doomed;
} listing;

static void listing_free(listing *l)
{
    /* Secrets, and a Mesh's inline datasources, are key material: wipe before freeing. */
    for (size_t i = 0; l->entries && i < l->n; i++)
        OPENSSL_cleanse(l->entries[i].value, l->entries[i].len);
    store_entries_free(l->entries, l->n);
    free(l->doomed);
}

static int listing_load(store *s, const char *kind, listing *ret)
{
    ret->kind = kind;
    int rc = store_list(s, kind, NULL, &ret->entries, &ret->n);
    if (rc < 0)
        return rc;
    ret->doomed = calloc(ret->n + 1, sizeof(*ret->doomed));
    return ret->doomed ? 0 : STORE_ENOMEM;
}

static int cmp_key(const char *mesh_a, const char *name_a, const store_entry *b)
{
    int c = strcmp(mesh_a, b->mesh);
    return c ? c : strcmp(name_a, b->name);
}

/* Index of (mesh, name) in a listing (sorted by mesh then name, as store_list returns), or -1. */
static long listing_find(const listing *l, const char *mesh_name, const char *name)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_key(mesh_name, name, &l->entries[mid]);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

static bool mesh_doomed(const listing *meshes, const char *mesh_name)
{
    long i = listing_find(meshes, mesh_name, mesh_name);
    return i >= 0 && meshes->doomed[i];
}

/* What the transaction will do, and what the caller is told. */
typedef struct plan {
    store_op *ops;
    size_t nops, cap;
    delete_result *result;
    size_t removed_cap;
} plan;

static int plan_op(plan *p, store_op_type type, const store_entry *e)
{
    if (p->nops == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        store_op *ops = realloc(p->ops, cap * sizeof(*ops));
        if (!ops)
            return STORE_ENOMEM;
        p->ops = ops;
        p->cap = cap;
    }
    p->ops[p->nops++] = (store_op){type, {e->kind, e->mesh, e->name}, NULL, 0, e->version, 0};
    return 0;
}

static int plan_removed(plan *p, resource_kind kind, const store_entry *e, const char *owner)
{
    delete_result *r = p->result;
    if (r->nremoved == p->removed_cap) {
        size_t cap = p->removed_cap ? 2 * p->removed_cap : 16;
        delete_removed *items = realloc(r->removed, cap * sizeof(*items));
        if (!items)
            return STORE_ENOMEM;
        r->removed = items;
        p->removed_cap = cap;
    }
    delete_removed *d = &r->removed[r->nremoved];
    *d = (delete_removed){kind, strdup(e->mesh), strdup(e->name), owner ? strdup(owner) : NULL};
    if (!d->mesh || !d->name || (owner && !d->owner)) {
        free(d->mesh);
        free(d->name);
        free(d->owner);
        return STORE_ENOMEM;
    }
    r->nremoved++;
    return plan_op(p, STORE_OP_DELETE, e);
}

/* --- resolving targets --- */

static listing *listing_of(resource_kind kind, listing *meshes, listing *dataplanes,
                           listing *secrets)
{
    return kind == RESOURCE_MESH ? meshes : kind == RESOURCE_DATAPLANE ? dataplanes : secrets;
}

/* Finds a target's object: its index in `l`, or -1 with the reason in diags (unless the
 * target may be missing). */
static long resolve(const delete_target *t, const listing *l, const delete_options *opts,
                    diag_list *diags)
{
    const char *word = delete_kind_word(t->kind);
    const char *mesh_name = t->kind == RESOURCE_MESH ? t->name : t->mesh;
    if (!t->name) {
        diag_error(diags, "not-found", &t->mark, "", "this %s has no name to delete", word);
        return -1;
    }
    if (mesh_name) {
        long i = listing_find(l, mesh_name, t->name);
        if (i < 0 && !opts->ignore_not_found) {
            if (t->kind == RESOURCE_MESH)
                diag_error(diags, "not-found", &t->mark, "", "mesh '%s' not found", t->name);
            else
                diag_error(diags, "not-found", &t->mark, "", "%s '%s' not found in mesh '%s'",
                           word, t->name, mesh_name);
        }
        return i;
    }
    /* No mesh given: the one mesh that has it, as a name is unique within a mesh only. */
    long found = -1;
    size_t count = 0;
    char meshes_text[256] = "";
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->entries[i].name, t->name) != 0)
            continue;
        size_t used = strlen(meshes_text);
        if (count < DELETE_NAMES_SHOWN)
            snprintf(meshes_text + used, sizeof(meshes_text) - used, "%s'%s'", count ? ", " : "",
                     l->entries[i].mesh);
        found = (long)i;
        count++;
    }
    if (count == 0 && !opts->ignore_not_found)
        diag_error(diags, "not-found", &t->mark, "", "%s '%s' not found in any mesh", word,
                   t->name);
    if (count > 1) {
        diag_error(diags, "ambiguous", &t->mark, "",
                   "%s '%s' exists in %zu meshes (%s): say which with -m MESH", word, t->name,
                   count, meshes_text);
        return -1;
    }
    return found;
}

/* --- what needs a Secret --- */

/* The path below `path` at which `node` reads Secret `name` (`secret: NAME`), written into
 * `ret` (size bytes); false when it does not. */
static bool conf_reads_secret(const mnode *node, const char *name, const char *path, char *ret,
                              size_t size)
{
    char sub[512];
    if (!node)
        return false;
    if (node->kind == MNODE_SEQ) {
        for (size_t i = 0; i < node->nitems; i++) {
            snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
            if (conf_reads_secret(node->items[i], name, sub, ret, size))
                return true;
        }
        return false;
    }
    if (node->kind != MNODE_MAP)
        return false;
    for (size_t i = 0; i < node->npairs; i++) {
        const char *key = node->pairs[i].key->scalar;
        const mnode *v = node->pairs[i].value;
        snprintf(sub, sizeof(sub), "%s.%s", path, key);
        if (strcmp(key, "secret") == 0 && v->kind == MNODE_SCALAR && str_eq(v->scalar, name)) {
            snprintf(ret, size, "%s", sub);
            return true;
        }
        if (conf_reads_secret(v, name, sub, ret, size))
            return true;
    }
    return false;
}

/* Whether `name` is one of the two Secrets in which a builtin backend keeps its CA
 * (ca_builtin.c: `<mesh>.ca-builtin-cert-<backend>`, `<mesh>.ca-builtin-key-<backend>`). */
static bool is_builtin_ca_secret(const char *mesh_name, const char *backend, const char *name)
{
    char cert[2 * STORE_NAME_MAX + 32], key[2 * STORE_NAME_MAX + 32];
    snprintf(cert, sizeof(cert), "%s.ca-builtin-cert-%s", mesh_name, backend);
    snprintf(key, sizeof(key), "%s.ca-builtin-key-%s", mesh_name, backend);
    return strcmp(name, cert) == 0 || strcmp(name, key) == 0;
}

/* Refuses deleting Secret `sec` while a backend of its (stored, not deleted) Mesh needs it.
 * Returns 0 or STORE_ENOMEM. */
static int check_secret(const store_entry *sec, const delete_target *t, const store_entry *m,
                        diag_list *diags)
{
    manifest_set *set = manifest_set_new();
    diag_list ignored = DIAG_LIST_INIT;
    char name[600];
    if (!set)
        return STORE_ENOMEM;
    snprintf(name, sizeof(name), "store:meshes/%s", m->name);
    manifest_load_buffer(set, name, m->value, m->len, &ignored);
    const mesh *mesh_obj = manifest_set_find_mesh(set, m->name);
    for (size_t b = 0; mesh_obj && b < mesh_obj->nbackends; b++) {
        const mesh_backend *be = &mesh_obj->backends[b];
        const char *backend = be->name.value ? be->name.value : "";
        char base[64], where[512];
        snprintf(base, sizeof(base), "mtls.backends[%zu].conf", b);
        if (conf_reads_secret(be->conf, sec->name, base, where, sizeof(where)))
            diag_error(diags, "secret-in-use", &t->mark, "",
                       "secret '%s' is used by backend '%s' of mesh '%s' (%s): remove the "
                       "backend from the mesh first (or delete the mesh)",
                       sec->name, backend, m->name, where);
        else if (str_eq(be->type.value, "builtin") &&
                 is_builtin_ca_secret(m->name, backend, sec->name))
            diag_error(diags, "secret-in-use", &t->mark, "",
                       "secret '%s' holds the CA of builtin backend '%s' of mesh '%s': without "
                       "it the controller would make a new CA that no dataplane trusts; remove "
                       "the backend first (add, switch, remove) or delete the mesh",
                       sec->name, backend, m->name);
    }
    manifest_set_free(set);
    diag_list_free(&ignored);
    return 0;
}

/* Refuses deleting Mesh `m` while Dataplanes not deleted by this call belong to it. */
static void check_mesh(const store_entry *m, const delete_target *t, const listing *dataplanes,
                       diag_list *diags)
{
    size_t left = 0;
    char names[512] = "";
    for (size_t i = 0; i < dataplanes->n; i++) {
        const store_entry *e = &dataplanes->entries[i];
        if (strcmp(e->mesh, m->name) != 0 || dataplanes->doomed[i])
            continue;
        if (left < DELETE_NAMES_SHOWN) {
            size_t used = strlen(names);
            snprintf(names + used, sizeof(names) - used, "%s%s", left ? ", " : "", e->name);
        }
        left++;
    }
    if (left == 0)
        return;
    char more[64] = "";
    if (left > DELETE_NAMES_SHOWN)
        snprintf(more, sizeof(more), " and %zu more", left - DELETE_NAMES_SHOWN);
    diag_error(diags, "mesh-has-dataplanes", &t->mark, "",
               "mesh '%s' still has %zu dataplane%s (%s%s): delete the dataplanes first "
               "('meshca delete dataplane NAME -m %s'), then the mesh",
               m->name, left, left == 1 ? "" : "s", names, more, m->name);
}

/* --- records that go with a Dataplane or a Mesh --- */

/* The dataplane a stored token belongs to (its JSON "dataplane"), copied into ret. */
static bool token_dataplane(const store_entry *e, char *ret, size_t size)
{
    json_error_t err;
    json_t *obj = json_loadb(e->value, e->len, 0, &err);
    const char *dp = json_string_value(json_object_get(obj, "dataplane"));
    bool ok = dp && (size_t)snprintf(ret, size, "%s", dp) < size;
    json_decref(obj);
    return ok;
}

/* Identities, statuses and tokens of deleted Dataplanes and Meshes; mesh statuses of deleted
 * Meshes. `l` (the caller's, kept until the transaction ran: the ops borrow its keys) gets the
 * listing of `kind`. */
static int plan_records(store *s, const char *kind, const listing *meshes,
                        const listing *dataplanes, listing *l, plan *p)
{
    int rc = listing_load(s, kind, l);
    bool tokens = strcmp(kind, DELETE_TOKENS_KIND) == 0;
    for (size_t i = 0; rc == 0 && i < l->n; i++) {
        const store_entry *e = &l->entries[i];
        bool gone = mesh_doomed(meshes, e->mesh);
        if (!gone && strcmp(kind, STATE_MESHSTATUS) != 0) {
            char dp[STORE_NAME_MAX + 1];
            const char *dp_name = e->name;
            if (tokens)
                dp_name = token_dataplane(e, dp, sizeof(dp)) ? dp : NULL;
            long d = dp_name ? listing_find(dataplanes, e->mesh, dp_name) : -1;
            gone = d >= 0 && dataplanes->doomed[d];
        }
        if (gone) {
            rc = plan_op(p, STORE_OP_DELETE, e);
            p->result->nrecords++;
        }
    }
    return rc;
}

/* --- the whole call --- */

enum { L_MESHES, L_DATAPLANES, L_SECRETS, L_MESHSTATUS, L_IDENTITIES, L_DPSTATUS, L_TOKENS,
       L_COUNT };

int delete_resources(store *s, const delete_target *targets, size_t ntargets,
                     const delete_options *opts, diag_list *diags, delete_result *ret)
{
    listing all[L_COUNT] = {{0}};
    listing *meshes = &all[L_MESHES], *dataplanes = &all[L_DATAPLANES], *secrets = &all[L_SECRETS];
    delete_result result = {0};
    plan p = {.result = &result};
    long *found = calloc(ntargets + 1, sizeof(*found));
    bool *checked = NULL;   /* per Mesh: its version is checked by the transaction */
    int rc = found ? 0 : STORE_ENOMEM;
    for (int k = L_MESHES; rc == 0 && k <= L_SECRETS; k++)
        rc = listing_load(s, k == L_MESHES ? STATE_MESHES : k == L_DATAPLANES ? STATE_DATAPLANES
                                                                              : STATE_SECRETS,
                          &all[k]);
    if (rc == 0 && !(checked = calloc(meshes->n + 1, sizeof(*checked))))
        rc = STORE_ENOMEM;
    if (rc < 0)
        goto out;

    /* Every target first, so the checks know all that this call deletes. */
    bool errors_before = diag_has_errors(diags);
    for (size_t t = 0; t < ntargets; t++) {
        listing *l = listing_of(targets[t].kind, meshes, dataplanes, secrets);
        found[t] = resolve(&targets[t], l, opts, diags);
        if (found[t] >= 0 && l->doomed[found[t]])
            found[t] = -1;   /* named twice: deleted once */
        else if (found[t] >= 0)
            l->doomed[found[t]] = true;
    }
    for (size_t t = 0; t < ntargets && rc == 0; t++) {
        if (found[t] < 0)
            continue;
        if (targets[t].kind == RESOURCE_MESH) {
            check_mesh(&meshes->entries[found[t]], &targets[t], dataplanes, diags);
        } else if (targets[t].kind == RESOURCE_SECRET) {
            const store_entry *sec = &secrets->entries[found[t]];
            long m = listing_find(meshes, sec->mesh, sec->mesh);
            if (m < 0 || meshes->doomed[m])
                continue;   /* no Mesh left to need it */
            rc = check_secret(sec, &targets[t], &meshes->entries[m], diags);
            if (rc == 0 && !checked[m]) {
                /* A backend that starts reading the Secret meanwhile fails the transaction. */
                checked[m] = true;
                rc = plan_op(&p, STORE_OP_CHECK, &meshes->entries[m]);
            }
        }
    }
    if (rc < 0)
        goto out;
    result.refused = errors_before || diag_has_errors(diags);
    if (result.refused)
        goto out;

    for (size_t t = 0; t < ntargets && rc == 0; t++)
        if (found[t] >= 0)
            rc = plan_removed(&p, targets[t].kind,
                              &listing_of(targets[t].kind, meshes, dataplanes, secrets)
                                   ->entries[found[t]], NULL);
    /* A deleted Mesh takes its Secrets along: the builtin CA keys are its own, and a Secret
     * without its Mesh serves nothing (Kuma deletes a mesh's resources with it). */
    for (size_t i = 0; i < secrets->n && rc == 0; i++) {
        if (secrets->doomed[i] || !mesh_doomed(meshes, secrets->entries[i].mesh))
            continue;
        secrets->doomed[i] = true;
        char owner[STORE_NAME_MAX + 8];
        snprintf(owner, sizeof(owner), "mesh/%s", secrets->entries[i].mesh);
        rc = plan_removed(&p, RESOURCE_SECRET, &secrets->entries[i], owner);
    }
    static const char *const record_kinds[] = {
        [L_MESHSTATUS] = STATE_MESHSTATUS, [L_IDENTITIES] = STATE_IDENTITIES,
        [L_DPSTATUS] = STATE_DPSTATUS, [L_TOKENS] = DELETE_TOKENS_KIND,
    };
    for (int k = L_MESHSTATUS; k < L_COUNT && rc == 0; k++) {
        /* Tokens: the dataplane API's kind, once the store has it (hook for token revocation). */
        if (!store_kind_valid(record_kinds[k]))
            continue;
        rc = plan_records(s, record_kinds[k], meshes, dataplanes, &all[k], &p);
    }
    if (rc < 0 || opts->dry_run || p.nops == 0)
        goto out;
    rc = store_txn(s, p.ops, p.nops);
    if (rc == STORE_ECONFLICT)
        diag_error(diags, "conflict", NULL, "",
                   "the store changed while this delete ran (something was applied or deleted "
                   "meanwhile); nothing deleted, re-run delete");
out:
    for (int k = 0; k < L_COUNT; k++)
        if (all[k].kind)
            listing_free(&all[k]);
    free(found);
    free(checked);
    free(p.ops);
    if (rc < 0) {
        delete_result_free(&result);
        return rc;
    }
    *ret = result;
    return 0;
}

void delete_result_free(delete_result *result)
{
    if (!result)
        return;
    for (size_t i = 0; i < result->nremoved; i++) {
        free(result->removed[i].mesh);
        free(result->removed[i].name);
        free(result->removed[i].owner);
    }
    free(result->removed);
    memset(result, 0, sizeof(*result));
}
