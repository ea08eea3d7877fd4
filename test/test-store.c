/* test-store.c - Check suite for the store contract on every backend (sqlite://, and etcd:// with "etcd" as argument), plus each backend's own cases. */
#define _GNU_SOURCE 1
#include "reconciler/store.h"
#include "reconciler/store/etcd_client.h"

#include "etcd-harness.h"

#include <check.h>
#include <errno.h>
#include <sqlite3.h>
#include <time.h>
#include <signal.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * One set of contract tests (tcase "contract") runs on the backend chosen by the argument:
 * none = sqlite:// in a temporary directory (suite unit), "etcd" = one real etcd member shared
 * by the tests, its "/meshca/" keys wiped before each test (suite etcd).
 */
static int on_etcd;
static harness member;

static char tmpdir[] = "/tmp/meshca-test-store-XXXXXX";
static char url[512];
static char storedir[128];
static char dbpath[160];

/* Every test starts from an empty store: on etcd the revision keeps growing, which the
 * contract allows (versions only compare). */
static void wipe_etcd(void) {
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    char err[MESHCA_ERRBUF] = "", end[8];
    size_t end_len = etcd_prefix_end("/meshca/", 8, end);

    o.endpoints = member.endpoints;
    ck_assert_msg(etcd_client_new(&o, &c, err) == 0, "etcd client: %s", err);
    ck_assert_msg(etcd_delete_range(c, "/meshca/", 8, end, end_len, NULL, NULL, err) == 0, "wipe: %s", err);
    etcd_client_free(c);
}

static void setup(void) {
    char tmpl[] = "/tmp/meshca-test-store-XXXXXX";

    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    memcpy(tmpdir, tmpl, sizeof(tmpl));
    ck_assert_int_lt(snprintf(storedir, sizeof(storedir), "%s/store", tmpdir), (int) sizeof(storedir));
    ck_assert_int_lt(snprintf(dbpath, sizeof(dbpath), "%s/meshca.db", storedir), (int) sizeof(dbpath));
    if (on_etcd) {
        ck_assert_int_lt(snprintf(url, sizeof(url), "etcd://%s", member.endpoints), (int) sizeof(url));
        wipe_etcd();
    } else {
        ck_assert_int_lt(snprintf(url, sizeof(url), "sqlite://%s", dbpath), (int) sizeof(url));
    }
}

static void teardown(void) {
    char cmd[256];

    /* The path is our own mkdtemp result, so handing it to rm is safe. */
    if (snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir) < (int) sizeof(cmd))
        (void) !system(cmd);
}

static store *open_store(void) {
    char err[MESHCA_ERRBUF] = "";
    store *s = NULL;
    int r = store_open(url, &s, err);

    ck_assert_msg(r == STORE_OK, "store_open(%s): %d %s", url, r, err);
    return s;
}

static uint64_t put_str(store *s, const char *kind, const char *mesh_name, const char *name, const char *v,
                        uint64_t expected) {
    store_key k = { kind, mesh_name, name };
    uint64_t ver = 0;

    ck_assert_int_eq(store_put(s, &k, v, strlen(v), expected, &ver), STORE_OK);
    return ver;
}

START_TEST(put_then_get_returns_same_bytes_and_version) {
    store *s = open_store();
    store_key k = { "dataplanes", "default", "web-01" };
    const char bin[] = "{\"a\":1}\0binary\n";
    char *v = NULL;
    size_t len = 0;
    uint64_t ver = 0, got = 0, rev = 0;

    ck_assert_int_eq(store_put(s, &k, bin, sizeof(bin), 0, &ver), STORE_OK);
    ck_assert_uint_gt(ver, 0);
    ck_assert_int_eq(store_get(s, &k, &v, &len, &got), STORE_OK);
    ck_assert_uint_eq(len, sizeof(bin));
    ck_assert_int_eq(memcmp(v, bin, len), 0);
    ck_assert_int_eq(v[len], '\0');
    ck_assert_uint_eq(got, ver);
    free(v);

    ck_assert_int_eq(store_revision(s, &rev), STORE_OK);
    ck_assert_uint_eq(rev, ver);

    /* A later write gets a strictly larger version, also after reopening. */
    store_close(s);
    s = open_store();
    ck_assert_uint_gt(put_str(s, "dataplanes", "default", "web-01", "x", ver), ver);
    store_close(s);
}
END_TEST

START_TEST(get_of_absent_object_is_notfound_and_leaves_outputs) {
    store *s = open_store();
    store_key k = { "secrets", "default", "nope" };
    char *v = (char *) 0x1;
    uint64_t ver = 42;

    ck_assert_int_eq(store_get(s, &k, &v, NULL, &ver), STORE_ENOTFOUND);
    ck_assert_ptr_eq(v, (char *) 0x1);
    ck_assert_uint_eq(ver, 42);
    store_close(s);
}
END_TEST

START_TEST(put_with_stale_version_conflicts) {
    store *s = open_store();
    store_key k = { "meshes", NULL, "default" };
    uint64_t v1 = put_str(s, "meshes", NULL, "default", "one", 0);
    uint64_t v2 = put_str(s, "meshes", "default", "default", "two", v1);
    char *v = NULL;
    size_t len;

    ck_assert_uint_gt(v2, v1);
    ck_assert_int_eq(store_put(s, &k, "three", 5, v1, NULL), STORE_ECONFLICT);
    ck_assert_int_eq(store_get(s, &k, &v, &len, NULL), STORE_OK);
    ck_assert_str_eq(v, "two");
    free(v);
    store_close(s);
}
END_TEST

START_TEST(create_when_object_exists_conflicts) {
    store *s = open_store();
    store_key k = { "secrets", "default", "token" };

    put_str(s, "secrets", "default", "token", "a", 0);
    ck_assert_int_eq(store_put(s, &k, "b", 1, 0, NULL), STORE_ECONFLICT);
    /* Updating an absent object at a version also conflicts. */
    k.name = "other";
    ck_assert_int_eq(store_put(s, &k, "b", 1, 7, NULL), STORE_ECONFLICT);
    /* Unconditional put always succeeds. */
    ck_assert_int_eq(store_put(s, &k, "b", 1, STORE_ANY_VERSION, NULL), STORE_OK);
    store_close(s);
}
END_TEST

START_TEST(delete_removes_object_and_checks_version) {
    store *s = open_store();
    store_key k = { "identities", "default", "web-01" };
    uint64_t ver = put_str(s, "identities", "default", "web-01", "id", 0), rev0 = 0, rev1 = 0;
    char *v = NULL;

    ck_assert_int_eq(store_delete(s, &k, ver + 100), STORE_ECONFLICT);
    ck_assert_int_eq(store_delete(s, &k, 0), STORE_EINVAL);
    ck_assert_int_eq(store_revision(s, &rev0), STORE_OK);
    ck_assert_int_eq(store_delete(s, &k, ver), STORE_OK);
    ck_assert_int_eq(store_revision(s, &rev1), STORE_OK);
    ck_assert_uint_gt(rev1, rev0);
    ck_assert_int_eq(store_get(s, &k, &v, NULL, NULL), STORE_ENOTFOUND);
    ck_assert_int_eq(store_delete(s, &k, STORE_ANY_VERSION), STORE_ENOTFOUND);
    /* Re-creating after delete works with "must not exist". */
    ck_assert_uint_gt(put_str(s, "identities", "default", "web-01", "id2", 0), rev1);
    store_close(s);
}
END_TEST

