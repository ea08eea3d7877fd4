/* store_sqlite.c - the embedded sqlite://PATH store: SQLite in WAL mode, one transaction per write, change log, leases. */
#define _GNU_SOURCE 1
#include "reconciler/store/backend.h"
#include "reconciler/failpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * Layout (also in doc/store.md): one database file PATH (0600) with its -wal and -shm files
 * (SQLite gives them the database's mode) in a directory (0700 when we create it).
 *
 *   meta(key, value)              "revision": the store-wide revision; "compacted": the
 *                                 newest revision whose changes were pruned from `changes`
 *   objects(kind, mesh, name, value BLOB, version, lease)
 *   changes(revision, kind, mesh, name, op)   the change log store_watch reads: written in
 *                                 the same transaction as the objects, pruned to the last
 *                                 STORE_WATCH_WINDOW revisions
 *   leases(id, ttl_ms, expires_ms)  wall-clock expiry, shared by every process on the host
 *
 * Every writer runs in BEGIN IMMEDIATE, so the version checks and the writes see one state and
 * a writer waits (busy timeout) instead of failing halfway. WAL with synchronous=FULL makes each
 * commit durable and all or nothing across kill -9 and power loss.
 *
 * Expired leases are purged lazily at the start of every write transaction (and by a watch
 * that sees one); until then reads hide objects whose lease has expired.
 */

#define SCHEMA_VERSION 1
/*
 * Page size of a new store. `objects` is WITHOUT ROWID, so a row keeps at most about a quarter
 * of a page in its B-tree leaf and the rest goes to overflow pages: with 4 KiB pages every
 * identity record (about 2.3 KB: certificate, public key, CSR) took a leaf share and an overflow
 * page of its own, 7 KB of WAL per dataplane in a full pass. With 16 KiB pages a record fits in
 * its leaf, several to a page: a full pass of 10,000 dataplanes took 26 % less CPU
 * (doc/performance.md). SQLite sets it only while the file is empty: a store made before keeps
 * its page size, and works as before.
 */
#define PAGE_SIZE_PRAGMA "PRAGMA page_size = 16384"
#define BUSY_TIMEOUT_MS 5000
#define WATCH_POLL_MS 20
/*
 * The change log also keeps at most this many rows: one pass over 100,000 dataplanes is
 * 100,000 changes at one revision, so a window of revisions alone would not bound it. Checked
 * every CHANGES_CHECK_EVERY revisions and after every large transaction (the check is a scan).
 */
#define CHANGES_MAX_ROWS 1000000
#define CHANGES_CHECK_EVERY 256
/* "kind/mesh/name": kinds are short, mesh and name at most STORE_NAME_MAX. */
#define KEY_TEXT_MAX (3 * STORE_NAME_MAX + 8)

enum {
    ST_GET,
    ST_LIST_ALL,
    ST_LIST_MESH,
    ST_LIST_RANGE,
    ST_META,
    ST_SET_META,
    ST_VERSION,
    ST_PUT,
    ST_DELETE,
    ST_CHANGE,
    ST_PRUNE,
    ST_WATCH,
    ST_ROW_CUTOFF,
    ST_EXPIRED_ANY,
    ST_EXPIRED_COUNT,
    ST_EXPIRED_CHANGES,
    ST_EXPIRED_DELETE,
    ST_EXPIRED_LEASES,
    ST_LEASE_INSERT,
    ST_LEASE_ALIVE,
    ST_LEASE_KEEP,
    ST_LEASE_COUNT,
    ST_LEASE_CHANGES,
    ST_LEASE_DELETE_OBJECTS,
    ST_LEASE_DELETE,
    ST_BEGIN,
    ST_BEGIN_READ,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_ROLLBACK_TO,
    ST_RELEASE,
    ST_COUNT
};

/* An object is visible while it has no lease or its lease has not expired (?now in ms). */
#define ALIVE(now) "(o.lease = 0 OR EXISTS (SELECT 1 FROM leases l WHERE l.id = o.lease AND l.expires_ms > " now "))"
#define EXPIRED_LEASES "(SELECT id FROM leases WHERE expires_ms <= ?1)"

static const char *const sql_text[ST_COUNT] = {
    [ST_GET] = "SELECT value, version FROM objects o WHERE kind = ?1 AND mesh = ?2 AND name = ?3 AND " ALIVE("?4"),
    [ST_LIST_ALL] = "SELECT mesh, name, value, version FROM objects o WHERE kind = ?1 AND " ALIVE("?2")
                    " ORDER BY mesh, name",
    [ST_LIST_MESH] = "SELECT mesh, name, value, version FROM objects o WHERE kind = ?1 AND mesh = ?3 AND " ALIVE("?2")
                     " ORDER BY mesh, name",
    /* A seek on the primary key (kind, mesh, name) to ?4, rows up to ?5. */
    [ST_LIST_RANGE] = "SELECT mesh, name, value, version FROM objects o WHERE kind = ?1 AND mesh = ?3 AND name >= ?4"
                      " AND name <= ?5 AND " ALIVE("?2") " ORDER BY mesh, name",
    [ST_META] = "SELECT value FROM meta WHERE key = ?1",
    [ST_SET_META] = "UPDATE meta SET value = ?2 WHERE key = ?1",
    [ST_VERSION] = "SELECT version FROM objects WHERE kind = ?1 AND mesh = ?2 AND name = ?3",
    [ST_PUT] = "INSERT OR REPLACE INTO objects (kind, mesh, name, value, version, lease) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_DELETE] = "DELETE FROM objects WHERE kind = ?1 AND mesh = ?2 AND name = ?3",
    [ST_CHANGE] = "INSERT INTO changes (revision, kind, mesh, name, op) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_PRUNE] = "DELETE FROM changes WHERE revision <= ?1",
    [ST_WATCH] = "SELECT revision, kind, mesh, name, op FROM changes WHERE revision > ?1 "
                 "ORDER BY revision, kind, mesh, name",
    [ST_ROW_CUTOFF] = "SELECT revision FROM changes ORDER BY revision DESC LIMIT 1 OFFSET ?1",
    [ST_EXPIRED_ANY] = "SELECT 1 FROM leases WHERE expires_ms <= ?1 LIMIT 1",
    [ST_EXPIRED_COUNT] = "SELECT count(*) FROM objects WHERE lease IN " EXPIRED_LEASES,
    [ST_EXPIRED_CHANGES] = "INSERT INTO changes (revision, kind, mesh, name, op) "
                           "SELECT ?2, kind, mesh, name, 1 FROM objects WHERE lease IN " EXPIRED_LEASES,
    [ST_EXPIRED_DELETE] = "DELETE FROM objects WHERE lease IN " EXPIRED_LEASES,
    [ST_EXPIRED_LEASES] = "DELETE FROM leases WHERE expires_ms <= ?1",
    [ST_LEASE_INSERT] = "INSERT INTO leases (ttl_ms, expires_ms) VALUES (?1, ?2)",
    [ST_LEASE_ALIVE] = "SELECT 1 FROM leases WHERE id = ?1 AND expires_ms > ?2",
    [ST_LEASE_KEEP] = "UPDATE leases SET expires_ms = ?2 + ttl_ms WHERE id = ?1 AND expires_ms > ?2",
    [ST_LEASE_COUNT] = "SELECT count(*) FROM objects WHERE lease = ?1",
    [ST_LEASE_CHANGES] = "INSERT INTO changes (revision, kind, mesh, name, op) "
                         "SELECT ?2, kind, mesh, name, 1 FROM objects WHERE lease = ?1",
    [ST_LEASE_DELETE_OBJECTS] = "DELETE FROM objects WHERE lease = ?1",
    [ST_LEASE_DELETE] = "DELETE FROM leases WHERE id = ?1",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_BEGIN_READ] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT ops",
    [ST_ROLLBACK_TO] = "ROLLBACK TO ops",
    [ST_RELEASE] = "RELEASE ops",
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0);"
    "CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, mesh TEXT NOT NULL, name TEXT NOT NULL,"
    " value BLOB NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (kind, mesh, name)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS objects_lease ON objects (lease) WHERE lease != 0;"
    "CREATE TABLE IF NOT EXISTS changes (revision INTEGER NOT NULL, kind TEXT NOT NULL, mesh TEXT NOT NULL,"
    " name TEXT NOT NULL, op INTEGER NOT NULL, PRIMARY KEY (revision, kind, mesh, name)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY AUTOINCREMENT, ttl_ms INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL);"
    "PRAGMA user_version = 1;";

