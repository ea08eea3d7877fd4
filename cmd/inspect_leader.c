/* inspect_leader.c - `meshca inspect leader`: which `meshca run` replica leads the store (the leader key). */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include "reconciler/leader.h"

int cli_inspect_leader(store *s, output_format format)
{
    char err[MESHCA_ERRBUF] = "";
    char *id = NULL, *api = NULL;
    int rc = leader_read(s, &id, &api, err);
    if (rc < 0 && rc != STORE_ENOTFOUND) {
        cli_error("%s", err);
        return EXIT_TROUBLE;
    }
    if (format == OUTPUT_JSON || format == OUTPUT_YAML) {
        json_t *doc = rc == 0 ? json_pack("{s:{s:s, s:s}}", "leader", "id", id, "api", api)
                              : json_pack("{s:n}", "leader");
        free(id);
        free(api);
        if (!doc) {
            cli_error("out of memory");
            return EXIT_TROUBLE;
        }
        cli_print_structured(doc, format);
        json_decref(doc);
        return EXIT_OK;
    }
    if (rc == 0)
        printf("LEADER %s%s%s\n", id, api[0] ? " API " : "", api);
    else
        printf("no replica of 'meshca run' leads\n");
    free(id);
    free(api);
    return EXIT_OK;
}
