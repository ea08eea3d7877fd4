/* failpoint.c - $MESHCA_FAILPOINTS parsed, and acted on at a named point: a test facility. */
#include "reconciler/failpoint.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manifests/error.h"

typedef enum { FP_KILL, FP_ERROR, FP_SLEEP, FP_HOOK } fp_action;

typedef struct {
    char name[FAILPOINT_NAME_MAX + 1];
    fp_action action;
    long sleep_ms;
    unsigned long nth;  /* act on this hit only; 0 = every hit */
    unsigned long hits; /* times reached */
} fp_point;

/* Process-wide on purpose (the one exception to "no global state"): a test switch read once
 * from the environment, so no caller has to carry it through every store and pass call. */
int failpoint_armed;
_Thread_local int failpoint_muted;
static fp_point points[FAILPOINT_MAX];
static size_t npoints;
static failpoint_hook_fn hook_fn;
static void *hook_ctx;

void failpoint_set_hook(failpoint_hook_fn fn, void *ctx)
{
    hook_fn = fn;
    hook_ctx = ctx;
}

/* Parses "[N*]kill|error|sleep(MS)" of length len into p. */
static int parse_action(const char *a, size_t len, fp_point *p, char *errbuf)
{
    char buf[64], *end;
    const char *act = buf;

    if (len >= sizeof(buf))
        return meshca_fail(errbuf, MESHCA_EINVAL, "MESHCA_FAILPOINTS: action of '%s' too long",
                           p->name);
    memcpy(buf, a, len);
    buf[len] = '\0';
    p->nth = 0;
    if (strchr(buf, '*')) {
        errno = 0;
        p->nth = strtoul(buf, &end, 10);
        if (errno || end == buf || *end != '*' || p->nth == 0)
            return meshca_fail(errbuf, MESHCA_EINVAL,
                               "MESHCA_FAILPOINTS: '%s': N in N*ACTION must be 1 or more", p->name);
        act = end + 1;
    }
    if (strcmp(act, "kill") == 0) {
        p->action = FP_KILL;
    } else if (strcmp(act, "error") == 0) {
        p->action = FP_ERROR;
    } else if (strcmp(act, "hook") == 0) {
        p->action = FP_HOOK;
    } else if (strncmp(act, "sleep(", 6) == 0) {
        errno = 0;
        p->sleep_ms = strtol(act + 6, &end, 10);
        if (errno || end == act + 6 || strcmp(end, ")") != 0 || p->sleep_ms < 0 ||
            p->sleep_ms > FAILPOINT_SLEEP_MAX_MS)
            return meshca_fail(errbuf, MESHCA_EINVAL,
                               "MESHCA_FAILPOINTS: '%s': sleep(MS) wants 0..%d ms", p->name,
                               FAILPOINT_SLEEP_MAX_MS);
        p->action = FP_SLEEP;
    } else {
        return meshca_fail(errbuf, MESHCA_EINVAL,
                           "MESHCA_FAILPOINTS: '%s': unknown action (kill, error, sleep(MS) or hook)",
                           p->name);
    }
    return 0;
}

int failpoint_configure(const char *spec, char *errbuf)
{
    fp_point parsed[FAILPOINT_MAX];
    size_t n = 0;

    failpoint_armed = 0;
    npoints = 0;
    if (!spec || !*spec)
        return 0;
    for (const char *s = spec; *s;) {
        const char *comma = strchr(s, ','), *eq;
        size_t len = comma ? (size_t)(comma - s) : strlen(s);

        eq = memchr(s, '=', len);
        if (!eq || eq == s)
            return meshca_fail(errbuf, MESHCA_EINVAL,
                               "MESHCA_FAILPOINTS: want NAME=ACTION[,NAME=ACTION...]");
        if (n == FAILPOINT_MAX)
            return meshca_fail(errbuf, MESHCA_EINVAL, "MESHCA_FAILPOINTS: at most %d points",
                               FAILPOINT_MAX);
        if ((size_t)(eq - s) > FAILPOINT_NAME_MAX)
            return meshca_fail(errbuf, MESHCA_EINVAL,
                               "MESHCA_FAILPOINTS: a name is at most %d characters",
                               FAILPOINT_NAME_MAX);
        memset(&parsed[n], 0, sizeof(parsed[n]));
        memcpy(parsed[n].name, s, (size_t)(eq - s));
        int r = parse_action(eq + 1, len - (size_t)(eq - s) - 1, &parsed[n], errbuf);
        if (r < 0)
            return r;
        n++;
        s += len;
        if (*s == ',')
            s++;
    }
    memcpy(points, parsed, n * sizeof(*parsed));
    npoints = n;
    failpoint_armed = n > 0;
    return 0;
}

int failpoint_hit(const char *name, char *errbuf)
{
    for (size_t i = 0; i < npoints; i++) {
        fp_point *p = &points[i];

        if (strcmp(p->name, name) != 0)
            continue;
        p->hits++;
        if (p->nth && p->hits != p->nth)
            return 0;
        switch (p->action) {
        case FP_KILL:
            (void)raise(SIGKILL);
            return meshca_fail(errbuf, MESHCA_EIO, "failpoint %s: SIGKILL did not end the process",
                               name);
        case FP_ERROR:
            return meshca_fail(errbuf, MESHCA_EIO, "failpoint %s: injected I/O error", name);
        case FP_SLEEP: {
            /* Said, so that a test knows the process is held at the point. */
            fprintf(stderr, "meshca: failpoint %s: sleeping %ld ms\n", name, p->sleep_ms);
            fflush(stderr);
            struct timespec ts = {p->sleep_ms / 1000, (p->sleep_ms % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
            return 0;
        }
        case FP_HOOK:
            return hook_fn ? hook_fn(name, hook_ctx, errbuf) : 0;
        }
    }
    return 0;
}

/* Read once, before main: a test sets the variable for the whole process. */
__attribute__((constructor)) static void failpoint_from_env(void)
{
    char err[MESHCA_ERRBUF];

    if (failpoint_configure(getenv("MESHCA_FAILPOINTS"), err) < 0)
        fprintf(stderr, "meshca: %s; no failpoint armed\n", err);
}
