#!/usr/bin/env bash
# run-manifests.sh - `meshca run --manifests DIR` as a GitOps sync: a switch written right after
# the add is held as pending (reason in `inspect meshes`) until the agents acknowledge, then
# applied by the controller on its own; an add+switch written in one go stays refused.
source "$(dirname "$0")/lib.sh"
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
source "$(dirname "$0")/api-lib.sh"
mkdir -p "$WORK/manifests" "$WORK/dp/web-01" "$WORK/dp/db-01"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

mesh_yaml() { # mesh_yaml ENABLED BACKEND...
    local enabled=$1
    shift
    printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: %s\n  backends:\n' "$enabled"
    for b in "$@"; do printf '  - name: %s\n    type: builtin\n' "$b"; done
}
# Write as editors and git do: a temp file renamed into place.
put_mesh() { mesh_yaml "$@" >"$WORK/manifests/.mesh.tmp" && mv "$WORK/manifests/.mesh.tmp" "$WORK/manifests/mesh.yaml"; }

# wait_for DESCRIPTION COMMAND...: polls every 200 ms, at most 30 s.
wait_for() {
    local what=$1
    shift
    for _ in $(seq 150); do
        "$@" >/dev/null 2>&1 && { check "$what" true; return 0; }
        sleep 0.2
    done
    check "$what (waited 30 s)" false
}
enabled_is() { "$MESHCA" get meshes | grep -q "builtin/$1 "; }
backends_are() { "$MESHCA" get meshes | grep -q " $1\$"; }
all_support() { "$MESHCA" inspect dataplanes -o json | python3 -c '
import json, sys; d = json.load(sys.stdin); b = sys.argv[1]
sys.exit(0 if len(d) == 2 and all(b in (i["mtls"].get("supportedBackends") or []) for i in d) else 1)' "$1"; }

cp "$SOURCE_ROOT/manifests/examples/rotation/universal/dataplanes.yaml" "$WORK/manifests/"
put_mesh ca-1 ca-1
CTL_LOG="$WORK/run.log"
start_controller --manifests "$WORK/manifests" --interval 1s
pids+=("$CTL_PID")
# The agents reach the controller through the API, with a token each (once the dataplanes exist).
wait_for "the controller applies the dataplanes of the directory" bash -c "'$MESHCA' get dataplanes | grep -q db-01"
for dp in web-01 db-01; do
    "$MESHCA" agent -m default -d $dp --out "$WORK/dp/$dp" --server "$API_URL" --ca-file "$WORK/cp-ca.pem" \
        --token-file "$(token_for $dp)" --reload true >/dev/null 2>&1 &
    pids+=($!)
    [ $dp = db-01 ] && db_agent=$!
done
wait_for "the controller applies the initial manifests and the agents load ca-1" all_support ca-1

kill -STOP "$db_agent"
put_mesh ca-1 ca-1 ca-2
wait_for "the add step is applied from the directory" backends_are ca-1,ca-2
put_mesh ca-2 ca-1 ca-2
wait_for "the switch written right after is held as pending" \
    bash -c "'$MESHCA' inspect meshes | grep -q 'PENDING: switch'"
run inspect meshes
check "inspect meshes gives the reason, naming the paused dataplane" out_has "db-01"
check "the switch is not applied while db-01 is paused" enabled_is ca-1
kill -CONT "$db_agent"
wait_for "the controller applies the pending switch once the agents acknowledged" enabled_is ca-2
run inspect meshes
check "nothing is pending after the switch" out_lacks "PENDING"

put_mesh ca-3 ca-1 ca-2 ca-3
wait_for "add+switch in one go is refused" bash -c "'$MESHCA' inspect meshes | grep -q 'REFUSED'"
sleep 2
check "add+switch stays refused: ca-2 still enabled" enabled_is ca-2
check "add+switch stays refused: ca-3 not added" backends_are ca-1,ca-2
check "the controller log says why" grep -q "several rotation steps at once" "$WORK/run.log"
finish
