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
#include "reconciler/api/cpca_rotate.h"
#include "reconciler/pki.h"

const char cmd_cpca_usage[] =
    "Usage: meshca cp-ca [-o pem|json]\n"
    "       meshca cp-ca rotate [--switch|--finish]\n"
    "\n"
    "Prints the control-plane CA certificate: agents pass it as --ca-file to verify the\n"
    "controller's dataplane API. The CA is created in the store the first time a controller\n"
    "or this command needs it, and kept; its private key is never printed. While a rotation\n"
    "is in progress it prints two certificates, the bundle every agent's --ca-file needs.\n"
    "\n"
    "Flags:\n"
    "  -o, --output FORMAT    pem (default): the certificates as PEM; json:\n"
    "                         {\"certificate\",\"subject\",\"notBefore\",\"notAfter\",\"fingerprintSHA1\"}\n"
    "                         of the current CA, \"rotation\" (none|started|switched) and\n"
    "                         \"certificates\": the same for each certificate, with its \"role\"\n"
    "\n"
    "Rotating the CA without cutting agents off, in three steps:\n"
    "  meshca cp-ca rotate            stores a next CA; cp-ca then prints current + next:\n"
    "                                 make that bundle every agent's --ca-file\n"
    "  meshca cp-ca rotate --switch   the next CA becomes current: controllers serve a\n"
    "                                 certificate it signs within a minute (SIGHUP: at once)\n"
    "  meshca cp-ca rotate --finish   drops the previous CA; cp-ca prints the new one only\n"
    "\n"
    "Exit codes: 0 ok; 1 a rotation step refused in the current state (the message says the\n"
    "next step); 2 usage error, store unreachable or internal error.\n";

json_t *cli_cpca_cert_json(const char *pem, const char *role, char *errbuf)
{
    char subject[256] = "", not_before[32] = "", not_after[32] = "", fp[64] = "";
    int64_t nb = 0, na = 0;
    X509 *cert = NULL;
    json_t *doc = NULL;
    if (pki_cert_from_pem(pem, strlen(pem), &cert, errbuf) < 0 ||
        pki_cert_not_before(cert, &nb) < 0 || pki_cert_not_after(cert, &na) < 0 ||
        pki_format_time(nb, not_before, sizeof(not_before)) < 0 ||
        pki_format_time(na, not_after, sizeof(not_after)) < 0 ||
        pki_fingerprint_sha1(cert, fp, sizeof(fp)) < 0) {
        X509_free(cert);
        cli_error("the stored control-plane CA certificate is unreadable: %s", errbuf);
        return NULL;
    }
    X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
    X509_free(cert);
    doc = json_pack("{s:s, s:s, s:s, s:s, s:s}", "certificate", pem, "subject", subject,
                    "notBefore", not_before, "notAfter", not_after, "fingerprintSHA1", fp);
    if (doc && role && json_object_set_new(doc, "role", json_string(role)) < 0) {
        json_decref(doc);
        doc = NULL;
    }
    if (!doc)
        cli_error("out of memory");
    return doc;
}

/* While a rotation is in progress, what the printed bundle is and which step comes next. */
static const char *rotation_note(cpca_phase phase)
{
    if (phase == CPCA_PHASE_STARTED)
        return "a control-plane CA rotation is in progress (started): this bundle holds the "
               "current CA and the next one; make it every agent's --ca-file, then run "
               "'meshca cp-ca rotate --switch'";
    if (phase == CPCA_PHASE_SWITCHED)
        return "a control-plane CA rotation is in progress (switched): this bundle holds the "
               "previous CA and the current one; once every agent works with the current one, "
               "run 'meshca cp-ca rotate --finish'";
    return NULL;
}


int cmd_cpca(int argc, char **argv)
{
    static const struct option options[] = {
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    output_format format = OUTPUT_PEM;
    int c;
    if (argc > 1 && strcmp(argv[1], "rotate") == 0)
        return cli_cpca_rotate(argc - 1, argv + 1);
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
        cli_error("cp-ca takes no arguments but 'rotate' (first); run 'meshca help cp-ca'");
        return EXIT_TROUBLE;
    }
    store *s = cli_open_store();
    if (!s)
        return EXIT_TROUBLE;
    char errbuf[MESHCA_ERRBUF] = "";
    cpca_rotation r = {0};
    int exit_code = EXIT_TROUBLE;
    json_t *doc = NULL, *list = NULL;
    int rc = cpca_rotation_read(s, &r, errbuf);
    if (rc == MESHCA_ENOTFOUND) {
        cpca ca = {NULL, NULL};
        rc = cpca_load(s, 1, (int64_t)time(NULL), &ca, errbuf);
        cpca_free(&ca);
        /* Run in another directory or with another --store than the controller's, cp-ca makes
         * a CA no controller serves with, and agents given it fail TLS verification. */
        if (rc == 0)
            fprintf(stderr, "meshca: note: this store had no control-plane CA: created one; it "
                            "verifies only controllers that run on this same store\n");
        if (rc == 0)
            rc = cpca_rotation_read(s, &r, errbuf);
    }
    if (rc < 0) {
        cli_error("%s", errbuf);
        goto out;
    }
    const char *certs[CPCA_ROTATION_MAX_CERTS], *roles[CPCA_ROTATION_MAX_CERTS];
    size_t n = cpca_rotation_certs(&r, certs, roles);
    const char *note = rotation_note(r.phase);
    if (note)
        fprintf(stderr, "meshca: note: %s\n", note);
    if (format == OUTPUT_PEM) {
        for (size_t i = 0; i < n; i++)
            fputs(certs[i], stdout);
        exit_code = EXIT_OK;
        goto out;
    }
    /* The current CA's fields at the top, as before rotations existed; every certificate of the
     * bundle in "certificates". */
    doc = cli_cpca_cert_json(r.current_cert, NULL, errbuf);
    list = json_array();
    if (!doc || !list)
        goto out;
    for (size_t i = 0; i < n; i++) {
        json_t *one = cli_cpca_cert_json(certs[i], roles[i], errbuf);
        if (!one || json_array_append_new(list, one) < 0)
            goto out;
    }
    if (json_object_set_new(doc, "rotation", json_string(cpca_phase_name(r.phase))) < 0 ||
        json_object_set(doc, "certificates", list) < 0 ||
        (note && json_object_set_new(doc, "nextStep", json_string(note)) < 0)) {
        cli_error("out of memory");
        goto out;
    }
    cli_print_structured(doc, OUTPUT_JSON);
    exit_code = EXIT_OK;
out:
    json_decref(list);
    json_decref(doc);
    cpca_rotation_free(&r);
    store_close(s);
    return exit_code;
}