typedef struct sq_store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *st[ST_COUNT];
    /* A transaction built in parts (sq_txn_open): its revision, taken at its first write. */
    int open;
    uint64_t open_rev;
    size_t open_writes;
    /* Opened by store_txn_open_since at the revision the writer read: its ops' versions hold. */
    int open_unchanged;
} sq_store;

static int64_t now_ms(void) {
    struct timespec ts;

    /* Wall clock, not monotonic: lease expiry is compared across processes. */
    (void) clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* SQLite's result to a store code: busy means "retry later", never "failed". */
static int code_of(int rc) {
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return STORE_EUNAVAILABLE;
    case SQLITE_NOMEM: return STORE_ENOMEM;
    case SQLITE_TOOBIG: return STORE_EINVAL;
    default: return STORE_EIO;
    }
}

/* Fails with sqlite's own message for what it was doing, so the cause reaches the user. */
static int sq_fail(sq_store *q, int rc, char *err, const char *what) {
    return meshca_fail(err, code_of(rc), "store '%s': %s: %s", q->path, what, sqlite3_errmsg(q->db));
}

static sqlite3_stmt *stmt(sq_store *q, int which) {
    sqlite3_stmt *s = q->st[which];

    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Runs a statement that returns no row (or whose rows do not matter). */
static int exec_stmt(sq_store *q, sqlite3_stmt *s) {
    int rc = sqlite3_step(s);

    sqlite3_reset(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int exec_simple(sq_store *q, int which) {
    return exec_stmt(q, stmt(q, which));
}

static void key_text(const store_key *k, char *buf, size_t len) {
    if (!k)
        (void) snprintf(buf, len, "store");
    else
        (void) snprintf(buf, len, "%s/%s/%s", k->kind, k->mesh, k->name);
}

static int bind_key(sqlite3_stmt *s, const store_key *k) {
    int rc = sqlite3_bind_text(s, 1, k->kind, -1, SQLITE_STATIC);

    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 2, k->mesh, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 3, k->name, -1, SQLITE_STATIC);
    return rc;
}

static int meta_get(sq_store *q, const char *key, uint64_t *ret) {
    sqlite3_stmt *s = stmt(q, ST_META);
    int rc = sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);

    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *ret = (uint64_t) sqlite3_column_int64(s, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        *ret = 0;
        rc = SQLITE_OK;
    }
    sqlite3_reset(s);
    return rc;
}

static int meta_set(sq_store *q, const char *key, uint64_t value) {
    sqlite3_stmt *s = stmt(q, ST_SET_META);
    int rc = sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);

    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 2, (sqlite3_int64) value);
    return rc == SQLITE_OK ? exec_stmt(q, s) : rc;
}

/* --- opening: paths, modes, schema -------------------------------------------------------- */

static int check_owner_mode(const char *path, const struct stat *st, mode_t forbidden, const char *what,
                            const char *fix, char *err) {
    if ((st->st_mode & forbidden) != 0)
        return meshca_fail(err, STORE_EINSECURE,
                           "store %s '%s' has mode %04o: other users can %s it; refusing to use it (run: chmod %s '%s')",
                           what, path, (unsigned) (st->st_mode & 07777),
                           (st->st_mode & forbidden & 0022) ? "write" : "read", fix, path);
    /* Another (non-root) user who owns it can change it whatever its mode, as ssh's StrictModes says. */
    if (st->st_uid != geteuid() && st->st_uid != 0)
        return meshca_fail(err, STORE_EINSECURE, "store %s '%s' is owned by uid %u, not by this user (uid %u); refusing to use it",
                           what, path, (unsigned) st->st_uid, (unsigned) geteuid());
    return STORE_OK;
}

/* Creates dir 0700 when missing (its parent must exist), or checks an existing one. */
static int prepare_dir(const char *dir, char *err) {
    struct stat st;

    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return meshca_fail(err, STORE_EIO, "store directory '%s' is not a directory", dir);
        return check_owner_mode(dir, &st, 0022, "directory", "700", err);
    }
    if (errno != ENOENT)
        return meshca_fail(err, STORE_EIO, "store directory '%s': %s", dir, strerror(errno));
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        if (errno == ENOENT) {
            char *parent = strdup(dir), *slash;
            int r;

            if (!parent)
                return meshca_fail(err, STORE_ENOMEM, "store: out of memory");
            slash = strrchr(parent, '/');
            if (slash && slash != parent)
                *slash = '\0';
            r = meshca_fail(err, STORE_EIO,
                            "store directory '%s' cannot be created: its parent directory '%s' does not exist", dir,
                            parent);
            free(parent);
            return r;
        }
        return meshca_fail(err, STORE_EIO, "store directory '%s' cannot be created: %s", dir, strerror(errno));
    }
    /* The umask may have widened or narrowed it. */
    if (chmod(dir, 0700) < 0)
        return meshca_fail(err, STORE_EIO, "store directory '%s': cannot set mode 0700: %s", dir, strerror(errno));
    return STORE_OK;
}

