/* test-validators.c - Check suite for the static rules (S2), the rotation rules (S4) and status JSON (S7). */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "manifests/encode.h"
#include "manifests/manifest.h"
#include "manifests/status.h"
#include "validators/validators.h"

/* ---- a failing allocator: this suite links with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc
 * (test/meson.build), so the libraries' allocations come here. Check forks per test, so a budget
 * set in one test never leaks into another. ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

/* Allocations that still succeed; from then on every one fails. -1: no limit. */
static long alloc_budget = -1;

static int alloc_fails(void)
{
    if (alloc_budget < 0)
        return 0;
    if (alloc_budget == 0)
        return 1;
    alloc_budget--;
    return 0;
}

void *__wrap_malloc(size_t n)
{
    return alloc_fails() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return alloc_fails() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return alloc_fails() ? NULL : __real_realloc(p, n);
}

/* ---- helpers ---- */

static void dump(const diag_list *d)
{
    for (size_t i = 0; i < d->count; i++)
        fprintf(stderr, "  %s:%u:%u: %s [%s] %s: %s\n", d->items[i].file ? d->items[i].file : "-",
                d->items[i].line, d->items[i].column,
                d->items[i].severity == DIAG_ERROR ? "error" : "warning", d->items[i].code,
                d->items[i].path, d->items[i].message);
}

static const diag *find(const diag_list *d, const char *code)
{
    for (size_t i = 0; i < d->count; i++)
        if (strcmp(d->items[i].code, code) == 0)
            return &d->items[i];
    return NULL;
}

static size_t count_code(const diag_list *d, const char *code)
{
    size_t n = 0;
    for (size_t i = 0; i < d->count; i++)
        n += strcmp(d->items[i].code, code) == 0;
    return n;
}

/* Asserts a diagnostic with `code` exists at `path` and `line` (0: any line); returns it. */
#define assert_diag(list, code, path, line) assert_diag_at(list, code, path, line, __LINE__)
static const diag *assert_diag_at(const diag_list *d, const char *code, const char *path,
                                  unsigned line, int at)
{
    const diag *x = find(d, code);
    if (!x) {
        dump(d);
        ck_abort_msg("line %d: no diagnostic with code %s", at, code);
    }
    if (strcmp(x->path, path) != 0 || (line && x->line != line)) {
        dump(d);
        ck_abort_msg("line %d: %s at %s:%u, expected %s:%u", at, code, x->path, x->line, path, line);
    }
    return x;
}

#define assert_no_errors(list) assert_no_errors_at(list, __LINE__)
static void assert_no_errors_at(const diag_list *d, int at)
{
    if (diag_has_errors(d)) {
        dump(d);
        ck_abort_msg("line %d: unexpected errors", at);
    }
}

/* Loads YAML; the manifests must load cleanly so that only the validators speak. */
static manifest_set *load(const char *yaml)
{
    manifest_set *set = manifest_set_new();
    diag_list d = DIAG_LIST_INIT;
    ck_assert_int_eq(manifest_load_buffer(set, "mesh.yaml", yaml, strlen(yaml), &d), MANIFEST_OK);
    if (d.count)
        dump(&d);
    ck_assert_uint_eq(d.count, 0);
    diag_list_free(&d);
    return set;
}

static const mesh *first_mesh(const manifest_set *set)
{
    for (size_t i = 0; i < manifest_set_count(set); i++)
        if (manifest_set_get(set, i)->kind == RESOURCE_MESH)
            return &manifest_set_get(set, i)->u.mesh;
    ck_abort_msg("no mesh");
    return NULL;
}

/* Static checks of a YAML text into *d. */
static void check_static(const char *yaml, diag_list *d)
{
    manifest_set *set = load(yaml);
    validate_set(set, d);
    manifest_set_free(set);
}

/* Status entry: issued backend (or NULL) and supported backends, NULL-terminated. */
static void add_status(status_set *s, const char *name, const char *issued, ...)
{
    dataplane_status st;
    memset(&st, 0, sizeof st);
    st.mesh = strdup("default");
    st.name = strdup(name);
    st.issued_backend = issued ? strdup(issued) : NULL;
    st.supported_backends = calloc(8, sizeof(char *));
    va_list ap;
    va_start(ap, issued);
    for (const char *b; (b = va_arg(ap, const char *)) != NULL;)
        st.supported_backends[st.nsupported++] = strdup(b);
    va_end(ap);
    st.generation = st.acknowledged_generation = issued ? 1 : 0;
    status_set_append(s, &st);
}

/* n dataplanes dp-00.. that loaded a cert from `issued` and trust the given backends. */
static void add_fleet(status_set *s, int n, const char *issued, const char *b1, const char *b2)
{
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "dp-%02d", i);
        add_status(s, name, issued, b1, b2, NULL);
    }
}

typedef struct trans {
    diag_list d;
    transition_result r;
} trans;

/* Runs validate_transition of prev_yaml -> next_yaml (prev NULL: create). Also runs the static
 * checks on `next`, as the CLI does, so that a test sees everything a user would. */
static void transition(const char *prev_yaml, const char *next_yaml, const status_set *s,
                       bool have_status, bool force, const dataplane *const *dps, size_t ndps,
                       trans *t)
{
    manifest_set *p = prev_yaml ? load(prev_yaml) : NULL;
    manifest_set *n = load(next_yaml);
    transition_options opts = TRANSITION_OPTIONS_INIT;
    opts.force = force;
    opts.have_status = have_status;
    memset(t, 0, sizeof *t);
    validate_set(n, &t->d);
    validate_transition(p ? first_mesh(p) : NULL, first_mesh(n), s ? s->items : NULL,
                        s ? s->count : 0, dps, ndps, &opts, &t->d, &t->r);
    manifest_set_free(p);
    manifest_set_free(n);
}

/* ---- the seed's rotation (Kuma "CA rotation"), Universal form ---- */

#define MESH_CA1 \
    "type: Mesh\n"                          /* 1 */ \
    "name: default\n"                       /* 2 */ \
    "mtls:\n"                               /* 3 */ \
    "  enabledBackend: ca-1\n"              /* 4 */ \
    "  backends:\n"                         /* 5 */ \
    "  - name: ca-1\n"                      /* 6 */ \
    "    type: builtin\n"                   /* 7 */

#define CA2_BLOCK \
    "  - name: ca-2\n"                      /* 8 */ \
    "    type: provided\n"                  /* 9 */ \
    "    conf:\n"                           /* 10 */ \
    "      cert:\n"                         /* 11 */ \
    "        secret: ca-2-cert\n"           /* 12 */ \
    "      key:\n"                          /* 13 */ \
    "        secret: ca-2-key\n"            /* 14 */

#define MESH_ADDED MESH_CA1 CA2_BLOCK

#define MESH_SWITCHED \
    "type: Mesh\n" \
    "name: default\n" \
    "mtls:\n" \
    "  enabledBackend: ca-2\n"              /* 4 */ \
    "  backends:\n" \
    "  - name: ca-1\n"                      /* 6 */ \
    "    type: builtin\n" CA2_BLOCK

#define MESH_REMOVED \
    "type: Mesh\n" \
    "name: default\n" \
    "mtls:\n" \
    "  enabledBackend: ca-2\n" \
    "  backends:\n" \
    "  - name: ca-2\n"                      /* 6 */ \
    "    type: provided\n" \
    "    conf:\n" \
    "      cert:\n" \
    "        secret: ca-2-cert\n" \
    "      key:\n" \
    "        secret: ca-2-key\n"

/* The same steps in the Kubernetes form. */
#define K8S_HEAD "apiVersion: kuma.io/v1alpha1\nkind: Mesh\nmetadata:\n  name: default\nspec:\n  mtls:\n"
#define K8S_CA1 "    - name: ca-1\n      type: builtin\n"
#define K8S_CA2 \
    "    - name: ca-2\n      type: provided\n      conf:\n        cert:\n          secret: ca-2-cert\n" \
    "        key:\n          secret: ca-2-key\n"
#define K8S_START K8S_HEAD "    enabledBackend: ca-1\n    backends:\n" K8S_CA1
#define K8S_ADDED K8S_HEAD "    enabledBackend: ca-1\n    backends:\n" K8S_CA1 K8S_CA2
#define K8S_SWITCHED K8S_HEAD "    enabledBackend: ca-2\n    backends:\n" K8S_CA1 K8S_CA2
#define K8S_REMOVED K8S_HEAD "    enabledBackend: ca-2\n    backends:\n" K8S_CA2

/* ---- static rules ---- */

START_TEST(seed_manifests_pass_static_checks)
{
    const char *texts[] = {MESH_CA1, MESH_ADDED, MESH_SWITCHED, MESH_REMOVED,
                           K8S_START, K8S_ADDED, K8S_SWITCHED, K8S_REMOVED};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        diag_list d = DIAG_LIST_INIT;
        check_static(texts[i], &d);
        ck_assert_uint_eq(d.count, 0);
        diag_list_free(&d);
    }
}
END_TEST

START_TEST(mesh_name_must_be_a_dns_label)
{
    diag_list d = DIAG_LIST_INIT;
    check_static("type: Mesh\nname: Default_Mesh\n", &d);
    assert_diag(&d, "invalid-name", "name", 2);
    diag_list_free(&d);

    char yaml[256], name[65];
    memset(name, 'a', 64);
    name[64] = '\0';   /* one past the DNS label limit */
    snprintf(yaml, sizeof yaml, "type: Mesh\nname: %s\n", name);
    check_static(yaml, &d);
    assert_diag(&d, "invalid-name", "name", 2);
    diag_list_free(&d);
}
END_TEST

/* A dotted name of `len` characters: 62-character labels joined by dots, the last one shorter. */
static void dotted_name(char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (i % 63 == 62) ? '.' : 'a';
    if (buf[len - 1] == '.')
        buf[len - 1] = 'b';
    buf[len] = '\0';
}

/* Issue 9 #21: one limit for resource names, MODEL_MAX_RESOURCE_NAME (253), which the store uses
 * too (STORE_NAME_MAX), so what validate passes apply can store; one past it is invalid-name at
 * the name's path and line, for a Dataplane and a Secret in both forms. */
