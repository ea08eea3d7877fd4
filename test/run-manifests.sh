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

# --- prune: a document gone from DIR deletes what the sync applied from it, under delete's checks ---
put_mesh ca-2 ca-1 ca-2
wait_for "the directory applies again once the refused step is undone" \
    bash -c "! '$MESHCA' inspect meshes | grep -q 'REFUSED'"
dp_yaml() { # dp_yaml MESH NAME PORT
    printf 'type: Dataplane\nmesh: %s\nname: %s\nnetworking: {address: 127.0.0.1, inbound: [{port: %s, tags: {kuma.io/service: %s}}]}\n' "$1" "$2" "$3" "$2"
}
{
    dp_yaml default extra-01 7001
    printf -- '---\ntype: Secret\nmesh: default\nname: extra-secret\ndata: aGVsbG8=\n---\ntype: Mesh\nname: other\n'
} >"$WORK/manifests/.extra.tmp" && mv "$WORK/manifests/.extra.tmp" "$WORK/manifests/extra.yaml"
wait_for "a new file's Dataplane, Secret and Mesh are applied" \
    bash -c "'$MESHCA' get dataplanes | grep -q extra-01 && '$MESHCA' get secrets | grep -q extra-secret && '$MESHCA' get meshes other"
{ dp_yaml default manual-01 7002; echo ---; dp_yaml other manual-02 7003; } >"$WORK/manual.yaml"
run apply -f "$WORK/manual.yaml"
check "dataplanes applied by hand (one in the directory's mesh 'other')" exit_is 0
check "the sync records what it applied, in the mesh status" bash -c "'$MESHCA' inspect meshes -m other -o json | grep -q '\"dir\"'"
rm "$WORK/manifests/extra.yaml"
wait_for "the Dataplane whose document is gone is pruned" bash -c "! '$MESHCA' get dataplanes | grep -q extra-01"
wait_for "so is the Secret" bash -c "! '$MESHCA' get secrets | grep -q extra-secret"
check "the controller says what it pruned" grep -q "manifests: dataplane default/extra-01 pruned" "$WORK/run.log"
wait_for "the Mesh 'other' is not pruned while a Dataplane applied by hand needs it; the refusal is in its status" \
    bash -c "'$MESHCA' inspect meshes -m other -o json | python3 -c '
import json, sys
s = json.load(sys.stdin)[0][\"status\"][\"pruneRefused\"]
sys.exit(0 if s[\"change\"] == \"delete mesh \x27other\x27\" and \"manual-02\" in s[\"reason\"] else 1)'"
check "the controller log names the refused prune" grep -q "manifests: prune of mesh other/other refused" "$WORK/run.log"
sleep 2   # passes run every second: two more retried the refused prune
check "the refused prune is said once, not on every retry" \
    test "$(grep -c "manifests: prune of mesh other/other refused" "$WORK/run.log")" -eq 1
run inspect meshes -m other
check "inspect meshes shows the refused prune and why" \
    bash -c "grep -qF \"PRUNE REFUSED: delete mesh 'other' (from --manifests)\" '$WORK/out' && grep -q 'REASON: .*manual-02' '$WORK/out'"
run get meshes other
check "mesh 'other' is still there" exit_is 0
run get dataplanes -m default
check "a Dataplane applied by hand is never pruned" out_has "manual-01"
run delete dataplane manual-02 -m other
check "the Dataplane that held 'other' is deleted by hand" exit_is 0
wait_for "then the refused prune goes through on a later sync" bash -c "! '$MESHCA' get meshes other >/dev/null 2>&1"

# An emptied checkout (a botched git operation) is no wish to delete everything.
mkdir "$WORK/aside"
# One mv per file is not one step: a sync between two of them sees a directory that still holds
# files, and prunes what left it, rightly. The controller is paused so it sees only the end state.
kill -STOP "$CTL_PID"
mv "$WORK/manifests/"*.yaml "$WORK/aside/"
kill -CONT "$CTL_PID"
npruned=$(grep -c 'pruned' "$WORK/run.log")
sleep 2   # passes run every second: two of them had their chance to prune
check "an empty directory prunes nothing" bash -c "'$MESHCA' get dataplanes | grep -q web-01 && '$MESHCA' get meshes default >/dev/null"
check "... and says nothing about pruning" bash -c "[ \$(grep -c 'pruned' '$WORK/run.log') -eq $npruned ]"
mv "$WORK/aside/"*.yaml "$WORK/manifests/"

# --- --no-prune keeps what left DIR ---
stop_controller
start_controller --manifests "$WORK/manifests" --interval 1s --no-prune
pids+=("$CTL_PID")
dp_yaml default extra-02 7004 >"$WORK/manifests/.x.tmp" && mv "$WORK/manifests/.x.tmp" "$WORK/manifests/extra2.yaml"
wait_for "with --no-prune, a new file is still applied" bash -c "'$MESHCA' get dataplanes | grep -q extra-02"
npruned=$(grep -c 'pruned' "$WORK/run.log")
rm "$WORK/manifests/extra2.yaml"
sleep 2   # passes run every second: two of them had their chance to prune
check "with --no-prune, a Dataplane whose file is gone stays" bash -c "'$MESHCA' get dataplanes | grep -q extra-02"
check "and nothing is said about pruning" bash -c "[ \$(grep -c 'pruned' '$WORK/run.log') -eq $npruned ]"
finish
