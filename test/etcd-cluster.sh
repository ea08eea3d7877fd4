#!/usr/bin/env bash
# etcd-cluster.sh - meshca on a three-member etcd (issue 11): one member killed with SIGKILL in
# the middle of a rotation and of a stream of applies: the rotation completes (the store fails
# over between the endpoints of etcd://a,b,c) and every acknowledged apply (exit 0) is readable
# afterwards, through each member. Then every member killed and restarted: `meshca run` says
# the store cannot be reached, backs off, and resumes (leads again, signs again).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/etcd-lib.sh"
etcd_require || exit 77
etcd_start 3 || exit 2
export MESHCA_STORE=$ETCD_URL
source "$(dirname "$0")/api-lib.sh"
# api-lib's trap (stop the controller, remove WORK) runs before etcd-lib's (stop the members).
trap 'stop_controller KILL; [ -n "${KEEP_WORK:-}" ] && cp -r "$WORK" "$KEEP_WORK"; rm -rf "$WORK"; etcd_stop' EXIT
DPS="web-01 db-01"

mesh_yaml() { # mesh_yaml ENABLED BACKEND...
    local enabled=$1 b
    shift
    printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: %s\n  backends:\n' "$enabled"
    for b in "$@"; do printf '  - name: %s\n    type: builtin\n' "$b"; done
}
dp_yaml() { # dp_yaml NAME PORT
    printf 'type: Dataplane\nmesh: default\nname: %s\nnetworking: {address: 127.0.0.1, inbound: [{port: %d, tags: {kuma.io/service: %s}}]}\n' \
        "$1" "$2" "$1"
}
mesh_yaml ca-1 ca-1 >"$WORK/m0.yaml"
mesh_yaml ca-1 ca-1 ca-2 >"$WORK/m1.yaml"
mesh_yaml ca-2 ca-1 ca-2 >"$WORK/m2.yaml"
mesh_yaml ca-2 ca-2 >"$WORK/m3.yaml"
{ dp_yaml web-01 8443; echo ---; dp_yaml db-01 9443; } >"$WORK/dps.yaml"

sync_agents() { # every agent loads and acknowledges the current generation
    local dp
    for dp in $DPS; do
        agent_once "$dp"
        [ "$agent_rc" -eq 0 ] || { echo "agent $dp: exit $agent_rc"; cat "$WORK/agent.out"; return 1; }
    done
}
# apply_until FILE: apply FILE until it is accepted (a step waits for the agents); bounded.
apply_until() {
    local i
    for i in $(seq 30); do
        run apply -f "$1"
        [ "$rc" -eq 0 ] && return 0
        sync_agents >/dev/null
        sleep 0.5
    done
    return 1
}
issued_by() { # issued_by BACKEND: every dataplane's loaded certificate comes from BACKEND
    "$MESHCA" inspect dataplanes -m default -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)
items = items.get("items", items) if isinstance(items, dict) else items
sys.exit(0 if len(items) == 2 and all(i["mtls"].get("issuedBackend") == sys.argv[1] for i in items) else 1)' "$1"
}

run apply -f "$WORK/m0.yaml" -f "$WORK/dps.yaml"
check "set-up: apply on the three-member cluster" exit_is 0
start_controller --interval 1s --lease-ttl 3s
check "set-up: the controller leads" bash -c "for i in \$(seq 50); do grep -qx leading '$CTL_LOG' && exit 0; sleep 0.2; done; exit 1"
check "set-up: agents get ca-1 certificates" sync_agents

