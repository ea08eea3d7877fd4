/* seed-agents.c - test helper: plays the agents of every dataplane of a mesh against the store,
 * through the functions the dataplane API's handlers call, so the crash tests start from a
 * realistic store without knowing the record format. Usage (the store is $MESHCA_STORE):
 *   seed-agents csr MESH   each dataplane generates a fresh EC P-256 key and sends a CSR
 *                          (pki_make_csr, as the agent); the CSR is checked (csr_check, as the
 *                          API) and its key becomes the pending key (reconcile_submit_key, as
 *                          the controller): the next pass signs them all
 *   seed-agents ack MESH   each dataplane acknowledges its identity's current generation
 *                          (ack_record, as the controller's ack handler)
 * Prints the number of dataplanes seeded. Exit 0 ok, 2 usage or any failure (one line). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "reconciler/ack.h"
#include "reconciler/api/csr.h"
#include "reconciler/pki.h"
#include "reconciler/reconcile.h"
#include "reconciler/state.h"
#include "reconciler/store.h"

/* One agent's CSR: a fresh key (kept by no one: the test needs only the public half). */
static int send_csr(store *s, const char *mesh_name, const char *dp, char *errbuf)
{
    EVP_PKEY *key = NULL;
    char *pem = NULL;
    unsigned char *spki = NULL;
    size_t spki_len = 0;
    int rc = pki_generate_key(false, 0, &key, errbuf);
    if (rc == 0)
        rc = pki_make_csr(key, &pem, errbuf);
    EVP_PKEY_free(key);
    if (rc == 0)
        rc = csr_check(pem, strlen(pem), CSR_KEY_EC_P256, &spki, &spki_len, errbuf);
    if (rc == 0)
        rc = reconcile_submit_key(s, mesh_name, dp, spki, spki_len, pem, errbuf);
    free(spki);
    free(pem);
    return rc;
}

static int ack(store *s, const char *mesh_name, const char *dp, char *errbuf)
{
    identity id = {0};
    int rc = identity_read(s, mesh_name, dp, &id, NULL, errbuf);
    if (rc == 0)
        rc = ack_record(s, mesh_name, dp, (uint64_t)id.generation, (int64_t)time(NULL), errbuf);
    identity_clear(&id);
    return rc;
}

int main(int argc, char **argv)
{
    char errbuf[MESHCA_ERRBUF] = "";
    store *s = NULL;
    if (argc != 3 || (strcmp(argv[1], "csr") != 0 && strcmp(argv[1], "ack") != 0)) {
        fprintf(stderr, "usage: seed-agents csr|ack MESH\n");
        return 2;
    }
    bool csr = strcmp(argv[1], "csr") == 0;
    const char *mesh_name = argv[2];
    if (store_open(NULL, &s, errbuf) < 0) {
        fprintf(stderr, "seed-agents: %s\n", errbuf);
        return 2;
    }
    store_entry *e = NULL;
    size_t n = 0;
    int rc = store_list(s, STATE_DATAPLANES, mesh_name, &e, &n);
    if (rc < 0)
        snprintf(errbuf, sizeof(errbuf), "%s", store_errmsg(s));
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = csr ? send_csr(s, mesh_name, e[i].name, errbuf) : ack(s, mesh_name, e[i].name, errbuf);
    store_entries_free(e, n);
    store_close(s);
    if (rc < 0) {
        fprintf(stderr, "seed-agents %s: %s\n", argv[1], errbuf);
        return 2;
    }
    printf("%zu\n", n);
    return 0;
}