/* Checks the database (and its -wal/-shm) when it exists, or creates it empty with mode 0600. */
static int prepare_file(const char *path, char *err) {
    static const char *const suffixes[] = { "", "-wal", "-shm" };
    char buf[4096];
    struct stat st;
    int fd;

    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        int n = snprintf(buf, sizeof(buf), "%s%s", path, suffixes[i]);
        int r;

        if (n < 0 || (size_t) n >= sizeof(buf))
            return meshca_fail(err, STORE_EINVAL, "store path '%s' is too long", path);
        if (stat(buf, &st) < 0) {
            if (errno == ENOENT)
                continue;
            return meshca_fail(err, STORE_EIO, "store file '%s': %s", buf, strerror(errno));
        }
        if (!S_ISREG(st.st_mode))
            return meshca_fail(err, STORE_EIO, "store file '%s' is not a regular file", buf);
        r = check_owner_mode(buf, &st, 0077, "file", "600", err);
        if (r < 0)
            return r;
    }
    /* SQLite would create it 0644 & ~umask; it holds CA keys, so create it 0600 first. */
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return STORE_OK;
        return meshca_fail(err, STORE_EIO, "store file '%s' cannot be created: %s", path, strerror(errno));
    }
    if (fchmod(fd, 0600) < 0) {
        int e = errno;
        (void) close(fd);
        return meshca_fail(err, STORE_EIO, "store file '%s': cannot set mode 0600: %s", path, strerror(e));
    }
    (void) close(fd);
    return STORE_OK;
}

static int exec_sql(sq_store *q, const char *sql, char *err, const char *what) {
    int rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? STORE_OK : sq_fail(q, rc, err, what);
}

static int user_version(sq_store *q, int *ret) {
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(q->db, "PRAGMA user_version", -1, &s, NULL);

    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            *ret = sqlite3_column_int(s, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(s);
    return rc;
}

static int setup_schema(sq_store *q, char *err) {
    int version = 0, rc, r;

    rc = user_version(q, &version);
    if (rc != SQLITE_OK)
        return sq_fail(q, rc, err, "cannot read the schema version");
    if (version == SCHEMA_VERSION)
        return STORE_OK; /* the common case takes no write lock, so the CLI does not wait on the controller */
    if (version > SCHEMA_VERSION)
        return meshca_fail(err, STORE_EUNSUPPORTED, "store '%s': schema version %d is newer than this meshca (%d)",
                           q->path, version, SCHEMA_VERSION);
    r = exec_sql(q, "BEGIN IMMEDIATE", err, "cannot create the tables");
    if (r < 0)
        return r;
    r = exec_sql(q, schema_sql, err, "cannot create the tables");
    if (r == STORE_OK)
        r = exec_sql(q, "COMMIT", err, "cannot create the tables");
    if (r < 0)
        (void) sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

static void sq_close(void *impl) {
    sq_store *q = impl;

    if (!q)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(q->st[i]);
    sqlite3_close(q->db);
    free(q->path);
    free(q);
}

static const struct store_ops sqlite_ops;

int store_sqlite_open(const char *path, const struct store_ops **ret_ops, void **ret_impl, char *err) {
    char *dir = NULL, *slash;
    sq_store *q;
    int rc, r;

    q = calloc(1, sizeof(*q));
    if (!q || !(q->path = strdup(path)) || !(dir = strdup(path))) {
        free(dir);
        sq_close(q);
        return meshca_fail(err, STORE_ENOMEM, "store: out of memory");
    }
    /* ":memory:" is an empty store that lives as long as the handle and leaves no file: what a
     * read-only command reads when the store it names was never created (cmd/common.c). */
    bool in_memory = strcmp(path, SQLITE_MEMORY_PATH) == 0;
    slash = strrchr(dir, '/');
    if (slash && !slash[1]) {
        free(dir);
        sq_close(q);
        return meshca_fail(err, STORE_EINVAL, "store URL 'sqlite://%s': names a directory; want sqlite://DIR/FILE.db",
                           path);
    }
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    r = in_memory ? STORE_OK : prepare_dir(dir, err);
    free(dir);
    if (r == STORE_OK && !in_memory)
        r = prepare_file(path, err);
    if (r < 0) {
        sq_close(q);
        return r;
    }

    /* No SQLITE_OPEN_CREATE: prepare_file made it, so a file removed in between is an error, not a new store. */
    rc = sqlite3_open_v2(path, &q->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (in_memory ? SQLITE_OPEN_MEMORY : 0),
                         NULL);
    if (rc != SQLITE_OK) {
        r = q->db ? sq_fail(q, rc, err, "cannot open") :
                    meshca_fail(err, STORE_ENOMEM, "store '%s': cannot open: out of memory", path);
        sq_close(q);
        return r;
    }
    sqlite3_extended_result_codes(q->db, 1);
    /* The CLI beside a running controller waits for its write lock instead of failing. */
    sqlite3_busy_timeout(q->db, BUSY_TIMEOUT_MS);
    /* Before WAL mode: the page size of a WAL database cannot change any more. */
    r = exec_sql(q, PAGE_SIZE_PRAGMA, err,
                 "cannot set the page size");
    if (r == STORE_OK)
        r = exec_sql(q, "PRAGMA journal_mode = WAL", err, "cannot switch to WAL mode");
    /* FULL: an acknowledged apply survives power loss, not only a crash of the process. */
    if (r == STORE_OK)
        r = exec_sql(q, "PRAGMA synchronous = FULL", err, "cannot set synchronous mode");
    if (r == STORE_OK)
        r = setup_schema(q, err);
    for (int i = 0; r == STORE_OK && i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(q->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i], NULL);
        if (rc != SQLITE_OK)
            r = sq_fail(q, rc, err, "cannot prepare a statement (is it a meshca store?)");
    }
    if (r < 0) {
        sq_close(q);
        return r;
    }
    *ret_ops = &sqlite_ops;
    *ret_impl = q;
    return STORE_OK;
}

/*
 * In WAL mode SQLite keeps using a database file that was removed or replaced while open and
 * reports nothing, so every call asks it (SQLITE_FCNTL_HAS_MOVED compares the inode with the
 * path) and fails with the cause instead of writing into a file nobody will ever read.
 */
static int check_moved(sq_store *q, char *err, const char *what, const char *verb) {
    int moved = 0;

    if (sqlite3_file_control(q->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) != SQLITE_OK || !moved)
        return STORE_OK;
    return meshca_fail(err, STORE_EIO, "store '%s': %s: cannot %s: %s: the database file was removed or replaced while in use",
                       q->path, what, verb, sqlite3_errstr(SQLITE_READONLY_DBMOVED));
}

/* --- reads -------------------------------------------------------------------------------- */

static int copy_value(sqlite3_stmt *s, int col, char **ret, size_t *ret_len) {
    const void *blob = sqlite3_column_blob(s, col);
    size_t len = (size_t) sqlite3_column_bytes(s, col);
    char *v = malloc(len + 1);

    if (!v)
        return STORE_ENOMEM;
    if (len > 0)
        memcpy(v, blob, len);
    v[len] = '\0';
    *ret = v;
    *ret_len = len;
    return STORE_OK;
}

static int sq_get(void *impl, const store_key *key, char **ret_value, size_t *ret_len, uint64_t *ret_version,
                  char *err) {
    sq_store *q = impl;
    sqlite3_stmt *s = stmt(q, ST_GET);
    char what[KEY_TEXT_MAX];
    char *value = NULL;
    size_t len = 0;
    uint64_t version;
    int rc, r;

    key_text(key, what, sizeof(what));
    r = check_moved(q, err, what, "read");
    if (r < 0)
        return r;
    rc = bind_key(s, key);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 4, now_ms());
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return meshca_fail(err, STORE_ENOTFOUND, "store '%s': %s: not found", q->path, what);
    }
    if (rc != SQLITE_ROW) {
        r = meshca_fail(err, code_of(rc), "store '%s': %s: cannot read: %s", q->path, what, sqlite3_errmsg(q->db));
        sqlite3_reset(s);
        return r;
    }
    r = copy_value(s, 0, &value, &len);
    version = (uint64_t) sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    if (r < 0)
        return meshca_fail(err, r, "store '%s': %s: out of memory", q->path, what);
    *ret_value = value;
    if (ret_len)
        *ret_len = len;
    if (ret_version)
        *ret_version = version;
    return STORE_OK;
}

