#!/usr/bin/env bash
# Scenario 1: builtin ca-1 -> add builtin ca-2 -> switch -> remove ca-1, with the client loop
# running throughout; zero failed requests.
source "$(dirname "$0")/lib.sh"

setup ca-1
write_mesh "$E2E/1-add.yaml" ca-1 ca-1 ca-2
write_mesh "$E2E/2-switch.yaml" ca-2 ca-1 ca-2
write_mesh "$E2E/3-remove.yaml" ca-2 ca-2

start_loop 120
sleep 2
apply_ok "$E2E/1-add.yaml"
wait_for "every dataplane trusts ca-2" all_support ca-2
sleep 2
apply_ok "$E2E/2-switch.yaml"
wait_for "every dataplane holds a ca-2 certificate" all_issued ca-2
sleep 2
apply_ok "$E2E/3-remove.yaml"
wait_for "every dataplane trusts ca-2 only" all_supported_exactly ca-2 '"ca-2"'
sleep 2
stop_loop
verify_strict
store_has_no_dataplane_secrets
expect_no_failures
