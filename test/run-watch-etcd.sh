#!/usr/bin/env bash
# run-watch-etcd.sh - on etcd, `meshca run` is woken by the watch stream (its socket), not by a
# poll timer (issue 11): a change made by another writer starts a pass although the pass timer
# (--interval 1h) never fires, and while nothing changes the controller asks etcd almost
# nothing (a poll every 100 ms would read the revision ten times a second). Suite etcd.
source "$(dirname "$0")/lib.sh"
[ -n "$TEST_STORE_URL" ] || { echo "SKIP: needs MESHCA_TEST_STORE=etcd"; exit 77; }
export MESHCA_STORE=$TEST_STORE_URL
source "$(dirname "$0")/api-lib.sh"
ETCD_HTTP="http://${TEST_STORE_URL#etcd://}"

mesh_yaml() { # mesh_yaml BACKEND...
    printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n'
    for b in "$@"; do printf '  - name: %s\n    type: builtin\n' "$b"; done
}
mesh_yaml ca-1 >"$WORK/m0.yaml"
mesh_yaml ca-1 ca-2 >"$WORK/m1.yaml"
printf 'type: Dataplane\nmesh: default\nname: web-01\nnetworking: {address: 127.0.0.1, inbound: [{port: 8443, tags: {kuma.io/service: web}}]}\n' \
    >"$WORK/dp.yaml"
ranges() { curl -s "$ETCD_HTTP/metrics" | awk '$1 == "etcd_mvcc_range_total" { print $2 }'; }
retry() { # retry N CMD...: CMD succeeds within N tries, 0.2 s apart
    local n=$1 i
    shift
    for i in $(seq "$n"); do "$@" && return 0; sleep 0.2; done
    return 1
}

run apply -f "$WORK/m0.yaml" -f "$WORK/dp.yaml"
check "set-up: apply" exit_is 0
start_controller --interval 1h --lease-ttl 30s
check "set-up: the controller leads" retry 50 grep -qx leading "$CTL_LOG"
agent_once web-01
check "set-up: the agent got its certificate" test "$agent_rc" -eq 0

# Idle: no pass is due for an hour, the lease is renewed every 10 s.
sleep 1
before=$(ranges)
sleep 3
after=$(ranges)
echo "# etcd served $((after - before)) range requests in 3 s of an idle controller"
check "an idle controller reads etcd at most a few times in 3 s (a 100 ms poll: 30 or more)" \
    test $((after - before)) -le 12

# Another writer's change: only the watch can start the pass that rebundles web-01.
run apply -f "$WORK/m1.yaml"
check "another writer adds ca-2" exit_is 0
check "the watch event starts a pass: web-01 is rebundled with ca-2" \
    retry 100 grep -q "default/web-01: rebundled" "$CTL_LOG"

echo "# $passed passed, $failed failed"
[ "$failed" -eq 0 ]
