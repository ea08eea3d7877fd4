#!/usr/bin/env bash
# rotation-vault.sh - builtin → vault rotation through the dataplane API, the vault backend's apply-time checks and a Vault failing during passes, against the Vault PKI TEST DOUBLE.
# The double (test/doubles/vault_pki_double.py, started by test/extca/start-vault-double.sh) is
# not Vault: no Vault server is packaged in Debian. It signs for real with the openssl CLI.
source "$(dirname "$0")/lib.sh"
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
source "$(dirname "$0")/api-lib.sh"
DPS="web-01 db-01"
VD="$WORK/vault"

stop_double() {
    [ -s "$VD/pid" ] || return 0
    kill -CONT "$(cat "$VD/pid")" 2>/dev/null   # a stopped process takes TERM only once resumed
    kill "$(cat "$VD/pid")" 2>/dev/null
}
trap 'stop_double; stop_controller; rm -rf "$WORK"' EXIT

if ! timeout 30 bash "$(dirname "$0")/extca/start-vault-double.sh" "$VD" >"$WORK/double.log" 2>&1; then
    echo "FAIL - the Vault PKI test double did not start"
    cat "$WORK/double.log"
    exit 1
fi
VPORT=$(cat "$VD/port")
TOKEN=$(cat "$VD/token")

# vault_backend NAME [PKI [ROLE [ADDRESS [AUTH [TIMEOUT [EXPIRATION]]]]]]: one backend list item.
vault_backend() {
    local name=$1 pki=${2:-pki} role=${3:-mesh} address=${4:-https://127.0.0.1:$VPORT}
    local auth=${5:-"{token: {secret: vault-token}}"} timeout=${6:-3s} exp=${7:-24h}
    cat <<YAML
  - name: $name
    type: vault
    dpCert: {rotation: {expiration: $exp}, requestTimeout: $timeout}
    conf:
      fromCp:
        address: $address
        namespace: mesh-team
        pki: $pki
        role: $role
        tls: {caCert: {file: $VD/tls-ca.pem}, serverName: vault.test}
        auth: $auth
YAML
}

mesh_yaml() { # mesh_yaml MESH ENABLED BACKEND... (builtin:NAME | vault:NAME)
    local mesh=$1 enabled=$2
    shift 2
    printf 'type: Mesh\nname: %s\nmtls:\n  enabledBackend: %s\n  backends:\n' "$mesh" "$enabled"
    for spec in "$@"; do
        case $spec in
        builtin:*) printf '  - name: %s\n    type: builtin\n' "${spec#builtin:}" ;;
        vault:*) vault_backend "${spec#vault:}" ;;
        esac
    done
}

token_secret() { # token_secret MESH: the Vault token as a mesh Secret
    printf 'type: Secret\nmesh: %s\nname: vault-token\ndata: %s\n' "$1" "$(printf %s "$TOKEN" | base64 -w0)"
}

sync_agents() { # sync_agents MESH DP...: every agent loads and acknowledges the current generation
    local mesh=$1
    shift
    settle
    for dp in "$@"; do
        agent_once "$dp" "$mesh"
        [ "$agent_rc" -eq 0 ] || { echo "agent $dp: exit $agent_rc"; cat "$WORK/agent.out"; }
    done
}

snapshot() { "$MESHCA" inspect dataplanes -o json >"$WORK/status.json"; }

issued_by() { # issued_by DP: the dataplane's issuedBackend as the agent acknowledged it
    python3 -c '
import json, sys
for i in json.load(open(sys.argv[1])):
    if i["name"] == sys.argv[2]: print(i["mtls"].get("issuedBackend") or "")' "$WORK/status.json" "$1"
}

verify_all() { # verify_all ISSUER [CAFILE]: each leaf verifies strictly against its bundle (and CAFILE)
    for dp in $DPS; do
        local d="$WORK/dp/$dp"
        openssl verify -x509_strict -CAfile "$d/ca-bundle.pem" -untrusted "$d/cert.pem" "$d/cert.pem" >/dev/null 2>&1 || return 1
        if [ -n "${2:-}" ]; then
            openssl verify -x509_strict -CAfile "$2" "$d/cert.pem" >/dev/null 2>&1 || return 1
        fi
        [ "$(issued_by "$dp")" = "$1" ] || return 1
    done
}

uri_sans() { # uri_sans DP: the leaf's URI SANs, sorted, one a line
    openssl x509 -in "$WORK/dp/$1/cert.pem" -noout -ext subjectAltName | tr ',' '\n' |
        sed -n 's/^ *URI://p' | sort
}

