/* output.c - printing diagnostics as text, JSON (SPEC S3) or GitHub Actions annotations. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cmd/cli.h"

static const char *const format_names[] = {
    [OUTPUT_TEXT] = "text", [OUTPUT_JSON] = "json", [OUTPUT_GITHUB] = "github",
    [OUTPUT_YAML] = "yaml", [OUTPUT_PEM] = "pem", [OUTPUT_NAME] = "name",
};

void cli_error(const char *fmt, ...)
{
    va_list ap;

    fputs("meshca: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_flag_error(int c, int argc, char **argv)
{
    /* getopt leaves optind past the offending word; the flag is the word before it. */
    const char *flag = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
    if (c == ':')
        cli_error("flag '%s' needs a value; run 'meshca help %s'", flag, argv[0]);
    else {
        char near[64];
        const char *s = cli_suggest_flag(argv[0], flag, near, sizeof(near));
        size_t len = strcspn(flag, "=");
        if (s && flag[len] == '=' && strlen(s) == len && strncmp(s, flag, len) == 0)
            cli_error("flag '%s' takes no value; run 'meshca help %s'", s, argv[0]);
        else if (s && strcmp(s, flag) != 0)
            cli_error("unknown flag '%s' (did you mean '%s'?); run 'meshca help %s'", flag, s,
                      argv[0]);
        else
            cli_error("unknown flag '%s'; run 'meshca help %s'", flag, argv[0]);
    }
}

bool cli_diagnostics_out_of_memory(const diag_list *diags)
{
    if (!diags->out_of_memory)
        return false;
    cli_error("out of memory: some checks did not finish and their diagnostics are lost");
    return true;
}

int output_parse_format(const char *text, unsigned allowed, output_format *ret)
{
    char list[64] = "";

    for (size_t i = 0; i < sizeof(format_names) / sizeof(format_names[0]); i++) {
        if (!(allowed & (1u << i)))
            continue;
        if (strcmp(text, format_names[i]) == 0) {
            *ret = (output_format)i;
            return 0;
        }
        if (list[0])
            strncat(list, "|", sizeof(list) - strlen(list) - 1);
        strncat(list, format_names[i], sizeof(list) - strlen(list) - 1);
    }
    cli_error("unknown output format '%s' (expected %s)", text, list);
    return -1;
}

static const char *severity_name(diag_severity severity)
{
    return severity == DIAG_ERROR ? "error" : "warning";
}

/* GitHub workflow commands end at a newline and treat '%' specially: escape as GitHub documents. */
static void print_github_escaped(FILE *out, const char *text, int property)
{
    for (const char *p = text; *p; p++) {
        if (*p == '%')
            fputs("%25", out);
        else if (*p == '\r')
            fputs("%0D", out);
        else if (*p == '\n')
            fputs("%0A", out);
        else if (property && *p == ':')
            fputs("%3A", out);
        else if (property && *p == ',')
            fputs("%2C", out);
        else
            fputc(*p, out);
    }
}

static void print_text(FILE *out, const diag *d)
{
    if (d->file && d->line)
        fprintf(out, "%s:%u:%u: ", d->file, d->line, d->column);
    else if (d->file)
        fprintf(out, "%s: ", d->file);
    else
        fputs("meshca: ", out);
    fprintf(out, "%s: ", severity_name(d->severity));
    if (d->path && d->path[0])
        fprintf(out, "%s: ", d->path);
    fprintf(out, "%s\n", d->message);
}

static void print_github(FILE *out, const diag *d)
{
    fprintf(out, "::%s ", severity_name(d->severity));
    if (d->file) {
        fputs("file=", out);
        print_github_escaped(out, d->file, 1);
        if (d->line)
            fprintf(out, ",line=%u,col=%u", d->line, d->column);
    }
    fputs("::", out);
    if (d->path && d->path[0]) {
        print_github_escaped(out, d->path, 0);
        fputs(": ", out);
    }
    print_github_escaped(out, d->message, 0);
    fputc('\n', out);
}

static json_t *diag_to_json(const diag *d)
{
    return json_pack("{s:s, s:s?, s:I, s:I, s:s, s:s, s:s}",
                     "severity", severity_name(d->severity), "file", d->file,
                     "line", (json_int_t)d->line, "column", (json_int_t)d->column,
                     "path", d->path ? d->path : "", "code", d->code, "message", d->message);
}

void output_diagnostics(FILE *out, output_format format, const diag_list *diags, int ok)
{
    if (format == OUTPUT_JSON) {
        json_t *array = json_array();
        for (size_t i = 0; i < diags->count; i++)
            json_array_append_new(array, diag_to_json(&diags->items[i]));
        json_t *root = json_pack("{s:b, s:o}", "ok", ok, "diagnostics", array);
        json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', out);
        json_decref(root);
        return;
    }
    for (size_t i = 0; i < diags->count; i++) {
        if (format == OUTPUT_GITHUB)
            print_github(out, &diags->items[i]);
        else
            print_text(out, &diags->items[i]);
    }
}
