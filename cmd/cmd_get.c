/* cmd_get.c - `meshca get meshes|dataplanes|secrets`: list stored resources; secret values never shown. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "cmd/common.h"
#include <yaml.h>

#include "manifests/encode.h"
#include "reconciler/state.h"
#include "validators/validators.h"

const char cmd_get_usage[] =
    "Usage: meshca get meshes|dataplanes|secrets [NAME...] [-m MESH] [-o text|json|yaml|name]\n"
    "\n"
    "Lists the resources in the store, or only those named. Meshes show MTLS (the enabled\n"
    "backend as TYPE/NAME, or off) and BACKENDS. Secret data and inline keys, tokens and\n"
    "certificates of a backend's conf are never shown: they print as <redacted>. -o yaml (a\n"
    "stream of documents) and -o json (one array; one object for one NAME) apply back\n"
    "unchanged: 'apply' keeps the stored value of a <redacted> field. -o name prints KIND/NAME\n"
    "per line.\n"
    "\n"
    "A NAME of a dataplane or secret is looked up in MESH, or without -m in the one mesh that\n"
    "has it. A NAME that does not exist is an error (exit 1) after the others are printed.\n"
    "\n"
    "Flags:\n"
    "  -m, --mesh MESH       only this mesh\n"
    "  -o, --output FORMAT   text (default), json, yaml or name\n";

/* Parses the flags shared by get and inspect: the resource word, -m and -o. */
int cli_parse_listing(int argc, char **argv, const char *usage, unsigned formats,
                      const char **ret_what, const char **ret_mesh, output_format *ret_format,
                      char ***ret_names, size_t *ret_nnames)
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
    if (optind >= argc || (!ret_names && optind != argc - 1)) {
        cli_error("%s", optind >= argc ? "say what to list" : "too many arguments");
        fputs(usage, stderr);
        return -1;
    }
    *ret_what = argv[optind];
    if (ret_names) {
        *ret_names = argv + optind + 1;
        *ret_nnames = (size_t)(argc - optind - 1);
    }
    return 0;
}

/* --- YAML through libyaml's emitter --- */

/* Whether a string must be quoted to read back as a string: what meshca's decoder would take
 * for a null, boolean or number when plain (YAML 1.2 core schema), and YAML 1.1's yes/no/on/off
 * words, so other YAML readers get a string too. The emitter quotes whatever else plain cannot
 * hold (": ", a leading "-", ...) by itself. */
static bool needs_quotes(const char *text, size_t len)
{
    static const char *const yaml11[] = {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No",
                                         "NO", "on", "On", "ON", "off", "Off", "OFF", NULL};
    mnode plain = {.kind = MNODE_SCALAR, .scalar = (char *)text, .scalar_len = len,
                   .style = MNODE_PLAIN};
    if (len == 0 || !mnode_is_string(&plain))
        return true;
    for (size_t i = 0; yaml11[i]; i++)
        if (strcmp(text, yaml11[i]) == 0)
            return true;
    return false;
}

static int emit_scalar(yaml_emitter_t *e, const char *text, bool quoted)
{
    yaml_event_t ev;
    size_t len = strlen(text);
    /* plain_implicit 0 with no tag makes the emitter quote instead of tagging. Text of several
     * lines (PEM in roots) reads best as a literal block; the emitter falls back to quoting
     * where a literal block could not hold it (e.g. trailing spaces). */
    yaml_scalar_style_t style = memchr(text, '\n', len) ? YAML_LITERAL_SCALAR_STYLE
                                                         : YAML_ANY_SCALAR_STYLE;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)len, !quoted, 1,
                                      style))
        return -1;
    return yaml_emitter_emit(e, &ev) ? 0 : -1;
}

static int emit_value(yaml_emitter_t *e, const json_t *v)
{
    yaml_event_t ev;
    const char *key;
    json_t *item;
    size_t i;
    if (json_is_object(v)) {
        if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return -1;
        json_object_foreach((json_t *)v, key, item) {
            if (emit_scalar(e, key, needs_quotes(key, strlen(key))) < 0 || emit_value(e, item) < 0)
                return -1;
        }
        return yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev) ? 0 : -1;
    }
    if (json_is_array(v)) {
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return -1;
        json_array_foreach(v, i, item) {
            if (emit_value(e, item) < 0)
                return -1;
        }
        return yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev) ? 0 : -1;
    }
    if (json_is_string(v))
        return emit_scalar(e, json_string_value(v), needs_quotes(json_string_value(v),
                                                                 json_string_length(v)));
    /* null, true, false and numbers: their JSON text is the same YAML plain scalar. */
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!text)
        return -1;
    int rc = emit_scalar(e, text, false);
    free(text);
    return rc;
}

