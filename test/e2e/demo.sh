#!/usr/bin/env bash
# demo.sh - the rotation of SPEC S9, narrated: three proxies (web and backend on nginx, db on
# HAProxy) serve mTLS with the files of their meshca agents, which reach the controller only
# through its HTTPS API (own key, CSR, token then certificate), while a client loop calls them;
# the CA moves from ca-1 to ca-2 (add -> switch -> remove) with zero failed requests, and a
# premature switch is refused.
# Usage: test/e2e/demo.sh [MESHCA]   (default build/cmd/meshca)
cd "$(dirname "$0")/../.." || exit 2
export MESHCA=${1:-${MESHCA:-build/cmd/meshca}} SOURCE_ROOT=${SOURCE_ROOT:-$PWD}
source test/e2e/lib.sh

step() { printf '\n==> %s\n' "$*"; }
table() { m inspect dataplanes -m default | sed 's/^/    /'; }

step "Start a meshca controller serving the dataplane API, then three dataplanes, each a proxy requiring client certificates (nginx, nginx, HAProxy) with its own meshca agent: the agent makes its key, sends a CSR with its token, and gets its certificate over HTTPS"
setup ca-1
write_mesh "$E2E/1-add.yaml" ca-1 ca-1 ca-2
write_mesh "$E2E/2-switch.yaml" ca-2 ca-1 ca-2
write_mesh "$E2E/3-remove.yaml" ca-2 ca-2
table
start_loop 120
sleep 2
loop_status

step "Step 1 - add: ca-2 joins the backends (db's agent is paused with SIGSTOP, so db does not load it)"
pause_agent db
apply_ok "$E2E/1-add.yaml"
sleep 3
table

step "Premature switch: refused, and the refusal names the dataplane that does not trust ca-2"
m apply -f "$E2E/2-switch.yaml" 2>&1 | sed 's/^/    /'
echo "    exit status: ${PIPESTATUS[0]}"
resume_agent db
wait_for "every dataplane trusts ca-2" all_support ca-2
table
loop_status

step "Step 2 - switch: certificates now come from ca-2; every proxy still trusts both CAs"
apply_ok "$E2E/2-switch.yaml"
wait_for "every dataplane holds a ca-2 certificate" all_issued ca-2
table
loop_status

step "Step 3 - remove: ca-1 goes once no proxy presents a ca-1 certificate"
apply_ok "$E2E/3-remove.yaml"
wait_for "every dataplane trusts ca-2 only" all_supported_exactly ca-2 '"ca-2"'
table
sleep 1

step "Result"
stop_loop
verify_strict
store_has_no_dataplane_secrets
expect_no_failures