START_TEST(list_is_sorted_by_mesh_then_name_and_filters_by_mesh) {
    store *s = open_store();
    store_entry *e = NULL;
    size_t n = 0;

    put_str(s, "dataplanes", "zeta", "b", "zb", 0);
    put_str(s, "dataplanes", "alpha", "web-2", "a2", 0);
    put_str(s, "dataplanes", "alpha", "web-1", "a1", 0);
    put_str(s, "dataplanes", "zeta", "a", "za", 0);
    put_str(s, "dpstatus", "alpha", "web-1", "other kind", 0);

    ck_assert_msg(store_list(s, "dataplanes", NULL, &e, &n) == STORE_OK, "%s", store_errmsg(s));
    ck_assert_uint_eq(n, 4);
    ck_assert_str_eq(e[0].mesh, "alpha");
    ck_assert_str_eq(e[0].name, "web-1");
    ck_assert_str_eq(e[0].value, "a1");
    ck_assert_str_eq(e[1].name, "web-2");
    ck_assert_str_eq(e[2].mesh, "zeta");
    ck_assert_str_eq(e[2].name, "a");
    ck_assert_str_eq(e[3].name, "b");
    ck_assert_str_eq(e[3].kind, "dataplanes");
    ck_assert_uint_gt(e[3].version, 0);
    store_entries_free(e, n);

    ck_assert_int_eq(store_list(s, "dataplanes", "zeta", &e, &n), STORE_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(e[0].value, "za");
    ck_assert_str_eq(e[1].value, "zb");
    store_entries_free(e, n);

    ck_assert_int_eq(store_list(s, "secrets", NULL, &e, &n), STORE_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(e);
    ck_assert_int_eq(store_list(s, "dataplanes", "nomesh", &e, &n), STORE_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(store_list(s, "bogus", NULL, &e, &n), STORE_EINVAL);
    store_close(s);
}
END_TEST

typedef struct range_seen {
    char got[256];
    int n;
} range_seen;

static int range_collect(void *userdata, const store_entry *e) {
    range_seen *r = userdata;
    size_t len = strlen(r->got);

    ck_assert_str_eq(e->kind, "identities");
    ck_assert_uint_eq(strlen(e->value), e->len);
    ck_assert_uint_gt(e->version, 0);
    snprintf(r->got + len, sizeof(r->got) - len, "%s%s/%s=%s", len ? " " : "", e->mesh, e->name, e->value);
    r->n++;
    return 0;
}

/* The names [from, to] of one mesh, in name order: what a pass reads of its identities range by
 * range. A name that extends another ("b-1" after "b"), a mesh that extends another ("m-x" sorts
 * before "m/" on etcd), another kind and names outside stay out. */
static const char *scan_range_str(store *s, const char *mesh_name, const char *from, const char *to,
                                  range_seen *r) {
    memset(r, 0, sizeof(*r));
    ck_assert_msg(store_scan_range(s, "identities", mesh_name, from, to, range_collect, r) == STORE_OK, "%s",
                  store_errmsg(s));
    return r->got;
}

START_TEST(scan_range_gives_the_names_between_two_names_of_one_mesh_in_order) {
    store *s = open_store();
    range_seen r;
    static const char *const names[] = {"a", "b", "b-1", "b.1", "c", "d"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        put_str(s, "identities", "m", names[i], names[i], 0);
    put_str(s, "identities", "m-x", "b", "other mesh", 0);
    put_str(s, "identities", "ma", "c", "other mesh", 0);
    put_str(s, "dataplanes", "m", "b", "other kind", 0);

    ck_assert_str_eq(scan_range_str(s, "m", "b", "c", &r), "m/b=b m/b-1=b-1 m/b.1=b.1 m/c=c");
    ck_assert_str_eq(scan_range_str(s, "m", "b", "b", &r), "m/b=b");
    ck_assert_str_eq(scan_range_str(s, "m", "a", "d", &r), "m/a=a m/b=b m/b-1=b-1 m/b.1=b.1 m/c=c m/d=d");
    /* Bounds that are no stored name. */
    ck_assert_str_eq(scan_range_str(s, "m", "a0", "b0", &r), "m/b=b m/b-1=b-1 m/b.1=b.1");
    ck_assert_str_eq(scan_range_str(s, "m", "c0", "zz", &r), "m/d=d");
    ck_assert_str_eq(scan_range_str(s, "m", "0", "9", &r), "");
    /* from after to: nothing, not an error. */
    ck_assert_str_eq(scan_range_str(s, "m", "d", "a", &r), "");
    ck_assert_int_eq(r.n, 0);
    ck_assert_str_eq(scan_range_str(s, "nomesh", "a", "z", &r), "");
    /* The mesh is required, and names are checked as keys are. */
    ck_assert_int_eq(store_scan_range(s, "identities", NULL, "a", "b", range_collect, &r), STORE_EINVAL);
    ck_assert_int_eq(store_scan_range(s, "identities", "m", "A", "b", range_collect, &r), STORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(store_errmsg(s), "invalid name in range 'A'"));
    ck_assert_int_eq(store_scan_range(s, "bogus", "m", "a", "b", range_collect, &r), STORE_EINVAL);
    store_close(s);
}
END_TEST

START_TEST(txn_with_one_conflicting_op_writes_nothing) {
    store *s = open_store();
    uint64_t v1 = put_str(s, "meshes", NULL, "default", "m1", 0), rev0 = 0, rev1 = 0, ver = 0;
    store_op ops[3] = {
        { STORE_OP_PUT, { "dataplanes", "default", "web-01" }, "dp", 2, 0 },
        { STORE_OP_PUT, { "meshes", "default", "default" }, "m2", 2, v1 + 5 }, /* stale */
        { STORE_OP_PUT, { "secrets", "default", "s" }, "sec", 3, STORE_ANY_VERSION },
    };
    store_key dp = { "dataplanes", "default", "web-01" }, m = { "meshes", NULL, "default" };
    char *v = NULL;

    ck_assert_int_eq(store_revision(s, &rev0), STORE_OK);
    ck_assert_int_eq(store_txn(s, ops, 3), STORE_ECONFLICT);
    ck_assert_int_eq(store_get(s, &dp, &v, NULL, NULL), STORE_ENOTFOUND);
    ck_assert_int_eq(store_get(s, &m, &v, NULL, NULL), STORE_OK);
    ck_assert_str_eq(v, "m1");
    free(v);
    ck_assert_int_eq(store_revision(s, &rev1), STORE_OK);
    ck_assert_uint_eq(rev1, rev0);

    /* Fixed, the same transaction applies every op at one new version. */
    ops[1].expected_version = v1;
    ck_assert_int_eq(store_txn(s, ops, 3), STORE_OK);
    ck_assert_int_eq(store_get(s, &dp, &v, NULL, &ver), STORE_OK);
    free(v);
    ck_assert_int_eq(store_revision(s, &rev1), STORE_OK);
    ck_assert_uint_eq(ver, rev1);

    /* A delete of an absent object also aborts the whole txn, and duplicate keys are refused. */
    store_op ops2[2] = {
        { STORE_OP_PUT, { "secrets", "default", "s2" }, "x", 1, 0 },
        { STORE_OP_DELETE, { "secrets", "default", "absent" }, NULL, 0, STORE_ANY_VERSION },
    };
    ck_assert_int_eq(store_txn(s, ops2, 2), STORE_ENOTFOUND);
    store_key s2 = { "secrets", "default", "s2" };
    ck_assert_int_eq(store_get(s, &s2, &v, NULL, NULL), STORE_ENOTFOUND);
    ops2[1] = ops2[0];
    ck_assert_int_eq(store_txn(s, ops2, 2), STORE_EINVAL);
    store_close(s);
}
END_TEST

START_TEST(bad_names_are_rejected_before_touching_disk) {
    static const char *const bad[] = {
        "../etc", "..", "a/b", "", "Web", "a..b", "-a", "a-", ".hidden", "a b", "a\\b", "x.json/",
    };
    store *s = open_store();
    char *v = NULL;
    char longname[STORE_NAME_MAX + 2];
    struct stat st;
    char path[256];
    store_entry *e = NULL;
    size_t n = 0;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        store_key kn = { "dataplanes", "default", bad[i] }, km = { "dataplanes", bad[i], "web" };
        ck_assert_msg(store_put(s, &kn, "x", 1, STORE_ANY_VERSION, NULL) == STORE_EINVAL, "name '%s'", bad[i]);
        ck_assert_msg(store_put(s, &km, "x", 1, STORE_ANY_VERSION, NULL) == STORE_EINVAL, "mesh '%s'", bad[i]);
        ck_assert_int_eq(store_get(s, &kn, &v, NULL, NULL), STORE_EINVAL);
        ck_assert_int_eq(store_delete(s, &km, STORE_ANY_VERSION), STORE_EINVAL);
    }
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    store_key kl = { "dataplanes", "default", longname };
    ck_assert_int_eq(store_put(s, &kl, "x", 1, STORE_ANY_VERSION, NULL), STORE_EINVAL);
    longname[STORE_NAME_MAX] = '\0';
    ck_assert_int_eq(store_put(s, &kl, "x", 1, STORE_ANY_VERSION, NULL), STORE_OK);

    store_key nullname = { "dataplanes", "default", NULL }, badkind = { "../x", "default", "a" },
              meshmismatch = { "meshes", "other", "default" };
    ck_assert_int_eq(store_put(s, &nullname, "x", 1, STORE_ANY_VERSION, NULL), STORE_EINVAL);
    ck_assert_int_eq(store_put(s, &badkind, "x", 1, STORE_ANY_VERSION, NULL), STORE_EINVAL);
    ck_assert_int_eq(store_put(s, &meshmismatch, "x", 1, STORE_ANY_VERSION, NULL), STORE_EINVAL);
    ck_assert_int_eq(store_list(s, "dataplanes", "../default", &e, &n), STORE_EINVAL);

    /* Nothing escaped the store directory. */
    ck_assert_int_lt(snprintf(path, sizeof(path), "%s/etc", tmpdir), (int) sizeof(path));
    ck_assert_int_ne(stat(path, &st), 0);
    store_close(s);
}
END_TEST

static void assert_mode(const char *rel, mode_t want) {
    char path[512];
    struct stat st;

    ck_assert_int_lt(snprintf(path, sizeof(path), "%s/%s", storedir, rel), (int) sizeof(path));
    ck_assert_msg(lstat(path, &st) == 0, "stat %s", path);
    ck_assert_msg((st.st_mode & 07777) == want, "%s has mode %o, want %o", rel, st.st_mode & 07777, want);
}

START_TEST(files_are_0600_and_dirs_0700_whatever_the_umask) {
    mode_t old = umask(0);
    store *s = open_store();

    put_str(s, "secrets", "default", "ca-1", "-----BEGIN PRIVATE KEY-----", 0);
    put_str(s, "meshes", NULL, "default", "{}", 0);
    umask(old);
    assert_mode("", 0700);
    assert_mode("meshca.db", 0600);
    /* While a handle is open, WAL mode keeps these beside the database; they hold the same data. */
    assert_mode("meshca.db-wal", 0600);
    assert_mode("meshca.db-shm", 0600);
    store_close(s);
}
END_TEST

#define INCREMENTS 200

static int increment_many(void) {
    store_key k = { "meshstatus", NULL, "default" };
    store *s = NULL;

    /* Each process opens its own handle: an SQLite connection must not cross fork(). */
    if (store_open(url, &s, NULL) != STORE_OK)
        return 1;
    for (int i = 0; i < INCREMENTS; i++) {
        for (;;) {
            char *v = NULL, buf[32], *end;
            uint64_t ver = 0;
            unsigned long cur = 0;
            int r = store_get(s, &k, &v, NULL, &ver), n;

            if (r == STORE_OK) {
                cur = strtoul(v, &end, 10);
                free(v);
            } else if (r != STORE_ENOTFOUND) {
                store_close(s);
                return 2;
            }
            n = snprintf(buf, sizeof(buf), "%lu", cur + 1);
            r = store_put(s, &k, buf, (size_t) n, r == STORE_OK ? ver : 0, NULL);
            if (r == STORE_OK)
                break;
            if (r != STORE_ECONFLICT) {
                store_close(s);
                return 3;
            }
        }
    }
    store_close(s);
    return 0;
}

START_TEST(two_processes_incrementing_with_cas_lose_no_update) {
    pid_t pids[2];
    store *s;
    store_key k = { "meshstatus", "default", "default" };
    char *v = NULL;

    /* Create the store first so both children open an existing directory. */
    s = open_store();
    store_close(s);
    for (int i = 0; i < 2; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0)
            _exit(increment_many());
    }
    for (int i = 0; i < 2; i++) {
        int status = 0;
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d status %d", i, status);
    }
    s = open_store();
    ck_assert_int_eq(store_get(s, &k, &v, NULL, NULL), STORE_OK);
    ck_assert_str_eq(v, "400");
    free(v);
    store_close(s);
}
END_TEST

#define KILL_OBJECTS 4
#define KILL_VALUE_LEN (256 * 1024)

static void write_forever(void) {
    char *buf = malloc(KILL_VALUE_LEN);
    char name[16];
    store *s = NULL;

    if (!buf || store_open(url, &s, NULL) != STORE_OK)
        _exit(1);
    for (unsigned i = 0;; i++) {
        store_key k = { "identities", "default", name };
        (void) snprintf(name, sizeof(name), "dp-%u", i % KILL_OBJECTS);
        memset(buf, 'a' + (int) (i % 26), KILL_VALUE_LEN);
        if (store_put(s, &k, buf, KILL_VALUE_LEN, STORE_ANY_VERSION, NULL) != STORE_OK)
            _exit(2);
    }
}

START_TEST(kill_9_during_writes_leaves_every_object_whole) {
    store *s = open_store();
    uint64_t rev = 0;
    pid_t pid;

    store_close(s);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        write_forever();
    usleep(150 * 1000);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);

    s = open_store();
    ck_assert_int_eq(store_revision(s, &rev), STORE_OK);
    for (int i = 0; i < KILL_OBJECTS; i++) {
        char name[16], *v = NULL;
        store_key k = { "identities", "default", name };
        size_t len = 0;
        uint64_t ver = 0;
        int r;

        (void) snprintf(name, sizeof(name), "dp-%d", i);
        r = store_get(s, &k, &v, &len, &ver);
        if (r == STORE_ENOTFOUND)
            continue; /* killed before its first write */
        ck_assert_int_eq(r, STORE_OK);
        ck_assert_uint_eq(len, KILL_VALUE_LEN);
        for (size_t j = 1; j < len; j++)
            ck_assert_int_eq(v[j], v[0]);
        ck_assert_uint_le(ver, rev);
        free(v);
    }
    store_close(s);
}
END_TEST

/* Issue 11: etcd:// and etcds:// are schemes of the table now; their URL is checked at open. */
START_TEST(file_url_is_retired_etcd_url_checked_and_unknown_scheme_invalid) {
    char err[MESHCA_ERRBUF] = "";
    store *s = (store *) 0x1;

    ck_assert_int_eq(store_open("etcd://127.0.0.1:2379?max-txn-ops=1", &s, err), STORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "max-txn-ops must be 2..100000"));
    ck_assert_int_eq(store_open("etcd://127.0.0.1:2379?page=3", &s, err), STORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "unknown parameter 'page=3'"));
    ck_assert_int_eq(store_open("etcds://", &s, err), STORE_EINVAL);
    ck_assert_ptr_eq(s, (store *) 0x1);
    /* Opening connects to nothing: a member that is not there shows at the first call. */
    ck_assert_int_eq(store_open("etcd://127.0.0.1:1", &s, err), STORE_OK);
    ck_assert_uint_eq(store_txn_limit(s), 128);
    store_close(s);
    s = (store *) 0x1;
    ck_assert_int_eq(store_open("http://x", &s, err), STORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "unknown scheme"));
    ck_assert_int_eq(store_open("file:///tmp/x", &s, err), STORE_EINVAL);
    ck_assert_str_eq(err, "store URL 'file:///tmp/x': the file:// store was retired; use sqlite://PATH (the default)");
    ck_assert_int_eq(store_open("sqlite://", &s, err), STORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "missing path"));
    ck_assert_ptr_eq(s, (store *) 0x1);
    ck_assert_str_eq(store_strerror(STORE_ECONFLICT), "version conflict");
    ck_assert_uint_eq(store_txn_limit(NULL), STORE_TXN_MAX);
}
END_TEST

