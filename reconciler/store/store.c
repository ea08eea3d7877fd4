/* store.c - store front end: URL scheme table, name checks shared by every backend, vtable calls, messages. */
#include "reconciler/store.h"
#include "reconciler/store/backend.h"
#include "reconciler/failpoint.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* store_fence: the key every write is checked against, and the local deadline for writes. */
struct store_fence_state {
    int on;
    char kind[32], mesh[STORE_NAME_MAX + 1], name[STORE_NAME_MAX + 1];
    uint64_t version;
    const int64_t *deadline_ms; /* CLOCK_MONOTONIC, read atomically at each write; NULL = none */
};

struct store {
    const struct store_ops *ops;
    void *impl;
    struct store_fence_state fence;
    int txn_open; /* store_txn_open: every write goes through it until store_txn_close */
    int txn_since; /* opened by store_txn_open_since with a revision: no fence may be set */
    char err[MESHCA_ERRBUF]; /* the last failed call's message (store_errmsg) */
};

static const char *const kinds[] = {
    "meshes", "dataplanes", "secrets", "identities", "dpstatus", "meshstatus", "tokens", "controlplane", "bundles",
};

static int open_sqlite(const char *rest, const store_open_options *opts, const struct store_ops **ret_ops,
                       void **ret_impl, char *err) {
    (void) opts;
    return store_sqlite_open(rest, ret_ops, ret_impl, err);
}

static int open_etcd(const char *rest, const store_open_options *opts, const struct store_ops **ret_ops,
                     void **ret_impl, char *err) {
    return store_etcd_open(rest, 0, opts, ret_ops, ret_impl, err);
}

static int open_etcds(const char *rest, const store_open_options *opts, const struct store_ops **ret_ops,
                      void **ret_impl, char *err) {
    return store_etcd_open(rest, 1, opts, ret_ops, ret_impl, err);
}

/*
 * URL schemes. A scheme with no open function is known but not available: its code and
 * message say why, so a user of a retired or future scheme is told what to use instead.
 */
static const struct scheme {
    const char *name;
    store_open_fn open;
    int code;
    const char *why;
} schemes[] = {
    { "sqlite", open_sqlite, 0, NULL },
    { "etcd", open_etcd, 0, NULL },
    { "etcds", open_etcds, 0, NULL },
    { "file", NULL, STORE_EINVAL, "the file:// store was retired; use sqlite://PATH (the default)" },
};

const char *store_strerror(int code) {
    switch (code) {
    case STORE_OK: return "success";
    case STORE_EINVAL: return "invalid argument";
    case STORE_ENOTFOUND: return "object not found";
    case STORE_ECONFLICT: return "version conflict";
    case STORE_EIO: return "store I/O error";
    case STORE_EUNSUPPORTED: return "store backend not supported";
    case STORE_ENOMEM: return "out of memory";
    case STORE_EUNAVAILABLE: return "store temporarily unavailable";
    case STORE_ECOMPACTED: return "revision compacted";
    case STORE_EINSECURE: return "store permissions too open";
    default: return "unknown store error";
    }
}

const char *const *store_kinds(size_t *ret_count)
{
    *ret_count = sizeof(kinds) / sizeof(kinds[0]);
    return kinds;
}

int store_kind_valid(const char *kind) {
    if (!kind)
        return 0;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(kind, kinds[i]) == 0)
            return 1;
    return 0;
}

