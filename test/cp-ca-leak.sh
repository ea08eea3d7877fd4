#!/usr/bin/env bash
# cp-ca-leak.sh - doc/cp-ca.md's "If its key leaks": the page's commands make a new CA and an
# API certificate; run serves it with --tls-cert/--tls-key; an agent given the old CA is refused
# with the message the page quotes, one given the new CA renews.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
MESHCA=$(readlink -f "$MESHCA")
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
DOC="${SOURCE_ROOT:-$(dirname "$0")/..}/doc/cp-ca.md"

printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n---\ntype: Dataplane\nmesh: default\nname: web-01\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 8443\n    tags: {kuma.io/service: web}\n' >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0
start_controller
agent_once web-01
check "set-up: the agent holds generation 1 (old control-plane CA)" grep -q "generation 1 loaded and acknowledged" "$WORK/agent.out"
stop_controller
cp "$WORK/cp-ca.pem" "$WORK/old-cp-ca.pem"

# The page's sh block, its address made this host's; the `meshca run` line is run below.
python3 - "$DOC" >"$WORK/steps.sh" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
sec = text[text.index("## If its key leaks"):]
block = re.search(r"```sh\n(.*?)```", sec, re.S).group(1)
print(block.replace("10.0.0.11", "127.0.0.1"))
PY
check "the page has the steps" grep -q "meshca run .*--tls-cert api.pem --tls-key api.key" "$WORK/steps.sh"
(
    cd "$WORK" || exit 2
    meshca() { "$MESHCA" "$@"; }
    eval "$(grep -v '^meshca run' "$WORK/steps.sh")"
) >"$WORK/out" 2>"$WORK/err"
rc=$?
check "the page's commands exit 0" exit_is 0
check "they leave api.pem, api.key (0600) and cp-ca-2/ca.pem" \
    [ -s "$WORK/api.pem" ] && [ "$(stat -c %a "$WORK/api.key")" = 600 ] && [ -s "$WORK/cp-ca-2/ca.pem" ]
check "api.pem verifies against the new CA" bash -c "openssl verify -CAfile '$WORK/cp-ca-2/ca.pem' '$WORK/api.pem' >/dev/null"

start_controller --tls-cert "$WORK/api.pem" --tls-key "$WORK/api.key"
check "run serves with --tls-cert" grep -q "serving the dataplane API on $API_URL" "$CTL_LOG"
# An agent keeps retrying a controller it cannot verify (keeping its files): until its first
# complaint, bounded, then stopped.
"$MESHCA" agent -m default -d web-01 --out "$WORK/dp/web-01" --server "$API_URL" \
    --ca-file "$WORK/old-cp-ca.pem" --token-file "$(token_for web-01)" --reload true --renew \
    >"$WORK/out" 2>"$WORK/err" &
old_agent=$!
for _ in $(seq 300); do grep -q "SSL certificate problem" "$WORK/err" && break; sleep 0.1; done
kill "$old_agent" 2>/dev/null
wait "$old_agent"
rc=$?
check "an agent given the old CA does not get through (nothing loaded)" out_lacks "loaded and acknowledged"
check "... with the message the page quotes" \
    err_has "SSL certificate problem: unable to get local issuer certificate (--ca-file is not the CA of this controller's certificate"
timeout 60 "$MESHCA" agent -m default -d web-01 --out "$WORK/dp/web-01" --server "$API_URL" \
    --ca-file "$WORK/cp-ca-2/ca.pem" --token-file "$(token_for web-01)" --reload true --once --renew \
    >"$WORK/out" 2>"$WORK/err"
rc=$?
check "an agent given the new CA renews (exit 0)" exit_is 0
check "... generation 2" out_has "generation 2 loaded and acknowledged"
check "no private key in any output" bash -c "! grep -q 'PRIVATE KEY' '$CTL_LOG' '$WORK/out' '$WORK/err'"
finish
