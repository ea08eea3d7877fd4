#!/usr/bin/env bash
# delete-cli.sh - meshca delete by name and by file: refusals while something needs a resource
# (store unchanged), not found, ambiguous names, dry run, and what a Dataplane and a Mesh take
# along (identity, status, secrets), on a temporary SQLite store.
source "$(dirname "$0")/lib.sh"
ex="$SOURCE_ROOT/manifests/examples/rotation/universal"
k8s="$SOURCE_ROOT/manifests/examples/rotation/kubernetes"
export MESHCA_STORE="sqlite://$WORK/store/meshca.db"
db="$WORK/store/meshca.db"

# objects KIND [MESH]: how many objects of KIND (of MESH) the store holds, read with Python's
# sqlite3 so the test sees records no command prints (identities, statuses).
objects() {
    python3 - "$db" "$@" <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
q, args = "SELECT count(*) FROM objects WHERE kind = ?", [sys.argv[2]]
if len(sys.argv) > 3:
    q += " AND mesh = ?"; args.append(sys.argv[3])
print(db.execute(q, args).fetchone()[0])
PY
}
# snapshot: every object with its version, and what get prints: equal before and after = unchanged.
snapshot() {
    python3 - "$db" <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
for row in db.execute("SELECT kind, mesh, name, version FROM objects ORDER BY 1, 2, 3"):
    print(*row)
PY
    for kind in meshes dataplanes secrets; do "$MESHCA" get "$kind" -o json; done
}
# put_status MESH NAME: a dataplane status record, as the API writes when an agent acknowledges.
put_status() {
    python3 - "$db" "$1" "$2" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rev = db.execute("SELECT max(version) FROM objects").fetchone()[0] + 1
value = json.dumps({"mesh": sys.argv[2], "name": sys.argv[3], "mtls": {"issuedBackend": "ca-1"}})
db.execute("INSERT INTO objects (kind, mesh, name, value, version) VALUES ('dpstatus', ?, ?, ?, ?)",
           (sys.argv[2], sys.argv[3], value, rev))
db.commit()
PY
}

run apply -f "$ex/0-mesh.yaml" -f "$ex/dataplanes.yaml"
check "setup: apply of the mesh and two dataplanes" exit_is 0
run reconcile --once
check "setup: a reconcile pass creates the builtin CA" exit_is 0
# Identities are signed from the agents' CSRs (dataplane API); records stand in for them here.
for dp in web-01 db-01; do "$STORE_TOOL" put identities default "$dp" '{"mesh":"default","name":"'"$dp"'"}' >/dev/null; done
put_status default web-01
check "setup: web-01 has an identity and a status" test "$(objects identities default)$(objects dpstatus default)" = 21

# --- usage errors: exit 2 ---
run delete
check "delete without arguments is a usage error (exit 2)" exit_is 2
run delete mesh
check "a kind without a name is a usage error (exit 2)" exit_is 2
check "it says a NAME is missing" err_has "a NAME after the kind"
run delete widgets foo
check "an unknown kind is a usage error (exit 2)" exit_is 2
check "it names the kinds" err_has "expected mesh, dataplane or secret"
run delete -f "$ex/dataplanes.yaml" dataplane web-01
check "-f and names together are a usage error (exit 2)" exit_is 2
run delete -f "$WORK/no-such-file.yaml"
check "an unreadable -f path exits 2" exit_is 2
run delete mesh default --no-such-flag
check "an unknown flag exits 2" exit_is 2

# --- refusals: exit 1, nothing changed ---
before=$(snapshot)
run delete mesh default
check "a mesh that has dataplanes is refused (exit 1)" exit_is 1
check "the refusal names the dataplanes and says to delete them first" \
    err_has "mesh 'default' still has 2 dataplanes (db-01, web-01): delete the dataplanes first"
check "nothing deleted after the refused mesh delete" test "$before" = "$(snapshot)"
run delete -f "$ex/0-mesh.yaml"
check "delete -f of the mesh alone is refused too (exit 1)" exit_is 1
check "at the mesh document's line" err_has "0-mesh.yaml:2:1: error: mesh 'default' still has 2 dataplanes"
run delete mesh default --dry-run
check "a dry run gives the same refusal (exit 1)" exit_is 1
run delete secret default.ca-builtin-key-ca-1 -m default
check "the key of an enabled builtin CA is refused (exit 1)" exit_is 1
check "the refusal names the backend and why" \
    err_has "secret 'default.ca-builtin-key-ca-1' holds the CA of builtin backend 'ca-1' of mesh 'default'"
run delete secret default.ca-builtin-cert-ca-1
check "its certificate is refused too (exit 1)" exit_is 1
check "nothing deleted after the refused secret deletes" test "$before" = "$(snapshot)"

run delete mesh nope
check "a missing mesh is exit 1" exit_is 1
check "it says not found" err_has "mesh 'nope' not found"
run delete dataplane web-01 ghost-01 -m default
check "one missing dataplane among two is exit 1" exit_is 1
check "naming the missing one and its mesh" err_has "dataplane 'ghost-01' not found in mesh 'default'"
check "all or nothing: web-01 is still there" test "$before" = "$(snapshot)"
run delete dataplane ghost-01 --ignore-not-found
check "--ignore-not-found: a missing dataplane is exit 0" exit_is 0
check "--ignore-not-found: nothing printed" test ! -s "$WORK/out"