static int is_alnum_lower(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Checked here, before any backend turns a name into a path or key, so "../" never gets far. */
int store_name_valid(const char *name) {
    size_t n;

    if (!name)
        return 0;
    n = strnlen(name, STORE_NAME_MAX + 1);
    if (n == 0 || n > STORE_NAME_MAX)
        return 0;
    if (!is_alnum_lower(name[0]) || !is_alnum_lower(name[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!is_alnum_lower(c) && c != '-' && c != '.')
            return 0;
        if (c == '.' && name[i + 1] == '.')
            return 0;
    }
    return 1;
}

/* A refused name may hold anything: show at most 64 printable bytes of it. */
static const char *printable(const char *in, char *buf, size_t buflen) {
    size_t j = 0;

    if (!in)
        return "(null)";
    for (size_t i = 0; in[i] && j + 4 < buflen && i < 64; i++)
        buf[j++] = (in[i] >= 0x20 && in[i] < 0x7f) ? in[i] : '?';
    if (in[0] && strnlen(in, 65) > 64 && j + 4 < buflen) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j] = '\0';
    return buf;
}

static int mesh_is_object(const char *kind) {
    return strcmp(kind, "meshes") == 0 || strcmp(kind, "meshstatus") == 0 || strcmp(kind, "bundles") == 0;
}

/* Validates key and fills *out with the canonical form (mesh == name for mesh-level kinds). */
static int key_check(const store_key *key, store_key *out, char *err) {
    char a[80], b[80], c[80];

    if (!key)
        return meshca_fail(err, STORE_EINVAL, "store: no key");
    if (!store_kind_valid(key->kind))
        return meshca_fail(err, STORE_EINVAL, "store: unknown kind '%s'", printable(key->kind, a, sizeof(a)));
    if (!store_name_valid(key->name))
        return meshca_fail(err, STORE_EINVAL,
                           "store: %s: invalid name '%s' (want [a-z0-9]([-a-z0-9.]*[a-z0-9])?, at most %d characters)",
                           key->kind, printable(key->name, a, sizeof(a)), STORE_NAME_MAX);
    if (mesh_is_object(key->kind)) {
        if (key->mesh && strcmp(key->mesh, key->name) != 0)
            return meshca_fail(err, STORE_EINVAL, "store: %s/%s: mesh '%s' differs from the name", key->kind,
                               key->name, printable(key->mesh, b, sizeof(b)));
        *out = (store_key) { key->kind, key->name, key->name };
        return STORE_OK;
    }
    if (!store_name_valid(key->mesh))
        return meshca_fail(err, STORE_EINVAL, "store: %s/?/%s: invalid mesh name '%s'", key->kind,
                           printable(key->name, c, sizeof(c)), printable(key->mesh, b, sizeof(b)));
    *out = *key;
    return STORE_OK;
}

/* An option not given takes its environment variable; empty counts as not given. */
static const char *option_or_env(const char *given, const char *env) {
    const char *v = given && *given ? given : getenv(env);

    return v && *v ? v : NULL;
}

int store_open(const char *url, store **ret, char *errbuf) {
    return store_open_with(url, NULL, ret, errbuf);
}

int store_open_with(const char *url, const store_open_options *given, store **ret, char *errbuf) {
    store_open_options opts = STORE_OPEN_OPTIONS_INIT;
    char err[MESHCA_ERRBUF] = "", shown[80];
    const struct store_ops *ops = NULL;
    const struct scheme *sc = NULL;
    const char *sep;
    void *impl = NULL;
    store *s;
    size_t n;
    int r;

    if (!ret) {
        r = meshca_fail(err, STORE_EINVAL, "store_open: no output handle");
        goto fail;
    }
    if (!url || !*url)
        url = getenv("MESHCA_STORE");
    if (!url || !*url)
        url = STORE_DEFAULT_URL;

    sep = strstr(url, "://");
    n = sep ? (size_t) (sep - url) : 0;
    for (size_t i = 0; sep && i < sizeof(schemes) / sizeof(schemes[0]); i++)
        if (strlen(schemes[i].name) == n && strncmp(url, schemes[i].name, n) == 0)
            sc = &schemes[i];
    if (!sc) {
        r = meshca_fail(err, STORE_EINVAL,
                        "store URL '%s': unknown scheme (expected sqlite://PATH or etcd://HOST:PORT)",
                        printable(url, shown, sizeof(shown)));
        goto fail;
    }
    if (!sc->open) {
        r = meshca_fail(err, sc->code, "store URL '%s': %s", printable(url, shown, sizeof(shown)), sc->why);
        goto fail;
    }
    if (!sep[3]) {
        r = meshca_fail(err, STORE_EINVAL, "store URL '%s': missing path after %s://", url, sc->name);
        goto fail;
    }
    if (given)
        opts = *given;
    opts.etcd_cacert = option_or_env(opts.etcd_cacert, "MESHCA_ETCD_CACERT");
    opts.etcd_cert = option_or_env(opts.etcd_cert, "MESHCA_ETCD_CERT");
    opts.etcd_key = option_or_env(opts.etcd_key, "MESHCA_ETCD_KEY");
    r = sc->open(sep + 3, &opts, &ops, &impl, err);
    if (r < 0)
        goto fail;

    s = calloc(1, sizeof(*s));
    if (!s) {
        ops->close(impl);
        r = meshca_fail(err, STORE_ENOMEM, "store_open: out of memory");
        goto fail;
    }
    s->ops = ops;
    s->impl = impl;
    *ret = s;
    return STORE_OK;
fail:
    /* Truncation of a message is acceptable: it is only ever shown to a human. */
    if (errbuf)
        (void) snprintf(errbuf, MESHCA_ERRBUF, "%s", err);
    return r;
}

void store_close(store *s) {
    if (!s)
        return;
    s->ops->close(s->impl);
    free(s);
}

const char *store_errmsg(const store *s) {
    return s ? s->err : "";
}

/* Every call starts with a clean message, so store_errmsg never shows an older failure. */
static void begin(store *s) {
    s->err[0] = '\0';
}

/* A failure with no message from below still gets one: the code's text. */
static int done(store *s, int r) {
    if (r < 0 && !s->err[0])
        (void) snprintf(s->err, sizeof(s->err), "store: %s", store_strerror(r));
    return r;
}

static int64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Every write reaches the backend here. With a fence set, the write carries a check of the
 * fence key's version in the same transaction (so a deposed leader's write fails in the store),
 * and past the fence's deadline it is refused before reaching the store at all (a leader that
 * could not renew its lease stops writing by its own clock, before the store ends the lease).
 */
