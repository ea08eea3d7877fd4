/* check-store.c - store helpers the reconcile-family Check suites share: a scratch store, seeding manifests, submitting keys. */
#define _GNU_SOURCE 1
#include "check-store.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "manifests/manifest.h"
#include "reconciler/pki.h"
#include "reconciler/reconcile.h"

void test_store_dir(char *tmpl, char *url, size_t url_size)
{
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    snprintf(url, url_size, "sqlite://%s/store/meshca.db", tmpl);
}

void test_store_dir_remove(const char *dir)
{
    char cmd[512];
    /* Our own mkdtemp result: safe to hand to rm. */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    (void)!system(cmd);
}

store *test_store_open(const char *url)
{
    char err[MESHCA_ERRBUF] = "";
    store *s = NULL;
    ck_assert_msg(store_open(url, &s, err) == STORE_OK, "store_open: %s", err);
    return s;
}

void test_seed(store *s, const char *yaml)
{
    manifest_set *set = manifest_set_new();
    diag_list diags = DIAG_LIST_INIT;
    ck_assert_int_eq(manifest_load_buffer(set, "seed.yaml", yaml, strlen(yaml), &diags), 0);
    ck_assert_msg(!diag_has_errors(&diags), "seed: %s", diags.count ? diags.items[0].message : "");
    for (size_t i = 0; i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        store_key key = {state_kind_of(res->kind), resource_mesh(res), resource_name(res)};
        char *text = state_encode_resource(res);
        ck_assert_int_eq(store_put(s, &key, text, strlen(text), STORE_ANY_VERSION, NULL), STORE_OK);
        free(text);
    }
    diag_list_free(&diags);
    manifest_set_free(set);
}

EVP_PKEY *test_submit(store *s, const char *mesh_name, const char *dp, bool rsa, bool csr)
{
    EVP_PKEY *key = NULL;
    unsigned char *der = NULL;
    char err[MESHCA_ERRBUF] = "", *pem = NULL;

    ck_assert_int_eq(pki_generate_key(rsa, 0, &key, err), 0);
    if (csr)
        ck_assert_int_eq(pki_make_csr(key, &pem, err), 0);
    int len = i2d_PUBKEY(key, &der);
    ck_assert_int_gt(len, 0);
    ck_assert_msg(reconcile_submit_key(s, mesh_name, dp, der, (size_t)len, pem, err) == 0,
                  "submit: %s", err);
    OPENSSL_free(der);
    free(pem);
    return key;
}