cp "$TEST_DATA_DIR/dataplanes-web-db.yaml" "$WORK/dps.yaml"

# --- builtin ca-1 -> vault-1 ---
mesh_yaml default ca-1 builtin:ca-1 >"$WORK/m0.yaml"
mesh_yaml default ca-1 builtin:ca-1 vault:vault-1 >"$WORK/m1.yaml"
mesh_yaml default vault-1 builtin:ca-1 vault:vault-1 >"$WORK/m2.yaml"
mesh_yaml default vault-1 vault:vault-1 >"$WORK/m3.yaml"
token_secret default >"$WORK/token.yaml"

run apply -f "$WORK/m0.yaml" -f "$WORK/dps.yaml" -f "$WORK/token.yaml"
check "initial apply (builtin ca-1)" exit_is 0
start_controller --interval 1s
sync_agents default $DPS
snapshot
check "every agent holds a ca-1 leaf" verify_all ca-1

: >"$VD/requests.log"
run apply -f "$WORK/m1.yaml"
check "add vault-1: the apply-time check passes" exit_is 0
check "the check signed a throwaway CSR through the double" grep -q "POST /v1/pki/sign/mesh 200" "$VD/requests.log"
settle
run apply -f "$WORK/m2.yaml"
check "the switch to vault-1 is refused before the agents loaded its CA (R3)" exit_is 1
check "the refusal names both dataplanes" err_has "2 of 2 dataplanes do not trust it (db-01, web-01)"
sync_agents default web-01
run apply -f "$WORK/m2.yaml"
check "still refused while db-01 has not acknowledged the vault CA" err_has "1 of 2 dataplanes do not trust it (db-01)"
sync_agents default $DPS
check "the bundle now holds the double's CA beside ca-1" \
    test "$(grep -c 'BEGIN CERTIFICATE' "$WORK/dp/web-01/ca-bundle.pem")" -eq 2
run apply -f "$WORK/m2.yaml"
check "the switch is allowed once every agent acknowledged the vault CA" exit_is 0
check "vault cannot cross-sign: no forced switch was needed" out_lacks "cross"
sync_agents default $DPS
snapshot
check "every agent ends with a Vault-signed leaf verifying strictly against its bundle and the double's CA" \
    verify_all vault-1 "$VD/vault-ca.pem"
printf '%s\n' kuma://kuma.io/service/web kuma://version/v1 spiffe://default/web \
    urn:meshca:dataplane:default:web-01 | sort >"$WORK/want-sans"
uri_sans web-01 >"$WORK/got-sans"
check "the Vault leaf carries exactly the URI SANs of S5" cmp -s "$WORK/got-sans" "$WORK/want-sans"
check "the Vault leaf's common name comes from the commonName template (kuma.io/service)" \
    bash -c "openssl x509 -in '$WORK/dp/db-01/cert.pem' -noout -subject | grep -q 'CN *= *db'"
check "the Vault leaf is for the key the agent generated (it never left the dataplane)" \
    test "$(openssl x509 -in "$WORK/dp/web-01/cert.pem" -noout -pubkey)" = "$(openssl pkey -in "$WORK/dp/web-01/key.pem" -pubout)"

run apply -f "$WORK/m3.yaml"
check "remove ca-1 once no dataplane holds a ca-1 leaf" exit_is 0
sync_agents default $DPS
check "the bundle holds exactly the double's CA after removal" \
    bash -c "test \"\$(grep -c 'BEGIN CERTIFICATE' '$WORK/dp/web-01/ca-bundle.pem')\" -eq 1 &&
             cmp -s <(openssl x509 -in '$WORK/dp/web-01/ca-bundle.pem') <(openssl x509 -in '$VD/vault-ca.pem')"
snapshot
check "certificates still verify after removal" verify_all vault-1 "$VD/vault-ca.pem"
run inspect meshes
check "inspect shows the vault CA's subject (bundles, roots and inspect read its chain)" out_has "vault test double pki CA"
run roots -m default -o json
check "roots lists the vault CA as the active root" python3 -c '
import json, sys
d = json.load(open(sys.argv[1])); pem = open(sys.argv[2]).read().strip()
r = [x for x in d["Roots"] if x["Backend"] == "vault-1"]
sys.exit(0 if len(d["Roots"]) == 1 and r and r[0]["Active"] and r[0]["RootCert"].strip() == pem else 1)' "$WORK/out" "$VD/vault-ca.pem"


