#!/usr/bin/env bash
# progress-cli.sh - `reconcile --once` over hundreds of dataplanes draws one updating progress
# line when stderr is a terminal (script(1) gives it a pseudo-terminal), and nothing when stderr
# is a pipe or a file, or with --quiet.
source "$(dirname "$0")/lib.sh"
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
command -v script >/dev/null || { echo "SKIP: script(1) is absent (Debian bsdutils)"; exit 77; }

python3 - "$WORK/many.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n")
    for i in range(300):
        f.write("---\ntype: Dataplane\nmesh: default\nname: dp-%03d\nnetworking:\n  address: 10.1.%d.%d\n"
                "  inbound: [{port: 8080, tags: {kuma.io/service: web}}]\n" % (i, i // 250, i % 250))
PY
run -q apply -f "$WORK/many.yaml"
check "apply of a mesh and 300 dataplanes" exit_is 0

run reconcile --once
check "reconcile --once, stderr a file: exit 0" exit_is 0
check "no progress output when stderr is not a terminal" test ! -s "$WORK/err"
check "the summary still goes to stdout" out_has "300 dataplanes awaiting a CSR"
timeout 60 "$MESHCA" reconcile --once 2>&1 >/dev/null | cat >"$WORK/pipe"
check "nor when stderr is a pipe" test ! -s "$WORK/pipe"

# script(1) runs meshca on a pseudo-terminal; its output is what the terminal received.
timeout 60 script -qec "'$MESHCA' reconcile --once >/dev/null" /dev/null >"$WORK/tty" 2>&1
check "on a terminal, reconcile draws a progress line over the 300 dataplanes" \
    grep -q "reconciling: [0-9]*/300" "$WORK/tty"
check "that line updates in place (carriage return, erase line), reaches 300/300 and is erased" \
    python3 -c 'import sys; t = open(sys.argv[1], "rb").read(); assert b"\r\x1b[Kreconciling: 300/300 (100%)" in t and t.endswith(b"\r\x1b[K"), t[-80:]' "$WORK/tty"
timeout 60 script -qec "'$MESHCA' --quiet reconcile --once >/dev/null" /dev/null >"$WORK/tty" 2>&1
check "--quiet on a terminal: no progress" test ! -s "$WORK/tty"
timeout 60 script -qec "'$MESHCA' reconcile --once -q >/dev/null" /dev/null >"$WORK/tty" 2>&1
check "-q after the command too" test ! -s "$WORK/tty"
finish
