/* reload.c - runs a proxy's reload command in its own process group, bounded by a timeout. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "reconciler/reload.h"

#define POLL_MS 10   /* how often a running command is checked; signals cut the sleep short */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);   /* EINTR is fine: the caller re-checks everything */
}

/* In the child: a process group of its own, so a timeout can kill everything the command
 * started, and default signal handling, since exec keeps ignored signals ignored. */
static void exec_child(const char *cmd)
{
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    /* Not our terminal's foreground group: a read from the terminal would stop it (SIGTTIN). */
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && fd != STDIN_FILENO) {
        dup2(fd, STDIN_FILENO);
        close(fd);
    }
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
}

/* Reaps pid without blocking: 1 when it ended (status in *status), 0 while it runs. */
static int reap(pid_t pid, int *status)
{
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return 1;   /* ECHILD: someone else reaped it; treat as gone */
    }
}

/* Whether a process of group pgid still runs. kill(-pgid, 0) alone also counts zombies, and
 * an orphaned member's zombie waits for init, which may reap it late: read /proc instead. */
static bool group_alive(pid_t pgid)
{
    DIR *d = opendir("/proc");
    if (!d)
        return kill(-pgid, 0) == 0;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        /* "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses. */
        const char *p = strrchr(buf, ')');
        char state = 0;
        long ppid = 0, pgrp = 0;
        if (p && sscanf(p + 1, " %c %ld %ld", &state, &ppid, &pgrp) == 3)
            found = pgrp == (long)pgid && state != 'Z' && state != 'X';
    }
    closedir(d);
    return found;
}

/* SIGTERM to the group, SIGKILL after the grace period, until the shell is reaped and no
 * member of the group runs. The group id stays the shell's pid while any member lives. */
static void kill_group(pid_t pid, bool *reaped, int *status)
{
    kill(-pid, SIGTERM);
    int64_t deadline = now_ms() + RELOAD_KILL_GRACE_MS;
    bool killed = false;
    for (;;) {
        if (!*reaped)
            *reaped = reap(pid, status) == 1;
        if (*reaped && !group_alive(pid))
            return;
        if (!killed && now_ms() >= deadline) {
            kill(-pid, SIGKILL);
            killed = true;
        }
        if (killed && *reaped)
            return;   /* SIGKILL cannot be ignored: what is left is being torn down */
        sleep_ms(POLL_MS);
    }
}

int reload_run(const char *cmd, int64_t timeout_ms, reload_stop_fn stop_requested,
               reload_result *ret, char *errbuf)
{
    if (!cmd || timeout_ms <= 0)
        return meshca_fail(errbuf, MESHCA_EINVAL, "reload: missing command or timeout");
    if (stop_requested && stop_requested()) {
        if (ret)
            *ret = (reload_result){RELOAD_STOPPED, 0};
        return meshca_fail(errbuf, MESHCA_ESTATE, "reload command not run: the agent is stopping");
    }

    pid_t pid = fork();
    if (pid < 0)
        return meshca_fail(errbuf, MESHCA_EIO, "cannot start the reload command: %s",
                           strerror(errno));
    if (pid == 0)
        exec_child(cmd);
    setpgid(pid, pid);   /* also here: whichever of parent and child runs first sets it */

    int64_t deadline = now_ms() + timeout_ms;
    int status = 0;
    bool reaped = false;
    reload_result res = {RELOAD_EXITED, 0};
    for (;;) {
        reaped = reap(pid, &status) == 1;
        if (reaped)
            break;
        if (stop_requested && stop_requested()) {
            res.outcome = RELOAD_STOPPED;
            break;
        }
        if (now_ms() >= deadline) {
            res.outcome = RELOAD_TIMED_OUT;
            break;
        }
        sleep_ms(POLL_MS);
    }
    if (!reaped)
        kill_group(pid, &reaped, &status);

    int rc = 0;
    if (res.outcome == RELOAD_TIMED_OUT) {
        rc = meshca_fail(errbuf, MESHCA_ESTATE,
                         "reload command timed out after %lld ms and was killed",
                         (long long)timeout_ms);
    } else if (res.outcome == RELOAD_STOPPED) {
        rc = meshca_fail(errbuf, MESHCA_ESTATE,
                         "reload command interrupted: the agent is stopping");
    } else if (WIFEXITED(status)) {
        res.status = WEXITSTATUS(status);
        if (res.status != 0)
            rc = meshca_fail(errbuf, MESHCA_ESTATE, "reload command failed (exit %d)", res.status);
    } else {
        res.outcome = RELOAD_SIGNALED;
        res.status = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        rc = meshca_fail(errbuf, MESHCA_ESTATE, "reload command killed by signal %d", res.status);
    }
    if (ret)
        *ret = res;
    return rc;
}
