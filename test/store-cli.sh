#!/usr/bin/env bash
# store-cli.sh - apply, get, inspect, roots and ca create on a temporary SQLite store: all or
# nothing, gating from stored status, no key material in any output, store files 0600, loose
# store permissions refused.
source "$(dirname "$0")/lib.sh"
ex="$SOURCE_ROOT/manifests/examples/rotation/universal"
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"

# Commands that only read never create a store: a mistyped path must not leave an empty one.
if on_sqlite; then
    missing="$WORK/nowhere/meshca.db"
    for cmd in "get meshes" "inspect meshes" "inspect leader" "roots -m default" "diff -f $ex/0-mesh.yaml" \
               "apply --dry-run -f $ex/0-mesh.yaml" "delete mesh default --dry-run"; do
        # shellcheck disable=SC2086 # the command's words
        MESHCA_STORE="sqlite://$missing" run $cmd
        check "'$cmd' on a store that does not exist notes it" err_has "no store at '$missing' yet"
        check "'$cmd' creates neither the store nor its directory" test ! -e "$WORK/nowhere"
    done
    run validate --store "sqlite://$missing" -f "$ex/0-mesh.yaml"
    check "validate --store on a missing store validates against an empty one" exit_is 0
    check "validate --store creates nothing" test ! -e "$WORK/nowhere"
    MESHCA_STORE="sqlite://$missing" run apply -f "$ex/0-mesh.yaml"
    check "apply (not a dry run) creates the store" test -s "$missing"
    # The in-memory store the read-only commands fall back to keeps nothing: writers refuse it.
    for cmd in "apply -f $ex/0-mesh.yaml" "token issue -m default -d web-01" "reconcile --once"; do
        # shellcheck disable=SC2086 # the command's words
        MESHCA_STORE="sqlite://:memory:" run $cmd
        check "'$cmd' refuses sqlite://:memory: (exit 2)" exit_is 2
        check "... saying it keeps nothing" err_has "sqlite://:memory: keeps nothing after this command"
    done
    MESHCA_STORE="sqlite://:memory:" run get meshes
    check "get accepts sqlite://:memory: (an empty store)" exit_is 0
fi

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
before=$(store_dump | sha256sum)
run apply -f "$WORK/mixed.yaml"
check "apply with one invalid document exits 1" exit_is 1
check "the invalid document is reported" err_has "inbound has no 'kuma.io/service' tag"
after=$(store_dump | sha256sum)
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
if on_sqlite; then
    bad_modes=$(find "$WORK/store" -type f ! -perm 0600 | wc -l)
    check "every store file is 0600" test "$bad_modes" -eq 0
fi

run inspect dataplanes -o json
check "inspect dataplanes -o json is readable by validate --status" python3 -c '
import json, sys; d = json.load(open(sys.argv[1])); assert len(d) == 2 and all("mtls" in i for i in d), d' "$WORK/out"
cp "$WORK/out" "$WORK/status.json"
run validate -f "$ex/2-switch.yaml" --from "$ex/1-add.yaml" --status "$WORK/status.json"
check "validate refuses the switch from the snapshot too" exit_is 1

# --- issue 9 #2: validate --store gates exactly as apply --dry-run does ---
# The store holds ca-1 enabled and ca-2 added, and no dataplane acknowledged ca-2.
run --store "$MESHCA_STORE" validate -f "$ex/2-switch.yaml"
check "validate with the global --store refuses the premature switch (exit 1)" exit_is 1
check "validate --store names the blocking dataplanes like apply" \
    out_has "cannot switch to 'ca-2' yet: 2 of 2 dataplanes do not trust it (db-01, web-01)"
run validate --store "$MESHCA_STORE" -f "$ex/2-switch.yaml" -o json
check "validate --store URL refuses with switch-not-propagated at enabledBackend" \
    json_has switch-not-propagated mtls.enabledBackend 5
