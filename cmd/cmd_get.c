/* cmd_get.c - `meshca get meshes|dataplanes|secrets`: list stored resources; secret values never shown. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include "manifests/encode.h"
#include "reconciler/state.h"
#include "validators/validators.h"

const char cmd_get_usage[] =
    "Usage: meshca get meshes|dataplanes|secrets [-m MESH] [-o text|json|yaml]\n"
    "\n"
    "Lists the resources in the store. Meshes show MTLS (the enabled backend as TYPE/NAME, or\n"
    "off) and BACKENDS. Secret data and inline keys, tokens and certificates of a backend's conf\n"
    "are never shown: they print as <redacted>. -o yaml (a stream of documents) and -o json (one\n"
    "array) apply back unchanged: 'apply' keeps the stored value of a <redacted> field.\n"
    "\n"
    "Flags:\n"
    "  -m, --mesh MESH       only this mesh\n"
    "  -o, --output FORMAT   text (default), json or yaml\n";

/* Parses the flags shared by get and inspect: the resource word, -m and -o. */
int cli_parse_listing(int argc, char **argv, const char *usage, unsigned formats,
                      const char **ret_what, const char **ret_mesh, output_format *ret_format)
{
    static const struct option options[] = {
        {"mesh", required_argument, NULL, 'm'}, {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:o:h", options, NULL)) != -1) {
        switch (c) {
        case 'm': {
            /* Checked here so the refusal names the mesh and why, not the store. */
            const char *why = validate_mesh_name_problem(optarg);
            if (why) {
                cli_error("invalid mesh name '%.80s': %s", optarg, why);
                return -1;
            }
            *ret_mesh = optarg;
            break;
        }
        case 'o':
            if (output_parse_format(optarg, formats, ret_format) < 0)
                return -1;
            break;
        case 'h':
            fputs(usage, stdout);
            exit(EXIT_OK);
        default:
            cli_flag_error(c, argc, argv);
            return -1;
        }
    }
    if (optind != argc - 1) {
        cli_error("%s", optind >= argc ? "say what to list" : "too many arguments");
        fputs(usage, stderr);
        return -1;
    }
    *ret_what = argv[optind];
    return 0;
}

/* A minimal YAML emitter for JSON values: block style, strings always double-quoted (JSON
 * string escapes are valid YAML), so the output reads back to the same values. */
static void print_yaml(const json_t *v, int indent, int in_seq)
{
    const char *key;
    json_t *item;
    size_t i;
    if (json_is_object(v) && json_object_size(v) > 0) {
        int first = 1;
        json_object_foreach((json_t *)v, key, item) {
            if (!(first && in_seq))
                printf("%*s", indent, "");
            first = 0;
            printf("%s:", key);
            if ((json_is_object(item) && json_object_size(item)) ||
                (json_is_array(item) && json_array_size(item))) {
                putchar('\n');
                print_yaml(item, indent + 2, 0);
            } else {
                putchar(' ');
                print_yaml(item, 0, 0);
            }
        }
        return;
    }
    if (json_is_array(v) && json_array_size(v) > 0) {
        json_array_foreach(v, i, item) {
            printf("%*s- ", indent, "");
            if ((json_is_object(item) && json_object_size(item)) ||
                (json_is_array(item) && json_array_size(item)))
                print_yaml(item, indent + 2, 1);
            else {
                print_yaml(item, 0, 0);
            }
        }
        return;
    }
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    printf("%s\n", text ? text : "null");
    free(text);
}

void cli_print_structured(const json_t *doc, output_format format)
{
    if (format == OUTPUT_YAML) {
        print_yaml(doc, 0, 0);
        return;
    }
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    putchar('\n');
}

static void print_mesh_row(const mesh *m)
{
    const char *enabled = mesh_enabled_backend(m);
    const mesh_backend *b = enabled ? mesh_find_backend(m, enabled) : NULL;
    char mtls[160] = "off";
    char backends[512] = "";
    if (b)
        snprintf(mtls, sizeof(mtls), "%s/%s", b->type.value ? b->type.value : "?", enabled);
    for (size_t i = 0; i < m->nbackends; i++) {
        size_t used = strlen(backends);
        snprintf(backends + used, sizeof(backends) - used, "%s%s", i ? "," : "",
                 m->backends[i].name.value ? m->backends[i].name.value : "?");
    }
    printf("%-24s %-24s %s\n", m->name.value, mtls, m->nbackends ? backends : "-");
}

int cmd_get(int argc, char **argv)
{
    const char *what = NULL, *mesh_name = NULL;
    output_format format = OUTPUT_TEXT;
    resource_kind kind;
    if (cli_parse_listing(argc, argv, cmd_get_usage,
                          1u << OUTPUT_TEXT | 1u << OUTPUT_JSON | 1u << OUTPUT_YAML, &what,
                          &mesh_name, &format) < 0)
        return EXIT_TROUBLE;
    if (strcmp(what, "meshes") == 0 || strcmp(what, "mesh") == 0)
        kind = RESOURCE_MESH;
    else if (strcmp(what, "dataplanes") == 0 || strcmp(what, "dataplane") == 0)
        kind = RESOURCE_DATAPLANE;
    else if (strcmp(what, "secrets") == 0 || strcmp(what, "secret") == 0)
        kind = RESOURCE_SECRET;
    else {
        cli_error("cannot list '%s': expected meshes, dataplanes or secrets", what);
        return EXIT_TROUBLE;
    }

    store *s = cli_open_store();
    if (!s)
        return EXIT_TROUBLE;
    manifest_set *set = manifest_set_new();
    diag_list diags = DIAG_LIST_INIT;
    int rc = state_load_resources(s, mesh_name, set, &diags);
    if (rc < 0) {
        cli_error("cannot read the store: %s", store_errmsg(s)[0] ? store_errmsg(s) : store_strerror(rc));
        manifest_set_free(set);
        store_close(s);
        return EXIT_TROUBLE;
    }
    json_t *items = json_array();
    if (format == OUTPUT_TEXT) {
        if (kind == RESOURCE_MESH)
            printf("%-24s %-24s %s\n", "NAME", "MTLS", "BACKENDS");
        else if (kind == RESOURCE_DATAPLANE)
            printf("%-16s %-24s %-16s %s\n", "MESH", "NAME", "ADDRESS", "SERVICES");
        else
            printf("%-16s %s\n", "MESH", "NAME");
    }
    for (size_t i = 0; i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind != kind)
            continue;
        if (format != OUTPUT_TEXT) {
            json_array_append_new(items, encode_resource(res, 0));
            continue;
        }
        if (kind == RESOURCE_MESH) {
            print_mesh_row(&res->u.mesh);
        } else if (kind == RESOURCE_DATAPLANE) {
            char *services = cli_dataplane_services(&res->u.dataplane);
            printf("%-16s %-24s %-16s %s\n", res->u.dataplane.mesh.value,
                   res->u.dataplane.name.value,
                   res->u.dataplane.address.value ? res->u.dataplane.address.value : "-", services);
            free(services);
        } else {
            printf("%-16s %s\n", res->u.secret.mesh.value, res->u.secret.name.value);
        }
    }
    /* Both apply back unchanged: YAML as a stream of documents, JSON as one array. */
    if (format == OUTPUT_YAML) {
        size_t i;
        json_t *item;
        json_array_foreach(items, i, item) {
            fputs("---\n", stdout);
            cli_print_structured(item, format);
        }
    } else if (format == OUTPUT_JSON) {
        cli_print_structured(items, format);
    }
    json_decref(items);
    manifest_set_free(set);
    diag_list_free(&diags);
    store_close(s);
    return EXIT_OK;
}
