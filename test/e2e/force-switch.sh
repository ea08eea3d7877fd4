#!/usr/bin/env bash
# Scenario 5: a forced switch while one agent is paused.
#  - with cross-signing (`apply --force`): S5 says B-issued leaves then carry B's CA cross-signed
#    by A, so a dataplane that trusts only A still accepts them. A leaf chain without that second
#    certificate is a cross-signing regression: the scenario FAILS (never a skip).
#  - NEGATIVE, `--force-without-cross-signing`: the paused dataplane (db) does not trust ca-2, so
#    the client loop must see failed requests. This proves the loop can see a broken rotation.
source "$(dirname "$0")/lib.sh"

setup ca-1
write_mesh "$E2E/1-add.yaml" ca-1 ca-1 ca-2
write_mesh "$E2E/2-switch.yaml" ca-2 ca-1 ca-2
two_support() { dp_query '"ca-2" in dps["web"]["supportedBackends"] and "ca-2" in dps["backend"]["supportedBackends"]'; }
two_issued() { dp_query 'dps["web"]["issuedBackend"] == "ca-2" and dps["backend"]["issuedBackend"] == "ca-2"'; }
chain_len() { grep -c 'BEGIN CERTIFICATE' "$E2E/dp/$1/certs/cert.pem"; }

start_loop 100
sleep 1
pause_agent db
apply_ok "$E2E/1-add.yaml"
wait_for "web and backend trust ca-2" two_support
sleep 1
if [ "${1:-}" = --cross-signing ]; then
    apply_ok "$E2E/2-switch.yaml" -- --force
    wait_for "web and backend hold ca-2 certificates" two_issued
    if [ "$(chain_len web)" -lt 2 ]; then
        stop_loop
        die "the forced switch did not cross-sign: web's cert.pem holds $(chain_len web) certificate(s), want leaf + ca-2 cross-signed by ca-1 (S5)"
    fi
    say "web serves a chain of $(chain_len web) certificates (leaf + ca-2 cross-signed by ca-1)"
    sleep 3
    resume_agent db
    wait_for "every dataplane holds a ca-2 certificate" all_issued ca-2
    sleep 2
    stop_loop
    verify_strict
    expect_no_failures
    exit 0
fi

say "NEGATIVE: forced switch without cross-signing while db is paused"
apply_ok "$E2E/2-switch.yaml" -- --force-without-cross-signing
wait_for "web and backend hold ca-2 certificates" two_issued
sleep 3
stop_loop
[ "$FAILED" -gt 0 ] || die "no failed request although db does not trust ca-2: the loop cannot see a broken rotation"
grep -q 'db' "$E2E/loop.failures" || die "the failures do not involve db"
say "PASS (failures expected here: $FAILED of $REQUESTS)"
