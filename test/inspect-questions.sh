#!/usr/bin/env bash
# inspect-questions.sh - doc/inspect.md's "Day-2 questions": each jq line of the page, run on a
# mesh where web-01's agent loaded a ca-1 certificate and web-02's agent never came, prints the
# dataplanes and CAs it promises.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
MESHCA=$(readlink -f "$MESHCA")
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
command -v jq >/dev/null || { echo "1..0 # SKIP no jq (tools/deps.sh installs it)"; exit 77; }
DOC="${SOURCE_ROOT:-$(dirname "$0")/..}/doc/inspect.md"

dp() { printf -- '---\ntype: Dataplane\nmesh: default\nname: %s\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 8443\n    tags: {kuma.io/service: web}\n' "$1"; }
{ printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n'; dp web-01; dp web-02; } >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0
start_controller
agent_once web-01
check "set-up: web-01 acknowledged generation 1" grep -q "generation 1 loaded and acknowledged" "$WORK/agent.out"

# question N: the N-th command line of the page's sh block, run; its output in $WORK/out.
question() {
    local line
    line=$(python3 - "$DOC" "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
sec = text[text.index("## Day-2 questions"):]
block = re.search(r"```sh\n(.*?)```", sec, re.S).group(1)
cmds = [l for l in block.splitlines() if l.startswith("meshca ")]
print(cmds[int(sys.argv[2]) - 1])
PY
)
    ( meshca() { "$MESHCA" "$@"; }; eval "$line" ) >"$WORK/out" 2>"$WORK/err"
    rc=$?
}
question 1
check "old CA holders: exit 0" exit_is 0
check "... web-01 only" [ "$(cat "$WORK/out")" = web-01 ]
question 2
check "not acknowledged: web-02 only" [ "$(cat "$WORK/out")" = web-02 ]
question 3
ca_end=$("$MESHCA" roots -m default -o pem | openssl x509 -noout -enddate | cut -d= -f2)
want="default ca-1 $(date -u -d "$ca_end" +%Y-%m-%dT%H:%M:%SZ)"
check "CA expiry: '$want'" [ "$(cat "$WORK/out")" = "$want" ]
question 4
check "certificates expiring before 2030: web-01 (web-02 has none)" [ "$(cat "$WORK/out")" = web-01 ]
finish