START_TEST(null_url_uses_meshca_store_env) {
    store *s = NULL;
    store_key k = { "secrets", "m", "n" };

    ck_assert_int_eq(setenv("MESHCA_STORE", url, 1), 0);
    ck_assert_int_eq(store_open(NULL, &s, NULL), STORE_OK);
    put_str(s, "secrets", "m", "n", "v", 0);
    store_close(s);
    unsetenv("MESHCA_STORE");
    s = open_store();
    char *v = NULL;
    ck_assert_int_eq(store_get(s, &k, &v, NULL, NULL), STORE_OK);
    free(v);
    store_close(s);
}
END_TEST

static void assert_err_has(store *s, const char *want) {
    ck_assert_msg(strstr(store_errmsg(s), want) != NULL, "store_errmsg '%s' lacks '%s'", store_errmsg(s), want);
}

START_TEST(errors_name_the_object_and_the_cause) {
    store *s = open_store();
    store_key k = { "dataplanes", "default", "web-01" };
    char *v = NULL;

    ck_assert_int_eq(store_get(s, &k, &v, NULL, NULL), STORE_ENOTFOUND);
    assert_err_has(s, "dataplanes/default/web-01: not found");
    put_str(s, "dataplanes", "default", "web-01", "x", 0);
    ck_assert_int_eq(store_put(s, &k, "y", 1, 0, NULL), STORE_ECONFLICT);
    assert_err_has(s, "dataplanes/default/web-01: version conflict");
    /* A later success clears the message. */
    ck_assert_int_eq(store_get(s, &k, &v, NULL, NULL), STORE_OK);
    free(v);
    ck_assert_str_eq(store_errmsg(s), "");
    store_close(s);
}
END_TEST

