#!/usr/bin/env bash
# run-passes.sh - `meshca run`'s passes (issue 13): a CSR's or an ack's pass visits only that
# dataplane (a targeted pass), a change by `apply` still gets a full pass, and while a pass is
# held (a failpoint sleeping in its commit, as a hanging CA or store would) the API answers
# /healthz, blocking queries and CSR POSTs.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
PIDS=()   # processes this script started that must not outlive it
trap 'for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; stop_controller KILL; rm -rf "$WORK"' EXIT

mesh_yaml() { # mesh_yaml WEB-VERSION: the mesh and three dataplanes
    cat <<YAML
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
---
type: Dataplane
mesh: default
name: web-01
networking:
  address: 127.0.0.1
  inbound:
  - port: 8443
    tags: {kuma.io/service: web, version: "$1"}
---
type: Dataplane
mesh: default
name: db-01
networking:
  address: 127.0.0.1
  inbound:
  - port: 9443
    tags: {kuma.io/service: db}
---
type: Dataplane
mesh: default
name: api-01
networking:
  address: 127.0.0.1
  inbound:
  - port: 7443
    tags: {kuma.io/service: api}
YAML
}
mesh_yaml v1 >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0
# Tokens and the mesh's CA first: issuing either is a store change that calls for a full pass
# (the CA's when the controller's first pass makes it).
for dp in web-01 db-01 api-01; do token_for "$dp" >/dev/null; done
run reconcile --once
check "set-up: the CA is made" exit_is 0

