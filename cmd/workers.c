/* workers.c - the --sign-workers flag of `reconcile` and `run`: threads that sign a pass's leaves. */
#include <errno.h>
#include <stdlib.h>

#include "cmd/cli.h"
#include "reconciler/sign_pool.h"

int cli_parse_workers(const char *text, unsigned *ret)
{
    char *end = NULL;
    unsigned long n;

    if (!text || text[0] < '0' || text[0] > '9')
        return -1;
    errno = 0;
    n = strtoul(text, &end, 10);
    /* 0 would be read as "the online CPUs" by the pool: say it plainly by omitting the flag. */
    if (errno || *end || n < 1 || n > SIGN_POOL_MAX_THREADS)
        return -1;
    *ret = (unsigned)n;
    return 0;
}