/* One statement over the rows (from..to when from is not NULL), each value copied into one
 * reused buffer (NUL-terminated). */
static int scan_rows(sq_store *q, const char *kind, const char *mesh_name, const char *from, const char *to,
                     store_scan_fn fn, void *userdata, char *err) {
    sqlite3_stmt *s = stmt(q, from ? ST_LIST_RANGE : mesh_name ? ST_LIST_MESH : ST_LIST_ALL);
    char *buf = NULL;
    size_t cap = 0;
    int rc, r = check_moved(q, err, kind, "list");

    if (r < 0)
        return r;
    rc = sqlite3_bind_text(s, 1, kind, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 2, now_ms());
    if (rc == SQLITE_OK && mesh_name)
        rc = sqlite3_bind_text(s, 3, mesh_name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && from)
        rc = sqlite3_bind_text(s, 4, from, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && from)
        rc = sqlite3_bind_text(s, 5, to, -1, SQLITE_STATIC);
    while (r == STORE_OK && (rc == SQLITE_OK || rc == SQLITE_ROW) && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const void *blob = sqlite3_column_blob(s, 2);
        size_t len = (size_t) sqlite3_column_bytes(s, 2);
        store_entry e;

        if (len + 1 > cap) {
            char *nb = realloc(buf, len + 1);
            if (!nb) {
                r = STORE_ENOMEM;
                break;
            }
            buf = nb;
            cap = len + 1;
        }
        if (len)
            memcpy(buf, blob, len);
        buf[len] = '\0';
        e.kind = (char *) kind;
        e.mesh = (char *) sqlite3_column_text(s, 0);
        e.name = (char *) sqlite3_column_text(s, 1);
        e.value = buf;
        e.len = len;
        e.version = (uint64_t) sqlite3_column_int64(s, 3);
        if (!e.mesh || !e.name) {
            r = STORE_ENOMEM;
            break;
        }
        r = fn(userdata, &e);
    }
    if (r == STORE_OK && rc != SQLITE_DONE)
        r = meshca_fail(err, code_of(rc), "store '%s': cannot list %s%s%s: %s", q->path, kind,
                        mesh_name ? " of mesh " : "", mesh_name ? mesh_name : "", sqlite3_errmsg(q->db));
    else if (r == STORE_ENOMEM)
        r = meshca_fail(err, r, "store '%s': cannot list %s: out of memory", q->path, kind);
    sqlite3_reset(s);
    if (buf && cap)
        OPENSSL_cleanse(buf, cap);   /* values may be secrets */
    free(buf);
    return r;
}

static int sq_scan(void *impl, const char *kind, const char *mesh_name, store_scan_fn fn, void *userdata,
                   char *err) {
    return scan_rows(impl, kind, mesh_name, NULL, NULL, fn, userdata, err);
}

static int sq_scan_range(void *impl, const char *kind, const char *mesh_name, const char *from, const char *to,
                         store_scan_fn fn, void *userdata, char *err) {
    return scan_rows(impl, kind, mesh_name, from, to, fn, userdata, err);
}

static int sq_list(void *impl, const char *kind, const char *mesh_name, store_entry **ret_entries, size_t *ret_count,
                   char *err) {
    sq_store *q = impl;
    sqlite3_stmt *s = stmt(q, mesh_name ? ST_LIST_MESH : ST_LIST_ALL);
    store_entry *v = NULL;
    size_t n = 0, cap = 0;
    int rc, r = check_moved(q, err, kind, "list");

    if (r < 0)
        return r;
    rc = sqlite3_bind_text(s, 1, kind, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 2, now_ms());
    if (rc == SQLITE_OK && mesh_name)
        rc = sqlite3_bind_text(s, 3, mesh_name, -1, SQLITE_STATIC);
    while ((rc == SQLITE_OK || rc == SQLITE_ROW) && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_entry *e;

        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            store_entry *nv = realloc(v, ncap * sizeof(*nv));
            if (!nv) {
                r = STORE_ENOMEM;
                break;
            }
            v = nv;
            cap = ncap;
        }
        e = &v[n];
        memset(e, 0, sizeof(*e));
        e->kind = strdup(kind);
        e->mesh = strdup((const char *) sqlite3_column_text(s, 0));
        e->name = strdup((const char *) sqlite3_column_text(s, 1));
        e->version = (uint64_t) sqlite3_column_int64(s, 3);
        n++;
        if (!e->kind || !e->mesh || !e->name || copy_value(s, 2, &e->value, &e->len) < 0) {
            r = STORE_ENOMEM;
            break;
        }
    }
    if (r == STORE_OK && rc != SQLITE_DONE)
        r = meshca_fail(err, code_of(rc), "store '%s': cannot list %s%s%s: %s", q->path, kind,
                        mesh_name ? " of mesh " : "", mesh_name ? mesh_name : "", sqlite3_errmsg(q->db));
    sqlite3_reset(s);
    if (r < 0) {
        store_entries_free(v, n);
        if (r == STORE_ENOMEM)
            return meshca_fail(err, r, "store '%s': cannot list %s: out of memory", q->path, kind);
        return r;
    }
    if (n == 0) {
        free(v);
        v = NULL;
    }
    *ret_entries = v;
    *ret_count = n;
    return STORE_OK;
}

