/* test-manifests.c - Check suite for manifests/: decoding, limits, both resource forms, loading. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "manifests/base64.h"
#include "manifests/manifest.h"

static manifest_set *set;
static diag_list diags;

static void setup(void)
{
    set = manifest_set_new();
    diag_list_free(&diags);
}

static void teardown(void)
{
    manifest_set_free(set);
    set = NULL;
    diag_list_free(&diags);
}

static void load(const char *yaml)
{
    ck_assert_int_eq(manifest_load_buffer(set, "t.yaml", yaml, strlen(yaml), &diags), MANIFEST_OK);
}

static const diag *find(const char *code)
{
    for (size_t i = 0; i < diags.count; i++)
        if (!strcmp(diags.items[i].code, code))
            return &diags.items[i];
    return NULL;
}

/* Asserts a diagnostic with this code exists and returns it. */
static const diag *expect(const char *code)
{
    const diag *d = find(code);
    if (!d) {
        for (size_t i = 0; i < diags.count; i++)
            fprintf(stderr, "  have %s: %s: %s\n", diags.items[i].code, diags.items[i].path, diags.items[i].message);
        ck_abort_msg("expected a diagnostic '%s'", code);
    }
    return d;
}

static void expect_clean(void)
{
    for (size_t i = 0; i < diags.count; i++)
        fprintf(stderr, "  unexpected %s:%u: %s: %s: %s\n", diags.items[i].file, diags.items[i].line,
                diags.items[i].code, diags.items[i].path, diags.items[i].message);
    ck_assert_uint_eq(diags.count, 0);
}

static const char *MESH_UNIVERSAL =
    "type: Mesh\n"
    "name: default\n"
    "mtls:\n"
    "  enabledBackend: ca-1\n"
    "  skipValidation: true\n"
    "  backends:\n"
    "    - name: ca-1\n"
    "      type: builtin\n"
    "      mode: PERMISSIVE\n"
    "      dpCert:\n"
    "        rotation: {expiration: 12h}\n"
    "        requestTimeout: 10s\n"
    "        keyType: rsa\n"
    "      conf:\n"
    "        caCert: {expiration: 10y, RSAbits: 2048}\n"
    "    - name: ca-2\n"
    "      type: provided\n"
    "      conf: {cert: {secret: c}, key: {secret: k}}\n";

static const char *MESH_KUBERNETES =
    "apiVersion: kuma.io/v1alpha1\n"
    "kind: Mesh\n"
    "metadata:\n"
    "  name: default\n"
    "spec:\n"
    "  mtls:\n"
    "    enabledBackend: ca-1\n"
    "    skipValidation: true\n"
    "    backends:\n"
    "    - name: ca-1\n"
    "      type: builtin\n"
    "      mode: PERMISSIVE\n"
    "      dpCert:\n"
    "        rotation:\n"
    "          expiration: 12h\n"
    "        requestTimeout: 10s\n"
    "        keyType: rsa\n"
    "      conf:\n"
    "        caCert:\n"
    "          RSAbits: 2048\n"
    "          expiration: 10y\n"
    "    - name: ca-2\n"
    "      type: provided\n"
    "      conf: {key: {secret: k}, cert: {secret: c}}\n";

static void assert_same_mesh(const mesh *a, const mesh *b)
{
    ck_assert_str_eq(a->name.value, b->name.value);
    ck_assert_str_eq(a->enabled_backend.value, b->enabled_backend.value);
    ck_assert_int_eq(a->skip_validation, b->skip_validation);
    ck_assert_uint_eq(a->nbackends, b->nbackends);
    for (size_t i = 0; i < a->nbackends; i++) {
        const mesh_backend *x = &a->backends[i], *y = &b->backends[i];
        ck_assert_str_eq(x->name.value, y->name.value);
        ck_assert_str_eq(x->type.value, y->type.value);
        ck_assert_int_eq(mesh_backend_leaf_lifetime_ms(x), mesh_backend_leaf_lifetime_ms(y));
        ck_assert_int_eq(mesh_backend_leaf_is_rsa(x), mesh_backend_leaf_is_rsa(y));
        ck_assert(mesh_backend_same_ca(x, y));
    }
}

START_TEST(mesh_universal_and_kubernetes_forms_build_the_same_model)
{
    load(MESH_UNIVERSAL);
    load(MESH_KUBERNETES);
    expect_clean();
    ck_assert_uint_eq(manifest_set_count(set), 2);
    const resource *u = manifest_set_get(set, 0), *k = manifest_set_get(set, 1);
    ck_assert_int_eq(u->kind, RESOURCE_MESH);
    ck_assert_int_eq(k->kind, RESOURCE_MESH);
    ck_assert_int_eq(u->form, FORM_UNIVERSAL);
    ck_assert_int_eq(k->form, FORM_KUBERNETES);
    assert_same_mesh(&u->u.mesh, &k->u.mesh);
    const mesh_backend *b = &u->u.mesh.backends[0];
    ck_assert_int_eq(b->dp_cert.rotation_expiration.ms, 12LL * 3600 * 1000);
    ck_assert_int_eq(b->dp_cert.request_timeout.ms, 10000);
    ck_assert_str_eq(b->mode.value, "PERMISSIVE");
    ck_assert(!mesh_backend_same_ca(&u->u.mesh.backends[0], &u->u.mesh.backends[1]));
    ck_assert_ptr_nonnull(manifest_set_find_mesh(set, "default"));
    ck_assert_str_eq(mesh_enabled_backend(&k->u.mesh), "ca-1");
    ck_assert_ptr_eq(mesh_find_backend(&k->u.mesh, "ca-2"), &k->u.mesh.backends[1]);

    mesh copy;
    ck_assert_int_eq(mesh_copy(&copy, &u->u.mesh), 0);
    assert_same_mesh(&copy, &u->u.mesh);
    resource r = {.kind = RESOURCE_MESH};
    r.u.mesh = copy;
    resource_clear(&r);
}
END_TEST

