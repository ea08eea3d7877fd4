/* etcd_keys.c - the store's key layout, version compares, leader fencing and txn splitting on etcd
 * (pure functions). */
#include "reconciler/store/etcd_keys.h"

#include <stdio.h>
#include <string.h>

static int kind_ok(const char *kind)
{
    size_t n = kind ? strnlen(kind, ETCD_KEYS_KIND_MAX + 1) : 0;

    if (n == 0 || n > ETCD_KEYS_KIND_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (kind[i] < 'a' || kind[i] > 'z')
            return 0;
    return 1;
}

static int name_ok(const char *name)
{
    size_t n = name ? strnlen(name, ETCD_KEYS_NAME_MAX + 1) : 0;

    if (n == 0 || n > ETCD_KEYS_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return 0;
        if (c == '.' && name[i + 1] == '.')
            return 0;
    }
    return 1;
}

/* "/meshca/<kind>/" then "<mesh>/" and "<name>" when given. */
static int put_key(char *buf, size_t *ret_len, const char *kind, const char *mesh, const char *name)
{
    int n = snprintf(buf, ETCD_KEYS_KEY_MAX, ETCD_KEYS_PREFIX "%s/%s%s%s", kind, mesh ? mesh : "",
                     mesh ? "/" : "", name ? name : "");

    /* Cannot truncate with checked components; checked anyway, as every snprintf is. */
    if (n < 0 || (size_t)n >= ETCD_KEYS_KEY_MAX)
        return ETCD_EINVAL;
    if (ret_len)
        *ret_len = (size_t)n;
    return 0;
}

int etcd_keys_object(const char *kind, const char *mesh, const char *name, char *buf,
                     size_t *ret_len)
{
    if (!kind_ok(kind) || !name_ok(mesh) || !name_ok(name))
        return ETCD_EINVAL;
    return put_key(buf, ret_len, kind, mesh, name);
}

int etcd_keys_list_prefix(const char *kind, const char *mesh, char *buf, size_t *ret_len)
{
    if (!kind_ok(kind) || (mesh && !name_ok(mesh)))
        return ETCD_EINVAL;
    return put_key(buf, ret_len, kind, mesh, NULL);
}

/* Copies the component [p, p+len) into out (cap bytes with NUL), checking it. */
static int take(const char *p, size_t len, char *out, size_t cap, int (*ok)(const char *))
{
    if (len == 0 || len >= cap)
        return -1;
    memcpy(out, p, len);
    out[len] = '\0';
    return ok(out) ? 0 : -1;
}

int etcd_keys_parse(const char *key, size_t key_len, etcd_keys_parsed *ret)
{
    const size_t plen = sizeof(ETCD_KEYS_PREFIX) - 1;
    const char *p, *end = key + key_len, *s1, *s2;
    etcd_keys_parsed out;

    if (key_len <= plen || memcmp(key, ETCD_KEYS_PREFIX, plen) != 0 || memchr(key, '\0', key_len))
        return ETCD_EINVAL;
    p = key + plen;
    s1 = memchr(p, '/', (size_t)(end - p));
    if (!s1)
        return ETCD_EINVAL;
    s2 = memchr(s1 + 1, '/', (size_t)(end - s1 - 1));
    if (!s2 || memchr(s2 + 1, '/', (size_t)(end - s2 - 1)))
        return ETCD_EINVAL;
    if (take(p, (size_t)(s1 - p), out.kind, sizeof(out.kind), kind_ok) < 0 ||
        take(s1 + 1, (size_t)(s2 - s1 - 1), out.mesh, sizeof(out.mesh), name_ok) < 0 ||
        take(s2 + 1, (size_t)(end - s2 - 1), out.name, sizeof(out.name), name_ok) < 0)
        return ETCD_EINVAL;
    *ret = out;
    return 0;
}

int etcd_keys_expect(const char *key, size_t key_len, uint64_t expected_version, int is_delete,
                     etcd_compare *ret)
{
    etcd_compare c = {.key = key, .key_len = key_len, .result = ETCD_CMP_EQUAL};

    if (expected_version == ETCD_KEYS_ANY_VERSION) {
        if (!is_delete)
            return 0;
        /* etcd compares an absent key as all zeros, so "> 0" means "exists". */
        c.target = ETCD_CMP_CREATE_REVISION;
        c.result = ETCD_CMP_GREATER;
        c.number = 0;
    } else if (expected_version > (uint64_t)INT64_MAX || (expected_version == 0 && is_delete)) {
        return ETCD_EINVAL;
    } else if (expected_version == 0) {
        c.target = ETCD_CMP_CREATE_REVISION;
        c.number = 0;
    } else {
        c.target = ETCD_CMP_MOD_REVISION;
        c.number = (int64_t)expected_version;
    }
    *ret = c;
    return 1;
}

void etcd_keys_fence(int64_t lease, etcd_compare *ret)
{
    etcd_compare c = {
        .target = ETCD_CMP_LEASE,
        .result = ETCD_CMP_EQUAL,
        .key = ETCD_KEYS_LEADER,
        .key_len = sizeof(ETCD_KEYS_LEADER) - 1,
        .number = lease,
    };

    *ret = c;
}

void etcd_keys_campaign(const char *id, size_t id_len, int64_t lease, etcd_compare *ret_cmp,
                        etcd_op *ret_put, etcd_op *ret_get)
{
    etcd_compare c = {
        .target = ETCD_CMP_CREATE_REVISION,
        .result = ETCD_CMP_EQUAL,
        .key = ETCD_KEYS_LEADER,
        .key_len = sizeof(ETCD_KEYS_LEADER) - 1,
        .number = 0,
    };
    etcd_op put = {
        .type = ETCD_OP_PUT,
        .key = ETCD_KEYS_LEADER,
        .key_len = sizeof(ETCD_KEYS_LEADER) - 1,
        .value = id,
        .value_len = id_len,
        .lease = lease,
    };
    etcd_op get = {
        .type = ETCD_OP_GET,
        .key = ETCD_KEYS_LEADER,
        .key_len = sizeof(ETCD_KEYS_LEADER) - 1,
    };

    *ret_cmp = c;
    *ret_put = put;
    *ret_get = get;
}

int etcd_keys_explain_failure(const etcd_keys_check *checks, size_t n, const etcd_txn_get *gets,
                              size_t ngets, int fenced, int64_t lease, size_t *ret_index)
{
    size_t off = fenced ? 1 : 0;

    if (ngets != n + off)
        return ETCD_EIO;
    if (fenced && (gets[0].n != 1 || gets[0].kvs[0].lease != lease)) {
        *ret_index = SIZE_MAX;
        return MESHCA_ESTATE;
    }
    for (size_t i = 0; i < n; i++) {
        const etcd_txn_get *g = &gets[off + i];
        int exists = g->n > 0;
        uint64_t have = exists ? (uint64_t)g->kvs[0].mod_revision : 0;
        uint64_t want = checks[i].expected_version;

        if (checks[i].is_delete && !exists) {
            *ret_index = i;
            return ETCD_ENOTFOUND;
        }
        if (want == ETCD_KEYS_ANY_VERSION)
            continue;
        if ((want == 0 && exists) || (want != 0 && have != want)) {
            *ret_index = i;
            return ETCD_ECONFLICT;
        }
    }
    /* The failure reads run in the same revision as the compares, so every check holding
     * here means checks[] does not describe the txn that was sent: a caller's bug or a
     * malformed answer, not a conflict to report to a user. */
    return ETCD_EIO;
}

size_t etcd_keys_op_bytes(size_t key_len, size_t value_len)
{
    /* The key appears three times: in its compare, its put or delete, and its failure read;
     * 32 matches the per-entry overhead etcd_txn_request_size counts. */
    return 3 * (32 + key_len) + value_len;
}

int etcd_keys_plan(const size_t *op_bytes, size_t n, unsigned max_txn_ops, size_t max_request_bytes,
                   int fenced, size_t *ret_ends, size_t *ret_batches, size_t *ret_index)
{
    /* The fence costs a compare and a failure read, and the txn itself a little framing. */
    size_t fixed = 32 + (fenced ? etcd_keys_op_bytes(sizeof(ETCD_KEYS_LEADER) - 1, 0) : 0);
    size_t per_txn =
        max_txn_ops > (unsigned)(fenced ? 1 : 0) ? max_txn_ops - (fenced ? 1u : 0u) : 0;
    size_t batches = 0, count = 0, bytes = fixed;

    if (per_txn == 0 || max_request_bytes <= fixed)
        return ETCD_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (op_bytes[i] > max_request_bytes - fixed) {
            if (ret_index)
                *ret_index = i;
            return ETCD_EINVAL;
        }
        if (count == per_txn || op_bytes[i] > max_request_bytes - bytes) {
            ret_ends[batches++] = i;
            count = 0;
            bytes = fixed;
        }
        count++;
        bytes += op_bytes[i];
    }
    if (count > 0)
        ret_ends[batches++] = n;
    *ret_batches = batches;
    return 0;
}