static int sq_revision(void *impl, uint64_t *ret, char *err) {
    sq_store *q = impl;
    uint64_t rev;
    int rc, r = check_moved(q, err, "revision", "read");

    if (r < 0)
        return r;
    rc = meta_get(q, "revision", &rev);
    if (rc != SQLITE_OK)
        return sq_fail(q, rc, err, "cannot read the revision");
    *ret = rev;
    return STORE_OK;
}

/* --- writes ------------------------------------------------------------------------------- */

/* Ends a write transaction: commit when r is 0, else roll back; a failed commit is the result. */
static int finish(sq_store *q, int r, char *err, const char *what) {
    int rc;

    /* Failpoints (test-only, reconciler/failpoint.h): a crash or a failure just before the
     * COMMIT (nothing written) and just after it (everything written, the caller told "error"). */
    if (r == STORE_OK)
        r = FAILPOINT("sqlite.commit.before", err);
    if (r == STORE_OK) {
        rc = exec_simple(q, ST_COMMIT);
        if (rc == SQLITE_OK)
            return FAILPOINT("sqlite.commit.after", err);
        r = meshca_fail(err, code_of(rc), "store '%s': %s: cannot commit: %s", q->path, what, sqlite3_errmsg(q->db));
    }
    /* A failed COMMIT may have rolled back already; then ROLLBACK fails harmlessly. */
    if (!sqlite3_get_autocommit(q->db))
        (void) exec_simple(q, ST_ROLLBACK);
    return r;
}

static int begin_write(sq_store *q, char *err, const char *what) {
    int rc, r = check_moved(q, err, what, "write");

    if (r < 0)
        return r;
    rc = exec_simple(q, ST_BEGIN);
    if (rc == SQLITE_OK)
        return STORE_OK;
    return meshca_fail(err, code_of(rc), "store '%s': %s: cannot start a write transaction: %s", q->path, what,
                       sqlite3_errmsg(q->db));
}

/* Prunes every revision up to and including cutoff from the change log; watches from before it get STORE_ECOMPACTED. */
static int compact_to(sq_store *q, uint64_t cutoff) {
    uint64_t compacted = 0;
    sqlite3_stmt *s;
    int rc = meta_get(q, "compacted", &compacted);

    if (rc != SQLITE_OK || cutoff <= compacted)
        return rc;
    s = stmt(q, ST_PRUNE);
    rc = sqlite3_bind_int64(s, 1, (sqlite3_int64) cutoff);
    if (rc == SQLITE_OK)
        rc = exec_stmt(q, s);
    return rc == SQLITE_OK ? meta_set(q, "compacted", cutoff) : rc;
}

/* Keeps the change log under CHANGES_MAX_ROWS, never dropping revision rev (just written). */
static int compact_rows(sq_store *q, uint64_t rev, size_t written) {
    sqlite3_stmt *s;
    uint64_t cutoff;
    int rc;

    if (rev % CHANGES_CHECK_EVERY != 0 && written < CHANGES_CHECK_EVERY * 4)
        return SQLITE_OK;
    s = stmt(q, ST_ROW_CUTOFF);
    rc = sqlite3_bind_int64(s, 1, CHANGES_MAX_ROWS);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return SQLITE_OK;
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return rc;
    }
    cutoff = (uint64_t) sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (cutoff >= rev)
        cutoff = rev - 1;
    return compact_to(q, cutoff);
}

/* Takes the next revision (caller is in a write txn) and prunes the change log to the window. */
static int next_revision(sq_store *q, uint64_t *ret) {
    uint64_t rev;
    int rc = meta_get(q, "revision", &rev);

    if (rc != SQLITE_OK)
        return rc;
    if (rev >= (uint64_t) INT64_MAX - 1)
        return SQLITE_FULL;
    rev++;
    rc = meta_set(q, "revision", rev);
    if (rc == SQLITE_OK && rev > STORE_WATCH_WINDOW)
        rc = compact_to(q, rev - STORE_WATCH_WINDOW);
    if (rc == SQLITE_OK)
        *ret = rev;
    return rc;
}

static int count_stmt(sq_store *q, sqlite3_stmt *s, int64_t *ret) {
    int rc = sqlite3_step(s);

    if (rc == SQLITE_ROW) {
        *ret = sqlite3_column_int64(s, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        *ret = 0;
        rc = SQLITE_OK;
    }
    sqlite3_reset(s);
    return rc;
}

/* Deletes the objects of expired leases at one new revision, with delete events. In a write txn. */
static int purge_expired(sq_store *q, int64_t now) {
    sqlite3_stmt *s = stmt(q, ST_EXPIRED_ANY);
    uint64_t rev;
    int64_t count = 0;
    int rc;

    rc = sqlite3_bind_int64(s, 1, now);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return SQLITE_OK;
    if (rc != SQLITE_ROW)
        return rc;
    s = stmt(q, ST_EXPIRED_COUNT);
    rc = sqlite3_bind_int64(s, 1, now);
    if (rc == SQLITE_OK)
        rc = count_stmt(q, s, &count);
    if (rc == SQLITE_OK && count > 0) {
        rc = next_revision(q, &rev);
        if (rc == SQLITE_OK) {
            s = stmt(q, ST_EXPIRED_CHANGES);
            rc = sqlite3_bind_int64(s, 1, now);
            if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(s, 2, (sqlite3_int64) rev);
            if (rc == SQLITE_OK)
                rc = exec_stmt(q, s);
        }
        if (rc == SQLITE_OK) {
            s = stmt(q, ST_EXPIRED_DELETE);
            rc = sqlite3_bind_int64(s, 1, now);
            if (rc == SQLITE_OK)
                rc = exec_stmt(q, s);
        }
    }
    if (rc == SQLITE_OK) {
        s = stmt(q, ST_EXPIRED_LEASES);
        rc = sqlite3_bind_int64(s, 1, now);
        if (rc == SQLITE_OK)
            rc = exec_stmt(q, s);
    }
    return rc;
}

static int current_version(sq_store *q, const store_key *key, uint64_t *ret) {
    sqlite3_stmt *s = stmt(q, ST_VERSION);
    int rc = bind_key(s, key);

    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *ret = (uint64_t) sqlite3_column_int64(s, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        *ret = 0;
        rc = SQLITE_OK;
    }
    sqlite3_reset(s);
    return rc;
}

static int lease_alive(sq_store *q, store_lease_id id, int64_t now, int *ret) {
    sqlite3_stmt *s = stmt(q, ST_LEASE_ALIVE);
    int rc = sqlite3_bind_int64(s, 1, id);

    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 2, now);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        *ret = rc == SQLITE_ROW;
        return SQLITE_OK;
    }
    return rc;
}

