/* cli.h - shared pieces of the meshca command line: exit codes, output formats, commands. */
#ifndef MESHCA_CLI_H
#define MESHCA_CLI_H

#include <stdbool.h>
#include <stdint.h>
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
    OUTPUT_NAME,    /* KIND/NAME per line, as kubectl -o name (shell completion) */
} output_format;

/* Parses "text", "json", ... among the formats allowed by `allowed` (bitmask of 1 << format).
 * Returns 0 or -1 (and prints a usage error). */
int output_parse_format(const char *text, unsigned allowed, output_format *ret);

/* Prints diagnostics: text and github to `out`, one per line; json as the S3 object
 * {"ok","diagnostics":[...]}. `ok` is what the command decided. */
void output_diagnostics(FILE *out, output_format format, const diag_list *diags, int ok);

/* True (after printing "meshca: error: out of memory") when `diags` lost a diagnostic or a check
 * could not finish for want of memory: the command must then exit EXIT_TROUBLE, never report
 * a clean result. */
bool cli_diagnostics_out_of_memory(const diag_list *diags);

/* Reports a getopt_long failure `c` (':' = a flag without its value, else an unknown flag) of
 * the command argv[0], pointing at its help. */
void cli_flag_error(int c, int argc, char **argv);

/* The global --store URL as given before the command (main.c), NULL when absent: `validate`
 * reads the store only when asked to, never because MESHCA_STORE happens to be set. */
extern const char *cli_store_flag;

/* Verbosity from the global flags (main.c): -1 --quiet, 0 normal, 1 -v. */
extern int cli_verbosity;
/* An informational line on stdout ("mesh/default created", a summary): not with --quiet.
 * Errors, warnings and the output a command was asked for are never informational. */
void cli_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Detail on stderr ("meshca: ..." and a newline), only with -v. */
void cli_detail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Progress of long work as a single line on stderr that updates in place, shown only when
 * stderr is a terminal, without --quiet, for at least CLI_PROGRESS_MIN_ITEMS items; redrawn at
 * most every CLI_PROGRESS_INTERVAL_MS; erased by cli_progress_end. Nothing at all otherwise. */
#define CLI_PROGRESS_MIN_ITEMS 100
#define CLI_PROGRESS_INTERVAL_MS 100
typedef struct cli_progress {
    const char *what;   /* e.g. "applying", borrowed */
    size_t done, total;
    bool active;
    int64_t last_ms;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *what, size_t total);
void cli_progress_update(cli_progress *p, size_t done);
void cli_progress_end(cli_progress *p);
/* cli_progress_update as a callback (userdata: the cli_progress), for library options such as
 * apply_options.progress. */
void cli_progress_callback(void *userdata, size_t done, size_t total);

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
int cmd_diff(int argc, char **argv);
extern const char cmd_diff_usage[];
int cmd_delete(int argc, char **argv);
extern const char cmd_delete_usage[];
int cmd_inspect(int argc, char **argv);
extern const char cmd_inspect_usage[];
int cmd_roots(int argc, char **argv);
extern const char cmd_roots_usage[];
int cmd_ca(int argc, char **argv);
extern const char cmd_ca_usage[];

/* Shared by get and inspect: "WHAT [NAME...] [-m MESH] [-o FORMAT]". NAMEs are allowed only
 * when ret_names is not NULL (*ret_names points into argv). Returns 0 or -1 (usage printed). */
int cli_parse_listing(int argc, char **argv, const char *usage, unsigned formats,
                      const char **ret_what, const char **ret_mesh, output_format *ret_format,
                      char ***ret_names, size_t *ret_nnames);
/* Prints a JSON document as indented JSON, or as YAML with OUTPUT_YAML. */
struct json_t;
void cli_print_structured(const struct json_t *doc, output_format format);
/* `meshca inspect leader` on s (cmd/inspect_leader.c): an exit code. */
struct store;
int cli_inspect_leader(struct store *s, output_format format);
/* Writes JSON documents as one YAML stream through libyaml's emitter (block style; a string is
 * quoted only where plain would read back as something else), each document after "---" when
 * `markers`. Returns 0 or -1 (out of memory or write error). */
int cli_write_yaml(FILE *out, const struct json_t *const *docs, size_t ndocs, bool markers);

int cmd_reconcile(int argc, char **argv);
extern const char cmd_reconcile_usage[];
/* Prints a pass's changes and summary to out, its diagnostics to stderr (cmd_reconcile.c). */
struct reconcile_report;
void cli_print_reconcile(FILE *out, const struct reconcile_report *rep, const diag_list *diags);
int cmd_agent(int argc, char **argv);
extern const char cmd_agent_usage[];
int cmd_run(int argc, char **argv);
extern const char cmd_run_usage[];
int cmd_token(int argc, char **argv);
extern const char cmd_token_usage[];
int cmd_cpca(int argc, char **argv);
extern const char cmd_cpca_usage[];
int cmd_version(int argc, char **argv);
extern const char cmd_version_usage[];
int cmd_completion(int argc, char **argv);
extern const char cmd_completion_usage[];
/* Every command (main.c's table) and the help of the global flags, for `meshca completion`. */
const cli_command *cli_commands(size_t *ret_n);
extern const char cli_global_flags_help[];
/* The command nearest to a misspelt one (suggest.c), or NULL when none is near enough. */
const char *cli_suggest_command(const char *word);
/* The "--flag" of `command`'s help (or a global one; only those with a NULL command) nearest to
 * a misspelt long flag ("--name" or "--name=value"), written to buf; the flag's own name when it
 * is one; NULL when none is near enough. */
const char *cli_suggest_flag(const char *command, const char *flag, char *buf, size_t size);

/* Long-running commands (loop.c). The longest --interval accepted. */
#define CLI_MAX_INTERVAL_MS (24LL * 3600 * 1000)
/* SIGTERM/SIGINT set a flag instead of killing: the current pass finishes first. */
void cli_install_stop_handler(void);
bool cli_stop_requested(void);
/* Sleeps up to ms, returning early once a stop was requested. */
void cli_sleep_ms(int64_t ms);
/* A duration flag ("1s", "500ms"): 0, or -1 when bad or out of (0, CLI_MAX_INTERVAL_MS]. */
int cli_parse_interval(const char *text, int64_t *ret_ms);
/* A --now flag: RFC 3339 UTC ("2026-11-24T17:00:00Z") or seconds since the epoch. 0 or -1. */
int cli_parse_time(const char *text, int64_t *ret);
/* A --sign-workers flag: 1..SIGN_POOL_MAX_THREADS. 0, or -1 when bad. */
int cli_parse_workers(const char *text, unsigned *ret);

#endif