cp "$WORK/out" "$WORK/validate-store.json"
run apply --dry-run -f "$ex/2-switch.yaml" -o json
check "apply --dry-run and validate --store give the same diagnostics" python3 -c '
import json, sys
a, b = (json.load(open(p))["diagnostics"] for p in sys.argv[1:])
assert a == b, (a, b)' "$WORK/out" "$WORK/validate-store.json"
run validate --store "$MESHCA_STORE" -f "$ex/2-switch.yaml" --from "$ex/1-add.yaml"
check "validate --store --from refuses too" exit_is 1
check "validate --store --from does not ask for --status or --store" out_lacks "pass --status or --store"
run validate --store "$MESHCA_STORE" -f "$ex/2-switch.yaml" --force
check "validate --store --force lets the switch through" exit_is 0
run get meshes
check "validate --store stored nothing" out_has "builtin/ca-1"
run validate -f "$ex/2-switch.yaml"
check "without --store, validate stays offline although MESHCA_STORE is set" exit_is 0

# --- issue 9 #21: a Dataplane needs its Mesh ---
cat >"$WORK/orphan.yaml" <<'YAML'
type: Dataplane
mesh: nowhere
name: orphan-01
networking: {address: 127.0.0.1, inbound: [{port: 7000, tags: {kuma.io/service: orphan}}]}
YAML
run apply -f "$WORK/orphan.yaml" -o json
check "a Dataplane in a mesh that does not exist is refused (exit 1)" exit_is 1
check "the refusal is mesh-not-found at the dataplane's mesh field" json_has mesh-not-found mesh 2
printf 'type: Mesh\nname: nowhere\n---\n' | cat - "$WORK/orphan.yaml" >"$WORK/orphan-with-mesh.yaml"
run apply -f "$WORK/orphan-with-mesh.yaml"
check "the same Dataplane with its Mesh in the same apply is accepted" exit_is 0

# --- issue 9 #8: vault and cfssl checked at apply (vault: its CA contacted), accepted offline ---
cat >"$WORK/vault.yaml" <<'YAML'
type: Mesh
name: vm
mtls:
  enabledBackend: v1
  backends:
  - name: v1
    type: vault
    conf:
      fromCp:
        address: https://127.0.0.1:1
        pki: pki
        role: mesh
        auth: {token: {inlineString: s.VAULTTOKENSECRET42}}
YAML
cat >"$WORK/cfssl.yaml" <<'YAML'
type: Mesh
name: cm
mtls:
  enabledBackend: b1
  backends:
  - name: b1
    type: builtin
  - name: c1
    type: cfssl
    conf: {url: "http://127.0.0.1:1", authKey: {inlineString: cf55a17e5ec2e7cf55a17e5ec2e7}}
YAML
run validate -f "$WORK/vault.yaml" -f "$WORK/cfssl.yaml"
check "offline validate still accepts vault and cfssl meshes" exit_is 0
run apply -f "$WORK/vault.yaml" -o json
check "apply of a vault mesh whose Vault is unreachable exits 2" exit_is 2
check "the diagnostic is ca-unreachable at the backend" json_has ca-unreachable "mtls.backends[0]" 6
check "the message names the backend and that Vault is unreachable" out_has "vault backend 'v1' (mesh vm): sign (POST /v1/pki/sign/mesh): Vault at https://127.0.0.1:1 unreachable"
check "the refusal does not print the vault token" out_lacks "VAULTTOKENSECRET42"
run apply --dry-run -f "$WORK/cfssl.yaml" -o json
check "apply --dry-run checks a cfssl backend, even one not enabled: unreachable (exit 2)" exit_is 2
check "the refusal is ca-unreachable at the backend's conf" json_has ca-unreachable "mtls.backends[1].conf"
check "the refusal names the backend" out_has "cfssl backend 'c1' (mesh cm)"
run --store "$MESHCA_STORE" validate -f "$WORK/cfssl.yaml"
check "validate --store refuses it too (exit 2)" exit_is 2
check "validate --store says which backend" out_has "cfssl backend 'c1' (mesh cm)"
check "nothing prints the cfssl authKey" out_lacks "cf55a17e5ec2e7cf55a17e5ec2e7"
run get meshes
check "no vault or cfssl mesh was stored" out_lacks "vm "

