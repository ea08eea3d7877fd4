/* test-etcd_range_json.c - Check suite for etcd_range_json: etcd's range answers read without a JSON tree. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/store/etcd_range_json.h"

static void sink_free(etcd_range_sink *s)
{
    etcd_kvs_free(s->kvs, s->n);
    memset(s, 0, sizeof(*s));
}

static int read_text(const char *text, etcd_range_sink *s)
{
    return etcd_range_json_read(text, strlen(text), s);
}

/* What etcd 3.4's gateway writes: int64 as strings, "lease" and zero values left out. */
START_TEST(reads_keys_values_revisions_more_and_count_as_the_gateway_writes_them)
{
    /* "/k/a" = L2svYQ==, "v\0\xff" = dgD/, "/k/b" = L2svYg== */
    const char *text =
        "{\"header\":{\"cluster_id\":\"1\",\"member_id\":\"2\",\"revision\":\"42\",\"raft_term\":\"2\"},"
        "\"kvs\":[{\"key\":\"L2svYQ==\",\"create_revision\":\"5\",\"mod_revision\":\"7\","
        "\"version\":\"2\",\"value\":\"dgD/\",\"lease\":\"9\"},"
        " {\"key\":\"L2svYg==\",\"create_revision\":6,\"mod_revision\":6,\"version\":1}],"
        "\"more\":true,\"count\":\"300\"}\n";
    etcd_range_sink s = {0};

    ck_assert_int_eq(read_text(text, &s), 0);
    ck_assert_uint_eq(s.n, 2);
    ck_assert_int_eq(s.revision, 42);
    ck_assert_int_eq(s.more, 1);
    ck_assert_int_eq(s.count, 300);
    ck_assert_str_eq(s.kvs[0].key, "/k/a");
    ck_assert_uint_eq(s.kvs[0].key_len, 4);
    ck_assert_uint_eq(s.kvs[0].value_len, 3);
    ck_assert_int_eq(memcmp(s.kvs[0].value, "v\0\xff", 3), 0);
    ck_assert_int_eq(s.kvs[0].create_revision, 5);
    ck_assert_int_eq(s.kvs[0].mod_revision, 7);
    ck_assert_int_eq(s.kvs[0].version, 2);
    ck_assert_int_eq(s.kvs[0].lease, 9);
    /* keys_only (no "value"): an empty value, as the JSON reader gives. */
    ck_assert_str_eq(s.kvs[1].key, "/k/b");
    ck_assert_ptr_nonnull(s.kvs[1].value);
    ck_assert_uint_eq(s.kvs[1].value_len, 0);
    ck_assert_int_eq(s.kvs[1].mod_revision, 6);
    ck_assert_int_eq(s.kvs[1].lease, 0);

    /* A second answer appends; an empty one (no "kvs", no "more", no "count") adds nothing. */
    ck_assert_int_eq(read_text("{\"header\":{\"revision\":\"43\"},\"kvs\":[{\"key\":\"L2svYw==\"}],"
                               "\"count\":\"1\"}", &s), 0);
    ck_assert_uint_eq(s.n, 3);
    ck_assert_str_eq(s.kvs[2].key, "/k/c");
    ck_assert_int_eq(s.more, 0);
    ck_assert_int_eq(s.count, 1);
    ck_assert_int_eq(read_text("{\"header\":{\"revision\":\"44\"}}", &s), 0);
    ck_assert_uint_eq(s.n, 3);
    ck_assert_int_eq(s.revision, 44);
    ck_assert_int_eq(s.count, 0);
    sink_free(&s);
}
END_TEST

START_TEST(skips_unknown_members_of_any_shape)
{
    const char *text = "{ \"extra\" : [1, {\"a\": [true, false, null]}, \"s\"], \"header\": {\"x\": {},"
                       " \"revision\": 8, \"y\": []}, \"kvs\": [{\"future\": {\"n\": -3},"
                       " \"key\": \"L2svYQ==\", \"value\": \"\"}], \"more\": false }";
    etcd_range_sink s = {0};

    ck_assert_int_eq(read_text(text, &s), 0);
    ck_assert_uint_eq(s.n, 1);
    ck_assert_int_eq(s.revision, 8);
    ck_assert_str_eq(s.kvs[0].key, "/k/a");
    ck_assert_uint_eq(s.kvs[0].value_len, 0);
    sink_free(&s);
}
END_TEST