/* A write of its own while a transaction is open on s (store_txn_open). */
static int txn_open_refused(store *s) {
    return meshca_fail(s->err, STORE_EINVAL, "store: a transaction is open (store_txn_open): its writer adds to it");
}

/* A whole transaction, or a part of the one open (store_txn_add). */
static int backend_txn(store *s, const store_op *ops, size_t nops, uint64_t *ret_version) {
    if (s->txn_open)
        return s->ops->txn_add(s->impl, ops, nops, s->err);
    return s->ops->txn(s->impl, ops, nops, ret_version, s->err);
}

/* The fence's deadline passed: the leader stops writing by its own clock. */
static int fence_expired(store *s) {
    const struct store_fence_state *f = &s->fence;

    if (f->on && f->deadline_ms && monotonic_ms() >= __atomic_load_n(f->deadline_ms, __ATOMIC_ACQUIRE))
        return meshca_fail(s->err, STORE_ECONFLICT, "store: write refused: the fence on %s/%s/%s has expired "
                           "(leadership lost: lease not renewed in time)", f->kind, f->mesh, f->name);
    return STORE_OK;
}

static int fenced_txn(store *s, const store_op *ops, size_t nops, uint64_t *ret_version) {
    const struct store_fence_state *f = &s->fence;
    store_op *all;
    int r;

    if (!f->on)
        return backend_txn(s, ops, nops, ret_version);
    if ((r = fence_expired(s)) < 0)
        return r;
    for (size_t i = 0; i < nops; i++)
        if (!strcmp(ops[i].key.kind, f->kind) && !strcmp(ops[i].key.mesh, f->mesh) &&
            !strcmp(ops[i].key.name, f->name))
            return backend_txn(s, ops, nops, ret_version); /* the caller checks it itself */
    all = malloc((nops + 1) * sizeof(*all));
    if (!all)
        return meshca_fail(s->err, STORE_ENOMEM, "store: out of memory");
    memcpy(all, ops, nops * sizeof(*all));
    all[nops] = (store_op) { .type = STORE_OP_CHECK, .key = { f->kind, f->mesh, f->name },
                             .expected_version = f->version };
    r = backend_txn(s, all, nops + 1, ret_version);
    free(all);
    return r;
}

