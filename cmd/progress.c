/* progress.c - verbosity (--quiet, -v) and a one-line progress display on a terminal. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cli.h"

int cli_verbosity;

void cli_info(const char *fmt, ...)
{
    va_list ap;
    if (cli_verbosity < 0)
        return;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

void cli_detail(const char *fmt, ...)
{
    va_list ap;
    if (cli_verbosity < 1)
        return;
    fputs("meshca: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void draw(const cli_progress *p)
{
    /* \r and erase-to-end-of-line: one line that updates in place. */
    fprintf(stderr, "\r\033[K%s: %zu/%zu (%zu%%)", p->what, p->done, p->total,
            p->total ? p->done * 100 / p->total : 100);
    fflush(stderr);
}

void cli_progress_start(cli_progress *p, const char *what, size_t total)
{
    /* Only a person watching a terminal wants it: never in a pipe, a log or CI output, and
     * not with --quiet; small jobs finish before it could be read. */
    *p = (cli_progress){.what = what, .total = total};
    p->active = cli_verbosity >= 0 && total >= CLI_PROGRESS_MIN_ITEMS && isatty(STDERR_FILENO);
    if (!p->active)
        return;
    p->last_ms = monotonic_ms();
    draw(p);
}

void cli_progress_update(cli_progress *p, size_t done)
{
    if (!p->active)
        return;
    p->done = done > p->total ? p->total : done;
    int64_t now = monotonic_ms();
    /* A redraw per item would cost more than the work on a slow terminal. */
    if (now - p->last_ms < CLI_PROGRESS_INTERVAL_MS && p->done < p->total)
        return;
    p->last_ms = now;
    draw(p);
}

void cli_progress_end(cli_progress *p)
{
    if (!p->active)
        return;
    fputs("\r\033[K", stderr);   /* leave no trace: what follows starts on a clean line */
    fflush(stderr);
    p->active = false;
}

void cli_progress_callback(void *userdata, size_t done, size_t total)
{
    cli_progress *p = userdata;
    (void)total;
    cli_progress_update(p, done);
}
