#!/usr/bin/env bash
# proxy-lost.sh - doc/token.md's "A proxy host lost": the dataplane deleted cuts off the old
# host's certificate (404), a new name and token register the new host, and the old files
# cannot come back under the old name.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
MESHCA=$(readlink -f "$MESHCA")
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"

dataplane() { # dataplane NAME: a Dataplane manifest of mesh default
    printf 'type: Dataplane\nmesh: default\nname: %s\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 8443\n    tags: {kuma.io/service: web}\n' "$1"
}
{ printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n---\n'; dataplane web-01; } >"$WORK/mesh.yaml"
dataplane web-01b >"$WORK/web-01b.yaml"
run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0
start_controller --interval 1s
agent_once web-01
check "set-up: web-01's agent holds generation 1" grep -q "generation 1 loaded and acknowledged" "$WORK/agent.out"

# The stolen copy of the old host's files, and an agent on it that has no valid token.
cp -a "$WORK/dp/web-01" "$WORK/stolen"
echo not-a-token >"$WORK/no.token"
stolen_agent() { # stolen_agent DP: the stolen files presented as DP, one --renew round
    timeout 60 "$MESHCA" agent -m default -d "$1" --out "$WORK/stolen" --server "$API_URL" \
        --ca-file "$WORK/cp-ca.pem" --token-file "$WORK/no.token" --reload true --once --renew \
        >"$WORK/out" 2>"$WORK/err"
    rc=$?
}
stolen_agent web-01
check "before the delete, the stolen files renew (what the page warns about)" exit_is 0

run delete dataplane web-01 -m default
check "delete dataplane web-01 exits 0" exit_is 0
stolen_agent web-01
check "after the delete, the stolen files get exit 1" exit_is 1
check "... answered 404 (the dataplane is gone)" err_has "HTTP 404: no dataplane 'web-01' in mesh 'default'"

run apply -f "$WORK/web-01b.yaml"
check "the Dataplane under a new name applies" exit_is 0
run token issue -m default -d web-01b --out "$WORK/web-01b.token"
check "token issue for the new name exits 0" exit_is 0
timeout 60 "$MESHCA" agent -m default -d web-01b --out "$WORK/dp/web-01b" --server "$API_URL" \
    --ca-file "$WORK/cp-ca.pem" --token-file "$WORK/web-01b.token" --reload true --once >"$WORK/out" 2>"$WORK/err"
rc=$?
check "the new host's agent registers web-01b (exit 0)" exit_is 0
check "... and loads generation 1" out_has "generation 1 loaded and acknowledged"
stolen_agent web-01b
check "the stolen web-01 certificate is refused for web-01b" exit_is 1
check "... with 403 (it names another dataplane)" err_has "HTTP 403: the certificate of dataplane default/web-01 may not act for default/web-01b"
stolen_agent web-01
check "and still gets 404 as web-01" exit_is 1
finish
