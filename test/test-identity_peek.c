/* test-identity_peek.c - Check suite for identity_peek: a stored identity's small fields without a JSON tree. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/state.h"
#include "reconciler/store/identity_peek.h"

static const char PEM[] = "-----BEGIN CERTIFICATE-----\nMIIB\"quoted\\\n-----END CERTIFICATE-----\n";

/* A full record as identity_encode writes it: PEM strings with escapes, tags with newlines. */
static char *encoded(bool pending)
{
    char *names[] = {"ca-2", "ca-1", NULL};
    identity id = {
        .mesh = "default", .dataplane = "web-01", .backend = "ca-2", .generation = 7,
        .cert_pem = (char *)PEM, .public_key_pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        .csr_pem = NULL, .pending_key_pem = pending ? "-----BEGIN PUBLIC KEY-----\nBB\n-----END PUBLIC KEY-----\n" : NULL,
        .bundle_digest = "abc123", .bundle_backends = names, .nbundle_backends = 2,
        .serial = "0f1e", .not_before = -5, .not_after = 1900000000, .renew_at = 1800000000,
        .ca_fingerprint = "AB:CD", .tags_digest = "kuma.io/service=web\nversion=v1", .rsa = true,
        .cross_signed = false, .regenerations = 3, .last_regeneration = "2026-11-29T14:00:00Z",
        .since = pending ? 0 : 1764400000,
    };
    char *text = identity_encode(&id);
    ck_assert_ptr_nonnull(text);
    return text;
}

START_TEST(peek_reads_every_small_field_and_flags_the_large_ones)
{
    char *text = encoded(false);
    identity id;
    unsigned flags = 99;
    ck_assert_int_eq(identity_peek(text, strlen(text), &id, &flags), 0);
    ck_assert_str_eq(id.mesh, "default");
    ck_assert_str_eq(id.dataplane, "web-01");
    ck_assert_str_eq(id.backend, "ca-2");
    ck_assert_int_eq(id.generation, 7);
    ck_assert_str_eq(id.bundle_digest, "abc123");
    ck_assert_uint_eq(id.nbundle_backends, 2);
    ck_assert_str_eq(id.bundle_backends[0], "ca-2");
    ck_assert_str_eq(id.bundle_backends[1], "ca-1");
    ck_assert_str_eq(id.serial, "0f1e");
    ck_assert_int_eq(id.not_before, -5);
    ck_assert_int_eq(id.not_after, 1900000000);
    ck_assert_int_eq(id.renew_at, 1800000000);
    ck_assert_str_eq(id.ca_fingerprint, "AB:CD");
    ck_assert_str_eq(id.tags_digest, "kuma.io/service=web\nversion=v1");   /* \n unescaped */
    ck_assert(id.rsa);
    ck_assert(!id.cross_signed);
    ck_assert_int_eq(id.regenerations, 3);
    ck_assert_str_eq(id.last_regeneration, "2026-11-29T14:00:00Z");
    ck_assert(id.since == 1764400000);
    /* The large fields are only flagged, never copied. */
    ck_assert_uint_eq(flags, PEEK_CERTIFICATE | PEEK_PUBLIC_KEY);
    ck_assert_ptr_null(id.cert_pem);
    ck_assert_ptr_null(id.public_key_pem);
    ck_assert_ptr_null(id.pending_key_pem);
    identity_clear(&id);
    free(text);

    text = encoded(true);
    ck_assert_int_eq(identity_peek(text, strlen(text), &id, &flags), 0);
    ck_assert_uint_eq(flags, PEEK_CERTIFICATE | PEEK_PUBLIC_KEY | PEEK_PENDING_KEY);
    ck_assert(id.since == 0);   /* a record from before since was kept */
    identity_clear(&id);
    free(text);
}
END_TEST

