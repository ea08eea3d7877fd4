/* cmd_cpca.c - `meshca cp-ca`: the control-plane CA certificate that agents trust (--ca-file). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include "reconciler/api/cpca.h"
#include "reconciler/pki.h"

const char cmd_cpca_usage[] =
    "Usage: meshca cp-ca [-o pem|json]\n"
    "\n"
    "Prints the control-plane CA certificate: agents pass it as --ca-file to verify the\n"
    "controller's dataplane API. The CA is created in the store the first time a controller\n"
    "or this command needs it, and kept; its private key is never printed.\n"
    "\n"
    "Flags:\n"
    "  -o, --output FORMAT    pem (default): the certificate as PEM; json:\n"
    "                         {\"certificate\",\"subject\",\"notBefore\",\"notAfter\",\"fingerprintSHA1\"}\n"
    "\n"
    "Exit codes: 0 ok; 2 usage error, store unreachable or internal error.\n";

int cmd_cpca(int argc, char **argv)
{
    static const struct option options[] = {
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    output_format format = OUTPUT_PEM;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":o:h", options, NULL)) != -1) {
        if (c == 'o') {
            if (output_parse_format(optarg, 1u << OUTPUT_PEM | 1u << OUTPUT_JSON, &format) < 0)
                return EXIT_TROUBLE;
        } else if (c == 'h') {
            fputs(cmd_cpca_usage, stdout);
            return EXIT_OK;
        } else {
            cli_flag_error(c, argc, argv);
            return EXIT_TROUBLE;
        }
    }
    if (optind < argc) {
        cli_error("cp-ca takes no arguments; run 'meshca help cp-ca'");
        return EXIT_TROUBLE;
    }
    store *s = cli_open_store();
    if (!s)
        return EXIT_TROUBLE;
    char errbuf[MESHCA_ERRBUF] = "";
    cpca ca = {NULL, NULL};
    int exit_code = EXIT_TROUBLE;
    X509 *cert = NULL;
    int rc = cpca_load(s, 0, (int64_t)time(NULL), &ca, errbuf);
    if (rc == MESHCA_ENOTFOUND) {
        rc = cpca_load(s, 1, (int64_t)time(NULL), &ca, errbuf);
        /* Run in another directory or with another --store than the controller's, cp-ca makes
         * a CA no controller serves with, and agents given it fail TLS verification. */
        if (rc == 0)
            fprintf(stderr, "meshca: note: this store had no control-plane CA: created one; it "
                            "verifies only controllers that run on this same store\n");
    }
    if (rc < 0) {
        cli_error("%s", errbuf);
        goto out;
    }
    if (format == OUTPUT_PEM) {
        fputs(ca.cert_pem, stdout);
        exit_code = EXIT_OK;
        goto out;
    }
    char subject[256] = "", not_before[32] = "", not_after[32] = "", fp[64] = "";
    int64_t nb = 0, na = 0;
    if (pki_cert_from_pem(ca.cert_pem, strlen(ca.cert_pem), &cert, errbuf) < 0 ||
        pki_cert_not_before(cert, &nb) < 0 || pki_cert_not_after(cert, &na) < 0 ||
        pki_format_time(nb, not_before, sizeof(not_before)) < 0 ||
        pki_format_time(na, not_after, sizeof(not_after)) < 0 ||
        pki_fingerprint_sha1(cert, fp, sizeof(fp)) < 0) {
        cli_error("the stored control-plane CA certificate is unreadable: %s", errbuf);
        goto out;
    }
    X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
    json_t *doc =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "certificate", ca.cert_pem, "subject", subject,
                  "notBefore", not_before, "notAfter", not_after, "fingerprintSHA1", fp);
    if (!doc) {
        cli_error("out of memory");
        goto out;
    }
    cli_print_structured(doc, OUTPUT_JSON);
    json_decref(doc);
    exit_code = EXIT_OK;
out:
    X509_free(cert);
    cpca_free(&ca);
    store_close(s);
    return exit_code;
}
