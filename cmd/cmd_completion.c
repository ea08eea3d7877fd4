/* cmd_completion.c - `meshca completion bash|zsh`: a shell completion script, its flags and
 * arguments read from the commands' own help texts, so it cannot drift from them. */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"

const char cmd_completion_usage[] =
    "Usage: meshca completion bash|zsh\n"
    "\n"
    "Prints a shell completion script for meshca: commands, flags, the values of -o and of\n"
    "other flags with fixed choices, and the names of meshes, dataplanes and secrets in the\n"
    "store (read with 'meshca get', with the --store and --etcd-* flags of the line being\n"
    "completed). Load it in the current shell, or from the shell's start-up file:\n"
    "\n"
    "  source <(meshca completion bash)        # ~/.bashrc\n"
    "  source <(meshca completion zsh)         # ~/.zshrc, after compinit\n"
    "\n"
    "Exit codes: 0 ok; 2 usage error.\n";

/* The longest piece of help text a flag or choice list may take; longer ones are cut. */
#define WORD_MAX 64
#define LIST_MAX 2048
#define MAX_VALUED 48

/* Appends `word` (wlen bytes, not terminated) to the space-separated `list` unless there. */
static void list_add(char *list, const char *word, size_t wlen)
{
    char padded_list[LIST_MAX + 2], padded_word[WORD_MAX + 2];
    size_t len = strlen(list);
    if (wlen == 0 || wlen >= WORD_MAX || len + wlen + 2 > LIST_MAX)
        return;
    snprintf(padded_list, sizeof(padded_list), " %s ", list);
    snprintf(padded_word, sizeof(padded_word), " %.*s ", (int)wlen, word);
    if (strstr(padded_list, padded_word))
        return;
    snprintf(list + len, LIST_MAX - len, "%s%.*s", len ? " " : "", (int)wlen, word);
}

/* Prints `text` as a single-quoted shell word. Help texts hold no quote, but be safe. */
static void print_quoted(const char *text)
{
    putchar('\'');
    for (const char *p = text; *p; p++)
        if (*p == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*p);
    putchar('\'');
}

/* What completion needs of one command, gathered from its help. */
typedef struct command_words {
    char flags[LIST_MAX];    /* every flag, short and long */
    char valued[LIST_MAX];   /* the flags that take a value */
    char args[LIST_MAX];     /* choices of the first argument: a kind or a subcommand */
    bool names;              /* NAME... follows the first argument (names of that kind) */
    /* What a valued flag takes: fixed values ("-o text|json": is_choice, "text json") or
     * a placeholder ("--out DIR": "DIR"), which tells files from directories. */
    struct flag_value {
        char flag[WORD_MAX];
        bool is_choice;
        char text[LIST_MAX];
    } values[MAX_VALUED];
    size_t nvalues;
    char pairs[16][2][WORD_MAX];       /* -m with --mesh: what one takes the other takes */
    size_t npairs;
} command_words;

/* The token at p: up to a space, ']', ',' or end of line. */
static size_t token_len(const char *p)
{
    size_t n = 0;
    while (p[n] && p[n] != ' ' && p[n] != ']' && p[n] != ',' && p[n] != '\n' && p[n] != '=')
        n++;
    return n;
}

static bool is_flag_word(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)p[i]) && p[i] != '-')
            return false;
    return true;
}

static struct flag_value *find_value(command_words *w, const char *flag)
{
    for (size_t i = 0; i < w->nvalues; i++)
        if (strcmp(w->values[i].flag, flag) == 0)
            return &w->values[i];
    return NULL;
}

/* Records what `flag` takes; fixed values win over a placeholder seen elsewhere in the help. */
static void set_value(command_words *w, const char *flag, bool is_choice, const char *text)
{
    struct flag_value *v = find_value(w, flag);
    if (v && (v->is_choice || !is_choice))
        return;
    if (!v) {
        if (w->nvalues >= MAX_VALUED || strlen(flag) >= WORD_MAX)
            return;
        v = &w->values[w->nvalues++];
        snprintf(v->flag, WORD_MAX, "%s", flag);
    }
    v->is_choice = is_choice;
    snprintf(v->text, LIST_MAX, "%s", text);
}

