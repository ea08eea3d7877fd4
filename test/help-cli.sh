#!/usr/bin/env bash
# help-cli.sh - every flag each command parses (the getopt option tables in cmd/*.c) is listed
# in the Flags of its --help and in its section of the man page, and the reverse; the man page
# is well-formed roff; `meshca completion bash|zsh` offers commands, flags, values, files and stored names.
source "$(dirname "$0")/lib.sh"
: "${MESHCA_MAN:?set MESHCA_MAN to the generated meshca.1}"
ex="$SOURCE_ROOT/manifests/examples/rotation/universal"

# Flags a command parses but does not document yet, in files other branches own; each entry is
# reported, and fails once it is no longer a gap, so the list only shrinks. Format: COMMAND --FLAG.
KNOWN_GAPS=""

python3 - "$MESHCA" "$SOURCE_ROOT" "$MESHCA_MAN" "$KNOWN_GAPS" >"$WORK/flags.txt" <<'PY'
import glob, os, re, subprocess, sys
meshca, root, man_path, gaps_text = sys.argv[1:5]
gaps = {tuple(l.split()) for l in gaps_text.splitlines() if l.strip()}

def run(*args):
    return subprocess.run([meshca, *args], capture_output=True, text=True, check=True).stdout

top = run("--help")
commands = re.findall(r"^  ([a-z][a-z-]*) ", top.split("Commands:\n", 1)[1].split("\n\n", 1)[0], re.M)
commands = [c for c in commands if c != "help"]

# The option tables: {"name", required_argument, NULL, 'x'} (or an OPT_ value: no short flag).
OPTION = re.compile(r'\{"([a-z][a-z0-9-]*)",\s*\w+_argument,\s*NULL,\s*(\'(.)\'|\w+)\}')
tables = {}
listing = None
for path in sorted(glob.glob(os.path.join(root, "cmd", "cmd_*.c"))):
    src = open(path).read()
    stem = os.path.basename(path)[4:-2]
    opts = {(m.group(1), m.group(3)) for m in OPTION.finditer(src)}
    if "int cli_parse_listing(" in src:
        listing = opts   # the table get and inspect share
    cmd = next((c for c in commands if c.replace("-", "") == stem), None)
    if cmd is None:
        print(f"FAIL cmd/{os.path.basename(path)} is no command that 'meshca --help' lists")
        continue
    tables[cmd] = (opts, "cli_parse_listing(argc" in src and "int cli_parse_listing(" not in src)
for cmd, (opts, uses_listing) in list(tables.items()):
    if uses_listing:
        tables[cmd] = (opts | listing, False)

FLAG = re.compile(r"^  (?:-([A-Za-z]), )?\s*--([a-z][a-z0-9-]*)")
man = open(man_path).read()
sections = dict(re.findall(r"^\.SS (\S+)\n(.*?)(?=^\.S[SH] )", man, re.M | re.S))
for cmd in commands:
    parsed = {(long, short) for long, short in tables.get(cmd, (set(), 0))[0] if long != "help"}
    help_text = run("help", cmd)
    flags_block = help_text.split("\nFlags:\n", 1)[1].split("\n\n", 1)[0] if "\nFlags:\n" in help_text else ""
    in_help = {(m.group(2), m.group(1)) for m in map(FLAG.match, flags_block.split("\n")) if m}
    in_help.discard(("help", "h"))
    sec = sections.get(cmd, "")
    in_man = set()
    for item in re.findall(r"^\.TP\n(.*)$", sec, re.M):
        m = re.match(r"(?:\\fB\\-(\w)\\fR, )?\\fB\\-\\-([a-z0-9\\-]+)\\fR", item)
        if m:
            in_man.add((m.group(2).replace("\\-", "-"), m.group(1)))
    in_man.discard(("help", "h"))
    print(f"ok {cmd}: the man page has a section" if sec else f"FAIL {cmd}: no section in the man page")
    for where, documented in (("--help", in_help), ("the man page", in_man)):
        for long, short in sorted(parsed, key=lambda x: x[0]):
            name = f"-{short}, --{long}" if short else f"--{long}"
            if (long, short) in documented:
                state = "FAIL" if (cmd, "--" + long) in gaps else "ok"
                note = " (listed in KNOWN_GAPS: remove it)" if state == "FAIL" else ""
                print(f"{state} {cmd}: parsed {name} is in {where}{note}")
            elif (cmd, "--" + long) in gaps:
                print(f"ok {cmd}: parsed {name} is not in {where} yet (known gap, another branch's file)")
            else:
                print(f"FAIL {cmd}: parsed {name} is not in the Flags of {where}")
        for long, short in sorted(documented - parsed, key=lambda x: x[0]):
            name = f"-{short}, --{long}" if short else f"--{long}"
            print(f"FAIL {cmd}: {where} lists {name}, which the command does not parse")
PY
while read -r state what; do
    if [ "$state" = ok ]; then
        passed=$((passed + 1)); echo "ok - $what"
    else
        failed=$((failed + 1)); echo "FAIL - $what"
    fi
done <"$WORK/flags.txt"
check "the flag comparison ran over every command" test "$(grep -c ': the man page has a section' "$WORK/flags.txt")" -ge 10

# The man page: well-formed, and the new commands in it.
check "groff reads the man page without warnings" \
    test -z "$(groff -man -ww -z "$MESHCA_MAN" 2>&1)"
check "the man page has the delete command" grep -q '^\.SS delete$' "$MESHCA_MAN"
check "the man page has the diff command" grep -q '^\.SS diff$' "$MESHCA_MAN"
check "the man page says --store goes before or after the command" grep -q 'before or after the command' "$MESHCA_MAN"

