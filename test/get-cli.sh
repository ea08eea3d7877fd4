#!/usr/bin/env bash
# get-cli.sh - get KIND NAME (one resource, not found, ambiguous), -o name, inspect -o yaml,
# and the global --store accepted after the command as well as before.
source "$(dirname "$0")/lib.sh"
ex="$SOURCE_ROOT/manifests/examples/rotation/universal"
export MESHCA_STORE="sqlite://$WORK/store/meshca.db"

run apply -f "$ex/0-mesh.yaml" -f "$ex/dataplanes.yaml"
check "setup: apply of the mesh and two dataplanes" exit_is 0
printf 'type: Mesh\nname: other\n---\ntype: Dataplane\nmesh: other\nname: web-01\nnetworking:\n  address: 127.0.0.2\n  inbound: [{port: 1, tags: {kuma.io/service: web}}]\n' >"$WORK/other.yaml"
run apply -f "$WORK/other.yaml"
check "setup: mesh 'other' with its own web-01" exit_is 0

# --- get KIND NAME ---
run get meshes default
check "get meshes NAME exits 0" exit_is 0
check "it prints that mesh" out_has "builtin/ca-1"
check "and only that mesh" out_lacks "other"
run get meshes default -o json
check "get meshes NAME -o json prints the object itself (kubectl)" python3 -c '
import json, sys; d = json.load(open(sys.argv[1])); assert d["type"] == "Mesh" and d["name"] == "default", d' "$WORK/out"
run get mesh nope
check "a missing mesh is exit 1" exit_is 1
check "it says not found" err_has "mesh 'nope' not found"
check "and prints no table header" test ! -s "$WORK/out"
run get dataplanes db-01
check "a dataplane name in one mesh needs no -m" exit_is 0
check "it prints db-01" out_has "db-01"
run get dataplanes web-01
check "a name in two meshes without -m is exit 1" exit_is 1
check "it names both meshes and asks for -m" err_has "dataplane 'web-01' exists in 2 meshes ('default', 'other'): say which with -m MESH"
run get dataplanes web-01 -m other -o json
check "with -m it prints the one of that mesh" python3 -c '
import json, sys; d = json.load(open(sys.argv[1])); assert d["mesh"] == "other" and d["networking"]["address"] == "127.0.0.2", d' "$WORK/out"
run get dataplanes web-01 ghost-01 -m default
check "one missing name among two is exit 1" exit_is 1
check "the found one is still printed" out_has "web-01"
check "the missing one is named with its mesh" err_has "dataplane 'ghost-01' not found in mesh 'default'"
run get dataplanes db-01 web-01 -m default -o json
check "two names -o json print an array of both" python3 -c '
import json, sys; d = json.load(open(sys.argv[1])); assert [i["name"] for i in d] == ["db-01", "web-01"], d' "$WORK/out"

# --- -o name (what shell completion reads) ---
run get dataplanes -m default -o name
check "-o name prints KIND/NAME per line" test "$(cat "$WORK/out")" = "$(printf 'dataplane/db-01\ndataplane/web-01')"
run get meshes -o name
check "-o name of meshes" test "$(cat "$WORK/out")" = "$(printf 'mesh/default\nmesh/other')"

# --- inspect -o yaml ---
run inspect meshes -m default -o yaml
check "inspect meshes -o yaml exits 0" exit_is 0
check "inspect meshes -o yaml is the same document as -o json" python3 -c '
import json, subprocess, sys
y = open(sys.argv[1]).read()
# The YAML prints JSON scalars, so a JSON-aware reading of the block structure is enough.
j = json.loads(subprocess.run([sys.argv[2], "inspect", "meshes", "-m", "default", "-o", "json"],
                              capture_output=True, text=True, check=True).stdout)
assert "enabledBackend: ca-1" in y and j[0]["enabledBackend"] == "ca-1", y
assert y.count("- name:") == len(j) + sum(len(m["backends"]) for m in j), y' "$WORK/out" "$MESHCA"
run inspect dataplanes -o yaml
check "inspect dataplanes -o yaml exits 0" exit_is 0
check "inspect dataplanes -o yaml lists every dataplane" test "$(grep -c '^- mesh:' "$WORK/out")" = 3
run inspect dataplanes -o pem
check "inspect -o pem is a usage error (exit 2)" exit_is 2

# --- the global --store, before or after the command ---
unset MESHCA_STORE
mkdir -p "$WORK/cwd" && cd "$WORK/cwd" || exit 1
run get meshes --store "sqlite://$WORK/store/meshca.db" -o name
check "--store URL after the command is taken" out_has "mesh/default"
run get meshes -o name --store="sqlite://$WORK/store/meshca.db"
check "--store=URL after the command is taken" out_has "mesh/default"
run --store "sqlite://$WORK/store/meshca.db" get meshes -o name
check "--store before the command still works" out_has "mesh/default"
run delete dataplane db-01 -m default --dry-run --store "sqlite://$WORK/store/meshca.db"
check "delete takes --store after the command" out_has "dataplane/default/db-01 deleted (dry run)"
check "no default store was created in the working directory" test ! -e "$WORK/cwd/.meshca"
run get meshes --store
check "--store without its URL is a usage error (exit 2)" exit_is 2

# -m naming a mesh the store does not have (a typo): an empty listing says so on stderr, exit 0.
for cmd in "get dataplanes" "inspect dataplanes" "inspect meshes"; do
    MESHCA_STORE="sqlite://$WORK/store/meshca.db" run $cmd -m defualt
    check "$cmd -m with an unknown mesh exits 0" exit_is 0
    check "$cmd -m with an unknown mesh says it is not in the store" \
        err_has "meshca: note: no mesh 'defualt' in the store"
    MESHCA_STORE="sqlite://$WORK/store/meshca.db" run $cmd -m default
    check "$cmd -m with a known mesh prints no note" bash -c "! grep -q 'no mesh' '$WORK/err'"
done

finish
