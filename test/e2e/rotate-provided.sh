#!/usr/bin/env bash
# Scenario 2: builtin ca-1 -> provided ca-2 (a CA made with `meshca ca create`, stored as Secret
# resources ca-2-cert / ca-2-key): add -> switch -> remove under traffic, zero failed requests.
source "$(dirname "$0")/lib.sh"

setup ca-1
provided_ca ca-2
write_mesh "$E2E/1-add.yaml" ca-1 ca-1 ca-2:provided
write_mesh "$E2E/2-switch.yaml" ca-2 ca-1 ca-2:provided
write_mesh "$E2E/3-remove.yaml" ca-2 ca-2:provided

start_loop 120
sleep 1
apply_ok "$E2E/ca-2-secrets.yaml" "$E2E/1-add.yaml"
wait_for "every dataplane trusts ca-2" all_support ca-2
sleep 1
apply_ok "$E2E/2-switch.yaml"
wait_for "every dataplane holds a ca-2 certificate" all_issued ca-2
issuer=$(openssl x509 -in "$E2E/dp/web/certs/cert.pem" -noout -issuer)
case $issuer in *ca-2*) say "web's leaf is issued by the provided CA ($issuer)" ;; *) die "web's leaf issuer: $issuer" ;; esac
sleep 1
apply_ok "$E2E/3-remove.yaml"
wait_for "every dataplane trusts ca-2 only" all_supported_exactly ca-2 '"ca-2"'
sleep 1
stop_loop
verify_strict
store_has_no_dataplane_secrets
expect_no_failures