int store_fence(store *s, const store_key *key, uint64_t version, const int64_t *deadline_ms) {
    store_key k;
    int r;

    if (!s)
        return STORE_EINVAL;
    begin(s);
    if (!key) {
        memset(&s->fence, 0, sizeof(s->fence));
        return STORE_OK;
    }
    /* Its check would be one the open transaction does not make (store_txn_open_since). */
    if (s->txn_since)
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: no fence is set while a "
                                   "transaction opened since a revision is open"));
    if (version == 0 || version == STORE_ANY_VERSION)
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: fence with expected version %s",
                                   version ? "any" : "0"));
    r = key_check(key, &k, s->err);
    if (r < 0)
        return done(s, r);
    if (strlen(k.kind) >= sizeof(s->fence.kind))
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: fence: kind too long"));
    snprintf(s->fence.kind, sizeof(s->fence.kind), "%s", k.kind);
    snprintf(s->fence.mesh, sizeof(s->fence.mesh), "%s", k.mesh);
    snprintf(s->fence.name, sizeof(s->fence.name), "%s", k.name);
    s->fence.version = version;
    s->fence.deadline_ms = deadline_ms;
    s->fence.on = 1;
    return STORE_OK;
}

int store_get(store *s, const store_key *key, char **ret_value, size_t *ret_len, uint64_t *ret_version) {
    store_key k;
    int r;

    if (!s)
        return STORE_EINVAL;
    begin(s);
    if (!ret_value)
        return done(s, STORE_EINVAL);
    r = key_check(key, &k, s->err);
    if (r < 0)
        return done(s, r);
    return done(s, s->ops->get(s->impl, &k, ret_value, ret_len, ret_version, s->err));
}

int store_put(store *s, const store_key *key, const char *value, size_t len, uint64_t expected_version,
              uint64_t *ret_version) {
    store_op op = { .type = STORE_OP_PUT, .value = value, .len = len, .expected_version = expected_version };
    int r;

    if (!s)
        return STORE_EINVAL;
    begin(s);
    if ((!value && len > 0) || len > STORE_VALUE_MAX)
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: value missing or larger than %u bytes",
                                   STORE_VALUE_MAX));
    r = key_check(key, &op.key, s->err);
    if (r < 0)
        return done(s, r);
    if (!op.value)
        op.value = "";
    if (s->txn_open)
        return done(s, txn_open_refused(s));
    return done(s, fenced_txn(s, &op, 1, ret_version));
}

int store_delete(store *s, const store_key *key, uint64_t expected_version) {
    store_op op = { .type = STORE_OP_DELETE, .expected_version = expected_version };
    int r;

    if (!s)
        return STORE_EINVAL;
    begin(s);
    if (expected_version == 0)
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: delete with expected version 0"));
    r = key_check(key, &op.key, s->err);
    if (r < 0)
        return done(s, r);
    if (s->txn_open)
        return done(s, txn_open_refused(s));
    return done(s, fenced_txn(s, &op, 1, NULL));
}

int store_list(store *s, const char *kind, const char *mesh_name, store_entry **ret_entries, size_t *ret_count) {
    char a[80];

    if (!s)
        return STORE_EINVAL;
    begin(s);
    if (!ret_entries || !ret_count)
        return done(s, STORE_EINVAL);
    if (!store_kind_valid(kind))
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: unknown kind '%s'", printable(kind, a, sizeof(a))));
    if (mesh_name && !store_name_valid(mesh_name))
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: %s: invalid mesh name '%s'", kind,
                                   printable(mesh_name, a, sizeof(a))));
    return done(s, s->ops->list(s->impl, kind, mesh_name, ret_entries, ret_count, s->err));
}

int store_scan(store *s, const char *kind, const char *mesh_name, store_scan_fn fn, void *userdata) {
    char a[80];
    store_entry *e = NULL;
    size_t n = 0;
    int r;

    if (!s)
        return STORE_EINVAL;
    begin(s);
    if (!fn)
        return done(s, STORE_EINVAL);
    if (!store_kind_valid(kind))
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: unknown kind '%s'", printable(kind, a, sizeof(a))));
    if (mesh_name && !store_name_valid(mesh_name))
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: %s: invalid mesh name '%s'", kind,
                                   printable(mesh_name, a, sizeof(a))));
    if (s->ops->scan)
        return done(s, s->ops->scan(s->impl, kind, mesh_name, fn, userdata, s->err));
    r = s->ops->list(s->impl, kind, mesh_name, &e, &n, s->err);
    for (size_t i = 0; r == STORE_OK && i < n; i++)
        r = fn(userdata, &e[i]);
    store_entries_free(e, n);
    return done(s, r);
}

