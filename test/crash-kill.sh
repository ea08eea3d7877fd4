#!/usr/bin/env bash
# crash-kill.sh - crash consistency (issue 11, issue 14, SPEC S6): SIGKILL a store writer at >= 200
# random points and check, after each kill, that the store is exactly as before or exactly as
# after across all objects (test/store-dump.c: kind, mesh, name and value hash of every kind in
# store_kinds()), then that a completed run converges. All modes are in suite 'crash'
# (tools/test.sh). Usage: crash-kill.sh MODE
#   apply             `meshca apply` of 1 changed mesh + 3,000 new dataplanes.
#   reconcile         `meshca reconcile --once` signing the 3,000 CSRs the agents sent (SPEC S5:
#                     the before store holds 1 mesh with its builtin CA and 3,000 dataplanes,
#                     each with a pending key stored by test/seed-agents.c through the API's own
#                     functions): 3,000 identities and the pass's other writes, one transaction.
#   run               `meshca run` doing the same first pass (the control-plane CA, which run
#                     creates once on its own, exists before).
#   reconcile-switch  `meshca reconcile --once` after a CA switch ca-1 -> ca-2 that every agent
#                     acknowledged: the pass re-signs the 3,000 public keys it holds (SPEC S5).
#   run-switch        `meshca run` doing that same pass.
# For the pass modes "after" is what a completed pass leaves, object by object: an object the
# pass does not change keeps its value, one it changes has the reference run's value, except
# identities and statuses (fresh serials, times), which must differ from their before value.
# MESHCA_CRASH_KILLS (default 200) kills wanted while the command runs; MESHCA_CRASH_SECONDS
# (default 170) bounds the trials of one mode: a pass takes 2-4 s on a loaded 2-core machine, so
# the pass modes stop there with fewer kills (80-100), of which MESHCA_CRASH_MIN_KILLS (default
# 50) must land. The counts are printed. For the full 200 there: MESHCA_CRASH_SECONDS=600.
# On etcd (MESHCA_TEST_STORE=etcd, modes apply and reconcile: a one-member etcd from
# test/etcd-lib.sh) the before state is built in SQLite and copied into the member for each trial
# (test/store-copy.c), with 500 dataplanes; MESHCA_CRASH_ETCD_SECONDS (default 45: with the set-up about a minute) bounds the trials. There a write over
# store_txn_limit (128 ops) is applied in parts, each atomic (reconciler/store.h): a kill between
# parts leaves "partial" - every object as before or as after, and for apply the written objects a
# prefix of the apply's order - which is what etcd promises; anything else is torn.
source "$(dirname "$0")/lib.sh"
: "${STORE_DUMP:?set STORE_DUMP to the built store-dump}"
mode=${1:?usage: crash-kill.sh apply|reconcile|run|reconcile-switch|run-switch}
: "${SEED_AGENTS:?set SEED_AGENTS to the built seed-agents}"
want_kills=${MESHCA_CRASH_KILLS:-200}
budget_s=${MESHCA_CRASH_SECONDS:-170}
min_kills=${MESHCA_CRASH_MIN_KILLS:-50}
on_etcd=0
if [ -n "$TEST_STORE_URL" ]; then
    on_etcd=1
    : "${STORE_COPY:?set STORE_COPY to the built store-copy}"
    budget_s=${MESHCA_CRASH_ETCD_SECONDS:-45}
    min_kills=${MESHCA_CRASH_ETCD_MIN_KILLS:-10}
fi
[ "$min_kills" -gt "$want_kills" ] && min_kills=$want_kills
# 3,000: more than two signing batches (1,024 each), so that a pass on SQLite adds its first
# batches' writes to its open transaction while the workers still sign, and kills land there too.
ndp=3000
# On etcd each trial first copies the before state into the member: 500 dataplanes keep a trial
# near a second and still make every write several etcd txns (128 ops each).
[ $on_etcd = 1 ] && ndp=500