# --- issue 9 #1: inline keys and tokens are never printed; get output applies back ---
run ca create --out-dir "$WORK/ca9" --common-name "inline ca"
key_b64=$(base64 -w0 "$WORK/ca9/ca-key.pem")
key_body=$(sed -n 2p "$WORK/ca9/ca-key.pem")
{
    printf 'type: Mesh\nname: inl\nmtls:\n  enabledBackend: ca-s\n  backends:\n'
    printf '  - name: ca-s\n    type: provided\n    conf:\n      cert:\n        inlineString: |\n'
    sed 's/^/          /' "$WORK/ca9/ca.pem"
    printf '      key:\n        inlineString: |\n'
    sed 's/^/          /' "$WORK/ca9/ca-key.pem"
    printf '  - name: ca-b\n    type: provided\n    conf:\n'
    printf '      cert: {inline: %s}\n      key: {inline: %s}\n' "$(base64 -w0 "$WORK/ca9/ca.pem")" "$key_b64"
} >"$WORK/inline.yaml"
run apply -f "$WORK/inline.yaml"
check "a mesh with inline keys (inlineString and inline) is applied" exit_is 0
for cmd in "get meshes" "get meshes -o json" "get meshes -o yaml" "get meshes -m inl -o yaml" \
           "get secrets -o yaml" "inspect meshes" "inspect meshes -o json" "roots -m inl"; do
    run $cmd
    check "'$cmd' prints no inline key (PEM form)" out_lacks "$key_body"
    check "'$cmd' prints no inline key (base64 form)" out_lacks "${key_b64:20:40}"
    check "'$cmd' prints no private key header" out_lacks "PRIVATE KEY"
done
run get meshes -m inl -o yaml
check "inline values print as <redacted>" test "$(grep -c '<redacted>' "$WORK/out")" -eq 4
cp "$WORK/out" "$WORK/inl-get.yaml"
run apply -f "$WORK/inl-get.yaml"
check "get -o yaml applies back unchanged: apply keeps the stored keys" out_has "mesh/inl unchanged"
run get meshes -m inl -o json
cp "$WORK/out" "$WORK/inl-get.json"
run apply -f "$WORK/inl-get.json"
check "get -o json applies back unchanged" out_has "mesh/inl unchanged"
run get secrets -o yaml
cp "$WORK/out" "$WORK/secrets-get.yaml"
run apply -f "$WORK/secrets-get.yaml"
check "get secrets -o yaml applies back unchanged" out_has "secret/default/ca-2-key unchanged"
sed 's/name: ca-b$/name: ca-c/' "$WORK/inl-get.yaml" >"$WORK/inl-renamed.yaml"
line=$(grep -n '<redacted>' "$WORK/inl-renamed.yaml" | sed -n 3p | cut -d: -f1)
run apply -f "$WORK/inl-renamed.yaml" -o json
check "a <redacted> value with no stored value to keep is refused (exit 1)" exit_is 1
check "the refusal is redacted-value at the field and its line" \
    json_has redacted-value "mtls.backends[1].conf.cert.inline" "$line"
check "the refusal prints no key" out_lacks "$key_body"