/* Whatever it does not take is left to identity_read (-1), never half-read. */
START_TEST(peek_refuses_what_it_does_not_take)
{
    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"mesh\":\"m\"}",                                      /* no dataplane */
        "{\"mesh\":\"m\",\"dataplane\":\"d\"",                    /* truncated */
        "{\"mesh\":\"m\",\"dataplane\":\"d\"} x",                 /* trailing text */
        "{\"mesh\":\"m\\u0041\",\"dataplane\":\"d\"}",            /* \u escape */
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"tags\":{\"a\":1}}",  /* nested object */
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"generation\":1.5}",  /* not an integer */
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"bundleBackends\":[1]}",
        "{\"mesh\":\"m\" \"dataplane\":\"d\"}",                   /* missing comma */
        "{\"mesh\":\"m\",\"dataplane\":\"d\\\"}",                 /* quote escaped: unterminated */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        identity id = {0};
        unsigned flags = 0;
        ck_assert_msg(identity_peek(bad[i], strlen(bad[i]), &id, &flags) == -1, "took: %s", bad[i]);
        ck_assert_ptr_null(id.mesh);
    }
    /* Escaped quotes and backslashes inside a value end where the string ends. */
    const char *ok = "{\"mesh\":\"m\\\\\",\"dataplane\":\"d\\\"x\",\"generation\":2,\"rsa\":false,"
                     "\"crossSigned\":true,\"csr\":null,\"bundleBackends\":[]}";
    identity id;
    unsigned flags;
    ck_assert_int_eq(identity_peek(ok, strlen(ok), &id, &flags), 0);
    ck_assert_str_eq(id.mesh, "m\\");
    ck_assert_str_eq(id.dataplane, "d\"x");
    ck_assert_int_eq(id.generation, 2);
    ck_assert(id.cross_signed);
    ck_assert_uint_eq(id.nbundle_backends, 0);
    ck_assert_ptr_nonnull(id.bundle_backends);
    ck_assert_uint_eq(flags, 0);
    identity_clear(&id);
}
END_TEST

/* Integers as jansson reads them (the scanner identity_json shares): a leading zero is refused
 * (identity_read refuses it too), the smallest long long is taken. */
START_TEST(peek_reads_integers_as_identity_read_does)
{
    const char *zero = "{\"mesh\":\"m\",\"dataplane\":\"d\",\"generation\":01}";
    identity id = {0};
    unsigned flags = 0;
    ck_assert_int_eq(identity_peek(zero, strlen(zero), &id, &flags), -1);
    ck_assert_ptr_null(id.mesh);
    const char *min = "{\"mesh\":\"m\",\"dataplane\":\"d\",\"notBefore\":-9223372036854775808,"
                      "\"notAfter\":9223372036854775807}";
    ck_assert_int_eq(identity_peek(min, strlen(min), &id, &flags), 0);
    ck_assert(id.not_before == INT64_MIN);
    ck_assert(id.not_after == INT64_MAX);
    identity_clear(&id);
    const char *over = "{\"mesh\":\"m\",\"dataplane\":\"d\",\"notAfter\":9223372036854775808}";
    ck_assert_int_eq(identity_peek(over, strlen(over), &id, &flags), -1);
}
END_TEST

/* identity_read counts the bundle names before allocating their array: out of memory there
 * leaves a count without an array, which identity_clear must take (oom-reconcile.sh found it
 * as a SIGSEGV). */
START_TEST(identity_clear_takes_a_count_without_names)
{
    identity id = {0};
    id.mesh = strdup("default");
    id.nbundle_backends = 3;
    id.bundle_backends = NULL;
    identity_clear(&id);
    ck_assert_ptr_null(id.mesh);
    ck_assert_uint_eq(id.nbundle_backends, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("identity_peek");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, peek_reads_every_small_field_and_flags_the_large_ones);
    tcase_add_test(tc, peek_refuses_what_it_does_not_take);
    tcase_add_test(tc, peek_reads_integers_as_identity_read_does);
    tcase_add_test(tc, identity_clear_takes_a_count_without_names);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
