#!/usr/bin/env bash
# rotation-cli.sh - the three-step rotation on the embedded store, driven through the built binary:
# apply → reconcile → agents (through the dataplane API of a running controller) → openssl verify;
# each step gated on what the agents acknowledged.
# Runs builtin → builtin (ca-1 → ca-2) and builtin → provided (a CA from `meshca ca create`).
source "$(dirname "$0")/lib.sh"
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
source "$(dirname "$0")/api-lib.sh"
DPS="web-01 db-01"

mesh_yaml() { # mesh_yaml ENABLED BACKEND-SPEC...  (spec: name:builtin | name:provided)
    local enabled=$1
    shift
    printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: %s\n  backends:\n' "$enabled"
    for spec in "$@"; do
        local name=${spec%%:*} type=${spec#*:}
        printf '  - name: %s\n    type: %s\n' "$name" "$type"
        if [ "$type" = provided ]; then
            printf '    conf:\n      cert: {secret: %s-cert}\n      key: {secret: %s-key}\n' "$name" "$name"
        fi
    done
}

sync_agents() { # every agent loads and acknowledges the current generation (reload: true)
    settle
    for dp in "$@"; do
        agent_once "$dp"
        [ "$agent_rc" -eq 0 ] || { echo "agent $dp: exit $agent_rc"; cat "$WORK/agent.out"; }
    done
}

verify_all() { # verify_all ISSUER: each dataplane's cert verifies against its bundle, by ISSUER
    for dp in $DPS; do
        local d="$WORK/dp/$dp"
        openssl verify -x509_strict -CAfile "$d/ca-bundle.pem" -untrusted "$d/cert.pem" "$d/cert.pem" >/dev/null 2>&1 || return 1
        status=$(python3 -c '
import json, sys
for i in json.load(open(sys.argv[1])):
    if i["name"] == sys.argv[2]: print(i["mtls"].get("issuedBackend") or "")' "$WORK/status.json" "$dp")
        [ "$status" = "$1" ] || return 1
    done
}

snapshot() { "$MESHCA" inspect dataplanes -o json >"$WORK/status.json"; }

cp "$TEST_DATA_DIR/dataplanes-web-db.yaml" "$WORK/dps.yaml"

# --- builtin ca-1 -> builtin ca-2 ---
mesh_yaml ca-1 ca-1:builtin >"$WORK/m0.yaml"
mesh_yaml ca-1 ca-1:builtin ca-2:builtin >"$WORK/m1.yaml"
mesh_yaml ca-2 ca-1:builtin ca-2:builtin >"$WORK/m2.yaml"
mesh_yaml ca-2 ca-2:builtin >"$WORK/m3.yaml"

run apply -f "$WORK/m0.yaml" -f "$WORK/dps.yaml"
check "initial apply" exit_is 0
start_controller --interval 1s
run reconcile --once
check "no certificate before the agents send their CSRs" out_has "0 issued"
sync_agents $DPS
check "the controller signed the agents' CSRs" grep -q "default/web-01: issued" "$CTL_LOG"
snapshot
check "each dataplane's certificate verifies against its bundle, issued by ca-1" verify_all ca-1
check "the certificate carries the SPIFFE and tag SANs" \
    bash -c "openssl x509 -in '$WORK/dp/web-01/cert.pem' -noout -ext subjectAltName | grep -q 'URI:spiffe://default/web' &&
             openssl x509 -in '$WORK/dp/web-01/cert.pem' -noout -ext subjectAltName | grep -q 'URI:kuma://version/v1'"
check "key.pem is 0600" test "$(stat -L -c %a "$WORK/dp/web-01/key.pem")" = 600
check "the certificate names its dataplane for the API (urn:meshca:dataplane)" \
    bash -c "openssl x509 -in '$WORK/dp/web-01/cert.pem' -noout -ext subjectAltName | grep -q 'URI:urn:meshca:dataplane:default:web-01'"

run apply -f "$WORK/m1.yaml"
check "add ca-2" exit_is 0
run reconcile --once
run apply -f "$WORK/m2.yaml"
check "switch refused before the agents loaded the new bundle" exit_is 1
check "refusal names both dataplanes" err_has "2 of 2 dataplanes do not trust it (db-01, web-01)"
sync_agents web-01
run apply -f "$WORK/m2.yaml"
check "switch still refused while db-01 has not acknowledged" err_has "1 of 2 dataplanes do not trust it (db-01)"
sync_agents db-01
run apply -f "$WORK/m2.yaml"
check "switch allowed once every agent acknowledged ca-2" exit_is 0

settle
check "the switch re-signs the keys held, from ca-2" bash -c "cat '$CTL_LOG' '$WORK/settle.log' | grep -q 'default/db-01: reissued (ca-2'"
run apply -f "$WORK/m3.yaml"
check "remove refused while the dataplanes still present ca-1 certificates" exit_is 1
check "remove refusal is remove-still-in-use naming the dataplanes" err_has "cannot remove 'ca-1' yet"
sync_agents $DPS
snapshot
check "after the agents loaded them, certificates verify and come from ca-2" verify_all ca-2
run apply -f "$WORK/m3.yaml"
check "remove allowed once no dataplane holds a ca-1 certificate" exit_is 0
run reconcile --once
sync_agents $DPS
check "the bundle holds exactly one CA after removal" \
    test "$(grep -c 'BEGIN CERTIFICATE' "$WORK/dp/web-01/ca-bundle.pem")" -eq 1
snapshot
check "certificates still verify after removal" verify_all ca-2

# --- builtin ca-2 -> provided ca-3 (from meshca ca create) ---
run ca create --out-dir "$WORK/ca3" --common-name "default ca-3"
{
    printf 'type: Secret\nmesh: default\nname: ca-3-cert\ndata: %s\n---\n' "$(base64 -w0 "$WORK/ca3/ca.pem")"
    printf 'type: Secret\nmesh: default\nname: ca-3-key\ndata: %s\n' "$(base64 -w0 "$WORK/ca3/ca-key.pem")"
} >"$WORK/ca3.yaml"
mesh_yaml ca-2 ca-2:builtin ca-3:provided >"$WORK/p1.yaml"
mesh_yaml ca-3 ca-2:builtin ca-3:provided >"$WORK/p2.yaml"
mesh_yaml ca-3 ca-3:provided >"$WORK/p3.yaml"
run apply -f "$WORK/ca3.yaml" -f "$WORK/p1.yaml"
check "add provided ca-3 with its secrets" exit_is 0
run reconcile --once
sync_agents $DPS
run apply -f "$WORK/p2.yaml"
check "switch to provided ca-3 once the agents trust it" exit_is 0
run reconcile --once
sync_agents $DPS
run apply -f "$WORK/p3.yaml"
check "remove builtin ca-2" exit_is 0
run reconcile --once
sync_agents $DPS
snapshot
check "certificates come from the provided CA and verify" verify_all ca-3
check "the bundle is exactly the provided CA" \
    bash -c "openssl x509 -in '$WORK/dp/db-01/ca-bundle.pem' -noout -fingerprint | cmp -s - <(openssl x509 -in '$WORK/ca3/ca.pem' -noout -fingerprint)"
run roots -m default
check "roots lists the provided CA as active" python3 -c '
import json, sys; d = json.load(open(sys.argv[1])); r = d["Roots"]
assert len(r) == 1 and r[0]["Active"] and r[0]["Backend"] == "ca-3" and d["ActiveRootID"] == r[0]["ID"], d' "$WORK/out"

# --- forced switch with cross-signing: provided ca-3 -> builtin ca-4 before db-01 trusts ca-4 ---
mesh_yaml ca-3 ca-3:provided ca-4:builtin >"$WORK/f1.yaml"
mesh_yaml ca-4 ca-3:provided ca-4:builtin >"$WORK/f2.yaml"
run apply -f "$WORK/f1.yaml"
run reconcile --once
sync_agents web-01            # db-01 stays behind: it trusts only ca-3
run apply -f "$WORK/f2.yaml"
check "switch refused while db-01 does not trust ca-4" exit_is 1
run apply -f "$WORK/f2.yaml" --force
check "forced switch is applied" exit_is 0
run inspect meshes -o json
check "the force log says a switch was forced, cross-signed, past db-01 (issue 9 #6)" python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))[0]["status"]["forceLog"][-1]
assert (e["step"], e["from"], e["to"], e["crossSigning"]) == ("switch", "ca-3", "ca-4", "enabled"), e
assert e["bypassed"] == ["db-01"] and e["bypassedCount"] == 1, e' "$WORK/out"
run inspect meshes
check "inspect meshes shows the cross-signing in force" out_has "CROSS-SIGNING: ca-4 by ca-3"
run reconcile --once
sync_agents web-01
check "web-01's new certificate chains to ca-3 through the cross-signed ca-4 (what db-01 trusts)" \
    openssl verify -CAfile "$WORK/ca3/ca.pem" -untrusted "$WORK/dp/web-01/cert.pem" "$WORK/dp/web-01/cert.pem"
