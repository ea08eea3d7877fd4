/* conf.c - schema of each backend type's `conf` tree (SPEC S2): known keys, types, datasources.
 *
 * Codes: bad-conf (wrong type or value), unknown-field (with did-you-mean), missing-field,
 * bad-datasource (not exactly one of secret|file|inline|inlineString, or bad inline base64).
 * Paths are prefixed "mtls.backends[i].conf". Values are never echoed: conf holds tokens and keys.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifests/base64.h"
#include "manifests/manifest.h"
#include "validators/internal.h"
#include "validators/validators.h"

#define PATH_MAX_LEN 192

static void join(char *buf, const char *base, const char *key)
{
    if (snprintf(buf, PATH_MAX_LEN, "%s.%s", base, key) >= PATH_MAX_LEN)
        buf[PATH_MAX_LEN - 1] = '\0';   /* a cut path is still a useful pointer */
}

/* Reports every key of `map` that is not in `allowed`. False when `node` is not a mapping. */
static bool check_map(const mnode *node, const char *path, const char *const *allowed,
                      diag_list *out)
{
    if (node->kind != MNODE_MAP) {
        diag_error(out, "bad-conf", &node->mark, path, "expected a mapping, got %s",
                   mnode_type_name(node));
        return false;
    }
    for (size_t i = 0; i < node->npairs; i++) {
        const mnode *key = node->pairs[i].key;
        bool known = false;
        for (size_t j = 0; allowed[j] && !known; j++)
            known = strcmp(key->scalar, allowed[j]) == 0;
        if (known)
            continue;
        char sub[PATH_MAX_LEN];
        join(sub, path, key->scalar);
        const char *hint = manifest_suggest(key->scalar, allowed);
        if (hint)
            diag_error(out, "unknown-field", &key->mark, sub,
                       "unknown field '%.64s'; did you mean '%s'?", key->scalar, hint);
        else
            diag_error(out, "unknown-field", &key->mark, sub, "unknown field '%.64s'",
                       key->scalar);
    }
    return true;
}

static const mnode *required(const mnode *map, const char *key, const char *path, diag_list *out)
{
    const mnode *v = mnode_get(map, key);
    if (!v || mnode_is_null(v)) {
        char sub[PATH_MAX_LEN];
        join(sub, path, key);
        diag_error(out, "missing-field", v ? &v->mark : &map->mark, sub, "'%s' is required", key);
        return NULL;
    }
    return v;
}

/* An optional key that must hold a non-empty string. Returns the node when it does. */
static const mnode *string_field(const mnode *map, const char *key, bool must, const char *path,
                                 diag_list *out)
{
    const mnode *v = must ? required(map, key, path, out) : mnode_get(map, key);
    if (!v || (!must && mnode_is_null(v)))
        return NULL;
    char sub[PATH_MAX_LEN];
    join(sub, path, key);
    if (!mnode_is_string(v) || v->scalar_len == 0) {
        diag_error(out, "bad-conf", &v->mark, sub, "expected a non-empty string, got %s",
                   mnode_is_string(v) ? "an empty string" : mnode_type_name(v));
        return NULL;
    }
    return v;
}

static void url_field(const mnode *map, const char *key, bool must, const char *path,
                      diag_list *out)
{
    const mnode *v = string_field(map, key, must, path, out);
    if (!v)
        return;
    if (strncmp(v->scalar, "http://", 7) != 0 && strncmp(v->scalar, "https://", 8) != 0) {
        char sub[PATH_MAX_LEN];
        join(sub, path, key);
        diag_error(out, "bad-conf", &v->mark, sub,
                   "'%s' must be an http:// or https:// URL", key);
    } else if (strchr(v->scalar, ' ') || v->scalar[strcspn(v->scalar, "/") + 2] == '\0') {
        char sub[PATH_MAX_LEN];
        join(sub, path, key);
        diag_error(out, "bad-conf", &v->mark, sub, "'%s' is not a valid URL", key);
    }
}

static const char *const datasource_keys[] = {"secret", "file", "inline", "inlineString", NULL};

/* A Kuma datasource: exactly one of secret | file | inline | inlineString. */
static void check_datasource(const mnode *node, const char *path, diag_list *out)
{
    if (node->kind != MNODE_MAP) {
        diag_error(out, "bad-datasource", &node->mark, path,
                   "expected a datasource (one of secret, file, inline, inlineString), got %s",
                   mnode_type_name(node));
        return;
    }
    check_map(node, path, datasource_keys, out);
    size_t count = 0;
    for (size_t i = 0; datasource_keys[i]; i++) {
        const mnode *v = mnode_get(node, datasource_keys[i]);
        if (!v)
            continue;
        count++;
        char sub[PATH_MAX_LEN];
        join(sub, path, datasource_keys[i]);
        if (!mnode_is_string(v) || v->scalar_len == 0) {
            diag_error(out, "bad-datasource", &v->mark, sub, "expected a non-empty string, got %s",
                       mnode_is_string(v) ? "an empty string" : mnode_type_name(v));
        } else if (strcmp(datasource_keys[i], "inline") == 0 &&
                   !base64_valid(v->scalar, v->scalar_len)) {
            diag_error(out, "bad-datasource", &v->mark, sub, "inline data is not valid base64");
        }
    }
    if (count != 1)
        diag_error(out, "bad-datasource", &node->mark, path,
                   "a datasource needs exactly one of secret, file, inline or inlineString (found %zu)",
                   count);
}

static void datasource_field(const mnode *map, const char *key, bool must, const char *path,
                             diag_list *out)
{
    const mnode *v = must ? required(map, key, path, out) : mnode_get(map, key);
    if (!v || (!must && mnode_is_null(v)))
        return;
    char sub[PATH_MAX_LEN];
    join(sub, path, key);
    check_datasource(v, sub, out);
}

