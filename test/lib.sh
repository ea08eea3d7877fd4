# lib.sh - assertions for the integration tests that drive the built meshca binary.
# Sourced; expects $MESHCA. Each check prints "ok"/"FAIL" and the script ends with a summary line.
set -uo pipefail
: "${MESHCA:?set MESHCA to the built meshca binary}"
passed=0
failed=0
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The store a script runs on. A script's store line is
#   export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
# With MESHCA_TEST_STORE=etcd (the runner's suite etcd) a fresh one-member etcd is started for
# this script (test/etcd-lib.sh) and TEST_STORE_URL is its etcd://127.0.0.1:PORT; otherwise
# TEST_STORE_URL is empty and the script keeps its own sqlite:// path (or the default store).
TEST_STORE_URL=
if [ "${MESHCA_TEST_STORE:-sqlite}" = etcd ]; then
    # shellcheck source=etcd-lib.sh
    source "$(dirname "${BASH_SOURCE[0]}")/etcd-lib.sh"
    etcd_require || exit 77
    etcd_start 1 || exit 2
    TEST_STORE_URL=$ETCD_URL
    # A script that sets its own EXIT trap drops etcd-lib's: the member must not outlive the
    # script all the same, so a watchdog stops it (and removes its data) when the script ends.
    (
        while kill -0 $$ 2>/dev/null; do sleep 1; done
        etcd_stop
    ) >/dev/null 2>&1 &
    # Neither the member nor the watchdog is one of the script's jobs: a script's cleanup that
    # runs `wait` for its own children must not wait for them.
    disown -a
    export MESHCA_STORE=$TEST_STORE_URL
elif [ -n "${MESHCA_TEST_STORE:-}" ] && [ "$MESHCA_TEST_STORE" != sqlite ]; then
    echo "MESHCA_TEST_STORE must be sqlite or etcd, not '$MESHCA_TEST_STORE'" >&2
    exit 2
fi

# on_sqlite: the script's store is SQLite (checks of files and modes only apply there).
on_sqlite() { [[ "${MESHCA_STORE:-sqlite://}" == sqlite://* ]]; }

# store_dump: every object with its version, through the store API (test/store-tool.c), so a
# script can tell "the store did not change" on any backend.
store_dump() { "${STORE_TOOL:?set STORE_TOOL to the built store-tool}" dump; }

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