START_TEST(dataplane_universal_and_kubernetes_forms_build_the_same_model)
{
    load("type: Dataplane\nmesh: default\nname: web-01\nnetworking:\n  address: 127.0.0.1\n"
         "  inbound: [{port: 8443, tags: {kuma.io/service: web, version: 1}}]\n"
         "  outbound: [{port: 1, tags: {kuma.io/service: db}}]\n  admin: {port: 9901}\n");
    load("apiVersion: kuma.io/v1alpha1\nkind: Dataplane\nmesh: default\nmetadata:\n  name: web-01\n"
         "  namespace: kuma-demo\n  labels: {app: web}\n"
         "spec:\n  networking:\n    address: 127.0.0.1\n    transparentProxying: {redirectPortInbound: 15006}\n"
         "    inbound:\n    - port: 8443\n      tags:\n        kuma.io/service: web\n        version: \"1\"\n");
    load("apiVersion: kuma.io/v1alpha1\nkind: Dataplane\nmetadata: {name: web-02}\n"
         "spec:\n  mesh: other\n  networking: {address: 10.0.0.1}\n");
    expect_clean();
    ck_assert_uint_eq(manifest_set_count(set), 3);
    const dataplane *a = &manifest_set_get(set, 0)->u.dataplane, *b = &manifest_set_get(set, 1)->u.dataplane;
    ck_assert_str_eq(a->name.value, b->name.value);
    ck_assert_str_eq(a->mesh.value, b->mesh.value);
    ck_assert_str_eq(a->address.value, b->address.value);
    ck_assert_uint_eq(a->ninbounds, 1);
    ck_assert_uint_eq(b->ninbounds, 1);
    ck_assert_int_eq(a->inbounds[0].port, 8443);
    ck_assert_int_eq(b->inbounds[0].port, 8443);
    ck_assert_uint_eq(a->inbounds[0].ntags, 2);
    for (size_t i = 0; i < 2; i++) {
        ck_assert_str_eq(a->inbounds[0].tags[i].key, b->inbounds[0].tags[i].key);
        ck_assert_str_eq(a->inbounds[0].tags[i].value, b->inbounds[0].tags[i].value);
    }
    ck_assert_str_eq(manifest_set_get(set, 2)->u.dataplane.mesh.value, "other");
}
END_TEST

START_TEST(secret_universal_and_kubernetes_forms_build_the_same_model)
{
    load("type: Secret\nname: s1\nmesh: default\ndata: aGVsbG8=\n");
    load("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s1\n  namespace: kuma-system\n"
         "  labels:\n    kuma.io/mesh: default\ntype: system.kuma.io/secret\ndata:\n  value: aGVsbG8=\n");
    expect_clean();
    ck_assert_uint_eq(manifest_set_count(set), 2);
    const secret *a = &manifest_set_get(set, 0)->u.secret, *b = &manifest_set_get(set, 1)->u.secret;
    ck_assert_str_eq(a->name.value, b->name.value);
    ck_assert_str_eq(a->mesh.value, b->mesh.value);
    ck_assert_str_eq(a->data.value, b->data.value);
    ck_assert_uint_eq(b->mesh.mark.line, 7);
    ck_assert_uint_eq(b->mesh.mark.column, 19);
}
END_TEST

START_TEST(marks_are_one_based_line_and_column_of_the_value)
{
    load(MESH_UNIVERSAL);
    expect_clean();
    const resource *r = manifest_set_get(set, 0);
    const mesh *m = &r->u.mesh;
    ck_assert_str_eq(m->name.mark.file, "t.yaml");
    ck_assert_uint_eq(m->name.mark.line, 2);
    ck_assert_uint_eq(m->name.mark.column, 7);
    ck_assert_uint_eq(m->enabled_backend.mark.line, 4);
    ck_assert_uint_eq(m->enabled_backend.mark.column, 19);
    ck_assert_uint_eq(m->backends_mark.line, 7);
    ck_assert_uint_eq(m->backends_mark.column, 5);
    ck_assert_uint_eq(m->backends[0].mark.line, 7);
    ck_assert_uint_eq(m->backends[0].mark.column, 7);
    ck_assert_uint_eq(m->backends[1].name.mark.line, 16);
    ck_assert_uint_eq(m->backends[1].name.mark.column, 13);
    ck_assert_uint_eq(m->backends[0].dp_cert.rotation_expiration.mark.line, 11);
    ck_assert_uint_eq(m->backends[0].dp_cert.rotation_expiration.mark.column, 32);
    ck_assert_uint_eq(m->mtls_mark.line, 4);
    ck_assert_uint_eq(r->mark.line, 1);
}
END_TEST