# --- one member killed during a rotation and during a stream of applies ----------------------
# A writer applies one new Secret at a time (secrets do not gate the rotation), recording each
# exit code; the first endpoint's member is killed while it runs and while the rotation goes on.
(
    for i in $(seq 1 40); do
        printf 'type: Secret\nmesh: default\nname: extra-%d\ndata: %s\n' "$i" "$(printf 'value %d' "$i" | base64)" \
            >"$WORK/extra-$i.yaml"
        timeout 60 "$MESHCA" apply -f "$WORK/extra-$i.yaml" >/dev/null 2>"$WORK/extra-$i.err"
        echo "$i $?" >>"$WORK/writes"
    done
) &
writer=$!
check "rotation step 1 (add ca-2) acknowledged" apply_until "$WORK/m1.yaml"
etcd_kill 0
echo "# killed etcd member 0 ($(etcd_endpoint 0), first in the store URL) during the rotation"
check "rotation step 2 (switch) acknowledged with a member down" apply_until "$WORK/m2.yaml"
# until_issued_by BACKEND: agents sync until every dataplane holds BACKEND's certificate (the
# controller's pass after the accepted switch may still be under way); bounded.
until_issued_by() {
    local i
    for i in $(seq 30); do
        sync_agents >/dev/null && issued_by "$1" && return 0
        sleep 0.3
    done
    return 1
}
check "the agents get ca-2 certificates with a member down" sync_agents
check "every dataplane holds a ca-2 certificate" until_issued_by ca-2
check "rotation step 3 (remove ca-1) acknowledged with a member down" apply_until "$WORK/m3.yaml"
check "the agents load the bundle without ca-1" sync_agents
check "the bundle holds exactly one CA" test "$(grep -c 'BEGIN CERTIFICATE' "$WORK/dp/web-01/ca-bundle.pem")" -eq 1
wait "$writer"
acked=$(awk '$2 == 0 { n++ } END { print n + 0 }' "$WORK/writes")
echo "# $acked of $(wc -l <"$WORK/writes") applies acknowledged (exit 0) across the member's death"
check "most applies were acknowledged despite the dead member" test "$acked" -ge 30
check "an apply that failed said why (exit 2, the store)" \
    awk '$2 != 0 && $2 != 2 { bad = 1 } END { exit bad }' "$WORK/writes"
etcd_restart 0
# Every acknowledged write is readable: through the whole cluster, and through each member alone
# (the restarted one included, once it caught up).
readable_everywhere() {
    local ep i code
    for ep in "$ETCD_URL" "etcd://$(etcd_endpoint 0)" "etcd://$(etcd_endpoint 1)" "etcd://$(etcd_endpoint 2)"; do
        "$MESHCA" --store "$ep" get secrets -m default -o json >"$WORK/dps.json" 2>/dev/null || return 1
        while read -r i code; do
            [ "$code" = 0 ] || continue
            grep -q "\"extra-$i\"" "$WORK/dps.json" || { echo "extra-$i missing via $ep"; return 1; }
        done <"$WORK/writes"
        "$MESHCA" --store "$ep" get meshes default -o json >"$WORK/mesh.json" 2>/dev/null || return 1
        python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
d = d[0] if isinstance(d, list) else d.get("items", [d])[0] if "items" in d else d
m = d["mtls"]
sys.exit(0 if m["enabledBackend"] == "ca-2" and [b["name"] for b in m["backends"]] == ["ca-2"] else 1)' "$WORK/mesh.json" ||
            { echo "the last acknowledged mesh is not what $ep holds"; return 1; }
    done
}
retry() { # retry N CMD...: CMD succeeds within N tries, 0.5 s apart
    local n=$1 i
    shift
    for i in $(seq "$n"); do "$@" && return 0; sleep 0.5; done
    return 1
}
check "every acknowledged apply is readable afterwards, through each member" retry 20 readable_everywhere

# --- every member killed (kill -9) and restarted -------------------------------------------
since=$(($(wc -l <"$CTL_LOG") + 1))   # what run says from now on
said() { tail -n +"$since" "$CTL_LOG" | grep -q -- "$1"; }
for m in 0 1 2; do etcd_kill $m; done
echo "# killed every etcd member"
check "run says the store cannot be reached (naming the endpoints), and retries" \
    retry 40 said "no etcd member answered (127.0.0.1:.*; retrying every"
check "run stops leading when it cannot renew its lease" retry 40 said "^not leading (no leader seen)"
check "run is still running without a store" kill -0 "$CTL_PID"
tail -n +"$since" "$CTL_LOG" | grep -E 'retrying|cannot|leading' | tail -3 | sed 's/^/# run said: /'
for m in 0 1 2; do _etcd_spawn $m; done
for m in 0 1 2; do _etcd_wait $m; done
echo "# restarted every etcd member"
check "run says the election works again" retry 60 said "the leader election works again"
leads_again() { "$MESHCA" inspect leader 2>/dev/null | grep -q ":$CTL_PID API "; }
check "run leads again after the outage" retry 60 leads_again
dp_yaml late-01 9999 >"$WORK/late.yaml"
run apply -f "$WORK/late.yaml"
check "apply works after the restart" exit_is 0
DPS="late-01"
check "run resumed: it signs a new dataplane's CSR" sync_agents

echo "# $passed passed, $failed failed"
[ "$failed" -eq 0 ]
