/* test-pki_spki.c - Check suite for pki_spki_from_pem: the stored public key read as SPKI DER, an agent's P-256 key without an ASN.1 parse. */
#include <check.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/pki.h"

/* The PEM "PUBLIC KEY" of any bytes (64 columns, as PEM_write_bio writes), shape unchecked. */
static char *pem_of_der(const unsigned char *der, size_t n)
{
    size_t cap = 4 * ((n + 2) / 3) + n / 48 + 64;
    char *pem = malloc(cap), *w = pem;
    ck_assert_ptr_nonnull(pem);
    w += sprintf(w, "-----BEGIN PUBLIC KEY-----\n");
    for (size_t off = 0; off < n; off += 48) {
        size_t k = n - off < 48 ? n - off : 48;
        w += EVP_EncodeBlock((unsigned char *)w, der + off, (int)k);
        *w++ = '\n';
    }
    sprintf(w, "-----END PUBLIC KEY-----\n");
    return pem;
}

/* pki_spki_from_pem of der's PEM: its result, and the DER and type it gives when 0. */
static int spki_of(const unsigned char *der, size_t n, unsigned char **ret, size_t *ret_len,
                   bool *ret_rsa, char *errbuf)
{
    char *pem = pem_of_der(der, n);
    int rc = pki_spki_from_pem(pem, strlen(pem), ret, ret_len, ret_rsa, errbuf);
    free(pem);
    return rc;
}

/* Real keys, as agents send them: the DER OpenSSL writes for the key, and its type. */
START_TEST(keys_read_as_openssl_writes_them)
{
    char err[PKI_ERRBUF];
    for (int i = 0; i < 21; i++) {
        bool want_rsa = i == 20;
        EVP_PKEY *key = NULL;
        ck_assert_int_eq(pki_generate_key(want_rsa, 2048, &key, err), 0);
        unsigned char *want = NULL;
        int wlen = i2d_PUBKEY(key, &want);
        ck_assert_int_gt(wlen, 0);
        char *pem = NULL;
        ck_assert_int_eq(pki_pubkey_to_pem(key, &pem, err), 0);
        unsigned char *der = NULL;
        size_t n = 0;
        bool rsa = !want_rsa;
        ck_assert_int_eq(pki_spki_from_pem(pem, strlen(pem), &der, &n, &rsa, err), 0);
        ck_assert_uint_eq(n, (size_t)wlen);
        ck_assert(memcmp(der, want, n) == 0);
        ck_assert_int_eq(rsa, want_rsa);
        if (!want_rsa)
            ck_assert_uint_eq(n, 91);
        free(der);
        free(pem);
        OPENSSL_free(want);
        EVP_PKEY_free(key);
    }
}
END_TEST

/* The 91 bytes of a P-256 SPKI are taken whatever the point (the point is checked where the key
 * is signed, as before); any other header byte, length or curve takes the ASN.1 parse, which
 * refuses what is not an EC P-256 or RSA key. */
START_TEST(p256_shape_taken_whatever_the_point_and_nothing_else)
{
    unsigned char good[91], bad[93];
    unsigned char *der = NULL;
    size_t n = 0;
    bool rsa = true;
    char err[PKI_ERRBUF] = "";
    EVP_PKEY *key = NULL;
    ck_assert_int_eq(pki_generate_key(false, 0, &key, err), 0);
    unsigned char *p = good;
    ck_assert_int_eq(i2d_PUBKEY(key, &p), 91);
    EVP_PKEY_free(key);

    /* A point not on the curve, all zeros: the same 91 bytes back, not RSA. */
    memset(good + 26, 0, 65);
    ck_assert_int_eq(spki_of(good, 91, &der, &n, &rsa, err), 0);
    ck_assert_uint_eq(n, 91);
    ck_assert(memcmp(der, good, 91) == 0);
    ck_assert(!rsa);
    free(der);
    der = NULL;

    /* The curve's OID changed (its last byte, or id-ecPublicKey's): refused by the parse. */
    const size_t oid_bytes[] = {10, 22};
    for (size_t i = 0; i < 2; i++) {
        memcpy(bad, good, 91);
        bad[oid_bytes[i]] ^= 0x01;
        err[0] = '\0';
        ck_assert_int_eq(spki_of(bad, 91, &der, &n, &rsa, err), PKI_EINVAL);
        ck_assert_ptr_null(der);
        ck_assert_str_eq(err, "not an EC P-256 or RSA SubjectPublicKeyInfo");
    }
    /* One byte more inside the BIT STRING (lengths adjusted): well-formed ASN.1, taken by the
     * parse as before (a point of the wrong length fails where it is signed); after the SPKI:
     * refused. */
    memcpy(bad, good, 91);
    bad[1] = 0x5a;
    bad[24] = 0x43;
    bad[91] = 0x00;
    ck_assert_int_eq(spki_of(bad, 92, &der, &n, &rsa, err), 0);
    ck_assert_uint_eq(n, 92);
    ck_assert(memcmp(der, bad, 92) == 0);
    ck_assert(!rsa);
    free(der);
    der = NULL;
    memcpy(bad, good, 91);
    bad[91] = 0x05;
    bad[92] = 0x00;
    ck_assert_int_eq(spki_of(bad, 93, &der, &n, &rsa, err), PKI_EINVAL);
    ck_assert_ptr_null(der);
    /* The outer length wrong by one: not DER of one SPKI. */
    memcpy(bad, good, 91);
    bad[1] = 0x58;
    ck_assert_int_eq(spki_of(bad, 91, &der, &n, &rsa, err), PKI_EINVAL);
    ck_assert_ptr_null(der);
    /* No PEM block at all. */
    ck_assert_int_eq(pki_spki_from_pem("MFkw", 4, &der, &n, &rsa, err), PKI_EINVAL);
    ck_assert_str_eq(err, "no PUBLIC KEY PEM block");
}
END_TEST

static Suite *pki_spki_suite(void)
{
    Suite *s = suite_create("pki_spki");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, keys_read_as_openssl_writes_them);
    tcase_add_test(tc, p256_shape_taken_whatever_the_point_and_nothing_else);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pki_spki_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
