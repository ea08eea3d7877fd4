/* suggest.c - "did you mean" for a misspelt command or flag, from the commands' own help. */
#include <stdio.h>
#include <string.h>

#include "cmd/cli.h"
#include "manifests/manifest.h"

/* A help text names far fewer flags than this; more are ignored. */
#define SUGGEST_MAX_FLAGS 96
#define SUGGEST_MAX_FLAG_LEN 48
#define SUGGEST_MAX_COMMANDS 64

/* Words of one or two letters ("ls", "rm") are near too many commands to guess from. */
#define SUGGEST_MIN_LEN 3

const char *cli_suggest_command(const char *word)
{
    if (!word || strlen(word) < SUGGEST_MIN_LEN)
        return NULL;
    size_t n = 0;
    const cli_command *cmds = cli_commands(&n);
    const char *names[SUGGEST_MAX_COMMANDS + 2];
    if (n > SUGGEST_MAX_COMMANDS)
        n = SUGGEST_MAX_COMMANDS;
    for (size_t i = 0; i < n; i++)
        names[i] = cmds[i].name;
    names[n] = "help";
    names[n + 1] = NULL;
    return manifest_suggest(word, (const char *const *)names);
}

/* Appends every "--name" of `text` not yet in `names` (without its dashes). */
static void collect_flags(const char *text, char names[][SUGGEST_MAX_FLAG_LEN], size_t *n)
{
    for (const char *p = text ? strstr(text, "--") : NULL; p; p = strstr(p + 2, "--")) {
        if (p > text && (p[-1] == '-' || (p[-1] >= 'a' && p[-1] <= 'z')))
            continue;
        const char *w = p + 2;
        size_t len = strspn(w, "abcdefghijklmnopqrstuvwxyz0123456789-");
        if (len < 2 || len >= SUGGEST_MAX_FLAG_LEN || *n == SUGGEST_MAX_FLAGS)
            continue;
        bool seen = false;
        for (size_t i = 0; i < *n && !seen; i++)
            seen = strlen(names[i]) == len && memcmp(names[i], w, len) == 0;
        if (seen)
            continue;
        memcpy(names[*n], w, len);
        names[(*n)++][len] = '\0';
    }
}

const char *cli_suggest_flag(const char *command, const char *flag, char *buf, size_t size)
{
    if (!flag || strncmp(flag, "--", 2) != 0 || !size)
        return NULL;
    /* --dryrun=x: the name alone. */
    char word[SUGGEST_MAX_FLAG_LEN];
    size_t len = strcspn(flag + 2, "=");
    if (len < SUGGEST_MIN_LEN || len >= sizeof(word))
        return NULL;
    memcpy(word, flag + 2, len);
    word[len] = '\0';

    size_t ncmds = 0;
    const cli_command *cmds = cli_commands(&ncmds);
    const char *usage = NULL;
    for (size_t i = 0; command && i < ncmds && !usage; i++)
        if (strcmp(cmds[i].name, command) == 0)
            usage = cmds[i].usage;
    if (command && !usage)
        return NULL;
    static char names[SUGGEST_MAX_FLAGS][SUGGEST_MAX_FLAG_LEN];
    size_t n = 0;
    collect_flags(usage, names, &n);
    collect_flags(cli_global_flags_help, names, &n);
    const char *list[SUGGEST_MAX_FLAGS + 1];
    for (size_t i = 0; i < n; i++)
        list[i] = names[i];
    list[n] = NULL;
    const char *best = manifest_suggest(word, list);
    if (!best)
        return NULL;
    snprintf(buf, size, "--%s", best);
    return buf;
}
