/* oom-shim.c - test-only LD_PRELOAD allocator for test/oom-cli.sh: with MESHCA_TEST_FAIL_ALLOC=N
 * the first N allocations succeed and every later one fails, so a sweep over N walks every
 * allocation failure a command can meet. Never linked into meshca. */
#include <errno.h>
#include <stdlib.h>

/* glibc's own allocator, callable without dlsym (which allocates). */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);

static long budget = -2;   /* -2: not read yet; -1: no failures */

/* A failing call sets errno as glibc's malloc does: glibc itself relies on it (pthread_create
 * asserts errno == ENOMEM when the thread's TLS cannot be allocated). */
static int fails(void)
{
    if (budget == -2) {
        const char *e = getenv("MESHCA_TEST_FAIL_ALLOC");
        budget = e ? strtol(e, NULL, 10) : -1;
    }
    if (budget < 0)
        return 0;
    if (budget == 0) {
        errno = ENOMEM;
        return 1;
    }
    budget--;
    return 0;
}

void *malloc(size_t n)
{
    return fails() ? NULL : __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    return fails() ? NULL : __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    return fails() ? NULL : __libc_realloc(p, n);
}
