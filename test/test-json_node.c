/* test-json_node.c - Check suite for the JSON decoding of stored objects (json_node.c, load_json.c). */
#define _GNU_SOURCE 1
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "manifests/encode.h"
#include "manifests/json_node.h"
#include "manifests/manifest.h"
#include "reconciler/state.h"

/* Every backend type, conf trees with numbers, booleans, nulls and nested maps, dpCert fields,
 * strings YAML would read as other types or as syntax, non-ASCII text and escapes: what the
 * fixtures under manifests/examples and test/data do not hold. */
static const char RICH[] =
    "type: Mesh\nname: rich\nmtls:\n  skipValidation: true\n  enabledBackend: ca-1\n  backends:\n"
    "  - name: ca-1\n    type: builtin\n    mode: PERMISSIVE\n"
    "    dpCert: {rotation: {expiration: 1440m}, requestTimeout: 5s, keyType: rsa}\n"
    "    conf: {caCert: {RSAbits: 2048, expiration: 10y}, flag: false, none: null, ratio: 0.5,\n"
    "           big: 123456789012345678901234567890, neg: -7, exp: 1e5, hex: \"0x1F\",\n"
    "           quotedNumber: \"8443\", quotedBool: \"true\", quotedNull: \"null\", empty: \"\",\n"
    "           yamlish: \"- a: b # c &d *e !f %g @h `i'\", dashes: \"---\", dots: \"...\",\n"
    "           unicode: \"caf\\u00e9 \\u20ac \\U0001F600\", escapes: \"tab\\tnl\\nq\\\"bs\\\\\\r\\b\\f\\0\",\n"
    "           list: [1, \"two\", [3, {four: 4}], {}, []], \"<<\": merge-lookalike}\n"
    "  - name: vault-1\n    type: vault\n    dpCert: {requestTimeout: 5s}\n"
    "    conf:\n      fromCp:\n        address: https://127.0.0.1:8200\n"
    "        namespace: mesh-team\n        pki: pki\n        role: mesh\n"
    "        commonName: '{{ tag \"kuma.io/service\" }}-{{ tag \"version\" }}'\n"
    "        tls: {caCert: {file: /etc/ca.pem}, serverName: vault.test, skipVerify: false}\n"
    "        auth: {token: {secret: vault-token}}\n"
    "  - name: cfssl-1\n    type: cfssl\n    conf: {address: 'http://127.0.0.1:8888', profile: mesh,\n"
    "      authKey: {inlineString: \"0123456789ABCDEF\"}, timeout: 30}\n"
    "  - name: ca-4\n    type: provided\n    conf: {cert: {inline: QUJD}, key: {inlineString: \"k\\u00ffy\"}}\n"
    "---\n"
    "type: Dataplane\nmesh: rich\nname: \"web-\\u00e9t\\u00e9\"\nnetworking:\n  address: 10.0.0.1\n"
    "  inbound:\n  - port: 1\n    tags: {kuma.io/service: \"caf\\u00e9\", version: \"1.0\", zone: \"null\",\n"
    "           \"\": empty-key, \"k\\\"q\": \"v\\\\w\", long: \"\\u4e2d\\u6587 \\u0645\\u0631\\u062d\\u0628\\u0627\"}\n"
    "  - port: 65535\n    tags: {kuma.io/service: db}\n"
    "---\ntype: Secret\nmesh: rich\nname: vault-token\ndata: c2VjcmV0LXRva2Vu\n";

static const char *const FIXTURE_DIRS[] = {MESHCA_SOURCE_ROOT "/manifests/examples", TEST_DATA_DIR};

/* Whether two trees are the same node for node: kind, scalar bytes, style and mark. On the
 * first difference, `why` says where. */
