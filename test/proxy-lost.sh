#!/usr/bin/env bash
# proxy-lost.sh - doc/token.md's "A proxy host lost": the dataplane deleted cuts off the old
# host's certificate (404); applied again under the same name with a new token it registers the
# new host, and the old files stay refused (401: older than the new identity).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
MESHCA=$(readlink -f "$MESHCA")
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"

dataplane() { # dataplane NAME: a Dataplane manifest of mesh default
    printf 'type: Dataplane\nmesh: default\nname: %s\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 8443\n    tags: {kuma.io/service: web}\n' "$1"
}
{ printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n---\n'; dataplane web-01; } >"$WORK/mesh.yaml"
dataplane web-01 >"$WORK/web-01.yaml"
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
# The new identity is created in a later second than the stolen certificate was signed in
# (both are whole seconds): bounded, not a timed check.
signed=$(date +%s)
for i in $(seq 30); do [ "$(date +%s)" -gt "$signed" ] && break; sleep 0.1; done

run delete dataplane web-01 -m default
check "delete dataplane web-01 exits 0" exit_is 0
stolen_agent web-01
check "after the delete, the stolen files get exit 1" exit_is 1
check "... answered 404 (the dataplane is gone)" err_has "HTTP 404: no dataplane 'web-01' in mesh 'default'"

run apply -f "$WORK/web-01.yaml"
check "the Dataplane applies again under the same name" exit_is 0
stolen_agent web-01
check "re-applied, the stolen files get exit 1" exit_is 1
check "... answered 401: no identity backs the certificate" err_has "HTTP 401: client certificate refused: default/web-01 has no identity in the store"
run token issue -m default -d web-01 --out "$WORK/web-01.token"
check "token issue for web-01 exits 0" exit_is 0
timeout 60 "$MESHCA" agent -m default -d web-01 --out "$WORK/dp/web-01-new" --server "$API_URL" \
    --ca-file "$WORK/cp-ca.pem" --token-file "$WORK/web-01.token" --reload true --once >"$WORK/out" 2>"$WORK/err"
rc=$?
check "the new host's agent registers web-01 (exit 0)" exit_is 0
check "... and loads generation 1" out_has "generation 1 loaded and acknowledged"
stolen_agent web-01
check "the stolen web-01 certificate is refused for the new web-01" exit_is 1
check "... with 401 (issued before the new identity)" err_has "HTTP 401: client certificate refused: default/web-01 was registered again after this certificate was issued"
timeout 60 "$MESHCA" agent -m default -d web-01 --out "$WORK/dp/web-01-new" --server "$API_URL" \
    --ca-file "$WORK/cp-ca.pem" --token-file "$WORK/no.token" --reload true --once --renew >"$WORK/out" 2>"$WORK/err"
rc=$?
check "the new host renews with its own certificate (its token not needed)" exit_is 0
check "... generation 2" out_has "generation 2 loaded and acknowledged"
finish