run roots -m default
check "roots lists the cross-signed CA in ca-4's IntermediateCerts" python3 -c '
import json, sys; d = json.load(open(sys.argv[1]))
r = [x for x in d["Roots"] if x["Backend"] == "ca-4"][0]
assert r["Active"] and len(r["IntermediateCerts"]) == 1, r' "$WORK/out"
sync_agents db-01
run reconcile --once
sync_agents $DPS
run inspect meshes
check "the cross-signing ends once every dataplane trusts ca-4" out_lacks "CROSS-SIGNING"
check "leaves no longer carry the cross-signed CA" \
    test "$(grep -c 'BEGIN CERTIFICATE' "$WORK/dp/web-01/cert.pem")" -eq 1

# Issue 10: after the whole rotation the store holds no dataplane private key and no token in
# the clear (a dump of every object); the agents' keys stay in their --out directories.
stop_controller
"$STORE_TOOL" dump >"$WORK/store.dump"
check "no dataplane private key and no token anywhere in the store" python3 - "$WORK/store/meshca.db" "$WORK/dp" "$WORK/tokens" "$WORK/store.dump" <<'PY'
import glob, os, sqlite3, sys
db = sys.argv[1]
flat = lambda x: x.replace("\\n", "").replace("\n", "")
rawflat = lambda x: x.replace(b"\\n", b"").replace(b"\n", b"")
# Every stored object through the store interface (any backend), as "kind/mesh/name@version
# len" records; on SQLite also every value of every table and the raw bytes of the database and
# its WAL (values are BLOBs: a plain .dump shows them as hex).
dump = open(sys.argv[4], "rb").read()
objects, pos = [], 0
while pos < len(dump):
    nl = dump.index(b"\n", pos)
    head = dump[pos:nl].decode()
    n = int(head.rsplit(" ", 1)[1])
    objects.append((head.split("/", 1)[0], dump[nl + 1:nl + 1 + n].decode("utf-8", "replace")))
    pos = nl + 1 + n + 1
