/* bench_clock.h - the benches' clocks: wall time (monotonic) and this process's CPU time, in seconds. */
#ifndef MESHCA_BENCH_CLOCK_H
#define MESHCA_BENCH_CLOCK_H

#include <time.h>

static inline double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of this process, every thread: on a shared machine the wall time also holds
 * other load. */
static inline double cpu_now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