# --- issue 9 #3: a Secret change re-checks the backends that read it ---
{
    printf 'type: Secret\nmesh: sx\nname: sx-cert\ndata: %s\n---\n' "$(base64 -w0 "$WORK/ca2/ca.pem")"
    printf 'type: Secret\nmesh: sx\nname: sx-key\ndata: %s\n---\n' "$(base64 -w0 "$WORK/ca2/ca-key.pem")"
    printf 'type: Mesh\nname: sx\nmtls:\n  enabledBackend: px\n  backends:\n'
    printf '  - name: px\n    type: provided\n    conf:\n      cert: {secret: sx-cert}\n      key: {secret: sx-key}\n'
} >"$WORK/sx-mesh.yaml"
run apply -f "$WORK/sx-mesh.yaml"
check "a mesh whose enabled provided backend reads two Secrets is applied" exit_is 0
{
    printf 'type: Secret\nmesh: sx\nname: sx-cert\ndata: %s\n---\n' "$(base64 -w0 "$WORK/ca9/ca.pem")"
    printf 'type: Secret\nmesh: sx\nname: sx-key\ndata: %s\n' "$(base64 -w0 "$WORK/ca9/ca-key.pem")"
} >"$WORK/sx-swap.yaml"
run apply -f "$WORK/sx-swap.yaml" -o json
check "replacing the CA of the enabled backend through its Secrets is refused (exit 1)" exit_is 1
check "as backend-changed-in-place (R5), at the Secret's data" json_has backend-changed-in-place data 4
check "the refusal names the mesh and backend" out_has "used by mesh 'sx'"
printf 'type: Secret\nmesh: sx\nname: sx-cert\ndata: %s\n' "$(printf 'garbage, not a certificate' | base64 -w0)" >"$WORK/sx-garbage.yaml"
run apply -f "$WORK/sx-garbage.yaml" -o json
check "garbage in a Secret a backend reads is refused (exit 1)" exit_is 1
check "the garbage is reported as ca-unparsable at the Secret's data" json_has ca-unparsable data 4
run apply -f "$WORK/sx-garbage.yaml" --force
check "--force does not let an unparsable CA through" exit_is 1
{
    printf 'type: Secret\nmesh: default\nname: ca-2-cert\ndata: %s\n---\n' "$(base64 -w0 "$WORK/ca9/ca.pem")"
    printf 'type: Secret\nmesh: default\nname: ca-2-key\ndata: %s\n' "$(base64 -w0 "$WORK/ca9/ca-key.pem")"
} >"$WORK/ca2-swap.yaml"
run apply -f "$WORK/ca2-swap.yaml"
check "replacing the CA of a backend no dataplane trusts and not enabled is allowed (R5)" exit_is 0

