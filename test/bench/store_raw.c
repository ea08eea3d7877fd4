/* store_raw.c - the store's own limit for a full pass: SQLite alone reading and rewriting N records. */
#define _GNU_SOURCE 1
#include "store_raw.h"
#include "test/bench/bench_clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

/* The store's layout and settings as reconciler/store/store_sqlite.c makes them (the two
 * tables a pass writes), so the loop pays what any store of these records would pay: 16 KiB
 * pages, WAL, synchronous FULL, one transaction, a change row per put. */
static const char setup_sql[] =
    "PRAGMA page_size = 16384;"
    "PRAGMA journal_mode = WAL;"
    "PRAGMA synchronous = FULL;"
    "CREATE TABLE objects (kind TEXT NOT NULL, mesh TEXT NOT NULL, name TEXT NOT NULL,"
    " value BLOB NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (kind, mesh, name)) WITHOUT ROWID;"
    "CREATE TABLE changes (revision INTEGER NOT NULL, kind TEXT NOT NULL, mesh TEXT NOT NULL,"
    " name TEXT NOT NULL, op INTEGER NOT NULL, PRIMARY KEY (revision, kind, mesh, name)) WITHOUT ROWID;";

/* One transaction putting every record with value bytes (and its change row at revision). */
static int put_all(sqlite3 *db, sqlite3_stmt *put, sqlite3_stmt *change, long n,
                   unsigned char *value, size_t len, long revision)
{
    char name[32];
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);

    for (long i = 0; rc == SQLITE_OK && i < n; i++) {
        snprintf(name, sizeof(name), "dp-%06ld", i);
        value[(size_t)i % len] ^= 1; /* each record's bytes differ, as each leaf does */
        sqlite3_bind_text(put, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_blob(put, 2, value, (int)len, SQLITE_STATIC);
        sqlite3_bind_int64(put, 3, revision);
        sqlite3_bind_int64(change, 1, revision);
        sqlite3_bind_text(change, 2, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(put) == SQLITE_DONE && sqlite3_step(change) == SQLITE_DONE ? SQLITE_OK
                                                                                    : SQLITE_ERROR;
        sqlite3_reset(put);
        sqlite3_reset(change);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    return rc;
}

/* Reads every record's value, as a pass reads every identity before it decides. */
static int read_all(sqlite3_stmt *list, long n, size_t *ret_bytes)
{
    long rows = 0;
    size_t bytes = 0;
    int rc;

    while ((rc = sqlite3_step(list)) == SQLITE_ROW) {
        const void *v = sqlite3_column_blob(list, 1);

        bytes += v ? (size_t)sqlite3_column_bytes(list, 1) : 0;
        rows++;
    }
    sqlite3_reset(list);
    *ret_bytes = bytes;
    return rc == SQLITE_DONE && rows == n ? SQLITE_OK : SQLITE_ERROR;
}

/* Opens a new SQLite file under dir with the store's settings and tables, and its put and
 * change statements. */
static int open_raw(const char *dir, char *path, size_t pathlen, sqlite3 **db, sqlite3_stmt **put,
                    sqlite3_stmt **change)
{
    int rc;

    snprintf(path, pathlen, "%s/store-raw.db", dir);
    rc = sqlite3_open(path, db);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(*db, setup_sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(*db, "INSERT OR REPLACE INTO objects (kind, mesh, name, value, version, lease)"
                                " VALUES ('identities', 'default', ?1, ?2, ?3, 0)", -1, put, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(*db, "INSERT INTO changes (revision, kind, mesh, name, op)"
                                " VALUES (?1, 'identities', 'default', ?2, 0)", -1, change, NULL);
    return rc;
}

/* Closes and removes what open_raw made. */
static void close_raw(const char *dir, char *path, size_t pathlen, sqlite3 *db, sqlite3_stmt *put,
                      sqlite3_stmt *change)
{
    sqlite3_finalize(put);
    sqlite3_finalize(change);
    sqlite3_close(db);
    unlink(path);
    snprintf(path, pathlen, "%s/store-raw.db-wal", dir);
    unlink(path);
    snprintf(path, pathlen, "%s/store-raw.db-shm", dir);
    unlink(path);
}

int store_raw_commit_rate(const char *dir, size_t value_len, double max_s, long max_n, double *ret_rate)
{
    char path[512];
    sqlite3 *db = NULL;
    sqlite3_stmt *put = NULL, *change = NULL;
    unsigned char *value = calloc(value_len ? value_len : 1, 1);
    double start;
    long done = 0;
    int rc;

    if (!value || value_len == 0 || max_n <= 0)
        return free(value), -1;
    rc = open_raw(dir, path, sizeof(path), &db, &put, &change);
    start = now_s();
    /* One record per transaction, each its own revision, as a CSR's group commit of one key. */
    while (rc == SQLITE_OK && done < max_n && now_s() - start < max_s) {
        done++;
        rc = put_all(db, put, change, 1, value, value_len, done);
    }
    *ret_rate = done / (now_s() - start);
    close_raw(dir, path, sizeof(path), db, put, change);
    free(value);
    return rc == SQLITE_OK ? 0 : -1;
}

int store_raw_rewrite(const char *dir, long n, size_t value_len, store_raw_result *ret)
{
    char path[512];
    sqlite3 *db = NULL;
    sqlite3_stmt *put = NULL, *change = NULL, *list = NULL;
    unsigned char *value = malloc(value_len ? value_len : 1);
    size_t bytes = 0;
    double c, w;
    int rc;

    if (!value || value_len == 0 || n <= 0)
        return free(value), -1;
    for (size_t i = 0; i < value_len; i++)
        value[i] = (unsigned char)('A' + i * 7 % 26);
    rc = open_raw(dir, path, sizeof(path), &db, &put, &change);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "SELECT name, value, version FROM objects WHERE kind = 'identities'"
                                " AND mesh = 'default' ORDER BY mesh, name", -1, &list, NULL);
    /* The records as the CSR pass left them (not timed), then the switch's read and rewrite. */
    if (rc == SQLITE_OK)
        rc = put_all(db, put, change, n, value, value_len, 1);
    c = cpu_now_s();
    w = now_s();
    if (rc == SQLITE_OK)
        rc = read_all(list, n, &bytes);
    if (rc == SQLITE_OK)
        rc = put_all(db, put, change, n, value, value_len, 2);
    ret->cpu_s = cpu_now_s() - c;
    ret->wall_s = now_s() - w;
    ret->bytes_read = bytes;
    sqlite3_finalize(list);
    close_raw(dir, path, sizeof(path), db, put, change);
    free(value);
    return rc == SQLITE_OK ? 0 : -1;
}
