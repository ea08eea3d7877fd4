/* bench-issue.c - leaf issuance rate of pki_issue_leaf next to a raw OpenSSL keygen+sign loop (S11). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "reconciler/pki.h"
#include "test/bench/bench_clock.h"

#define BENCH_MAX_COUNT 100000

/* The machine's own limit: generate a key and sign a bare certificate with the CA key. */
static int raw_once(bool rsa, X509 *ca, EVP_PKEY *ca_key)
{
    EVP_PKEY *key = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    X509 *x = X509_new();
    int ok = key && x && X509_set_pubkey(x, key) &&
             X509_set_issuer_name(x, X509_get_subject_name(ca)) &&
             X509_sign(x, ca_key, EVP_sha256()) > 0;

    X509_free(x);
    EVP_PKEY_free(key);
    return ok ? 0 : -1;
}

static int pki_once(bool rsa, X509 *ca, EVP_PKEY *ca_key, int64_t now)
{
    static const char *const uris[] = {"spiffe://default/web", "kuma://kuma.io/service/web",
                                       "kuma://version/v1"};
    pki_leaf_request req = PKI_LEAF_REQUEST_INIT;
    X509 *leaf;
    EVP_PKEY *key;

    req.uris = uris;
    req.nuris = 3;
    req.rsa = rsa;
    if (pki_issue_leaf(&req, ca, ca_key, now, &leaf, &key, NULL) < 0)
        return -1;
    X509_free(leaf);
    EVP_PKEY_free(key);
    return 0;
}

/* Runs until `max_count` iterations or `max_s` seconds; returns the rate per second. */
static double measure(bool use_pki, bool rsa, X509 *ca, EVP_PKEY *ca_key, int max_count,
                      double max_s, int *ret_count)
{
    int64_t now = time(NULL);
    double start = now_s(), elapsed;
    int n = 0;

    do {
        if ((use_pki ? pki_once(rsa, ca, ca_key, now) : raw_once(rsa, ca, ca_key)) < 0) {
            fprintf(stderr, "bench-issue: issuance failed\n");
            exit(2);
        }
        n++;
        elapsed = now_s() - start;
    } while (n < max_count && elapsed < max_s);
    *ret_count = n;
    return n / elapsed;
}

int main(int argc, char **argv)
{
    double max_s = argc > 1 ? strtod(argv[1], NULL) : 3.0;
    int max_count = argc > 2 ? (int)strtol(argv[2], NULL, 10) : BENCH_MAX_COUNT;
    EVP_PKEY *ca_key;
    X509 *ca;

    if (max_s <= 0 || max_count <= 0 || max_count > BENCH_MAX_COUNT) {
        fprintf(stderr, "usage: bench-issue [SECONDS] [MAX_COUNT<=%d]\n", BENCH_MAX_COUNT);
        return 2;
    }
    if (pki_generate_key(false, 0, &ca_key, NULL) < 0 ||
        pki_make_root(ca_key, "bench", "spiffe://bench", time(NULL) - 60, 86400 * 365, &ca,
                      NULL) < 0)
        return 2;
    printf("{\"benchmark\":\"leaf-issuance\",\"ca\":\"ec-p256\",\"max_seconds\":%.1f,\"results\":[",
           max_s);
    for (int rsa = 0; rsa <= 1; rsa++) {
        int n_pki, n_raw;
        double pki = measure(true, rsa, ca, ca_key, max_count, max_s, &n_pki);
        double raw = measure(false, rsa, ca, ca_key, max_count, max_s, &n_raw);

        printf("%s{\"leaf_key\":\"%s\",\"pki_issue_leaf_per_s\":%.1f,\"count\":%d,"
               "\"raw_keygen_sign_per_s\":%.1f,\"raw_count\":%d,\"fraction_of_raw\":%.3f}",
               rsa ? "," : "", rsa ? "rsa-2048" : "ec-p256", pki, n_pki, raw, n_raw, pki / raw);
    }
    printf("]}\n");
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return 0;
}
