/* cmd_roots.c - `meshca roots`: a mesh's CA roots in Consul's shape, or as PEM. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include "reconciler/mesh_ca.h"
#include "reconciler/roots.h"
#include "reconciler/state.h"

const char cmd_roots_usage[] =
    "Usage: meshca roots -m MESH [-o json|yaml|pem]\n"
    "\n"
    "Prints the CA roots of MESH, one per backend, in the shape of Consul's\n"
    "/v1/connect/ca/roots: {\"ActiveRootID\",\"TrustDomain\",\"Roots\":[...]} (default), the\n"
    "same document as YAML (-o yaml), or the trust bundle as PEM, the enabled backend first:\n"
    "what agents write to ca-bundle.pem (-o pem). Never prints private keys.\n"
    "\n"
    "Flags:\n"
    "  -m, --mesh MESH        the mesh (required)\n"
    "  -o, --output FORMAT    json (default), yaml or pem\n"
    "\n"
    "Exit codes: 0 ok; 1 no such mesh; 2 usage error, store unreachable or internal error.\n";

/* During a forced switch, leaves carry the new CA cross-signed by the old one after the leaf
 * and the new backend's intermediates: take it from the first identity that has it. Caller
 * frees; NULL when none has it. */
static char *find_cross_signed(store *s, const char *mesh_name, const char *to_chain_pem)
{
    store_entry *entries = NULL;
    size_t n = 0;
    char *found = NULL;
    if (!to_chain_pem || store_list(s, STATE_IDENTITIES, mesh_name, &entries, &n) < 0)
        return NULL;
    for (size_t i = 0; i < n && !found; i++) {
        identity id;
        if (identity_get(s, mesh_name, entries[i].name, &id, NULL) < 0)
            continue;
        if (id.cross_signed && roots_find_cross_signed(id.cert_pem, to_chain_pem, &found, NULL) < 0)
            found = NULL;
        identity_clear(&id);
    }
    /* Entries hold private keys: wipe before free. */
    for (size_t i = 0; i < n; i++)
        explicit_bzero(entries[i].value, entries[i].len);
    store_entries_free(entries, n);
    return found;
}

int cmd_roots(int argc, char **argv)
{
    static const struct option options[] = {
        {"mesh", required_argument, NULL, 'm'}, {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    const char *mesh_name = NULL;
    output_format format = OUTPUT_JSON;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:o:h", options, NULL)) != -1) {
        if (c == 'm')
            mesh_name = optarg;
        else if (c == 'o') {
            if (output_parse_format(optarg, 1u << OUTPUT_JSON | 1u << OUTPUT_YAML | 1u << OUTPUT_PEM,
                                    &format) < 0)
                return EXIT_TROUBLE;
        } else if (c == 'h') {
            fputs(cmd_roots_usage, stdout);
            return EXIT_OK;
        } else {
            cli_error("bad flag '%s'; run 'meshca help roots'", argv[optind - 1]);
            return EXIT_TROUBLE;
        }
    }
    if (!mesh_name || optind < argc) {
        cli_error("give the mesh with -m MESH");
        return EXIT_TROUBLE;
    }

    store *s = cli_open_store_to_read(NULL);
    if (!s)
        return EXIT_TROUBLE;
    int exit_code = EXIT_TROUBLE;
    manifest_set *set = manifest_set_new();
    diag_list diags = DIAG_LIST_INIT;
    mesh_ca *cas = NULL;
    roots_entry *entries = NULL;
    json_t *mstatus = NULL;
    char *cross_pem = NULL;
    const mesh *m = NULL;
    if (state_load_resources(s, mesh_name, set, &diags) < 0) {
        cli_error("cannot read mesh '%s' from the store", mesh_name);
        goto out;
    }
    if (!(m = manifest_set_find_mesh(set, mesh_name))) {
        /* Not found is a wrong name, as kubectl's NotFound: exit 1, not a store failure. */
        cli_error("no mesh '%s' in the store", mesh_name);
        exit_code = EXIT_INVALID;
        goto out;
    }
    if (mesh_cas_open(s, m, time(NULL), &cas) < 0)
        goto out;
    entries = calloc(m->nbackends + 1, sizeof(*entries));
    if (!entries) {
        cli_error("out of memory");
        goto out;
    }
    state_get_mesh_status(s, mesh_name, &mstatus, NULL);
    json_t *cross = json_object_get(mstatus, "crossSign");
    const char *cross_to = json_string_value(json_object_get(cross, "to"));
    for (size_t i = 0; cross_to && i < m->nbackends && !cross_pem; i++)
        if (cas[i].chain_pem && strcmp(cas[i].backend->name.value, cross_to) == 0)
            cross_pem = find_cross_signed(s, mesh_name, cas[i].chain_pem);
    const char *enabled = mesh_enabled_backend(m);
    size_t n = 0;
    for (size_t i = 0; i < m->nbackends; i++) {
        if (!cas[i].chain_pem) {
            fprintf(stderr, "meshca: warning: backend '%s': %s\n", cas[i].backend->name.value,
                    cas[i].error);
            continue;
        }
        const char *name = cas[i].backend->name.value;
        entries[n++] = (roots_entry){
            .backend = name, .chain_pem = cas[i].chain_pem,
            .cross_signed_pem = cross_to && strcmp(cross_to, name) == 0 ? cross_pem : NULL,
            .active = enabled && strcmp(enabled, name) == 0,
        };
    }
    if (format == OUTPUT_PEM) {
        /* Enabled backend first, and from each what the trust bundle takes (a cfssl backend's
         * root alone, not meshca's intermediate): the agents' ca-bundle.pem. */
        for (int pass = 0; pass < 2; pass++)
            for (size_t i = 0; i < m->nbackends; i++) {
                bool active = enabled && strcmp(enabled, cas[i].backend->name.value) == 0;
                if (cas[i].chain_pem && active == (pass == 0))
                    fputs(cas[i].bundle_pem ? cas[i].bundle_pem : cas[i].chain_pem, stdout);
            }
        exit_code = EXIT_OK;
        goto out;
    }
    json_t *doc = NULL;
    char errbuf[PKI_ERRBUF] = "";
    if (roots_build(mesh_name, entries, n, &doc, errbuf) < 0) {
        cli_error("cannot describe the roots: %s", errbuf);
        goto out;
    }
    /* YAML through the libyaml emitter get and inspect use; a failed write is not success. */
    if (format == OUTPUT_YAML && cli_write_yaml(stdout, (const json_t *const *)&doc, 1, false) < 0) {
        cli_error("cannot write YAML (out of memory or write error)");
        json_decref(doc);
        goto out;
    }
    if (format == OUTPUT_JSON)
        cli_print_structured(doc, OUTPUT_JSON);
    json_decref(doc);
    exit_code = EXIT_OK;
out:
    free(cross_pem);
    json_decref(mstatus);
    free(entries);
    if (m)
        mesh_cas_free(cas, m->nbackends);
    manifest_set_free(set);
    diag_list_free(&diags);
    store_close(s);
    return exit_code;
}
