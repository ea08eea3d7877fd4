/* test-identity_json.c - Check suite for identity_json: identity records written and read without a JSON tree. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/state.h"
#include "reconciler/store/identity_json.h"

/* The writer identity_encode used before (jansson): the format every stored record has. */
static char *jansson_encode(const identity *id)
{
    json_t *names = json_array();
    for (size_t i = 0; names && id->bundle_backends && i < id->nbundle_backends; i++)
        json_array_append_new(names, json_string(id->bundle_backends[i]));
    json_t *obj = json_pack(
        "{s:s, s:s, s:s?, s:I, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:o?, s:s?, s:I, s:I, s:I,"
        " s:s?, s:s?, s:b, s:b, s:I, s:s?}",
        "mesh", id->mesh, "dataplane", id->dataplane, "backend", id->backend,
        "generation", (json_int_t)id->generation, "certificate", id->cert_pem,
        "publicKey", id->public_key_pem, "csr", id->csr_pem,
        "pendingPublicKey", id->pending_key_pem, "pendingCsr", id->pending_csr_pem,
        "bundleDigest", id->bundle_digest, "bundleBackends", names, "serial", id->serial,
        "notBefore", (json_int_t)id->not_before, "notAfter", (json_int_t)id->not_after,
        "renewAt", (json_int_t)id->renew_at, "caFingerprint", id->ca_fingerprint,
        "tags", id->tags_digest, "rsa", id->rsa, "crossSigned", id->cross_signed,
        "regenerations", (json_int_t)id->regenerations, "lastRegeneration", id->last_regeneration);
    if (!obj)
        return NULL;
    /* since came later: written last, and only when set, so older records are unchanged. */
    if (id->since && json_object_set_new(obj, "since", json_integer(id->since)) < 0) {
        json_decref(obj);
        return NULL;
    }
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    return text;
}

static const char CERT[] = "-----BEGIN CERTIFICATE-----\nMIIB\"quoted\\/slash\n-----END CERTIFICATE-----\n";
static const char PUB[] = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQ==\n-----END PUBLIC KEY-----\n";

/* Every byte from 0x01 to 0x7f, then UTF-8 of 2, 3 and 4 bytes (é, U+2028, U+1F512). */
static char all_bytes[128 + 16];

static void fill_all_bytes(void)
{
    size_t k = 0;
    for (int c = 1; c < 128; c++)
        all_bytes[k++] = (char)c;
    memcpy(all_bytes + k, "\xc3\xa9\xe2\x80\xa8\xf0\x9f\x94\x92", 9);
    all_bytes[k + 9] = '\0';
}

static char *names_a[] = {"ca-2", "ca-1", NULL};
static char *names_odd[] = {"tab\there", "quote\"back\\slash", "\xc3\xa9t\xc3\xa9", NULL};

/* Records of every shape a pass writes, and strings that need each kind of escape. */
static identity sample(int i)
{
    identity full = {
        .mesh = "default", .dataplane = "web-01", .backend = "ca-2", .generation = 7,
        .cert_pem = (char *)CERT, .public_key_pem = (char *)PUB, .csr_pem = "-----CSR-----\n",
        .bundle_digest = "abc123", .bundle_backends = names_a, .nbundle_backends = 2,
        .serial = "0f1e", .not_before = -5, .not_after = 1900000000, .renew_at = 1800000000,
        .ca_fingerprint = "AB:CD", .tags_digest = "kuma.io/service=web\nversion=v1", .rsa = true,
        .cross_signed = false, .regenerations = 3, .last_regeneration = "2026-11-29T14:00:00Z",
        .since = 1764400000,
    };
    identity pending = {.mesh = "m", .dataplane = "d", .pending_key_pem = (char *)PUB,
                        .pending_csr_pem = "csr\r\n"};
    identity odd = full;
    switch (i) {
    case 0:
        return full;
    case 1:
        return pending;
    case 2:
        /* Escapes in every string field, names too; extreme integers; both booleans set. */
        odd.mesh = all_bytes;
        odd.dataplane = "d\"q\\b\b\f\n\r\t\x01\x1f\x7f";
        odd.backend = NULL;
        odd.csr_pem = NULL;
        odd.tags_digest = all_bytes;
        odd.bundle_backends = names_odd;
        odd.nbundle_backends = 3;
        odd.generation = 9223372036854775807LL;
        odd.not_before = -9223372036854775807LL - 1;
        odd.since = 9223372036854775807LL;
        odd.regenerations = 0;
        odd.cross_signed = true;
        odd.rsa = false;
        return odd;
    default:
        /* No bundle names at all, every optional string absent. */
        odd.backend = odd.csr_pem = odd.bundle_digest = odd.serial = odd.ca_fingerprint = NULL;
        odd.tags_digest = odd.last_regeneration = NULL;
        odd.bundle_backends = NULL;
        odd.nbundle_backends = 0;
        odd.since = 0;   /* a record from before since was kept */
        return odd;
    }
}
#define NSAMPLES 4

