/* ca_create.h - `meshca ca create`: a fresh self-signed CA written as ca.pem and ca-key.pem. */
#ifndef MESHCA_CA_CREATE_H
#define MESHCA_CA_CREATE_H

#include <stdbool.h>
#include <stdint.h>

#define CA_CREATE_CERT_FILE "ca.pem"
#define CA_CREATE_KEY_FILE "ca-key.pem"
#define CA_CREATE_MAX_DAYS 36500

typedef struct ca_create_options {
    const char *common_name;  /* default "meshca CA" */
    int days;                 /* 1..CA_CREATE_MAX_DAYS, default 1825 */
    bool rsa;                 /* key type: EC P-256 (default) or RSA */
    int bits;                 /* RSA bits: 2048 (default), 3072 or 4096 */
    const char *out_dir;      /* default "." */
    int64_t now;              /* injected clock (seconds since the epoch) */
} ca_create_options;

#define CA_CREATE_OPTIONS_INIT {"meshca CA", 1825, false, 0, ".", 0}

/* Writes <out_dir>/ca.pem (0644) and <out_dir>/ca-key.pem (0600). Never overwrites: when either
 * file exists, returns PKI_EEXIST and changes nothing. Returns PKI_OK, PKI_EINVAL, PKI_ECRYPTO,
 * PKI_EEXIST or PKI_EIO with a message in errbuf (PKI_ERRBUF bytes, never key material). */
int ca_create(const ca_create_options *opts, char *errbuf);

#endif