/* Verifies one op against the state inside the write txn. */
static int check_op(sq_store *q, const store_op *op, int64_t now, size_t *writes, char *err) {
    char what[KEY_TEXT_MAX];
    uint64_t cur = 0;
    int rc, alive = 1;

    rc = current_version(q, &op->key, &cur);
    if (rc == SQLITE_OK && op->type == STORE_OP_PUT && op->lease != 0)
        rc = lease_alive(q, op->lease, now, &alive);
    if (rc == SQLITE_OK && (op->type != STORE_OP_DELETE || cur != 0) &&
        (op->expected_version == STORE_ANY_VERSION || op->expected_version == cur) && alive) {
        if (op->type != STORE_OP_CHECK)
            (*writes)++;
        return STORE_OK;
    }
    /* The key's text only for the message: a pass checks 200,000 ops that pass. */
    key_text(&op->key, what, sizeof(what));
    if (rc != SQLITE_OK)
        return meshca_fail(err, code_of(rc), "store '%s': %s: cannot read: %s", q->path, what, sqlite3_errmsg(q->db));
    if (op->type == STORE_OP_DELETE && cur == 0)
        return meshca_fail(err, STORE_ENOTFOUND, "store '%s': %s: cannot delete: not found", q->path, what);
    if (op->expected_version != STORE_ANY_VERSION && op->expected_version != cur)
        return meshca_fail(err, STORE_ECONFLICT, "store '%s': %s: version conflict: at version %" PRIu64
                           ", expected %" PRIu64, q->path, what, cur, op->expected_version);
    if (!alive)
        return meshca_fail(err, STORE_ENOTFOUND, "store '%s': %s: lease %lld has expired or was revoked", q->path, what,
                           (long long) op->lease);
    if (op->type != STORE_OP_CHECK)
        (*writes)++;
    return STORE_OK;
}