static void assert_str_or_null(const char *got, const char *want)
{
    if (!want)
        ck_assert_ptr_null(got);
    else
        ck_assert_str_eq(got, want);
}

static void assert_same_identity(const identity *got, const identity *want)
{
    assert_str_or_null(got->mesh, want->mesh);
    assert_str_or_null(got->dataplane, want->dataplane);
    assert_str_or_null(got->backend, want->backend);
    ck_assert_int_eq(got->generation, want->generation);
    assert_str_or_null(got->cert_pem, want->cert_pem);
    assert_str_or_null(got->public_key_pem, want->public_key_pem);
    assert_str_or_null(got->csr_pem, want->csr_pem);
    assert_str_or_null(got->pending_key_pem, want->pending_key_pem);
    assert_str_or_null(got->pending_csr_pem, want->pending_csr_pem);
    assert_str_or_null(got->bundle_digest, want->bundle_digest);
    ck_assert_uint_eq(got->nbundle_backends, want->nbundle_backends);
    ck_assert_ptr_nonnull(got->bundle_backends);   /* identity_read always allocates it */
    for (size_t i = 0; i < want->nbundle_backends; i++)
        ck_assert_str_eq(got->bundle_backends[i], want->bundle_backends[i]);
    assert_str_or_null(got->serial, want->serial);
    ck_assert_int_eq(got->not_before, want->not_before);
    ck_assert_int_eq(got->not_after, want->not_after);
    ck_assert_int_eq(got->renew_at, want->renew_at);
    assert_str_or_null(got->ca_fingerprint, want->ca_fingerprint);
    assert_str_or_null(got->tags_digest, want->tags_digest);
    ck_assert_int_eq(got->rsa, want->rsa);
    ck_assert_int_eq(got->cross_signed, want->cross_signed);
    ck_assert_int_eq(got->regenerations, want->regenerations);
    assert_str_or_null(got->last_regeneration, want->last_regeneration);
    ck_assert(got->since == want->since);
}

START_TEST(encode_writes_what_jansson_wrote_byte_for_byte)
{
    fill_all_bytes();
    for (int i = 0; i < NSAMPLES; i++) {
        identity id = sample(i);
        char *want = jansson_encode(&id), *got = identity_json_encode(&id);
        ck_assert_ptr_nonnull(want);
        ck_assert_ptr_nonnull(got);
        ck_assert_str_eq(got, want);
        /* identity_encode (state.c) is this writer. */
        char *via_state = identity_encode(&id);
        ck_assert_str_eq(via_state, want);
        free(via_state);
        free(want);
        free(got);
    }
}
END_TEST

START_TEST(encode_escapes_as_json_requires)
{
    identity id = sample(1);
    id.dataplane = "a\"b\\c\nd\x01\x1f/\x7f";
    char *text = identity_json_encode(&id);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text, "\"dataplane\":\"a\\\"b\\\\c\\nd\\u0001\\u001F/\x7f\","));
    /* Absent optional strings are null; the names an empty array. */
    ck_assert_ptr_nonnull(strstr(text, "\"backend\":null,"));
    ck_assert_ptr_nonnull(strstr(text, "\"bundleBackends\":[],"));
    ck_assert(strncmp(text, "{\"mesh\":\"m\",", 12) == 0);
    ck_assert_int_eq(text[strlen(text) - 1], '}');
    /* Valid JSON that jansson reads back to the same string. */
    json_error_t err;
    json_t *obj = json_loads(text, 0, &err);
    ck_assert_msg(obj != NULL, "%s", err.text);
    ck_assert_str_eq(json_string_value(json_object_get(obj, "dataplane")), id.dataplane);
    json_decref(obj);
    free(text);
}
END_TEST

/* The writer copies 8 bytes at a time where none needs escaping: an escape, a control, DEL or a
 * UTF-8 sequence at every offset of strings of every length up to 3 words, as jansson wrote it. */