START_TEST(multiple_documents_become_resources_in_order_and_empty_ones_are_skipped)
{
    load("---\ntype: Mesh\nname: one\n---\n---\ntype: Mesh\nname: two\n...\n---\ntype: Secret\nname: s\nmesh: two\ndata: eA==\n");
    expect_clean();
    ck_assert_uint_eq(manifest_set_count(set), 3);
    ck_assert_str_eq(manifest_set_get(set, 0)->u.mesh.name.value, "one");
    ck_assert_str_eq(manifest_set_get(set, 1)->u.mesh.name.value, "two");
    ck_assert_uint_eq(manifest_set_get(set, 1)->doc_index, 2);
    ck_assert_uint_eq(manifest_set_get(set, 1)->u.mesh.name.mark.line, 7);
    ck_assert_int_eq(manifest_set_get(set, 2)->kind, RESOURCE_SECRET);
}
END_TEST

START_TEST(directory_load_is_recursive_sorted_and_only_yaml)
{
    ck_assert_int_eq(manifest_load_path(set, TEST_DATA_DIR "/manifests/tree", &diags), MANIFEST_OK);
    expect_clean();
    ck_assert_uint_eq(manifest_set_count(set), 4);
    ck_assert_str_eq(manifest_set_get(set, 0)->u.mesh.name.value, "ay");
    ck_assert_str_eq(manifest_set_get(set, 1)->u.mesh.name.value, "az");
    ck_assert_str_eq(manifest_set_get(set, 2)->u.mesh.name.value, "az2");
    ck_assert_str_eq(manifest_set_get(set, 3)->u.mesh.name.value, "b");
    ck_assert_ptr_nonnull(strstr(manifest_set_get(set, 3)->u.mesh.name.mark.file, "tree/b.yaml"));
}
END_TEST

/* Issue 9 #22: an empty directory gave qsort() a NULL array (UBSan: "null pointer passed as
 * argument 1"); the unit suite runs with halt_on_error under the sanitizer setup. */
START_TEST(empty_directory_loads_nothing_without_undefined_behaviour)
{
    char dir[] = "/tmp/meshca-empty-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    int r = manifest_load_path(set, dir, &diags);
    rmdir(dir);
    ck_assert_int_eq(r, MANIFEST_OK);
    expect_clean();
    ck_assert_uint_eq(manifest_set_count(set), 0);
}
END_TEST

/* Issue 9 #20: two symlinks to the directory itself and one to its parent were walked
 * exponentially; each directory is now walked once (by device and inode). */
START_TEST(directory_symlink_loops_are_walked_once)
{
    char dir[] = "/tmp/meshca-loop-XXXXXX", p[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(p, sizeof(p), "%s/m.yaml", dir);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs("type: Mesh\nname: once\n", f);
    fclose(f);
    const char *links[] = {"a", "b"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, links[i]);
        ck_assert_int_eq(symlink(".", p), 0);
    }
    snprintf(p, sizeof(p), "%s/sub", dir);
    ck_assert_int_eq(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/sub/up", dir);
    ck_assert_int_eq(symlink("..", p), 0);
    time_t start = time(NULL);
    int r = manifest_load_path(set, dir, &diags);
    time_t took = time(NULL) - start;
    const char *cleanup[] = {"sub/up", "sub", "a", "b", "m.yaml"};
    for (size_t i = 0; i < 5; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, cleanup[i]);
        remove(p);
    }
    rmdir(dir);
    ck_assert_int_eq(r, MANIFEST_OK);
    expect_clean();
    ck_assert_uint_eq(manifest_set_count(set), 1);
    ck_assert_int_le(took, 2);
}
END_TEST

START_TEST(missing_file_is_eio_with_unreadable)
{
    ck_assert_int_eq(manifest_load_path(set, TEST_DATA_DIR "/manifests/no-such.yaml", &diags), MANIFEST_EIO);
    const diag *d = expect("unreadable");
    ck_assert_ptr_nonnull(strstr(d->file, "no-such.yaml"));
}
END_TEST

START_TEST(alias_bomb_is_refused_before_expansion_with_alias_limit)
{
    const char *bomb =
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
        "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
        "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
        "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
        "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
    load(bomb);
    /* Refused at line 5, where the expansion would first pass 10,000 nodes: the alias is
     * measured before anything is copied, so the work is bounded by the limit, not by 9^9. */
    const diag *d = expect("alias-limit");
    ck_assert_uint_eq(d->line, 5);
    ck_assert_uint_eq(manifest_set_count(set), 0);
}
END_TEST

START_TEST(small_aliases_are_expanded)
{
    mnode **docs = NULL;
    size_t n = 0;
    const char *y = "a: &x {k: v}\nb: *x\n";
    ck_assert_int_eq(manifest_parse_documents("t.yaml", y, strlen(y), &docs, &n, &diags), 0);
    expect_clean();
    ck_assert_uint_eq(n, 1);
    ck_assert(mnode_equal(mnode_get(docs[0], "a"), mnode_get(docs[0], "b")));
    mnode_free(docs[0]);
    free(docs);
}
END_TEST

START_TEST(undefined_alias_and_complex_key_and_merge_key_are_reported)
{
    load("type: Mesh\nname: *nope\n");
    ck_assert_uint_eq(expect("undefined-alias")->line, 2);
    load("? [a]\n: 1\n");
    ck_assert_uint_eq(expect("complex-key")->line, 1);
    load("x: &x {a: 1}\ny:\n  <<: *x\n");
    ck_assert_uint_eq(expect("merge-key")->line, 3);
}
END_TEST