int store_backend_list_keys(store *s, const char *kind, const char *mesh_name, store_entry **ret_entries,
                            size_t *ret_count) {
    char a[80];

    if (!s || !ret_entries || !ret_count)
        return STORE_EINVAL;
    if (!s->ops->list_keys)
        return 1;
    begin(s);
    if (!store_kind_valid(kind))
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: unknown kind '%s'", printable(kind, a, sizeof(a))));
    if (mesh_name && !store_name_valid(mesh_name))
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: %s: invalid mesh name '%s'", kind,
                                   printable(mesh_name, a, sizeof(a))));
    return done(s, s->ops->list_keys(s->impl, kind, mesh_name, ret_entries, ret_count, s->err));
}

int store_scan_range(store *s, const char *kind, const char *mesh_name, const char *from, const char *to,
                     store_scan_fn fn, void *userdata) {
    char a[80];

    if (!s)
        return STORE_EINVAL;
    begin(s);
    if (!fn || !from || !to)
        return done(s, STORE_EINVAL);
    if (!store_kind_valid(kind))
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: unknown kind '%s'", printable(kind, a, sizeof(a))));
    if (!mesh_name || !store_name_valid(mesh_name))
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: %s: invalid mesh name '%s'", kind,
                                   printable(mesh_name ? mesh_name : "(null)", a, sizeof(a))));
    if (!store_name_valid(from) || !store_name_valid(to))
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: %s/%s: invalid name in range '%s'", kind,
                                   mesh_name, printable(store_name_valid(from) ? to : from, a, sizeof(a))));
    if (strcmp(from, to) > 0)
        return done(s, STORE_OK);
    /* Test-only: a store that fails at the N-th range, as a lost connection or a locked file. */
    int r = FAILPOINT("store.scan.range", s->err);
    if (r < 0)
        return done(s, r);
    if (!s->ops->scan_range)
        return done(s, STORE_EUNSUPPORTED);
    return done(s, s->ops->scan_range(s->impl, kind, mesh_name, from, to, fn, userdata, s->err));
}

void store_entries_free(store_entry *entries, size_t count) {
    if (!entries)
        return;
    for (size_t i = 0; i < count; i++) {
        free(entries[i].kind);
        free(entries[i].mesh);
        free(entries[i].name);
        free(entries[i].value);
    }
    free(entries);
}

static int key_cmp(const store_key *a, const store_key *b) {
    int c = strcmp(a->kind, b->kind);

    if (!c)
        c = strcmp(a->mesh, b->mesh);
    return c ? c : strcmp(a->name, b->name);
}

static int op_ptr_cmp(const void *a, const void *b) {
    const store_op *const *x = a, *const *y = b;

    return key_cmp(&(*x)->key, &(*y)->key);
}

/* One op per key, as etcd refuses duplicate keys in a txn: sorted, since a txn may hold 10^5 ops. */
static int check_unique(const store_op *ops, size_t nops, char *err) {
    const store_op **sorted = malloc(nops * sizeof(*sorted));
    int r = STORE_OK;

    if (!sorted)
        return meshca_fail(err, STORE_ENOMEM, "store: out of memory");
    for (size_t i = 0; i < nops; i++)
        sorted[i] = &ops[i];
    qsort(sorted, nops, sizeof(*sorted), op_ptr_cmp);
    for (size_t i = 1; i < nops; i++)
        if (key_cmp(&sorted[i - 1]->key, &sorted[i]->key) == 0) {
            r = meshca_fail(err, STORE_EINVAL, "store: txn: %s/%s/%s appears more than once", sorted[i]->key.kind,
                            sorted[i]->key.mesh, sorted[i]->key.name);
            break;
        }
    free(sorted);
    return r;
}

