#!/usr/bin/env bash
# Scenario 1: builtin ca-1 -> add builtin ca-2 -> switch -> remove ca-1, with the client loop
# running throughout; zero failed requests.
source "$(dirname "$0")/lib.sh"

setup ca-1
write_mesh "$E2E/1-add.yaml" ca-1 ca-1 ca-2
write_mesh "$E2E/2-switch.yaml" ca-2 ca-1 ca-2
write_mesh "$E2E/3-remove.yaml" ca-2 ca-2

# scrape_check 'NAME{LABELS}' VALUE: /metrics of the API port (no --metrics) passes promtool
# with nothing to say, and the sample has VALUE (doc/metrics.md).
scrape_check() {
    curl -sf --cacert "$E2E/cp-ca.pem" "$API_URL/metrics" >"$E2E/scrape" || die "cannot scrape /metrics"
    [ -z "$(promtool check metrics <"$E2E/scrape" 2>&1)" ] || die "promtool: $(promtool check metrics <"$E2E/scrape" 2>&1)"
    local got
    got=$(awk -v k="$1" 'index($0, k " ") == 1 { print $2 }' "$E2E/scrape")
    [ "$got" = "$2" ] || die "metrics: $1 is '$got', expected $2"
    say "metrics: $1 = $got"
}
HAVE_PROMTOOL=$(command -v promtool || true)

start_loop 120
sleep 2
apply_ok "$E2E/1-add.yaml"
wait_for "every dataplane trusts ca-2" all_support ca-2
[ -z "$HAVE_PROMTOOL" ] || scrape_check 'meshca_backend_dataplanes_trusting{mesh="default",backend="ca-2"}' 3
sleep 2
apply_ok "$E2E/2-switch.yaml"
wait_for "every dataplane holds a ca-2 certificate" all_issued ca-2
[ -z "$HAVE_PROMTOOL" ] || scrape_check 'meshca_backend_dataplanes_holding{mesh="default",backend="ca-2"}' 3
sleep 2
apply_ok "$E2E/3-remove.yaml"
wait_for "every dataplane trusts ca-2 only" all_supported_exactly ca-2 '"ca-2"'
sleep 2
stop_loop
verify_strict
store_has_no_dataplane_secrets
expect_no_failures