/* `value` (n bytes) after a flag: "text|json" (lowercase words) or a placeholder "PATH...". */
static void add_value(command_words *w, const char *flag, size_t flen, const char *value, size_t n)
{
    char name[WORD_MAX], text[LIST_MAX] = "";
    if (flen >= WORD_MAX)
        return;
    snprintf(name, sizeof(name), "%.*s", (int)flen, flag);
    if (memchr(value, '|', n) && islower((unsigned char)value[0])) {
        for (size_t s = 0; s < n;) {
            size_t e = s;
            while (e < n && value[e] != '|')
                e++;
            list_add(text, value + s, e - s);
            s = e + 1;
        }
        set_value(w, name, true, text);
    } else if (isupper((unsigned char)value[0])) {
        size_t k = 0;
        while (k < n && k + 1 < sizeof(text) && isupper((unsigned char)value[k]))
            k++;
        snprintf(text, sizeof(text), "%.*s", (int)k, value);
        set_value(w, name, false, text);
    }
}

/* Reads the flags in one line of help: in the usage block, every "-x" or "--long" that starts a
 * word (and "--long VALUE": a value); in a flag table ("  -m, --mesh MESH   text"), the leading
 * flags only, a value being one space after the flag (two or more start the description). */
static void scan_flags(command_words *w, const char *line, size_t len, bool usage_block)
{
    const char *prev_flag = NULL;
    size_t prev_len = 0;
    for (size_t i = 0; i < len; i++) {
        if (line[i] != '-' || (i > 0 && line[i - 1] != ' ' && line[i - 1] != '[' &&
                               line[i - 1] != '|'))
            continue;
        const char *flag = line + i;
        size_t flen = token_len(flag);
        if (flen < 2 || !isalpha((unsigned char)flag[flag[1] == '-' ? 2 : 1]) ||
            (flag[1] != '-' && flen != 2) || !is_flag_word(flag, flen))
            continue;
        list_add(w->flags, flag, flen);
        const char *after = flag + flen;
        bool valued = after[0] == '=' ||
                      (after[0] == ' ' && after[1] && after[1] != ' ' && after[1] != '[' &&
                       after[1] != '-' && after[1] != '|' && after[1] != '\n' &&
                       (usage_block || isupper((unsigned char)after[1])));
        if (valued) {
            list_add(w->valued, flag, flen);
            const char *value = after + 1;
            add_value(w, flag, flen, value, token_len(value));
        }
        /* "-m, --mesh": the short and the long flag are one. */
        if (prev_flag && prev_flag[prev_len] == ',' && prev_flag + prev_len + 2 == flag &&
            w->npairs < 16 && flen < WORD_MAX && prev_len < WORD_MAX) {
            snprintf(w->pairs[w->npairs][0], WORD_MAX, "%.*s", (int)prev_len, prev_flag);
            snprintf(w->pairs[w->npairs][1], WORD_MAX, "%.*s", (int)flen, flag);
            w->npairs++;
        }
        prev_flag = flag;
        prev_len = flen;
        i += flen;
        if (!usage_block && !(after[0] == ',' && after[1] == ' '))
            break;   /* the rest of a flag-table line is its description */
    }
}

/* In a usage line "meshca NAME ARG ...", ARG when it is a subcommand or a choice of kinds
 * ("issue", "meshes|dataplanes|secrets"), and whether NAME... follows it. */
static void scan_args(command_words *w, const char *name, const char *line, size_t len)
{
    char prefix[WORD_MAX + 8];
    snprintf(prefix, sizeof(prefix), "meshca %s ", name);
    const char *p = strstr(line, prefix);
    if (!p || p >= line + len)
        return;
    p += strlen(prefix);
    size_t n = token_len(p);
    if (n == 0 || !islower((unsigned char)p[0]))
        return;
    for (size_t s = 0; s < n;) {
        size_t e = s;
        while (e < n && p[e] != '|')
            e++;
        list_add(w->args, p + s, e - s);
        s = e + 1;
    }
    if (strncmp(p + n, " NAME", 5) == 0 || strncmp(p + n, " [NAME", 6) == 0)
        w->names = true;
}

static void scan_help(command_words *w, const char *name, const char *help)
{
    memset(w, 0, sizeof(*w));
    bool usage_block = true;
    for (const char *line = help; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len == 0)
            usage_block = false;   /* the usage lines end at the first blank line */
        if (usage_block && name)
            scan_args(w, name, line, len);
        size_t indent = strspn(line, " ");
        if (usage_block || (indent > 0 && indent <= 6 && indent < len && line[indent] == '-'))
            scan_flags(w, line, len, usage_block);
        line += len + (end ? 1 : 0);
    }
    /* A short flag takes a value, or fixed ones, when its long form does, and the reverse. */
    for (size_t i = 0; i < w->npairs; i++)
        for (int side = 0; side < 2; side++) {
            const char *a = w->pairs[i][side], *b = w->pairs[i][!side];
            char padded[WORD_MAX + 2];
            snprintf(padded, sizeof(padded), " %s ", a);
            char list[LIST_MAX + 2];
            snprintf(list, sizeof(list), " %s ", w->valued);
            if (strstr(list, padded))
                list_add(w->valued, b, strlen(b));
            struct flag_value *v = find_value(w, a);
            if (v) {
                struct flag_value copy = *v;   /* b's entry goes into the same array */
                set_value(w, b, copy.is_choice, copy.text);
            }
        }
    list_add(w->flags, "-h", 2);
    list_add(w->flags, "--help", 6);
}