int store_txn_at(store *s, const char *failpoint, const store_op *ops, size_t nops) {
    int r;

    if (!s)
        return STORE_EINVAL;
    begin(s);
    r = FAILPOINT(failpoint, s->err);
    return r < 0 ? done(s, r) : store_txn(s, ops, nops);
}

/* store_txn, or a part of the open transaction (part): the ops validated, then applied. */
static int txn_ops(store *s, const store_op *ops, size_t nops, int part) {
    store_op *canon;
    int r = STORE_OK;

    if (!s)
        return STORE_EINVAL;
    begin(s);
    if (s->txn_open != part)
        return done(s, part ? meshca_fail(s->err, STORE_EINVAL, "store: no transaction is open")
                            : txn_open_refused(s));
    if ((!ops && nops > 0) || nops > STORE_TXN_MAX)
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: txn of %zu ops (at most %u)", nops, STORE_TXN_MAX));
    if (nops == 0)
        return STORE_OK;

    /* Backends get canonical keys, so validate and copy before anything reaches them. */
    canon = calloc(nops, sizeof(*canon));
    if (!canon)
        return done(s, meshca_fail(s->err, STORE_ENOMEM, "store: out of memory"));
    for (size_t i = 0; i < nops && r == STORE_OK; i++) {
        canon[i] = ops[i];
        r = key_check(&ops[i].key, &canon[i].key, s->err);
        if (r < 0)
            break;
        switch (ops[i].type) {
        case STORE_OP_PUT:
            if ((!ops[i].value && ops[i].len > 0) || ops[i].len > STORE_VALUE_MAX || ops[i].lease < 0)
                r = meshca_fail(s->err, STORE_EINVAL, "store: txn: %s/%s/%s: value missing, too large, or bad lease",
                                canon[i].key.kind, canon[i].key.mesh, canon[i].key.name);
            if (!ops[i].value)
                canon[i].value = "";
            break;
        case STORE_OP_DELETE:
        case STORE_OP_CHECK:
            /* A check against "any version" would check nothing, so it is a caller's mistake. */
            if (ops[i].expected_version == (ops[i].type == STORE_OP_DELETE ? 0 : STORE_ANY_VERSION))
                r = meshca_fail(s->err, STORE_EINVAL, "store: txn: %s/%s/%s: %s with expected version %s",
                                canon[i].key.kind, canon[i].key.mesh, canon[i].key.name,
                                ops[i].type == STORE_OP_DELETE ? "delete" : "check",
                                ops[i].type == STORE_OP_DELETE ? "0" : "any");
            canon[i].value = NULL;
            canon[i].len = 0;
            canon[i].lease = 0;
            break;
        default:
            r = meshca_fail(s->err, STORE_EINVAL, "store: txn: unknown op type %d", (int) ops[i].type);
        }
    }
    if (r == STORE_OK)
        r = check_unique(canon, nops, s->err);
    if (r == STORE_OK)
        r = fenced_txn(s, canon, nops, NULL);
    free(canon);
    return done(s, r);
}

int store_txn(store *s, const store_op *ops, size_t nops) {
    return txn_ops(s, ops, nops, 0);
}

int store_txn_open(store *s) {
    return store_txn_open_since(s, STORE_NO_REVISION);
}

int store_txn_open_since(store *s, uint64_t since) {
    int r;

    if (!s)
        return STORE_EINVAL;
    begin(s);
    if (!s->ops->txn_open)
        return done(s, meshca_fail(s->err, STORE_EUNSUPPORTED, "store: %s holds no transaction open",
                                   s->ops->name));
    if (s->txn_open)
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: a transaction is already open"));
    /* A leader renews its lease through the store's write lock (SQLite), by its deadline: a
     * transaction held open through a long pass would make it lose the lease. */
    if (s->fence.on && s->fence.deadline_ms)
        return done(s, meshca_fail(s->err, STORE_EUNSUPPORTED, "store: no transaction is held open "
                                   "under a fence with a deadline (the lease renewal would wait for it)"));
    if ((r = fence_expired(s)) < 0)
        return done(s, r);
    /* The fence's check rides in every part, and its version was read whenever the fence was
     * set, not at `since`: a fenced handle's transaction checks every op. */
    if (s->fence.on)
        since = STORE_NO_REVISION;
    r = s->ops->txn_open(s->impl, since, s->err);
    s->txn_open = r == STORE_OK;
    s->txn_since = s->txn_open && since != STORE_NO_REVISION;
    return done(s, r);
}

