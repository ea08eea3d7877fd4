#!/usr/bin/env bash
# diff-cli.sh - meshca diff -f: exit 0 with no change, 1 with changes (kubectl's convention), 2
# on trouble; the unified diff matches diff -u; secrets never printed, a changed one shown as
# changed; each mesh's transition with apply's verdict; the store unchanged; and get -o yaml/json
# -> apply round trips with no change for every kind in both forms.
source "$(dirname "$0")/lib.sh"
ex="$SOURCE_ROOT/manifests/examples/rotation/universal"
k8s="$SOURCE_ROOT/manifests/examples/rotation/kubernetes"
export MESHCA_STORE="sqlite://$WORK/store/meshca.db"

# A mesh of several backends, and the same with changes far apart (two hunks) and near (one).
mesh_yaml() { # mesh_yaml NAME EXPIRATION-OF-b1 MODE-OF-b8
    printf 'type: Mesh\nname: %s\nmtls:\n  enabledBackend: b0\n  backends:\n' "$1"
    for i in 0 1 2 3 4 5 6 7 8 9; do
        printf '  - name: b%s\n    type: builtin\n' "$i"
        [ "$i" = 1 ] && printf '    dpCert:\n      rotation:\n        expiration: %s\n' "$2"
        [ "$i" = 8 ] && printf '    mode: %s\n' "$3"
    done
}
mesh_yaml big 24h STRICT >"$WORK/big-0.yaml"
mesh_yaml big 12h PERMISSIVE >"$WORK/big-1.yaml"

run apply -f "$WORK/big-0.yaml" -f "$ex/0-mesh.yaml" -f "$ex/dataplanes.yaml"
check "setup: apply of two meshes and two dataplanes" exit_is 0

# --- no change: exit 0, nothing printed ---
run diff -f "$WORK/big-0.yaml" -f "$ex/0-mesh.yaml" -f "$ex/dataplanes.yaml"
check "diff of what is stored exits 0" exit_is 0
check "and prints nothing" test ! -s "$WORK/out"
run diff -f "$k8s/0-mesh.yaml" -f "$k8s/dataplanes.yaml"
check "the same resources in the Kubernetes form: no change either (exit 0)" exit_is 0

# --- changes: exit 1, the diff is diff -u's ---
snap_before=$("$MESHCA" get meshes -o json; "$MESHCA" get dataplanes -o json)
run diff -f "$WORK/big-1.yaml"
check "a changed mesh exits 1" exit_is 1
check "the diff names the stored and the new resource" \
    test "$(head -2 "$WORK/out")" = "$(printf -- '--- stored/mesh/big\n+++ new/mesh/big')"
cp "$WORK/out" "$WORK/big.diff"
# The reference: diff -u of get -o yaml from a store holding the old and one holding the new.
"$MESHCA" get meshes big -o yaml | tail -n +2 >"$WORK/big-old.yaml"
MESHCA_STORE="sqlite://$WORK/other/meshca.db" "$MESHCA" apply -f "$WORK/big-1.yaml" >/dev/null
MESHCA_STORE="sqlite://$WORK/other/meshca.db" "$MESHCA" get meshes big -o yaml | tail -n +2 >"$WORK/big-new.yaml"
diff -u "$WORK/big-old.yaml" "$WORK/big-new.yaml" | tail -n +3 >"$WORK/big-ref.diff"
check "the hunks are exactly diff -u's (two hunks, three lines of context)" \
    test "$(grep -v '^mesh/' "$WORK/big.diff" | tail -n +3)" = "$(cat "$WORK/big-ref.diff")"
check "there are two hunks" test "$(grep -c '^@@' "$WORK/big.diff")" = 2
check "the transition and verdict follow the diff" out_has "mesh/big: no CA step (mode, dpCert or other fields): apply would accept it"
check "diff stored nothing" test "$snap_before" = "$("$MESHCA" get meshes -o json; "$MESHCA" get dataplanes -o json)"

run diff -f "$ex/1-add.yaml"
check "an add whose Secrets are missing exits 1" exit_is 1
check "the transition is the add, with apply's refusal" \
    out_has "mesh/default: add 'ca-2': apply would refuse it: cannot read the CA certificate: secret not found: ca-2-cert"
check "apply's diagnostic, at its line, on stderr" err_has "1-add.yaml:13:9: error: mtls.backends[1].conf.cert"

run ca create --out-dir "$WORK/ca2" --common-name ca-2
{
    printf 'type: Secret\nmesh: default\nname: ca-2-cert\ndata: %s\n---\n' "$(base64 -w0 "$WORK/ca2/ca.pem")"
    printf 'type: Secret\nmesh: default\nname: ca-2-key\ndata: %s\n' "$(base64 -w0 "$WORK/ca2/ca-key.pem")"
} >"$WORK/ca2-secrets.yaml"
key_b64=$(base64 -w0 "$WORK/ca2/ca-key.pem")
run diff -f "$WORK/ca2-secrets.yaml" -f "$ex/1-add.yaml"
check "an add with its Secrets exits 1 (changes)" exit_is 1
check "a new Secret is diffed from /dev/null" out_has "+++ new/secret/default/ca-2-key"
check "its data is shown redacted" out_has "+data: <redacted> (after)"
check "the key itself is never printed" out_lacks "${key_b64:30:40}"
check "the verdict: apply would accept the add" out_has "mesh/default: add 'ca-2': apply would accept it"
run apply -f "$WORK/ca2-secrets.yaml" -f "$ex/1-add.yaml"
check "setup: the add applied" exit_is 0