/* Issue 9 item 17: a store whose directory was removed must fail writes with sqlite's cause and the object. */
START_TEST(removed_store_directory_fails_writes_naming_cause_and_object) {
    store *s = open_store();
    store_key k = { "identities", "default", "web-01" };
    char cmd[300];

    put_str(s, "identities", "default", "web-01", "gen-1", 0);
    ck_assert_int_lt(snprintf(cmd, sizeof(cmd), "rm -rf '%s'", storedir), (int) sizeof(cmd));
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(store_put(s, &k, "gen-2", 5, STORE_ANY_VERSION, NULL), STORE_EIO);
    assert_err_has(s, "identities/default/web-01");
    assert_err_has(s, "attempt to write a readonly database");
    assert_err_has(s, dbpath);
    store_close(s);
}
END_TEST

/*
 * Issue 9 item 17: the read-only case. Root ignores file modes, so when run as root the store is
 * handed to an unprivileged uid and a child with that uid does the writing.
 */
#define NOBODY 65534

START_TEST(read_only_store_fails_writes_naming_cause_and_object) {
    store *s = open_store();
    int pipefd[2], status = 0;
    char msg[MESHCA_ERRBUF] = "", cmd[300];
    ssize_t got;
    pid_t pid;

    put_str(s, "identities", "default", "web-01", "gen-1", 0);
    store_close(s);
    if (geteuid() == 0) {
        ck_assert_int_eq(chmod(tmpdir, 0711), 0);
        ck_assert_int_lt(snprintf(cmd, sizeof(cmd), "chown -R %d:%d '%s'", NOBODY, NOBODY, storedir), (int) sizeof(cmd));
        ck_assert_int_eq(system(cmd), 0);
    }
    ck_assert_int_eq(chmod(dbpath, 0400), 0);
    ck_assert_int_eq(pipe(pipefd), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        store_key k = { "identities", "default", "web-01" };
        store *c = NULL;
        char err[MESHCA_ERRBUF] = "";
        int r;

        if (geteuid() == 0 && (setgid(NOBODY) < 0 || setuid(NOBODY) < 0))
            _exit(10);
        if (store_open(url, &c, err) != STORE_OK) {
            (void) !write(pipefd[1], err, strlen(err));
            _exit(11);
        }
        r = store_put(c, &k, "gen-2", 5, STORE_ANY_VERSION, NULL);
        (void) !write(pipefd[1], store_errmsg(c), strlen(store_errmsg(c)));
        _exit(r == STORE_EIO ? 0 : 12);
    }
    close(pipefd[1]);
    got = read(pipefd[0], msg, sizeof(msg) - 1);
    msg[got > 0 ? got : 0] = '\0';
    close(pipefd[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child exit %d: %s", WEXITSTATUS(status), msg);
    ck_assert_msg(strstr(msg, "identities/default/web-01") && strstr(msg, "attempt to write a readonly database"),
                  "message: %s", msg);
    ck_assert_int_eq(chmod(dbpath, 0600), 0);
}
END_TEST

START_TEST(missing_parent_directory_is_named_at_open) {
    char u[300], err[MESHCA_ERRBUF] = "", want[300];
    store *s = NULL;

    ck_assert_int_lt(snprintf(u, sizeof(u), "sqlite://%s/no-such/sub/meshca.db", tmpdir), (int) sizeof(u));
    ck_assert_int_eq(store_open(u, &s, err), STORE_EIO);
    ck_assert_int_lt(snprintf(want, sizeof(want), "store directory '%s/no-such/sub' cannot be created: its parent directory '%s/no-such' does not exist", tmpdir, tmpdir), (int) sizeof(want));
    ck_assert_str_eq(err, want);
    ck_assert_ptr_null(s);
}
END_TEST

/* Issue 9 item 19: loose permissions on an existing store are refused, as ssh refuses an open key. */
START_TEST(loose_permissions_on_existing_store_are_refused) {
    char err[MESHCA_ERRBUF] = "", want[400];
    store *s = open_store();

    put_str(s, "secrets", "default", "ca-1-key", "-----BEGIN PRIVATE KEY-----", 0);
    store_close(s);

    ck_assert_int_eq(chmod(storedir, 0777), 0);
    s = NULL;
    ck_assert_int_eq(store_open(url, &s, err), STORE_EINSECURE);
    ck_assert_ptr_null(s);
    ck_assert_int_lt(snprintf(want, sizeof(want), "store directory '%s' has mode 0777: other users can write it; refusing to use it (run: chmod 700 '%s')", storedir, storedir), (int) sizeof(want));
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(chmod(storedir, 0700), 0);

    ck_assert_int_eq(chmod(dbpath, 0666), 0);
    ck_assert_int_eq(store_open(url, &s, err), STORE_EINSECURE);
    ck_assert_int_lt(snprintf(want, sizeof(want), "store file '%s' has mode 0666: other users can write it; refusing to use it (run: chmod 600 '%s')", dbpath, dbpath), (int) sizeof(want));
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(chmod(dbpath, 0640), 0);
    ck_assert_int_eq(store_open(url, &s, err), STORE_EINSECURE);
    ck_assert_ptr_nonnull(strstr(err, "has mode 0640: other users can read it"));
    ck_assert_int_eq(chmod(dbpath, 0600), 0);
    s = open_store();
    store_close(s);
}
END_TEST

/* A store written by a newer meshca (its schema version above this one's) is refused at open, and
 * left as it is: an older meshca (a downgrade) neither reads it with the wrong layout nor writes
 * it. */
START_TEST(store_of_a_newer_schema_is_refused_and_left_unchanged) {
    char err[MESHCA_ERRBUF] = "", want[400], sql[64];
    store *s = open_store();
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int version = -1, after = -1;
    struct stat before, now;

    put_str(s, "meshes", NULL, "default", "{}", 0);
    store_close(s);
    ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    ck_assert_int_gt(version, 0);
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version + 1);
    ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
    ck_assert_int_eq(stat(dbpath, &before), 0);

    s = NULL;
    ck_assert_int_eq(store_open(url, &s, err), STORE_EUNSUPPORTED);
    ck_assert_ptr_null(s);
    ck_assert_int_lt(snprintf(want, sizeof(want), "store '%s': schema version %d is newer than this meshca (%d)",
                              dbpath, version + 1, version), (int) sizeof(want));
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(stat(dbpath, &now), 0);
    ck_assert_int_eq(now.st_size, before.st_size);
    ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    after = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    ck_assert_int_eq(after, version + 1);
}
END_TEST

/* A store file owned by another (non-root) user is refused, whatever its mode: that user could
 * change it (as ssh's StrictModes). Tests run as root (CI too), which may hand the file over. */
START_TEST(store_owned_by_another_user_is_refused) {
    char err[MESHCA_ERRBUF] = "", want[400];
    store *s = open_store();

    store_close(s);
    ck_assert_msg(geteuid() == 0, "this test hands the store file to another uid: run it as root");
    ck_assert_int_eq(chown(dbpath, 4321, (gid_t) -1), 0);
    s = NULL;
    ck_assert_int_eq(store_open(url, &s, err), STORE_EINSECURE);
    ck_assert_ptr_null(s);
    ck_assert_int_lt(snprintf(want, sizeof(want), "store file '%s' is owned by uid 4321, not by this user (uid 0); refusing to use it",
                              dbpath), (int) sizeof(want));
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(chown(dbpath, 0, (gid_t) -1), 0);
    s = open_store();
    store_close(s);
}
END_TEST

static const char *dbpath_wal_or_shm(const char *suffix) {
    static char path[sizeof(dbpath) + 8];

    ck_assert_int_lt(snprintf(path, sizeof(path), "%s%s", dbpath, suffix), (int) sizeof(path));
    return path;
}

static int page_size_of(const char *path) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int size = -1;

    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        size = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return size;
}

/* Issue 13: a new store has 16 KiB pages (an identity record fits in its B-tree leaf instead of
 * taking an overflow page); a store made with 4 KiB pages before keeps them and works. */
