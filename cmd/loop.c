/* loop.c - pieces of the long-running commands (run, agent): clock flags, stop signals, sleeping. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/cli.h"
#include "manifests/model.h"

/* Process-wide by nature: a signal handler can only reach a global. */
static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

void cli_install_stop_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a signal interrupts nanosleep so the loop notices it at once. */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

bool cli_stop_requested(void)
{
    return stop_requested != 0;
}

void cli_sleep_ms(int64_t ms)
{
    while (ms > 0 && !stop_requested) {
        int64_t step = ms > 200 ? 200 : ms;   /* bounded: re-check the stop flag often */
        struct timespec ts = {(time_t)(step / 1000), (long)(step % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

int cli_parse_interval(const char *text, int64_t *ret_ms)
{
    int64_t ms = 0;
    if (model_parse_duration(text, &ms) < 0 || ms <= 0 || ms > CLI_MAX_INTERVAL_MS)
        return -1;
    *ret_ms = ms;
    return 0;
}

int cli_parse_time(const char *text, int64_t *ret)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end != text && *end == '\0' && errno == 0 && v > 0) {
        *ret = v;
        return 0;
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    end = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end || (strcmp(end, "Z") != 0 && strcmp(end, "+00:00") != 0))
        return -1;
    time_t t = timegm(&tm);
    if (t <= 0)
        return -1;
    *ret = (int64_t)t;
    return 0;
}