text = [v for _, v in objects]
raw = dump
if os.path.exists(db):
    c = sqlite3.connect(db)
    for (t,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in c.execute('SELECT * FROM "%s"' % t):
            text += [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row]
    raw += b"".join(open(p, "rb").read() for p in (db, db + "-wal") if os.path.exists(p))
text = flat("\n".join(text))
raw = rawflat(raw)
# 48 base64 characters from inside the PEM body: past the ASN.1 header every key of one type
# shares (the store legitimately holds CA keys), so they are this key's own bytes. The store's
# JSON escapes newlines: compare without them.
first = lambda pem: "".join(l for l in pem.splitlines() if l and not l.startswith("-----"))[52:100]
keys = glob.glob(os.path.join(sys.argv[2], "*", "..data", "key.pem"))
certs = glob.glob(os.path.join(sys.argv[2], "*", "..data", "cert.pem"))
tokens = glob.glob(os.path.join(sys.argv[3], "*"))
assert len(keys) == 2 and len(tokens) == 2 and certs, (len(keys), len(tokens))
assert all(first(open(f).read()) in text for f in certs), "the scan does not see stored values"
for k in keys:
    b = first(open(k).read())
    assert b not in text and b.encode() not in raw, "a dataplane key is in the store"
for t in tokens:
    v = open(t).read().strip()
    assert v not in text and v.encode() not in raw, "a token is in the store in the clear"
# The only private keys in the store are the builtin CAs' (secrets) and the control-plane CA.
rows = [k for k, v in objects if "PRIVATE KEY" in v]
assert rows and all(k in ("secrets", "controlplane") for k in rows), rows
PY
finish
