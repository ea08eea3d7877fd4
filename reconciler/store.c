/* store.c - store front end: URL dispatch, name checks shared by every backend, vtable calls. */
#include "reconciler/store.h"
#include "reconciler/store_backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct store {
    const struct store_ops *ops;
    void *impl;
};

static const char *const kinds[] = {
    "meshes", "dataplanes", "secrets", "identities", "dpstatus", "meshstatus",
    "tokens", "controlplane", /* dataplane token hashes; the control-plane CA (reconciler/api) */
};

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *errbuf, size_t errlen, const char *fmt, ...) {
    va_list ap;

    if (!errbuf || errlen == 0)
        return;
    va_start(ap, fmt);
    /* Truncation of a message is acceptable: it is only ever shown to a human. */
    (void) vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

const char *store_strerror(int code) {
    switch (code) {
    case STORE_OK: return "success";
    case STORE_EINVAL: return "invalid argument";
    case STORE_ENOTFOUND: return "object not found";
    case STORE_ECONFLICT: return "version conflict";
    case STORE_EIO: return "store I/O error";
    case STORE_EUNSUPPORTED: return "store backend not supported";
    case STORE_ENOMEM: return "out of memory";
    default: return "unknown store error";
    }
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

static int mesh_is_object(const char *kind) {
    return strcmp(kind, "meshes") == 0 || strcmp(kind, "meshstatus") == 0;
}

/* Validates key and fills *out with the canonical form (mesh == name for mesh-level kinds). */
static int key_check(const store_key *key, store_key *out) {
    if (!key || !store_kind_valid(key->kind) || !store_name_valid(key->name))
        return STORE_EINVAL;
    if (mesh_is_object(key->kind)) {
        if (key->mesh && strcmp(key->mesh, key->name) != 0)
            return STORE_EINVAL;
        *out = (store_key) { key->kind, key->name, key->name };
        return STORE_OK;
    }
    if (!store_name_valid(key->mesh))
        return STORE_EINVAL;
    *out = *key;
    return STORE_OK;
}

static int starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

int store_open(const char *url, store **ret, char *errbuf, size_t errlen) {
    const struct store_ops *ops = NULL;
    void *impl = NULL;
    store *s;
    int r;

    if (!ret) {
        set_err(errbuf, errlen, "store_open: no output handle");
        return STORE_EINVAL;
    }
    if (!url || !*url)
        url = getenv("MESHCA_STORE");
    if (!url || !*url)
        url = "file://.meshca";

    if (starts_with(url, "file://")) {
        const char *dir = url + strlen("file://");
        if (!*dir) {
            set_err(errbuf, errlen, "store URL '%s': missing directory after file://", url);
            return STORE_EINVAL;
        }
        ops = &store_file_ops;
        r = store_file_open(dir, &impl, errbuf, errlen);
        if (r < 0)
            return r;
    } else if (starts_with(url, "etcd://")) {
        set_err(errbuf, errlen, "store URL '%s': the etcd store is not implemented in this build yet; use file://DIR",
                url);
        return STORE_EUNSUPPORTED;
    } else {
        set_err(errbuf, errlen, "store URL '%s': unknown scheme (expected file://DIR or etcd://HOST:PORT)", url);
        return STORE_EINVAL;
    }

    s = calloc(1, sizeof(*s));
    if (!s) {
        ops->close(impl);
        set_err(errbuf, errlen, "store_open: out of memory");
        return STORE_ENOMEM;
    }
    s->ops = ops;
    s->impl = impl;
    *ret = s;
    return STORE_OK;
}

void store_close(store *s) {
    if (!s)
        return;
    s->ops->close(s->impl);
    free(s);
}

int store_get(store *s, const store_key *key, char **ret_value, size_t *ret_len, uint64_t *ret_version) {
    store_key k;
    int r;

    if (!s || !ret_value)
        return STORE_EINVAL;
    r = key_check(key, &k);
    if (r < 0)
        return r;
    return s->ops->get(s->impl, &k, ret_value, ret_len, ret_version);
}

int store_put(store *s, const store_key *key, const char *value, size_t len, uint64_t expected_version,
              uint64_t *ret_version) {
    store_key k;
    int r;

    if (!s || (!value && len > 0) || len > STORE_VALUE_MAX)
        return STORE_EINVAL;
    r = key_check(key, &k);
    if (r < 0)
        return r;
    return s->ops->put(s->impl, &k, value ? value : "", len, expected_version, ret_version);
}

int store_delete(store *s, const store_key *key, uint64_t expected_version) {
    store_key k;
    int r;

    if (!s || expected_version == 0)
        return STORE_EINVAL;
    r = key_check(key, &k);
    if (r < 0)
        return r;
    return s->ops->del(s->impl, &k, expected_version);
}

int store_list(store *s, const char *kind, const char *mesh, store_entry **ret_entries, size_t *ret_count) {
    if (!s || !ret_entries || !ret_count || !store_kind_valid(kind))
        return STORE_EINVAL;
    if (mesh && !store_name_valid(mesh))
        return STORE_EINVAL;
    return s->ops->list(s->impl, kind, mesh, ret_entries, ret_count);
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

static int same_key(const store_key *a, const store_key *b) {
    return strcmp(a->kind, b->kind) == 0 && strcmp(a->mesh, b->mesh) == 0 && strcmp(a->name, b->name) == 0;
}

int store_txn(store *s, const store_op *ops, size_t nops) {
    store_op *canon;
    int r = STORE_OK;

    if (!s || (!ops && nops > 0) || nops > STORE_TXN_MAX)
        return STORE_EINVAL;
    if (nops == 0)
        return STORE_OK;

    /* Backends get canonical keys, so validate and copy before anything reaches them. */
    canon = calloc(nops, sizeof(*canon));
    if (!canon)
        return STORE_ENOMEM;
    for (size_t i = 0; i < nops; i++) {
        canon[i] = ops[i];
        r = key_check(&ops[i].key, &canon[i].key);
        if (r < 0)
            goto out;
        if (ops[i].type == STORE_OP_PUT) {
            if ((!ops[i].value && ops[i].len > 0) || ops[i].len > STORE_VALUE_MAX) {
                r = STORE_EINVAL;
                goto out;
            }
            if (!ops[i].value)
                canon[i].value = "";
        } else if (ops[i].type == STORE_OP_DELETE) {
            if (ops[i].expected_version == 0) {
                r = STORE_EINVAL;
                goto out;
            }
        } else {
            r = STORE_EINVAL;
            goto out;
        }
        /* One write per key, as etcd refuses duplicate keys in a txn; quadratic is fine at STORE_TXN_MAX. */
        for (size_t j = 0; j < i; j++)
            if (same_key(&canon[j].key, &canon[i].key)) {
                r = STORE_EINVAL;
                goto out;
            }
    }
    r = s->ops->txn(s->impl, canon, nops);
out:
    free(canon);
    return r;
}

int store_revision(store *s, uint64_t *ret) {
    if (!s || !ret)
        return STORE_EINVAL;
    return s->ops->revision(s->impl, ret);
}