START_TEST(resource_names_up_to_253_pass_and_254_is_invalid_name_with_path)
{
    ck_assert_int_eq(MODEL_MAX_RESOURCE_NAME, 253);
    diag_list d = DIAG_LIST_INIT;
    char name[MODEL_MAX_RESOURCE_NAME + 2], yaml[1024];

    dotted_name(name, MODEL_MAX_RESOURCE_NAME);
    snprintf(yaml, sizeof yaml, "type: Secret\nmesh: default\nname: %s\ndata: YWJj\n", name);
    check_static(yaml, &d);
    ck_assert_uint_eq(d.count, 0);
    snprintf(yaml, sizeof yaml,
             "type: Dataplane\nmesh: default\nname: %s\nnetworking:\n  address: 127.0.0.1\n"
             "  inbound: [{port: 8443, tags: {kuma.io/service: web}}]\n", name);
    check_static(yaml, &d);
    ck_assert_uint_eq(d.count, 0);

    dotted_name(name, MODEL_MAX_RESOURCE_NAME + 1);
    snprintf(yaml, sizeof yaml, "type: Secret\nmesh: default\nname: %s\ndata: YWJj\n", name);
    check_static(yaml, &d);
    const diag *x = assert_diag(&d, "invalid-name", "name", 3);
    ck_assert_ptr_nonnull(strstr(x->message, "at most 253 characters"));
    diag_list_free(&d);
    snprintf(yaml, sizeof yaml,
             "apiVersion: kuma.io/v1alpha1\nkind: Dataplane\nmesh: default\nmetadata:\n  name: %s\n"
             "spec:\n  networking:\n    address: 127.0.0.1\n"
             "    inbound: [{port: 8443, tags: {kuma.io/service: web}}]\n", name);
    check_static(yaml, &d);
    assert_diag(&d, "invalid-name", "name", 5);
    diag_list_free(&d);
}
END_TEST

START_TEST(backend_name_must_be_a_dns_label)
{
    diag_list d = DIAG_LIST_INIT;
    check_static("type: Mesh\nname: default\nmtls:\n  backends:\n  - name: -ca1\n    type: builtin\n", &d);
    assert_diag(&d, "invalid-name", "mtls.backends[0].name", 5);
    diag_list_free(&d);
}
END_TEST

START_TEST(duplicate_backend_reported_at_second_with_first_line)
{
    diag_list d = DIAG_LIST_INIT;
    check_static(MESH_CA1 "  - name: ca-1\n    type: builtin\n", &d);
    const diag *x = assert_diag(&d, "duplicate-backend", "mtls.backends[1].name", 8);
    ck_assert_str_eq(x->message, "duplicate backend name 'ca-1' (first at line 6)");
    ck_assert_str_eq(x->file, "mesh.yaml");
    diag_list_free(&d);
}
END_TEST

START_TEST(more_than_sixteen_backends_refused)
{
    char yaml[4096];
    size_t len = (size_t)snprintf(yaml, sizeof yaml, "type: Mesh\nname: default\nmtls:\n  backends:\n");
    for (int i = 0; i < 17; i++)
        len += (size_t)snprintf(yaml + len, sizeof yaml - len, "  - {name: ca-%d, type: builtin}\n", i);
    diag_list d = DIAG_LIST_INIT;
    check_static(yaml, &d);
    assert_diag(&d, "too-many-backends", "mtls.backends", 5);
    diag_list_free(&d);
}
END_TEST

START_TEST(enabled_backend_must_exist_and_suggests_closest)
{
    diag_list d = DIAG_LIST_INIT;
    check_static("type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-l\n  backends:\n"
                 "  - name: ca-1\n    type: builtin\n", &d);
    const diag *x = assert_diag(&d, "enabled-backend-not-found", "mtls.enabledBackend", 4);
    ck_assert_ptr_nonnull(strstr(x->message, "did you mean 'ca-1'?"));
    diag_list_free(&d);
}
END_TEST

START_TEST(unknown_backend_type_suggests_closest)
{
    diag_list d = DIAG_LIST_INIT;
    check_static("type: Mesh\nname: default\nmtls:\n  backends:\n  - name: ca-1\n    type: biultin\n", &d);
    const diag *x = assert_diag(&d, "unknown-backend-type", "mtls.backends[0].type", 6);
    ck_assert_ptr_nonnull(strstr(x->message, "did you mean 'builtin'?"));
    diag_list_free(&d);
}
END_TEST

START_TEST(missing_backend_type_reported)
{
    diag_list d = DIAG_LIST_INIT;
    check_static("type: Mesh\nname: default\nmtls:\n  backends:\n  - name: ca-1\n", &d);
    assert_diag(&d, "missing-field", "mtls.backends[0].type", 5);
    diag_list_free(&d);
}
END_TEST

START_TEST(unknown_mode_and_key_type_refused)
{
    diag_list d = DIAG_LIST_INIT;
    check_static(MESH_CA1 "    mode: STRCT\n    dpCert:\n      keyType: dsa\n", &d);
    const diag *x = assert_diag(&d, "unknown-mode", "mtls.backends[0].mode", 8);
    ck_assert_ptr_nonnull(strstr(x->message, "did you mean 'STRICT'?"));
    assert_diag(&d, "unknown-key-type", "mtls.backends[0].dpCert.keyType", 10);
    diag_list_free(&d);

    check_static(MESH_CA1 "    mode: PERMISSIVE\n    dpCert:\n      keyType: rsa\n", &d);
    ck_assert_uint_eq(d.count, 0);
    diag_list_free(&d);
}
END_TEST

/* Kuma's enum values are case-sensitive, so these stay errors; the suggestion ignores case. */
START_TEST(wrong_case_enum_values_are_errors_with_the_right_spelling_suggested)
{
    diag_list d = DIAG_LIST_INIT;
    check_static("type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
                 "  - name: ca-1\n    type: BUILTIN\n    mode: strict\n    dpCert:\n"
                 "      keyType: RSA\n", &d);
    const diag *x = assert_diag(&d, "unknown-backend-type", "mtls.backends[0].type", 7);
    ck_assert_str_eq(x->message, "unknown backend type 'BUILTIN' (did you mean 'builtin'?); "
                                 "expected builtin, provided, vault or cfssl");
    x = assert_diag(&d, "unknown-mode", "mtls.backends[0].mode", 8);
    ck_assert_str_eq(x->message,
                     "unknown mode 'strict' (did you mean 'STRICT'?); expected STRICT or PERMISSIVE");
    x = assert_diag(&d, "unknown-key-type", "mtls.backends[0].dpCert.keyType", 10);
    ck_assert_str_eq(x->message,
                     "unknown key type 'RSA' (did you mean 'rsa'?); expected ecdsa or rsa");
    ck_assert_int_eq(x->severity, DIAG_ERROR);
    diag_list_free(&d);
    /* mixed case and a typo together */
    check_static("type: Mesh\nname: default\nmtls:\n  backends:\n  - name: ca-1\n"
                 "    type: Provded\n", &d);
    x = assert_diag(&d, "unknown-backend-type", "mtls.backends[0].type", 6);
    ck_assert_ptr_nonnull(strstr(x->message, "(did you mean 'provided'?)"));
    diag_list_free(&d);
}
END_TEST

#define DP_HEAD "type: Dataplane\nmesh: default\nname: web-01\nnetworking:\n  address: 127.0.0.1\n  inbound:\n"

START_TEST(every_inbound_needs_a_service_tag)
{
    diag_list d = DIAG_LIST_INIT;
    check_static(DP_HEAD "  - port: 8443\n    tags: {version: v1}\n", &d);
    assert_diag(&d, "missing-service-tag", "networking.inbound[0].tags", 7);
    diag_list_free(&d);

    check_static(DP_HEAD "  - port: 8443\n    tags: {kuma.io/service: web}\n", &d);
    ck_assert_uint_eq(d.count, 0);
    diag_list_free(&d);
}
END_TEST

START_TEST(inbound_port_zero_is_invalid)
{
    diag_list d = DIAG_LIST_INIT;
    check_static(DP_HEAD "  - port: 0\n    tags: {kuma.io/service: web}\n", &d);
    assert_diag(&d, "invalid-port", "networking.inbound[0].port", 7);
    diag_list_free(&d);
}
END_TEST

START_TEST(same_resource_twice_in_a_set_refused)
{
    diag_list d = DIAG_LIST_INIT;
    check_static(MESH_CA1 "---\n" MESH_CA1, &d);
    const diag *x = assert_diag(&d, "duplicate-resource", "name", 10);
    ck_assert_ptr_nonnull(strstr(x->message, "first at mesh.yaml:2"));
    diag_list_free(&d);

    /* the same dataplane name in two meshes is two dataplanes */
    check_static(DP_HEAD "  - {port: 1, tags: {kuma.io/service: a}}\n---\n"
                 "type: Dataplane\nmesh: other\nname: web-01\nnetworking:\n  address: 10.0.0.1\n"
                 "  inbound: [{port: 1, tags: {kuma.io/service: a}}]\n", &d);
    ck_assert_uint_eq(count_code(&d, "duplicate-resource"), 0);
    diag_list_free(&d);
}
END_TEST

START_TEST(secret_data_must_be_base64)
{
    diag_list d = DIAG_LIST_INIT;
    check_static("type: Secret\nname: ca-2-cert\nmesh: default\ndata: not*base64!\n", &d);
    const diag *x = assert_diag(&d, "bad-secret-data", "data", 4);
    ck_assert_ptr_null(strstr(x->message, "not*base64"));   /* secrets never echoed */
    diag_list_free(&d);

    check_static("type: Secret\nname: ca-2-cert\nmesh: default\ndata: aGVsbG8=\n", &d);
    ck_assert_uint_eq(d.count, 0);
    diag_list_free(&d);
}
END_TEST

/* ---- conf per backend type ---- */

#define CONF_MESH(type) "type: Mesh\nname: default\nmtls:\n  backends:\n  - name: ca-1\n    type: " type "\n    conf:\n"
/* conf lines start at line 8 */

START_TEST(builtin_conf_unknown_field_suggests_closest)
{
    diag_list d = DIAG_LIST_INIT;
    check_static(CONF_MESH("builtin") "      caCert:\n        expirtion: 10y\n", &d);
    const diag *x = assert_diag(&d, "unknown-field", "mtls.backends[0].conf.caCert.expirtion", 9);
    ck_assert_ptr_nonnull(strstr(x->message, "did you mean 'expiration'?"));
    diag_list_free(&d);
}
END_TEST

