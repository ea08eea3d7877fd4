#!/usr/bin/env bash
# bad-input.sh - hostile and broken manifests get exit 1 and a clear diagnostic, never a crash or
# a hang (each run is bounded by timeout; a crash would exit with a signal status > 128).
source "$(dirname "$0")/lib.sh"

# Billion laughs: 9 levels of 10 aliases would expand to 10^9 nodes.
{
    echo 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]'
    for i in 1 2 3 4 5 6 7 8 9; do
        p=$((i - 1))
        echo "a$i: &a$i [*a$p,*a$p,*a$p,*a$p,*a$p,*a$p,*a$p,*a$p,*a$p,*a$p]"
    done
} >"$WORK/bomb.yaml"
start=$(date +%s.%N)
run validate -o json -f "$WORK/bomb.yaml"
# A figure for the reader, not an assertion (speed is measured by benchmarks).
echo "# alias bomb answered in $(python3 -c "import sys; print(round($(date +%s.%N) - $start, 3))") s"
check "alias bomb is refused with exit 1" exit_is 1
check "alias bomb reports alias-limit" json_has alias-limit

head -c 65536 /dev/urandom >"$WORK/random.yaml"
run validate -f "$WORK/random.yaml"
check "random bytes exit 1" exit_is 1

printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: "ca-1\n' >"$WORK/truncated.yaml"
run validate -o json -f "$WORK/truncated.yaml"
check "truncated file exits 1" exit_is 1
check "truncated file reports yaml-syntax" json_has yaml-syntax

python3 -c 'import sys; sys.stdout.write("type: Mesh\nname: default\n" + "# padding padding padding\n" * 380000)' >"$WORK/big.yaml"
run validate -o json -f "$WORK/big.yaml"
check "9 MiB file exits 1" exit_is 1
check "9 MiB file reports too-large" json_has too-large

printf 'type: Mesh\nname: default\nmtls:\n\tenabledBackend: ca-1\n' >"$WORK/tabs.yaml"
run validate -o json -f "$WORK/tabs.yaml"
check "tab indentation is tab-indent at line 4" json_has tab-indent "" 4

printf 'type: Mesh\nname: default\nname: other\n' >"$WORK/dupkey.yaml"
run validate -o json -f "$WORK/dupkey.yaml"
check "duplicate key reported at line 3" json_has duplicate-key "" 3

printf 'type: Mesh\nname: [a, b]\nmtls:\n  skipValidation: maybe\n' >"$WORK/types.yaml"
run validate -o json -f "$WORK/types.yaml"
check "a sequence where a string belongs is wrong-type" json_has wrong-type name 2
check "a non-boolean skipValidation is wrong-type" json_has wrong-type mtls.skipValidation 4

python3 -c 'print("a: " + "[" * 100 + "]" * 100)' >"$WORK/deep.yaml"
run validate -o json -f "$WORK/deep.yaml"
check "nesting deeper than 64 reports too-deep" json_has too-deep

for f in bomb random truncated big tabs dupkey types deep; do
    run validate -f "$WORK/$f.yaml"
    check "$f: no crash (exit 1, not a signal)" exit_is 1
done
finish
