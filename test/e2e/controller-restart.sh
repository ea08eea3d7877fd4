#!/usr/bin/env bash
# Scenario 6 (issue 10): the controller killed with SIGKILL and restarted. While it is gone every
# proxy keeps serving its files (the agents keep them and retry with backoff); once it is back on
# the same address, the agents resume by themselves: a rotation step applied then reaches them.
# Zero failed requests throughout.
source "$(dirname "$0")/lib.sh"

setup ca-1
write_mesh "$E2E/1-add.yaml" ca-1 ca-1 ca-2
start_loop 90
sleep 2
kill -KILL "$CONTROLLER_PID"
wait "$CONTROLLER_PID" 2>/dev/null
say "controller killed (SIGKILL)"
sleep 6
loop_status
[ "$FAILED" -eq 0 ] || die "requests failed while the controller was gone"
for dp in "${DPS[@]}"; do
    kill -0 "${AGENT_PID[$dp]}" 2>/dev/null || die "agent $dp ended while the controller was gone"
done
say "ok: every agent still runs and every proxy still serves"
apply_ok "$E2E/1-add.yaml"
start_controller
say "controller restarted on the same address"
wait_for "every dataplane trusts ca-2 (the agents resumed by themselves)" all_support ca-2
sleep 2
stop_loop
verify_strict
expect_no_failures