/* Parses `y` into trees, asserts exactly one undefined-alias at line:column and frees the trees. */
static void expect_dropped_alias_at(const char *y, unsigned line, unsigned column)
{
    mnode **docs = NULL;
    size_t n = 0;
    ck_assert_int_eq(manifest_parse_documents("t.yaml", y, strlen(y), &docs, &n, &diags), 0);
    const diag *d = expect("undefined-alias");
    ck_assert_uint_eq(d->line, line);
    ck_assert_uint_eq(d->column, column);
    ck_assert_ptr_nonnull(strstr(d->message, "refused"));
    for (size_t i = 0; i < n; i++)
        mnode_free(docs[i]);
    free(docs);
    diag_list_free(&diags);
}

/* Issue 9 #24: the fuzz target's 10-byte input. The anchored key (a mapping) is refused and
 * freed; the alias after it used to deep-copy the freed node (heap-use-after-free in
 * mnode_clone via parse_alias). */
START_TEST(alias_to_anchored_refused_key_is_undefined_alias_not_use_after_free)
{
    load("? &8:\n? *8\n");
    ck_assert_uint_eq(expect("complex-key")->line, 1);
    const diag *d = expect("undefined-alias");
    ck_assert_uint_eq(d->line, 2);
    ck_assert_uint_eq(d->column, 3);
    ck_assert_uint_eq(manifest_set_count(set), 0);
}
END_TEST

/* Every node freed while parsing (a refused complex or merge key, and its value) takes the
 * anchors inside it out of reach: nested anchors, an anchor on the value, a merge key, a later
 * anchor that shadows an earlier one of the same name. */
START_TEST(anchors_inside_a_refused_key_or_its_value_are_dropped)
{
    expect_dropped_alias_at("? &k [1]\n: &v {a: b}\nx: *v\ny: *k\n", 3, 4);
    expect_dropped_alias_at("? {a: &n1 [1, &n2 {b: c}]}\n: 1\nx: *n1\n", 3, 4);
    expect_dropped_alias_at("? {a: &n1 [1, &n2 {b: c}]}\n: 1\ny: *n2\n", 3, 4);
    expect_dropped_alias_at("a: &d 1\n? &d [2]\n: 3\nb: *d\n", 4, 4);
    expect_dropped_alias_at("&m <<: &v {a: 1}\nb: *m\n", 2, 4);
    expect_dropped_alias_at("&m <<: &v {a: 1}\nc: *v\n", 2, 4);
    expect_dropped_alias_at("- &s {? &i [1]: 2}\n- *s\n- *i\n", 3, 3);
}
END_TEST

START_TEST(anchors_outside_a_refused_key_still_expand)
{
    mnode **docs = NULL;
    size_t n = 0;
    const char *y = "a: &ok {k: v}\n? [x]\n: &v2 2\nb: *ok\n";
    ck_assert_int_eq(manifest_parse_documents("t.yaml", y, strlen(y), &docs, &n, &diags), 0);
    expect("complex-key");
    ck_assert_ptr_null(find("undefined-alias"));
    ck_assert_uint_eq(n, 1);
    ck_assert(mnode_equal(mnode_get(docs[0], "a"), mnode_get(docs[0], "b")));
    mnode_free(docs[0]);
    free(docs);
}
END_TEST

START_TEST(buffer_over_8mib_is_too_large)
{
    size_t len = 9u * 1024 * 1024;
    char *big = malloc(len);
    memset(big, '#', len);
    ck_assert_int_eq(manifest_load_buffer(set, "big.yaml", big, len, &diags), MANIFEST_OK);
    free(big);
    ck_assert_str_eq(expect("too-large")->file, "big.yaml");
}
END_TEST

START_TEST(file_over_8mib_is_too_large_without_reading)
{
    char path[] = "/tmp/meshca-test-XXXXXX.yaml";
    int fd = mkstemps(path, 5);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, 9 * 1024 * 1024), 0);
    close(fd);
    ck_assert_int_eq(manifest_load_path(set, path, &diags), MANIFEST_OK);
    unlink(path);
    expect("too-large");
}
END_TEST

static char *nested(int depth)
{
    char *s = malloc((size_t)depth * 2 + 1);
    for (int i = 0; i < depth; i++) {
        s[i] = '[';
        s[depth * 2 - 1 - i] = ']';
    }
    s[depth * 2] = '\0';
    return s;
}

START_TEST(nesting_of_65_is_too_deep_and_64_is_fine)
{
    char *ok = nested(64), *bad = nested(65);
    load(ok);
    ck_assert_ptr_null(find("too-deep"));
    load(bad);
    const diag *d = expect("too-deep");
    ck_assert_uint_eq(d->line, 1);
    ck_assert_uint_eq(d->column, 65);
    free(ok);
    free(bad);
}
END_TEST

START_TEST(scalar_over_1mib_is_too_long)
{
    size_t n = 1024 * 1024 + 10;
    char *y = malloc(n + 4);
    memcpy(y, "a: ", 3);
    memset(y + 3, 'x', n);
    y[n + 3] = '\0';
    load(y);
    free(y);
    ck_assert_uint_eq(expect("scalar-too-long")->column, 4);
}
END_TEST

START_TEST(more_than_100000_documents_is_refused)
{
    size_t count = MANIFEST_MAX_DOCUMENTS + 1;
    char *y = malloc(count * 6 + 1);
    for (size_t i = 0; i < count; i++)
        memcpy(y + i * 6, "--- 1\n", 6);
    y[count * 6] = '\0';
    load(y);
    free(y);
    ck_assert_uint_eq(expect("too-many-documents")->line, MANIFEST_MAX_DOCUMENTS + 1);
}
END_TEST