# The mesh starts PERMISSIVE; the apply makes it STRICT and adds the dataplanes.
mesh_yaml() { # mesh_yaml MODE ENABLED BACKEND...
    local mode=$1 enabled=$2 b
    shift 2
    printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: %s\n  backends:\n' "$enabled"
    for b in "$@"; do
        printf '  - name: %s\n    type: builtin\n    mode: %s\n' "$b" "$mode"
    done
}
mesh_yaml PERMISSIVE ca-1 ca-1 >"$WORK/mesh-0.yaml"
mesh_yaml STRICT ca-1 ca-1 >"$WORK/mesh-1.yaml"
mesh_yaml STRICT ca-1 ca-1 ca-2 >"$WORK/mesh-2.yaml"
mesh_yaml STRICT ca-2 ca-1 ca-2 >"$WORK/mesh-3.yaml"
for i in $(seq -w 1 $ndp); do
    printf -- '---\ntype: Dataplane\nmesh: default\nname: dp-%s\nnetworking:\n  address: 127.0.0.1\n  inbound: [{port: 8443, tags: {kuma.io/service: svc-%s}}]\n' "$i" "$((10#$i % 50))"
done >"$WORK/dataplanes.yaml"

# The "before" store: a directory copied for each trial (database, WAL and all).
export MESHCA_STORE="sqlite://$WORK/before/meshca.db"
case $mode in
apply)
    run apply -f "$WORK/mesh-0.yaml"
    check "the before state is applied" exit_is 0
    cmd=(apply -f "$WORK/mesh-1.yaml" -f "$WORK/dataplanes.yaml")
    ;;
reconcile | run | reconcile-switch | run-switch)
    # The mesh's builtin CA exists before (a pass with no dataplane creates it), so what is
    # checked is the pass's own writes.
    run apply -f "$WORK/mesh-1.yaml"
    "$MESHCA" reconcile --once >/dev/null 2>&1
    check "the before state has the mesh's CA" test "$("$STORE_DUMP" | grep -c '^secrets')" -ge 2
    run apply -f "$WORK/dataplanes.yaml"
    check "the before state is applied" exit_is 0
    # Every agent sends its CSR, as through the API: 3,000 pending keys.
    n=$("$SEED_AGENTS" csr default)
    check "every dataplane has a pending key" test "$n" = $ndp
    case $mode in
    *-switch)
        # ca-2 joins (every identity re-signed by ca-1 with the new bundle), every agent
        # acknowledges it, then the switch: the pass to kill re-signs 3,000 held keys with ca-2.
        "$MESHCA" reconcile --once >/dev/null 2>&1
        run apply -f "$WORK/mesh-2.yaml"
        check "ca-2 is added" exit_is 0
        "$MESHCA" reconcile --once >/dev/null 2>&1
        n=$("$SEED_AGENTS" ack default)
        check "every dataplane acknowledges the bundle with ca-2" test "$n" = $ndp
        run apply -f "$WORK/mesh-3.yaml"
        check "the switch to ca-2 is allowed" exit_is 0
        ;;
    esac
    case $mode in
    reconcile*) cmd=(reconcile --once) ;;
    *)
        # run creates the control-plane CA once, before its first pass, in its own write:
        # it exists before, so what is checked is the pass (the API on any free port).
        run cp-ca
        check "the before state has the control-plane CA" exit_is 0
        cmd=(run --listen 127.0.0.1:0)
        ;;
    esac
    ;;
*)
    echo "usage: crash-kill.sh apply|reconcile|run|reconcile-switch|run-switch" >&2
    exit 2
    ;;
esac
"$STORE_DUMP" >"$WORK/before.dump" || { echo "FAIL - store-dump of the before state"; exit 1; }

# state_of DUMP [AFTER]: before, after, partial or torn (test/store-state.py).
state_of() { python3 "$(dirname "$0")/store-state.py" "$mode" "$WORK/before.dump" "${2-$WORK/after.dump}" "$1" $ndp; }

# fresh_copy NAME: a new copy of the before state; its URL in $copy_url (on etcd: the member's
# objects replaced by the before state's).
fresh_copy() {
    if [ $on_etcd = 1 ]; then
        copy_url=$TEST_STORE_URL
        "$STORE_COPY" "sqlite://$WORK/before/meshca.db" "$copy_url"
    else
        rm -rf "$WORK/$1" && cp -a "$WORK/before" "$WORK/$1"
        copy_url="sqlite://$WORK/$1/meshca.db"
    fi
}