/* Issue 9 #23: RSAbits was reported twice by apply, once here (bad-conf) and once by the builtin
 * CA check (ca-conf), and the two expiration rules had drifted (500ms passed here). The values
 * are the CA check's alone now (validate runs it offline); static checks only the shape. */
START_TEST(builtin_conf_values_are_left_to_the_ca_check)
{
    diag_list d = DIAG_LIST_INIT;
    check_static(CONF_MESH("builtin") "      caCert:\n        expiration: ten years\n        RSAbits: 1024\n", &d);
    ck_assert_uint_eq(count_code(&d, "bad-conf"), 0);
    ck_assert_uint_eq(d.count, 0);
    diag_list_free(&d);

    check_static(CONF_MESH("builtin") "      caCert: [10y]\n", &d);
    assert_diag(&d, "bad-conf", "mtls.backends[0].conf.caCert", 8);
    diag_list_free(&d);

    check_static(CONF_MESH("builtin") "      caCert:\n        expiration: 5y\n        RSAbits: 4096\n", &d);
    ck_assert_uint_eq(d.count, 0);
    diag_list_free(&d);
}
END_TEST

START_TEST(provided_conf_requires_cert_and_key_datasources)
{
    diag_list d = DIAG_LIST_INIT;
    check_static(CONF_MESH("provided") "      cert: {secret: c, file: /x}\n", &d);
    assert_diag(&d, "missing-field", "mtls.backends[0].conf.key", 0);
    assert_diag(&d, "bad-datasource", "mtls.backends[0].conf.cert", 8);
    diag_list_free(&d);

    check_static(CONF_MESH("provided") "      cert: {inline: '%%%'}\n      key: {inlineString: PEM}\n", &d);
    assert_diag(&d, "bad-datasource", "mtls.backends[0].conf.cert.inline", 8);
    diag_list_free(&d);

    check_static(CONF_MESH("provided") "      cert: {file: /etc/ca.pem}\n      key: {secrt: k}\n", &d);
    const diag *x = assert_diag(&d, "unknown-field", "mtls.backends[0].conf.key.secrt", 9);
    ck_assert_ptr_nonnull(strstr(x->message, "did you mean 'secret'?"));
    diag_list_free(&d);

    check_static("type: Mesh\nname: default\nmtls:\n  backends:\n  - name: ca-1\n    type: provided\n", &d);
    assert_diag(&d, "missing-field", "mtls.backends[0].conf", 5);
    diag_list_free(&d);
}
END_TEST

START_TEST(vault_conf_requires_address_pki_role_and_one_auth)
{
    diag_list d = DIAG_LIST_INIT;
    check_static(CONF_MESH("vault") "      fromCp:\n        address: vault:8200\n"
                 "        auth: {token: {secret: t}, tls: {clientCert: {file: c}, clientKey: {file: k}}}\n", &d);
    assert_diag(&d, "bad-conf", "mtls.backends[0].conf.fromCp.address", 9);
    assert_diag(&d, "missing-field", "mtls.backends[0].conf.fromCp.pki", 0);
    ck_assert_ptr_nonnull(find(&d, "missing-field"));
    ck_assert_uint_eq(count_code(&d, "missing-field"), 2);   /* pki and role */
    ck_assert_uint_eq(count_code(&d, "bad-conf"), 2);        /* address, two auth methods */
    diag_list_free(&d);

    check_static(CONF_MESH("vault") "      fromCp:\n        address: https://vault:8200\n"
                 "        namespace: ns\n        pki: pki\n        role: mesh\n        commonName: default\n"
                 "        tls: {caCert: {file: /ca.pem}, skipVerify: false, serverName: vault}\n"
                 "        auth: {token: {secret: vault-token}}\n", &d);
    ck_assert_uint_eq(d.count, 0);
    diag_list_free(&d);

    check_static(CONF_MESH("vault") "      fromCp:\n        adress: https://v\n        pki: p\n        role: r\n"
                 "        auth: {token: {secret: t}}\n", &d);
    const diag *x = assert_diag(&d, "unknown-field", "mtls.backends[0].conf.fromCp.adress", 9);
    ck_assert_ptr_nonnull(strstr(x->message, "did you mean 'address'?"));
    diag_list_free(&d);
}
END_TEST

START_TEST(cfssl_conf_needs_an_http_url)
{
    diag_list d = DIAG_LIST_INIT;
    check_static(CONF_MESH("cfssl") "      profile: leaf\n", &d);
    assert_diag(&d, "missing-field", "mtls.backends[0].conf.url", 0);
    diag_list_free(&d);

    check_static(CONF_MESH("cfssl") "      url: http://127.0.0.1:8888\n      profile: leaf\n"
                 "      authKey: {secret: cfssl-key}\n", &d);
    ck_assert_uint_eq(d.count, 0);
    diag_list_free(&d);
}
END_TEST

/* ---- transitions: R1, R2 ---- */

START_TEST(create_is_allowed_when_valid)
{
    trans t;
    transition(NULL, MESH_ADDED, NULL, false, false, NULL, 0, &t);
    assert_no_errors(&t.d);
    ck_assert_uint_eq(t.d.count, 0);
    ck_assert_uint_eq(t.r.steps, STEP_CREATE);
    ck_assert(!t.r.refused);
    diag_list_free(&t.d);
}
END_TEST

START_TEST(enabling_mtls_on_a_mesh_without_it_is_allowed)
{
    trans t;
    transition("type: Mesh\nname: default\n", MESH_ADDED, NULL, false, false, NULL, 0, &t);
    assert_no_errors(&t.d);
    ck_assert(t.r.steps & STEP_ENABLE);
    diag_list_free(&t.d);
}
END_TEST

START_TEST(adding_a_backend_is_always_allowed)
{
    trans t;
    status_set s = STATUS_SET_INIT;
    add_fleet(&s, 3, "ca-1", "ca-1", NULL);
    transition(MESH_CA1, MESH_ADDED, &s, true, false, NULL, 0, &t);
    ck_assert_uint_eq(t.d.count, 0);
    ck_assert_uint_eq(t.r.steps, STEP_ADD);
    diag_list_free(&t.d);
    /* no status needed for an add */
    transition(MESH_CA1, MESH_ADDED, NULL, false, false, NULL, 0, &t);
    ck_assert_uint_eq(t.d.count, 0);
    diag_list_free(&t.d);
    status_set_free(&s);
}
END_TEST

/* ---- R3 ---- */

START_TEST(switch_refused_until_every_dataplane_trusts_new_ca)
{
    status_set s = STATUS_SET_INIT;
    add_status(&s, "web-01", "ca-1", "ca-1", NULL);
    add_status(&s, "web-02", "ca-1", "ca-1", NULL);
    add_status(&s, "db-01", "ca-1", "ca-1", NULL);
    for (int i = 0; i < 7; i++) {
        char name[16];
        snprintf(name, sizeof name, "api-%02d", i);
        add_status(&s, name, "ca-1", "ca-1", "ca-2", NULL);
    }
    trans t;
    transition(MESH_ADDED, MESH_SWITCHED, &s, true, false, NULL, 0, &t);
    const diag *x = assert_diag(&t.d, "switch-not-propagated", "mtls.enabledBackend", 4);
    ck_assert_str_eq(x->message,
                     "cannot switch to 'ca-2' yet: 3 of 10 dataplanes do not trust it (db-01, web-01, "
                     "web-02); wait until 'meshca inspect dataplanes' shows ca-2 in SUPPORTED for all");
    ck_assert_uint_eq(t.d.count, 1);
    ck_assert(t.r.refused);
    ck_assert(t.r.waiting_only);
    ck_assert_uint_eq(t.r.steps, STEP_SWITCH);
    diag_list_free(&t.d);
    status_set_free(&s);
}
END_TEST

START_TEST(switch_allowed_once_every_dataplane_trusts_new_ca)
{
    status_set s = STATUS_SET_INIT;
    add_fleet(&s, 10, "ca-1", "ca-1", "ca-2");
    trans t;
    transition(MESH_ADDED, MESH_SWITCHED, &s, true, false, NULL, 0, &t);
    ck_assert_uint_eq(t.d.count, 0);
    ck_assert(!t.r.refused);
    diag_list_free(&t.d);
    status_set_free(&s);
}
END_TEST

START_TEST(switch_message_names_at_most_ten_dataplanes)
{
    status_set s = STATUS_SET_INIT;
    add_fleet(&s, 13, "ca-1", "ca-1", NULL);
    trans t;
    transition(MESH_ADDED, MESH_SWITCHED, &s, true, false, NULL, 0, &t);
    const diag *x = assert_diag(&t.d, "switch-not-propagated", "mtls.enabledBackend", 4);
    ck_assert_ptr_nonnull(strstr(x->message, "13 of 13 dataplanes"));
    ck_assert_ptr_nonnull(strstr(x->message, "dp-09 and 3 more)"));
    ck_assert_ptr_null(strstr(x->message, "dp-10"));
    diag_list_free(&t.d);
    status_set_free(&s);
}
END_TEST

START_TEST(dataplane_that_never_acknowledged_blocks_a_switch)
{
    /* web-02 exists but has no status at all; web-03's issued generation was never loaded */
    manifest_set *dps = load(DP_HEAD "  - {port: 1, tags: {kuma.io/service: web}}\n---\n"
                             "type: Dataplane\nmesh: default\nname: web-02\nnetworking:\n"
                             "  address: 10.0.0.2\n  inbound: [{port: 1, tags: {kuma.io/service: web}}]\n");
    const dataplane *list[2] = {&manifest_set_get(dps, 0)->u.dataplane,
                                &manifest_set_get(dps, 1)->u.dataplane};
    status_set s = STATUS_SET_INIT;
    add_status(&s, "web-01", "ca-1", "ca-1", "ca-2", NULL);
    add_status(&s, "web-03", "ca-1", "ca-1", "ca-2", NULL);
    s.items[1].generation = 2;
    s.items[1].acknowledged_generation = 0;
    trans t;
    transition(MESH_ADDED, MESH_SWITCHED, &s, true, false, list, 2, &t);
    const diag *x = assert_diag(&t.d, "switch-not-propagated", "mtls.enabledBackend", 4);
    ck_assert_ptr_nonnull(strstr(x->message, "2 of 3 dataplanes do not trust it (web-02, web-03)"));
    diag_list_free(&t.d);
    status_set_free(&s);
    manifest_set_free(dps);
}
END_TEST

/* A snapshot listing web-01 twice (two snapshots merged): the verdict was whichever entry the
 * sort put first, so one order let the switch through. Every entry must trust the new CA. */