static bool same_tree(const mnode *a, const mnode *b, const char *path, char *why, size_t size)
{
    char sub[512];
    if (!a || !b) {
        snprintf(why, size, "%s: one side is missing", path);
        return a == b;
    }
    if (a->kind != b->kind) {
        snprintf(why, size, "%s: kind %d vs %d", path, a->kind, b->kind);
        return false;
    }
    if (a->mark.line != b->mark.line || a->mark.column != b->mark.column ||
        strcmp(a->mark.file ? a->mark.file : "", b->mark.file ? b->mark.file : "")) {
        snprintf(why, size, "%s: mark %u:%u vs %u:%u", path, a->mark.line, a->mark.column,
                 b->mark.line, b->mark.column);
        return false;
    }
    if (a->kind == MNODE_SCALAR) {
        if (a->style != b->style) {
            snprintf(why, size, "%s: scalar '%s' style %d vs %d", path, a->scalar, a->style, b->style);
            return false;
        }
        if (a->scalar_len != b->scalar_len || memcmp(a->scalar, b->scalar, a->scalar_len)) {
            snprintf(why, size, "%s: scalar '%s' vs '%s'", path, a->scalar, b->scalar);
            return false;
        }
        return true;
    }
    size_t n = a->kind == MNODE_MAP ? a->npairs : a->nitems;
    size_t m = b->kind == MNODE_MAP ? b->npairs : b->nitems;
    if (n != m) {
        snprintf(why, size, "%s: %zu vs %zu children", path, n, m);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(sub, sizeof(sub), "%s/%zu", path, i);
        if (a->kind == MNODE_MAP ? !same_tree(a->pairs[i].key, b->pairs[i].key, sub, why, size) ||
                                       !same_tree(a->pairs[i].value, b->pairs[i].value, sub, why, size)
                                 : !same_tree(a->items[i], b->items[i], sub, why, size))
            return false;
    }
    return true;
}

/* How much of a text a failure message shows: Check refuses very long messages. */
static int shown(size_t len)
{
    return len > 2000 ? 2000 : (int)len;
}

/* Whether the YAML decoder reports an error for `text` (where the JSON path must decline). */
static bool yaml_refuses(const char *text, size_t len)
{
    mnode **docs = NULL;
    size_t ndocs = 0;
    diag_list d = DIAG_LIST_INIT;
    ck_assert_int_eq(manifest_parse_documents("store:t", text, len, &docs, &ndocs, &d), 0);
    bool refused = diag_has_errors(&d);
    for (size_t i = 0; i < ndocs; i++)
        mnode_free(docs[i]);
    free(docs);
    diag_list_free(&d);
    return refused;
}

/* The JSON path's tree of `text`, checked against the YAML decoder's: when the JSON path takes
 * the text, the YAML decoder must read it without a word and build the very same tree. Returns
 * what json_node_parse returned; *ret_tree (may be NULL) gets the tree, caller frees. */
static int both_ways(const char *text, size_t len, mnode **ret_tree)
{
    mnode *fast = NULL;
    int r = json_node_parse("store:t", text, len, &fast);
    ck_assert_int_ne(r, MESHCA_ENOMEM);
    if (r == 0) {
        mnode **docs = NULL;
        size_t ndocs = 0;
        diag_list d = DIAG_LIST_INIT;
        char why[600] = "";
        ck_assert_int_eq(manifest_parse_documents("store:t", text, len, &docs, &ndocs, &d), 0);
        ck_assert_msg(d.count == 0 && ndocs == 1, "taken by the JSON path, but YAML says: %s "
                      "(%zu documents) for: %.*s", d.count ? d.items[0].message : "", ndocs,
                      shown(len), text);
        ck_assert_msg(same_tree(docs[0], fast, "", why, sizeof(why)), "trees differ at %s for: %.*s",
                      why, shown(len), text);
        for (size_t i = 0; i < ndocs; i++)
            mnode_free(docs[i]);
        free(docs);
        diag_list_free(&d);
    }
    if (ret_tree)
        *ret_tree = fast;
    else
        mnode_free(fast);
    return r;
}

static char *encode(const resource *res)
{
    json_t *obj = encode_resource(res, 1);
    ck_assert_ptr_nonnull(obj);
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    ck_assert_ptr_nonnull(text);
    return text;
}

/* The one resource `load` put in a fresh set from `text`, encoded; no diagnostic allowed. */
static char *load_and_encode(int (*load)(manifest_set *, const char *, const char *, size_t,
                                         diag_list *),
                             const char *text)
{
    manifest_set *set = manifest_set_new();
    diag_list d = DIAG_LIST_INIT;
    ck_assert_int_eq(load(set, "store:t", text, strlen(text), &d), 0);
    ck_assert_msg(d.count == 0, "%s: %s", d.count ? d.items[0].code : "", d.count ? d.items[0].message : "");
    ck_assert_uint_eq(manifest_set_count(set), 1);
    char *out = encode(manifest_set_get(set, 0));
    manifest_set_free(set);
    return out;
}

