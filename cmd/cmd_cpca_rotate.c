/* cmd_cpca_rotate.c - `meshca cp-ca rotate [--switch|--finish]`: the control-plane CA replaced in three steps. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include "reconciler/api/cpca_rotate.h"

/* "SUBJECT (SHA-1 FP, expires T)" of a certificate into buf; "" when unreadable (said). */
static void describe(const char *pem, char *buf, size_t size)
{
    char errbuf[MESHCA_ERRBUF] = "";
    json_t *d = cli_cpca_cert_json(pem, NULL, errbuf);
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

int cli_cpca_rotate(int argc, char **argv)
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
