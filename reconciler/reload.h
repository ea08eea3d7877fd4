/* reload.h - runs a proxy's reload command in its own process group, bounded by a timeout. */
#ifndef MESHCA_RELOAD_H
#define MESHCA_RELOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "manifests/error.h"

#define RELOAD_DEFAULT_TIMEOUT_MS 30000  /* --reload-timeout default */
#define RELOAD_KILL_GRACE_MS 2000        /* SIGTERM to SIGKILL of a timed-out command's group */

/* Asked between polls: true ends the command early (the agent got SIGTERM or SIGINT). */
typedef bool (*reload_stop_fn)(void);

/* How the command ended. */
typedef enum reload_outcome {
    RELOAD_EXITED = 0,   /* exited by itself; status = its exit code */
    RELOAD_SIGNALED,     /* killed by a signal nobody here sent; status = the signal */
    RELOAD_TIMED_OUT,    /* ran past the timeout: its group was killed */
    RELOAD_STOPPED,      /* stop_requested() turned true (or was before the start): group killed */
} reload_outcome;

typedef struct reload_result {
    reload_outcome outcome;
    int status;
} reload_result;

/*
 * Runs cmd with /bin/sh -c, stdin from /dev/null, in a new process group, and waits at most
 * timeout_ms (> 0). Past the timeout, or once stop_requested (may be NULL) returns true, the
 * whole group gets SIGTERM, then SIGKILL after RELOAD_KILL_GRACE_MS, and is reaped: nothing
 * the command started in its group outlives the call (a daemon that left the group, as nginx
 * does with setsid, is not touched). A command that exits by itself keeps its group as is.
 *
 * Returns 0 when the command exited 0; MESHCA_ESTATE when it exited non-zero, was killed, timed
 * out or was stopped (the reason in errbuf); MESHCA_EIO when it could not be started.
 * *ret (may be NULL) says how it ended, written whenever the command was started.
 */
int reload_run(const char *cmd, int64_t timeout_ms, reload_stop_fn stop_requested,
               reload_result *ret, char *errbuf);

#endif