/* Only the shape: the values of caCert.expiration and caCert.RSAbits are the builtin CA check's
 * (reconciler/ca_builtin.c, code ca-conf), which validate runs offline and apply runs again, so
 * each problem is reported once and by one rule. */
static void check_builtin(const mnode *conf, const char *path, diag_list *out)
{
    static const char *const keys[] = {"caCert", NULL};
    static const char *const ca_keys[] = {"expiration", "RSAbits", NULL};
    if (!check_map(conf, path, keys, out))
        return;
    const mnode *ca = mnode_get(conf, "caCert");
    if (!ca || mnode_is_null(ca))
        return;
    char ca_path[PATH_MAX_LEN];
    join(ca_path, path, "caCert");
    check_map(ca, ca_path, ca_keys, out);
}

static void check_provided(const mnode *conf, const char *path, diag_list *out)
{
    static const char *const keys[] = {"cert", "key", NULL};
    if (!check_map(conf, path, keys, out))
        return;
    datasource_field(conf, "cert", true, path, out);
    datasource_field(conf, "key", true, path, out);
}

static void check_vault(const mnode *conf, const char *path, diag_list *out)
{
    static const char *const keys[] = {"fromCp", NULL};
    static const char *const cp_keys[] = {"address", "namespace", "pki", "role", "commonName",
                                          "tls", "auth", NULL};
    static const char *const tls_keys[] = {"caCert", "skipVerify", "serverName", NULL};
    static const char *const auth_keys[] = {"token", "tls", NULL};
    static const char *const auth_tls_keys[] = {"clientCert", "clientKey", NULL};

    if (!check_map(conf, path, keys, out))
        return;
    const mnode *cp = required(conf, "fromCp", path, out);
    if (!cp)
        return;
    char cp_path[PATH_MAX_LEN];
    join(cp_path, path, "fromCp");
    if (!check_map(cp, cp_path, cp_keys, out))
        return;

    url_field(cp, "address", true, cp_path, out);
    string_field(cp, "namespace", false, cp_path, out);
    string_field(cp, "pki", true, cp_path, out);
    string_field(cp, "role", true, cp_path, out);
    string_field(cp, "commonName", false, cp_path, out);

    const mnode *tls = mnode_get(cp, "tls");
    if (tls && !mnode_is_null(tls)) {
        char tls_path[PATH_MAX_LEN];
        join(tls_path, cp_path, "tls");
        if (check_map(tls, tls_path, tls_keys, out)) {
            datasource_field(tls, "caCert", false, tls_path, out);
            string_field(tls, "serverName", false, tls_path, out);
            const mnode *skip = mnode_get(tls, "skipVerify");
            bool b;
            if (skip && !mnode_is_null(skip) && !mnode_as_bool(skip, &b)) {
                char sub[PATH_MAX_LEN];
                join(sub, tls_path, "skipVerify");
                diag_error(out, "bad-conf", &skip->mark, sub, "expected a boolean, got %s",
                           mnode_type_name(skip));
            }
        }
    }

    const mnode *auth = required(cp, "auth", cp_path, out);
    if (!auth)
        return;
    char auth_path[PATH_MAX_LEN];
    join(auth_path, cp_path, "auth");
    if (!check_map(auth, auth_path, auth_keys, out))
        return;
    const mnode *token = mnode_get(auth, "token");
    const mnode *atls = mnode_get(auth, "tls");
    if ((token != NULL) == (atls != NULL)) {
        diag_error(out, "bad-conf", &auth->mark, auth_path,
                   "auth needs exactly one of 'token' or 'tls'");
    }
    if (token)
        datasource_field(auth, "token", true, auth_path, out);
    if (atls) {
        char atls_path[PATH_MAX_LEN];
        join(atls_path, auth_path, "tls");
        if (check_map(atls, atls_path, auth_tls_keys, out)) {
            datasource_field(atls, "clientCert", true, atls_path, out);
            datasource_field(atls, "clientKey", true, atls_path, out);
        }
    }
}

static void check_cfssl(const mnode *conf, const char *path, diag_list *out)
{
    static const char *const keys[] = {"url", "profile", "authKey", "intermediateExpiration",
                                       NULL};
    if (!check_map(conf, path, keys, out))
        return;
    url_field(conf, "url", true, path, out);
    string_field(conf, "profile", false, path, out);
    datasource_field(conf, "authKey", false, path, out);
}

/* The backend types the manifests accept (SPEC S2), NULL-terminated: the one list of them in
 * the validators; `schemas` below is indexed alike. */
const char *const validate_backend_types[] = {"builtin", "provided", "vault", "cfssl", NULL};

static const struct {
    void (*check)(const mnode *conf, const char *path, diag_list *out);
    bool conf_required;
} schemas[] = {
    {check_builtin, false},
    {check_provided, true},
    {check_vault, true},
    {check_cfssl, true},
};
_Static_assert(sizeof schemas / sizeof schemas[0] ==
                   sizeof validate_backend_types / sizeof validate_backend_types[0] - 1,
               "one schema per backend type");

void validate_backend_conf(const mesh_backend *b, size_t index, diag_list *out)
{
    if (!b->type.value)
        return;
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "mtls.backends[%zu].conf", index);
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
        if (strcmp(b->type.value, validate_backend_types[i]) != 0)
            continue;
        if (!b->conf || mnode_is_null(b->conf)) {
            if (schemas[i].conf_required)
                diag_error(out, "missing-field", b->conf ? &b->conf->mark : &b->mark, path,
                           "a %s backend needs 'conf'", validate_backend_types[i]);
            return;
        }
        schemas[i].check(b->conf, path, out);
        return;
    }
}