/* The command's words as bash assignments into the associative arrays. */
static void print_command(const char *name, const command_words *w)
{
    printf("_meshca_flags[%s]=", name);
    print_quoted(w->flags);
    printf("\n_meshca_valued[%s]=", name);
    print_quoted(w->valued);
    putchar('\n');
    if (w->args[0]) {
        printf("_meshca_args[%s]=", name);
        print_quoted(w->args);
        putchar('\n');
    }
    if (w->names)
        printf("_meshca_names[%s]=1\n", name);
    for (size_t i = 0; i < w->nvalues; i++) {
        printf("%s[%s:%s]=", w->values[i].is_choice ? "_meshca_choices" : "_meshca_placeholder",
               name, w->values[i].flag);
        print_quoted(w->values[i].text);
        putchar('\n');
    }
}

/* What the script does with the words above; `meshca get` lists names, errors discarded. */
static const char completion_function[] =
    "_meshca_names_of() {   # KIND (mesh[es], dataplane[s], secret[s]) [-m MESH]\n"
    "    local kind=$1\n"
    "    shift\n"
    "    [ \"${kind%s}\" = \"$kind\" ] && kind=${kind}s\n"
    "    [ \"$kind\" = meshs ] && kind=meshes\n"
    "    \"$_meshca_cmd\" \"${_meshca_global[@]}\" get \"$kind\" \"$@\" -o name 2>/dev/null | sed -e 's#^[^/]*/##'\n"
    "}\n"
    "\n"
    "_meshca_reply() {   # WORDS: those that start with the word being completed\n"
    "    COMPREPLY=($(compgen -W \"$1\" -- \"$cur\"))\n"
    "}\n"
    "\n"
    "_meshca() {\n"
    "    # zsh's bashcompinit runs this under sh emulation (KSH_ARRAYS: numbered from 0, as in\n"
    "    # bash); called without it, zsh numbers COMP_WORDS from 1.\n"
    "    local o=0\n"
    "    if [ -n \"${ZSH_VERSION:-}\" ] && [[ ! -o ksharrays ]]; then o=1; fi\n"
    "    local cur=${COMP_WORDS[COMP_CWORD+o]} prev=${COMP_WORDS[COMP_CWORD-1+o]}\n"
    "    local _meshca_cmd=${COMP_WORDS[o]}\n"
    "    local i w cmd= mesh= npos=0 kind=\n"
    "    local -a _meshca_global=() mflag=()\n"
    "    # The words before the cursor: global flags (anywhere, as meshca takes them), the\n"
    "    # command, its flags with their values, its arguments.\n"
    "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
    "        w=${COMP_WORDS[i+o]}\n"
    "        if [[ \" ${_meshca_valued[_]} \" == *\" $w \"* ]]; then\n"
    "            _meshca_global+=(\"$w\" \"${COMP_WORDS[i+1+o]}\")\n"
    "            i=$((i + 1))\n"
    "            continue\n"
    "        fi\n"
    "        case $w in\n"
    "        --store=* | --etcd-*=*) _meshca_global+=(\"$w\"); continue ;;\n"
    "        -*)\n"
    "            if [ -n \"$cmd\" ] && [[ \" ${_meshca_valued[$cmd]} \" == *\" $w \"* ]]; then\n"
    "                if [ \"$w\" = -m ] || [ \"$w\" = --mesh ]; then mesh=${COMP_WORDS[i+1+o]}; fi\n"
    "                i=$((i + 1))\n"
    "            fi\n"
    "            continue ;;\n"
    "        esac\n"
    "        if [ -z \"$cmd\" ]; then\n"
    "            cmd=$w\n"
    "        else\n"
    "            [ \"$npos\" -eq 0 ] && kind=$w\n"
    "            npos=$((npos + 1))\n"
    "        fi\n"
    "    done\n"
    "    [ -n \"$mesh\" ] && mflag=(-m \"$mesh\")\n"
    "    local key=${cmd:-_}   # the key \"_\" holds the global flags; an empty key is an error\n"
    "    COMPREPLY=()\n"
    "    if [ \"$COMP_CWORD\" -gt 1 ] && [[ \"$prev\" == -* ]] &&\n"
    "        [[ \" ${_meshca_valued[_]} ${_meshca_valued[$key]} \" == *\" $prev \"* ]]; then\n"
    "        local values=${_meshca_choices[$key:$prev]}\n"
    "        local what=${_meshca_placeholder[$key:$prev]:-${_meshca_placeholder[_:$prev]}}\n"
    "        if [ -n \"$values\" ]; then\n"
    "            _meshca_reply \"$values\"\n"
    "        elif [ \"$prev\" = -m ] || [ \"$prev\" = --mesh ]; then\n"
    "            _meshca_reply \"$(_meshca_names_of meshes)\"\n"
    "        elif [ \"$prev\" = -d ] || [ \"$prev\" = --dataplane ]; then\n"
    "            _meshca_reply \"$(_meshca_names_of dataplanes \"${mflag[@]}\")\"\n"
    "        elif [ \"$prev\" = --store ]; then\n"
    "            _meshca_reply 'sqlite:// etcd:// etcds://'\n"
    "            type compopt >/dev/null 2>&1 && compopt -o nospace\n"
    "        elif [ \"$what\" = DIR ]; then\n"
    "            COMPREPLY=($(compgen -d -- \"$cur\"))\n"
    "            type compopt >/dev/null 2>&1 && compopt -o filenames\n"
    "        elif [ \"$what\" = FILE ] || [ \"$what\" = PATH ] || [ \"$what\" = F ]; then\n"
    "            COMPREPLY=($(compgen -f -- \"$cur\"))\n"
    "            type compopt >/dev/null 2>&1 && compopt -o filenames\n"
    "        fi\n"
    "        return 0\n"
    "    fi\n"
    "    if [[ \"$cur\" == -* ]]; then\n"
    "        _meshca_reply \"${_meshca_flags[$key]} ${_meshca_flags[_]}\"\n"
    "    elif [ -z \"$cmd\" ]; then\n"
    "        _meshca_reply \"$_meshca_commands\"\n"
    "    elif [ \"$cmd\" = help ]; then\n"
    "        [ \"$npos\" -eq 0 ] && _meshca_reply \"$_meshca_commands\"\n"
    "    elif [ \"$npos\" -eq 0 ] && [ -n \"${_meshca_args[$key]}\" ]; then\n"
    "        _meshca_reply \"${_meshca_args[$key]}\"\n"
    "    elif [ \"$npos\" -ge 1 ] && [ -n \"${_meshca_names[$key]}\" ]; then\n"
    "        _meshca_reply \"$(_meshca_names_of \"$kind\" \"${mflag[@]}\")\"\n"
    "    fi\n"
    "    return 0\n"
    "}\n"
    "complete -F _meshca meshca\n";