START_TEST(tab_indentation_is_reported_clearly)
{
    load("type: Mesh\nmtls:\n\tenabledBackend: ca-1\n");
    const diag *d = expect("tab-indent");
    ck_assert_uint_eq(d->line, 3);
    ck_assert_uint_eq(d->column, 1);
    ck_assert_ptr_nonnull(strstr(d->message, "spaces"));
}
END_TEST

START_TEST(duplicate_key_is_an_error_naming_the_first_line)
{
    load("type: Mesh\nname: a\nmtls: {}\nname: b\n");
    const diag *d = expect("duplicate-key");
    ck_assert_int_eq(d->severity, DIAG_ERROR);
    ck_assert_uint_eq(d->line, 4);
    ck_assert_ptr_nonnull(strstr(d->message, "first at line 2"));
}
END_TEST

START_TEST(syntax_error_has_line_and_column)
{
    load("type: Mesh\nname: \"unterminated\n");
    const diag *d = expect("yaml-syntax");
    ck_assert_uint_ge(d->line, 2);
    ck_assert_ptr_null(strchr(d->message, '\n'));
}
END_TEST

START_TEST(invalid_utf8_is_reported)
{
    load("type: Mesh\nname: \xff\xfe\xc3\n");
    const diag *d = expect("bad-encoding");
    ck_assert_uint_eq(d->line, 2);
}
END_TEST

START_TEST(random_bytes_give_diagnostics_not_crashes)
{
    srand(42);
    char buf[512];
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(rand() % (int)sizeof(buf));
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)(rand() % 256);
        manifest_load_buffer(set, "r.yaml", buf, n, &diags);
    }
    /* Biased toward YAML punctuation, to reach deeper into the parser. */
    const char alphabet[] = "ab: -[]{}&*!|>'\"\n\t#?,:%@`~01";
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(rand() % (int)sizeof(buf));
        for (size_t i = 0; i < n; i++)
            buf[i] = alphabet[rand() % (int)(sizeof(alphabet) - 1)];
        manifest_load_buffer(set, "r.yaml", buf, n, &diags);
    }
    /* Mutations of a valid manifest reach the resource builder with odd shapes. */
    size_t len = strlen(MESH_KUBERNETES);
    char *mut = malloc(len);
    for (int round = 0; round < 3000; round++) {
        memcpy(mut, MESH_KUBERNETES, len);
        for (int k = 0; k < 1 + rand() % 4; k++)
            mut[rand() % (int)len] = alphabet[rand() % (int)(sizeof(alphabet) - 1)];
        manifest_load_buffer(set, "m.yaml", mut, len, &diags);
    }
    free(mut);
    ck_assert_uint_gt(diags.count, 0);
}
END_TEST

START_TEST(truncated_files_never_crash)
{
    size_t len = strlen(MESH_KUBERNETES);
    for (size_t cut = 0; cut < len; cut++)
        manifest_load_buffer(set, "cut.yaml", MESH_KUBERNETES, cut, &diags);
    diag_list_free(&diags);
    load("type: Mesh\nname: 'ab");
    expect("yaml-syntax");
}
END_TEST

START_TEST(unknown_field_suggests_the_nearest_and_names_the_path)
{
    load("type: Mesh\nname: m\nmtls:\n  enabledBackends: ca-1\n  backends:\n  - name: a\n    type: builtin\n"
         "    dpCert:\n      rotaton: {expiration: 1h}\n");
    ck_assert_uint_eq(diags.count, 2);
    const diag *d = &diags.items[0];
    ck_assert_str_eq(d->code, "unknown-field");
    ck_assert_str_eq(d->path, "mtls.enabledBackends");
    ck_assert_str_eq(d->message, "unknown field 'enabledBackends'; did you mean 'enabledBackend'?");
    ck_assert_uint_eq(d->line, 4);
    ck_assert_uint_eq(d->column, 3);
    d = &diags.items[1];
    ck_assert_str_eq(d->path, "mtls.backends[0].dpCert.rotaton");
    ck_assert_uint_eq(d->line, 9);
    ck_assert_ptr_nonnull(strstr(d->message, "did you mean 'rotation'?"));
    ck_assert_uint_eq(manifest_set_count(set), 1);
}
END_TEST

/* Field paths are built by copying (build.c path_fmt): one that fits is whole, a longer one is cut
 * to the buffer (255 characters) and ends in "...". */
START_TEST(long_field_path_fits_whole_or_is_cut_with_an_ellipsis)
{
    char yaml[512], key[300];
    for (size_t len = 254; len <= 256; len++) {
        /* "mtls." + key: 5 + len characters. */
        size_t klen = len - 5;
        memset(key, 'k', klen);
        key[klen] = '\0';
        snprintf(yaml, sizeof(yaml), "type: Mesh\nname: m\nmtls:\n  %s: 1\n", key);
        diag_list_free(&diags);
        load(yaml);
        const diag *d = expect("unknown-field");
        if (len < 256) {
            ck_assert_uint_eq(strlen(d->path), len);
            ck_assert_int_eq(strncmp(d->path, "mtls.kkk", 8), 0);
            ck_assert_int_eq(d->path[len - 1], 'k');
        } else {
            ck_assert_uint_eq(strlen(d->path), 255);
            ck_assert_int_eq(strncmp(d->path, "mtls.kkk", 8), 0);
            ck_assert_str_eq(d->path + 252, "...");
        }
    }
}
END_TEST