START_TEST(status_listing_a_dataplane_twice_blocks_a_switch_unless_every_entry_trusts)
{
    for (int order = 0; order < 2; order++) {
        status_set s = STATUS_SET_INIT;
        add_status(&s, "db-01", "ca-1", "ca-1", "ca-2", NULL);
        add_status(&s, "web-01", "ca-1", "ca-1", order == 0 ? "ca-2" : NULL, NULL);
        add_status(&s, "web-01", "ca-1", "ca-1", order == 0 ? NULL : "ca-2", NULL);
        trans t;
        transition(MESH_ADDED, MESH_SWITCHED, &s, true, false, NULL, 0, &t);
        const diag *x = assert_diag(&t.d, "switch-not-propagated", "mtls.enabledBackend", 4);
        ck_assert_msg(strstr(x->message, "1 of 2 dataplanes do not trust it (web-01)") != NULL,
                      "order %d: %s", order, x->message);
        ck_assert(t.r.refused);
        diag_list_free(&t.d);
        status_set_free(&s);
    }
}
END_TEST

/* The same for a removal: any entry still holding a certificate of the backend blocks it; and
 * any entry trusting a backend blocks changing it in place. */
START_TEST(status_listing_a_dataplane_twice_blocks_a_removal_if_any_entry_holds)
{
    for (int order = 0; order < 2; order++) {
        status_set s = STATUS_SET_INIT;
        add_status(&s, "web-01", order == 0 ? "ca-2" : "ca-1", "ca-1", "ca-2", NULL);
        add_status(&s, "web-01", order == 0 ? "ca-1" : "ca-2", "ca-1", "ca-2", NULL);
        trans t;
        transition(MESH_SWITCHED, MESH_REMOVED, &s, true, false, NULL, 0, &t);
        const diag *x = assert_diag(&t.d, "remove-still-in-use", "mtls.backends", 6);
        ck_assert_msg(strstr(x->message, "1 of 1 dataplanes still use a certificate it issued "
                                         "(web-01)") != NULL, "order %d: %s", order, x->message);
        diag_list_free(&t.d);
        status_set_free(&s);

        const char *next = MESH_CA1 "  - name: ca-2\n    type: builtin\n";   /* was provided */
        s = (status_set)STATUS_SET_INIT;
        add_status(&s, "web-01", "ca-1", "ca-1", order == 0 ? "ca-2" : NULL, NULL);
        add_status(&s, "web-01", "ca-1", "ca-1", order == 0 ? NULL : "ca-2", NULL);
        transition(MESH_ADDED, next, &s, true, false, NULL, 0, &t);
        x = assert_diag(&t.d, "backend-changed-in-place", "mtls.backends[1]", 8);
        ck_assert_ptr_nonnull(strstr(x->message, "web-01"));
        diag_list_free(&t.d);
        status_set_free(&s);
    }
}
END_TEST

START_TEST(dataplanes_of_other_meshes_are_ignored)
{
    status_set s = STATUS_SET_INIT;
    add_fleet(&s, 2, "ca-1", "ca-1", "ca-2");
    add_status(&s, "other-01", "x", "x", NULL);
    free(s.items[2].mesh);
    s.items[2].mesh = strdup("other");
    trans t;
    transition(MESH_ADDED, MESH_SWITCHED, &s, true, false, NULL, 0, &t);
    ck_assert_uint_eq(t.d.count, 0);
    diag_list_free(&t.d);
    status_set_free(&s);
}
END_TEST

START_TEST(add_and_switch_at_once_refused_as_multi_step)
{
    status_set s = STATUS_SET_INIT;
    add_fleet(&s, 2, "ca-1", "ca-1", NULL);
    trans t;
    transition(MESH_CA1, MESH_SWITCHED, &s, true, false, NULL, 0, &t);
    const diag *x = assert_diag(&t.d, "multi-step", "mtls.enabledBackend", 4);
    ck_assert_str_eq(x->message,
                     "several rotation steps at once: add 'ca-2', then switch to 'ca-2'; apply them one at a time");
    assert_diag(&t.d, "switch-not-added", "mtls.enabledBackend", 4);
    ck_assert_uint_eq(count_code(&t.d, "switch-not-propagated"), 0);
    ck_assert(t.r.refused);
    ck_assert(!t.r.waiting_only);
    ck_assert_uint_eq(t.r.steps, STEP_ADD | STEP_SWITCH);
    diag_list_free(&t.d);
    status_set_free(&s);
}
END_TEST

START_TEST(switch_that_drops_the_old_backend_refused)
{
    status_set s = STATUS_SET_INIT;
    add_fleet(&s, 2, "ca-1", "ca-1", "ca-2");
    trans t;
    transition(MESH_ADDED, MESH_REMOVED, &s, true, false, NULL, 0, &t);
    assert_diag(&t.d, "switch-drops-old", "mtls.enabledBackend", 4);
    const diag *x = assert_diag(&t.d, "multi-step", "mtls.enabledBackend", 4);
    ck_assert_str_eq(x->message,
                     "several rotation steps at once: switch to 'ca-2', then remove 'ca-1'; apply them one at a time");
    ck_assert_uint_eq(count_code(&t.d, "remove-enabled"), 0);
    /* force never lets a structural refusal through */
    diag_list_free(&t.d);
    transition(MESH_ADDED, MESH_REMOVED, &s, true, true, NULL, 0, &t);
    ck_assert(t.r.refused);
    ck_assert_ptr_nonnull(find(&t.d, "multi-step"));
    diag_list_free(&t.d);
    status_set_free(&s);
}
END_TEST

START_TEST(switch_to_a_backend_whose_conf_changed_refused)
{
    const char *prev = MESH_CA1 "  - name: ca-2\n    type: builtin\n";
    const char *next = "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-2\n  backends:\n"
                       "  - name: ca-1\n    type: builtin\n"
                       "  - name: ca-2\n    type: builtin\n    conf: {caCert: {RSAbits: 2048}}\n";
    status_set s = STATUS_SET_INIT;
    add_fleet(&s, 2, "ca-1", "ca-1", "ca-2");
    trans t;
    transition(prev, next, &s, true, false, NULL, 0, &t);
    assert_diag(&t.d, "switch-not-added", "mtls.enabledBackend", 4);
    assert_diag(&t.d, "backend-changed-in-place", "mtls.backends[1]", 8);
    assert_diag(&t.d, "multi-step", "mtls.enabledBackend", 4);
    diag_list_free(&t.d);
    status_set_free(&s);
}
END_TEST

/* ---- R4 ---- */

START_TEST(remove_refused_while_a_dataplane_holds_its_certificate)
{
    status_set s = STATUS_SET_INIT;
    add_status(&s, "web-01", "ca-2", "ca-1", "ca-2", NULL);
    add_status(&s, "db-01", "ca-1", "ca-1", "ca-2", NULL);
    trans t;
    transition(MESH_SWITCHED, MESH_REMOVED, &s, true, false, NULL, 0, &t);
    const diag *x = assert_diag(&t.d, "remove-still-in-use", "mtls.backends", 6);
    ck_assert_str_eq(x->message,
                     "cannot remove 'ca-1' yet: 1 of 2 dataplanes still use a certificate it issued (db-01); "
                     "wait until 'meshca inspect dataplanes' shows no CERT BACKEND ca-1");
    ck_assert(t.r.waiting_only);
    ck_assert_uint_eq(t.r.steps, STEP_REMOVE);
    diag_list_free(&t.d);
    status_set_free(&s);
}
END_TEST

START_TEST(dataplane_without_status_does_not_block_removal)
{
    manifest_set *dps = load(DP_HEAD "  - {port: 1, tags: {kuma.io/service: web}}\n");
    const dataplane *list[1] = {&manifest_set_get(dps, 0)->u.dataplane};
    status_set s = STATUS_SET_INIT;
    add_status(&s, "db-01", "ca-2", "ca-2", NULL);
    trans t;
    transition(MESH_SWITCHED, MESH_REMOVED, &s, true, false, list, 1, &t);
    ck_assert_uint_eq(t.d.count, 0);
    diag_list_free(&t.d);
    status_set_free(&s);
    manifest_set_free(dps);
}
END_TEST

START_TEST(removing_the_enabled_backend_refused)
{
    const char *next = "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
                       "  - name: ca-2\n    type: builtin\n";
    const char *prev = MESH_CA1 "  - name: ca-2\n    type: builtin\n";
    trans t;
    status_set s = STATUS_SET_INIT;
    transition(prev, next, &s, true, true, NULL, 0, &t);
    assert_diag(&t.d, "remove-enabled", "mtls.backends", 6);
    assert_diag(&t.d, "enabled-backend-not-found", "mtls.enabledBackend", 4);
    ck_assert(t.r.refused);
    ck_assert(!t.r.waiting_only);
    diag_list_free(&t.d);
}
END_TEST

START_TEST(force_lets_removal_of_an_in_use_backend_through)
{
    status_set s = STATUS_SET_INIT;
    add_status(&s, "db-01", "ca-1", "ca-1", "ca-2", NULL);
    trans t;
    transition(MESH_SWITCHED, MESH_REMOVED, &s, true, true, NULL, 0, &t);
    assert_no_errors(&t.d);
    assert_diag(&t.d, "forced", "mtls.backends", 6);
    ck_assert(t.r.forced);
    ck_assert(!t.r.refused);
    diag_list_free(&t.d);
    status_set_free(&s);
}
END_TEST

/* ---- R5 ---- */

START_TEST(enabled_backend_changed_in_place_refused)
{
    const char *next = "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
                       "  - name: ca-1\n    type: builtin\n    conf: {caCert: {expiration: 5y}}\n";
    trans t;
    transition(MESH_CA1, next, NULL, false, true, NULL, 0, &t);
    assert_diag(&t.d, "backend-changed-in-place", "mtls.backends[0]", 6);
    ck_assert_uint_eq(t.r.steps, STEP_CHANGE);
    ck_assert(!t.r.waiting_only);
    diag_list_free(&t.d);
}
END_TEST