static int apply_op(sq_store *q, const store_op *op, uint64_t rev) {
    sqlite3_stmt *s;
    int rc;

    if (op->type == STORE_OP_CHECK)
        return SQLITE_OK;
    s = stmt(q, op->type == STORE_OP_PUT ? ST_PUT : ST_DELETE);
    rc = bind_key(s, &op->key);
    if (rc == SQLITE_OK && op->type == STORE_OP_PUT) {
        /* A non-NULL pointer binds an empty blob for len 0, not SQL NULL. */
        rc = sqlite3_bind_blob64(s, 4, op->value ? op->value : "", op->len, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(s, 5, (sqlite3_int64) rev);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(s, 6, op->lease);
    }
    if (rc == SQLITE_OK)
        rc = exec_stmt(q, s);
    if (rc != SQLITE_OK)
        return rc;
    s = stmt(q, ST_CHANGE);
    rc = sqlite3_bind_int64(s, 1, (sqlite3_int64) rev);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 2, op->key.kind, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 3, op->key.mesh, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 4, op->key.name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(s, 5, op->type == STORE_OP_PUT ? STORE_EVENT_PUT : STORE_EVENT_DELETE);
    return rc == SQLITE_OK ? exec_stmt(q, s) : rc;
}

/* "dataplanes/default/web-01" or "dataplanes/default/web-01 and 1999 more objects". */
static void ops_text(const store_op *ops, size_t nops, char *buf, size_t len) {
    char first[KEY_TEXT_MAX];

    key_text(&ops[0].key, first, sizeof(first));
    if (nops == 1)
        (void) snprintf(buf, len, "%s", first);
    else
        (void) snprintf(buf, len, "%s and %zu more objects", first, nops - 1);
}

/*
 * BEGIN IMMEDIATE; purge expired leases; SAVEPOINT; check every op; write every op at one new
 * revision; RELEASE; COMMIT. A failed check rolls back to the savepoint, so a purge still lands.
 */
static int sq_txn(void *impl, const store_op *ops, size_t nops, uint64_t *ret_version, char *err) {
    char what[KEY_TEXT_MAX + 48];
    sq_store *q = impl;
    int64_t now = now_ms();
    uint64_t rev = 0;
    size_t writes = 0;
    int rc, r;

    ops_text(ops, nops, what, sizeof(what));
    r = begin_write(q, err, what);
    if (r < 0)
        return r;
    rc = purge_expired(q, now);
    if (rc == SQLITE_OK)
        rc = exec_simple(q, ST_SAVEPOINT);
    if (rc != SQLITE_OK)
        return finish(q, meshca_fail(err, code_of(rc), "store '%s': %s: cannot write: %s", q->path, what,
                                     sqlite3_errmsg(q->db)), err, what);
    for (size_t i = 0; i < nops && r == STORE_OK; i++)
        r = check_op(q, &ops[i], now, &writes, err);
    if (r == STORE_OK && writes > 0) {
        rc = next_revision(q, &rev);
        for (size_t i = 0; i < nops && rc == SQLITE_OK; i++) {
            rc = apply_op(q, &ops[i], rev);
            if (rc != SQLITE_OK)
                ops_text(&ops[i], 1, what, sizeof(what));
        }
        if (rc == SQLITE_OK)
            rc = compact_rows(q, rev, writes);
        if (rc != SQLITE_OK)
            r = meshca_fail(err, code_of(rc), "store '%s': %s: cannot write: %s", q->path, what, sqlite3_errmsg(q->db));
    }
    if (r < 0) {
        /* Keep the purge of expired leases; undo the ops. */
        if (exec_simple(q, ST_ROLLBACK_TO) != SQLITE_OK || exec_simple(q, ST_RELEASE) != SQLITE_OK) {
            (void) exec_simple(q, ST_ROLLBACK);
            return r;
        }
        (void) finish(q, STORE_OK, NULL, what);
        return r;
    }
    rc = exec_simple(q, ST_RELEASE);
    if (rc != SQLITE_OK)
        r = meshca_fail(err, code_of(rc), "store '%s': %s: cannot write: %s", q->path, what, sqlite3_errmsg(q->db));
    r = finish(q, r, err, what);
    if (r == STORE_OK && ret_version) {
        if (writes == 0)
            (void) meta_get(q, "revision", &rev);
        *ret_version = rev;
    }
    return r;
}

/*
 * A transaction built in parts (store_txn_open): BEGIN IMMEDIATE and the purge of expired
 * leases; then each part checks and writes its ops at the one revision taken by the first
 * write; the close commits (keeping the change log in its window) or rolls everything back.
 */
static int sq_txn_open(void *impl, uint64_t since, char *err) {
    sq_store *q = impl;
    const char *what = "a transaction in parts";
    uint64_t rev = 0;
    int rc, r = begin_write(q, err, what);

    if (r < 0)
        return r;
    rc = purge_expired(q, now_ms());
    /* After the purge: one that deleted anything took a revision, and the checks are made. */
    if (rc == SQLITE_OK && since != STORE_NO_REVISION)
        rc = meta_get(q, "revision", &rev);
    if (rc != SQLITE_OK)
        return finish(q, meshca_fail(err, code_of(rc), "store '%s': %s: cannot write: %s", q->path, what,
                                     sqlite3_errmsg(q->db)), err, what);
    q->open = 1;
    q->open_rev = 0;
    q->open_writes = 0;
    q->open_unchanged = since != STORE_NO_REVISION && rev == since;
    return STORE_OK;
}

static int sq_txn_add(void *impl, const store_op *ops, size_t nops, char *err) {
    char what[KEY_TEXT_MAX + 48];
    sq_store *q = impl;
    int64_t now = now_ms();
    size_t writes = 0;
    int rc = SQLITE_OK, r = STORE_OK;

    if (!q->open || nops == 0)
        return q->open ? STORE_OK : meshca_fail(err, STORE_EINVAL, "store '%s': no transaction is open", q->path);
    /* Checked against the store as this transaction left it: a key written by an earlier part
     * has that part's revision. */
    for (size_t i = 0; i < nops && r == STORE_OK; i++) {
        const store_op *op = &ops[i];
        /* Nothing written since the writer read these versions, each key once (store.h). */
        if (q->open_unchanged && op->lease == 0 &&
            (op->type == STORE_OP_PUT || op->type == STORE_OP_CHECK))
            writes += op->type == STORE_OP_PUT;
        else
            r = check_op(q, op, now, &writes, err);
    }
    if (r < 0)
        return r;
    ops_text(ops, nops, what, sizeof(what));
    if (writes > 0 && q->open_rev == 0)
        rc = next_revision(q, &q->open_rev);
    for (size_t i = 0; writes > 0 && i < nops && rc == SQLITE_OK; i++) {
        rc = apply_op(q, &ops[i], q->open_rev);
        if (rc != SQLITE_OK)
            ops_text(&ops[i], 1, what, sizeof(what));
    }
    if (rc != SQLITE_OK)
        return meshca_fail(err, code_of(rc), "store '%s': %s: cannot write: %s", q->path, what, sqlite3_errmsg(q->db));
    q->open_writes += writes;
    return STORE_OK;
}

static int sq_txn_close(void *impl, int commit, char *err) {
    sq_store *q = impl;
    const char *what = "a transaction in parts";
    int rc = SQLITE_OK, r = commit ? STORE_OK : STORE_ECONFLICT;

    if (!q->open)
        return meshca_fail(err, STORE_EINVAL, "store '%s': no transaction is open", q->path);
    q->open = 0;
    q->open_unchanged = 0;
    if (commit && q->open_writes > 0)
        rc = compact_rows(q, q->open_rev, q->open_writes);
    if (rc != SQLITE_OK)
        r = meshca_fail(err, code_of(rc), "store '%s': %s: cannot write: %s", q->path, what, sqlite3_errmsg(q->db));
    r = finish(q, r, err, what);
    return commit ? r : STORE_OK;
}

/* --- watch -------------------------------------------------------------------------------- */

static int any_expired(sq_store *q, int64_t now, int *ret) {
    sqlite3_stmt *s = stmt(q, ST_EXPIRED_ANY);
    int rc = sqlite3_bind_int64(s, 1, now);

    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        *ret = rc == SQLITE_ROW;
        return SQLITE_OK;
    }
    return rc;
}

/* One look at the change log in one read snapshot. */
static int watch_once(sq_store *q, uint64_t after, store_event **ret_events, size_t *ret_count, char *err) {
    store_event *v = NULL;
    size_t n = 0, cap = 0;
    uint64_t compacted = 0, last = 0;
    sqlite3_stmt *s;
    int rc, r = check_moved(q, err, "change log", "read");

    if (r < 0)
        return r;
    rc = exec_simple(q, ST_BEGIN_READ);
    if (rc == SQLITE_OK)
        rc = meta_get(q, "compacted", &compacted);
    if (rc != SQLITE_OK) {
        r = sq_fail(q, rc, err, "cannot read the change log");
        goto out;
    }
    if (after < compacted) {
        r = meshca_fail(err, STORE_ECOMPACTED,
                        "store '%s': changes after revision %" PRIu64 " were compacted (kept from %" PRIu64 "): re-list",
                        q->path, after, compacted);
        goto out;
    }
    s = stmt(q, ST_WATCH);
    rc = sqlite3_bind_int64(s, 1, (sqlite3_int64) after);
    while ((rc == SQLITE_OK || rc == SQLITE_ROW) && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        uint64_t rev = (uint64_t) sqlite3_column_int64(s, 0);
        store_event *e;

        /* Whole revisions only, so a caller resuming from the last version misses nothing. */
        if (n >= STORE_WATCH_MAX_EVENTS && rev != last) {
            rc = SQLITE_DONE;
            break;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            store_event *nv = realloc(v, ncap * sizeof(*nv));
            if (!nv) {
                r = STORE_ENOMEM;
                break;
            }
            v = nv;
            cap = ncap;
        }
        e = &v[n++];
        e->version = last = rev;
        e->kind = strdup((const char *) sqlite3_column_text(s, 1));
        e->mesh = strdup((const char *) sqlite3_column_text(s, 2));
        e->name = strdup((const char *) sqlite3_column_text(s, 3));
        e->op = sqlite3_column_int(s, 4) == STORE_EVENT_DELETE ? STORE_EVENT_DELETE : STORE_EVENT_PUT;
        if (!e->kind || !e->mesh || !e->name) {
            r = STORE_ENOMEM;
            break;
        }
    }
    sqlite3_reset(s);
    if (r == STORE_ENOMEM)
        r = meshca_fail(err, r, "store '%s': cannot read the change log: out of memory", q->path);
    else if (rc != SQLITE_DONE)
        r = sq_fail(q, rc, err, "cannot read the change log");
out:
    if (!sqlite3_get_autocommit(q->db))
        (void) exec_simple(q, ST_COMMIT);
    if (r < 0) {
        store_events_free(v, n);
        return r;
    }
    if (n == 0) {
        free(v);
        v = NULL;
    }
    *ret_events = v;
    *ret_count = n;
    return STORE_OK;
}