# prefix_ok DUMP: for apply, the objects a split write left "after" are a prefix of its order (the
# mesh, then dp-0001, dp-0002, ...): the parts land in order, each whole.
prefix_ok() {
    [ "$mode" != apply ] && return 0
    python3 - "$WORK/after.dump" "$1" <<'PY'
import sys
def load(p):
    return {tuple(l.split("\t")[:3]): l.split("\t")[3] for l in open(p).read().splitlines()}
after, trial = load(sys.argv[1]), load(sys.argv[2])
order = sorted(k for k in after if k[0] in ("meshes", "dataplanes"))
order.sort(key=lambda k: (k[0] != "meshes", k[2]))
done = [trial.get(k) == after[k] for k in order]
sys.exit(0 if done == sorted(done, reverse=True) else 1)
PY
}

# A reference run measures the duration and gives the "after" state.
# complete_run [AFTER]: runs the controller on $MESHCA_STORE until the store is in the after state
# (run never exits by itself; with AFTER "", until every identity was issued), then stops it;
# 0 when that happened within 60 s.
complete_run() {
    "$MESHCA" "${cmd[@]}" >"$WORK/run.out" 2>&1 &
    local pid=$! st=torn
    for _ in $(seq 1 300); do
        "$STORE_DUMP" >"$WORK/poll.dump" 2>/dev/null && st=$(state_of "$WORK/poll.dump" "$@")
        [ "$st" = after ] && break
        sleep 0.1
    done
    kill -TERM $pid 2>/dev/null
    wait $pid 2>/dev/null
    [ "$st" = after ]
}
if [ "${mode%-switch}" = run ]; then
    fresh_copy ref
    t0=$(date +%s%N)
    MESHCA_STORE=$copy_url complete_run ""
    ref_rc=$?
    dur_us=$((($(date +%s%N) - t0) / 1000))
else
    # The longest of three runs, so the kill points cover a slow run too (a cold cache).
    dur_us=0
    for r in 1 2 3; do
        fresh_copy ref
        t0=$(date +%s%N)
        MESHCA_STORE=$copy_url "$MESHCA" "${cmd[@]}" >"$WORK/ref.out" 2>&1
        ref_rc=$?
        t=$((($(date +%s%N) - t0) / 1000))
        [ $t -gt $dur_us ] && dur_us=$t
    done
fi
MESHCA_STORE=$copy_url "$STORE_DUMP" >"$WORK/after.dump"
rc=$ref_rc
check "the uninterrupted $mode succeeds" exit_is 0
differs() { ! cmp -s "$1" "$2"; }
check "the uninterrupted $mode changes the store" differs "$WORK/before.dump" "$WORK/after.dump"
if [ "$mode" != apply ]; then
    check "the uninterrupted $mode (re)issues every identity" test "$(state_of "$WORK/after.dump" "")" = after
fi
echo "  $mode of 1 mesh + $ndp dataplanes takes up to $((dur_us / 1000)) ms uninterrupted: kill points spread over that"
# On etcd a pass spends most of its time signing before it writes anything, and only 60 s of
# trials fit: every other kill point is drawn from the commit's window instead, which starts
# where the failpoint "pass.commit" (reconciler/failpoint.h) is reached (timed once; when that
# one run is not shorter than the longest full run, as on a loaded machine, the second half).
commit_us=0
if [ $on_etcd = 1 ] && [ "$mode" != apply ]; then
    fresh_copy ref
    t0=$(date +%s%N)
    (MESHCA_STORE=$copy_url MESHCA_FAILPOINTS=pass.commit=kill exec "$MESHCA" "${cmd[@]}") >/dev/null 2>&1
    commit_us=$((($(date +%s%N) - t0) / 1000))
    [ $commit_us -ge $dur_us ] && commit_us=$((dur_us / 2))
    echo "  every other kill point is after $((commit_us / 1000)) ms (the commit's start, or half the run)"
fi

# Later checks are about the trials, not about the last command run through lib.sh's run.
: >"$WORK/out"
: >"$WORK/err"

