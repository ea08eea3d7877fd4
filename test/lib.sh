# lib.sh - assertions for the integration tests that drive the built meshca binary.
# Sourced; expects $MESHCA. Each check prints "ok"/"FAIL" and the script ends with a summary line.
set -uo pipefail
: "${MESHCA:?set MESHCA to the built meshca binary}"
passed=0
failed=0
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# run ARGS...: runs meshca, keeping stdout in $WORK/out, stderr in $WORK/err, exit code in $rc.
run() {
    timeout 60 "$MESHCA" "$@" >"$WORK/out" 2>"$WORK/err"
    rc=$?
}

check() { # check DESCRIPTION CONDITION-COMMAND...
    local what=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        echo "ok - $what"
    else
        failed=$((failed + 1))
        echo "FAIL - $what"
        echo "  exit: $rc"
        sed 's/^/  out: /' "$WORK/out" | head -20
        sed 's/^/  err: /' "$WORK/err" | head -20
    fi
}

exit_is() { [ "$rc" -eq "$1" ]; }
out_has() { grep -qF -- "$1" "$WORK/out"; }
err_has() { grep -qF -- "$1" "$WORK/err"; }
out_lacks() { ! grep -qF -- "$1" "$WORK/out" "$WORK/err"; }

# json_has CODE [PATH [LINE]]: the -o json output has a diagnostic with that code (and path, line).
json_has() {
    python3 - "$WORK/out" "$@" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
code = sys.argv[2]
path = sys.argv[3] if len(sys.argv) > 3 else None
line = int(sys.argv[4]) if len(sys.argv) > 4 else None
for d in doc["diagnostics"]:
    if d["code"] == code and (path is None or d["path"] == path) and (line is None or d["line"] == line):
        sys.exit(0)
sys.exit(1)
PY
}

finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
