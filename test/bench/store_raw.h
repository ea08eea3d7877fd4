/* store_raw.h - the store's own limit for a full pass: SQLite alone reading and rewriting N records. */
#ifndef MESHCA_BENCH_STORE_RAW_H
#define MESHCA_BENCH_STORE_RAW_H

#include <stddef.h>

typedef struct store_raw_result {
    double cpu_s;      /* CPU seconds of the read and the rewrite */
    double wall_s;
    size_t bytes_read; /* what the read returned: n records of value_len bytes */
} store_raw_result;

/* In a new SQLite file under dir, with the store's page size, WAL and synchronous = FULL:
 * n records of value_len bytes put in one transaction, then timed: every record read, then
 * every record put again (each with its change row) in one durable transaction, as a full
 * pass reads and rewrites every identity with no decoding, signing or checking. 0 or -1. */
int store_raw_rewrite(const char *dir, long n, size_t value_len, store_raw_result *ret);

/* The same file and settings: one record of value_len bytes put per transaction, each durable
 * (an fsync of the WAL), for max_s seconds or max_n commits; *ret_rate = commits per second.
 * What a request that may not be answered before its commit waits for, at the least. */
int store_raw_commit_rate(const char *dir, size_t value_len, double max_s, long max_n, double *ret_rate);

#endif