START_TEST(every_fixture_and_its_stored_encoding_decode_to_the_same_tree_and_model)
{
    manifest_set *src = manifest_set_new();
    diag_list d = DIAG_LIST_INIT;
    /* Fixture directories hold hostile files too: their diagnostics do not matter here, every
     * resource they still give does. */
    for (size_t i = 0; i < sizeof(FIXTURE_DIRS) / sizeof(FIXTURE_DIRS[0]); i++)
        ck_assert_int_eq(manifest_load_path(src, FIXTURE_DIRS[i], &d), 0);
    size_t from_files = manifest_set_count(src);
    diag_list_free(&d);
    ck_assert_int_eq(manifest_load_buffer(src, "rich.yaml", RICH, strlen(RICH), &d), 0);
    ck_assert_msg(d.count == 0, "RICH: %s", d.count ? d.items[0].message : "");
    ck_assert_uint_ge(from_files, 30);
    ck_assert_uint_eq(manifest_set_count(src), from_files + 3);

    for (size_t i = 0; i < manifest_set_count(src); i++) {
        char *text = encode(manifest_set_get(src, i));
        mnode *fast = NULL;
        /* What the store keeps is always taken by the JSON path... */
        ck_assert_msg(both_ways(text, strlen(text), &fast) == 0, "declined: %s", text);
        /* ...and builds, without a word, the resource the stored text encodes. */
        resource res;
        diag_list bd = DIAG_LIST_INIT;
        ck_assert_int_eq(manifest_build_resource(fast, 0, &res, &bd), 0);
        ck_assert_msg(bd.count == 0, "%s at %s: %s", bd.count ? bd.items[0].code : "",
                      bd.count ? bd.items[0].path : "", bd.count ? bd.items[0].message : "");
        char *again = encode(&res);
        ck_assert_str_eq(again, text);
        /* Both loaders give that model. */
        char *by_json = load_and_encode(manifest_load_json, text);
        char *by_yaml = load_and_encode(manifest_load_buffer, text);
        ck_assert_str_eq(by_json, text);
        ck_assert_str_eq(by_yaml, text);
        free(by_json);
        free(by_yaml);
        free(again);
        resource_clear(&res);
        diag_list_free(&bd);
        mnode_free(fast);
        free(text);
    }
    diag_list_free(&d);
    manifest_set_free(src);
}
END_TEST

enum { TAKEN, DECLINED, DECLINED_YAML_ERROR };

typedef struct json_case {
    const char *text;
    int expect;
} json_case;