/* Prints the script; -1 (said on stderr) when out of memory. */
static int print_script(bool zsh)
{
    size_t n = 0;
    const cli_command *cmds = cli_commands(&n);
    command_words *w = calloc(1, sizeof(*w));
    if (!w) {
        cli_error("out of memory");
        return -1;
    }
    puts("# meshca shell completion: generated by 'meshca completion', from meshca's own help.");
    if (zsh)
        puts("autoload -U +X bashcompinit && bashcompinit");
    puts("typeset -gA _meshca_flags _meshca_valued _meshca_args _meshca_names _meshca_choices "
         "_meshca_placeholder");
    fputs("_meshca_commands='help", stdout);
    for (size_t i = 0; i < n; i++)
        printf(" %s", cmds[i].name);
    puts("'");
    /* The global flags under the key "_": a line's flags before its command. */
    scan_help(w, NULL, cli_global_flags_help);
    print_command("_", w);
    for (size_t i = 0; i < n; i++) {
        scan_help(w, cmds[i].name, cmds[i].usage);
        print_command(cmds[i].name, w);
    }
    free(w);
    fputs(completion_function, stdout);
    return 0;
}

int cmd_completion(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(cmd_completion_usage, stdout);
        return EXIT_OK;
    }
    if (argc != 2 || (strcmp(argv[1], "bash") != 0 && strcmp(argv[1], "zsh") != 0)) {
        cli_error("completion needs one shell: bash or zsh; run 'meshca help completion'");
        return EXIT_TROUBLE;
    }
    if (print_script(strcmp(argv[1], "zsh") == 0) < 0)
        return EXIT_TROUBLE;
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_TROUBLE;
}
