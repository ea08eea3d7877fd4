/* check-util.h - small helpers the Check suites that drive external servers share: files, shell commands, free ports. */
#ifndef MESHCA_TEST_CHECK_UTIL_H
#define MESHCA_TEST_CHECK_UTIL_H

/* The whole file (at most 1 MiB), NUL-terminated; the test fails when it cannot be read.
 * Caller frees. */
char *test_slurp(const char *path);
/* Writes `data` to `path` (replacing it); the test fails when it cannot. */
void test_spit(const char *path, const char *data);
/* system() of the formatted command (at most 2 KiB): its wait status. */
int test_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A port on 127.0.0.1 that nothing listens on (bound, then released). */
int test_closed_port(void);

#endif