START_TEST(encode_matches_jansson_with_an_escape_at_every_offset_of_a_word)
{
    static const char *const specials[] = {"\"", "\\", "\n", "\t", "\x01", "\x1f", "\x7f", " ",
                                           "~", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    char text[64];
    for (size_t len = 0; len <= 24; len++)
        for (size_t pos = 0; pos <= len; pos++)
            for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
                size_t sl = strlen(specials[k]);
                memset(text, 'a' + (int)(len % 26), len);
                memcpy(text + pos, specials[k], sl);
                text[pos + sl] = '\0';
                if (pos + sl < len)
                    text[len] = '\0';
                identity id = sample(1);
                id.serial = text;
                id.cert_pem = text;
                char *want = jansson_encode(&id), *got = identity_json_encode(&id);
                ck_assert_ptr_nonnull(want);
                ck_assert_ptr_nonnull(got);
                ck_assert_str_eq(got, want);
                free(want);
                free(got);
            }
    /* A word with an invalid byte is refused, wherever the byte is. */
    for (size_t pos = 0; pos < 16; pos++) {
        memset(text, 'b', 16);
        text[16] = '\0';
        text[pos] = (char)0xff;
        identity id = sample(1);
        id.serial = text;
        ck_assert_ptr_null(identity_json_encode(&id));
    }
}
END_TEST

/* Integers are written without snprintf: every digit count, both signs, the 64-bit edges. */
START_TEST(encode_writes_integers_as_jansson_does)
{
    long long vals[64];
    size_t n = 0;
    vals[n++] = 0;
    vals[n++] = 9223372036854775807LL;
    vals[n++] = -9223372036854775807LL - 1;
    for (int e = 0; e <= 18; e++) {
        long long p = 1;
        for (int k = 0; k < e; k++)
            p *= 10;
        vals[n++] = p;
        vals[n++] = -p;
        vals[n++] = p - 1 ? -(p - 1) : 7;
    }
    for (size_t i = 0; i < n; i++) {
        identity id = sample(0);
        id.generation = vals[i];
        id.not_before = vals[i];
        id.not_after = vals[(i + 1) % n];
        id.renew_at = vals[(i + 2) % n];
        id.regenerations = vals[(i + 3) % n];
        char *want = jansson_encode(&id), *got = identity_json_encode(&id);
        ck_assert_ptr_nonnull(want);
        ck_assert_ptr_nonnull(got);
        ck_assert_str_eq(got, want);
        free(want);
        free(got);
    }
}
END_TEST

START_TEST(encode_refuses_what_jansson_refused)
{
    fill_all_bytes();
    identity id = sample(0);
    id.mesh = NULL;
    ck_assert_ptr_null(identity_json_encode(&id));
    id = sample(0);
    id.dataplane = NULL;
    ck_assert_ptr_null(identity_json_encode(&id));
    /* Invalid UTF-8: a stray continuation byte, an overlong '/', a surrogate, a cut sequence. */
    static const char *const bad[] = {"a\x80", "\xc0\xaf", "\xed\xa0\x80", "\xe2\x80", "\xf5\x80\x80\x80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        id = sample(0);
        id.serial = (char *)bad[i];
        ck_assert_ptr_null(jansson_encode(&id));
        ck_assert_ptr_null(identity_json_encode(&id));
    }
    /* A bundle name jansson cannot take is left out, not the record. */
    char *names[] = {"ca-1", NULL, "\xff", "ca-2", NULL};
    id = sample(0);
    id.bundle_backends = names;
    id.nbundle_backends = 4;
    char *want = jansson_encode(&id), *got = identity_json_encode(&id);
    ck_assert_ptr_nonnull(strstr(got, "\"bundleBackends\":[\"ca-1\",\"ca-2\"],"));
    ck_assert_str_eq(got, want);
    free(want);
    free(got);
}
END_TEST

START_TEST(decode_round_trips_every_field)
{
    fill_all_bytes();
    for (int i = 0; i < NSAMPLES; i++) {
        identity want = sample(i), got;
        char *text = identity_json_encode(&want);
        ck_assert_ptr_nonnull(text);
        ck_assert_int_eq(identity_json_decode(text, strlen(text), &got), 0);
        assert_same_identity(&got, &want);
        identity_clear(&got);
        free(text);
    }
}
END_TEST