# --- apply-time failures: each its own code, exit code and message; never the token ---
probe() { # probe NAME [vault_backend args after the name]: apply --dry-run of a vault-only mesh
    { printf 'type: Mesh\nname: probe\nmtls:\n  enabledBackend: %s\n  backends:\n' "$1"
      vault_backend "$@"
      printf -- '---\n'
      token_secret probe; } >"$WORK/probe.yaml"
    run apply --dry-run -f "$WORK/probe.yaml" -o json
}
no_token() { ! grep -qF -- "$TOKEN" "$WORK/out" "$WORK/err" && ! grep -qF -- hvs.WRONG-d3adb33f "$WORK/out" "$WORK/err"; }

probe bad-token pki mesh "https://127.0.0.1:$VPORT" "{token: {inlineString: hvs.WRONG-d3adb33f}}"
check "wrong token: refused, exit 1" exit_is 1
check "wrong token: ca-refused at the backend" json_has ca-refused "mtls.backends[0]"
check "wrong token: names the backend and carries Vault's message" \
    out_has "vault backend 'bad-token' (mesh probe): sign (POST /v1/pki/sign/mesh): authentication refused (HTTP 403): Vault: permission denied"
check "wrong token: no token in any output" no_token

probe down pki mesh "https://127.0.0.1:$(free_port)"
check "Vault down: exit 2" exit_is 2
check "Vault down: ca-unreachable" json_has ca-unreachable "mtls.backends[0]"
check "Vault down: names the backend and says unreachable" out_has "vault backend 'down' (mesh probe): sign (POST /v1/pki/sign/mesh): Vault at https://127.0.0.1:"
check "Vault down: no token" no_token

probe sealed pki-5xx
check "a 5xx: exit 2" exit_is 2
check "a 5xx: ca-unreachable" json_has ca-unreachable "mtls.backends[0]"
check "a 5xx: names the backend and the request" out_has "vault backend 'sealed' (mesh probe): sign (POST /v1/pki-5xx/sign/mesh)"
check "a 5xx: the status and Vault's message" out_has "Vault unavailable (HTTP 500): Vault: 1 error occurred: * internal error: storage backend failed"
check "a 5xx: no token" no_token

probe slow pki-slow mesh "https://127.0.0.1:$VPORT" "{token: {secret: vault-token}}" 1s
check "an answer slower than requestTimeout: exit 2" exit_is 2
check "slow: ca-unreachable" json_has ca-unreachable "mtls.backends[0]"
check "slow: names the backend and the timeout" \
    out_has "vault backend 'slow' (mesh probe): sign (POST /v1/pki-slow/sign/mesh): Vault at https://127.0.0.1:$VPORT unreachable: Operation timed out"
check "slow: no token" no_token

probe garbled pki-bad
check "a malformed body: exit 2" exit_is 2
check "malformed: ca-bad-answer" json_has ca-bad-answer "mtls.backends[0]"
check "malformed: names the backend and says malformed" \
    out_has "vault backend 'garbled' (mesh probe): sign (POST /v1/pki-bad/sign/mesh): malformed answer from Vault"
check "malformed: no token" no_token

probe short pki short "https://127.0.0.1:$VPORT" "{token: {secret: vault-token}}" 3s 24h
check "a ttl above the role's max_ttl: exit 1" exit_is 1
check "ttl: ca-refused" json_has ca-refused "mtls.backends[0]"
check "ttl: phrased as above max_ttl" out_has "ttl 86400s is above the max_ttl of role 'short'"
check "ttl: with Vault's warning" out_has "is longer than permitted maxTTL"
check "ttl: no token" no_token

probe skipped pki-5xx
sed -i 's/^mtls:$/mtls:\n  skipValidation: true/' "$WORK/probe.yaml"
run apply --dry-run -f "$WORK/probe.yaml" -o json
check "mtls.skipValidation: no request to Vault at apply, accepted" exit_is 0
run --store "$MESHCA_STORE" validate -f "$WORK/probe.yaml"
check "validate --store also passes with skipValidation" exit_is 0
probe sealed pki-5xx
run --store "$MESHCA_STORE" validate -f "$WORK/probe.yaml"
check "validate --store: an unreachable Vault exits 2 there too" exit_is 2
check "validate --store: ca-unreachable named" out_has "Vault unavailable (HTTP 500)"
run get meshes
check "no probe mesh was stored" out_lacks "probe"

