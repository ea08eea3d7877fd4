/* reject_log.h - a bound on the log lines of rejected API requests (401/403): N per second, then a count. */
#ifndef MESHCA_API_REJECT_LOG_H
#define MESHCA_API_REJECT_LOG_H

#include <stdbool.h>
#include <stdint.h>

/* Lines said per one-second window; the rest of the window is counted and said as one line. */
#define API_REJECT_LOG_PER_S 10
#define API_REJECT_LOG_WINDOW_MS 1000

/* A fixed window: constant memory whatever a client sends (no per-peer state to grow). */
typedef struct api_reject_log {
    int64_t window_start_ms; /* monotonic milliseconds */
    unsigned lines;          /* said in this window */
    uint64_t suppressed;     /* counted, not said, since the last count was said */
} api_reject_log;

#define API_REJECT_LOG_INIT {INT64_MIN, 0, 0}

/*
 * One rejected request at now_ms (monotonic). true: say its line; false: it was counted in
 * suppressed. *ret_flush: the count of an earlier window that ended unsaid, to say before this
 * request's line (0: none); taken, so it is said once.
 */
bool api_reject_log_admit(api_reject_log *l, int64_t now_ms, uint64_t *ret_flush);

/* The count suppressed so far, taken (0: none): for the "suppressed K" line when the window ends. */
uint64_t api_reject_log_take(api_reject_log *l);

/* Milliseconds from now_ms until the current window ends (at least 1). */
int64_t api_reject_log_window_left_ms(const api_reject_log *l, int64_t now_ms);

#endif