START_TEST(new_store_has_16k_pages_and_an_older_4k_store_keeps_working) {
    store *s = open_store();
    char *v = NULL, *big = malloc(2400);
    size_t len = 0;
    sqlite3 *db = NULL;

    ck_assert_ptr_nonnull(big);
    memset(big, 'x', 2399);
    big[2399] = '\0';
    put_str(s, "identities", "default", "web-01", big, 0);
    store_close(s);
    ck_assert_int_eq(page_size_of(dbpath), 16384);

    /* An older store: 4 KiB pages, WAL, made before this change. */
    ck_assert_int_eq(remove(dbpath), 0);
    (void) remove(dbpath_wal_or_shm("-wal"));
    (void) remove(dbpath_wal_or_shm("-shm"));
    ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL;"
                                      "CREATE TABLE older (a); DROP TABLE older;", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    ck_assert_int_eq(chmod(dbpath, 0600), 0);
    s = open_store();
    put_str(s, "identities", "default", "web-01", big, 0);
    ck_assert_int_eq(store_get(s, &(store_key){ "identities", "default", "web-01" }, &v, &len, NULL), STORE_OK);
    ck_assert_uint_eq(len, 2399);
    ck_assert_int_eq(memcmp(v, big, len), 0);
    store_close(s);
    ck_assert_int_eq(page_size_of(dbpath), 4096);
    free(v);
    free(big);
}
END_TEST

START_TEST(check_op_fences_a_txn_and_writes_nothing) {
    store *s = open_store();
    uint64_t leader = put_str(s, "meshstatus", NULL, "leader", "me", 0), rev0 = 0, rev1 = 0;
    store_op ops[2] = {
        { .type = STORE_OP_CHECK, .key = { "meshstatus", NULL, "leader" }, .expected_version = leader },
        { .type = STORE_OP_PUT, .key = { "identities", "default", "web-01" }, .value = "c", .len = 1,
          .expected_version = STORE_ANY_VERSION },
    };
    store_key id = { "identities", "default", "web-01" };
    char *v = NULL;
    uint64_t ver = 0;

    ck_assert_int_eq(store_txn(s, ops, 2), STORE_OK);
    ck_assert_int_eq(store_get(s, &id, &v, NULL, &ver), STORE_OK);
    free(v);
    /* The leader key moved on: a fenced write is refused whole. */
    put_str(s, "meshstatus", NULL, "leader", "other", leader);
    ops[1].value = "d";
    ck_assert_int_eq(store_revision(s, &rev0), STORE_OK);
    ck_assert_int_eq(store_txn(s, ops, 2), STORE_ECONFLICT);
    assert_err_has(s, "meshstatus/leader/leader: version conflict");
    ck_assert_int_eq(store_get(s, &id, &v, NULL, NULL), STORE_OK);
    ck_assert_str_eq(v, "c");
    free(v);
    /* A txn of checks only changes nothing, and "any version" is not a check. */
    ck_assert_int_eq(store_txn(s, ops, 1), STORE_ECONFLICT);
    ops[0].expected_version = 0;
    ops[0].key.name = "absent";
    ck_assert_int_eq(store_txn(s, ops, 1), STORE_OK);
    ck_assert_int_eq(store_revision(s, &rev1), STORE_OK);
    ck_assert_uint_eq(rev1, rev0);
    ops[0].expected_version = STORE_ANY_VERSION;
    ck_assert_int_eq(store_txn(s, ops, 1), STORE_EINVAL);
    store_close(s);
}
END_TEST

