/* etcd_range_json.h - reads etcd's JSON answer to a range without building a JSON tree. */
#ifndef MESHCA_ETCD_RANGE_JSON_H
#define MESHCA_ETCD_RANGE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "reconciler/store/etcd_client.h"

/* Where a range answer's keys go: appended to *kvs (n used of cap, grown by doubling). */
typedef struct etcd_range_sink {
    etcd_kv *kvs;
    size_t n, cap;
    int more;         /* the answer's "more" */
    int64_t revision; /* its header's revision */
    int64_t count;    /* its "count": the keys of the range etcd went through */
} etcd_range_sink;

/*
 * Reads the answer {"header":{..."revision":R...},"kvs":[{"key":B64,"value":B64,
 * "create_revision":N,"mod_revision":N,"version":N,"lease":N},...],"more":true,"count":N}
 * (members in any order, unknown ones skipped, numbers as strings or integers) in
 * [p, p + len) and appends its keys to sink. 0: read; -1: not an answer of that shape (the
 * caller reads it as JSON, which says what is wrong, e.g. an error answer); ETCD_ENOMEM. On
 * failure sink keeps its first n keys (later ones freed).
 */
int etcd_range_json_read(const char *p, size_t len, etcd_range_sink *sink);

/* Base64 (standard alphabet, padded) of n bytes at s into a new NUL-terminated allocation.
 * -1: not base64; ETCD_ENOMEM. */
int etcd_b64_decode(const char *s, size_t n, char **ret, size_t *ret_len);

#endif