static const json_case CASES[] = {
    {"{\"a\":\"b\"}", TAKEN},
    {"  {\"a\" : 1 , \"b\":[ 1, 2 ] ,\"c\" :{ } }", TAKEN},
    {"{\"a\":\"b\"}\n", TAKEN},
    {"{\"a\":\"b\"}\n\n  \n", TAKEN},
    {"{}", TAKEN},
    {"{\"a\":[[],[{}],[[[1]]]]}", TAKEN},
    {"{\"a\":-0,\"b\":1.5e+10,\"c\":0.0,\"d\":1E5,\"e\":-12,\"f\":123456789012345678901234567890,"
     "\"g\":2.5E-3}", TAKEN},
    {"{\"a\":true,\"b\":false,\"c\":null,\"d\":[true,false,null]}", TAKEN},
    {"{\"a\":\"q\\\"b\\\\s\\/f\\bb\\fn\\nr\\rt\\t\"}", TAKEN},
    {"{\"a\":\"\\u0000x\\u00e9\\u20AC\\uffff\\u0085\\u2028\\u001f\"}", TAKEN},
    {"{\"\xc3\xa9\":\"\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xbc\",\"b\":1,\"\xe4\xb8\xad\":[\"x\"]}", TAKEN},
    {"{\"a\":\"- b: c # d\",\"b\":\"&x *y !z %w @v `u'\",\"c\":\"---\",\"d\":\"...\",\"e\":\"a: b\"}",
     TAKEN},
    {"{\"<<\":\"x\",\"\":1,\"~\":\"~\",\"null\":null}", TAKEN},
    {"{\"k01\":1,\"k02\":1,\"k03\":1,\"k04\":1,\"k05\":1,\"k06\":1,\"k07\":1,\"k08\":1,\"k09\":1,"
     "\"k10\":1,\"k11\":1,\"k12\":1,\"k13\":1,\"k14\":1,\"k15\":1,\"k16\":1,\"k17\":1,\"k18\":1}",
     TAKEN},
    /* What YAML refuses, the JSON path declines so that YAML reports it. */
    {"{\"a\":1,\"a\":2}", DECLINED_YAML_ERROR},
    {"{\"k01\":1,\"k02\":1,\"k03\":1,\"k04\":1,\"k05\":1,\"k06\":1,\"k07\":1,\"k08\":1,\"k09\":1,"
     "\"k10\":1,\"k11\":1,\"k12\":1,\"k13\":1,\"k14\":1,\"k15\":1,\"k16\":1,\"k17\":1,\"k01\":1}",
     DECLINED_YAML_ERROR},
    {"{\"a\":\"\\ud83d\\ude00\"}", DECLINED_YAML_ERROR},
    {"{\"a\":\"\xff\"}", DECLINED_YAML_ERROR},
    {"{\"a\":\"\xc0\xaf\"}", DECLINED_YAML_ERROR},
    {"{\"a\":\"\xed\xa0\x80\"}", DECLINED_YAML_ERROR},
    {"{\"a\":\"\xe2\x82\"}", DECLINED_YAML_ERROR},
    {"{\"a\":\"\x7f\"}", DECLINED_YAML_ERROR},
    {"{\"a\":\"\xc2\x80\"}", DECLINED_YAML_ERROR},
    {"{\"a\":\"\xef\xbf\xbe\"}", DECLINED_YAML_ERROR},
    {"{\"a\":\"b\"", DECLINED_YAML_ERROR},
    {"{\"a\":\"b", DECLINED_YAML_ERROR},
    {"{\"a\":1} x", DECLINED_YAML_ERROR},
    {"{\"a\":\"b\\x\"}", DECLINED_YAML_ERROR},
    {"{\"a\":\"\\u12\"}", DECLINED_YAML_ERROR},
    {"{\"a\":1}{\"b\":2}", DECLINED_YAML_ERROR},
    /* Valid YAML, but not what the JSON path is sure of: YAML reads them. */
    {"{\"a\":\n1}", DECLINED},
    {"{\"a\":\t1}", DECLINED},
    {"{\"a\":1,}", DECLINED},
    {"\xef\xbb\xbf{\"a\":1}", DECLINED},
    {"[{\"a\":1}]", DECLINED},
    {"\"a\"", DECLINED},
    {"1", DECLINED},
    {"", DECLINED},
    {"  ", DECLINED},
    {"{a: 1}", DECLINED},
    {"---\n{\"a\":1}", DECLINED},
    {"{\"a\":tru}", DECLINED},
    {"{\"a\":01}", DECLINED},
    {"{\"a\":1.}", DECLINED},
    {"{\"a\":.5}", DECLINED},
    {"{\"a\":+1}", DECLINED},
    {"{\"a\":'b'}", DECLINED},
    {"{\"a\":\"\xe2\x80\xa8\"}", DECLINED},
    {"{\"a\":\"\xc2\x85\"}", DECLINED},
    {"{\"a\":\"\xef\xbb\xbf\"}", DECLINED},
    {"{\"a\":\"x\x01\"}", DECLINED},
    {"{\"a\":\"x\ty\"}", DECLINED},
    {"{\"a\":1}\r\n", DECLINED},
};

START_TEST(json_path_takes_what_yaml_reads_the_same_and_declines_the_rest)
{
    const json_case *c = &CASES[_i];
    size_t len = strlen(c->text);
    int r = both_ways(c->text, len, NULL);
    ck_assert_msg(r == (c->expect == TAKEN ? 0 : JSON_NODE_DECLINED), "case %d: got %d for: %s", _i,
                  r, c->text);
    if (c->expect == DECLINED_YAML_ERROR)
        ck_assert_msg(yaml_refuses(c->text, len), "case %d: YAML reads it without an error: %s", _i,
                      c->text);
}
END_TEST

/* A key is one for libyaml only while its ':' is within 1024 characters of its start. */
START_TEST(long_keys_are_taken_up_to_the_simple_key_limit_and_declined_past_it)
{
    char text[1200];
    for (size_t key = 990; key <= 1100; key += 110) {
        text[0] = '{';
        text[1] = '"';
        memset(text + 2, 'k', key);
        snprintf(text + 2 + key, sizeof(text) - 2 - key, "\":1}");
        ck_assert_int_eq(both_ways(text, strlen(text), NULL), key < 1000 ? 0 : JSON_NODE_DECLINED);
    }
    /* Past the limit YAML does refuse it: the JSON path must not take it. */
    ck_assert(yaml_refuses(text, strlen(text)));
}
END_TEST

