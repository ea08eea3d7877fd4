#!/usr/bin/env bash
# validate-walkthrough.sh - narrates the three-step CA rotation of manifests/examples/rotation
# through `meshca validate`: each step passes once the mesh has caught up, each premature step
# is refused with the reason. Usage: validate-walkthrough.sh [PATH-TO-MESHCA]
set -uo pipefail
meshca=${1:-meshca}
# The script changes directory: make a relative path to the binary absolute first.
case $meshca in */*) meshca=$(realpath "$meshca") ;; esac
cd "$(dirname "$0")/../../manifests/examples/rotation"

bold=$(tput bold 2>/dev/null || true); plain=$(tput sgr0 2>/dev/null || true)
failures=0

# step TITLE EXPECTED-EXIT ARGS... : shows the command, runs it, checks the exit code.
step() {
    local title=$1 expected=$2
    shift 2
    printf '\n%s==> %s%s\n$ meshca %s\n' "$bold" "$title" "$plain" "$*"
    "$meshca" "$@"
    local rc=$?
    if [ "$rc" -eq "$expected" ]; then
        printf '(exit %d, as expected)\n' "$rc"
    else
        printf 'UNEXPECTED: exit %d, wanted %d\n' "$rc" "$expected"
        failures=$((failures + 1))
    fi
}

u=universal
step "The starting point: mTLS with the builtin backend ca-1" 0 \
    validate -f $u/0-mesh.yaml -f $u/dataplanes.yaml
step "Step 1, add ca-2: always allowed" 0 \
    validate -f $u/1-add.yaml -f $u/dataplanes.yaml --from $u/0-mesh.yaml --status status/0-caught-up.json
step "Premature: add and switch in one change" 1 \
    validate -f $u/2-switch.yaml -f $u/dataplanes.yaml --from $u/0-mesh.yaml --status status/0-caught-up.json
step "Premature: switch while db-01 has not loaded a bundle with ca-2" 1 \
    validate -f $u/2-switch.yaml -f $u/dataplanes.yaml --from $u/1-add.yaml --status status/1-db-behind.json
step "Step 2, switch to ca-2: every dataplane trusts ca-2 now" 0 \
    validate -f $u/2-switch.yaml -f $u/dataplanes.yaml --from $u/1-add.yaml --status status/1-caught-up.json
step "Premature: remove ca-1 while db-01 still presents a ca-1 certificate" 1 \
    validate -f $u/3-remove.yaml -f $u/dataplanes.yaml --from $u/2-switch.yaml --status status/2-db-behind.json
step "Step 3, remove ca-1: no dataplane holds a ca-1 certificate" 0 \
    validate -f $u/3-remove.yaml -f $u/dataplanes.yaml --from $u/2-switch.yaml --status status/2-caught-up.json
step "The same switch in the Kubernetes form, for a CI pipeline (GitHub annotations)" 1 \
    validate -o github -f kubernetes/2-switch.yaml -f kubernetes/dataplanes.yaml \
    --from kubernetes/1-add.yaml --status status/1-db-behind.json

echo
if [ "$failures" -eq 0 ]; then
    echo "walkthrough: every step behaved as expected"
else
    echo "walkthrough: $failures step(s) did not behave as expected"
    exit 1
fi
