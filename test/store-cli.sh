#!/usr/bin/env bash
# store-cli.sh - apply, get, inspect, roots and ca create on a temporary file store: all or
# nothing, gating from stored status, no key material in any output, key files 0600.
source "$(dirname "$0")/lib.sh"
ex="$SOURCE_ROOT/manifests/examples/rotation/universal"
export MESHCA_STORE="file://$WORK/store"

run apply -f "$ex/0-mesh.yaml" -f "$ex/dataplanes.yaml"
check "apply of the initial mesh and dataplanes succeeds" exit_is 0
check "apply says what it created" out_has "mesh/default created"
run apply -f "$ex/0-mesh.yaml"
check "re-applying the same mesh changes nothing" out_has "mesh/default unchanged"

run get meshes
check "get meshes shows MTLS as type/backend" out_has "builtin/ca-1"
run get dataplanes -o json
check "get dataplanes -o json lists both dataplanes" python3 -c '
import json, sys; d = json.load(open(sys.argv[1])); assert sorted(i["name"] for i in d) == ["db-01", "web-01"], d' "$WORK/out"

# All or nothing: one valid and one invalid document change nothing.
cat >"$WORK/mixed.yaml" <<'YAML'
type: Dataplane
mesh: default
name: new-01
networking:
  address: 127.0.0.1
  inbound: [{port: 7000, tags: {kuma.io/service: new}}]
---
type: Dataplane
mesh: default
name: bad-01
networking:
  address: 127.0.0.1
  inbound: [{port: 7001, tags: {version: v1}}]
YAML
before=$(cd "$WORK/store" && find . -type f ! -name .lock -exec sha256sum {} + | sort)
run apply -f "$WORK/mixed.yaml"
check "apply with one invalid document exits 1" exit_is 1
check "the invalid document is reported" err_has "inbound has no 'kuma.io/service' tag"
after=$(cd "$WORK/store" && find . -type f ! -name .lock -exec sha256sum {} + | sort)
check "the store is byte-identical after a refused apply" test "$before" = "$after"

# Gating from the stored status: nothing acknowledged yet, so a switch is refused.
run apply -f "$ex/1-add.yaml"
check "add of ca-2 is refused: its secrets do not exist yet" exit_is 1
run ca create --out-dir "$WORK/ca2" --common-name "ca-2"
check "ca create succeeds" exit_is 0
check "ca-key.pem is 0600" test "$(stat -c %a "$WORK/ca2/ca-key.pem")" = 600
sum_before=$(sha256sum "$WORK/ca2/ca.pem" "$WORK/ca2/ca-key.pem")
run ca create --out-dir "$WORK/ca2"
check "a second ca create into the same directory fails" exit_is 1
check "both files are byte-identical after the refused ca create" \
    test "$sum_before" = "$(sha256sum "$WORK/ca2/ca.pem" "$WORK/ca2/ca-key.pem")"
{
    printf 'type: Secret\nmesh: default\nname: ca-2-cert\ndata: %s\n---\n' "$(base64 -w0 "$WORK/ca2/ca.pem")"
    printf 'type: Secret\nmesh: default\nname: ca-2-key\ndata: %s\n' "$(base64 -w0 "$WORK/ca2/ca-key.pem")"
} >"$WORK/ca2-secrets.yaml"
run apply -f "$WORK/ca2-secrets.yaml" -f "$ex/1-add.yaml" --dry-run
check "dry run of add with its secrets passes" exit_is 0
run get secrets
check "dry run stored nothing" out_lacks "ca-2-cert"
run apply -f "$WORK/ca2-secrets.yaml" -f "$ex/1-add.yaml"
check "add of ca-2 with its secrets is applied" exit_is 0
run apply -f "$ex/2-switch.yaml"
check "switch is refused while no dataplane acknowledged ca-2" exit_is 1
check "the refusal is switch-not-propagated naming the dataplanes" \
    err_has "cannot switch to 'ca-2' yet: 2 of 2 dataplanes do not trust it (db-01, web-01)"
run apply -f "$ex/2-switch.yaml" --dry-run --force
check "a forced dry run passes" exit_is 0

# Nothing prints key material; key-holding files are 0600.
for cmd in "get secrets" "get secrets -o json" "get secrets -o yaml" "inspect meshes" "inspect meshes -o json" "roots -m default" "roots -m default -o pem"; do
    run $cmd
    check "'$cmd' prints no private key" out_lacks "PRIVATE KEY"
    check "'$cmd' prints no secret data" out_lacks "$(base64 -w0 "$WORK/ca2/ca-key.pem" | cut -c1-40)"
done
bad_modes=$(find "$WORK/store" -type f ! -perm 0600 | wc -l)
check "every store file is 0600" test "$bad_modes" -eq 0

run inspect dataplanes -o json
check "inspect dataplanes -o json is readable by validate --status" python3 -c '
import json, sys; d = json.load(open(sys.argv[1])); assert len(d) == 2 and all("mtls" in i for i in d), d' "$WORK/out"
cp "$WORK/out" "$WORK/status.json"
run validate -f "$ex/2-switch.yaml" --from "$ex/1-add.yaml" --status "$WORK/status.json"
check "validate refuses the switch from the snapshot too" exit_is 1

MESHCA_STORE="etcd://127.0.0.1:1" run get meshes
check "an unsupported store is exit 2" exit_is 2
finish