/* Nesting: taken well inside the YAML decoder's limit, declined near it, where YAML refuses. */
START_TEST(deep_nesting_is_declined_before_the_yaml_limit)
{
    char text[400];
    for (int depth = 60; depth <= 70; depth++) {
        size_t n = 0;
        text[n++] = '{';
        text[n++] = '"';
        text[n++] = 'a';
        text[n++] = '"';
        text[n++] = ':';
        for (int i = 1; i < depth; i++)
            text[n++] = '[';
        for (int i = 1; i < depth; i++)
            text[n++] = ']';
        text[n++] = '}';
        text[n] = '\0';
        int r = both_ways(text, n, NULL);
        ck_assert_int_eq(r, depth < MANIFEST_MAX_DEPTH ? 0 : JSON_NODE_DECLINED);
    }
}
END_TEST

START_TEST(scalar_over_the_limit_is_declined_for_yaml_to_report)
{
    size_t len = MANIFEST_MAX_SCALAR_BYTES + 1;
    char *text = malloc(len + 16);
    ck_assert_ptr_nonnull(text);
    memcpy(text, "{\"a\":\"", 6);
    memset(text + 6, 'x', len);
    memcpy(text + 6 + len, "\"}", 3);
    ck_assert_int_eq(both_ways(text, strlen(text), NULL), JSON_NODE_DECLINED);
    /* One byte less is taken. */
    memcpy(text + 5 + len, "\"}", 3);
    ck_assert_int_eq(both_ways(text, strlen(text), NULL), 0);
    /* A number is a scalar too. */
    memcpy(text, "{\"a\":", 5);
    memset(text + 5, '1', len);
    memcpy(text + 5 + len, "}", 2);
    ck_assert_int_eq(both_ways(text, strlen(text), NULL), JSON_NODE_DECLINED);
    memcpy(text + 4 + len, "}", 2);
    ck_assert_int_eq(both_ways(text, strlen(text), NULL), 0);
    free(text);
}
END_TEST

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    /* xorshift64: the same sequence on every run, so a failure reproduces. */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Stored objects with a few bytes changed: whatever the JSON path takes, YAML reads the same. */
START_TEST(mutated_stored_objects_taken_by_the_json_path_read_the_same_by_yaml)
{
    static const char alphabet[] = "{}[]\",:\\ \n\t0123456789-+.eEtrufalsnxu/";
    static const unsigned char odd[] = {0x00, 0x7f, 0x80, 0x85, 0xa8, 0xbf, 0xc2, 0xc3, 0xe2,
                                        0xed, 0xef, 0xf0, 0xf4, 0xff};
    manifest_set *src = manifest_set_new();
    diag_list d = DIAG_LIST_INIT;
    ck_assert_int_eq(manifest_load_buffer(src, "rich.yaml", RICH, strlen(RICH), &d), 0);
    ck_assert_uint_eq(manifest_set_count(src), 3);
    size_t taken = 0, declined = 0;
    for (int round = 0; round < 20000; round++) {
        char *seed = encode(manifest_set_get(src, (size_t)round % 3));
        size_t len = strlen(seed);
        char *text = malloc(len * 2 + 8);
        ck_assert_ptr_nonnull(text);
        memcpy(text, seed, len);
        int edits = 1 + (int)(rng() % 3);
        for (int e = 0; e < edits && len > 0; e++) {
            size_t at = (size_t)(rng() % len);
            uint64_t op = rng() % 8;
            unsigned char c = rng() % 4 ? (unsigned char)alphabet[rng() % (sizeof(alphabet) - 1)]
                                        : odd[rng() % sizeof(odd)];
            if (op < 4) {
                text[at] = (char)c;                     /* replace */
            } else if (op < 6) {
                memmove(text + at + 1, text + at, len - at);
                text[at] = (char)c;                     /* insert */
                len++;
            } else if (op < 7) {
                memmove(text + at, text + at + 1, len - at - 1);
                len--;                                  /* delete */
            } else {
                size_t n = (size_t)(rng() % 24) + 1;    /* repeat a span: duplicate keys */
                if (at + n > len)
                    n = len - at;
                memmove(text + at + n, text + at, len - at);
                len += n;
            }
        }
        if (both_ways(text, len, NULL) == 0)
            taken++;
        else
            declined++;
        free(text);
        free(seed);
    }
    /* Both sides were exercised: many mutants are still JSON, many are not. */
    ck_assert_uint_ge(taken, 1000);
    ck_assert_uint_ge(declined, 1000);
    diag_list_free(&d);
    manifest_set_free(src);
}
END_TEST

