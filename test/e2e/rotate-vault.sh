#!/usr/bin/env bash
# Scenario: builtin ca-1 -> vault vault-1 (the Vault PKI TEST DOUBLE, test/doubles/vault_pki_double.py:
# no Vault server is packaged in Debian): add -> switch -> remove under traffic, zero failed requests.
source "$(dirname "$0")/lib.sh"

VD="$E2E/vault"
stop_double() { [ -s "$VD/pid" ] && stop_pid "$(cat "$VD/pid")"; return 0; }
# The double runs from $E2E: stopped before the harness looks for processes left behind.
trap 'e2e_rc=$?; stop_double; (exit $e2e_rc); cleanup' EXIT

timeout 30 bash "$SOURCE_ROOT/test/extca/start-vault-double.sh" "$VD" >"$E2E/double.log" 2>&1 ||
    die "the Vault PKI test double did not start: $(tail -3 "$E2E/double.log")"
VPORT=$(cat "$VD/port")

vault_backend() { # the vault-1 backend list item
    cat <<YAML
  - name: vault-1
    type: vault
    dpCert: {requestTimeout: 5s}
    conf:
      fromCp:
        address: https://127.0.0.1:$VPORT
        namespace: mesh-team
        pki: pki
        role: mesh
        tls: {caCert: {file: $VD/tls-ca.pem}, serverName: vault.test}
        auth: {token: {secret: vault-token}}
YAML
}

setup ca-1
printf 'type: Secret\nmesh: default\nname: vault-token\ndata: %s\n' "$(base64 -w0 <"$VD/token" | tr -d '\n')" >"$E2E/token.yaml"
{ mesh_yaml ca-1 ca-1; vault_backend; } >"$E2E/1-add.yaml"
{ mesh_yaml vault-1 ca-1; vault_backend; } >"$E2E/2-switch.yaml"
{ printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: vault-1\n  backends:\n'; vault_backend; } >"$E2E/3-remove.yaml"

start_loop 120
sleep 1
apply_ok "$E2E/token.yaml" "$E2E/1-add.yaml"
wait_for "every dataplane trusts vault-1" all_support vault-1
sleep 1
apply_ok "$E2E/2-switch.yaml"
wait_for "every dataplane holds a vault-1 certificate" all_issued vault-1
issuer=$(openssl x509 -in "$E2E/dp/web/certs/cert.pem" -noout -issuer)
case $issuer in *"vault test double pki CA"*) say "web's leaf is signed by Vault (the double: $issuer)" ;; *) die "web's leaf issuer: $issuer" ;; esac
openssl verify -x509_strict -CAfile "$VD/vault-ca.pem" "$E2E/dp/web/certs/cert.pem" >/dev/null 2>&1 ||
    die "web's leaf does not verify against the double's CA"
sleep 1
apply_ok "$E2E/3-remove.yaml"
wait_for "every dataplane trusts vault-1 only" all_supported_exactly vault-1 '"vault-1"'
sleep 1
stop_loop
verify_strict
store_has_no_dataplane_secrets
grep -qF -- "$(cat "$VD/token")" "$E2E/controller.log" && die "the Vault token is in the controller's log"
expect_no_failures
