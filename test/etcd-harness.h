/* etcd-harness.h - starts real etcd members (Debian etcd-server) on 127.0.0.1 with free ports for
 * the C tests. */
#ifndef MESHCA_TEST_ETCD_HARNESS_H
#define MESHCA_TEST_ETCD_HARNESS_H

#include <sys/types.h>

#define ETCD_BIN "/usr/bin/etcd"
#define HARNESS_MEMBERS_MAX 3

typedef struct harness_member {
    pid_t pid; /* 0 when stopped */
    int client_port;
    int peer_port;
} harness_member;

typedef struct harness {
    int n;
    harness_member m[HARNESS_MEMBERS_MAX];
    char dir[128];       /* temporary: one data dir and one log per member */
    char endpoints[256]; /* "127.0.0.1:C1,127.0.0.1:C2,..." */
    char token[32];
    int tls; /* members serve https and require a client certificate; files in dir (below) */
} harness;

/* With harness_start_tls: dir/ca.pem (the CA), dir/client.pem and dir/client.key (a client
 * certificate it signed); the members' own certificate names IP 127.0.0.1. */
#define HARNESS_CA "ca.pem"
#define HARNESS_CLIENT_CERT "client.pem"
#define HARNESS_CLIENT_KEY "client.key"

/* Make every later harness's temporary directory under root (borrowed, must outlive them):
 * a failed Check assertion ends a test process without its teardown, so the test program
 * removes root itself at its end. NULL: directly under /tmp. */
void harness_set_root(const char *root);

/* 1 when the etcd binary is installed. */
int harness_available(void);

/* Start n (1..3) members as one new cluster and wait (bounded) until each answers and sees a
 * leader. 0 or -1 (and the members started so far are stopped). */
int harness_start(harness *h, int n);

/* As harness_start, with TLS and client certificate authentication (etcds://). */
int harness_start_tls(harness *h, int n);

/* "dir/file" in a static buffer. */
const char *harness_file(const harness *h, const char *file);

/* The endpoint "127.0.0.1:PORT" of member i, in a static buffer. */
const char *harness_endpoint(const harness *h, int i);

/* SIGKILL member i and reap it. */
void harness_kill(harness *h, int i);

/* Start member i again on its data dir and ports; waits until it answers with a leader. */
int harness_restart(harness *h, int i);

/* Kill every member and remove the temporary directory. Accepts a never-started harness. */
void harness_stop(harness *h);

#endif