START_TEST(trusted_backend_changed_in_place_refused)
{
    const char *next = MESH_CA1 "  - name: ca-2\n    type: builtin\n";   /* was provided */
    status_set s = STATUS_SET_INIT;
    add_status(&s, "web-01", "ca-1", "ca-1", "ca-2", NULL);
    trans t;
    transition(MESH_ADDED, next, &s, true, false, NULL, 0, &t);
    const diag *x = assert_diag(&t.d, "backend-changed-in-place", "mtls.backends[1]", 8);
    ck_assert_ptr_nonnull(strstr(x->message, "web-01"));
    diag_list_free(&t.d);
    status_set_free(&s);
}
END_TEST

START_TEST(unused_backend_may_change_in_place)
{
    const char *next = MESH_CA1 "  - name: ca-2\n    type: builtin\n";
    status_set s = STATUS_SET_INIT;
    add_status(&s, "web-01", "ca-1", "ca-1", NULL);
    trans t;
    transition(MESH_ADDED, next, &s, true, false, NULL, 0, &t);
    ck_assert_uint_eq(t.d.count, 0);
    ck_assert_uint_eq(t.r.steps, STEP_CHANGE);
    diag_list_free(&t.d);
    status_set_free(&s);
}
END_TEST

START_TEST(mode_dpcert_and_skip_validation_are_not_ca_changes)
{
    const char *next = "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  skipValidation: true\n"
                       "  backends:\n  - name: ca-1\n    type: builtin\n    mode: PERMISSIVE\n"
                       "    dpCert: {rotation: {expiration: 1h}, keyType: rsa}\n";
    status_set s = STATUS_SET_INIT;
    add_status(&s, "web-01", "ca-1", "ca-1", NULL);
    trans t;
    transition(MESH_CA1, next, &s, true, false, NULL, 0, &t);
    ck_assert_uint_eq(t.d.count, 0);
    ck_assert_uint_eq(t.r.steps, 0);
    diag_list_free(&t.d);
    status_set_free(&s);
}
END_TEST

/* ---- R6 ---- */

START_TEST(disabling_mtls_refused_without_force)
{
    const char *next = "type: Mesh\nname: default\nmtls:\n  enabledBackend: ''\n  backends:\n"
                       "  - name: ca-1\n    type: builtin\n";
    trans t;
    transition(MESH_CA1, next, NULL, false, false, NULL, 0, &t);
    assert_diag(&t.d, "disable-mtls", "mtls.enabledBackend", 4);
    ck_assert_uint_eq(t.r.steps, STEP_DISABLE);
    ck_assert(!t.r.waiting_only);
    diag_list_free(&t.d);

    transition(MESH_CA1, next, NULL, false, true, NULL, 0, &t);
    assert_no_errors(&t.d);
    assert_diag(&t.d, "forced", "mtls.enabledBackend", 4);
    ck_assert(t.r.forced);
    diag_list_free(&t.d);
}
END_TEST

/* ---- issue 9: apply's items ---- */

/* Before: remove-enabled with no file, line or column, and --force could not pass it. */
START_TEST(removing_the_mtls_block_is_one_disable_step_with_a_position)
{
    const char *next = "type: Mesh\nname: default\n";
    trans t;
    transition(MESH_CA1, next, NULL, false, false, NULL, 0, &t);
    ck_assert_uint_eq(count_code(&t.d, "remove-enabled"), 0);
    const diag *x = assert_diag(&t.d, "disable-mtls", "mtls.enabledBackend", 2);
    ck_assert_ptr_nonnull(strstr(x->message, "removing 'ca-1'"));
    for (size_t i = 0; i < t.d.count; i++)
        ck_assert_msg(t.d.items[i].file && t.d.items[i].line > 0 && t.d.items[i].column > 0,
                      "%s has no position", t.d.items[i].code);
    diag_list_free(&t.d);

    transition(MESH_CA1, next, NULL, false, true, NULL, 0, &t);
    assert_no_errors(&t.d);
    assert_diag(&t.d, "forced", "mtls.enabledBackend", 2);
    ck_assert(t.r.forced);
    ck_assert_uint_eq(t.r.forced_steps, STEP_DISABLE);
    diag_list_free(&t.d);
}
END_TEST

/* A backend whose Secret now holds another CA is an in-place change (R5), conf unchanged. */
START_TEST(backend_whose_secret_holds_another_ca_is_changed_in_place)
{
    manifest_set *p = load(MESH_ADDED);
    status_set s = STATUS_SET_INIT;
    add_status(&s, "web-01", "ca-1", "ca-1", "ca-2", NULL);
    const char *changed[] = {"ca-2"};
    transition_options opts = TRANSITION_OPTIONS_INIT;
    opts.have_status = true;
    opts.ca_changed = changed;
    opts.nca_changed = 1;
    diag_list d = DIAG_LIST_INIT;
    transition_result r;
    validate_transition(first_mesh(p), first_mesh(p), s.items, s.count, NULL, 0, &opts, &d, &r);
    const diag *x = assert_diag(&d, "backend-changed-in-place", "mtls.backends[1]", 8);
    ck_assert_ptr_nonnull(strstr(x->message, "a Secret it reads holds another CA"));
    ck_assert_ptr_nonnull(strstr(x->message, "web-01"));
    ck_assert_uint_eq(r.steps, STEP_CHANGE);
    diag_list_free(&d);

    /* Nobody trusts it and it is not enabled: allowed, as a conf change would be. */
    status_set_free(&s);
    add_status(&s, "web-01", "ca-1", "ca-1", NULL);
    validate_transition(first_mesh(p), first_mesh(p), s.items, s.count, NULL, 0, &opts, &d, &r);
    ck_assert_uint_eq(d.count, 0);
    diag_list_free(&d);
    status_set_free(&s);
    manifest_set_free(p);
}
END_TEST

/* What the force log records: the forced step and the dataplanes it went past. */
START_TEST(forced_switch_reports_the_step_and_the_bypassed_dataplanes)
{
    status_set s = STATUS_SET_INIT;
    add_status(&s, "web-01", "ca-1", "ca-1", "ca-2", NULL);
    add_status(&s, "db-01", "ca-1", "ca-1", NULL);
    trans t;
    transition(MESH_ADDED, MESH_SWITCHED, &s, true, true, NULL, 0, &t);
    ck_assert_uint_eq(t.r.forced_steps, STEP_SWITCH);
    ck_assert_uint_eq(t.r.nbypassed_total, 1);
    ck_assert_uint_eq(t.r.nbypassed, 1);
    ck_assert_str_eq(t.r.bypassed[0], "db-01");
    diag_list_free(&t.d);
    status_set_free(&s);
}
END_TEST

/* Printing never shows inline datasource values (vault token, provided key); stores keep them. */
START_TEST(encoded_for_printing_every_inline_datasource_value_is_redacted)
{
    const char *yaml =
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: v1\n  backends:\n"
        "  - name: v1\n    type: vault\n    conf:\n      fromCp:\n"
        "        address: https://vault:8200\n        pki: pki\n        role: r\n"
        "        tls: {caCert: {inline: Q0FDRVJUU0VDUkVU}}\n"
        "        auth: {token: {inlineString: s.TOKENSECRET}}\n"
        "  - name: p1\n    type: provided\n    conf:\n"
        "      cert: {secret: p1-cert}\n      key: {inlineString: KEYSECRET}\n"
        "---\ntype: Secret\nname: s1\nmesh: default\ndata: U0VDUkVUREFUQQ==\n";
    manifest_set *set = load(yaml);
    for (size_t i = 0; i < manifest_set_count(set); i++) {
        json_t *printed = encode_resource(manifest_set_get(set, i), 0);
        json_t *stored = encode_resource(manifest_set_get(set, i), 1);
        char *p = json_dumps(printed, JSON_COMPACT), *st = json_dumps(stored, JSON_COMPACT);
        ck_assert_ptr_null(strstr(p, "TOKENSECRET"));
        ck_assert_ptr_null(strstr(p, "KEYSECRET"));
        ck_assert_ptr_null(strstr(p, "Q0FDRVJUU0VDUkVU"));
        ck_assert_ptr_null(strstr(p, "U0VDUkVUREFUQQ"));
        ck_assert_ptr_nonnull(strstr(p, ENCODE_REDACTED));
        ck_assert_ptr_nonnull(strstr(p, i == 0 ? "p1-cert" : "s1"));   /* names stay */
        ck_assert_ptr_nonnull(strstr(st, i == 0 ? "TOKENSECRET" : "U0VDUkVUREFUQQ"));
        free(p);
        free(st);
        json_decref(printed);
        json_decref(stored);
    }
    manifest_set_free(set);
}
END_TEST

/* ---- force and missing status ---- */

START_TEST(force_lets_an_unpropagated_switch_through)
{
    status_set s = STATUS_SET_INIT;
    add_fleet(&s, 4, "ca-1", "ca-1", NULL);
    trans t;
    transition(MESH_ADDED, MESH_SWITCHED, &s, true, true, NULL, 0, &t);
    assert_no_errors(&t.d);
    const diag *x = assert_diag(&t.d, "forced", "mtls.enabledBackend", 4);
    ck_assert_ptr_nonnull(strstr(x->message, "4 of 4"));
    ck_assert(t.r.forced);
    ck_assert(!t.r.refused);
    diag_list_free(&t.d);
    status_set_free(&s);
}
END_TEST

START_TEST(force_never_lets_a_static_error_through)
{
    trans t;
    transition(MESH_ADDED, MESH_SWITCHED "    mode: STRICTLY\n", NULL, true, true, NULL, 0, &t);
    assert_diag(&t.d, "unknown-mode", "mtls.backends[1].mode", 15);
    diag_list_free(&t.d);
}
END_TEST

START_TEST(without_status_gating_becomes_one_warning)
{
    trans t;
    transition(MESH_ADDED, MESH_SWITCHED, NULL, false, false, NULL, 0, &t);
    assert_no_errors(&t.d);
    assert_diag(&t.d, "status-unknown", "mtls.enabledBackend", 4);
    ck_assert_uint_eq(t.d.count, 1);
    ck_assert(!t.r.refused);
    diag_list_free(&t.d);

    transition(MESH_SWITCHED, MESH_REMOVED, NULL, false, false, NULL, 0, &t);
    assert_no_errors(&t.d);
    assert_diag(&t.d, "status-unknown", "mtls.backends", 6);
    ck_assert_uint_eq(t.d.count, 1);
    diag_list_free(&t.d);

    /* everything else is still checked */
    transition(MESH_CA1, MESH_SWITCHED, NULL, false, false, NULL, 0, &t);
    ck_assert_ptr_nonnull(find(&t.d, "multi-step"));
    diag_list_free(&t.d);
}
END_TEST

