/* roots.c - builds the Consul-shaped roots document (ActiveRootID, TrustDomain, Roots) with jansson. */
#include "reconciler/roots.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "reconciler/pki.h"

static json_t *pem_string(X509 *x)
{
    char *pem = NULL;
    json_t *s;

    if (pki_cert_to_pem(x, &pem, NULL) < 0)
        return NULL;
    s = json_string(pem);
    free(pem);
    return s;
}

static json_t *time_string(X509 *x, int (*get)(X509 *, int64_t *))
{
    char buf[32];
    int64_t t;

    if (get(x, &t) < 0 || pki_format_time(t, buf, sizeof(buf)) < 0)
        return NULL;
    return json_string(buf);
}

/* json_object_set_new tolerates a NULL value by failing; count failures instead of crashing. */
static int set(json_t *obj, const char *key, json_t *value)
{
    return value && json_object_set_new(obj, key, value) == 0 ? 0 : -1;
}

static int one_root(const roots_entry *e, json_t **ret, char *id, size_t id_size, char *errbuf)
{
    STACK_OF(X509) *chain = NULL, *cross = NULL;
    json_t *root = NULL, *inter;
    X509 *signing, *top;
    char ski[200], serial[80];
    int r, bad = 0, n;

    r = pki_chain_from_pem(e->chain_pem, e->chain_pem ? strlen(e->chain_pem) : 0, &chain, errbuf);
    if (r == PKI_OK && e->cross_signed_pem)
        r = pki_chain_from_pem(e->cross_signed_pem, strlen(e->cross_signed_pem), &cross, errbuf);
    if (r < 0)
        goto out;
    n = sk_X509_num(chain);
    signing = sk_X509_value(chain, 0);
    top = sk_X509_value(chain, n - 1);
    if (pki_fingerprint_sha1(top, id, id_size) < 0 || pki_ski_hex(signing, ski, sizeof(ski)) < 0 ||
        pki_serial_hex(top, serial, sizeof(serial)) < 0) {
        r = PKI_EINVAL;
        goto out;
    }
    root = json_object();
    inter = json_array();
    for (int i = 0; i < n - 1; i++)
        bad |= json_array_append_new(inter, pem_string(sk_X509_value(chain, i)));
    for (int i = 0; i < sk_X509_num(cross); i++)
        bad |= json_array_append_new(inter, pem_string(sk_X509_value(cross, i)));
    bad |= set(root, "ID", json_string(id));
    bad |= set(root, "Name", json_string(e->backend ? e->backend : ""));
    bad |= set(root, "SerialNumber", json_string(serial));
    bad |= set(root, "SigningKeyID", json_string(ski));
    bad |= set(root, "NotBefore", time_string(top, pki_cert_not_before));
    bad |= set(root, "NotAfter", time_string(top, pki_cert_not_after));
    bad |= set(root, "RootCert", pem_string(top));
    bad |= set(root, "IntermediateCerts", inter);
    bad |= set(root, "Active", json_boolean(e->active));
    bad |= set(root, "PrivateKeyType", json_string(pki_key_type(X509_get0_pubkey(signing))));
    bad |= set(root, "PrivateKeyBits", json_integer(pki_key_bits(X509_get0_pubkey(signing))));
    bad |= set(root, "Backend", json_string(e->backend ? e->backend : ""));
    if (bad) {
        json_decref(root);
        root = NULL;
        r = PKI_ENOMEM;
    }
out:
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(cross, X509_free);
    if (r == PKI_OK)
        *ret = root;
    return r;
}

int roots_build(const char *mesh, const roots_entry *entries, size_t n, json_t **ret,
                char *errbuf)
{
    json_t *doc = json_object(), *roots = json_array();
    char active_id[64] = "";
    int bad = 0;

    if (!doc || !roots || !ret) {
        json_decref(doc);
        json_decref(roots);
        return PKI_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        char id[64];
        json_t *root = NULL;
        int r = one_root(&entries[i], &root, id, sizeof(id), errbuf);

        if (r < 0) {
            json_decref(doc);
            json_decref(roots);
            return r;
        }
        if (entries[i].active)
            snprintf(active_id, sizeof(active_id), "%s", id);
        bad |= json_array_append_new(roots, root);
    }
    bad |= set(doc, "ActiveRootID", json_string(active_id));
    bad |= set(doc, "TrustDomain", json_string(mesh ? mesh : ""));
    bad |= set(doc, "Roots", roots);
    if (bad) {
        json_decref(doc);
        return PKI_ENOMEM;
    }
    *ret = doc;
    return PKI_OK;
}

int roots_find_cross_signed(const char *leaf_chain_pem, const char *ca_chain_pem, char **ret,
                            char *errbuf)
{
    STACK_OF(X509) *leaf_chain = NULL, *ca_chain = NULL;
    char *found = NULL;
    int r;

    if (!leaf_chain_pem || !ca_chain_pem || !ret)
        return meshca_fail(errbuf, PKI_EINVAL, "invalid argument");
    if ((r = pki_chain_from_pem(leaf_chain_pem, strlen(leaf_chain_pem), &leaf_chain, errbuf)) < 0 ||
        (r = pki_chain_from_pem(ca_chain_pem, strlen(ca_chain_pem), &ca_chain, errbuf)) < 0)
        goto out;
    X509 *signing = sk_X509_value(ca_chain, 0);
    /* [0] is the leaf itself. */
    for (int i = 1; i < sk_X509_num(leaf_chain) && !found; i++) {
        X509 *c = sk_X509_value(leaf_chain, i);
        if (X509_NAME_cmp(X509_get_subject_name(c), X509_get_subject_name(signing)) != 0 ||
            EVP_PKEY_eq(X509_get0_pubkey(c), X509_get0_pubkey(signing)) != 1 ||
            X509_cmp(c, signing) == 0)
            continue;
        if ((r = pki_cert_to_pem(c, &found, errbuf)) < 0)
            goto out;
    }
    ERR_clear_error();   /* EVP_PKEY_eq may queue "different key types" */
    *ret = found;
out:
    sk_X509_pop_free(leaf_chain, X509_free);
    sk_X509_pop_free(ca_chain, X509_free);
    return r;
}
