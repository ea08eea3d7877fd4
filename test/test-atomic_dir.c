/* test-atomic_dir.c - Check suite for the agent's output directory: creation, layout, swaps. */
#define _GNU_SOURCE 1
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reconciler/atomic_dir.h"

static char tmpdir[64];
static char out[128];

static void setup(void)
{
    char tmpl[] = "/tmp/meshca-test-atomic-dir-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    memcpy(tmpdir, tmpl, sizeof(tmpl));
    snprintf(out, sizeof(out), "%s/out", tmpdir);
}

static void teardown(void)
{
    char cmd[256];
    /* Our own mkdtemp result: safe to hand to rm. */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    (void)!system(cmd);
}

/* The contents of dir/name (static buffer), or "" when unreadable. */
static const char *slurp(const char *dir, const char *name)
{
    static char buf[256];
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return buf;
}

static const char *link_of(const char *dir, const char *name)
{
    static char buf[PATH_MAX];
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    ssize_t n = readlink(path, buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static mode_t mode_of(const char *dir, const char *name)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0 ? (st.st_mode & 07777) : 0;
}

/* Number of generation directories ("..2*") in dir. */
static int generations(const char *dir)
{
    char cmd[PATH_MAX];
    snprintf(cmd, sizeof(cmd), "exit $(find '%s' -mindepth 1 -maxdepth 1 -type d -name '..2*' | wc -l)",
             dir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Writes key.pem, cert.pem, ca-bundle.pem holding "<what> N". */
static int write_gen(int n, char *err)
{
    char key[32], cert[32], bundle[32];
    snprintf(key, sizeof(key), "key %d\n", n);
    snprintf(cert, sizeof(cert), "cert %d\n", n);
    snprintf(bundle, sizeof(bundle), "bundle %d\n", n);
    atomic_dir_file files[3] = {
        {"ca-bundle.pem", bundle, strlen(bundle), 0644},
        {"key.pem", key, strlen(key), 0600},
        {"cert.pem", cert, strlen(cert), 0644},
    };
    return atomic_dir_write(out, files, 3, 1764415461 /* 2025-11-29T11:24:21Z */, err);
}

START_TEST(agent_out_missing_dir_is_created_0700_whatever_the_umask)
{
    char err[MESHCA_ERRBUF] = "", warn[MESHCA_ERRBUF] = "x";
    bool created = false;
    mode_t old = umask(0);
    int rc = atomic_dir_prepare(out, &created, warn, err);
    umask(old);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert(created);
    ck_assert_str_eq(warn, "");
    ck_assert_uint_eq(mode_of(tmpdir, "out"), 0700);
    /* Again: exists now, nothing to say. */
    ck_assert_int_eq(atomic_dir_prepare(out, &created, warn, err), 0);
    ck_assert(!created);
    ck_assert_str_eq(warn, "");
}
END_TEST

START_TEST(agent_out_missing_parent_is_refused_not_created)
{
    char err[MESHCA_ERRBUF] = "", want[MESHCA_ERRBUF], dir[192];
    snprintf(dir, sizeof(dir), "%s/no/out", tmpdir);
    ck_assert_int_eq(atomic_dir_prepare(dir, NULL, NULL, err), MESHCA_EIO);
    snprintf(want, sizeof(want), "cannot create %s: its parent directory does not exist", dir);
    ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(agent_out_symlink_or_file_is_refused)
{
    char err[MESHCA_ERRBUF] = "", want[MESHCA_ERRBUF], target[192];
    snprintf(target, sizeof(target), "%s/elsewhere", tmpdir);
    ck_assert_int_eq(mkdir(target, 0700), 0);
    ck_assert_int_eq(symlink(target, out), 0);
    ck_assert_int_eq(atomic_dir_prepare(out, NULL, NULL, err), MESHCA_EINVAL);
    snprintf(want, sizeof(want), "%s is a symbolic link (to '%s'), refused: give the real directory",
             out, target);
    ck_assert_str_eq(err, want);

    ck_assert_int_eq(unlink(out), 0);
    FILE *f = fopen(out, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_eq(atomic_dir_prepare(out, NULL, NULL, err), MESHCA_EINVAL);
    snprintf(want, sizeof(want), "%s exists and is not a directory", out);
    ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(agent_out_loose_permissions_are_warned_about)
{
    char err[MESHCA_ERRBUF] = "", warn[MESHCA_ERRBUF] = "", want[MESHCA_ERRBUF];
    ck_assert_int_eq(mkdir(out, 0700), 0);
    ck_assert_int_eq(chmod(out, 0750), 0);
    ck_assert_int_eq(atomic_dir_prepare(out, NULL, warn, err), 0);
    snprintf(want, sizeof(want),
             "%s is open to group or others (mode 0750); it holds a private key: chmod 700 it", out);
    ck_assert_str_eq(warn, want);
}
END_TEST

START_TEST(write_makes_a_generation_dir_the_data_link_and_stable_links)
{
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(mkdir(out, 0700), 0);
    ck_assert_msg(write_gen(1, err) == 0, "%s", err);

    const char *gen = link_of(out, "..data");
    ck_assert_int_eq(strncmp(gen, "..2025_11_29_11_24_21.", 22), 0);
    ck_assert_uint_eq(strlen(gen), 28);
    ck_assert_str_eq(link_of(out, "key.pem"), "..data/key.pem");
    ck_assert_str_eq(link_of(out, "cert.pem"), "..data/cert.pem");
    ck_assert_str_eq(link_of(out, "ca-bundle.pem"), "..data/ca-bundle.pem");
    ck_assert_str_eq(slurp(out, "key.pem"), "key 1\n");
    ck_assert_str_eq(slurp(out, "cert.pem"), "cert 1\n");
    ck_assert_str_eq(slurp(out, "ca-bundle.pem"), "bundle 1\n");
    ck_assert_uint_eq(mode_of(out, "key.pem"), 0600);
    ck_assert_uint_eq(mode_of(out, "cert.pem"), 0644);
    ck_assert_int_eq(generations(out), 1);
    char tmp[192];
    snprintf(tmp, sizeof(tmp), "%s/..data_tmp", out);
    ck_assert_int_eq(access(tmp, F_OK), -1);
}
END_TEST

START_TEST(rewrite_removes_the_previous_and_stale_generations_only)
{
    char err[MESHCA_ERRBUF] = "", path[PATH_MAX + 256];
    ck_assert_int_eq(mkdir(out, 0700), 0);
    ck_assert_msg(write_gen(1, err) == 0, "%s", err);
    char first[PATH_MAX];
    snprintf(first, sizeof(first), "%s", link_of(out, "..data"));
    /* What a crash between mkdtemp and the swap leaves, and a directory of the operator's. */
    snprintf(path, sizeof(path), "%s/..2020_01_01_00_00_00.abcdef", out);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/..2020_01_01_00_00_00.abcdef/key.pem", out);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/..mine", out);
    ck_assert_int_eq(mkdir(path, 0700), 0);

    ck_assert_msg(write_gen(2, err) == 0, "%s", err);
    ck_assert_str_ne(link_of(out, "..data"), first);
    ck_assert_str_eq(slurp(out, "key.pem"), "key 2\n");
    ck_assert_str_eq(slurp(out, "cert.pem"), "cert 2\n");
    ck_assert_int_eq(generations(out), 1);
    snprintf(path, sizeof(path), "%s/%s", out, first);
    ck_assert_int_eq(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/..mine", out);
    ck_assert_int_eq(access(path, F_OK), 0);
}
END_TEST

START_TEST(write_replaces_plain_files_of_an_earlier_agent)
{
    char err[MESHCA_ERRBUF] = "", path[256];
    ck_assert_int_eq(mkdir(out, 0700), 0);
    const char *names[3] = {"key.pem", "cert.pem", "ca-bundle.pem"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", out, names[i]);
        FILE *f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fputs("old\n", f);
        fclose(f);
    }
    ck_assert_msg(write_gen(7, err) == 0, "%s", err);
    for (int i = 0; i < 3; i++) {
        char want[32];
        snprintf(want, sizeof(want), "..data/%s", names[i]);
        ck_assert_str_eq(link_of(out, names[i]), want);
    }
    ck_assert_str_eq(slurp(out, "key.pem"), "key 7\n");
}
END_TEST

START_TEST(bad_file_names_are_refused)
{
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(mkdir(out, 0700), 0);
    const char *bad[] = {"../x", ".hidden", "a/b", "..data", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        atomic_dir_file f = {bad[i], "x", 1, 0644};
        ck_assert_int_eq(atomic_dir_write(out, &f, 1, 0, err), MESHCA_EINVAL);
    }
    ck_assert_int_eq(generations(out), 0);
}
END_TEST

/* Issue 9 #13: key.pem was renamed before cert.pem, so a reader between the two renames loaded
 * a key with another key's certificate. A reader that resolves ..data once must always see
 * one generation, however often the writer swaps. */
START_TEST(reader_never_sees_files_of_two_generations)
{
    char err[MESHCA_ERRBUF] = "";
    ck_assert_int_eq(mkdir(out, 0700), 0);
    ck_assert_msg(write_gen(0, err) == 0, "%s", err);
    pid_t writer = fork();
    ck_assert_int_ge(writer, 0);
    if (writer == 0) {
        for (int i = 1; i <= 400; i++)
            if (write_gen(i, err) != 0)
                _exit(1);
        _exit(0);
    }
    long reads = 0, mismatched = 0, status = 0;
    int wst = 0;
    while (waitpid(writer, &wst, WNOHANG) == 0) {
        char real[PATH_MAX], key[64], cert[64];
        char certpath[192];
        snprintf(certpath, sizeof(certpath), "%s/cert.pem", out);
        if (!realpath(certpath, real))
            continue;
        *strrchr(real, '/') = '\0';
        snprintf(cert, sizeof(cert), "%s", slurp(real, "cert.pem"));
        snprintf(key, sizeof(key), "%s", slurp(real, "key.pem"));
        if (!cert[0] || !key[0])
            continue;   /* the generation was removed under us: read again */
        reads++;
        if (strcmp(cert + 5, key + 4) != 0)   /* "cert N\n" vs "key N\n" */
            mismatched++;
    }
    status = WIFEXITED(wst) ? WEXITSTATUS(wst) : -1;
    ck_assert_int_eq(status, 0);
    ck_assert_int_gt(reads, 100);
    ck_assert_int_eq(mismatched, 0);
    ck_assert_str_eq(slurp(out, "cert.pem"), "cert 400\n");
    ck_assert_int_eq(generations(out), 1);
}
END_TEST

static Suite *atomic_dir_suite(void)
{
    Suite *suite = suite_create("atomic_dir");
    TCase *tc = tcase_create("atomic_dir");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, agent_out_missing_dir_is_created_0700_whatever_the_umask);
    tcase_add_test(tc, agent_out_missing_parent_is_refused_not_created);
    tcase_add_test(tc, agent_out_symlink_or_file_is_refused);
    tcase_add_test(tc, agent_out_loose_permissions_are_warned_about);
    tcase_add_test(tc, write_makes_a_generation_dir_the_data_link_and_stable_links);
    tcase_add_test(tc, rewrite_removes_the_previous_and_stale_generations_only);
    tcase_add_test(tc, write_replaces_plain_files_of_an_earlier_agent);
    tcase_add_test(tc, bad_file_names_are_refused);
    tcase_add_test(tc, reader_never_sees_files_of_two_generations);
    suite_add_tcase(suite, tc);
    return suite;
}

int main(void)
{
    SRunner *sr = srunner_create(atomic_dir_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
