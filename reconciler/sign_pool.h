/* sign_pool.h - signing workers: N threads sign a batch of leaves for one CA, each with its own OpenSSL objects. */
#ifndef MESHCA_SIGN_POOL_H
#define MESHCA_SIGN_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reconciler/pki.h"

#define SIGN_POOL_MAX_THREADS 64

/* How much lower than the pass's own thread the workers run (nice values). That thread decides,
 * records and writes every leaf: in a switch, where a signature is cheap, it is the critical
 * path, and with as many workers as cores they took its core from it (a 100,000-leaf switch
 * was slower with 2 workers than with 1). Lower, the workers still take every cycle it leaves.
 * Nice values weigh threads within one scheduling group (a container's cgroup, a session's
 * autogroup), so this is about meshca's own threads, hardly about other programs. */
#define SIGN_POOL_WORKER_NICE 5

/* One leaf to sign. Inputs are borrowed for the duration of sign_pool_run. Exactly one of
 * spki_der (re-sign a known public key) and csr_pem (verify the CSR, then sign its key) is set. */
typedef struct sign_pool_job {
    const unsigned char *spki_der;
    size_t spki_len;
    const char *csr_pem;
    size_t csr_len;
    pki_leaf_request req;   /* its uris and cn are borrowed too */
    int64_t now;            /* the clock this leaf is signed at; 0: the batch's */
    /* Written by sign_pool_run: 0 and leaf (free with pki_signed_leaf_clear()), or a negative
     * PKI_* code and an empty leaf. */
    int result;
    pki_signed_leaf leaf;
} sign_pool_job;

/* A pool signs for one CA: each worker holds its own pki_leaf_signer (its own copy of the CA key
 * and sign context), so workers share no OpenSSL object and take no lock while signing. */
typedef struct sign_pool sign_pool;

/* Starts nthreads workers (0: the online CPUs, at most SIGN_POOL_MAX_THREADS) for ca_cert/ca_key,
 * which stay the caller's. Caller frees *ret with sign_pool_free(). */
int sign_pool_new(X509 *ca_cert, EVP_PKEY *ca_key, unsigned nthreads, sign_pool **ret,
                  char *errbuf);
/* Signs every job (in any order, results in place) and returns when all are done: 0 when every
 * job succeeded, else the code of the first failed job (lowest index) with its message in errbuf.
 * Not reentrant: one batch at a time per pool. */
int sign_pool_run(sign_pool *pool, sign_pool_job *jobs, size_t n, int64_t now, char *errbuf);
/* sign_pool_run in two halves, so the caller works while the batch is signed (a pass prepares
 * and writes one batch while the workers sign the next): start posts the batch and returns at
 * once; wait returns when it is done, with sign_pool_run's result. The jobs must stay valid
 * until wait returns; every start is followed by one wait before the next start or free. */
int sign_pool_start(sign_pool *pool, sign_pool_job *jobs, size_t n, int64_t now, char *errbuf);
int sign_pool_wait(sign_pool *pool, char *errbuf);
/* Whether sign_pool_wait would return at once: the batch started is signed, or none is. For a
 * caller with work it can do now or later (a pass reads its next identities while it waits). */
bool sign_pool_idle(sign_pool *pool);
unsigned sign_pool_threads(const sign_pool *pool);
/* Stops and joins the workers, frees their signers (wiping the key copies). Accepts NULL. */
void sign_pool_free(sign_pool *pool);

#endif