kills=0 landed_before=0 landed_after=0 landed_partial=0 torn=0 finished=0 trials=0 converged=0 not_converged=0
# Kill points spread uniformly over the measured duration (process start included).
# Up to 5 trials per wanted kill: under a loaded machine many applies finish before their kill point.
# Within the time budget (the commands' time, not the set-up's).
deadline=$(($(date +%s) + budget_s))
out_of_time() { [ "$(date +%s)" -ge $deadline ]; }
while [ $kills -lt "$want_kills" ] && [ $trials -lt $((want_kills * 5)) ] && ! out_of_time; do
    trials=$((trials + 1))
    fresh_copy trial
    export MESHCA_STORE=$copy_url
    delay_us=$(((RANDOM * 32768 + RANDOM) % dur_us))
    [ $commit_us -gt 0 ] && [ $((trials % 2)) -eq 0 ] &&
        delay_us=$((commit_us + (RANDOM * 32768 + RANDOM) % (dur_us - commit_us)))
    "$MESHCA" "${cmd[@]}" >/dev/null 2>&1 &
    pid=$!
    sleep "$(printf '%d.%06d' $((delay_us / 1000000)) $((delay_us % 1000000)))"
    if kill -KILL $pid 2>/dev/null; then
        wait $pid 2>/dev/null
        kills=$((kills + 1))
    else
        wait $pid 2>/dev/null
        finished=$((finished + 1))
    fi
    if ! "$STORE_DUMP" >"$WORK/trial.dump" 2>"$WORK/trial.err"; then
        torn=$((torn + 1))
        echo "  trial $trials (kill at ${delay_us} us): store unreadable: $(head -1 "$WORK/trial.err")"
        continue
    fi
    st=$(state_of "$WORK/trial.dump")
    # A split etcd write stopped between its parts: what etcd promises, when the parts are whole
    # and in order.
    if [ "$st" = partial ] && [ $on_etcd = 1 ] && prefix_ok "$WORK/trial.dump"; then
        landed_partial=$((landed_partial + 1))
        st=partial-ok
    fi
    case $st in
    partial-ok) ;;
    before) landed_before=$((landed_before + 1)) ;;
    after) landed_after=$((landed_after + 1)) ;;
    *)
        torn=$((torn + 1))
        [ $torn -le 5 ] && {
            echo "  trial $trials (kill at ${delay_us} us): torn: $(wc -l <"$WORK/trial.dump") objects," \
                "$(grep -c '^identities' "$WORK/trial.dump") identities (before $(wc -l <"$WORK/before.dump"), after $(wc -l <"$WORK/after.dump"))"
            diff "$WORK/before.dump" "$WORK/trial.dump" | grep -v '\tidentities\|[<>] identities' | head -8 | sed 's/^/    /'
        }
        ;;
    esac
    # Every 10th trial, and the last: a completed run from the killed state reaches "after".
    if [ $((trials % 10)) -eq 0 ] || [ $kills -ge "$want_kills" ] || out_of_time; then
        if { if [ "${mode%-switch}" = run ]; then complete_run; else "$MESHCA" "${cmd[@]}" >/dev/null 2>&1; fi; } &&
            "$STORE_DUMP" >"$WORK/conv.dump" &&
            [ "$(state_of "$WORK/conv.dump")" = after ]; then
            converged=$((converged + 1))
        else
            not_converged=$((not_converged + 1))
            echo "  trial $trials: the completed $mode after the kill did not reach the after state"
        fi
    fi
done
echo "  $mode$([ $on_etcd = 1 ] && echo " on etcd"): $kills kills (wanted $want_kills, within ${budget_s} s) over $trials trials ($finished finished first): $landed_before before, $landed_after after,$([ $on_etcd = 1 ] && echo " $landed_partial partial (split write, every object before or after, parts in order),") $torn torn; $converged re-runs converged, $not_converged did not"
rc=0
check "at least $min_kills kills landed while $mode ran" test $kills -ge "$min_kills"
check "kills landed on both sides of the commit" test $landed_before -gt 0 -a $((landed_after + landed_partial)) -gt 0
check "no kill left a torn store (every object as before, or every object as after)" test $torn -eq 0
check "every completed $mode after a kill converges to the after state" test $not_converged -eq 0
finish