START_TEST(add_switch_remove_at_once_lists_steps_in_order)
{
    const char *prev = MESH_CA1 "  - name: ca-3\n    type: builtin\n";
    trans t;
    transition(prev, MESH_SWITCHED, NULL, false, false, NULL, 0, &t);
    const diag *x = assert_diag(&t.d, "multi-step", "mtls.enabledBackend", 4);
    ck_assert_str_eq(x->message, "several rotation steps at once: add 'ca-2', then switch to 'ca-2', "
                                 "then remove 'ca-3'; apply them one at a time");
    diag_list_free(&t.d);
}
END_TEST

/* ---- the seed's three steps, each valid once every dataplane caught up ---- */

static void walk_rotation(const char *start, const char *added, const char *switched, const char *removed)
{
    trans t;
    status_set s = STATUS_SET_INIT;

    add_fleet(&s, 5, "ca-1", "ca-1", NULL);          /* caught up with ca-1 only */
    transition(start, added, &s, true, false, NULL, 0, &t);
    ck_assert_uint_eq(t.d.count, 0);
    ck_assert_uint_eq(t.r.steps, STEP_ADD);
    diag_list_free(&t.d);
    /* and a premature switch is refused */
    transition(added, switched, &s, true, false, NULL, 0, &t);
    ck_assert_ptr_nonnull(find(&t.d, "switch-not-propagated"));
    diag_list_free(&t.d);
    status_set_free(&s);

    add_fleet(&s, 5, "ca-1", "ca-1", "ca-2");        /* every bundle has ca-2 */
    transition(added, switched, &s, true, false, NULL, 0, &t);
    ck_assert_uint_eq(t.d.count, 0);
    ck_assert_uint_eq(t.r.steps, STEP_SWITCH);
    diag_list_free(&t.d);
    /* a premature removal is refused */
    transition(switched, removed, &s, true, false, NULL, 0, &t);
    ck_assert_ptr_nonnull(find(&t.d, "remove-still-in-use"));
    diag_list_free(&t.d);
    status_set_free(&s);

    add_fleet(&s, 5, "ca-2", "ca-1", "ca-2");        /* every certificate from ca-2 */
    transition(switched, removed, &s, true, false, NULL, 0, &t);
    ck_assert_uint_eq(t.d.count, 0);
    ck_assert_uint_eq(t.r.steps, STEP_REMOVE);
    diag_list_free(&t.d);
    status_set_free(&s);
}

START_TEST(seed_rotation_universal_each_step_valid_after_catch_up)
{
    walk_rotation(MESH_CA1, MESH_ADDED, MESH_SWITCHED, MESH_REMOVED);
}
END_TEST

START_TEST(seed_rotation_kubernetes_each_step_valid_after_catch_up)
{
    walk_rotation(K8S_START, K8S_ADDED, K8S_SWITCHED, K8S_REMOVED);
}
END_TEST

/* The same rotation from the files in test/data/validators, as `validate --from --status` reads them. */
static manifest_set *load_fixture(const char *file)
{
    char path[512];
    snprintf(path, sizeof path, "%s/validators/%s", TEST_DATA_DIR, file);
    manifest_set *set = manifest_set_new();
    diag_list d = DIAG_LIST_INIT;
    ck_assert_int_eq(manifest_load_path(set, path, &d), MANIFEST_OK);
    validate_set(set, &d);
    if (d.count)
        dump(&d);
    ck_assert_uint_eq(d.count, 0);
    diag_list_free(&d);
    return set;
}

static void fixture_step(const char *from, const char *to, const char *status_file, const char *refusal)
{
    char path[512];
    snprintf(path, sizeof path, "%s/validators/%s", TEST_DATA_DIR, status_file);
    status_set s = STATUS_SET_INIT;
    diag_list d = DIAG_LIST_INIT;
    ck_assert_int_eq(status_load_file(path, &s, &d), 0);
    manifest_set *p = load_fixture(from), *n = load_fixture(to);
    transition_options opts = {.have_status = true};
    transition_result r;
    validate_transition(first_mesh(p), first_mesh(n), s.items, s.count, NULL, 0, &opts, &d, &r);
    if (refusal) {
        ck_assert_ptr_nonnull(find(&d, refusal));
        ck_assert(r.waiting_only);
    } else {
        assert_no_errors(&d);
        ck_assert_uint_eq(d.count, 0);
    }
    diag_list_free(&d);
    status_set_free(&s);
    manifest_set_free(p);
    manifest_set_free(n);
}

START_TEST(rotation_fixtures_pass_step_by_step_with_status_files)
{
    fixture_step("0-start.yaml", "1-add.yaml", "status-trusts-ca-1.json", NULL);
    fixture_step("1-add.yaml", "2-switch.yaml", "status-trusts-ca-1.json", "switch-not-propagated");
    fixture_step("1-add.yaml", "2-switch.yaml", "status-trusts-both.json", NULL);
    fixture_step("2-switch.yaml", "3-remove.yaml", "status-trusts-both.json", "remove-still-in-use");
    fixture_step("2-switch.yaml", "3-remove.yaml", "status-issued-by-ca-2.json", NULL);
}
END_TEST

/* ---- status JSON ---- */

#define STATUS_ITEM \
    "{\"mesh\":\"default\",\"name\":\"web-01\",\"tags\":{\"kuma.io/service\":\"web\"}," \
    "\"mtls\":{\"issuedBackend\":\"ca-1\",\"supportedBackends\":[\"ca-1\",\"ca-2\"]," \
    "\"certificateSerial\":\"ab\",\"certificateExpirationTime\":\"2026-11-23T10:00:00Z\"," \
    "\"lastCertificateRegeneration\":\"2026-11-22T10:00:00Z\",\"certificateRegenerations\":3," \
    "\"generation\":7,\"acknowledgedGeneration\":7,\"lastSeen\":\"2026-11-23T09:00:00Z\"}}"

START_TEST(status_parses_array_form)
{
    status_set s = STATUS_SET_INIT;
    diag_list d = DIAG_LIST_INIT;
    const char *json = "[" STATUS_ITEM ", {\"mesh\":\"default\",\"name\":\"db-01\"}]";
    ck_assert_int_eq(status_parse_json("status.json", json, strlen(json), &s, &d), 0);
    ck_assert_uint_eq(d.count, 0);
    ck_assert_uint_eq(s.count, 2);
    ck_assert_str_eq(s.items[0].issued_backend, "ca-1");
    ck_assert(status_supports(&s.items[0], "ca-2"));
    ck_assert(!status_supports(&s.items[1], "ca-1"));
    ck_assert_int_eq(s.items[0].acknowledged_generation, 7);
    ck_assert_str_eq(s.items[0].tags[0].value, "web");
    ck_assert_ptr_null(s.items[1].issued_backend);
    status_set_free(&s);
}
END_TEST

START_TEST(status_parses_items_form_and_round_trips)
{
    status_set s = STATUS_SET_INIT, again = STATUS_SET_INIT;
    diag_list d = DIAG_LIST_INIT;
    const char *json = "{\"items\":[" STATUS_ITEM "]}";
    ck_assert_int_eq(status_parse_json("status.json", json, strlen(json), &s, &d), 0);
    ck_assert_uint_eq(s.count, 1);
    char *text = status_to_json(&s.items[0]);
    char wrapped[2048];
    snprintf(wrapped, sizeof wrapped, "[%s]", text);
    ck_assert_int_eq(status_parse_json("again.json", wrapped, strlen(wrapped), &again, &d), 0);
    ck_assert_str_eq(again.items[0].certificate_expiration_time, "2026-11-23T10:00:00Z");
    ck_assert_int_eq(again.items[0].certificate_regenerations, 3);
    ck_assert_uint_eq(again.items[0].nsupported, 2);
    dataplane_status copy;
    dataplane_status_copy(&copy, &again.items[0]);
    ck_assert_str_eq(copy.supported_backends[1], "ca-2");
    dataplane_status_clear(&copy);
    free(text);
    status_set_free(&s);
    status_set_free(&again);
}
END_TEST

START_TEST(bad_status_names_item_index_and_field)
{
    status_set s = STATUS_SET_INIT;
    diag_list d = DIAG_LIST_INIT;
    const char *json = "{\"items\":[" STATUS_ITEM ", " STATUS_ITEM ", " STATUS_ITEM ","
                       "{\"mesh\":\"default\",\"name\":\"x\",\"mtls\":{\"supportedBackends\":\"ca-1\"}}]}";
    ck_assert_int_eq(status_parse_json("status.json", json, strlen(json), &s, &d), -1);
    assert_diag(&d, "bad-status", "items[3].mtls.supportedBackends", 0);
    ck_assert_uint_eq(s.count, 0);
    diag_list_free(&d);

    const char *missing = "[{\"name\":\"x\"}]";
    ck_assert_int_eq(status_parse_json("status.json", missing, strlen(missing), &s, &d), -1);
    assert_diag(&d, "bad-status", "items[0].mesh", 0);
    diag_list_free(&d);

    const char *broken = "[{\"name\":";
    ck_assert_int_eq(status_parse_json("status.json", broken, strlen(broken), &s, &d), -1);
    assert_diag(&d, "bad-status", "", 1);
    diag_list_free(&d);

    const char *scalar = "{\"items\": 3}";
    ck_assert_int_eq(status_parse_json("status.json", scalar, strlen(scalar), &s, &d), -1);
    assert_diag(&d, "bad-status", "items", 0);
    diag_list_free(&d);
}
END_TEST

/* Issue 13: the status reader held jansson's tree of the whole document (~2.5 KiB per
 * dataplane on top of the result): a 100,000-dataplane status peaked at 320 MiB. Items are now
 * parsed one at a time. Measured in a child so its peak is its own; the bound is memory, not
 * time. Not under ASan, whose redzones and quarantine are the allocation sizes it measures. */
#if defined(__SANITIZE_ADDRESS__)
#define STATUS_MEMORY_TEST_SKIPPED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STATUS_MEMORY_TEST_SKIPPED 1
#endif
#endif
#define STATUS_MEMORY_DATAPLANES 100000
#define STATUS_MEMORY_MAX_BYTES_PER_DATAPLANE 1536

