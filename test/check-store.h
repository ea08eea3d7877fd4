/* check-store.h - store helpers the reconcile-family Check suites share: a scratch store, seeding manifests, submitting keys. */
#ifndef MESHCA_TEST_CHECK_STORE_H
#define MESHCA_TEST_CHECK_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#include "reconciler/state.h"

/* Makes the directory of the mkdtemp template `tmpl` (rewritten in place) and writes to `url`
 * the sqlite:// URL of a store below it (store/meshca.db); the test fails when it cannot. */
void test_store_dir(char *tmpl, char *url, size_t url_size);
/* Removes a directory test_store_dir made, with everything in it. */
void test_store_dir_remove(const char *dir);
/* The store at `url`; the test fails when it does not open. */
store *test_store_open(const char *url);
/* Stores every resource of the manifests `yaml` as apply would; the test fails on a
 * diagnostic. */
void test_seed(store *s, const char *yaml);
/* What an agent does: a fresh key (RSA 2048 or EC P-256) whose public part, and with `csr` a
 * CSR, the API stores as dataplane `dp`'s pending key. Returns the key (caller frees). */
EVP_PKEY *test_submit(store *s, const char *mesh_name, const char *dp, bool rsa, bool csr);

#endif