# metric 'NAME{LABELS}': its value on the controller's /metrics (API port), "" when absent.
metric() {
    curl -s -m 20 --cacert "$WORK/cp-ca.pem" "$API_URL/metrics" |
        awk -v k="$1" '$1 == k { print $2 }'
}
FULL='meshca_reconcile_passes_by_scope_total{scope="full"}'
TARGETED='meshca_reconcile_passes_by_scope_total{scope="targeted"}'
# wait_metric NAME MIN: until the metric is at least MIN (bounded: 20 s).
wait_metric() {
    local i v
    for i in $(seq 200); do
        v=$(metric "$1")
        [ -n "$v" ] && [ "${v%.*}" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
# wait_log PATTERN: until the controller's log has it (bounded: 30 s).
wait_log() {
    local i
    for i in $(seq 300); do
        grep -qF -- "$1" "$CTL_LOG" && return 0
        sleep 0.1
    done
    return 1
}

start_controller --interval 1h
check "set-up: the first (full) pass ran" wait_log "3 dataplanes awaiting a CSR"
full0=$(metric "$FULL")
visited0=$(metric meshca_reconcile_dataplanes_visited_total)
check "the first pass is counted as full" test "${full0%.*}" -ge 1
check "no targeted pass yet" test "$(metric "$TARGETED")" = 0

agent_once web-01
check "web-01's agent gets its identity" test "$agent_rc" -eq 0
# Its CSR's pass, then its ack's: each visits web-01 alone.
check "web-01's CSR and ack: two targeted passes" wait_metric "$TARGETED" 2
agent_once db-01
check "db-01's agent gets its identity" test "$agent_rc" -eq 0
check "db-01's CSR and ack: two more targeted passes" wait_metric "$TARGETED" 4
check "no full pass for the agents' writes" test "$(metric "$FULL")" = "$full0"
# A token issued is a store write no pass reads: no pass for it (the store is polled every
# 100 ms; a second is ten polls).
run token issue -m default -d api-01 --ttl 1h
check "another token for api-01" exit_is 0
sleep 1
check "no full pass for a token issued" test "$(metric "$FULL")" = "$full0"
# The pass that signed db-01 decided db-01 only: web-01 (signed) is not counted unchanged, and
# api-01 (no CSR) is not counted awaiting, as a full pass would.
check "db-01's pass was targeted: its action line, no mesh-wide summary after it" \
    bash -c 'grep -qF "default/db-01: issued" "$1" &&
             test "$(grep -A1 -F "default/db-01: issued" "$1" | tail -n +2 | grep -c "^1 mesh:")" -eq 0' _ "$CTL_LOG"
check "api-01 counted awaiting by the first pass only" \
    test "$(grep -c 'awaiting a CSR' "$CTL_LOG")" -eq 1
check "the 4 targeted passes visited 4 dataplanes" \
    test "$(metric meshca_reconcile_dataplanes_visited_total)" = $((${visited0%.*} + 4))

# apply meanwhile: web-01's tags change while api-01 sends its CSR. Whatever order the two
# arrive in, the apply's change gets a full pass (web-01 reissued) and api-01 is signed.
mesh_yaml v2 >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "apply of web-01's new tags" exit_is 0
agent_once api-01
check "api-01's agent gets its identity" test "$agent_rc" -eq 0
check "the apply got a full pass" wait_metric "$FULL" $((${full0%.*} + 1))
check "the full pass reissued web-01 for its tags" wait_log "default/web-01: reissued"
check "api-01 was issued" grep -qF "default/api-01: issued" "$CTL_LOG"

# A pass held in its commit (for 10 minutes): the API still answers. Only a pass that writes
# commits, so the held one is the pass of the next CSR.
stop_controller
MESHCA_FAILPOINTS='pass.commit=sleep(600000)' start_controller --interval 1h
check "set-up: the controller serves again" grep -qF "serving the dataplane API on $API_URL" "$CTL_LOG"
mkdir -p "$WORK/dp"
timeout 60 "$MESHCA" agent -m default -d web-01 --out "$WORK/dp/web-held" --server "$API_URL" \
    --ca-file "$WORK/cp-ca.pem" --token-file "$(token_for web-01)" --reload true --once \
    >"$WORK/agent-held.out" 2>&1 &
PIDS+=($!)
check "web-01's new CSR: its pass is held in the commit" wait_log "failpoint pass.commit: sleeping 600000 ms"
code=$(curl -s -o "$WORK/healthz" -w '%{http_code}' -m 20 --cacert "$WORK/cp-ca.pem" "$API_URL/healthz")
check "/healthz answers 200 while the pass is held" test "$code" = 200
DB=(-H "Authorization: Bearer $(cat "$(token_for db-01)")" --cacert "$WORK/cp-ca.pem")
code=$(curl -s -o "$WORK/identity.json" -D "$WORK/identity.hdr" -w '%{http_code}' -m 20 "${DB[@]}" \
    "$API_URL/v1/meshes/default/dataplanes/db-01/identity?index=0&wait=30s")
check "a blocking query above its index answers 200 at once while the pass is held" test "$code" = 200
check "... with db-01's generation 1" grep -qi '^X-Meshca-Index: 1' "$WORK/identity.hdr"
check "... and its certificate" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["generation"] == 1 and "BEGIN CERTIFICATE" in d["certificate"] else 1)' "$WORK/identity.json"
code=$(curl -s -o /dev/null -D "$WORK/parked.hdr" -w '%{http_code}' -m 20 "${DB[@]}" \
    "$API_URL/v1/meshes/default/dataplanes/db-01/identity?index=1&wait=1s")
check "a parked blocking query ends at its wait while the pass is held" test "$code" = 200
check "... still at generation 1" grep -qi '^X-Meshca-Index: 1' "$WORK/parked.hdr"
# Another dataplane's CSR during the held pass: accepted (202), left to the next pass.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=db-01 \
    -keyout "$WORK/db-held.key" -out "$WORK/db-held.csr" 2>/dev/null
python3 -c 'import json, sys; print(json.dumps({"csr": open(sys.argv[1]).read()}))' \
    "$WORK/db-held.csr" >"$WORK/db-held.json"
code=$(curl -s -o "$WORK/db-held.out" -w '%{http_code}' -m 20 "${DB[@]}" \
    -H 'Content-Type: application/json' --data-binary @"$WORK/db-held.json" \
    "$API_URL/v1/meshes/default/dataplanes/db-01/csr")
check "db-01's CSR POST answers 202 while the pass is held" test "$code" = 202
check "... and no pass ended meanwhile (the held one is the only one started)" \
    test "$(metric "$TARGETED")" = 0
stop_controller KILL

finish