int cli_write_yaml(FILE *out, const json_t *const *docs, size_t ndocs, bool markers)
{
    yaml_emitter_t e;
    yaml_event_t ev;
    int rc = -1;
    if (!yaml_emitter_initialize(&e))
        return -1;
    yaml_emitter_set_output_file(&e, out);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);   /* never fold a long value (a PEM, base64) */
    yaml_emitter_set_indent(&e, 2);
    if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) || !yaml_emitter_emit(&e, &ev))
        goto out;
    for (size_t i = 0; i < ndocs; i++) {
        if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, !markers) ||
            !yaml_emitter_emit(&e, &ev) || emit_value(&e, docs[i]) < 0 ||
            !yaml_document_end_event_initialize(&ev, 1) || !yaml_emitter_emit(&e, &ev))
            goto out;
    }
    if (!yaml_stream_end_event_initialize(&ev) || !yaml_emitter_emit(&e, &ev) ||
        !yaml_emitter_flush(&e))
        goto out;
    rc = 0;
out:
    yaml_emitter_delete(&e);
    return rc;
}

void cli_print_structured(const json_t *doc, output_format format)
{
    if (format == OUTPUT_YAML) {
        /* libyaml ends an empty flow collection at the root without a newline. */
        if ((json_is_array(doc) || json_is_object(doc)) &&
            (json_is_array(doc) ? json_array_size(doc) : json_object_size(doc)) == 0) {
            puts(json_is_array(doc) ? "[]" : "{}");
            return;
        }
        if (cli_write_yaml(stdout, &doc, 1, false) < 0)
            cli_error("cannot write YAML (out of memory)");
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



/* The resource of `kind` called `name` (in `mesh_name` when given), or NULL with the reason
 * printed: not found, or (no -m) in several meshes. */
static const resource *find_named(const manifest_set *set, resource_kind kind, const char *name,
                                  const char *mesh_name)
{
    static const char *const words[] = {"mesh", "dataplane", "secret"};
    const resource *found = NULL;
    size_t count = 0;
    char meshes[256] = "";
    for (size_t i = 0; i < manifest_set_count(set); i++) {
        const resource *res = manifest_set_get(set, i);
        if (res->kind != kind || !resource_name(res) || strcmp(resource_name(res), name) != 0)
            continue;
        size_t used = strlen(meshes);
        snprintf(meshes + used, sizeof(meshes) - used, "%s'%s'", count ? ", " : "",
                 resource_mesh(res));
        found = res;
        count++;
    }
    if (count == 1)
        return found;
    if (count > 1)
        cli_error("%s '%s' exists in %zu meshes (%s): say which with -m MESH", words[kind], name,
                  count, meshes);
    else if (kind == RESOURCE_MESH || !mesh_name)
        cli_error("%s '%s' not found", words[kind], name);
    else
        cli_error("%s '%s' not found in mesh '%s'", words[kind], name, mesh_name);
    return NULL;
}

int cmd_get(int argc, char **argv)
{
    const char *what = NULL, *mesh_name = NULL;
    output_format format = OUTPUT_TEXT;
    resource_kind kind;
    char **names = NULL;
    size_t nnames = 0;
    if (cli_parse_listing(argc, argv, cmd_get_usage,
                          1u << OUTPUT_TEXT | 1u << OUTPUT_JSON | 1u << OUTPUT_YAML |
                              1u << OUTPUT_NAME,
                          &what, &mesh_name, &format, &names, &nnames) < 0)
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

    store *s = cli_open_store_to_read(NULL);
    if (!s)
        return EXIT_TROUBLE;
    manifest_set *set = manifest_set_new();
    diag_list diags = DIAG_LIST_INIT;
    /* A mesh is named by itself: -m does not narrow a mesh looked up by name. */
    int rc = state_load_resources(s, kind == RESOURCE_MESH && nnames ? NULL : mesh_name, set,
                                  &diags);
    if (rc < 0) {
        cli_error("cannot read the store: %s", store_errmsg(s)[0] ? store_errmsg(s) : store_strerror(rc));
        manifest_set_free(set);
        store_close(s);
        return EXIT_TROUBLE;
    }
    if (!(kind == RESOURCE_MESH && nnames))
        cli_note_unknown_mesh(set, mesh_name);
    /* What to print: every resource of the kind, or the named ones in the order named. */
    size_t nshown = 0, missing = 0;
    int trouble = 0;
    const resource **shown = calloc(manifest_set_count(set) + nnames + 1, sizeof(*shown));
    if (!shown) {
        cli_error("out of memory");
        manifest_set_free(set);
        diag_list_free(&diags);
        store_close(s);
        return EXIT_TROUBLE;
    }
    for (size_t i = 0; i < nnames; i++) {
        const resource *res = find_named(set, kind, names[i], mesh_name);
        if (res)
            shown[nshown++] = res;
        else
            missing++;
    }
    for (size_t i = 0; nnames == 0 && i < manifest_set_count(set); i++)
        if (manifest_set_get(set, i)->kind == kind)
            shown[nshown++] = manifest_set_get(set, i);

    json_t *items = json_array();
    if (format == OUTPUT_TEXT && (nshown > 0 || nnames == 0)) {
        if (kind == RESOURCE_MESH)
            printf("%-24s %-24s %s\n", "NAME", "MTLS", "BACKENDS");
        else if (kind == RESOURCE_DATAPLANE)
            printf("%-16s %-24s %-16s %s\n", "MESH", "NAME", "ADDRESS", "SERVICES");
        else
            printf("%-16s %s\n", "MESH", "NAME");
    }
    for (size_t i = 0; i < nshown; i++) {
        const resource *res = shown[i];
        if (format == OUTPUT_NAME) {
            printf("%s/%s\n", kind == RESOURCE_MESH ? "mesh" : kind == RESOURCE_DATAPLANE
                                                                  ? "dataplane" : "secret",
                   resource_name(res));
            continue;
        }
        if (format != OUTPUT_TEXT) {
            json_array_append_new(items, encode_resource(res, 0));
            continue;
        }
        if (kind == RESOURCE_MESH) {
            print_mesh_row(&res->u.mesh);
        } else if (kind == RESOURCE_DATAPLANE) {
            char *services = cli_dataplane_services(&res->u.dataplane);
            if (!services) {
                cli_error("out of memory");
                trouble = 1;
                break;
            }
            printf("%-16s %-24s %-16s %s\n", res->u.dataplane.mesh.value,
                   res->u.dataplane.name.value,
                   res->u.dataplane.address.value ? res->u.dataplane.address.value : "-", services);
            free(services);
        } else {
            printf("%-16s %s\n", res->u.secret.mesh.value, res->u.secret.name.value);
        }
    }
    /* Both apply back unchanged: YAML as a stream of documents, JSON as one array (one object
     * for one NAME, as kubectl prints it). */
    if (format == OUTPUT_YAML) {
        const json_t **docs = calloc(json_array_size(items) + 1, sizeof(*docs));
        for (size_t i = 0; docs && i < json_array_size(items); i++)
            docs[i] = json_array_get(items, i);
        if (!docs || cli_write_yaml(stdout, docs, json_array_size(items), true) < 0) {
            cli_error("cannot write YAML (out of memory)");
            trouble = 1;
        }
        free(docs);
    } else if (format == OUTPUT_JSON && nnames == 1) {
        if (nshown == 1)
            cli_print_structured(json_array_get(items, 0), format);
    } else if (format == OUTPUT_JSON) {
        cli_print_structured(items, format);
    }
    json_decref(items);
    free(shown);
    if (cli_diagnostics_out_of_memory(&diags))
        trouble = 1;   /* the listing may lack resources */
    manifest_set_free(set);
    diag_list_free(&diags);
    store_close(s);
    return trouble ? EXIT_TROUBLE : missing ? EXIT_INVALID : EXIT_OK;
}