/* What jansson reads: whitespace, any key order, unknown fields, null for absent, \/ escapes,
 * a repeated key (the last wins). */
START_TEST(decode_reads_any_valid_layout_as_jansson_does)
{
    static const char text[] =
        " {\n \"generation\" : 2 , \"extra\": \"x\", \"extraNum\": 5, \"extraBool\": true,"
        " \"certificate\":\"C\\/1\", \"publicKey\": \"P\",\"bundleBackends\": [ \"b1\" , \"b2\" ],"
        " \"dataplane\":\"first\", \"dataplane\":\"d\", \"mesh\":\"m\", \"csr\": null,"
        " \"rsa\": false, \"crossSigned\": true, \"notAfter\": -0, \"renewAt\": null }\r\n";
    identity id;
    ck_assert_int_eq(identity_json_decode(text, strlen(text), &id), 0);
    ck_assert_str_eq(id.mesh, "m");
    ck_assert_str_eq(id.dataplane, "d");
    ck_assert_int_eq(id.generation, 2);
    ck_assert_str_eq(id.cert_pem, "C/1");
    ck_assert_str_eq(id.public_key_pem, "P");
    ck_assert_ptr_null(id.csr_pem);
    ck_assert_uint_eq(id.nbundle_backends, 2);
    ck_assert_str_eq(id.bundle_backends[1], "b2");
    ck_assert_ptr_null(id.bundle_backends[2]);
    ck_assert(!id.rsa);
    ck_assert(id.cross_signed);
    ck_assert_int_eq(id.not_after, 0);
    ck_assert_int_eq(id.renew_at, 0);
    identity_clear(&id);

    /* \u escapes, as jansson reads them: one byte, two, three, and a surrogate pair. */
    static const char esc[] = "{\"mesh\":\"\\u0041\\u00e9\\u2028\\ud83d\\udd12\\u001F\","
                              "\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}";
    ck_assert_int_eq(identity_json_decode(esc, strlen(esc), &id), 0);
    ck_assert_str_eq(id.mesh, "A\xc3\xa9\xe2\x80\xa8\xf0\x9f\x94\x92\x1f");
    identity_clear(&id);

    /* No bundleBackends at all: an empty array, as identity_read gives. */
    static const char pending[] = "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}";
    ck_assert_int_eq(identity_json_decode(pending, strlen(pending), &id), 0);
    ck_assert_ptr_nonnull(id.bundle_backends);
    ck_assert_uint_eq(id.nbundle_backends, 0);
    ck_assert_str_eq(id.pending_key_pem, "K");
    identity_clear(&id);
}
END_TEST

/* The decoder copies plain runs 8 bytes at a time and reads plain keys in place: an escape,
 * a UTF-8 sequence, a control character or an invalid byte at any offset of a run must still
 * read as jansson reads it, or be refused as jansson refuses it. */
START_TEST(decode_matches_jansson_with_an_escape_at_every_offset_of_a_word)
{
    static const char *const specials[] = {"\"", "\\", "/", "\n", "\t", "\x01", "\x1f", "\x7f",
                                           " ", "~", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    char text[64];
    for (size_t len = 0; len <= 24; len++)
        for (size_t pos = 0; pos <= len; pos++)
            for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
                size_t sl = strlen(specials[k]);
                memset(text, 'a' + (int)(len % 26), len);
                memcpy(text + pos, specials[k], sl);
                text[pos + sl] = '\0';
                if (pos + sl < len)
                    text[len] = '\0';
                identity want = sample(0), got;
                want.serial = text;
                want.cert_pem = text;
                char *json = jansson_encode(&want);
                ck_assert_ptr_nonnull(json);
                ck_assert_int_eq(identity_json_decode(json, strlen(json), &got), 0);
                assert_same_identity(&got, &want);
                identity_clear(&got);
                free(json);
            }
    /* A raw control character, a stray '"' ending the string early, or an invalid byte at any
     * offset of a long string is refused: the caller then asks identity_read, which names it. */
    static const char *const raw_bad[] = {"\n", "\x01", "\x1f", "\xff", "\x80", "\xc0"};
    for (size_t pos = 0; pos < 24; pos++)
        for (size_t k = 0; k < sizeof(raw_bad) / sizeof(raw_bad[0]); k++) {
            char json[256];
            memset(text, 'Q', 24);
            text[24] = '\0';
            text[pos] = raw_bad[k][0];
            snprintf(json, sizeof(json), "{\"mesh\":\"m\",\"dataplane\":\"d\","
                     "\"pendingPublicKey\":\"%s\"}", text);
            identity id = {0};
            ck_assert_msg(identity_json_decode(json, strlen(json), &id) == -1,
                          "took byte 0x%02x at %zu", (unsigned char)raw_bad[k][0], pos);
            ck_assert_ptr_null(id.mesh);
        }
}
END_TEST

