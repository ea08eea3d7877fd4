#!/usr/bin/env bash
# oom-reconcile.sh - out of memory in a reconcile pass is an exit code, never a signal: the pass
# that signs CSRs and the one that re-signs held keys after a CA switch (both on the signing
# workers, issue 13) run with every allocation failing from the Nth on (test/oom-shim.c through
# LD_PRELOAD), for N in steps, until the pass needs no more; each run must exit 2 with a message.
source "$(dirname "$0")/lib.sh"
: "${OOM_SHIM:?set OOM_SHIM to the built oom-shim.so}"
: "${SEED_AGENTS:?set SEED_AGENTS to the built seed-agents}"
export MESHCA_STORE="sqlite://$WORK/store/meshca.db"

mesh() { # mesh ENABLED: the Mesh with both builtin backends
    printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: %s\n  backends:\n  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n' "$1"
}
mesh ca-1 >"$WORK/mesh-1.yaml"
mesh ca-2 >"$WORK/mesh-2.yaml"
for i in $(seq -w 1 20); do
    printf -- '---\ntype: Dataplane\nmesh: default\nname: dp-%s\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 8443\n    tags:\n      kuma.io/service: svc-%s\n' "$i" "$i"
done >"$WORK/dataplanes.yaml"
run apply -f "$WORK/mesh-1.yaml" -f "$WORK/dataplanes.yaml"
check "setup: the mesh and 20 dataplanes" exit_is 0
"$MESHCA" reconcile --once >/dev/null 2>&1   # the CAs exist before: what fails is the signing pass
check "setup: every dataplane sends a CSR" test "$("$SEED_AGENTS" csr default)" = 20

# sweep STEP WANT ARGS...: meshca ARGS with allocation N failing, N = 0, STEP, ... until a run
# prints WANT with no allocation failing (a failed pass writes nothing: each run starts from
# the same store). Reports the first run that died of a signal or exited without a message.
sweep() {
    local step=$1 want=$2 n=0 bad="" runs=0 oom=0
    shift 2
    while [ $n -lt 100000 ]; do
        MESHCA_TEST_FAIL_ALLOC=$n LD_PRELOAD="$OOM_SHIM" timeout 60 "$MESHCA" "$@" >"$WORK/out" 2>"$WORK/err"
        rc=$?
        runs=$((runs + 1))
        if [ $rc -eq 0 ] && grep -qF -- "$want" "$WORK/out" && ! grep -q "out of memory" "$WORK/err"; then
            break
        fi
        if [ $rc -ne 2 ] || [ ! -s "$WORK/err" ]; then
            bad="allocation $n: exit $rc, stderr: $(head -c 200 "$WORK/err")"
            break
        fi
        grep -q "out of memory" "$WORK/err" && oom=$((oom + 1))
        n=$((n + step))
    done
    echo "  $runs runs, $oom said 'out of memory'${bad:+; $bad}"
    [ -z "$bad" ] && [ $n -lt 100000 ] && [ $oom -gt 0 ]
}

check "the CSR pass (20 leaves on the workers): every 97th allocation failure exits 2, no signal" \
    sweep 97 "20 issued" reconcile --once
# Every agent acknowledges its identity (its bundle has ca-2), so the switch passes the gates.
check "setup: every dataplane acknowledges" test "$("$SEED_AGENTS" ack default)" = 20
run apply -f "$WORK/mesh-2.yaml"
check "setup: the switch to ca-2 is applied" exit_is 0
check "the switch pass (20 keys re-signed): every 97th allocation failure exits 2, no signal" \
    sweep 97 "20 reissued" reconcile --once
finish