START_TEST(kubernetes_paths_are_logical_without_spec_prefix)
{
    load("apiVersion: kuma.io/v1alpha1\nkind: Mesh\nmetadata: {name: m}\nspec:\n  mtls:\n    backends:\n"
         "    - name: a\n    - name: [x]\n");
    const diag *d = expect("wrong-type");
    ck_assert_str_eq(d->path, "mtls.backends[1].name");
    ck_assert_str_eq(d->message, "expected a string, got a sequence");
    ck_assert_uint_eq(d->line, 8);
}
END_TEST

START_TEST(kuma_extra_mesh_fields_are_accepted_and_ignored)
{
    load("type: Mesh\nname: m\nlogging: {backends: []}\nmetrics: {enabledBackend: p}\ntracing: {}\n"
         "networking: {outbound: {passthrough: false}}\nrouting: {zoneEgress: true}\nconstraints: {}\n"
         "meshServices: {enabled: Disabled}\nskipCreatingInitialPolicies: ['*']\n");
    load("apiVersion: kuma.io/v1alpha1\nkind: Mesh\nmetadata:\n  name: m2\n  annotations: {a: b}\n"
         "  creationTimestamp: null\nspec:\n  logging: {}\n  metrics: {}\n");
    expect_clean();
    ck_assert_uint_eq(manifest_set_count(set), 2);
}
END_TEST

START_TEST(wrong_scalar_types_say_what_was_expected)
{
    load("type: Mesh\nname: {a: b}\nmtls:\n  skipValidation: maybe\n  backends: {}\n");
    const diag *d = expect("wrong-type");
    ck_assert_str_eq(d->path, "name");
    ck_assert_str_eq(d->message, "expected a string, got a mapping");
    ck_assert_uint_eq(d->line, 2);
    int n = 0;
    for (size_t i = 0; i < diags.count; i++)
        if (!strcmp(diags.items[i].code, "wrong-type"))
            n++;
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(diags.items[1].path, "mtls.skipValidation");
    ck_assert_str_eq(diags.items[2].path, "mtls.backends");
    diag_list_free(&diags);
    load("type: Dataplane\nname: d\nmesh: m\nnetworking:\n  inbound:\n  - port: \"80\"\n    tags: {kuma.io/service: w}\n");
    d = expect("wrong-type");
    ck_assert_str_eq(d->path, "networking.inbound[0].port");
    ck_assert_str_eq(d->message, "expected an integer, got a string");
}
END_TEST

START_TEST(unknown_or_missing_kind_is_not_a_resource)
{
    load("type: Mesch\nname: x\n");
    const diag *d = expect("unknown-kind");
    ck_assert_str_eq(d->path, "type");
    ck_assert_ptr_nonnull(strstr(d->message, "did you mean 'Mesh'?"));
    diag_list_free(&diags);
    load("kind: Gateway\n");
    ck_assert_str_eq(expect("unknown-kind")->path, "kind");
    diag_list_free(&diags);
    load("name: x\n");
    d = expect("missing-field");
    ck_assert_uint_eq(d->line, 1);
    ck_assert_uint_eq(manifest_set_count(set), 0);
}
END_TEST

START_TEST(missing_required_fields_are_reported)
{
    load("type: Dataplane\nname: d\nnetworking: {address: 1.2.3.4}\n");
    ck_assert_str_eq(expect("missing-field")->path, "mesh");
    diag_list_free(&diags);
    load("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: Opaque\ndata: {value: eA==}\n");
    ck_assert_str_eq(expect("bad-secret-type")->path, "type");
    ck_assert_str_eq(expect("missing-field")->path, "metadata.labels.kuma.io/mesh");
}
END_TEST

START_TEST(bad_duration_is_reported_at_its_path)
{
    load("type: Mesh\nname: m\nmtls:\n  backends:\n  - name: a\n    type: builtin\n    dpCert:\n"
         "      rotation:\n        expiration: 1.5h\n");
    const diag *d = expect("bad-duration");
    ck_assert_str_eq(d->path, "mtls.backends[0].dpCert.rotation.expiration");
    ck_assert_uint_eq(d->line, 9);
    ck_assert_uint_eq(d->column, 21);
}
END_TEST

START_TEST(durations_parse_and_format)
{
    int64_t ms = 0;
    ck_assert_int_eq(model_parse_duration("24h", &ms), 0);
    ck_assert_int_eq(ms, 86400000LL);
    ck_assert_int_eq(model_parse_duration("10y", &ms), 0);
    ck_assert_int_eq(ms, 10LL * 365 * 86400000LL);
    ck_assert_int_eq(model_parse_duration("500ms", &ms), 0);
    ck_assert_int_eq(ms, 500);
    ck_assert_int_eq(model_parse_duration("2w", &ms), 0);
    ck_assert_int_eq(ms, 14LL * 86400000LL);
    ck_assert_int_eq(model_parse_duration("0s", &ms), 0);
    ck_assert_int_eq(ms, 0);
    ms = 7;
    const char *bad[] = {"10", "1.5h", "-1h", "", "h", "1 h", "1H", "1hh", "99999999999999999999y",
                         "9223372036854775807s", "300000000y", NULL};
    for (size_t i = 0; bad[i]; i++)
        ck_assert_msg(model_parse_duration(bad[i], &ms) == -1, "accepted '%s'", bad[i]);
    ck_assert_int_eq(ms, 7);
    char buf[32];
    model_format_duration(86400000LL, buf, sizeof(buf));
    ck_assert_str_eq(buf, "1d");
    model_format_duration(10LL * 365 * 86400000LL, buf, sizeof(buf));
    ck_assert_str_eq(buf, "10y");
    model_format_duration(1500, buf, sizeof(buf));
    ck_assert_str_eq(buf, "1500ms");
    model_format_duration(3600000, buf, sizeof(buf));
    ck_assert_str_eq(buf, "1h");
    mesh_backend b = {0};
    ck_assert_int_eq(mesh_backend_leaf_lifetime_ms(&b), 86400000LL);
}
END_TEST

