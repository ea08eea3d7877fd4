/* cli.h - shared pieces of the meshca command line: exit codes, output formats, commands. */
#ifndef MESHCA_CLI_H
#define MESHCA_CLI_H

#include <stdio.h>

#include "manifests/diag.h"

/* Exit codes of every command (SPEC S3). */
enum {
    EXIT_OK = 0,
    EXIT_INVALID = 1,   /* invalid input or a refused transition */
    EXIT_TROUBLE = 2,   /* usage error, unreadable file, store or CA unreachable, internal error */
};

typedef enum output_format {
    OUTPUT_TEXT = 0,
    OUTPUT_JSON,
    OUTPUT_GITHUB,
    OUTPUT_YAML,
    OUTPUT_PEM,
} output_format;

/* Parses "text", "json", ... among the formats allowed by `allowed` (bitmask of 1 << format).
 * Returns 0 or -1 (and prints a usage error). */
int output_parse_format(const char *text, unsigned allowed, output_format *ret);

/* Prints diagnostics: text and github to `out`, one per line; json as the S3 object
 * {"ok","diagnostics":[...]}. `ok` is what the command decided. */
void output_diagnostics(FILE *out, output_format format, const diag_list *diags, int ok);

/* Prints "meshca: error: ..." to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

typedef struct cli_command {
    const char *name;
    const char *summary;
    const char *usage;      /* full help text of the command */
    int (*run)(int argc, char **argv);
} cli_command;

int cmd_validate(int argc, char **argv);
extern const char cmd_validate_usage[];
int cmd_apply(int argc, char **argv);
extern const char cmd_apply_usage[];
int cmd_get(int argc, char **argv);
extern const char cmd_get_usage[];
int cmd_inspect(int argc, char **argv);
extern const char cmd_inspect_usage[];
int cmd_roots(int argc, char **argv);
extern const char cmd_roots_usage[];
int cmd_ca(int argc, char **argv);
extern const char cmd_ca_usage[];

/* Shared by get and inspect: "WHAT [-m MESH] [-o FORMAT]". Returns 0 or -1 (usage printed). */
int cli_parse_listing(int argc, char **argv, const char *usage, unsigned formats,
                      const char **ret_what, const char **ret_mesh, output_format *ret_format);
/* Prints a JSON document as indented JSON, or as YAML with OUTPUT_YAML. */
struct json_t;
void cli_print_structured(const struct json_t *doc, output_format format);

#endif