/* --- through the store: corrupt objects keep their precise diagnostics --- */

static char tmpdir[64];

static store *open_store(void)
{
    char tmpl[] = "/tmp/meshca-test-json_node-XXXXXX", url[128], err[MESHCA_ERRBUF] = "";
    store *s = NULL;
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    memcpy(tmpdir, tmpl, sizeof(tmpl));
    snprintf(url, sizeof(url), "sqlite://%s/store/meshca.db", tmpdir);
    ck_assert_msg(store_open(url, &s, err) == STORE_OK, "store_open: %s", err);
    return s;
}

static void close_store(store *s)
{
    char cmd[128];
    store_close(s);
    /* Our own mkdtemp result: safe to hand to rm. */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    (void)!system(cmd);
}

static void put_raw(store *s, const char *kind, const char *name, const char *value)
{
    store_key key = {kind, "default", name};
    ck_assert_int_eq(store_put(s, &key, value, strlen(value), STORE_ANY_VERSION, NULL), STORE_OK);
}

#define DP_HEAD "{\"type\":\"Dataplane\",\"mesh\":\"default\",\"name\":"
static const char MESH_JSON[] = "{\"type\":\"Mesh\",\"name\":\"default\",\"mtls\":{\"enabledBackend\":"
                                "\"ca-1\",\"backends\":[{\"name\":\"ca-1\",\"type\":\"builtin\"}]}}";
static const char DP_GOOD[] = DP_HEAD "\"dp-a-good\",\"networking\":{\"address\":\"127.0.0.1\","
                              "\"inbound\":[{\"port\":8443,\"tags\":{\"kuma.io/service\":\"web\"}}]}}";
static const char DP_BAD_JSON[] = DP_HEAD "\"dp-b-bad-json\",\"networking\":{\"address\":\"127.0.0.1\"";
static const char DP_WRONG_TYPE[] = DP_HEAD "\"dp-c-wrong-type\",\"networking\":{\"address\":"
                                    "\"127.0.0.1\",\"inbound\":[{\"port\":\"8443\",\"tags\":"
                                    "{\"kuma.io/service\":\"web\"}}]}}";
static const char DP_UNKNOWN[] = DP_HEAD "\"dp-d-unknown\",\"networking\":{\"adress\":\"127.0.0.1\","
                                 "\"inbound\":[{\"port\":8443,\"tags\":{\"kuma.io/service\":\"web\"}}]}}";

static const diag *find_path(const diag_list *diags, const char *file, const char *path)
{
    for (size_t i = 0; i < diags->count; i++)
        if (diags->items[i].file && !strcmp(diags->items[i].file, file) &&
            !strcmp(diags->items[i].path, path))
            return &diags->items[i];
    ck_abort_msg("no diagnostic for %s at '%s' among %zu", file, path, diags->count);
    return NULL;
}

/* The column of `needle`'s first byte in `text` (one line, ASCII), 1-based. */
static unsigned column_of(const char *text, const char *needle)
{
    const char *at = strstr(text, needle);
    ck_assert_ptr_nonnull(at);
    return (unsigned)(at - text) + 1;
}