/* Anything else is left to the JSON reader (-1), which reports it, and adds no key. */
START_TEST(refuses_error_answers_escapes_and_malformed_text_adding_nothing)
{
    static const char *const bad[] = {
        /* etcd's error answer: no header */
        "{\"error\":\"etcdserver: mvcc: required revision has been compacted\","
        "\"code\":11,\"message\":\"etcdserver: mvcc: required revision has been compacted\"}",
        /* an escape anywhere */
        "{\"header\":{\"revision\":\"1\"},\"note\":\"a\\\"b\",\"kvs\":[]}",
        /* not base64 */
        "{\"header\":{\"revision\":\"1\"},\"kvs\":[{\"key\":\"L2s*YQ==\"}]}",
        "{\"header\":{\"revision\":\"1\"},\"kvs\":[{\"key\":\"L2s\"}]}",
        /* a kv without a key */
        "{\"header\":{\"revision\":\"1\"},\"kvs\":[{\"value\":\"dgD/\"}]}",
        /* numbers that are not int64 */
        "{\"header\":{\"revision\":\"1x\"}}",
        "{\"header\":{\"revision\":1.5}}",
        /* truncated, trailing text, not an object */
        "{\"header\":{\"revision\":\"1\"},\"kvs\":[{\"key\":\"L2svYQ==\"}",
        "{\"header\":{\"revision\":\"1\"}} x",
        "[]",
        "",
        /* too deep to be etcd's */
        "{\"header\":{\"revision\":\"1\"},\"x\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}",
    };
    etcd_range_sink s = {0};

    ck_assert_int_eq(read_text("{\"header\":{\"revision\":\"1\"},\"kvs\":[{\"key\":\"L2svYQ==\"}]}", &s), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(read_text(bad[i], &s) == -1, "accepted: %s", bad[i]);
        ck_assert_uint_eq(s.n, 1);
    }
    /* A good kv before a bad one in the same answer is taken back too. */
    ck_assert_int_eq(read_text("{\"header\":{\"revision\":\"1\"},\"kvs\":[{\"key\":\"L2svYg==\"},"
                               "{\"key\":\"?\"}]}", &s), -1);
    ck_assert_uint_eq(s.n, 1);
    ck_assert_str_eq(s.kvs[0].key, "/k/a");
    sink_free(&s);
}
END_TEST

/* A member given twice counts once, the last one (as jansson's reader, which the JSON fallback
 * uses); the first value is freed (wiped: it may be a secret's). An empty "kvs", an empty object
 * as the answer or a kv, are what they say. */
START_TEST(member_given_twice_takes_the_last_and_empty_containers_are_empty)
{
    /* "/k/a" L2svYQ==, "/k/b" L2svYg==, "x" eA==, "y" eQ== */
    const char *text = "{\"header\":{\"revision\":\"3\",\"revision\":\"9\"},\"kvs\":[{\"key\":\"L2svYQ==\","
                       "\"value\":\"eA==\",\"value\":\"eQ==\",\"key\":\"L2svYg==\"}],\"count\":\"1\"}";
    etcd_range_sink s = {0};

    ck_assert_int_eq(read_text(text, &s), 0);
    ck_assert_uint_eq(s.n, 1);
    ck_assert_int_eq(s.revision, 9);
    ck_assert_str_eq(s.kvs[0].key, "/k/b");
    ck_assert_uint_eq(s.kvs[0].key_len, 4);
    ck_assert_str_eq(s.kvs[0].value, "y");
    ck_assert_uint_eq(s.kvs[0].value_len, 1);
    ck_assert_int_eq(read_text("{\"header\":{\"revision\":\"10\"},\"kvs\":[ ],\"more\":false}", &s), 0);
    ck_assert_uint_eq(s.n, 1);
    ck_assert_int_eq(s.revision, 10);
    /* {} has no header revision: not a range answer */
    ck_assert_int_eq(read_text("{ }", &s), -1);
    /* a kv {} has no key */
    ck_assert_int_eq(read_text("{\"header\":{\"revision\":\"11\"},\"kvs\":[{}]}", &s), -1);
    ck_assert_uint_eq(s.n, 1);
    sink_free(&s);
}
END_TEST

static Suite *range_json_suite(void)
{
    Suite *s = suite_create("etcd_range_json");
    TCase *tc = tcase_create("read");

    tcase_add_test(tc, reads_keys_values_revisions_more_and_count_as_the_gateway_writes_them);
    tcase_add_test(tc, skips_unknown_members_of_any_shape);
    tcase_add_test(tc, refuses_error_answers_escapes_and_malformed_text_adding_nothing);
    tcase_add_test(tc, member_given_twice_takes_the_last_and_empty_containers_are_empty);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(range_json_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