# --- during passes: Vault fails, the mesh says so, others keep going, files stay, then recovers ---
cat >"$WORK/other.yaml" <<'YAML'
type: Mesh
name: other
mtls: {enabledBackend: b1, backends: [{name: b1, type: builtin}]}
---
type: Dataplane
mesh: other
name: api-01
networking: {address: 127.0.0.1, inbound: [{port: 7443, tags: {kuma.io/service: api}}]}
YAML
run apply -f "$WORK/other.yaml"
check "a second mesh on builtin" exit_is 0
sync_agents other api-01
before=$(md5sum "$WORK/dp/web-01/cert.pem" "$WORK/dp/web-01/ca-bundle.pem")
kill -STOP "$(cat "$VD/pid")"
# web-01's tags change: its kept CSR must be re-signed by Vault, which does not answer.
sed 's/version: v1/version: v2/' "$WORK/dps.yaml" >"$WORK/dps2.yaml"
run apply -f "$WORK/dps2.yaml"
check "the tag change applies (no CA check for a Dataplane)" exit_is 0
failing=0
for _ in $(seq 60); do
    "$MESHCA" inspect meshes -o json >"$WORK/mesh.json"
    grep -q '"BackendUnavailable"' "$WORK/mesh.json" && { failing=1; break; }
    sleep 1
done
check "the mesh status carries a BackendUnavailable condition for vault-1" test "$failing" -eq 1
run inspect meshes
check "inspect prints the whole message: backend, Vault's address, timed out" \
    bash -c "grep -qE \"UNAVAILABLE vault-1: .*vault backend 'vault-1' \\(mesh default\\).*Vault at https://127.0.0.1:$VPORT unreachable: .*timed out\" '$WORK/out'"
curl -sS --max-time 10 --cacert "$WORK/cp-ca.pem" "$API_URL/metrics" >"$WORK/metrics.txt" 2>&1
check "the metrics count the failing passes (meshca_errors_total{code=\"ca-unavailable\"} >= 1)" \
    python3 -c '
import re, sys
m = re.search(r"^meshca_errors_total\{code=\"ca-unavailable\"\} (\d+)", open(sys.argv[1]).read(), re.M)
sys.exit(0 if m and int(m.group(1)) >= 1 else 1)' "$WORK/metrics.txt"
check "inspect's own attempt to read the vault CA is printed whole too (CA ERROR line)" \
    grep -qF "CA ERROR vault-1: vault backend 'vault-1' (mesh default): CA chain (GET /v1/pki/ca_chain): Vault at https://127.0.0.1:$VPORT unreachable" "$WORK/out"
cat >"$WORK/other2.yaml" <<'YAML'
type: Dataplane
mesh: other
name: api-02
networking: {address: 127.0.0.1, inbound: [{port: 7444, tags: {kuma.io/service: api}}]}
YAML
run apply -f "$WORK/other2.yaml"
agent_once api-02 other
check "the other mesh keeps reconciling: a new dataplane gets its leaf while Vault hangs" \
    test "$agent_rc" -eq 0 -a -s "$WORK/dp/api-02/cert.pem"
agent_once web-01 default
check "the controller keeps serving web-01's issued certificate" test "$agent_rc" -eq 0
check "web-01's served files are unchanged while Vault fails" \
    test "$(md5sum "$WORK/dp/web-01/cert.pem" "$WORK/dp/web-01/ca-bundle.pem")" = "$before"
check "no token in the controller's log" bash -c "! grep -qF -- '$TOKEN' '$CTL_LOG'"
kill -CONT "$(cat "$VD/pid")"
recovered=0
for _ in $(seq 90); do
    "$MESHCA" inspect meshes -o json >"$WORK/mesh.json"
    if ! grep -q '"BackendUnavailable"' "$WORK/mesh.json"; then
        agent_once web-01 default
        openssl x509 -in "$WORK/dp/web-01/cert.pem" -noout -ext subjectAltName | grep -q 'kuma://version/v2' &&
            { recovered=1; break; }
    fi
    sleep 1
done
check "after Vault answers again the condition clears and web-01 gets a Vault leaf for its new tags" \
    test "$recovered" -eq 1
check "the new leaf verifies strictly against the double's CA" \
    openssl verify -x509_strict -CAfile "$VD/vault-ca.pem" "$WORK/dp/web-01/cert.pem"
# A forced switch away from vault cannot cross-sign (Vault keeps its key): said, not hidden.
mesh_yaml default vault-1 vault:vault-1 builtin:ca-9 >"$WORK/f1.yaml"
mesh_yaml default ca-9 vault:vault-1 builtin:ca-9 >"$WORK/f2.yaml"
run apply -f "$WORK/f1.yaml"
check "add builtin ca-9 beside vault-1" exit_is 0
run reconcile --once
run apply --force -f "$WORK/f2.yaml"
check "a forced switch vault-1 -> ca-9 goes through" exit_is 0
check "... warning that it goes without cross-signing: the key of vault-1 is not local" \
    err_has "forced switch to 'ca-9' without cross-signing: the key of 'vault-1' is not local"
finish