START_TEST(corrupt_stored_objects_keep_the_yaml_diagnostic_with_path_line_and_column)
{
    store *s = open_store();
    put_raw(s, STATE_MESHES, "default", MESH_JSON);
    put_raw(s, STATE_DATAPLANES, "dp-a-good", DP_GOOD);
    put_raw(s, STATE_DATAPLANES, "dp-b-bad-json", DP_BAD_JSON);
    put_raw(s, STATE_DATAPLANES, "dp-c-wrong-type", DP_WRONG_TYPE);
    put_raw(s, STATE_DATAPLANES, "dp-d-unknown", DP_UNKNOWN);

    manifest_set *set = manifest_set_new();
    diag_list diags = DIAG_LIST_INIT;
    ck_assert_int_eq(state_load_resources(s, NULL, set, &diags), 0);

    /* Cut short: YAML's syntax error at the end of the stream, which libyaml puts at the start
     * of the line after a last line without a newline. */
    const diag *d = find_path(&diags, "store:dataplanes/default/dp-b-bad-json", "");
    ck_assert_str_eq(d->code, "corrupt-object");
    ck_assert_uint_eq(d->line, 2);
    ck_assert_uint_eq(d->column, 1);
    ck_assert_ptr_nonnull(strstr(d->message, "did not find expected ',' or '}'"));
    /* A wrong type: the field path and the place of the value. */
    d = find_path(&diags, "store:dataplanes/default/dp-c-wrong-type", "networking.inbound[0].port");
    ck_assert_str_eq(d->code, "corrupt-object");
    ck_assert_uint_eq(d->line, 1);
    ck_assert_uint_eq(d->column, column_of(DP_WRONG_TYPE, "\"8443\""));
    /* An unknown field: its path, its place, and the field meant. */
    d = find_path(&diags, "store:dataplanes/default/dp-d-unknown", "networking.adress");
    ck_assert_str_eq(d->code, "corrupt-object");
    ck_assert_uint_eq(d->line, 1);
    ck_assert_uint_eq(d->column, column_of(DP_UNKNOWN, "\"adress\""));
    ck_assert_ptr_nonnull(strstr(d->message, "address"));

    /* Exactly what the YAML decoder says of each stored text, code aside. */
    static const char *const objects[][2] = {{"dp-b-bad-json", DP_BAD_JSON},
                                             {"dp-c-wrong-type", DP_WRONG_TYPE},
                                             {"dp-d-unknown", DP_UNKNOWN}};
    size_t expected = 0;
    for (size_t o = 0; o < 3; o++) {
        char file[128];
        snprintf(file, sizeof(file), "store:dataplanes/default/%s", objects[o][0]);
        manifest_set *alone = manifest_set_new();
        diag_list yd = DIAG_LIST_INIT;
        manifest_load_buffer(alone, file, objects[o][1], strlen(objects[o][1]), &yd);
        ck_assert_uint_ge(yd.count, 1);
        for (size_t i = 0; i < yd.count; i++) {
            const diag *got = find_path(&diags, file, yd.items[i].path);
            ck_assert_str_eq(got->message, yd.items[i].message);
            ck_assert_uint_eq(got->line, yd.items[i].line);
            ck_assert_uint_eq(got->column, yd.items[i].column);
            ck_assert_int_eq(got->severity, yd.items[i].severity);
        }
        expected += yd.count;
        diag_list_free(&yd);
        manifest_set_free(alone);
    }
    ck_assert_uint_eq(diags.count, expected);

    /* The good objects loaded; the loader keeps what YAML keeps of the others (as before). */
    const dataplane **dps = NULL;
    size_t ndps = 0;
    ck_assert_ptr_nonnull(manifest_set_find_mesh(set, "default"));
    ck_assert_int_eq(manifest_set_dataplanes_of(set, "default", &dps, &ndps), 0);
    ck_assert_uint_ge(ndps, 1);
    ck_assert_str_eq(dps[0]->name.value, "dp-a-good");
    ck_assert_int_eq(dps[0]->inbounds[0].port, 8443);
    ck_assert_str_eq(dps[0]->name.mark.file, "store:dataplanes/default/dp-a-good");
    ck_assert_uint_eq(dps[0]->name.mark.column, column_of(DP_GOOD, "\"dp-a-good\""));
    free(dps);
    diag_list_free(&diags);
    manifest_set_free(set);
    close_store(s);
}
END_TEST

static Suite *json_node_suite(void)
{
    Suite *s = suite_create("json_node");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, every_fixture_and_its_stored_encoding_decode_to_the_same_tree_and_model);
    tcase_add_loop_test(tc, json_path_takes_what_yaml_reads_the_same_and_declines_the_rest, 0,
                        (int)(sizeof(CASES) / sizeof(CASES[0])));
    tcase_add_test(tc, long_keys_are_taken_up_to_the_simple_key_limit_and_declined_past_it);
    tcase_add_test(tc, deep_nesting_is_declined_before_the_yaml_limit);
    tcase_add_test(tc, scalar_over_the_limit_is_declined_for_yaml_to_report);
    tcase_add_test(tc, mutated_stored_objects_taken_by_the_json_path_read_the_same_by_yaml);
    tcase_add_test(tc, corrupt_stored_objects_keep_the_yaml_diagnostic_with_path_line_and_column);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(json_node_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
