/* cmd_ca.c - `meshca ca create`: a fresh CA for a `provided` backend, never overwriting one. */
#include <errno.h>
#include <getopt.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/cli.h"
#include "reconciler/ca_create.h"
#include "reconciler/pki.h"

const char cmd_ca_usage[] =
    "Usage: meshca ca create [--common-name CN] [--days 1825] [--key-type ec|rsa]\n"
    "                        [--key-bits N] [--out-dir DIR]\n"
    "\n"
    "Writes DIR/ca.pem and DIR/ca-key.pem (mode 0600): a self-signed CA to use as a 'provided'\n"
    "backend, e.g. to rotate away from an expired CA. Refuses to overwrite either file.\n"
    "\n"
    "Flags:\n"
    "      --common-name CN   subject CN (default \"meshca CA\")\n"
    "      --days N           validity in days, 1-36500 (default 1825)\n"
    "      --key-type T       ec (P-256, default) or rsa\n"
    "      --key-bits N       RSA key size: 2048 (default), 3072 or 4096\n"
    "      --out-dir DIR      where to write (default .)\n";

/* Parses a whole decimal number in [min, max]. */
static int parse_number(const char *text, long min, long max, long *ret)
{
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (!*text || *end || v < min || v > max)
        return -1;
    *ret = v;
    return 0;
}

int cmd_ca(int argc, char **argv)
{
    enum { OPT_CN = 256, OPT_DAYS, OPT_TYPE, OPT_BITS, OPT_DIR };
    static const struct option options[] = {
        {"common-name", required_argument, NULL, OPT_CN}, {"days", required_argument, NULL, OPT_DAYS},
        {"key-type", required_argument, NULL, OPT_TYPE}, {"key-bits", required_argument, NULL, OPT_BITS},
        {"out-dir", required_argument, NULL, OPT_DIR}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ca_create_options opts = CA_CREATE_OPTIONS_INIT;
    long number;
    int c;

    if (argc < 2 || strcmp(argv[1], "create") != 0) {
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
            fputs(cmd_ca_usage, stdout);
            return EXIT_OK;
        }
        cli_error("expected 'meshca ca create'; run 'meshca help ca'");
        return EXIT_TROUBLE;
    }
    opterr = 0;
    optind = 2;
    while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (c) {
        case OPT_CN:
            opts.common_name = optarg;
            break;
        case OPT_DAYS:
            if (parse_number(optarg, 1, CA_CREATE_MAX_DAYS, &number) < 0) {
                cli_error("--days takes a whole number from 1 to %d", CA_CREATE_MAX_DAYS);
                return EXIT_TROUBLE;
            }
            opts.days = (int)number;
            break;
        case OPT_TYPE:
            if (strcmp(optarg, "ec") != 0 && strcmp(optarg, "rsa") != 0) {
                cli_error("--key-type is ec or rsa, not '%s'", optarg);
                return EXIT_TROUBLE;
            }
            opts.rsa = strcmp(optarg, "rsa") == 0;
            break;
        case OPT_BITS:
            if (parse_number(optarg, 2048, 4096, &number) < 0 ||
                (number != 2048 && number != 3072 && number != 4096)) {
                cli_error("--key-bits is 2048, 3072 or 4096");
                return EXIT_TROUBLE;
            }
            opts.bits = (int)number;
            break;
        case OPT_DIR:
            opts.out_dir = optarg;
            break;
        case 'h':
            fputs(cmd_ca_usage, stdout);
            return EXIT_OK;
        default:
            cli_error("bad flag '%s'; run 'meshca help ca'", argv[optind - 1]);
            return EXIT_TROUBLE;
        }
    }
    if (opts.bits && !opts.rsa) {
        cli_error("--key-bits goes with --key-type rsa");
        return EXIT_TROUBLE;
    }
    /* Like `mkdir`: a missing output directory is created, private to its owner. */
    if (mkdir(opts.out_dir, 0700) < 0 && errno != EEXIST) {
        cli_error("cannot create %s: %s", opts.out_dir, strerror(errno));
        return EXIT_TROUBLE;
    }
    opts.now = time(NULL);
    char errbuf[PKI_ERRBUF] = "";
    int rc = ca_create(&opts, errbuf);
    if (rc == PKI_EEXIST) {
        cli_error("%s", errbuf);
        return EXIT_INVALID;
    }
    if (rc < 0) {
        cli_error("%s", errbuf);
        return EXIT_TROUBLE;
    }
    printf("wrote %s/%s and %s/%s (mode 0600)\n", opts.out_dir, CA_CREATE_CERT_FILE, opts.out_dir,
           CA_CREATE_KEY_FILE);
    return EXIT_OK;
}
