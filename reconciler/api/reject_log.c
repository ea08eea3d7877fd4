/* reject_log.c - a bound on the log lines of rejected API requests (401/403): N per second, then a count. */
#include "reconciler/api/reject_log.h"

bool api_reject_log_admit(api_reject_log *l, int64_t now_ms, uint64_t *ret_flush)
{
    *ret_flush = 0;
    /* A new window (or a clock that went back, which CLOCK_MONOTONIC does not, but a test may). */
    if (l->window_start_ms == INT64_MIN || now_ms < l->window_start_ms ||
        now_ms - l->window_start_ms >= API_REJECT_LOG_WINDOW_MS) {
        *ret_flush = api_reject_log_take(l);
        l->window_start_ms = now_ms;
        l->lines = 0;
    }
    if (l->lines < API_REJECT_LOG_PER_S) {
        l->lines++;
        return true;
    }
    l->suppressed++;
    return false;
}

uint64_t api_reject_log_take(api_reject_log *l)
{
    uint64_t n = l->suppressed;
    l->suppressed = 0;
    return n;
}

int64_t api_reject_log_window_left_ms(const api_reject_log *l, int64_t now_ms)
{
    if (l->window_start_ms == INT64_MIN || now_ms < l->window_start_ms)
        return 1;
    int64_t left = l->window_start_ms + API_REJECT_LOG_WINDOW_MS - now_ms;
    return left > 0 ? left : 1;
}
