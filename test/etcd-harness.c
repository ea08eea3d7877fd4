/* etcd-harness.c - starts, kills and restarts real etcd members for the C tests: random free ports,
 * temp data dirs. */
#define _GNU_SOURCE 1
#include "etcd-harness.h"

#include "reconciler/store/etcd_client.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *root;

void harness_set_root(const char *dir)
{
    root = dir;
}

int harness_available(void)
{
    return access(ETCD_BIN, X_OK) == 0;
}

/* Free ports from test/free-ports.py: below the kernel's ephemeral range (a port the kernel
 * picked could be taken by another test's outgoing connection before etcd binds it) and
 * reserved against other tests picking at the same moment. */
static int free_ports(int *ports, int n)
{
    char cmd[512];
    if (snprintf(cmd, sizeof(cmd), "python3 '%s/test/free-ports.py' %d", MESHCA_SOURCE_ROOT, n) >=
        (int)sizeof(cmd))
        return -1;
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    int got = 0;
    while (got < n && fscanf(p, "%d", &ports[got]) == 1)
        got++;
    return pclose(p) == 0 && got == n ? 0 : -1;
}

const char *harness_endpoint(const harness *h, int i)
{
    static char buf[32];

    snprintf(buf, sizeof(buf), "127.0.0.1:%d", h->m[i].client_port);
    return buf;
}

const char *harness_file(const harness *h, const char *file)
{
    static char buf[192];

    snprintf(buf, sizeof(buf), "%s/%s", h->dir, file);
    return buf;
}

/* A CA, a member certificate for IP 127.0.0.1 and a client certificate, with the openssl CLI.
 * The member certificate is also a client one: etcd's gateway dials its own gRPC port with it. */
static int make_certs(harness *h)
{
    char script[512];
    FILE *f;
    int r;

    snprintf(script, sizeof(script), "%s/certs.sh", h->dir);
    f = fopen(script, "w");
    if (!f)
        return -1;
    fprintf(f,
            "set -e\ncd '%s'\n"
            "printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' "
            ">server.ext\n"
            "printf 'extendedKeyUsage=clientAuth\\n' >client.ext\n"
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key"
            " -out ca.pem -days 2 -subj /CN=meshca-test-etcd-ca\n"
            "for n in server client; do\n"
            "  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n.key -out "
            "$n.csr"
            " -subj /CN=$n\n"
            "  openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
            " -extfile $n.ext -out $n.pem\n"
            "done\n",
            h->dir);
    if (fclose(f) != 0)
        return -1;
    snprintf(script, sizeof(script), "sh '%s/certs.sh' >'%s/certs.log' 2>&1", h->dir, h->dir);
    r = system(script);
    return r == 0 ? 0 : -1;
}

