#!/usr/bin/env bash
# hostile.sh - the hostile corpus (issue 14, SPEC S2 limits, S12): every case of
# test/data/hostile/expected.tsv runs under `timeout 10` (a hang fails, exit 124), must exit with
# its expected code (a crash is a signal status > 128) and report its diagnostic code, and where
# given the field path, line and column. The inputs that cannot be checked in (9 MiB, FIFOs,
# /dev/zero, symlink loops, empty directories) come from test/data/hostile/generate.sh. Runs in
# the ASan build too (tools/test.sh), so a sanitizer report fails the case.
source "$(dirname "$0")/lib.sh"
H=$TEST_DATA_DIR/hostile
G=$WORK/generated
E=$SOURCE_ROOT/manifests/examples/rotation/universal
bash "$H/generate.sh" "$G" || { echo "FAIL - generate.sh"; exit 1; }

no_sanitizer_report() { ! grep -qE 'runtime error:|ERROR: (Address|Leak)Sanitizer' "$WORK/err"; }

cases=0
while IFS=$'\t' read -r name command want_exit want_code want_at; do
    case $name in '#'* | '') continue ;; esac
    cases=$((cases + 1))
    command=${command//\{H\}/$H}
    command=${command//\{G\}/$G}
    command=${command//\{E\}/$E}
    # Each case on a fresh store: an apply that should be refused must not depend on another.
    export MESHCA_STORE="sqlite://$WORK/store-$cases/meshca.db"
    read -r -a args <<<"$command"
    start=$(date +%s%N)
    timeout 10 "$MESHCA" "${args[@]}" >"$WORK/out" 2>"$WORK/err"
    rc=$?
    ms=$((($(date +%s%N) - start) / 1000000))
    check "$name: exit $want_exit (got $rc in $ms ms)" exit_is "$want_exit"
    check "$name: no sanitizer report" no_sanitizer_report
    if [ "$want_code" != - ]; then
        check "$name: diagnostic $want_code${want_at:+ at $want_at}" python3 - "$WORK/out" "$want_code" "${want_at:-}" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
code, at = sys.argv[2], sys.argv[3]
for d in doc["diagnostics"]:
    if d["code"] != code:
        continue
    if at:
        path, line, col = at.rsplit(":", 2)
        if (d["path"], d["line"], d["column"]) != (path, int(line), int(col)):
            continue
    sys.exit(0)
sys.exit(1)
PY
    elif [ "$want_exit" = 0 ]; then
        check "$name: no error diagnostic" python3 -c '
import json, sys
doc = json.load(open(sys.argv[1]))
sys.exit(any(d["severity"] == "error" for d in doc["diagnostics"]))' "$WORK/out"
    fi
done <"$H/expected.tsv"
echo "  hostile corpus: $cases cases"
check "the table was read (at least 40 cases)" test $cases -ge 40
finish