int store_txn_add(store *s, const store_op *ops, size_t nops) {
    return txn_ops(s, ops, nops, 1);
}

int store_txn_close(store *s, const char *failpoint, bool commit) {
    int r = STORE_OK;

    if (!s)
        return STORE_EINVAL;
    begin(s);
    if (!s->txn_open)
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: no transaction is open"));
    s->txn_since = 0;
    /* Past the fence's deadline, or the failpoint armed: rolled back, nothing written. */
    if (commit && (r = fence_expired(s)) == STORE_OK && failpoint)
        r = FAILPOINT(failpoint, s->err);
    s->txn_open = 0;
    if (r < 0) {
        char why[MESHCA_ERRBUF];
        (void) snprintf(why, sizeof(why), "%s", s->err);
        (void) s->ops->txn_close(s->impl, 0, s->err);
        (void) snprintf(s->err, sizeof(s->err), "%s", why);
        return done(s, r);
    }
    return done(s, s->ops->txn_close(s->impl, commit, s->err));
}

size_t store_txn_limit(const store *s) {
    if (!s || !s->ops->txn_limit)
        return STORE_TXN_MAX;
    /* A fenced write carries one more op (the check of the fence key) in the same txn. */
    size_t limit = s->ops->txn_limit(s->impl);
    return s->fence.on && limit > 1 ? limit - 1 : limit;
}

int store_revision(store *s, uint64_t *ret) {
    if (!s)
        return STORE_EINVAL;
    begin(s);
    if (!ret)
        return done(s, STORE_EINVAL);
    return done(s, s->ops->revision(s->impl, ret, s->err));
}

int store_watch_pollfds(store *s, struct pollfd *fds, size_t max, size_t *ret_n, long *ret_timeout_ms) {
    if (!s)
        return STORE_EINVAL;
    if (!ret_n || !ret_timeout_ms || (!fds && max > 0))
        return STORE_EINVAL;
    if (!s->ops->watch_pollfds)
        return STORE_EUNSUPPORTED;
    *ret_n = s->ops->watch_pollfds(s->impl, fds, max, ret_timeout_ms);
    return STORE_OK;
}

int store_watch(store *s, uint64_t after_revision, int timeout_ms, store_event **ret_events, size_t *ret_count) {
    if (!s)
        return STORE_EINVAL;
    begin(s);
    if (!ret_events || !ret_count || timeout_ms < 0)
        return done(s, STORE_EINVAL);
    return done(s, s->ops->watch(s->impl, after_revision, timeout_ms, ret_events, ret_count, s->err));
}

void store_events_free(store_event *events, size_t count) {
    if (!events)
        return;
    for (size_t i = 0; i < count; i++) {
        free(events[i].kind);
        free(events[i].mesh);
        free(events[i].name);
    }
    free(events);
}

int store_lease_grant(store *s, int64_t ttl_seconds, store_lease_id *ret_id) {
    if (!s)
        return STORE_EINVAL;
    begin(s);
    if (!ret_id || ttl_seconds < 1 || ttl_seconds > STORE_LEASE_TTL_MAX)
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: lease ttl must be 1..%d seconds",
                                   STORE_LEASE_TTL_MAX));
    return done(s, s->ops->lease_grant(s->impl, ttl_seconds, ret_id, s->err));
}

int store_lease_keepalive(store *s, store_lease_id id) {
    if (!s)
        return STORE_EINVAL;
    begin(s);
    if (id <= 0)
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: lease id %lld is not a lease", (long long) id));
    return done(s, s->ops->lease_keepalive(s->impl, id, s->err));
}

int store_lease_revoke(store *s, store_lease_id id) {
    if (!s)
        return STORE_EINVAL;
    begin(s);
    if (id <= 0)
        return done(s, meshca_fail(s->err, STORE_EINVAL, "store: lease id %lld is not a lease", (long long) id));
    return done(s, s->ops->lease_revoke(s->impl, id, s->err));
}