static int spawn(harness *h, int i)
{
    char name[8], datadir[160], log[160], client[48], peer[48], cluster[256] = "";
    size_t used = 0;
    pid_t pid;

    snprintf(name, sizeof(name), "m%d", i);
    snprintf(datadir, sizeof(datadir), "%s/m%d", h->dir, i);
    snprintf(log, sizeof(log), "%s/m%d.log", h->dir, i);
    snprintf(client, sizeof(client), "%s://127.0.0.1:%d", h->tls ? "https" : "http",
             h->m[i].client_port);
    snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", h->m[i].peer_port);
    for (int j = 0; j < h->n; j++)
        used += (size_t)snprintf(cluster + used, sizeof(cluster) - used,
                                 "%sm%d=http://127.0.0.1:%d", j ? "," : "", j, h->m[j].peer_port);

    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

        /* etcd dies with the test process that started it, even when that one crashes. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (h->tls) {
            char ca[192], cert[192], key[192];

            snprintf(ca, sizeof(ca), "%s/ca.pem", h->dir);
            snprintf(cert, sizeof(cert), "%s/server.pem", h->dir);
            snprintf(key, sizeof(key), "%s/server.key", h->dir);
            execl(ETCD_BIN, ETCD_BIN, "--name", name, "--data-dir", datadir, "--listen-client-urls",
                  client, "--advertise-client-urls", client, "--listen-peer-urls", peer,
                  "--initial-advertise-peer-urls", peer, "--initial-cluster", cluster,
                  "--initial-cluster-state", "new", "--initial-cluster-token", h->token,
                  "--heartbeat-interval", "50", "--election-timeout", "500", "--logger", "zap",
                  "--log-level", "warn", "--cert-file", cert, "--key-file", key,
                  "--trusted-ca-file", ca, "--client-cert-auth", (char *)NULL);
            _exit(127);
        }
        /* Short heartbeat and election: failover tests then take about a second, not ten. */
        execl(ETCD_BIN, ETCD_BIN, "--name", name, "--data-dir", datadir, "--listen-client-urls",
              client, "--advertise-client-urls", client, "--listen-peer-urls", peer,
              "--initial-advertise-peer-urls", peer, "--initial-cluster", cluster,
              "--initial-cluster-state", "new", "--initial-cluster-token", h->token,
              "--heartbeat-interval", "50", "--election-timeout", "500", "--logger", "zap",
              "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    h->m[i].pid = pid;
    return 0;
}

/* Bounded: 200 polls of 100 ms. */
static int wait_healthy(harness *h, int i)
{
    etcd_client_options o = ETCD_CLIENT_OPTIONS_INIT;
    etcd_client *c = NULL;
    char err[MESHCA_ERRBUF], ca[192], cert[192], key[192];
    int r = -1;

    o.endpoints = harness_endpoint(h, i);
    if (h->tls) {
        snprintf(ca, sizeof(ca), "%s", harness_file(h, HARNESS_CA));
        snprintf(cert, sizeof(cert), "%s", harness_file(h, HARNESS_CLIENT_CERT));
        snprintf(key, sizeof(key), "%s", harness_file(h, HARNESS_CLIENT_KEY));
        o.tls = 1;
        o.cacert = ca;
        o.cert = cert;
        o.key = key;
    }
    o.connect_timeout_ms = 200;
    o.request_timeout_ms = 1000;
    o.rounds = 1;
    if (etcd_client_new(&o, &c, err) < 0)
        return -1;
    for (int tries = 0; tries < 200; tries++) {
        int status;

        if (waitpid(h->m[i].pid, &status, WNOHANG) == h->m[i].pid) {
            h->m[i].pid = 0;
            fprintf(stderr, "etcd member %d exited while starting; see %s/m%d.log\n", i, h->dir, i);
            break;
        }
        if (etcd_member_status_get(c, 0, NULL, err) == 0) {
            r = 0;
            break;
        }
        usleep(100 * 1000);
    }
    if (r < 0)
        fprintf(stderr, "etcd member %d not healthy: %s\n", i, err);
    etcd_client_free(c);
    return r;
}

static int start(harness *h, int n, int tls)
{
    int ports[2 * HARNESS_MEMBERS_MAX];
    size_t used = 0;

    memset(h, 0, sizeof(*h));
    if (snprintf(h->dir, sizeof(h->dir), "%s/meshca-etcd-XXXXXX", root ? root : "/tmp") >=
            (int)sizeof(h->dir) ||
        n < 1 || n > HARNESS_MEMBERS_MAX || !mkdtemp(h->dir)) {
        h->dir[0] = '\0';
        return -1;
    }
    snprintf(h->token, sizeof(h->token), "t-%ld-%d", (long)time(NULL), (int)getpid());
    h->n = n;
    h->tls = tls;
    if (tls && make_certs(h) < 0) {
        fprintf(stderr, "cannot make test certificates with the openssl CLI\n");
        goto fail;
    }
    if (free_ports(ports, 2 * n) < 0)
        goto fail;
    for (int i = 0; i < n; i++) {
        h->m[i].client_port = ports[2 * i];
        h->m[i].peer_port = ports[2 * i + 1];
        used += (size_t)snprintf(h->endpoints + used, sizeof(h->endpoints) - used, "%s%s",
                                 i ? "," : "", harness_endpoint(h, i));
    }
    for (int i = 0; i < n; i++)
        if (spawn(h, i) < 0)
            goto fail;
    for (int i = 0; i < n; i++)
        if (wait_healthy(h, i) < 0)
            goto fail;
    return 0;
fail:
    harness_stop(h);
    return -1;
}

int harness_start(harness *h, int n)
{
    return start(h, n, 0);
}

int harness_start_tls(harness *h, int n)
{
    return start(h, n, 1);
}

void harness_kill(harness *h, int i)
{
    if (h->m[i].pid > 0) {
        kill(h->m[i].pid, SIGKILL);
        waitpid(h->m[i].pid, NULL, 0);
        h->m[i].pid = 0;
    }
}

int harness_restart(harness *h, int i)
{
    harness_kill(h, i);
    if (spawn(h, i) < 0)
        return -1;
    return wait_healthy(h, i);
}

void harness_stop(harness *h)
{
    char cmd[192];

    for (int i = 0; i < h->n; i++)
        harness_kill(h, i);
    /* The path is our own mkdtemp result, so handing it to rm is safe. */
    if (h->dir[0] && snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir) < (int)sizeof(cmd))
        (void)!system(cmd);
    h->dir[0] = '\0';
}