# --- shell completion: 'meshca completion bash|zsh' ---
export MESHCA_STORE="sqlite://$WORK/store/meshca.db"
run apply -f "$ex/0-mesh.yaml" -f "$ex/dataplanes.yaml"
check "setup: a mesh with two dataplanes" exit_is 0
mkdir -p "$WORK/bin" "$WORK/files/adir" && ln -s "$MESHCA" "$WORK/bin/meshca" && touch "$WORK/files/afile"
run completion bash
check "completion bash: exit 0" exit_is 0
cp "$WORK/out" "$WORK/completion.bash"
check "the bash script parses" bash -n "$WORK/completion.bash"
run completion fish
check "completion of an unknown shell: exit 2" exit_is 2
check "completion of an unknown shell names the shells" grep -q 'bash or zsh' "$WORK/err"
# complete_line WORD...: what bash offers for the line "meshca WORD..." (last word completed),
# run in $WORK/files (afile, adir/).
complete_line() {
    (cd "$WORK/files" && PATH="$WORK/bin:$PATH" bash -c '
        source "$1"; shift
        COMP_WORDS=(meshca "$@"); COMP_CWORD=$#
        _meshca
        printf "%s\n" "${COMPREPLY[@]}"' _ "$WORK/completion.bash" "$@") >"$WORK/out" 2>"$WORK/err"
    rc=$?
}
# The same in zsh, through bashcompinit as a user's shell runs it (compgen -F under sh
# emulation); zsh's compadd keeps the words that start with the one typed: done here by hand.
complete_zsh() {
    (cd "$WORK/files" && PATH="$WORK/bin:$PATH" zsh -f -c '
        autoload -U compinit && compinit -u -d "$1.zcompdump"
        source <(meshca completion zsh)
        shift
        words=(meshca "$@"); CURRENT=$(( $# + 1 ))
        COMP_WORDS=("${words[@]}"); COMP_CWORD=$(( CURRENT - 1 ))
        cur=${words[CURRENT]}
        for m in "${(@f)$(compgen -F _meshca -- "$cur")}"; do
            [[ -n $m && $m == ${cur}* ]] && print -r -- "$m"
        done' _ "$WORK/zsh" "$@") >"$WORK/out" 2>"$WORK/err"
    rc=$?
}
words() { sort "$WORK/out" | tr '\n' ' '; }
for shell in bash zsh; do
    c=complete_line
    [ "$shell" = zsh ] && c=complete_zsh
    $c ""
    check "$shell: completion offers the commands, delete and diff among them" \
        test "$(grep -cx 'delete\|diff\|get\|apply\|completion' "$WORK/out")" = 5
    $c de
    check "$shell: completion of 'de' is delete" test "$(cat "$WORK/out")" = delete
    $c apply --
    check "$shell: completion offers apply's flags and the global ones" \
        test "$(grep -cx -- '--dry-run\|--force\|--filename\|--store\|--quiet' "$WORK/out")" = 5
    $c run --li
    check "$shell: completion of run --li is --listen" test "$(cat "$WORK/out")" = --listen
    $c get ""
    check "$shell: completion offers the kinds get lists" test "$(words)" = "dataplanes meshes secrets "
    $c token ""
    check "$shell: completion offers token's subcommands" test "$(words)" = "issue list revoke "
    $c delete dataplane ""
    check "$shell: completion offers stored dataplane names to delete" test "$(words)" = "db-01 web-01 "
    $c get -m default dataplanes w
    check "$shell: a flag's value is not taken for the kind" test "$(cat "$WORK/out")" = web-01
    $c get meshes -o ""
    check "$shell: completion offers get's output formats" test "$(words)" = "json name text yaml "
    $c validate -o ""
    check "$shell: completion offers validate's output formats" test "$(words)" = "github json text "
    $c ca create --key-type ""
    check "$shell: completion offers --key-type's values" test "$(words)" = "ec rsa "
    $c inspect -m ""
    check "$shell: completion offers mesh names for -m" test "$(cat "$WORK/out")" = default
    $c agent -m default -d ""
    check "$shell: completion offers the mesh's dataplanes for -d" test "$(words)" = "db-01 web-01 "
    $c agent --out a
    check "$shell: --out DIR completes directories only" test "$(words)" = "adir "
    $c validate -f a
    check "$shell: -f PATH completes files" test "$(words)" = "adir afile "
    unset MESHCA_STORE
    $c --store "sqlite://$WORK/store/meshca.db" get meshes ""
    check "$shell: completion reads the store the line names with --store" test "$(cat "$WORK/out")" = default
    $c get --store "sqlite://$WORK/store/meshca.db" meshes ""
    check "$shell: --store after the command is read too" test "$(cat "$WORK/out")" = default
    export MESHCA_STORE="sqlite://$WORK/store/meshca.db"
done

# meshca version: --version's line, then the libraries as loaded (what a bug report needs).
run --version
check "--version prints one line" bash -c "[ \$(wc -l <'$WORK/out') -eq 1 ] && grep -qE '^meshca [0-9]+\.[0-9]+\.[0-9]+\$' '$WORK/out'"
cp "$WORK/out" "$WORK/version-line"
run version
check "version exits 0" exit_is 0
check "version starts with --version's line" bash -c "head -1 '$WORK/out' | cmp -s - '$WORK/version-line'"
check "version names the OpenSSL it runs with" bash -c "grep -qE '^OpenSSL 3\.' '$WORK/out'"
for lib in SQLite libcurl libevent libyaml jansson; do
    check "version names $lib" bash -c "grep -qE '^$lib [0-9]' '$WORK/out'"
done
run version extra
check "version with an argument is a usage error (exit 2)" exit_is 2

finish