START_TEST(plain_scalars_follow_the_yaml_core_schema)
{
    source_mark m = SOURCE_MARK_NONE;
    struct {
        const char *text;
        mnode_style style;
        const char *type;
    } cases[] = {
        {"", MNODE_PLAIN, "null"},      {"~", MNODE_PLAIN, "null"},       {"NULL", MNODE_PLAIN, "null"},
        {"True", MNODE_PLAIN, "boolean"}, {"yes", MNODE_PLAIN, "string"}, {"-12", MNODE_PLAIN, "integer"},
        {"0x1F", MNODE_PLAIN, "integer"}, {"0o17", MNODE_PLAIN, "integer"}, {"1.5e3", MNODE_PLAIN, "number"},
        {".inf", MNODE_PLAIN, "number"},  {"true", MNODE_QUOTED, "string"}, {"8080", MNODE_QUOTED, "string"},
        {"0x", MNODE_PLAIN, "string"},    {"1.2.3", MNODE_PLAIN, "string"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mnode *n = mnode_new_scalar(cases[i].text, strlen(cases[i].text), cases[i].style, m);
        ck_assert_msg(!strcmp(mnode_type_name(n), cases[i].type), "'%s' is %s, not %s", cases[i].text,
                      mnode_type_name(n), cases[i].type);
        mnode_free(n);
    }
    mnode *a = mnode_new_scalar("0x10", 4, MNODE_PLAIN, m), *b = mnode_new_scalar("16", 2, MNODE_PLAIN, m);
    long long v = 0;
    ck_assert(mnode_as_int(a, &v));
    ck_assert_int_eq(v, 16);
    ck_assert(mnode_equal(a, b));
    mnode_free(a);
    mnode_free(b);
}
END_TEST

/* One decoder for Secret data and inline datasources (it was written twice, with different
 * checks: validate accepted unpadded base64 that apply's decoder refused). */
START_TEST(base64_decodes_with_optional_padding_and_whitespace_and_refuses_the_rest)
{
    static const struct {
        const char *in, *out;
    } good[] = {
        {"", ""}, {"YQ==", "a"}, {"YQ", "a"}, {"YWI=", "ab"}, {"YWI", "ab"}, {"YWJj", "abc"},
        {"YW\nJj\r\n ZGVm\t", "abcdef"}, {"/+8=", "\xff\xef"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char *out = NULL;
        size_t n = 99;
        ck_assert_msg(base64_decode(good[i].in, strlen(good[i].in), &out, &n) == 0, "%s", good[i].in);
        ck_assert_uint_eq(n, strlen(good[i].out));
        ck_assert_mem_eq(out, good[i].out, n);
        ck_assert_int_eq(out[n], '\0');
        ck_assert(base64_valid(good[i].in, strlen(good[i].in)));
        free(out);
    }
    static const char *const bad[] = {"Y", "YWJjZ", "YQ=x", "YQ===", "Y===", "YW-j", "YWJj!", "YQ=\nYQ=="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *out = (char *)"untouched";
        ck_assert_msg(base64_decode(bad[i], strlen(bad[i]), &out, NULL) == MESHCA_EINVAL, "%s", bad[i]);
        ck_assert_str_eq(out, "untouched");
        ck_assert(!base64_valid(bad[i], strlen(bad[i])));
    }
}
END_TEST

START_TEST(suggest_finds_close_names_only)
{
    const char *const c[] = {"enabledBackend", "backends", "skipValidation", NULL};
    ck_assert_str_eq(manifest_suggest("enabledBackends", c), "enabledBackend");
    ck_assert_str_eq(manifest_suggest("backend", c), "backends");
    ck_assert_ptr_null(manifest_suggest("zzz", c));
}
END_TEST

START_TEST(suggest_ignores_case)
{
    const char *const types[] = {"builtin", "provided", "vault", "cfssl", NULL};
    const char *const modes[] = {"STRICT", "PERMISSIVE", NULL};
    const char *const fields[] = {"enabledBackend", "backends", "skipValidation", NULL};
    ck_assert_str_eq(manifest_suggest("BUILTIN", types), "builtin");
    ck_assert_str_eq(manifest_suggest("Vault", types), "vault");
    ck_assert_str_eq(manifest_suggest("strict", modes), "STRICT");
    ck_assert_str_eq(manifest_suggest("Permisive", modes), "PERMISSIVE");
    ck_assert_str_eq(manifest_suggest("enabledbackend", fields), "enabledBackend");
    ck_assert_str_eq(manifest_suggest("SKIPVALIDATION", fields), "skipValidation");
    ck_assert_ptr_null(manifest_suggest("ZZZ", types));
}
END_TEST

START_TEST(tag_walk_visits_every_tag_of_every_inbound_in_order)
{
    model_tag a[] = {{"kuma.io/service", "web"}, {"version", "v1"}}, c[] = {{"kuma.io/service", "admin"}};
    dataplane_inbound in[] = {{SOURCE_MARK_NONE, 1, a, 2}, {SOURCE_MARK_NONE, 2, NULL, 0},
                              {SOURCE_MARK_NONE, 3, c, 1}};
    dataplane dp = {0};
    dp.inbounds = in;
    dp.ninbounds = 3;
    dataplane_tag_iter it = DATAPLANE_TAG_ITER_INIT(&dp);
    ck_assert_ptr_eq(dataplane_tag_next(&it), &a[0]);
    ck_assert_ptr_eq(dataplane_tag_next(&it), &a[1]);
    ck_assert_ptr_eq(dataplane_tag_next(&it), &c[0]); /* the empty inbound is skipped */
    ck_assert_ptr_null(dataplane_tag_next(&it));
    ck_assert_ptr_null(dataplane_tag_next(&it));
    ck_assert_uint_eq(dataplane_tag_count(&dp), 3);
    dataplane none = {0};
    it = (dataplane_tag_iter)DATAPLANE_TAG_ITER_INIT(&none);
    ck_assert_ptr_null(dataplane_tag_next(&it));
}
END_TEST

START_TEST(diagnostic_messages_are_one_line_and_sortable)
{
    diag_list l = DIAG_LIST_INIT;
    source_mark a = {"b.yaml", 3, 1}, b = {"a.yaml", 9, 2};
    diag_error(&l, "x", &a, NULL, "two\nlines");
    diag_warning(&l, "y", NULL, "p", "w");
    diag_error(&l, "z", &b, "q", "e");
    ck_assert_str_eq(l.items[0].message, "two lines");
    ck_assert_str_eq(l.items[0].path, "");
    ck_assert_uint_eq(diag_count(&l, DIAG_WARNING), 1);
    diag_list_sort(&l);
    ck_assert_str_eq(l.items[0].code, "z");
    ck_assert_str_eq(l.items[2].code, "y");
    diag_list other = DIAG_LIST_INIT;
    diag_list_move(&other, &l);
    ck_assert_uint_eq(l.count, 0);
    ck_assert(diag_has_errors(&other));
    diag_list_free(&other);
    diag_list_free(&l);
}
END_TEST

static Suite *manifests_suite(void)
{
    Suite *s = suite_create("manifests");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, mesh_universal_and_kubernetes_forms_build_the_same_model);
    tcase_add_test(tc, dataplane_universal_and_kubernetes_forms_build_the_same_model);
    tcase_add_test(tc, secret_universal_and_kubernetes_forms_build_the_same_model);
    tcase_add_test(tc, marks_are_one_based_line_and_column_of_the_value);
    tcase_add_test(tc, multiple_documents_become_resources_in_order_and_empty_ones_are_skipped);
    tcase_add_test(tc, directory_load_is_recursive_sorted_and_only_yaml);
    tcase_add_test(tc, missing_file_is_eio_with_unreadable);
    tcase_add_test(tc, empty_directory_loads_nothing_without_undefined_behaviour);
    tcase_add_test(tc, directory_symlink_loops_are_walked_once);
    tcase_add_test(tc, alias_bomb_is_refused_before_expansion_with_alias_limit);
    tcase_add_test(tc, small_aliases_are_expanded);
    tcase_add_test(tc, undefined_alias_and_complex_key_and_merge_key_are_reported);
    tcase_add_test(tc, alias_to_anchored_refused_key_is_undefined_alias_not_use_after_free);
    tcase_add_test(tc, anchors_inside_a_refused_key_or_its_value_are_dropped);
    tcase_add_test(tc, anchors_outside_a_refused_key_still_expand);
    tcase_add_test(tc, buffer_over_8mib_is_too_large);
    tcase_add_test(tc, file_over_8mib_is_too_large_without_reading);
    tcase_add_test(tc, nesting_of_65_is_too_deep_and_64_is_fine);
    tcase_add_test(tc, scalar_over_1mib_is_too_long);
    tcase_add_test(tc, more_than_100000_documents_is_refused);
    tcase_add_test(tc, tab_indentation_is_reported_clearly);
    tcase_add_test(tc, duplicate_key_is_an_error_naming_the_first_line);
    tcase_add_test(tc, syntax_error_has_line_and_column);
    tcase_add_test(tc, invalid_utf8_is_reported);
    tcase_add_test(tc, random_bytes_give_diagnostics_not_crashes);
    tcase_add_test(tc, truncated_files_never_crash);
    tcase_add_test(tc, unknown_field_suggests_the_nearest_and_names_the_path);
    tcase_add_test(tc, long_field_path_fits_whole_or_is_cut_with_an_ellipsis);
    tcase_add_test(tc, kubernetes_paths_are_logical_without_spec_prefix);
    tcase_add_test(tc, kuma_extra_mesh_fields_are_accepted_and_ignored);
    tcase_add_test(tc, wrong_scalar_types_say_what_was_expected);
    tcase_add_test(tc, unknown_or_missing_kind_is_not_a_resource);
    tcase_add_test(tc, missing_required_fields_are_reported);
    tcase_add_test(tc, bad_duration_is_reported_at_its_path);
    tcase_add_test(tc, durations_parse_and_format);
    tcase_add_test(tc, plain_scalars_follow_the_yaml_core_schema);
    tcase_add_test(tc, base64_decodes_with_optional_padding_and_whitespace_and_refuses_the_rest);
    tcase_add_test(tc, suggest_finds_close_names_only);
    tcase_add_test(tc, suggest_ignores_case);
    tcase_add_test(tc, diagnostic_messages_are_one_line_and_sortable);
    tcase_add_test(tc, tag_walk_visits_every_tag_of_every_inbound_in_order);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(manifests_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
