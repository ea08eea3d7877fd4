/* cmd_cpca.c - `meshca cp-ca`: the control-plane CA certificate that agents trust (--ca-file), and its rotation. */
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
    "      --switch           (rotate) step 2: the next CA becomes current\n"
    "      --finish           (rotate) step 3: the previous CA is dropped\n"
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

/* One certificate as {"certificate","subject","notBefore","notAfter","fingerprintSHA1"} (and
 * "role" unless NULL); NULL after printing why. */
static json_t *cert_json(const char *pem, const char *role, char *errbuf)
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

/* "SUBJECT (SHA-1 FP, expires T)" of a certificate into buf; "" when unreadable (said). */
static void describe(const char *pem, char *buf, size_t size)
{
    char errbuf[MESHCA_ERRBUF] = "";
    json_t *d = cert_json(pem, NULL, errbuf);
    buf[0] = '\0';
    if (d)
        snprintf(buf, size, "%s (SHA-1 %s, expires %s)",
                 json_string_value(json_object_get(d, "subject")),
                 json_string_value(json_object_get(d, "fingerprintSHA1")),
                 json_string_value(json_object_get(d, "notAfter")));
    json_decref(d);
}

/* What the step did and what comes next, as kubectl and consul say it. */
static void say_done(cpca_step step, const cpca_rotation *r)
{
    char what[512];
    if (step == CPCA_STEP_ROTATE) {
        describe(r->next_cert, what, sizeof(what));
        cli_info("control-plane CA rotation started: next CA %s stored; controllers still serve "
                 "certificates of the current CA\n", what);
        cli_info("Next steps:\n");
        cli_info("  1. meshca cp-ca -o pem > cp-ca.pem   (2 certificates: the current CA, then the next)\n");
        cli_info("     make that file every agent's --ca-file (an agent reads it at each connection: "
                 "no restart)\n");
        cli_info("  2. meshca cp-ca rotate --switch      (once every agent has it)\n");
    } else if (step == CPCA_STEP_SWITCH) {
        describe(r->current_cert, what, sizeof(what));
        cli_info("control-plane CA switched: %s is now current; every controller on this store "
                 "serves a certificate it signed within a minute (at once on SIGHUP)\n", what);
        cli_info("An agent whose --ca-file holds only the previous CA now fails with 'SSL "
                 "certificate problem'; 'meshca cp-ca -o pem' still prints both certificates.\n");
        cli_info("Next step, once every agent works with the new CA:\n");
        cli_info("  meshca cp-ca rotate --finish\n");
    } else {
        describe(r->current_cert, what, sizeof(what));
        cli_info("control-plane CA rotation finished: the previous CA is dropped; 'meshca cp-ca' "
                 "prints %s only\n", what);
        cli_info("Next step: give every agent 'meshca cp-ca -o pem' (1 certificate) as --ca-file "
                 "again, so that none trusts the previous CA any more.\n");
    }
}

/* `cp-ca rotate [--switch|--finish]` (argv[0] is "rotate"). */
static int rotate(int argc, char **argv)
{
    enum { OPT_SWITCH = 256, OPT_FINISH };
    static const struct option options[] = {
        {"switch", no_argument, NULL, OPT_SWITCH},
        {"finish", no_argument, NULL, OPT_FINISH},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cpca_step step = CPCA_STEP_ROTATE;
    int nsteps = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        if (c == OPT_SWITCH || c == OPT_FINISH) {
            step = c == OPT_SWITCH ? CPCA_STEP_SWITCH : CPCA_STEP_FINISH;
            nsteps++;
        } else if (c == 'h') {
            fputs(cmd_cpca_usage, stdout);
            return EXIT_OK;
        } else {
            cli_flag_error(c, argc, argv);
            return EXIT_TROUBLE;
        }
    }
    if (nsteps > 1) {
        cli_error("cp-ca rotate: --switch and --finish are two steps: give one; run 'meshca help "
                  "cp-ca'");
        return EXIT_TROUBLE;
    }
    if (optind < argc) {
        cli_error("cp-ca rotate takes no arguments; run 'meshca help cp-ca'");
        return EXIT_TROUBLE;
    }
    store *s = cli_open_store();
    if (!s)
        return EXIT_TROUBLE;
    char errbuf[MESHCA_ERRBUF] = "";
    cpca_rotation after = {0};
    int rc = cpca_rotate(s, step, (int64_t)time(NULL), &after, errbuf);
    store_close(s);
    if (rc < 0) {
        cli_error("%s", errbuf);
        return rc == MESHCA_ESTATE ? EXIT_INVALID : EXIT_TROUBLE;
    }
    say_done(step, &after);
    cpca_rotation_free(&after);
    return EXIT_OK;
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
        return rotate(argc - 1, argv + 1);
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
    doc = cert_json(r.current_cert, NULL, errbuf);
    list = json_array();
    if (!doc || !list)
        goto out;
    for (size_t i = 0; i < n; i++) {
        json_t *one = cert_json(certs[i], roles[i], errbuf);
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