run diff -f "$ex/2-switch.yaml"
check "a premature switch exits 1" exit_is 1
check "the diff shows the enabled backend changing" out_has "+  enabledBackend: ca-2"
check "the verdict: refused until the dataplanes catch up, naming them" \
    out_has "mesh/default: switch 'ca-1' -> 'ca-2': apply would refuse it until the dataplanes catch up: cannot switch to 'ca-2' yet: 2 of 2 dataplanes do not trust it (db-01, web-01)"
run diff -f "$ex/2-switch.yaml" --force
check "with --force the verdict is apply --force's" out_has "mesh/default: switch 'ca-1' -> 'ca-2': apply would accept it"
run diff -f "$ex/3-remove.yaml"
check "switch and remove at once: both steps, refused as multi-step" \
    out_has "mesh/default: switch 'ca-1' -> 'ca-2', remove 'ca-1': apply would refuse it: several rotation steps at once"

# A Secret whose data changes: shown as changed, never printed.
run ca create --out-dir "$WORK/ca3" --common-name ca-3
printf 'type: Secret\nmesh: default\nname: ca-2-key\ndata: %s\n' "$(base64 -w0 "$WORK/ca3/ca-key.pem")" >"$WORK/key-swap.yaml"
run diff -f "$WORK/key-swap.yaml"
check "a changed Secret exits 1" exit_is 1
check "its data shows as changed" test "$(grep -c '^[-+]data: <redacted> (before)$\|^+data: <redacted> (after)$' "$WORK/out")" = 2
check "neither key is printed" out_lacks "$(base64 -w0 "$WORK/ca3/ca-key.pem" | cut -c30-70)"
check "the verdict is apply's: the new key does not match the backend's certificate" \
    err_has "key-swap.yaml:4:7: error: data: Secret 'ca-2-key' is used by mesh 'default' (mtls.backends[1].conf.key): the private key does not match"
check "and it says apply would refuse" err_has "apply would refuse these changes: 1 error"
run get secrets ca-2-key -m default -o yaml
cp "$WORK/out" "$WORK/key-get.yaml"
run diff -f "$WORK/key-get.yaml"
check "get -o yaml of a Secret (data <redacted>) diffs as no change (exit 0)" exit_is 0

# --- trouble: exit 2 ---
run diff
check "diff without -f is a usage error (exit 2)" exit_is 2
run diff -f "$WORK/missing.yaml"
check "an unreadable file exits 2" exit_is 2
printf 'type: Mesh\nname: bad\nmtls:\n  enabledBackend: nope\n' >"$WORK/invalid.yaml"
run diff -f "$WORK/invalid.yaml"
check "invalid manifests exit 2 (no diff to show)" exit_is 2
check "with the diagnostic at its line" err_has "invalid.yaml:4:"
MESHCA_STORE="file://$WORK/x" run diff -f "$ex/0-mesh.yaml"
check "a store that cannot be opened exits 2" exit_is 2

# --- round trip: get -o yaml|json -> apply -> no change, every kind, both forms ---
export MESHCA_STORE="sqlite://$WORK/rt/meshca.db"
printf 'type: Dataplane\nmesh: default\nname: odd-01\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: "8080", version: "1.10", flag: "true", empty: "", "yes": "no", colon: "a: b"}\n' >"$WORK/odd.yaml"
for form in universal kubernetes; do
    dir=$ex
    [ "$form" = kubernetes ] && dir=$k8s
    rm -rf "$WORK/rt"
    run apply -f "$WORK/ca2-secrets.yaml" -f "$dir/0-mesh.yaml" -f "$dir/dataplanes.yaml" -f "$WORK/odd.yaml"
    check "$form: setup apply" exit_is 0
    run apply -f "$dir/1-add.yaml"
    check "$form: the add applied (a provided backend reading Secrets)" exit_is 0
    for kind in meshes dataplanes secrets; do
        for fmt in yaml json; do
            run get "$kind" -o "$fmt"
            cp "$WORK/out" "$WORK/rt-$kind.$fmt"
            run diff -f "$WORK/rt-$kind.$fmt"
            check "$form: get $kind -o $fmt diffs as no change (exit 0)" exit_is 0
            run apply -f "$WORK/rt-$kind.$fmt"
            check "$form: get $kind -o $fmt applies back" exit_is 0
            check "$form: ... with nothing changed" test "$(grep -vc ' unchanged$' "$WORK/out")" = 0
        done
    done
    run get dataplanes odd-01 -o json
    check "$form: strings that look like numbers, booleans or nothing stay strings" python3 -c '
import json, sys; t = json.load(open(sys.argv[1]))["networking"]["inbound"][0]["tags"]
assert t == {"kuma.io/service": "8080", "version": "1.10", "flag": "true", "empty": "", "yes": "no", "colon": "a: b"}, t' "$WORK/out"
done

finish
