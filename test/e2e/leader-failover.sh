#!/usr/bin/env bash
# Scenario 7 (issue 11): two `meshca run` replicas on one store, agents that know both
# (--server A,B; half of them list the follower first). Rotation builtin ca-1 -> ca-2 with the
# client loop running; right after the switch is applied the leader is killed with SIGKILL. The
# other replica leads within the lease bound (the measured takeover time is printed), the
# agents fail over to it, and the rotation completes. Zero failed requests throughout.
source "$(dirname "$0")/lib.sh"
TTL=3
declare -A RPID RURL

# The second replica must not outlive the scenario either: stopped before lib.sh's cleanup.
eval "lib_$(declare -f cleanup)"
cleanup() {
    local rc=$? r
    for r in a b; do [ "${RPID[$r]:-}" = "$CONTROLLER_PID" ] || stop_pid "${RPID[$r]:-}"; done
    (exit $rc)
    lib_cleanup
}
trap cleanup EXIT

start_replica() { # start_replica NAME PORT
    local i log=$E2E/controller-$1.log
    "$MESHCA" run --listen "127.0.0.1:$2" --interval 1s --lease-ttl ${TTL}s >>"$log" 2>&1 &
    RPID[$1]=$!
    RURL[$1]=https://127.0.0.1:$2
    for i in $(seq 50); do
        grep -q 'serving the dataplane API' "$log" && return 0
        sleep 0.1
    done
    die "replica $1 did not start: $(tail -3 "$log")"
}
leader_pid() {
    m inspect leader -o json 2>/dev/null | python3 -c '
import json, sys
l = json.load(sys.stdin)["leader"]
print(l["id"].rsplit(":", 1)[1] if l else "")'
}
leads() { [ "$(leader_pid)" = "$1" ]; }
someone_leads() { [ -n "$(leader_pid)" ]; }

# lib.sh's start_agent with both replicas, in the order of $SERVERS.
start_agent() {
    local dp=$1 d=$E2E/dp/$1
    mkdir -p "$d"
    if [ "$dp" = "$HAPROXY_DP" ]; then haproxy_conf "$dp"; else nginx_conf "$dp"; fi
    reload_script "$dp"
    m token issue -m default -d "$dp" --ttl 1h >"$d/token" || die "token issue $dp"
    "$MESHCA" agent -m default -d "$dp" --out "$d/certs" --server "$SERVERS" --ca-file "$E2E/cp-ca.pem" \
        --token-file "$d/token" --reload "$d/reload.sh" >"$d/agent.log" 2>&1 &
    AGENT_PID[$dp]=$!
}

free_ports
PORT_B=$(python3 "$(dirname "$0")/../free-ports.py" 1)
dataplanes_yaml >"$E2E/dataplanes.yaml"
write_mesh "$E2E/0-mesh.yaml" ca-1 ca-1
write_mesh "$E2E/1-add.yaml" ca-1 ca-1 ca-2
write_mesh "$E2E/2-switch.yaml" ca-2 ca-1 ca-2
write_mesh "$E2E/3-remove.yaml" ca-2 ca-2
apply_ok "$E2E/0-mesh.yaml" "$E2E/dataplanes.yaml"
start_replica a "$API_PORT"
start_replica b "$PORT_B"
wait_for "one replica leads" someone_leads
if leads "${RPID[a]}"; then L=a F=b; else L=b F=a; fi
leads "${RPID[$L]}" || die "the leader is neither replica"
CONTROLLER_PID=${RPID[$L]}
say "replica $L (pid ${RPID[$L]}) leads; $F follows"
m cp-ca -o pem >"$E2E/cp-ca.pem" || die "cp-ca"
for dp in "${DPS[@]}"; do
    if [ "$dp" = backend ]; then SERVERS=${RURL[$F]},${RURL[$L]}; else SERVERS=${RURL[$L]},${RURL[$F]}; fi
    start_agent "$dp"
done
wait_for "every dataplane holds a ca-1 certificate" all_issued ca-1
grep -q ': issued' "$E2E/controller-$F.log" && die "the follower signed"

start_loop 150
sleep 2
apply_ok "$E2E/1-add.yaml"
wait_for "every dataplane trusts ca-2" all_support ca-2
sleep 1
apply_ok "$E2E/2-switch.yaml"
kill -KILL "${RPID[$L]}"
killed_at=$(date +%s%N)
wait "${RPID[$L]}" 2>/dev/null
CONTROLLER_PID=${RPID[$F]}
say "leader $L killed (SIGKILL) right after the switch"
# Bound: lease TTL + a follower step (TTL/3) + the store's expiry delay + slack: not a speed claim.
bound=$((TTL + TTL / 3 + 5))
for i in $(seq $((bound * 5))); do
    leads "${RPID[$F]}" && break
    sleep 0.2
done
leads "${RPID[$F]}" || die "replica $F did not lead within ${bound}s of the leader's death"
say "takeover: $F leads $((($(date +%s%N) - killed_at) / 1000000)) ms after SIGKILL of $L (lease ttl ${TTL}s)"
wait_for "every dataplane holds a ca-2 certificate" all_issued ca-2
sleep 2
apply_ok "$E2E/3-remove.yaml"
wait_for "every dataplane trusts ca-2 only" all_supported_exactly ca-2 '"ca-2"'
sleep 2
stop_loop
verify_strict
store_has_no_dataplane_secrets
expect_no_failures