# --- issue 9 #11: concurrent applies never lose an update ---
lost=0
conflicts=0
for t in $(seq 1 30); do
    printf 'type: Mesh\nname: race%s\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - {name: ca-1, type: builtin}\n' "$t" >"$WORK/race0.yaml"
    "$MESHCA" apply -f "$WORK/race0.yaml" >/dev/null 2>&1
    for b in 2 3; do
        printf 'type: Mesh\nname: race%s\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - {name: ca-1, type: builtin}\n  - {name: ca-%s, type: builtin}\n' "$t" "$b" >"$WORK/race$b.yaml"
    done
    "$MESHCA" apply -f "$WORK/race2.yaml" >"$WORK/race2.out" 2>&1 &
    p2=$!
    "$MESHCA" apply -f "$WORK/race3.yaml" >"$WORK/race3.out" 2>&1 &
    p3=$!
    wait $p2
    r2=$?
    wait $p3
    r3=$?
    stored=$("$MESHCA" get meshes -m "race$t" -o json | python3 -c '
import json, sys; d = json.load(sys.stdin); d = d["items"] if isinstance(d, dict) else d
print(",".join(b["name"] for b in d[0]["mtls"]["backends"]))')
    # Exactly one wins and the store holds what it applied; the other exits 1.
    if ! { [ "$r2" = 0 ] && [ "$r3" = 1 ] && [ "$stored" = "ca-1,ca-2" ]; } &&
       ! { [ "$r3" = 0 ] && [ "$r2" = 1 ] && [ "$stored" = "ca-1,ca-3" ]; }; then
        lost=$((lost + 1))
        echo "  trial $t: exits $r2 $r3, stored $stored"
    fi
    grep -qF "was changed by someone else since this apply read it" "$WORK/race2.out" "$WORK/race3.out" &&
        conflicts=$((conflicts + 1))
done
echo "  concurrent applies: 30 pairs, $conflicts lost the compare-and-swap"
check "30 pairs of concurrent applies: exactly one of each pair wins, no update lost" test "$lost" -eq 0

MESHCA_STORE="etcd://127.0.0.1:1,127.0.0.1:2" run get meshes
check "an etcd store with no member answering is exit 2 (issue 11)" exit_is 2
check "the unreachable etcd's message names every endpoint (issue 11)" \
    err_has "no etcd member answered (127.0.0.1:1: "
check "... the second endpoint too" err_has "; 127.0.0.1:2: "
# Issue 11: the global etcd TLS flags reach the store (files are checked when it opens).
run --store "etcds://127.0.0.1:1" --etcd-cacert "$WORK/no-such-ca.pem" get meshes
check "--etcd-cacert names a file that is not there: exit 2" exit_is 2
check "... and the message names the file" err_has "cannot read $WORK/no-such-ca.pem"
run --store "etcds://127.0.0.1:1" --etcd-cert="$WORK/client.pem" get meshes
check "--etcd-cert without --etcd-key is refused" err_has "a client certificate needs its key"
run --etcd-key
check "--etcd-key without a file is a usage error" exit_is 2
MESHCA_STORE="file://$WORK/old" run get meshes
check "the retired file:// store is exit 2" exit_is 2
check "the retired file:// store says what to use" err_has "the file:// store was retired; use sqlite://PATH (the default)"

# Issue 9 #19: a store others can write or read is refused, naming the path, the mode and the fix
# (SQLite's directory and file; etcd guards itself).
if on_sqlite; then
    db=${MESHCA_STORE#sqlite://}
    chmod 777 "$WORK/store"
    run get meshes
    check "a 0777 store directory is refused with exit 2" exit_is 2
    check "the refusal names the directory, its mode and the fix" \
        err_has "store directory '$WORK/store' has mode 0777: other users can write it; refusing to use it (run: chmod 700 '$WORK/store')"
    chmod 700 "$WORK/store"
    chmod 666 "$db"
    run get meshes
    check "a 0666 store file is refused with exit 2" exit_is 2
    check "the refusal names the file, its mode and the fix" \
        err_has "store file '$db' has mode 0666: other users can write it; refusing to use it (run: chmod 600 '$db')"
    chmod 600 "$db"
    run get meshes
    check "after chmod the store is used again" exit_is 0
fi

# Issue 9 #21: one name limit (253) for validate and apply alike.
l63=$(printf 'a%.0s' $(seq 1 63))   # a DNS name is dot-separated labels of at most 63
long252="$l63.$l63.$l63.$(printf 'b%.0s' $(seq 1 60))"; long254="$l63.$l63.$l63.$(printf 'b%.0s' $(seq 1 62))"
for n in 252 254; do
    name=$([ $n = 252 ] && echo "$long252" || echo "$long254")
    cat >"$WORK/long-$n.yaml" <<YAML
type: Dataplane
mesh: default
name: $name
networking:
  address: 127.0.0.1
  inbound: [{port: 7002, tags: {kuma.io/service: long}}]
YAML
done
run validate -f "$WORK/long-252.yaml"
check "validate accepts a 252-character dataplane name" exit_is 0
run apply -f "$WORK/long-252.yaml"
check "apply accepts the same 252-character name validate accepted" exit_is 0
run get dataplanes "$long252" -m default
run apply -f "$WORK/long-254.yaml"
check "apply refuses a 254-character name with invalid-name at its path" err_has "long-254.yaml:3:7: error: name:"

run roots -m nosuch
check "roots of a mesh that does not exist exits 1 naming it" exit_is 1
check "roots names the missing mesh" err_has "no mesh 'nosuch' in the store"

finish