/* Keys are read in place when plain; any other key is unescaped first, as jansson does. */
START_TEST(decode_reads_escaped_keys_as_jansson_does)
{
    /* "\u006d\u0065sh" is "mesh", "data\/plane" is not "dataplane" but "data/plane". */
    static const char esc[] = "{\"\\u006d\\u0065sh\":\"m\",\"dataplane\":\"d\",\"data\\/plane\":\"x\","
                              "\"pending\\u0050ublicKey\":\"K\",\"\\u00e9t\\u00e9\":1}";
    json_error_t jerr;
    json_t *tree = json_loads(esc, 0, &jerr);
    ck_assert_ptr_nonnull(tree);
    ck_assert_str_eq(json_string_value(json_object_get(tree, "mesh")), "m");
    json_decref(tree);
    identity id;
    ck_assert_int_eq(identity_json_decode(esc, strlen(esc), &id), 0);
    ck_assert_str_eq(id.mesh, "m");
    ck_assert_str_eq(id.dataplane, "d");
    ck_assert_str_eq(id.pending_key_pem, "K");
    identity_clear(&id);
    /* A key of raw UTF-8 is taken (an unknown field); one with a raw control character or an
     * invalid byte is not, as jansson refuses it. */
    static const char utf8_key[] = "{\"mesh\":\"m\",\"\xc3\xa9\":2,\"dataplane\":\"d\","
                                   "\"pendingPublicKey\":\"K\"}";
    ck_assert_int_eq(identity_json_decode(utf8_key, strlen(utf8_key), &id), 0);
    ck_assert_str_eq(id.dataplane, "d");
    identity_clear(&id);
    static const char *const bad[] = {
        "{\"mesh\":\"m\",\"a\tb\":2,\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}",
        "{\"mesh\":\"m\",\"a\xff\":2,\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}",
        "{\"mesh\":\"m\",\"a\\u0000\":2,\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}",
        "{\"mesh\":\"m\",\"dataplane",   /* a key cut off */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        identity none = {0};
        ck_assert_ptr_null(json_loads(bad[i], 0, &jerr));
        ck_assert_msg(identity_json_decode(bad[i], strlen(bad[i]), &none) == -1, "took: %s", bad[i]);
        ck_assert_ptr_null(none.mesh);
    }
}
END_TEST

/* Whatever it does not take is left to identity_read (-1), never half-read. */
START_TEST(decode_refuses_what_it_does_not_take)
{
    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"mesh\":\"m\",\"pendingPublicKey\":\"K\"}",                    /* no dataplane */
        "{\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}",               /* no mesh */
        "{\"mesh\":\"m\",\"dataplane\":\"d\"}",                           /* neither issued nor pending */
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"generation\":1,\"publicKey\":\"P\"}",   /* no certificate */
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"generation\":1,\"certificate\":\"C\"}", /* no publicKey */
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"",            /* truncated */
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"} x",         /* trailing text */
        "{\"mesh\":\"m\\u0000\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}",    /* NUL */
        "{\"mesh\":\"m\\udc00\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}",    /* lone low */
        "{\"mesh\":\"m\\ud800x\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}",   /* lone high */
        "{\"mesh\":\"m\\u00g1\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}",    /* not hex */
        "{\"mesh\":\"m\\u00\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}",      /* cut */
        "{\"mesh\":\"m\\q\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}",        /* bad escape */
        "{\"mesh\":\"m\nx\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}",        /* raw newline */
        "{\"mesh\":\"m\xff\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}",       /* not UTF-8 */
        "{\"mesh\":\"m\xed\xa0\x80\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}", /* surrogate */
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\",\"tags\":{\"a\":1}}",
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\",\"x\":[1]}",
        "{\"mesh\":7,\"dataplane\":\"d\",\"pendingPublicKey\":\"K\"}",               /* not a string */
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\",\"generation\":\"1\"}",
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\",\"notAfter\":1.5}",
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\",\"notAfter\":1e3}",
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\",\"notAfter\":01}",
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\",\"notAfter\":9223372036854775808}",
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\",\"rsa\":1}",
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\",\"bundleBackends\":[1]}",
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\",\"bundleBackends\":[],"
        "\"bundleBackends\":[]}",
        "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\",}",            /* trailing comma */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        identity id = {0};
        ck_assert_msg(identity_json_decode(bad[i], strlen(bad[i]), &id) == -1, "took: %s", bad[i]);
        ck_assert_ptr_null(id.mesh);
    }
    identity id;
    ck_assert_int_eq(identity_json_decode(NULL, 0, &id), -1);
    /* The edge values of a 64-bit integer are taken. */
    static const char edge[] = "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\","
                               "\"notBefore\":-9223372036854775808,\"notAfter\":9223372036854775807}";
    ck_assert_int_eq(identity_json_decode(edge, strlen(edge), &id), 0);
    ck_assert(id.not_before == (-9223372036854775807LL - 1));
    ck_assert(id.not_after == 9223372036854775807LL);
    identity_clear(&id);
}
END_TEST