# A Secret a provided backend reads cannot go while the backend is there.
run ca create --out-dir "$WORK/ca2" --common-name ca-2
{
    printf 'type: Secret\nmesh: default\nname: ca-2-cert\ndata: %s\n---\n' "$(base64 -w0 "$WORK/ca2/ca.pem")"
    printf 'type: Secret\nmesh: default\nname: ca-2-key\ndata: %s\n' "$(base64 -w0 "$WORK/ca2/ca-key.pem")"
} >"$WORK/ca2-secrets.yaml"
run apply -f "$WORK/ca2-secrets.yaml" -f "$ex/1-add.yaml"
check "setup: ca-2 (provided, from two Secrets) added" exit_is 0
before=$(snapshot)
run delete secret ca-2-key
check "a Secret a backend reads is refused (exit 1)" exit_is 1
check "the refusal names the backend, the mesh and the field" \
    err_has "secret 'ca-2-key' is used by backend 'ca-2' of mesh 'default' (mtls.backends[1].conf.key.secret)"
run delete -f "$WORK/ca2-secrets.yaml"
check "delete -f of both Secrets is refused (exit 1)" exit_is 1
check "one diagnostic per Secret, at its document" err_has "ca2-secrets.yaml:6:1: error: secret 'ca-2-key'"
check "nothing deleted after the refused secret delete" test "$before" = "$(snapshot)"

# The same name in two meshes needs -m.
printf 'type: Mesh\nname: other\n---\ntype: Dataplane\nmesh: other\nname: web-01\nnetworking:\n  address: 127.0.0.1\n  inbound: [{port: 1, tags: {kuma.io/service: web}}]\n' >"$WORK/other.yaml"
run apply -f "$WORK/other.yaml"
check "setup: mesh 'other' with its own web-01" exit_is 0
before=$(snapshot)
run delete dataplane web-01
check "a name in two meshes without -m is refused (exit 1)" exit_is 1
check "it names both meshes and asks for -m" err_has "dataplane 'web-01' exists in 2 meshes ('default', 'other'): say which with -m MESH"
check "nothing deleted after the ambiguous delete" test "$before" = "$(snapshot)"

# --- success paths ---
run delete dataplane web-01 -m default --dry-run
check "a dry run exits 0" exit_is 0
check "it says what it would delete" out_has "dataplane/default/web-01 deleted (dry run)"
check "a dry run deletes nothing" test "$before" = "$(snapshot)"

run delete dataplane web-01 -m default
check "deleting a dataplane exits 0" exit_is 0
check "it says what it deleted" out_has "dataplane/default/web-01 deleted"
run get dataplanes -o json
check "web-01 of default is gone, web-01 of other is not" python3 -c '
import json, sys; d = json.load(open(sys.argv[1]))
assert sorted((i["mesh"], i["name"]) for i in d) == [("default", "db-01"), ("other", "web-01")], d' "$WORK/out"
check "its identity is gone (db-01's stays)" test "$(objects identities default)" = 1
check "its status is gone" test "$(objects dpstatus default)" = 0
run get dataplanes web-01 -m default
check "get of the deleted dataplane is exit 1" exit_is 1

# Removing the backend frees its Secrets.
run apply -f "$ex/0-mesh.yaml"
check "setup: ca-2 removed from the mesh" exit_is 0
run delete secret ca-2-key ca-2-cert -m default
check "Secrets no backend reads any more are deleted (exit 0)" exit_is 0
check "both are listed" out_has "secret/default/ca-2-cert deleted"

# A mesh and its dataplanes in one delete -f: the dataplanes go first in the same transaction.
run apply -f "$WORK/ca2-secrets.yaml"
check "setup: an applied Secret in the mesh" exit_is 0
run delete -f "$ex/0-mesh.yaml" -f "$k8s/dataplanes.yaml" --ignore-not-found
check "delete -f of the mesh with its dataplanes (Kubernetes form, web-01 already gone) exits 0" exit_is 0
check "the mesh is deleted" out_has "mesh/default deleted"
check "db-01 is deleted" out_has "dataplane/default/db-01 deleted"
check "the builtin CA key goes with the mesh" out_has "secret/default/default.ca-builtin-key-ca-1 deleted (with mesh/default)"
check "an applied Secret goes with the mesh" out_has "secret/default/ca-2-key deleted (with mesh/default)"
for kind in meshes dataplanes secrets identities dpstatus meshstatus; do
    check "no $kind object of mesh default is left" test "$(objects "$kind" default)" = 0
done
check "mesh other is untouched" test "$(objects dataplanes other)$(objects meshes other)" = 11

run delete mesh other
check "mesh other with its dataplane is refused" exit_is 1
run delete dataplane web-01 -m other
run delete meshes other
check "then the mesh goes (plural kind word accepted)" exit_is 0
run get meshes -o json
check "no mesh is left" test "$(tr -d ' \n' <"$WORK/out")" = "[]"

finish
