#!/usr/bin/env bash
# failpoints.sh - crash and failure at the injected failpoints around every commit (issue 14, SPEC
# S6; reconciler/failpoint.h): `apply`, `reconcile --once` and `run`, each with every point that
# its store reaches set to `kill` and to `error`, on SQLite (default) and on etcd
# (MESHCA_TEST_STORE=etcd: a one-member etcd from test/etcd-lib.sh). After each: the store is as
# before or as after across all objects (test/store-dump.c, test/store-state.py), exactly the
# side the point implies, and a clean run from there converges to "after". On etcd a write over
# store_txn_limit is split into parts, each atomic (reconciler/store.h): a stop between parts
# leaves "partial" (every object as before or as after, never anything else), which the next
# run completes. `error` gives the failpoint's message and exit 2 (run: one log line, then the
# next pass writes). Prints the trials and the states seen. Suite crash (and crash-etcd).
source "$(dirname "$0")/lib.sh"
: "${STORE_DUMP:?set STORE_DUMP to the built store-dump}"
: "${SEED_AGENTS:?set SEED_AGENTS to the built seed-agents}"
: "${STORE_COPY:?set STORE_COPY to the built store-copy}"
ndp=150 # over etcd's 128 ops per txn: the apply and the pass are split there

# The "before" states are built in SQLite directories; on etcd each trial copies one into the
# member (store-copy: values, not versions) before running.
on_etcd=0
[ -n "$TEST_STORE_URL" ] && on_etcd=1
printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n    mode: %s\n' \
    PERMISSIVE >"$WORK/mesh-0.yaml"
sed 's/PERMISSIVE/STRICT/' "$WORK/mesh-0.yaml" >"$WORK/mesh-1.yaml"
for i in $(seq -w 1 $ndp); do
    printf -- '---\ntype: Dataplane\nmesh: default\nname: dp-%s\nnetworking:\n  address: 127.0.0.1\n  inbound: [{port: 8443, tags: {kuma.io/service: svc-%s}}]\n' "$i" "$((10#$i % 10))"
done >"$WORK/dataplanes.yaml"

export MESHCA_STORE="sqlite://$WORK/before-apply/meshca.db"
run apply -f "$WORK/mesh-0.yaml"
check "the before state of apply is applied" exit_is 0
export MESHCA_STORE="sqlite://$WORK/before-pass/meshca.db"
run apply -f "$WORK/mesh-1.yaml"
"$MESHCA" reconcile --once >/dev/null 2>&1
run apply -f "$WORK/dataplanes.yaml"
check "the before state of the pass is applied" exit_is 0
check "every dataplane has sent its CSR" test "$("$SEED_AGENTS" csr default)" = $ndp
run cp-ca
check "the before state has the control-plane CA" exit_is 0

# use_state NAME: points MESHCA_STORE at a fresh copy of the before state NAME.
use_state() {
    if [ $on_etcd = 1 ]; then
        export MESHCA_STORE=$TEST_STORE_URL
        "$STORE_COPY" "sqlite://$WORK/before-$1/meshca.db" "$MESHCA_STORE" || return 1
    else
        rm -rf "$WORK/trial" && cp -a "$WORK/before-$1" "$WORK/trial"
        export MESHCA_STORE="sqlite://$WORK/trial/meshca.db"
    fi
}
state_of() { python3 "$(dirname "$0")/store-state.py" "$mode" "$WORK/before-$base.dump" "$2" "$1" $ndp; }

# run_cmd [ENV...]: runs the mode's command on $MESHCA_STORE (env: MESHCA_FAILPOINTS); $rc, $WORK/err.
# run never exits on its own: it is stopped (TERM) once the store is "after", or when it died; at
# most 300 polls (then rc 124).
run_cmd() {
    if [ "$mode" != run ]; then
        env "$@" timeout 60 "$MESHCA" "${cmd[@]}" >"$WORK/out" 2>"$WORK/err"
        rc=$?
        return
    fi
    env "$@" "$MESHCA" run --listen 127.0.0.1:0 >"$WORK/out" 2>"$WORK/err" &
    local pid=$! st=
    rc=124
    for _ in $(seq 1 300); do
        if ! kill -0 $pid 2>/dev/null; then
            wait $pid
            rc=$?
            return
        fi
        "$STORE_DUMP" >"$WORK/poll.dump" 2>/dev/null && st=$(state_of "$WORK/poll.dump" "${ref-}")
        if [ "$st" = after ]; then
            rc=0
            break
        fi
        sleep 0.1
    done
    kill -TERM $pid 2>/dev/null
    wait $pid 2>/dev/null
}