/* since: kept by both writers alike, read by every reader, absent from a record without it. */
START_TEST(since_round_trips_and_an_older_record_reads_as_zero)
{
    fill_all_bytes();
    identity with = sample(0), without = sample(0);
    without.since = 0;
    char *a = identity_json_encode(&with), *b = identity_json_encode(&without);
    char *ja = jansson_encode(&with), *jb = jansson_encode(&without);
    ck_assert_str_eq(a, ja);
    ck_assert_str_eq(b, jb);
    /* Last, after lastRegeneration, and only when set. */
    size_t n = strlen(a);
    ck_assert_int_ge(n, 21);
    ck_assert_str_eq(a + n - 20, ",\"since\":1764400000}");
    ck_assert_ptr_null(strstr(b, "since"));
    ck_assert_str_eq(b + strlen(b) - 42, "\"lastRegeneration\":\"2026-11-29T14:00:00Z\"}");

    identity got;
    ck_assert_int_eq(identity_json_decode(a, strlen(a), &got), 0);
    ck_assert(got.since == 1764400000);
    identity_clear(&got);
    ck_assert_int_eq(identity_json_decode(b, strlen(b), &got), 0);
    ck_assert(got.since == 0);
    /* Written again (every later write), an older record stays as it was: no since appears. */
    char *again = identity_json_encode(&got);
    ck_assert_str_eq(again, b);
    free(again);
    identity_clear(&got);

    /* A record in any layout jansson reads: since anywhere, or null (as absent). */
    static const char first[] = "{\"since\":42,\"mesh\":\"m\",\"dataplane\":\"d\","
                                "\"pendingPublicKey\":\"K\"}";
    static const char null[] = "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\","
                               "\"since\":null}";
    ck_assert_int_eq(identity_json_decode(first, strlen(first), &got), 0);
    ck_assert(got.since == 42);
    identity_clear(&got);
    ck_assert_int_eq(identity_json_decode(null, strlen(null), &got), 0);
    ck_assert(got.since == 0);
    identity_clear(&got);
    /* A string is not a time. */
    static const char str[] = "{\"mesh\":\"m\",\"dataplane\":\"d\",\"pendingPublicKey\":\"K\","
                              "\"since\":\"2026-11-29T14:00:00Z\"}";
    ck_assert_int_eq(identity_json_decode(str, strlen(str), &got), -1);
    free(a), free(b), free(ja), free(jb);
}
END_TEST

static Suite *identity_json_suite(void)
{
    Suite *s = suite_create("identity_json");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, encode_writes_what_jansson_wrote_byte_for_byte);
    tcase_add_test(tc, encode_escapes_as_json_requires);
    tcase_add_test(tc, encode_matches_jansson_with_an_escape_at_every_offset_of_a_word);
    tcase_add_test(tc, encode_writes_integers_as_jansson_does);
    tcase_add_test(tc, encode_refuses_what_jansson_refused);
    tcase_add_test(tc, decode_round_trips_every_field);
    tcase_add_test(tc, decode_reads_any_valid_layout_as_jansson_does);
    tcase_add_test(tc, decode_refuses_what_it_does_not_take);
    tcase_add_test(tc, since_round_trips_and_an_older_record_reads_as_zero);
    tcase_add_test(tc, decode_matches_jansson_with_an_escape_at_every_offset_of_a_word);
    tcase_add_test(tc, decode_reads_escaped_keys_as_jansson_does);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(identity_json_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