START_TEST(status_reader_peak_memory_is_not_a_whole_document_tree)
{
#ifdef STATUS_MEMORY_TEST_SKIPPED
    return;
#else
    pid_t pid;
    int st;

    fflush(NULL);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        long n = STATUS_MEMORY_DATAPLANES;
        size_t cap = (size_t)n * 320 + 64, len = 0;
        char *buf = malloc(cap);
        struct rusage before, after;
        status_set s = STATUS_SET_INIT;
        diag_list d = DIAG_LIST_INIT;
        double per;

        if (!buf)
            _exit(3);
        len += (size_t)snprintf(buf, cap, "{\"items\":[");
        for (long i = 0; i < n; i++)
            len += (size_t)snprintf(buf + len, cap - len,
                                    "%s{\"mesh\":\"default\",\"name\":\"dp-%06ld\","
                                    "\"tags\":{\"kuma.io/service\":\"svc-%03ld\"},"
                                    "\"mtls\":{\"issuedBackend\":\"ca-1\",\"supportedBackends\":"
                                    "[\"ca-1\",\"ca-2\"],\"certificateSerial\":\"%032lx\","
                                    "\"certificateExpirationTime\":\"2030-01-01T00:00:00Z\","
                                    "\"generation\":2,\"acknowledgedGeneration\":2}}",
                                    i ? "," : "", i, i % 100, (unsigned long)i);
        len += (size_t)snprintf(buf + len, cap - len, "]}");
        getrusage(RUSAGE_SELF, &before);
        if (status_parse_json("status.json", buf, len, &s, &d) != 0 || s.count != (size_t)n)
            _exit(4);
        getrusage(RUSAGE_SELF, &after);
        per = (double)(after.ru_maxrss - before.ru_maxrss) * 1024.0 / (double)n;
        fprintf(stderr, "status reader: %.0f bytes of peak growth per dataplane\n", per);
        _exit(per <= STATUS_MEMORY_MAX_BYTES_PER_DATAPLANE ? 0 : 5);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "child exit %d (5: more than %d bytes of peak growth per dataplane)",
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1, STATUS_MEMORY_MAX_BYTES_PER_DATAPLANE);
#endif
}
END_TEST

/* Items are read one at a time, but a syntax error anywhere still makes the whole document
 * "not valid JSON" at jansson's position, and nothing of the items before it is reported. */
START_TEST(status_syntax_error_after_valid_and_bad_items_reports_only_the_syntax_error)
{
    status_set s = STATUS_SET_INIT;
    diag_list d = DIAG_LIST_INIT;
    const char *json = "[" STATUS_ITEM ", {\"mesh\":3,\"name\":\"x\"}, {\"mesh\":\"m\",\"name\":\"y\",}]";
    const diag *g;

    ck_assert_int_eq(status_parse_json("status.json", json, strlen(json), &s, &d), -1);
    ck_assert_uint_eq(d.count, 1);
    g = assert_diag(&d, "bad-status", "", 1);
    ck_assert_uint_eq(g->column, strlen(json) - 1);
    ck_assert_msg(strstr(g->message, "not valid JSON") != NULL, "%s", g->message);
    ck_assert_uint_eq(s.count, 0);
    diag_list_free(&d);

    /* a duplicate key inside one item, and a second "items" at the root */
    const char *dup = "[" STATUS_ITEM ", {\"mesh\":\"m\",\"name\":\"x\",\"name\":\"y\"}]";
    ck_assert_int_eq(status_parse_json("status.json", dup, strlen(dup), &s, &d), -1);
    ck_assert_uint_eq(d.count, 1);
    g = assert_diag(&d, "bad-status", "", 1);
    ck_assert_msg(strstr(g->message, "duplicate object key") != NULL, "%s", g->message);
    diag_list_free(&d);
    const char *two = "{\"items\":[" STATUS_ITEM "],\"items\":[]}";
    ck_assert_int_eq(status_parse_json("status.json", two, strlen(two), &s, &d), -1);
    g = assert_diag(&d, "bad-status", "", 1);
    ck_assert_msg(strstr(g->message, "duplicate object key") != NULL, "%s", g->message);
    diag_list_free(&d);

    /* trailing data after the array */
    const char *trailing = "[" STATUS_ITEM "] x";
    ck_assert_int_eq(status_parse_json("status.json", trailing, strlen(trailing), &s, &d), -1);
    g = assert_diag(&d, "bad-status", "", 1);
    ck_assert_uint_eq(g->column, strlen(trailing));
    diag_list_free(&d);

    /* an item that is not an object is named by its index, as before */
    const char *scalar_item = "[" STATUS_ITEM ", 5]";
    ck_assert_int_eq(status_parse_json("status.json", scalar_item, strlen(scalar_item), &s, &d), -1);
    assert_diag(&d, "bad-status", "items[1]", 0);
    diag_list_free(&d);
}
END_TEST

/* The root object may carry other members (a List's kind, metadata) before or after "items". */
START_TEST(status_items_form_with_other_members_and_whitespace)
{
    status_set s = STATUS_SET_INIT;
    diag_list d = DIAG_LIST_INIT;
    const char *json = "\n {\"kind\":\"List\",\"meta\":{\"x\":[1,{\"y\":null}]},\n\t\"items\" : [ "
                       STATUS_ITEM " ,\r\n " STATUS_ITEM " ] , \"note\":\"}\\\"]\" }\n";

    ck_assert_int_eq(status_parse_json("status.json", json, strlen(json), &s, &d), 0);
    ck_assert_uint_eq(d.count, 0);
    ck_assert_uint_eq(s.count, 2);
    ck_assert_str_eq(s.items[1].name, "web-01");
    ck_assert_int_eq(s.items[1].generation, 7);
    status_set_free(&s);
    const char *empty = " [ ] ";
    ck_assert_int_eq(status_parse_json("status.json", empty, strlen(empty), &s, &d), 0);
    ck_assert_uint_eq(s.count, 0);
    status_set_free(&s);
}
END_TEST

START_TEST(unreadable_status_file_reported)
{
    status_set s = STATUS_SET_INIT;
    diag_list d = DIAG_LIST_INIT;
    ck_assert_int_eq(status_load_file("/nonexistent/status.json", &s, &d), -2);
    assert_diag(&d, "unreadable", "", 0);
    diag_list_free(&d);
}
END_TEST

static Suite *validators_suite(void)
{
    Suite *s = suite_create("validators");
    TCase *st = tcase_create("static");
    tcase_add_test(st, seed_manifests_pass_static_checks);
    tcase_add_test(st, mesh_name_must_be_a_dns_label);
    tcase_add_test(st, backend_name_must_be_a_dns_label);
    tcase_add_test(st, resource_names_up_to_253_pass_and_254_is_invalid_name_with_path);
    tcase_add_test(st, duplicate_backend_reported_at_second_with_first_line);
    tcase_add_test(st, more_than_sixteen_backends_refused);
    tcase_add_test(st, enabled_backend_must_exist_and_suggests_closest);
    tcase_add_test(st, unknown_backend_type_suggests_closest);
    tcase_add_test(st, missing_backend_type_reported);
    tcase_add_test(st, unknown_mode_and_key_type_refused);
    tcase_add_test(st, wrong_case_enum_values_are_errors_with_the_right_spelling_suggested);
    tcase_add_test(st, every_inbound_needs_a_service_tag);
    tcase_add_test(st, inbound_port_zero_is_invalid);
    tcase_add_test(st, same_resource_twice_in_a_set_refused);
    tcase_add_test(st, secret_data_must_be_base64);
    suite_add_tcase(s, st);

    TCase *cf = tcase_create("conf");
    tcase_add_test(cf, builtin_conf_unknown_field_suggests_closest);
    tcase_add_test(cf, builtin_conf_values_are_left_to_the_ca_check);
    tcase_add_test(cf, provided_conf_requires_cert_and_key_datasources);
    tcase_add_test(cf, vault_conf_requires_address_pki_role_and_one_auth);
    tcase_add_test(cf, cfssl_conf_needs_an_http_url);
    suite_add_tcase(s, cf);

    TCase *tr = tcase_create("transition");
    tcase_add_test(tr, create_is_allowed_when_valid);
    tcase_add_test(tr, enabling_mtls_on_a_mesh_without_it_is_allowed);
    tcase_add_test(tr, adding_a_backend_is_always_allowed);
    tcase_add_test(tr, switch_refused_until_every_dataplane_trusts_new_ca);
    tcase_add_test(tr, switch_allowed_once_every_dataplane_trusts_new_ca);
    tcase_add_test(tr, switch_message_names_at_most_ten_dataplanes);
    tcase_add_test(tr, dataplane_that_never_acknowledged_blocks_a_switch);
    tcase_add_test(tr, dataplanes_of_other_meshes_are_ignored);
    tcase_add_test(tr, status_listing_a_dataplane_twice_blocks_a_switch_unless_every_entry_trusts);
    tcase_add_test(tr, status_listing_a_dataplane_twice_blocks_a_removal_if_any_entry_holds);
    tcase_add_test(tr, add_and_switch_at_once_refused_as_multi_step);
    tcase_add_test(tr, switch_that_drops_the_old_backend_refused);
    tcase_add_test(tr, switch_to_a_backend_whose_conf_changed_refused);
    tcase_add_test(tr, remove_refused_while_a_dataplane_holds_its_certificate);
    tcase_add_test(tr, dataplane_without_status_does_not_block_removal);
    tcase_add_test(tr, removing_the_enabled_backend_refused);
    tcase_add_test(tr, force_lets_removal_of_an_in_use_backend_through);
    tcase_add_test(tr, enabled_backend_changed_in_place_refused);
    tcase_add_test(tr, trusted_backend_changed_in_place_refused);
    tcase_add_test(tr, unused_backend_may_change_in_place);
    tcase_add_test(tr, mode_dpcert_and_skip_validation_are_not_ca_changes);
    tcase_add_test(tr, disabling_mtls_refused_without_force);
    tcase_add_test(tr, force_lets_an_unpropagated_switch_through);
    tcase_add_test(tr, force_never_lets_a_static_error_through);
    tcase_add_test(tr, without_status_gating_becomes_one_warning);
    tcase_add_test(tr, add_switch_remove_at_once_lists_steps_in_order);
    tcase_add_test(tr, seed_rotation_universal_each_step_valid_after_catch_up);
    tcase_add_test(tr, seed_rotation_kubernetes_each_step_valid_after_catch_up);
    tcase_add_test(tr, rotation_fixtures_pass_step_by_step_with_status_files);
    suite_add_tcase(s, tr);

    TCase *ap = tcase_create("apply");
    tcase_add_test(ap, removing_the_mtls_block_is_one_disable_step_with_a_position);
    tcase_add_test(ap, backend_whose_secret_holds_another_ca_is_changed_in_place);
    tcase_add_test(ap, forced_switch_reports_the_step_and_the_bypassed_dataplanes);
    tcase_add_test(ap, encoded_for_printing_every_inline_datasource_value_is_redacted);
    suite_add_tcase(s, ap);

    TCase *js = tcase_create("status");
    tcase_add_test(js, status_parses_array_form);
    tcase_add_test(js, status_parses_items_form_and_round_trips);
    tcase_add_test(js, bad_status_names_item_index_and_field);
    tcase_add_test(js, status_reader_peak_memory_is_not_a_whole_document_tree);
    tcase_add_test(js, status_syntax_error_after_valid_and_bad_items_reports_only_the_syntax_error);
    tcase_add_test(js, status_items_form_with_other_members_and_whitespace);
    tcase_add_test(js, unreadable_status_file_reported);
    suite_add_tcase(s, js);
    return s;
}