/* SQLite has no cross-process notification: poll the log (cheap, one indexed range read). */
static int sq_watch(void *impl, uint64_t after, int timeout_ms, store_event **ret_events, size_t *ret_count,
                    char *err) {
    sq_store *q = impl;
    int64_t deadline = now_ms() + timeout_ms;

    for (;;) {
        int64_t now = now_ms(), left;
        int expired = 0, rc, r;

        rc = any_expired(q, now, &expired);
        if (rc != SQLITE_OK)
            return sq_fail(q, rc, err, "cannot read the leases");
        if (expired) {
            /* Expiry is a change watchers must see, so a watch makes it happen. */
            r = begin_write(q, err, "expiring leases");
            if (r < 0)
                return r;
            rc = purge_expired(q, now);
            if (rc != SQLITE_OK)
                return finish(q, sq_fail(q, rc, err, "cannot expire leases"), err, "expiring leases");
            r = finish(q, STORE_OK, err, "expiring leases");
            if (r < 0)
                return r;
        }
        r = watch_once(q, after, ret_events, ret_count, err);
        if (r < 0 || *ret_count > 0)
            return r;
        left = deadline - now_ms();
        if (left <= 0)
            return STORE_OK;
        (void) usleep((useconds_t) (left < WATCH_POLL_MS ? left : WATCH_POLL_MS) * 1000);
    }
}

/* --- leases ------------------------------------------------------------------------------- */

static int sq_lease_grant(void *impl, int64_t ttl_seconds, store_lease_id *ret_id, char *err) {
    sq_store *q = impl;
    sqlite3_stmt *s;
    store_lease_id id;
    int rc, r;

    r = begin_write(q, err, "lease grant");
    if (r < 0)
        return r;
    s = stmt(q, ST_LEASE_INSERT);
    rc = sqlite3_bind_int64(s, 1, ttl_seconds * 1000);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 2, now_ms() + ttl_seconds * 1000);
    if (rc == SQLITE_OK)
        rc = exec_stmt(q, s);
    if (rc != SQLITE_OK)
        return finish(q, sq_fail(q, rc, err, "cannot grant a lease"), err, "lease grant");
    id = sqlite3_last_insert_rowid(q->db);
    r = finish(q, STORE_OK, err, "lease grant");
    if (r == STORE_OK)
        *ret_id = id;
    return r;
}

static int sq_lease_keepalive(void *impl, store_lease_id id, char *err) {
    sq_store *q = impl;
    sqlite3_stmt *s;
    int rc, r;

    r = begin_write(q, err, "lease keepalive");
    if (r < 0)
        return r;
    s = stmt(q, ST_LEASE_KEEP);
    rc = sqlite3_bind_int64(s, 1, id);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 2, now_ms());
    if (rc == SQLITE_OK)
        rc = exec_stmt(q, s);
    if (rc != SQLITE_OK)
        return finish(q, sq_fail(q, rc, err, "cannot keep a lease alive"), err, "lease keepalive");
    if (sqlite3_changes(q->db) == 0)
        return finish(q, meshca_fail(err, STORE_ENOTFOUND, "store '%s': lease %lld has expired or was revoked",
                                     q->path, (long long) id), err, "lease keepalive");
    return finish(q, STORE_OK, err, "lease keepalive");
}

static int sq_lease_revoke(void *impl, store_lease_id id, char *err) {
    sq_store *q = impl;
    int64_t now = now_ms(), count = 0;
    sqlite3_stmt *s;
    uint64_t rev;
    int rc, r, alive = 0;

    r = begin_write(q, err, "lease revoke");
    if (r < 0)
        return r;
    rc = purge_expired(q, now);
    if (rc == SQLITE_OK)
        rc = lease_alive(q, id, now, &alive);
    if (rc == SQLITE_OK && !alive)
        return finish(q, meshca_fail(err, STORE_ENOTFOUND, "store '%s': lease %lld has expired or was revoked",
                                     q->path, (long long) id), err, "lease revoke");
    if (rc == SQLITE_OK) {
        s = stmt(q, ST_LEASE_COUNT);
        rc = sqlite3_bind_int64(s, 1, id);
        if (rc == SQLITE_OK)
            rc = count_stmt(q, s, &count);
    }
    if (rc == SQLITE_OK && count > 0) {
        rc = next_revision(q, &rev);
        if (rc == SQLITE_OK) {
            s = stmt(q, ST_LEASE_CHANGES);
            rc = sqlite3_bind_int64(s, 1, id);
            if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(s, 2, (sqlite3_int64) rev);
            if (rc == SQLITE_OK)
                rc = exec_stmt(q, s);
        }
        if (rc == SQLITE_OK) {
            s = stmt(q, ST_LEASE_DELETE_OBJECTS);
            rc = sqlite3_bind_int64(s, 1, id);
            if (rc == SQLITE_OK)
                rc = exec_stmt(q, s);
        }
    }
    if (rc == SQLITE_OK) {
        s = stmt(q, ST_LEASE_DELETE);
        rc = sqlite3_bind_int64(s, 1, id);
        if (rc == SQLITE_OK)
            rc = exec_stmt(q, s);
    }
    if (rc != SQLITE_OK)
        return finish(q, sq_fail(q, rc, err, "cannot revoke a lease"), err, "lease revoke");
    return finish(q, STORE_OK, err, "lease revoke");
}

static const struct store_ops sqlite_ops = {
    .name = "sqlite",
    .get = sq_get,
    .list = sq_list,
    .scan = sq_scan,
    .scan_range = sq_scan_range,
    .txn = sq_txn,
    .txn_open = sq_txn_open,
    .txn_add = sq_txn_add,
    .txn_close = sq_txn_close,
    .revision = sq_revision,
    .watch = sq_watch,
    .lease_grant = sq_lease_grant,
    .lease_keepalive = sq_lease_keepalive,
    .lease_revoke = sq_lease_revoke,
    .close = sq_close,
};