trials=0
declare -A seen=()
# trial POINT ACTION EXPECTED [NTH]: one run with POINT=[NTH*]ACTION from a fresh before state.
trial() {
    local point=$1 action=$2 want=$3 nth=${4:-} st
    trials=$((trials + 1))
    use_state "$base" || { check "$mode: the before state is restored" false; return; }
    # run retries a failed pass: its error is on one hit only, so the next pass can write.
    [ "$mode" = run ] && [ "$action" = error ] && nth=${nth:-1}
    run_cmd MESHCA_FAILPOINTS="$point=${nth:+$nth*}$action"
    point=$point${nth:+ (hit $nth)}
    "$STORE_DUMP" >"$WORK/trial.dump" 2>"$WORK/trial.err"
    st=$(state_of "$WORK/trial.dump" "$WORK/after-$mode.dump")
    seen[$st]=$((${seen[$st]:-0} + 1))
    case $action in
    kill) check "$mode, $point=kill: killed at the point (exit 137)" exit_is 137 ;;
    error)
        if [ "$mode" = run ]; then
            # First hit only: the failed pass is logged once, the next one writes.
            check "$mode, $point=error once: one log line naming the failpoint, then the store is after" \
                test "$(grep -c "failpoint ${1}: injected I/O error" "$WORK/err")" -eq 1 -a $rc -eq 0
            # (After a commit point the store is "after" already and run is stopped before its
            # next pass, which would say so.)
            [ "$want" != after ] &&
                check "$mode, $point=error once: the controller says the store works again" err_has "the store works again"
        else
            check "$mode, $point=error: exit 2" exit_is 2
            check "$mode, $point=error: the message names the failpoint" err_has "failpoint ${1}: injected I/O error"
        fi
        ;;
    esac
    [ "$mode" = run ] && [ "$action" = error ] && return
    check "$mode, $point=$action: the store is $want (it is $st)" test "$st" = "$want"
    # The next clean run converges from there.
    run_cmd
    "$STORE_DUMP" >"$WORK/conv.dump"
    check "$mode, $point=$action: the next clean $mode converges to after" \
        test "$(state_of "$WORK/conv.dump" "$WORK/after-$mode.dump")" = after
}

if [ $on_etcd = 1 ]; then
    commit_points=(etcd.txn.before etcd.txn.after)
else
    commit_points=(sqlite.commit.before sqlite.commit.after)
fi
for mode in apply reconcile run; do
    case $mode in
    apply) base=apply cmd=(apply -f "$WORK/mesh-1.yaml" -f "$WORK/dataplanes.yaml") point=apply.commit ;;
    reconcile) base=pass cmd=(reconcile --once) point=pass.commit ;;
    run) base=pass cmd=(run) point=pass.commit ;;
    esac
    MESHCA_STORE="sqlite://$WORK/before-$base/meshca.db" "$STORE_DUMP" >"$WORK/before-$base.dump"
    # The reference: an uninterrupted run on the same backend gives "after".
    use_state "$base"
    ref="" run_cmd
    check "the uninterrupted $mode succeeds" exit_is 0
    "$STORE_DUMP" >"$WORK/after-$mode.dump"
    check "the uninterrupted $mode changes the store" test "$(state_of "$WORK/after-$mode.dump" "$WORK/after-$mode.dump")" = after -a \
        "$(state_of "$WORK/after-$mode.dump" "")" != before
    unset ref
    for action in kill error; do
        # Before the commit nothing is written; after it, everything (a part, on a split etcd write).
        trial "$point" "$action" before
        for p in "${commit_points[@]}"; do
            case $p in
            *.before) want=before ;;
            *.after) want=after ;;
            esac
            # After the first part of a split etcd write: partial.
            [ $on_etcd = 1 ] && [ "$p" = etcd.txn.after ] && want=partial
            trial "$p" "$action" $want
        done
        # Between two parts of the write: the store splits an apply, the pass splits itself into
        # parts of whole (identity, check of its dataplane) pairs (reconciler/reconcile.c).
        if [ $on_etcd = 1 ]; then
            if [ $mode = apply ]; then trial etcd.txn.between "$action" partial; else trial pass.commit "$action" partial 2; fi
        fi
    done
done
states=""
for st in "${!seen[@]}"; do states+=" $st=${seen[$st]}"; done
echo "  failpoints on $([ $on_etcd = 1 ] && echo etcd || echo SQLite): $trials trials:$states (torn must be absent)"
check "no trial left a torn store" test -z "${seen[torn]:-}"
finish
