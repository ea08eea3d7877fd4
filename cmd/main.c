/* main.c - the meshca program: global flags, command dispatch, help. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"

static const cli_command commands[] = {
    {"validate", "check manifests and rotation steps offline, changing nothing", cmd_validate_usage,
     cmd_validate},
    {"apply", "check changes against the store and the dataplanes, then store them", cmd_apply_usage,
     cmd_apply},
    {"get", "list meshes, dataplanes or secrets", cmd_get_usage, cmd_get},
    {"diff", "show what apply would change: a diff, each mesh's step and its verdict", cmd_diff_usage, cmd_diff},
    {"delete", "delete meshes, dataplanes or secrets, refused while needed", cmd_delete_usage, cmd_delete},
    {"inspect", "show CAs per mesh and certificates per dataplane", cmd_inspect_usage, cmd_inspect},
    {"reconcile", "one reconcile pass: issue, renew and rebundle dataplane certificates",
     cmd_reconcile_usage, cmd_reconcile},
    {"run", "the controller: reconcile on every change and renew on time", cmd_run_usage, cmd_run},
    {"agent", "dataplane side: write cert, key and bundle, reload, acknowledge", cmd_agent_usage,
     cmd_agent},
    {"roots", "print a mesh's CA roots (Consul shape) or PEM", cmd_roots_usage, cmd_roots},
    {"ca", "ca create: make a CA for a provided backend", cmd_ca_usage, cmd_ca},
    {"token", "issue, revoke or list dataplane tokens for the API", cmd_token_usage, cmd_token},
    {"cp-ca", "print the control-plane CA certificate agents trust, or rotate it", cmd_cpca_usage,
     cmd_cpca},
    {"version", "print the version of meshca and of the libraries it runs with",
     cmd_version_usage, cmd_version},
    {"completion", "print a bash or zsh completion script", cmd_completion_usage,
     cmd_completion},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

const cli_command *cli_commands(size_t *ret_n)
{
    *ret_n = NCOMMANDS;
    return commands;
}

/* Also read by `meshca completion` for the flags every command takes. */
const char cli_global_flags_help[] =
    "Global flags (before or after the command):\n"
    "  --store URL     state store (default $MESHCA_STORE or sqlite://.meshca/meshca.db);\n"
    "                  etcd://HOST:PORT[,HOST:PORT...][?max-txn-ops=N], etcds:// for TLS\n"
    "  --etcd-cacert FILE  CA of the etcd members (etcds://; $MESHCA_ETCD_CACERT)\n"
    "  --etcd-cert FILE    client certificate for etcd (etcds://; $MESHCA_ETCD_CERT)\n"
    "  --etcd-key FILE     its private key (etcds://; $MESHCA_ETCD_KEY)\n"
    "  -q, --quiet     no informational lines (created/configured, summaries, progress)\n"
    "  -v, --verbose   more detail on standard error\n"
    "  -h, --help      show this help\n"
    "  --version       print the version\n";

const char *cli_store_flag;

static void print_usage(FILE *out)
{
    fputs("meshca - declarative service-mesh certificate authority reconciler\n\n"
          "Usage: meshca [--store URL] COMMAND [FLAGS]...\n\n"
          "Commands:\n", out);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fputs("  help       show the help of a command\n\n", out);
    fputs(cli_global_flags_help, out);
    fputs("With --quiet, errors, warnings and the output asked for (get, roots, ...) are still printed.\n\n"
          "Exit codes: 0 success; 1 invalid input or a refused transition;\n"
          "            2 usage error, unreadable file, store or CA unreachable, internal error.\n"
          "Run 'meshca help COMMAND' for the flags of a command.\n", out);
}

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void unknown_command(const char *name)
{
    const char *near = cli_suggest_command(name);
    if (near)
        cli_error("unknown command '%s' (did you mean '%s'?); run 'meshca --help'", name, near);
    else
        cli_error("unknown command '%s'; run 'meshca --help'", name);
}

static int help(const char *name)
{
    /* 'meshca help --help' (or 'help help') asks how help works: the overview says it. */
    if (!name || strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 ||
        strcmp(name, "help") == 0) {
        print_usage(stdout);
        return EXIT_OK;
    }
    const cli_command *cmd = find_command(name);
    if (!cmd) {
        unknown_command(name);
        return EXIT_TROUBLE;
    }
    fputs(cmd->usage, stdout);
    return EXIT_OK;
}

/* The first --etcd-* flag given on the command line (not from the environment), or NULL. */
static const char *etcd_flag_given;

