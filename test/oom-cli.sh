#!/usr/bin/env bash
# oom-cli.sh - out of memory is an exit code, never abort(): validate and apply --dry-run run
# with every allocation failing from the Nth on (test/oom-shim.c through LD_PRELOAD), for each N
# until the command needs no more; each run must exit 2 with a message, never die of a signal.
source "$(dirname "$0")/lib.sh"
: "${OOM_SHIM:?set OOM_SHIM to the built oom-shim.so}"
export MESHCA_STORE="sqlite://$WORK/store/meshca.db"

printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n' >"$WORK/prev.yaml"
printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-2\n  backends:\n  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n' >"$WORK/next.yaml"
run apply -f "$WORK/prev.yaml"
check "setup: the mesh as applied" exit_is 0

# sweep STEP EXPECTED_RC ARGS...: runs meshca ARGS with allocation N failing, N = 0, STEP, ...
# until a run exits EXPECTED_RC with no allocation failing. Reports the first bad run.
sweep() {
    local step=$1 want=$2 n=0 bad="" runs=0 oom=0
    shift 2
    while [ $n -lt 20000 ]; do
        MESHCA_TEST_FAIL_ALLOC=$n LD_PRELOAD="$OOM_SHIM" timeout 60 "$MESHCA" "$@" >"$WORK/out" 2>"$WORK/err"
        rc=$?
        runs=$((runs + 1))
        if [ $rc -eq "$want" ] && ! grep -q "out of memory" "$WORK/err"; then
            break   # enough memory for the whole command: the sweep is over
        fi
        if [ $rc -ne 2 ] || [ ! -s "$WORK/err" ]; then
            bad="allocation $n: exit $rc, stderr: $(head -c 200 "$WORK/err")"
            break
        fi
        grep -q "out of memory" "$WORK/err" && oom=$((oom + 1))
        n=$((n + step))
    done
    echo "  $runs runs, $oom said 'out of memory'${bad:+; $bad}"
    [ -z "$bad" ] && [ $n -lt 20000 ] && [ $oom -gt 0 ]
}

check "validate --from: every allocation failure exits 2 with a message (no abort)" \
    sweep 1 1 validate -f "$WORK/next.yaml" --from "$WORK/prev.yaml"
check "validate --from -o json: the same, never a signal" \
    sweep 3 1 validate -o json -f "$WORK/next.yaml" --from "$WORK/prev.yaml"
check "apply --dry-run against the store: every 3rd allocation failure exits 2, no abort" \
    sweep 3 1 apply --dry-run -f "$WORK/next.yaml"
run validate -f "$WORK/next.yaml" --from "$WORK/prev.yaml"
check "without the shim the same check refuses the change (multi-step)" out_has "several rotation steps at once"

finish