START_TEST(watch_returns_changes_after_a_revision_in_order) {
    store *s = open_store();
    store_event *ev = NULL;
    size_t n = 0;
    uint64_t rev0 = 0, v1, v2;
    store_op ops[2] = {
        { .type = STORE_OP_PUT, .key = { "dataplanes", "default", "b" }, .value = "b", .len = 1,
          .expected_version = STORE_ANY_VERSION },
        { .type = STORE_OP_DELETE, .key = { "dataplanes", "default", "a" }, .expected_version = STORE_ANY_VERSION },
    };

    ck_assert_int_eq(store_revision(s, &rev0), STORE_OK);
    ck_assert_int_eq(store_watch(s, rev0, 0, &ev, &n), STORE_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(ev);
    v1 = put_str(s, "dataplanes", "default", "a", "a", 0);
    ck_assert_int_eq(store_txn(s, ops, 2), STORE_OK);
    ck_assert_int_eq(store_revision(s, &v2), STORE_OK);

    ck_assert_int_eq(store_watch(s, rev0, 0, &ev, &n), STORE_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(ev[0].name, "a");
    ck_assert_int_eq(ev[0].op, STORE_EVENT_PUT);
    ck_assert_uint_eq(ev[0].version, v1);
    /* One txn: one revision, events sorted by key. */
    ck_assert_str_eq(ev[1].name, "a");
    ck_assert_int_eq(ev[1].op, STORE_EVENT_DELETE);
    ck_assert_uint_eq(ev[1].version, v2);
    ck_assert_str_eq(ev[2].kind, "dataplanes");
    ck_assert_str_eq(ev[2].mesh, "default");
    ck_assert_str_eq(ev[2].name, "b");
    ck_assert_int_eq(ev[2].op, STORE_EVENT_PUT);
    ck_assert_uint_eq(ev[2].version, v2);
    store_events_free(ev, n);

    ck_assert_int_eq(store_watch(s, v1, 0, &ev, &n), STORE_OK);
    ck_assert_uint_eq(n, 2);
    store_events_free(ev, n);
    store_close(s);
}
END_TEST

START_TEST(watch_waits_for_a_write_by_another_process) {
    store *s = open_store();
    store_event *ev = NULL;
    size_t n = 0;
    uint64_t rev = 0;
    struct timespec t0, t1;
    pid_t pid;

    ck_assert_int_eq(store_revision(s, &rev), STORE_OK);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        store *c = NULL;
        store_key k = { "dpstatus", "default", "web-01" };
        usleep(300 * 1000);
        if (store_open(url, &c, NULL) != STORE_OK || store_put(c, &k, "ack", 3, 0, NULL) != STORE_OK)
            _exit(1);
        store_close(c);
        _exit(0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(store_watch(s, rev, 5000, &ev, &n), STORE_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(ev[0].kind, "dpstatus");
    ck_assert_str_eq(ev[0].name, "web-01");
    store_events_free(ev, n);
    ck_assert_int_lt((t1.tv_sec - t0.tv_sec), 3);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);

    /* Nothing new: the watch times out empty. */
    ck_assert_int_eq(store_revision(s, &rev), STORE_OK);
    ck_assert_int_eq(store_watch(s, rev, 100, &ev, &n), STORE_OK);
    ck_assert_uint_eq(n, 0);
    store_close(s);
}
END_TEST

START_TEST(watch_older_than_the_window_is_compacted) {
    store *s = open_store();
    store_event *ev = NULL;
    size_t n = 0;
    uint64_t first = put_str(s, "dpstatus", "default", "a", "0", 0), last = first, rev = 0;
    char buf[16];

    for (int i = 1; i <= STORE_WATCH_WINDOW; i++) {
        (void) snprintf(buf, sizeof(buf), "%d", i);
        last = put_str(s, "dpstatus", "default", "a", buf, last);
    }
    ck_assert_int_eq(store_watch(s, first - 1, 0, &ev, &n), STORE_ECOMPACTED);
    assert_err_has(s, "re-list");
    ck_assert_int_eq(store_watch(s, first, 0, &ev, &n), STORE_OK);
    ck_assert_uint_eq(n, STORE_WATCH_WINDOW);
    ck_assert_uint_eq(ev[n - 1].version, last);
    store_events_free(ev, n);
    ck_assert_int_eq(store_revision(s, &rev), STORE_OK);
    ck_assert_uint_eq(rev, last);
    store_close(s);
}
END_TEST

START_TEST(leased_object_vanishes_when_the_lease_expires_with_a_delete_event) {
    store *s = open_store();
    store_lease_id lease = 0;
    store_key k = { "meshstatus", NULL, "leader" };
    store_op put = { .type = STORE_OP_PUT, .key = k, .value = "ctl-1", .len = 5, .expected_version = 0 };
    store_event *ev = NULL;
    size_t n = 0;
    uint64_t rev = 0;
    char *v = NULL;

    ck_assert_int_eq(store_lease_grant(s, 0, &lease), STORE_EINVAL);
    ck_assert_int_eq(store_lease_grant(s, 1, &lease), STORE_OK);
    ck_assert_int_gt(lease, 0);
    put.lease = lease;
    ck_assert_int_eq(store_txn(s, &put, 1), STORE_OK);
    ck_assert_int_eq(store_revision(s, &rev), STORE_OK);
    /* Kept alive past its first ttl, it stays. */
    usleep(600 * 1000);
    ck_assert_int_eq(store_lease_keepalive(s, lease), STORE_OK);
    usleep(600 * 1000);
    ck_assert_int_eq(store_get(s, &k, &v, NULL, NULL), STORE_OK);
    free(v);
    /* Not kept alive, it expires: reads hide it at once, the next watch records its deletion. */
    usleep(1100 * 1000);
    ck_assert_int_eq(store_get(s, &k, &v, NULL, NULL), STORE_ENOTFOUND);
    ck_assert_int_eq(store_watch(s, rev, 0, &ev, &n), STORE_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(ev[0].op, STORE_EVENT_DELETE);
    ck_assert_str_eq(ev[0].name, "leader");
    store_events_free(ev, n);
    ck_assert_int_eq(store_lease_keepalive(s, lease), STORE_ENOTFOUND);
    /* A put on an expired lease is refused; another controller may now take the key. */
    ck_assert_int_eq(store_txn(s, &put, 1), STORE_ENOTFOUND);
    assert_err_has(s, "expired or was revoked");
    put.lease = 0;
    ck_assert_int_eq(store_txn(s, &put, 1), STORE_OK);
    store_close(s);
}
END_TEST

START_TEST(revoked_lease_deletes_its_objects_at_once) {
    store *s = open_store();
    store_lease_id lease = 0;
    store_op ops[2] = {
        { .type = STORE_OP_PUT, .key = { "meshstatus", NULL, "leader" }, .value = "x", .len = 1,
          .expected_version = STORE_ANY_VERSION },
        { .type = STORE_OP_PUT, .key = { "dpstatus", "default", "held" }, .value = "y", .len = 1,
          .expected_version = STORE_ANY_VERSION },
    };
    store_key k0 = { "meshstatus", NULL, "leader" }, k1 = { "dpstatus", "default", "held" },
              k2 = { "dpstatus", "default", "kept" };
    uint64_t rev0 = 0, rev1 = 0;
    char *v = NULL;

    ck_assert_int_eq(store_lease_grant(s, 60, &lease), STORE_OK);
    ops[0].lease = ops[1].lease = lease;
    ck_assert_int_eq(store_txn(s, ops, 2), STORE_OK);
    put_str(s, "dpstatus", "default", "kept", "z", 0);
    ck_assert_int_eq(store_revision(s, &rev0), STORE_OK);
    ck_assert_int_eq(store_lease_revoke(s, lease), STORE_OK);
    ck_assert_int_eq(store_revision(s, &rev1), STORE_OK);
    ck_assert_uint_eq(rev1, rev0 + 1);
    ck_assert_int_eq(store_get(s, &k0, &v, NULL, NULL), STORE_ENOTFOUND);
    ck_assert_int_eq(store_get(s, &k1, &v, NULL, NULL), STORE_ENOTFOUND);
    ck_assert_int_eq(store_get(s, &k2, &v, NULL, NULL), STORE_OK);
    free(v);
    ck_assert_int_eq(store_lease_revoke(s, lease), STORE_ENOTFOUND);
    store_close(s);
}
END_TEST

/* Another process holding the write lock past the busy timeout: STORE_EUNAVAILABLE, retry later. */
START_TEST(write_lock_held_past_busy_timeout_is_unavailable) {
    store *s = open_store();
    store_key k = { "dpstatus", "default", "web-01" };
    int pipefd[2];
    char c;
    pid_t pid;

    store_close(s);
    ck_assert_int_eq(pipe(pipefd), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        sqlite3 *db = NULL;
        if (sqlite3_open(dbpath, &db) != SQLITE_OK || sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            _exit(1);
        (void) !write(pipefd[1], "x", 1);
        sleep(30);
        _exit(0);
    }
    ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
    s = open_store();
    ck_assert_int_eq(store_put(s, &k, "ack", 3, STORE_ANY_VERSION, NULL), STORE_EUNAVAILABLE);
    assert_err_has(s, "dpstatus/default/web-01");
    assert_err_has(s, "database is locked");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* The lock died with its holder: the retry succeeds. */
    ck_assert_int_eq(store_put(s, &k, "ack", 3, STORE_ANY_VERSION, NULL), STORE_OK);
    store_close(s);
    close(pipefd[0]);
    close(pipefd[1]);
}
END_TEST

#define TXN_OBJECTS 2000
#define TXN_KILLS 200

/* Writes generation after generation of TXN_OBJECTS objects, each generation one txn. */
static void txn_forever(unsigned start) {
    static store_op ops[TXN_OBJECTS];
    static char names[TXN_OBJECTS][16];
    char value[32];
    store *s = NULL;

    if (store_open(url, &s, NULL) != STORE_OK)
        _exit(1);
    for (unsigned gen = start;; gen++) {
        int len = snprintf(value, sizeof(value), "generation-%u", gen);
        for (int i = 0; i < TXN_OBJECTS; i++) {
            (void) snprintf(names[i], sizeof(names[i]), "dp-%04d", i);
            ops[i] = (store_op) { .type = STORE_OP_PUT, .key = { "identities", "default", names[i] }, .value = value,
                                  .len = (size_t) len, .expected_version = STORE_ANY_VERSION };
        }
        if (store_txn(s, ops, TXN_OBJECTS) != STORE_OK)
            _exit(2);
    }
}

/* Issue 11: a kill -9 at any point of a large txn leaves all of it or none of it. */
START_TEST(kill_9_in_a_2000_put_txn_at_200_random_points_leaves_all_or_nothing) {
    store *s = open_store();
    unsigned seed = (unsigned) time(NULL), mid = 0;
    uint64_t last_rev = 0;

    store_close(s);
    srand(seed);
    for (int k = 0; k < TXN_KILLS; k++) {
        pid_t pid = fork();
        store_entry *e = NULL;
        size_t n = 0;
        uint64_t rev = 0;

        ck_assert_int_ge(pid, 0);
        if (pid == 0)
            txn_forever((unsigned) k * 1000u);
        /* 0..60 ms: before the first txn, inside one, or between two. */
        usleep((useconds_t) (rand() % 60000));
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        ck_assert_int_eq(waitpid(pid, NULL, 0), pid);

        s = open_store();
        ck_assert_int_eq(store_list(s, "identities", "default", &e, &n), STORE_OK);
        ck_assert_msg(n == 0 || n == TXN_OBJECTS, "kill %d (seed %u): %zu of %d objects", k, seed, n, TXN_OBJECTS);
        for (size_t i = 1; i < n; i++) {
            ck_assert_msg(strcmp(e[i].value, e[0].value) == 0 && e[i].version == e[0].version,
                          "kill %d (seed %u): %s has %s@%" PRIu64 ", %s has %s@%" PRIu64, k, seed, e[i].name, e[i].value,
                          e[i].version, e[0].name, e[0].value, e[0].version);
        }
        ck_assert_int_eq(store_revision(s, &rev), STORE_OK);
        ck_assert_uint_ge(rev, last_rev);
        if (n > 0 && e[0].version > last_rev)
            mid++;
        last_rev = rev;
        store_entries_free(e, n);
        store_close(s);
    }
    fprintf(stderr, "kill_9_in_a_2000_put_txn: %d kills (seed %u), %u of them after new txns landed; always all or nothing\n",
            TXN_KILLS, seed, mid);
}
END_TEST

/* --- etcd's own cases ---------------------------------------------------------------------- */

static store *open_etcd_with(const char *query) {
    char u[600], err[MESHCA_ERRBUF] = "";
    store *s = NULL;

    ck_assert_int_lt(snprintf(u, sizeof(u), "%s%s", url, query), (int) sizeof(u));
    ck_assert_msg(store_open(u, &s, err) == STORE_OK, "store_open(%s): %s", u, err);
    return s;
}

/* Issue 11: a txn over --max-txn-ops is several etcd txns, each atomic and each fenced by the checks. */
START_TEST(etcd_txn_over_max_txn_ops_is_split_and_every_part_carries_the_checks) {
    store *s = open_etcd_with("?max-txn-ops=4");
    uint64_t fence = put_str(s, "meshstatus", NULL, "leader", "me", 0), rev0 = 0, rev1 = 0;
    store_op ops[10];
    char names[9][8];
    store_entry *e = NULL;
    size_t n = 0, versions = 0;

    ck_assert_uint_eq(store_txn_limit(s), 4);
    ops[0] = (store_op) { .type = STORE_OP_CHECK, .key = { "meshstatus", NULL, "leader" }, .expected_version = fence };
    for (int i = 0; i < 9; i++) {
        (void) snprintf(names[i], sizeof(names[i]), "dp-%d", i);
        ops[i + 1] = (store_op) { .type = STORE_OP_PUT, .key = { "identities", "default", names[i] }, .value = "v1",
                                  .len = 2, .expected_version = 0 };
    }
    /* 1 check + 9 puts with 4 ops per etcd txn: the check and 3 puts, three times. */
    ck_assert_msg(store_txn(s, ops, 10) == STORE_OK, "%s", store_errmsg(s));
    ck_assert_int_eq(store_list(s, "identities", "default", &e, &n), STORE_OK);
    ck_assert_uint_eq(n, 9);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || e[i].version != e[i - 1].version)
            versions++;
    ck_assert_uint_eq(versions, 3);
    store_entries_free(e, n);

    /* The fence moved: no part writes, not even the first. */
    put_str(s, "meshstatus", NULL, "leader", "other", fence);
    for (int i = 1; i < 10; i++)
        ops[i].expected_version = STORE_ANY_VERSION, ops[i].value = "v2";
    ck_assert_int_eq(store_revision(s, &rev0), STORE_OK);
    ck_assert_int_eq(store_txn(s, ops, 10), STORE_ECONFLICT);
    assert_err_has(s, "meshstatus/leader/leader: version conflict");
    ck_assert_int_eq(store_revision(s, &rev1), STORE_OK);
    ck_assert_uint_eq(rev1, rev0);

    /* A conflict in the second part leaves the first applied, and says so. */
    ops[0].expected_version = fence + 1; /* the leader's current version: the put above */
    ck_assert_int_eq(store_revision(s, &rev0), STORE_OK);
    ops[0].expected_version = rev0;
    ops[5].expected_version = 1; /* dp-4: stale */
    ck_assert_int_eq(store_txn(s, ops, 10), STORE_ECONFLICT);
    assert_err_has(s, "identities/default/dp-4: version conflict");
    assert_err_has(s, "1 of 3 etcd txns of this 10-op write were applied");
    store_close(s);
}
END_TEST

/* Issue 11: when leadership moves in the middle of a split write, no later part lands: every
 * part carries the fence (the check), not only the first. */
START_TEST(etcd_split_write_stops_at_the_first_part_after_the_fence_moved) {
    store *s = open_etcd_with("?max-txn-ops=2");
    uint64_t fence = put_str(s, "meshstatus", NULL, "leader", "me", 0), moved = 0;
    static store_op ops[201];
    static char names[200][16];
    store_key leader = { "meshstatus", NULL, "leader" };
    store_entry *e = NULL;
    char *v = NULL;
    size_t n = 0;
    pid_t pid;
    int status = 0, r;

    ops[0] = (store_op) { .type = STORE_OP_CHECK, .key = leader, .expected_version = fence };
    for (int i = 0; i < 200; i++) {
        (void) snprintf(names[i], sizeof(names[i]), "dp-%03d", i);
        ops[i + 1] = (store_op) { .type = STORE_OP_PUT, .key = { "identities", "default", names[i] }, .value = "c",
                                  .len = 1, .expected_version = 0 };
    }
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Another replica takes over as soon as the first part has landed. */
        store_key first = { "identities", "default", "dp-000" };
        store *c = NULL;
        if (store_open(url, &c, NULL) != STORE_OK)
            _exit(1);
        for (int i = 0; i < 10000 && store_get(c, &first, &v, NULL, NULL) == STORE_ENOTFOUND; i++)
            usleep(1000);
        if (store_put(c, &leader, "other", 5, STORE_ANY_VERSION, NULL) != STORE_OK)
            _exit(2);
        _exit(0);
    }
    r = store_txn(s, ops, 201);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    ck_assert_msg(r == STORE_ECONFLICT, "the split write went through the moved fence: %d %s", r, store_errmsg(s));
    assert_err_has(s, "meshstatus/leader/leader: version conflict");
    ck_assert_int_eq(store_get(s, &leader, &v, NULL, &moved), STORE_OK);
    free(v);
    ck_assert_int_eq(store_list(s, "identities", "default", &e, &n), STORE_OK);
    ck_assert_uint_gt(n, 0);
    ck_assert_uint_lt(n, 200);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(e[i].version < moved, "%s written at %" PRIu64 ", after the fence moved at %" PRIu64, e[i].name,
                      e[i].version, moved);
    store_entries_free(e, n);
    store_close(s);
}
END_TEST

/* Issue 11: no member answering is "unavailable" (retry), naming every endpoint. */
START_TEST(etcd_with_no_member_answering_is_unavailable_naming_every_endpoint) {
    char err[MESHCA_ERRBUF] = "";
    store_key k = { "dataplanes", "default", "web-01" };
    store *s = NULL;
    char *v = NULL;

    ck_assert_int_eq(store_open("etcd://127.0.0.1:1,127.0.0.1:2", &s, err), STORE_OK);
    ck_assert_int_eq(store_get(s, &k, &v, NULL, NULL), STORE_EUNAVAILABLE);
    assert_err_has(s, "store 'etcd://127.0.0.1:1,127.0.0.1:2': dataplanes/default/web-01: no etcd member answered");
    assert_err_has(s, "127.0.0.1:1: ");
    assert_err_has(s, "127.0.0.1:2: ");
    ck_assert_int_eq(store_put(s, &k, "x", 1, STORE_ANY_VERSION, NULL), STORE_EUNAVAILABLE);
    store_close(s);
}
END_TEST

/* Issue 11: etcd's compaction is the store's STORE_ECOMPACTED (not the client's old ESTATE). */
START_TEST(etcd_watch_from_a_compacted_revision_is_store_compacted) {
    store *s = open_store();
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    char err[MESHCA_ERRBUF] = "";
    store_event *ev = NULL;
    size_t n = 0;
    uint64_t v1 = put_str(s, "dpstatus", "default", "a", "1", 0), v2 = put_str(s, "dpstatus", "default", "a", "2", v1);

    ck_assert_int_eq(STORE_ECOMPACTED, MESHCA_ECOMPACTED);
    ck_assert_int_eq(ETCD_ECOMPACTED, MESHCA_ECOMPACTED);
    o.endpoints = member.endpoints;
    ck_assert_int_eq(etcd_client_new(&o, &c, err), 0);
    ck_assert_msg(etcd_compact(c, (int64_t) v2, 1, err) == 0, "compact: %s", err);
    etcd_client_free(c);
    ck_assert_int_eq(store_watch(s, v1 - 1, 1000, &ev, &n), STORE_ECOMPACTED);
    assert_err_has(s, "re-list");
    /* From the compacted revision on, the watch works again. */
    put_str(s, "dpstatus", "default", "a", "3", v2);
    ck_assert_int_eq(store_watch(s, v2, 5000, &ev, &n), STORE_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(ev[0].name, "a");
    store_events_free(ev, n);
    store_close(s);
}
END_TEST

/* Issue 11: a listing longer than one range page is whole and sorted by (mesh, name), not
 * etcd's key order (which puts mesh "a-b" before "a", since '-' < '/'). */
START_TEST(etcd_list_over_several_pages_is_whole_and_sorted_by_mesh_then_name) {
    store *s = open_store();
    static store_op ops[300];
    static char names[300][16];
    store_entry *e = NULL;
    size_t n = 0;

    for (int i = 0; i < 300; i++) {
        (void) snprintf(names[i], sizeof(names[i]), "dp-%03d", i);
        ops[i] = (store_op) { .type = STORE_OP_PUT, .key = { "dataplanes", i % 2 ? "a-b" : "a", names[i] },
                              .value = "x", .len = 1, .expected_version = 0 };
    }
    ck_assert_msg(store_txn(s, ops, 300) == STORE_OK, "%s", store_errmsg(s));
    ck_assert_int_eq(store_list(s, "dataplanes", NULL, &e, &n), STORE_OK);
    ck_assert_uint_eq(n, 300);
    ck_assert_str_eq(e[0].mesh, "a");
    ck_assert_str_eq(e[0].name, "dp-000");
    ck_assert_str_eq(e[149].mesh, "a");
    ck_assert_str_eq(e[150].mesh, "a-b");
    ck_assert_str_eq(e[150].name, "dp-001");
    ck_assert_str_eq(e[299].name, "dp-299");
    store_entries_free(e, n);
    store_close(s);
}
END_TEST

static int64_t mono_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Issue 11: writes outside the store's prefix move etcd's revision but are no store events: a
 * "do not wait" watch may wait once for its stream, not on every call (a controller loop). */
START_TEST(etcd_watch_with_only_foreign_writes_waits_once_not_on_every_call) {
    store *s = open_store();
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    char err[MESHCA_ERRBUF] = "";
    store_event *ev = NULL;
    size_t n = 0;
    uint64_t rev = 0;
    int64_t t0;

    ck_assert_int_eq(store_revision(s, &rev), STORE_OK);
    o.endpoints = member.endpoints;
    ck_assert_int_eq(etcd_client_new(&o, &c, err), 0);
    ck_assert_msg(etcd_put(c, "/other-app/x", 12, "y", 1, 0, NULL, err) == 0, "%s", err);
    etcd_client_free(c);
    ck_assert_int_eq(store_watch(s, rev, 0, &ev, &n), STORE_OK);
    ck_assert_uint_eq(n, 0);
    t0 = mono_ms();
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(store_watch(s, rev, 0, &ev, &n), STORE_OK);
        ck_assert_uint_eq(n, 0);
    }
    ck_assert_int_lt(mono_ms() - t0, 1000);
    /* And a store write after that is still seen without waiting for it. */
    put_str(s, "dpstatus", "default", "web-01", "ack", 0);
    ck_assert_int_eq(store_watch(s, rev, 0, &ev, &n), STORE_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(ev[0].name, "web-01");
    store_events_free(ev, n);
    store_close(s);
}
END_TEST

/* Issue 11: etcds:// takes the CA and client certificate from the open options, or from
 * $MESHCA_ETCD_* when they are not given; without them the member refuses us. */
START_TEST(etcds_store_takes_its_tls_files_from_options_or_environment) {
    static harness tls;
    store_open_options o = STORE_OPEN_OPTIONS_INIT;
    char u[300], ca[256], cert[256], key[256], err[MESHCA_ERRBUF] = "";
    store_key k = { "secrets", "default", "ca-1-key" };
    store *s = NULL;
    char *v = NULL;

    ck_assert_int_eq(harness_start_tls(&tls, 1), 0);
    ck_assert_int_lt(snprintf(u, sizeof(u), "etcds://%s", tls.endpoints), (int) sizeof(u));
    (void) snprintf(ca, sizeof(ca), "%s", harness_file(&tls, HARNESS_CA));
    (void) snprintf(cert, sizeof(cert), "%s", harness_file(&tls, HARNESS_CLIENT_CERT));
    (void) snprintf(key, sizeof(key), "%s", harness_file(&tls, HARNESS_CLIENT_KEY));
    unsetenv("MESHCA_ETCD_CACERT");
    unsetenv("MESHCA_ETCD_CERT");
    unsetenv("MESHCA_ETCD_KEY");

    o.etcd_cacert = ca;
    o.etcd_cert = cert;
    o.etcd_key = key;
    ck_assert_msg(store_open_with(u, &o, &s, err) == STORE_OK, "%s", err);
    ck_assert_msg(store_put(s, &k, "pem", 3, 0, NULL) == STORE_OK, "%s", store_errmsg(s));
    store_close(s);

    /* No files: the member's certificate is not trusted, and nothing is written or read. */
    ck_assert_int_eq(store_open(u, &s, err), STORE_OK);
    ck_assert_int_eq(store_get(s, &k, &v, NULL, NULL), STORE_EUNAVAILABLE);
    assert_err_has(s, "no etcd member answered (");
    store_close(s);

    /* The environment (what --etcd-cacert, --etcd-cert, --etcd-key set) stands in for options. */
    ck_assert_int_eq(setenv("MESHCA_ETCD_CACERT", ca, 1), 0);
    ck_assert_int_eq(setenv("MESHCA_ETCD_CERT", cert, 1), 0);
    ck_assert_int_eq(setenv("MESHCA_ETCD_KEY", key, 1), 0);
    ck_assert_int_eq(store_open(u, &s, err), STORE_OK);
    ck_assert_msg(store_get(s, &k, &v, NULL, NULL) == STORE_OK, "%s", store_errmsg(s));
    ck_assert_str_eq(v, "pem");
    free(v);
    store_close(s);
    /* A certificate without its key is refused at open, naming neither's content. */
    unsetenv("MESHCA_ETCD_KEY");
    ck_assert_int_eq(store_open(u, &s, err), STORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "a client certificate needs its key"));
    unsetenv("MESHCA_ETCD_CACERT");
    unsetenv("MESHCA_ETCD_CERT");
    harness_stop(&tls);
}
END_TEST

static Suite *store_suite(void) {
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("contract"), *own;

    /* The contract: every backend passes these. */
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, put_then_get_returns_same_bytes_and_version);
    tcase_add_test(tc, get_of_absent_object_is_notfound_and_leaves_outputs);
    tcase_add_test(tc, put_with_stale_version_conflicts);
    tcase_add_test(tc, create_when_object_exists_conflicts);
    tcase_add_test(tc, delete_removes_object_and_checks_version);
    tcase_add_test(tc, list_is_sorted_by_mesh_then_name_and_filters_by_mesh);
    tcase_add_test(tc, scan_range_gives_the_names_between_two_names_of_one_mesh_in_order);
    tcase_add_test(tc, txn_with_one_conflicting_op_writes_nothing);
    tcase_add_test(tc, bad_names_are_rejected_before_touching_disk);
    tcase_add_test(tc, two_processes_incrementing_with_cas_lose_no_update);
    tcase_add_test(tc, kill_9_during_writes_leaves_every_object_whole);
    tcase_add_test(tc, null_url_uses_meshca_store_env);
    tcase_add_test(tc, errors_name_the_object_and_the_cause);
    tcase_add_test(tc, check_op_fences_a_txn_and_writes_nothing);
    tcase_add_test(tc, watch_returns_changes_after_a_revision_in_order);
    tcase_add_test(tc, watch_waits_for_a_write_by_another_process);
    tcase_add_test(tc, leased_object_vanishes_when_the_lease_expires_with_a_delete_event);
    tcase_add_test(tc, revoked_lease_deletes_its_objects_at_once);
    suite_add_tcase(s, tc);

    own = tcase_create(on_etcd ? "etcd" : "sqlite");
    tcase_add_checked_fixture(own, setup, teardown);
    tcase_set_timeout(own, 120);
    if (on_etcd) {
        tcase_add_test(own, etcd_txn_over_max_txn_ops_is_split_and_every_part_carries_the_checks);
        tcase_add_test(own, etcd_split_write_stops_at_the_first_part_after_the_fence_moved);
        tcase_add_test(own, etcd_with_no_member_answering_is_unavailable_naming_every_endpoint);
        tcase_add_test(own, etcd_watch_from_a_compacted_revision_is_store_compacted);
        tcase_add_test(own, etcd_list_over_several_pages_is_whole_and_sorted_by_mesh_then_name);
        tcase_add_test(own, etcds_store_takes_its_tls_files_from_options_or_environment);
        tcase_add_test(own, etcd_watch_with_only_foreign_writes_waits_once_not_on_every_call);
    } else {
        tcase_add_test(own, files_are_0600_and_dirs_0700_whatever_the_umask);
        tcase_add_test(own, file_url_is_retired_etcd_url_checked_and_unknown_scheme_invalid);
        tcase_add_test(own, removed_store_directory_fails_writes_naming_cause_and_object);
        tcase_add_test(own, read_only_store_fails_writes_naming_cause_and_object);
        tcase_add_test(own, missing_parent_directory_is_named_at_open);
        tcase_add_test(own, loose_permissions_on_existing_store_are_refused);
        tcase_add_test(own, store_of_a_newer_schema_is_refused_and_left_unchanged);
        tcase_add_test(own, store_owned_by_another_user_is_refused);
        tcase_add_test(own, watch_older_than_the_window_is_compacted);
        tcase_add_test(own, write_lock_held_past_busy_timeout_is_unavailable);
        tcase_add_test(own, kill_9_in_a_2000_put_txn_at_200_random_points_leaves_all_or_nothing);
        tcase_add_test(own, new_store_has_16k_pages_and_an_older_4k_store_keeps_working);
    }
    suite_add_tcase(s, own);
    return s;
}

int main(int argc, char **argv) {
    char root[] = "/tmp/meshca-test-store-etcd-XXXXXX", cmd[96];
    SRunner *sr;
    int failed;

    on_etcd = argc > 1 && strcmp(argv[1], "etcd") == 0;
    if (on_etcd) {
        if (!harness_available()) {
            printf("SKIP: %s is not installed (Debian package etcd-server; tools/deps.sh installs it)\n", ETCD_BIN);
            return 77;
        }
        if (!mkdtemp(root)) {
            perror("mkdtemp");
            return EXIT_FAILURE;
        }
        harness_set_root(root);
        if (harness_start(&member, 1) < 0) {
            fprintf(stderr, "cannot start etcd\n");
            return EXIT_FAILURE;
        }
    }
    sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (on_etcd) {
        harness_stop(&member);
        /* The path is our own mkdtemp result. */
        if (snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root) < (int) sizeof(cmd))
            (void) !system(cmd);
    }
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