/* ---- lifetime lint (warnings) ---- */

#define LIFETIME_MESH(ca, leaf) \
    "type: Mesh\n"                           /* 1 */ \
    "name: default\n"                        /* 2 */ \
    "mtls:\n"                                /* 3 */ \
    "  enabledBackend: ca-1\n"               /* 4 */ \
    "  backends:\n"                          /* 5 */ \
    "  - name: ca-1\n"                       /* 6 */ \
    "    type: builtin\n"                    /* 7 */ \
    "    dpCert: {rotation: {expiration: " leaf "}}\n"   /* 8 */ \
    "    conf: {caCert: {expiration: " ca "}}\n"         /* 9 */

START_TEST(builtin_ca_shorter_than_its_leaves_is_warned)
{
    diag_list d = DIAG_LIST_INIT;
    check_static(LIFETIME_MESH("12h", "24h"), &d);
    const diag *x = assert_diag(&d, "ca-shorter-than-leaf",
                                "mtls.backends[0].conf.caCert.expiration", 9);
    ck_assert_int_eq(x->severity, DIAG_WARNING);
    ck_assert_uint_eq(x->column, 33);
    ck_assert_ptr_nonnull(strstr(x->message, "caCert.expiration 12h is shorter than "
                                             "dpCert.rotation.expiration"));
    ck_assert_uint_eq(d.count, 1);
    diag_list_free(&d);
    /* equal or longer, or the defaults (10y vs 24h): nothing */
    check_static(LIFETIME_MESH("24h", "24h"), &d);
    check_static(MESH_CA1, &d);
    ck_assert_uint_eq(d.count, 0);
    /* the default caCert (10y) against a leaf longer than that */
    check_static("type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
                 "  - name: ca-1\n    type: builtin\n    dpCert: {rotation: {expiration: 11y}}\n",
                 &d);
    assert_diag(&d, "ca-shorter-than-leaf", "mtls.backends[0]", 6);
    diag_list_free(&d);
}
END_TEST

START_TEST(known_ca_expiry_is_linted_against_now_and_the_renewal_point)
{
    manifest_set *set = load(LIFETIME_MESH("10y", "48h"));
    const mesh *m = first_mesh(set);
    const int64_t now = 1800000000, day = 86400;
    struct { int64_t not_after; const char *code; } cases[] = {
        {now - 1, "ca-expired"},
        {now, "ca-expired"},
        {now + day, "renewal-after-ca-expiry"},              /* 48h leaf renews at >= 33.6h */
        {now + 33 * 3600, "renewal-after-ca-expiry"},
        {now + 34 * 3600, "ca-expires-soon"},
        {now + 29 * day, "ca-expires-soon"},
        {now + 30 * day, NULL},
        {now + 3650 * day, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        diag_list d = DIAG_LIST_INIT;
        validate_ca_lifetime(m, 0, cases[i].not_after, now, &d);
        if (!cases[i].code) {
            ck_assert_msg(d.count == 0, "case %zu: unexpected %s", i, d.count ? d.items[0].code : "");
        } else {
            ck_assert_msg(d.count == 1, "case %zu: %zu diagnostics", i, d.count);
            ck_assert_str_eq(d.items[0].code, cases[i].code);
            ck_assert_int_eq(d.items[0].severity, DIAG_WARNING);
            ck_assert_str_eq(d.items[0].path, "mtls.backends[0]");
            ck_assert_uint_eq(d.items[0].line, 6);
        }
        diag_list_free(&d);
    }
    diag_list d = DIAG_LIST_INIT;
    validate_ca_lifetime(m, 0, now - day, now, &d);
    ck_assert_str_eq(d.items[0].message,
                     "the CA of backend 'ca-1' expired at 2027-01-14T08:00:00Z: dataplanes cannot "
                     "get certificates from it; add a new backend and rotate to it (see 'meshca "
                     "help apply')");
    diag_list_free(&d);
    validate_ca_lifetime(m, 7, now - day, now, &d);   /* no such backend: nothing */
    ck_assert_uint_eq(d.count, 0);
    manifest_set_free(set);
}
END_TEST

/* ---- out of memory: diagnostics and validators return it, never abort() ---- */

START_TEST(diag_add_out_of_memory_sets_the_flag_instead_of_aborting)
{
    diag_list d = DIAG_LIST_INIT;
    source_mark mark = {"mesh.yaml", 3, 5};
    diag_error(&d, "first", &mark, "name", "stored");
    ck_assert_uint_eq(d.count, 1);
    /* message, code, file, path: each one failing drops the diagnostic and marks the list */
    for (long budget = 0; budget < 4; budget++) {
        alloc_budget = budget;
        diag_error(&d, "lost", &mark, "mtls.backends[0]", "never stored %d", 1);
        alloc_budget = -1;
        ck_assert_msg(d.out_of_memory, "budget %ld: flag not set", budget);
        ck_assert_uint_eq(d.count, 1);
        d.out_of_memory = false;
    }
    /* growing the array fails too: 8 fit in the first block, the 9th needs more */
    for (int i = 1; i < 8; i++)
        diag_error(&d, "more", NULL, NULL, "filler");
    alloc_budget = 4;
    diag_error(&d, "lost", &mark, "p", "no room");
    alloc_budget = -1;
    ck_assert(d.out_of_memory);
    ck_assert_uint_eq(d.count, 8);
    ck_assert_str_eq(d.items[0].code, "first");
    /* sticky: a later success does not clear it */
    diag_error(&d, "after", NULL, NULL, "ok");
    ck_assert(d.out_of_memory);
    ck_assert_uint_eq(d.count, 9);
    diag_list_free(&d);
}
END_TEST

START_TEST(diag_list_move_keeps_out_of_memory)
{
    diag_list to = DIAG_LIST_INIT, from = DIAG_LIST_INIT;
    from.out_of_memory = true;
    diag_list_move(&to, &from);
    ck_assert(to.out_of_memory);
    ck_assert(!from.out_of_memory);

    diag_list to2 = DIAG_LIST_INIT;
    diag_error(&from, "x", NULL, NULL, "moved");
    alloc_budget = 0;   /* growing `to2` fails: the moved diagnostics are dropped, not leaked */
    diag_list_move(&to2, &from);
    alloc_budget = -1;
    ck_assert(to2.out_of_memory);
    ck_assert_uint_eq(to2.count, 0);
    ck_assert_uint_eq(from.count, 0);
    diag_list_free(&to);
    diag_list_free(&to2);
}
END_TEST

START_TEST(validate_set_out_of_memory_sets_the_flag_instead_of_aborting)
{
    manifest_set *set = load(MESH_CA1);
    diag_list d = DIAG_LIST_INIT;
    alloc_budget = 0;
    validate_set(set, &d);
    alloc_budget = -1;
    ck_assert(d.out_of_memory);
    diag_list_free(&d);
    manifest_set_free(set);
}
END_TEST

/* validators/transition.c aborted on 5 allocation failures; now each one fails the check. Every
 * allocation of a gated switch is made to fail in turn, until one run needs no more. */
START_TEST(transition_out_of_memory_refuses_instead_of_aborting)
{
    status_set s = STATUS_SET_INIT;
    add_status(&s, "web-01", "ca-1", "ca-1", NULL);
    add_status(&s, "web-02", "ca-1", "ca-1", "ca-2", NULL);
    manifest_set *p = load(MESH_ADDED), *n = load(MESH_SWITCHED);
    transition_options opts = TRANSITION_OPTIONS_INIT;
    opts.have_status = true;
    long failures = 0;
    for (long budget = 0;; budget++) {
        diag_list d = DIAG_LIST_INIT;
        transition_result r;
        alloc_budget = budget;
        validate_transition(first_mesh(p), first_mesh(n), s.items, s.count, NULL, 0, &opts, &d, &r);
        alloc_budget = -1;
        if (!d.out_of_memory) {
            assert_diag(&d, "switch-not-propagated", "mtls.enabledBackend", 4);
            ck_assert(r.refused && r.waiting_only);
            diag_list_free(&d);
            break;
        }
        /* an unfinished check never passes, and is not something waiting will clear */
        ck_assert_msg(r.refused && !r.waiting_only, "budget %ld: passed although unfinished", budget);
        failures++;
        diag_list_free(&d);
        ck_assert_int_lt(budget, 100);
    }
    ck_assert_int_ge(failures, 6);   /* 4 lists, the members, the index, the blocking list... */
    manifest_set_free(p);
    manifest_set_free(n);
    status_set_free(&s);
}
END_TEST

static Suite *oom_suite_cases(Suite *s)
{
    TCase *om = tcase_create("out-of-memory");
    tcase_add_test(om, diag_add_out_of_memory_sets_the_flag_instead_of_aborting);
    tcase_add_test(om, diag_list_move_keeps_out_of_memory);
    tcase_add_test(om, validate_set_out_of_memory_sets_the_flag_instead_of_aborting);
    tcase_add_test(om, transition_out_of_memory_refuses_instead_of_aborting);
    TCase *lt = tcase_create("lifetime");
    tcase_add_test(lt, builtin_ca_shorter_than_its_leaves_is_warned);
    tcase_add_test(lt, known_ca_expiry_is_linted_against_now_and_the_renewal_point);
    suite_add_tcase(s, lt);
    suite_add_tcase(s, om);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(oom_suite_cases(validators_suite()));
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