/* --etcd-cacert/--etcd-cert/--etcd-key FILE (or =FILE): 1 taken, 0 not one, -1 no value. */
static int etcd_flag(int argc, char **argv, int *i)
{
    static const char *const flags[][2] = {{"--etcd-cacert", "MESHCA_ETCD_CACERT"},
                                           {"--etcd-cert", "MESHCA_ETCD_CERT"},
                                           {"--etcd-key", "MESHCA_ETCD_KEY"}};

    for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
        size_t n = strlen(flags[f][0]);
        if (strncmp(argv[*i], flags[f][0], n) != 0)
            continue;
        if (argv[*i][n] == '=') {
            setenv(flags[f][1], argv[*i] + n + 1, 1);
            etcd_flag_given = etcd_flag_given ? etcd_flag_given : flags[f][0];
            return 1;
        }
        if (argv[*i][n] != '\0')
            continue;
        if (*i + 1 >= argc) {
            cli_error("%s needs a file; run 'meshca --help'", flags[f][0]);
            return -1;
        }
        setenv(flags[f][1], argv[++*i], 1);
        etcd_flag_given = etcd_flag_given ? etcd_flag_given : flags[f][0];
        return 1;
    }
    return 0;
}

/* --quiet / -v: true when `arg` is one of them (and records it). The last one given wins. */
static bool verbosity_flag(const char *arg)
{
    if (strcmp(arg, "-q") == 0 || strcmp(arg, "--quiet") == 0)
        cli_verbosity = -1;
    else if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0)
        cli_verbosity = 1;
    else
        return false;
    return true;
}

/* Takes the global --store, --etcd-*, --quiet and -v out of a command's arguments (kubectl
 * takes its global flags anywhere): argv[from..] up to a "--" is compacted in place. Returns the
 * new argc, or -1 when a flag lacks its value. */
static int take_global_flags(int argc, char **argv, int from)
{
    int out = from, i = from;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--store") == 0) {
            if (i + 1 >= argc) {
                cli_error("flag '--store' needs a value; run 'meshca --help'");
                return -1;
            }
            setenv("MESHCA_STORE", argv[++i], 1);
            cli_store_flag = argv[i];
        } else if (strncmp(argv[i], "--store=", 8) == 0) {
            setenv("MESHCA_STORE", argv[i] + 8, 1);
            cli_store_flag = argv[i] + 8;
        } else if (verbosity_flag(argv[i])) {
            continue;
        } else {
            int taken = etcd_flag(argc, argv, &i);
            if (taken < 0)
                return -1;
            if (!taken)
                argv[out++] = argv[i];
        }
    }
    while (i < argc)
        argv[out++] = argv[i++];
    argv[out] = NULL;
    return out;
}

int main(int argc, char **argv)
{
    int i = 1;

    /* Global flags come before the command. */
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return help(NULL);
        if (strcmp(argv[i], "--version") == 0) {
            puts("meshca " MESHCA_VERSION);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--store") == 0 && i + 1 < argc) {
            setenv("MESHCA_STORE", argv[++i], 1);
            cli_store_flag = argv[i];
            continue;
        }
        if (strncmp(argv[i], "--store=", 8) == 0) {
            setenv("MESHCA_STORE", argv[i] + 8, 1);
            cli_store_flag = argv[i] + 8;
            continue;
        }
        if (verbosity_flag(argv[i]))
            continue;
        /* The etcd TLS files reach the store through the environment, as --store does. */
        int taken = etcd_flag(argc, argv, &i);
        if (taken < 0)
            return EXIT_TROUBLE;
        if (taken)
            continue;
        char near[64];
        const char *s = cli_suggest_flag(NULL, argv[i], near, sizeof(near));
        if (s && strcmp(s, argv[i]) != 0)
            cli_error("unknown flag '%s' (did you mean '%s'?); run 'meshca --help'", argv[i], s);
        else
            cli_error("unknown flag '%s'; run 'meshca --help'", argv[i]);
        return EXIT_TROUBLE;
    }
    if (i >= argc) {
        print_usage(stderr);
        return EXIT_TROUBLE;
    }
    if (strcmp(argv[i], "help") == 0)
        return help(i + 1 < argc ? argv[i + 1] : NULL);

    const cli_command *cmd = find_command(argv[i]);
    if (!cmd) {
        unknown_command(argv[i]);
        return EXIT_TROUBLE;
    }
    if ((argc = take_global_flags(argc, argv, i + 1)) < 0)
        return EXIT_TROUBLE;
    /* TLS files asked for on the command line beside a plain-HTTP etcd:// URL would be dropped
     * in silence, and the store (CA keys included) read and written in clear: a missing 's'.
     * (From the environment alone they are ignored for etcd://, as documented.) */
    const char *url = getenv("MESHCA_STORE");
    if (etcd_flag_given && url && strncmp(url, "etcd://", 7) == 0) {
        cli_error("%s is for TLS, but the store URL is etcd:// (plain HTTP): use etcds://%s",
                  etcd_flag_given, url + 7);
        return EXIT_TROUBLE;
    }
    /* The command sees its own name as argv[0], like a program of its own. */
    return cmd->run(argc - i, argv + i);
}
