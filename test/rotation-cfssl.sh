#!/usr/bin/env bash
# rotation-cfssl.sh - builtin → cfssl through the built binary, a real `cfssl serve` on 127.0.0.1
# and agents through the dataplane API: every leaf ends chaining to cfssl's root through the
# intermediate meshca keeps; cfssl's failure modes at apply and during passes (issue 12).
source "$(dirname "$0")/lib.sh"
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
source "$(dirname "$0")/api-lib.sh"
DPS="web-01 db-01"
CF="$WORK/cfssl"
trap 'stop_controller; [ -s "$CF/pid" ] && kill "$(cat "$CF/pid")" 2>/dev/null; rm -rf "$WORK"' EXIT

timeout 60 bash "$(dirname "$0")/extca/start-cfssl.sh" "$CF" >"$WORK/cfssl-start.log" 2>&1 ||
    { cat "$WORK/cfssl-start.log"; echo "cannot start cfssl serve"; exit 2; }
CFSSL_URL="http://127.0.0.1:$(cat "$CF/port")"
AUTHKEY=$(cat "$CF/authkey")
WRONGKEY=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff

cfssl_stop() { # stops cfssl serve and waits (bounded) until it no longer answers
    kill "$(cat "$CF/pid")" 2>/dev/null
    for _ in $(seq 50); do
        curl -s -m 1 -o /dev/null "$CFSSL_URL/" || return 0
        sleep 0.1
    done
    return 1
}
cfssl_start_again() { # the same root and port again
    (cd "$CF" || exit 1
     cfssl serve -address 127.0.0.1 -port "$(cat port)" -ca root.pem -ca-key root-key.pem \
        -config config.json </dev/null >>serve.log 2>&1 &
     echo $! >"$CF/pid")
    for _ in $(seq 150); do
        curl -sf -m 1 -d '{"label":""}' "$CFSSL_URL/api/v1/cfssl/info" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# mesh_yaml MESH ENABLED BACKEND-SPEC...  (spec: name:builtin | name:cfssl[:PROFILE[:KEYSECRET]])
mesh_yaml() {
    local mesh=$1 enabled=$2
    shift 2
    printf -- '---\ntype: Mesh\nname: %s\nmtls:\n  enabledBackend: %s\n  backends:\n' "$mesh" "$enabled"
    for spec in "$@"; do
        IFS=: read -r name type profile keysecret <<<"$spec"
        printf '  - name: %s\n    type: %s\n' "$name" "$type"
        if [ "$type" = cfssl ]; then
            printf '    conf:\n      url: %s\n      profile: %s\n' "$CFSSL_URL" "${profile:-intermediate-auth}"
            [ -n "$keysecret" ] || keysecret=cfssl-key
            [ "$keysecret" = none ] || printf '      authKey: {secret: %s}\n' "$keysecret"
        fi
    done
}
secret_yaml() { # secret_yaml MESH NAME VALUE
    printf -- '---\ntype: Secret\nmesh: %s\nname: %s\ndata: %s\n' "$1" "$2" "$(printf %s "$3" | base64 -w0)"
}

sync_agents() { # every agent loads and acknowledges the current generation (reload: true)
    settle
    for dp in "$@"; do
        agent_once "$dp"
        [ "$agent_rc" -eq 0 ] || { echo "agent $dp: exit $agent_rc"; cat "$WORK/agent.out"; }
    done
}

snapshot() { "$MESHCA" inspect dataplanes -o json >"$WORK/status.json"; }
issued_by() { # issued_by DP: the backend the status says issued DP's certificate
    python3 -c '
import json, sys
for i in json.load(open(sys.argv[1])):
    if i["name"] == sys.argv[2]: print(i["mtls"].get("issuedBackend") or "")' "$WORK/status.json" "$1"
}
# chains_to_cfssl DP: DP's cert.pem (leaf + intermediate) verifies strictly with cfssl's root as
# the only anchor, the leaf is signed by the intermediate (not by the root), the intermediate is
# CA:TRUE pathlen 0 issued by cfssl's root, and DP's bundle is exactly cfssl's root.
chains_to_cfssl() {
    local d="$WORK/dp/$1"
    [ "$(grep -c 'BEGIN CERTIFICATE' "$d/cert.pem")" -eq 2 ] || return 1
    openssl verify -x509_strict -CAfile "$CF/root.pem" -untrusted "$d/cert.pem" "$d/cert.pem" >/dev/null 2>&1 || return 1
    awk '/BEGIN/{n++} n==2' "$d/cert.pem" >"$WORK/inter.pem"
    openssl x509 -in "$WORK/inter.pem" -noout -ext basicConstraints | grep -q 'CA:TRUE, pathlen:0' || return 1
    [ "$(openssl x509 -in "$WORK/inter.pem" -noout -issuer)" = \
      "$(openssl x509 -in "$CF/root.pem" -noout -subject | sed 's/^subject/issuer/')" ] || return 1
    ! openssl verify -x509_strict -CAfile "$CF/root.pem" "$d/cert.pem" >/dev/null 2>&1 || return 1
    [ "$(grep -c 'BEGIN CERTIFICATE' "$d/ca-bundle.pem")" -eq 1 ] &&
        cmp -s <(openssl x509 -in "$d/ca-bundle.pem" -outform DER) <(openssl x509 -in "$CF/root.pem" -outform DER)
}
said() { grep -qF -- "$1" "$WORK/out" "$WORK/err"; }
# chains_to_cfssl_with_builtin DP: cert.pem is the leaf and the intermediate only, verifying
# strictly against cfssl's root alone.
chains_to_cfssl_with_builtin() {
    local d="$WORK/dp/$1"
    [ "$(grep -c 'BEGIN CERTIFICATE' "$d/cert.pem")" -eq 2 ] &&
        openssl verify -x509_strict -CAfile "$CF/root.pem" -untrusted "$d/cert.pem" "$d/cert.pem" >/dev/null 2>&1
}
json_msg_has() { # json_msg_has CODE TEXT: a diagnostic with CODE whose message holds TEXT
    python3 - "$WORK/out" "$1" "$2" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
sys.exit(0 if any(d["code"] == sys.argv[2] and sys.argv[3] in d["message"] for d in doc["diagnostics"]) else 1)
PY
}

cp "$TEST_DATA_DIR/dataplanes-web-db.yaml" "$WORK/dps.yaml"
secret_yaml default cfssl-key "$AUTHKEY" >"$WORK/key.yaml"
mesh_yaml default ca-1 ca-1:builtin >"$WORK/m0.yaml"
mesh_yaml default ca-1 ca-1:builtin ca-2:cfssl >"$WORK/m1.yaml"
mesh_yaml default ca-2 ca-1:builtin ca-2:cfssl >"$WORK/m2.yaml"
mesh_yaml default ca-2 ca-2:cfssl >"$WORK/m3.yaml"

# --- offline validate checks what it can of a cfssl conf, asking cfssl nothing ---------------
mesh_yaml default ca-2 ca-2:cfssl | sed 's/^      profile: .*/&\n      intermediateExpiration: 7/' >"$WORK/bad-exp.yaml"
run validate -f "$WORK/bad-exp.yaml" -o json
check "validate: intermediateExpiration without a unit is refused (exit 1)" exit_is 1
check "validate: ca-conf at its field path" json_has ca-conf "mtls.backends[0].conf.intermediateExpiration" 12

# --- builtin ca-1 → cfssl ca-2 ---------------------------------------------------------------
run apply -f "$WORK/m0.yaml" -f "$WORK/dps.yaml"
check "initial apply on builtin" exit_is 0
start_controller --interval 1s
sync_agents $DPS
snapshot
check "the agents hold ca-1 certificates" test "$(issued_by web-01)$(issued_by db-01)" = ca-1ca-1

run apply -f "$WORK/key.yaml" -f "$WORK/m1.yaml" -o json
check "add cfssl ca-2 (its check reached cfssl and got a throwaway intermediate signed)" exit_is 0
check "cfssl's check warns nothing for the profile's 168h (intermediateExpiration 7d)" \
    python3 -c 'import json,sys; sys.exit(1 if json.load(open(sys.argv[1]))["diagnostics"] else 0)' "$WORK/out"
settle
check "the intermediate is stored as three mesh secrets" bash -c \
    "'$STORE_TOOL' dump | grep -a '^secrets/' >'$WORK/secrets.txt'; for k in cert key root; do grep -q \"default.ca-cfssl-\$k-ca-2\" '$WORK/secrets.txt' || exit 1; done"
run apply -f "$WORK/m2.yaml"
check "switch to cfssl refused before the dataplanes trust cfssl's root" exit_is 1
check "the refusal names both dataplanes" err_has "2 of 2 dataplanes do not trust it (db-01, web-01)"
sync_agents web-01
run apply -f "$WORK/m2.yaml"
check "switch still refused while db-01 has not loaded cfssl's root" err_has "1 of 2 dataplanes do not trust it (db-01)"
check "the bundle web-01 loaded holds cfssl's root (and ca-1), not the intermediate" bash -c "
    [ \$(grep -c 'BEGIN CERTIFICATE' '$WORK/dp/web-01/ca-bundle.pem') -eq 2 ] &&
    openssl verify -x509_strict -CAfile '$WORK/dp/web-01/ca-bundle.pem' '$CF/root.pem' >/dev/null"
sync_agents db-01
run apply -f "$WORK/m2.yaml"
check "switch allowed once every agent trusts cfssl's root" exit_is 0
settle
check "the switch re-signs the held keys with the intermediate" \
    bash -c "cat '$CTL_LOG' '$WORK/settle.log' | grep -q 'default/db-01: reissued (ca-2'"
run apply -f "$WORK/m3.yaml"
check "remove of builtin refused while the dataplanes present ca-1 certificates" exit_is 1
sync_agents $DPS
run apply -f "$WORK/m3.yaml"
check "remove builtin once no dataplane holds a ca-1 certificate" exit_is 0
sync_agents $DPS
snapshot
for dp in $DPS; do
    check "$dp: issued by ca-2" test "$(issued_by $dp)" = ca-2
    check "$dp: leaf → intermediate (CA:TRUE, pathlen 0) → cfssl's root, x509_strict; bundle = the root" chains_to_cfssl $dp
done

run roots -m default
check "roots: cfssl's root is ca-2's RootCert, the intermediate its one IntermediateCert" python3 - "$WORK/out" "$CF/root.pem" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
r = [x for x in d["Roots"] if x["Backend"] == "ca-2"][0]
flat = lambda p: "".join(p.split())
assert r["Active"] and flat(r["RootCert"]) == flat(open(sys.argv[2]).read()), r
assert len(r["IntermediateCerts"]) == 1 and flat(r["IntermediateCerts"][0]) != flat(r["RootCert"]), r
PY

# --- a forced switch builtin → cfssl: the builtin root cross-signs the intermediate ------------
{
    mesh_yaml fs f-1 f-1:builtin
    secret_yaml fs cfssl-key "$AUTHKEY"
    printf -- '---\ntype: Dataplane\nmesh: fs\nname: %s\nnetworking: {address: 127.0.0.1, inbound: [{port: %s, tags: {kuma.io/service: %s}}]}\n' \
        fs-a 6443 a fs-b 6444 b
} >"$WORK/fs0.yaml"
mesh_yaml fs f-1 f-1:builtin f-2:cfssl >"$WORK/fs1.yaml"
mesh_yaml fs f-2 f-1:builtin f-2:cfssl >"$WORK/fs2.yaml"
run apply -f "$WORK/fs0.yaml"
check "forced switch: set-up of mesh fs on builtin" exit_is 0
settle; agent_once fs-a fs; agent_once fs-b fs
run apply -f "$WORK/fs1.yaml"
check "forced switch: add cfssl f-2" exit_is 0
settle; agent_once fs-a fs      # fs-b stays behind: it trusts only f-1's root
cp "$WORK/dp/fs-b/ca-bundle.pem" "$WORK/fs-b-bundle.pem"
check "forced switch: fs-b trusts f-1's root alone" test "$(grep -c 'BEGIN CERTIFICATE' "$WORK/fs-b-bundle.pem")" -eq 1
run apply -f "$WORK/fs2.yaml" --force
check "forced switch: applied" exit_is 0
run inspect meshes -o json
check "forced switch: the force log says cross-signing is enabled" python3 -c '
import json, sys
m = [x for x in json.load(open(sys.argv[1])) if x["name"] == "fs"][0]
e = m["status"]["forceLog"][-1]
assert (e["step"], e["to"], e["crossSigning"]) == ("switch", "f-2", "enabled"), e' "$WORK/out"
settle; agent_once fs-a fs
check "forced switch: fs-a's new leaf verifies with only what fs-b trusts (f-1's root), through the cross-signed intermediate" \
    bash -c "openssl verify -x509_strict -CAfile '$WORK/fs-b-bundle.pem' -untrusted '$WORK/dp/fs-a/cert.pem' '$WORK/dp/fs-a/cert.pem' >/dev/null"
check "forced switch: and with fs-a's own bundle" \
    bash -c "openssl verify -x509_strict -CAfile '$WORK/dp/fs-a/ca-bundle.pem' -untrusted '$WORK/dp/fs-a/cert.pem' '$WORK/dp/fs-a/cert.pem' >/dev/null"
agent_once fs-b fs; settle; agent_once fs-a fs; agent_once fs-b fs
run inspect meshes
check "forced switch: the cross-signing ends once every dataplane trusts cfssl's root" out_lacks "CROSS-SIGNING: f-2"
check "forced switch: fs-a's leaf then chains to cfssl's root through the intermediate alone" chains_to_cfssl_with_builtin fs-a
run delete dataplane fs-a fs-b -m fs && run delete mesh fs
check "forced switch: mesh fs deleted (the passes below count two meshes)" exit_is 0

# --- failure modes at apply: each names the backend and cfssl's message, never the key --------
secret_yaml other wrong-key "$WRONGKEY" >"$WORK/wrong.yaml"
mesh_yaml other ca-x ca-x:cfssl:intermediate-auth:wrong-key >>"$WORK/wrong.yaml"
run apply -f "$WORK/wrong.yaml" -o json
check "wrong authKey: exit 1" exit_is 1
check "wrong authKey: ca-refused at the backend's conf" json_has ca-refused "mtls.backends[0].conf"
check "wrong authKey: names the backend and cfssl's message" \
    json_msg_has ca-refused "cfssl backend 'ca-x' (mesh other): sign (POST /api/v1/cfssl/authsign): authentication refused (check authKey against the profile's auth_key): cfssl: invalid token"
check "wrong authKey: the key is printed nowhere" out_lacks "$WRONGKEY"
check "wrong authKey: nor the right one" out_lacks "$AUTHKEY"

mesh_yaml other ca-x ca-x:cfssl:no-such-profile:none >"$WORK/profile.yaml"
run apply -f "$WORK/profile.yaml" -o json
check "unknown profile: exit 1" exit_is 1
check "unknown profile: ca-refused at the backend's conf" json_has ca-refused "mtls.backends[0].conf"
check "unknown profile: names the backend and carries cfssl's message" \
    json_msg_has ca-refused "cfssl backend 'ca-x' (mesh other): "
check "unknown profile: cfssl's own words" bash -c "grep -q 'cfssl: ' '$WORK/out'"

check "set-up: cfssl stops" cfssl_stop
secret_yaml other cfssl-key "$AUTHKEY" >"$WORK/down.yaml"
mesh_yaml other ca-x ca-x:cfssl >>"$WORK/down.yaml"
run apply -f "$WORK/down.yaml" -o json
check "cfssl down at apply: exit 2" exit_is 2
check "cfssl down at apply: ca-unreachable at the backend's conf" json_has ca-unreachable "mtls.backends[0].conf"
check "cfssl down at apply: names the backend and where cfssl was" \
    json_msg_has ca-unreachable "cfssl backend 'ca-x' (mesh other): info (POST /api/v1/cfssl/info): cfssl at $CFSSL_URL unreachable"
check "cfssl down at apply: the key is printed nowhere" out_lacks "$AUTHKEY"
run diff -f "$WORK/down.yaml"
check "cfssl down at diff: exit 2, naming the backend" bash -c "[ $rc -eq 2 ] && grep -qF \"cfssl backend 'ca-x' (mesh other)\" '$WORK/err'"
mkdir -p "$WORK/manifests"
cp "$WORK/down.yaml" "$WORK/manifests/"
start_controller --manifests "$WORK/manifests" --interval 1s
synced_refused() {  # the line names the file, line and column first (FILE:L:C: PATH: MESSAGE)
    grep -F "mtls.backends[0].conf: cfssl backend 'ca-x' (mesh other): info (POST /api/v1/cfssl/info): cfssl at $CFSSL_URL unreachable" "$CTL_LOG" |
        grep -qE "^manifests: not applied, $WORK/manifests/down.yaml:[0-9]+:[0-9]+: mtls"
}
for _ in $(seq 100); do synced_refused && break; sleep 0.1; done
check "cfssl down at a manifests sync: not applied, the log names the backend and the cause" synced_refused
stop_controller
rm -rf "$WORK/manifests"
run get meshes
check "nothing of the refused meshes was stored" out_lacks "other"

# --- cfssl down during passes -----------------------------------------------------------------
stop_controller   # passes below run with an injected clock
mesh_yaml other ca-o ca-o:builtin >"$WORK/other.yaml"
cat >>"$WORK/other.yaml" <<'YAML'
---
type: Dataplane
mesh: other
name: api-01
networking: {address: 127.0.0.1, inbound: [{port: 7443, tags: {kuma.io/service: api}}]}
YAML
cat >"$WORK/web2.yaml" <<'YAML'
type: Dataplane
mesh: default
name: web-02
networking: {address: 127.0.0.1, inbound: [{port: 8444, tags: {kuma.io/service: web}}]}
YAML
run apply -f "$WORK/other.yaml" -f "$WORK/web2.yaml"
check "set-up: a builtin mesh 'other' and a new dataplane web-02 (no cfssl check: not in this apply)" exit_is 0
start_controller --interval 1s
agent_once web-02
agent_once api-01 other
check "cfssl down, intermediate valid: web-02's CSR is signed with the stored intermediate" test "$agent_rc" -eq 0
snapshot
check "cfssl down, intermediate valid: web-02 issued by ca-2" test "$(issued_by web-02)" = ca-2
DPS="web-01 db-01 web-02"
check "cfssl down, intermediate valid: web-02 chains to cfssl's root" chains_to_cfssl web-02
stop_controller
now=$(date +%s)
INTER_END=$(openssl x509 -in "$WORK/inter.pem" -noout -enddate | cut -d= -f2)
end=$(date -d "$INTER_END" +%s)
run reconcile --once --now $((end - 86400))
check "cfssl down past the renewal point: the pass succeeds" exit_is 0
check "cfssl down past the renewal point: a ca-unavailable warning says signing goes on" \
    said "warning: mtls.backends[0]: mesh 'default': backend 'ca-2': cannot renew the intermediate (signing goes on with the stored one, valid until"
run inspect meshes -o json
check "cfssl down past the renewal point: the mesh status carries it as a condition" python3 -c '
import json, sys
m = [x for x in json.load(open(sys.argv[1])) if x["name"] == "default"][0]
c = [c for c in m["status"]["conditions"] if c["backend"] == "ca-2"]
assert c and "unreachable" in c[0]["reason"], m["status"]' "$WORK/out"
run reconcile --once --now $((end + 3600))
check "cfssl down, intermediate expired: exit 1 (a mesh's CA could not be used)" exit_is 1
check "cfssl down, intermediate expired: mesh default reports ca-unavailable naming the backend" \
    said "mesh 'default': backend 'ca-2' cannot be used: the intermediate expired at"
check "cfssl down, intermediate expired: and why (cfssl unreachable)" \
    said "cfssl at $CFSSL_URL unreachable"
check "cfssl down, intermediate expired: only mesh default failed, mesh other was reconciled" \
    out_has "2 meshes: 0 issued, 0 reissued, 0 renewed, 0 rebundled, 1 unchanged, 1 failed mesh"
check "cfssl down, intermediate expired: the message never holds the auth key" out_lacks "$AUTHKEY"

# --- renewal with cfssl back: a new intermediate, leaves re-signed, the bundle unchanged --------
check "set-up: cfssl serves again" cfssl_start_again
"$STORE_TOOL" get bundles default default >"$WORK/bundle.before"
: >"$WORK/settle.log"
"$MESHCA" reconcile --once --now $((now + (end - now) * 3 / 4)) >"$WORK/renew.out" 2>&1
check "past two thirds with cfssl up: the intermediate is renewed and every leaf re-signed" \
    bash -c "for dp in web-01 db-01 web-02; do grep -q \"default/\$dp: reissued (ca-2, .*: signing CA certificate changed)\" '$WORK/renew.out' || exit 1; done"
check "the renewal does not touch the trust bundle (the root did not change)" \
    bash -c "'$STORE_TOOL' get bundles default default | cmp -s - '$WORK/bundle.before' &&
             grep -q ' 0 rebundled' '$WORK/renew.out' && ! grep -q 'trust bundle changed' '$WORK/renew.out'"
check "a renewal marker names the replaced intermediate's serial" bash -c \
    "'$STORE_TOOL' dump | grep -aq '^secrets/default/default.ca-cfssl-renewed-ca-2-'"

# --- skipValidation: apply sends cfssl nothing; the controller reports what it cannot do -------
check "set-up: cfssl stops again" cfssl_stop
mesh_yaml third ca-t ca-t:cfssl:intermediate:none | sed 's/^mtls:$/mtls:\n  skipValidation: true/' >"$WORK/skip.yaml"
run apply -f "$WORK/skip.yaml"
check "skipValidation: apply of a cfssl backend with cfssl down is accepted (no check)" exit_is 0
run reconcile --once
check "skipValidation: the pass reports the mesh (exit 1) and goes on with the others" exit_is 1
check "skipValidation: no intermediate and cfssl down is ca-unavailable, naming backend and cause" \
    said "mesh 'third': backend 'ca-t' cannot be used: cfssl backend 'ca-t' (mesh third): info (POST /api/v1/cfssl/info): cfssl at $CFSSL_URL unreachable"
check "skipValidation: the other meshes are reconciled" bash -c "grep -q '3 meshes: .* 1 failed mesh' '$WORK/out'"
check "no controller or pass output holds the auth key" \
    bash -c "! grep -qF -- '$AUTHKEY' '$CTL_LOG' '$WORK/settle.log' '$WORK/renew.out' '$WORK/out' '$WORK/err'"
check "the intermediate's private key (a mesh secret) is printed by nothing: get redacts it" bash -c "
    '$MESHCA' get secrets -m default -o yaml >'$WORK/get.out' 2>&1; grep -q 'default.ca-cfssl-key-ca-2' '$WORK/get.out' &&
    ! grep -q 'PRIVATE KEY' '$WORK/get.out' '$CTL_LOG'"
finish
