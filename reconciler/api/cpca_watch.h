/* cpca_watch.h - what the controller holds of the control-plane CA between its checks: the
 * rotation's phase and each certificate's expiry, decoded only when the object moved. */
#ifndef MESHCA_API_CPCA_WATCH_H
#define MESHCA_API_CPCA_WATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "reconciler/api/cpca_rotate.h"
#include "reconciler/metrics.h"
#include "reconciler/store.h"

/*
 * The control-plane CA object as of the controller's last check (on_ca_check, every
 * min(--interval, 60 s)). A check reads the store-wide revision first and stops there when it
 * did not move; else it reads the object and decodes it only when its version moved, so a
 * quiet store costs one small read a tick and no JSON or X.509 parsing. /metrics renders
 * what is held here: a scrape reads nothing more from the store for these series.
 * Loop thread only. Zero-initialise (CPCA_WATCH_INIT); cpca_watch_free() frees.
 */
typedef struct cpca_watch {
    uint64_t revision;     /* store revision at the last successful check; 0: none yet */
    uint64_t version;      /* the object's version when it was last decoded */
    bool known;            /* r and the times below describe the object at `version` */
    cpca_rotation r;       /* certificates only, never a key */
    int64_t not_after[3];  /* by CPCA_WATCH_ROLE_*; 0 when the role has no certificate */
    int64_t phase_since;   /* started: the next CA's createdAt; switched: switchedAt; else 0 */
    unsigned long decodes; /* how many times the object was decoded (what the check saves) */
} cpca_watch;

#define CPCA_WATCH_INIT                                                                            \
    {                                                                                              \
        0, 0, false, {0}, {0, 0, 0}, 0, 0                                                          \
    }

enum { CPCA_WATCH_ROLE_CURRENT, CPCA_WATCH_ROLE_NEXT, CPCA_WATCH_ROLE_PREVIOUS };

/*
 * One check of s: 1 when the object was decoded anew (it changed, appeared or went away: w
 * now says so), 0 when nothing moved (w unchanged), or a negative store / MESHCA_* code with a
 * line in errbuf (w keeps what it held: the metrics show the last state seen).
 */
int cpca_watch_poll(cpca_watch *w, store *s, char *errbuf);

/* The series of w (doc/metrics.md): meshca_cp_ca_cert_not_after_seconds{role},
 * meshca_cp_ca_rotation_phase{phase} (one per phase, 1 for the one it is in) and, while a
 * rotation is in progress, meshca_cp_ca_rotation_phase_since_seconds{phase}. Nothing while
 * w knows no control-plane CA. */
void cpca_watch_render(const cpca_watch *w, metrics_text *t);

/* Frees what w holds and zeroes it. Accepts an empty one. */
void cpca_watch_free(cpca_watch *w);

#endif
