#!/usr/bin/env bash
# Scenario 3: premature rotation steps are refused while traffic flows, and nothing breaks.
#  - add+switch in one apply: multi-step
#  - switch while one agent is paused (SIGSTOP) before it loaded ca-2: switch-not-propagated,
#    naming that dataplane; after SIGCONT and its acknowledgement the switch is allowed
#  - remove ca-1 while one dataplane still presents a ca-1 certificate: remove-still-in-use
source "$(dirname "$0")/lib.sh"

setup ca-1
write_mesh "$E2E/1-add.yaml" ca-1 ca-1 ca-2
write_mesh "$E2E/2-switch.yaml" ca-2 ca-1 ca-2
write_mesh "$E2E/3-remove.yaml" ca-2 ca-2
two_support() { dp_query '"ca-2" in dps["web"]["supportedBackends"] and "ca-2" in dps["backend"]["supportedBackends"]'; }
two_issued() { dp_query 'dps["web"]["issuedBackend"] == "ca-2" and dps["backend"]["issuedBackend"] == "ca-2"'; }

start_loop 150
sleep 1
say "add+switch in one apply"
apply_refused multi-step "ca-2" "$E2E/2-switch.yaml"

pause_agent db
apply_ok "$E2E/1-add.yaml"
wait_for "web and backend trust ca-2" two_support
sleep 2
dp_query '"ca-2" not in dps["db"]["supportedBackends"]' || die "db acknowledged ca-2 while its agent was paused"
say "switch while db has not loaded ca-2"
apply_refused switch-not-propagated db "$E2E/2-switch.yaml"
resume_agent db
wait_for "every dataplane trusts ca-2" all_support ca-2

pause_agent db
apply_ok "$E2E/2-switch.yaml"
wait_for "web and backend hold ca-2 certificates" two_issued
sleep 2
dp_query 'dps["db"]["issuedBackend"] == "ca-1"' || die "db changed certificate while its agent was paused"
say "remove ca-1 while db still presents a ca-1 certificate"
apply_refused remove-still-in-use db "$E2E/3-remove.yaml"
resume_agent db
wait_for "every dataplane holds a ca-2 certificate" all_issued ca-2
apply_ok "$E2E/3-remove.yaml"
wait_for "every dataplane trusts ca-2 only" all_supported_exactly ca-2 '"ca-2"'
sleep 1
stop_loop
expect_no_failures
