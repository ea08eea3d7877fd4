#!/usr/bin/env bash
# metrics-cli.sh - `meshca run --metrics`: scrapes /metrics during a builtin rotation (ca-1 ->
# ca-2) with agents reaching the controller through the API, and checks VALUES against the
# certificates themselves (openssl) and against what the agents did; every scrape passes
# `promtool check metrics` with no output; doc/alerting-rules.yml passes `promtool check rules`.
# /metrics on the API port when --metrics is not given, and not there when it is.
source "$(dirname "$0")/lib.sh"
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
source "$(dirname "$0")/api-lib.sh"

if ! command -v promtool >/dev/null; then
    echo "SKIP: promtool is absent (Debian package prometheus; tools/deps.sh installs it)"
    exit 77
fi

MPORT=$(free_port)
METRICS_URL="http://127.0.0.1:$MPORT/metrics"
nscrape=0

# scrape [URL [CURL-FLAG...]]: one scrape into $WORK/scrape (kept as scrape.N); promtool's
# findings in $WORK/promtool.N.
scrape() {
    local url=${1:-$METRICS_URL}
    shift $(($# > 0 ? 1 : 0))
    nscrape=$((nscrape + 1))
    curl -sf "$@" "$url" >"$WORK/scrape" || { : >"$WORK/scrape"; echo "scrape $nscrape failed"; }
    cp "$WORK/scrape" "$WORK/scrape.$nscrape"
    promtool check metrics <"$WORK/scrape" >"$WORK/promtool.$nscrape" 2>&1
    echo "exit $?" >>"$WORK/promtool.$nscrape"
}
# promtool_clean: the last scrape is non-empty and promtool said nothing (exit 0).
promtool_clean() {
    [ -s "$WORK/scrape" ] && [ "$(cat "$WORK/promtool.$nscrape")" = "exit 0" ] ||
        { sed 's/^/  promtool: /' "$WORK/promtool.$nscrape"; return 1; }
}
# val 'NAME{LABELS}': the sample's value in the last scrape ("" when absent).
val() { awk -v k="$1" 'index($0, k " ") == 1 { print $2 }' "$WORK/scrape"; }
# is 'NAME{LABELS}' VALUE: the sample has exactly VALUE.
is() {
    local got
    got=$(val "$1")
    [ "$got" = "$2" ] || { echo "  $1 = '$got', expected '$2'"; return 1; }
}
# wait_val 'NAME{LABELS}' VALUE: scrapes until the sample has VALUE (bounded: 100 scrapes).
wait_val() {
    local i
    for i in $(seq 100); do
        scrape
        [ "$(val "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
# enddate FILE: the certificate's notAfter, in seconds since the epoch (openssl's own reading).
enddate() { date -u -d "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)" +%s; }
# root_pem BACKEND: the CA certificate of the backend, from `meshca roots -o json`.
root_pem() {
    "$MESHCA" roots -m default -o json | python3 -c '
import json, sys
for r in json.load(sys.stdin)["Roots"]:
    if r["Backend"] == sys.argv[1]: print(r["RootCert"])' "$1" >"$WORK/root-$1.pem"
    echo "$WORK/root-$1.pem"
}

mesh_yaml() { # mesh_yaml ENABLED BACKEND...
    local enabled=$1
    shift
    printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: %s\n  backends:\n' "$enabled"
    for b in "$@"; do printf '  - name: %s\n    type: builtin\n' "$b"; done
}
mesh_yaml ca-1 ca-1 >"$WORK/m0.yaml"
mesh_yaml ca-1 ca-1 ca-2 >"$WORK/m1.yaml"
mesh_yaml ca-2 ca-1 ca-2 >"$WORK/m2.yaml"
cat >"$WORK/dps.yaml" <<'YAML'
type: Dataplane
mesh: default
name: web-01
networking: {address: 127.0.0.1, inbound: [{port: 8443, tags: {kuma.io/service: web}}]}
---
type: Dataplane
mesh: default
name: db-01
networking: {address: 127.0.0.1, inbound: [{port: 9443, tags: {kuma.io/service: db}}]}
YAML
DP='mesh="default",dataplane'

run apply -f "$WORK/m0.yaml" -f "$WORK/dps.yaml"
check "initial apply" exit_is 0
start_controller --interval 1s --metrics "127.0.0.1:$MPORT"
check "the controller says where metrics are served" grep -qF "serving metrics on $METRICS_URL" "$CTL_LOG"

# --- before any agent: nothing signed, CA known ---
scrape
check "first scrape: promtool check metrics reports nothing" promtool_clean
check "no dataplane holds a certificate yet" is 'meshca_backend_dataplanes_holding{mesh="default",backend="ca-1"}' 0
check "the mesh has 2 dataplanes" is 'meshca_mesh_dataplanes{mesh="default"}' 2
check "no signature yet" bash -c "! grep -q '^meshca_signatures_total{' '$WORK/scrape'"
check "ca-1 is the enabled backend" is 'meshca_backend_enabled{mesh="default",backend="ca-1"}' 1
run run --listen 127.0.0.1:0 --metrics nonsense
check "--metrics without a port: usage error, exit 2" exit_is 2
check "... naming the flag and the value" err_has "--metrics: 'nonsense' is not ADDRESS:PORT"
run run --listen 127.0.0.1:0 --metrics "127.0.0.1:$MPORT"
check "--metrics on a port in use: exit 2, saying so" \
    bash -c "[ $rc -eq 2 ] && grep -qF -- '--metrics: cannot listen on 127.0.0.1:$MPORT' '$WORK/err'"

# --- agents get their first certificates through the API ---
for dp in web-01 db-01; do
    agent_once "$dp"
    check "agent $dp got and acknowledged its certificate" test "$agent_rc" -eq 0
done
scrape
check "after the agents: promtool reports nothing" promtool_clean
check "signatures_total counts the 2 leaves ca-1 signed" is 'meshca_signatures_total{mesh="default",backend="ca-1"}' 2
check "ca-1 notAfter equals the CA certificate's (openssl x509 -enddate)" \
    is 'meshca_ca_not_after_seconds{mesh="default",backend="ca-1",type="builtin"}' "$(enddate "$(root_pem ca-1)")"
check "web-01's certificate notAfter equals its cert.pem's" \
    is "meshca_dataplane_cert_not_after_seconds{$DP=\"web-01\",backend=\"ca-1\"}" "$(enddate "$WORK/dp/web-01/cert.pem")"
gen_web=$(val "meshca_dataplane_generation{$DP=\"web-01\"}")
check "web-01 acknowledged the generation issued ($gen_web)" \
    is "meshca_dataplane_acknowledged_generation{$DP=\"web-01\"}" "$gen_web"
check "both dataplanes trust and hold ca-1" bash -c "
    grep -qx 'meshca_backend_dataplanes_trusting{mesh=\"default\",backend=\"ca-1\"} 2' '$WORK/scrape' &&
    grep -qx 'meshca_backend_dataplanes_holding{mesh=\"default\",backend=\"ca-1\"} 2' '$WORK/scrape'"
check "the agents' CSRs are counted as path csr, code 202" is 'meshca_api_requests_total{path="csr",code="202"}' 2
check "their acknowledgements as path ack, code 200" is 'meshca_api_requests_total{path="ack",code="200"}' 2

# --- refused API requests are counted by code ---
curl -s -o /dev/null --cacert "$WORK/cp-ca.pem" -H "Authorization: Bearer not-a-token" \
    "$API_URL/v1/meshes/default/dataplanes/web-01/identity"
curl -s -o /dev/null --cacert "$WORK/cp-ca.pem" "$API_URL/v1/no-such-thing"
check "with --metrics, the API port does not serve /metrics (404)" \
    test "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/cp-ca.pem" "$API_URL/metrics")" = 404
scrape
check "a bad token is counted as path identity, code 401" is 'meshca_api_requests_total{path="identity",code="401"}' 1
check "an unknown path as path other, code 404" is 'meshca_api_requests_total{path="other",code="404"}' 1
check "the API's /metrics answer as path metrics, code 404" is 'meshca_api_requests_total{path="metrics",code="404"}' 1

# --- add ca-2: trusted by 0, then by both once the agents loaded the new bundle ---
gen_db=$(val "meshca_dataplane_generation{$DP=\"db-01\"}")
run apply -f "$WORK/m1.yaml"
check "add ca-2" exit_is 0
check "the controller rebundles both dataplanes (generations move)" \
    wait_val "meshca_dataplane_generation{$DP=\"db-01\"}" $((gen_db + 1))
check "during the rotation: promtool reports nothing" promtool_clean
check "no dataplane trusts ca-2 before its agent loaded the bundle" \
    is 'meshca_backend_dataplanes_trusting{mesh="default",backend="ca-2"}' 0
check "a rebundle signs nothing" is 'meshca_signatures_total{mesh="default",backend="ca-1"}' 2
check "ca-2 notAfter equals its CA certificate's" \
    is 'meshca_ca_not_after_seconds{mesh="default",backend="ca-2",type="builtin"}' "$(enddate "$(root_pem ca-2)")"
check "ca-2 is not enabled yet" is 'meshca_backend_enabled{mesh="default",backend="ca-2"}' 0
for dp in web-01 db-01; do agent_once "$dp"; done
scrape
check "dataplanes trusting ca-2 went from 0 to 2" is 'meshca_backend_dataplanes_trusting{mesh="default",backend="ca-2"}' 2

# --- switch: the controller re-signs both keys from ca-2 ---
run apply -f "$WORK/m2.yaml"
check "switch to ca-2 (every dataplane trusts it)" exit_is 0
check "signatures_total of ca-2 grows by the 2 leaves re-signed" \
    wait_val 'meshca_signatures_total{mesh="default",backend="ca-2"}' 2
check "ca-1's signatures stay at 2" is 'meshca_signatures_total{mesh="default",backend="ca-1"}' 2
check "nothing holds ca-2 before the agents acknowledged" is 'meshca_backend_dataplanes_holding{mesh="default",backend="ca-2"}' 0
for dp in web-01 db-01; do agent_once "$dp"; done
scrape
check "after the switch: promtool reports nothing" promtool_clean
check "both dataplanes hold ca-2 certificates" is 'meshca_backend_dataplanes_holding{mesh="default",backend="ca-2"}' 2
check "none holds ca-1 any more" is 'meshca_backend_dataplanes_holding{mesh="default",backend="ca-1"}' 0
check "db-01's certificate notAfter equals its new cert.pem's" \
    is "meshca_dataplane_cert_not_after_seconds{$DP=\"db-01\",backend=\"ca-2\"}" "$(enddate "$WORK/dp/db-01/cert.pem")"
check "passes were counted and the histogram counts each" bash -c "
    p=\$(awk '/^meshca_reconcile_passes_total /{print \$2}' '$WORK/scrape')
    c=\$(awk '/^meshca_reconcile_pass_duration_seconds_count /{print \$2}' '$WORK/scrape')
    i=\$(awk '/^meshca_reconcile_pass_duration_seconds_bucket\\{le=\"\\+Inf\"\\} /{print \$2}' '$WORK/scrape')
    [ \"\$p\" -ge 3 ] && [ \"\$p\" = \"\$c\" ] && [ \"\$p\" = \"\$i\" ]"
check "no private key or token in any scrape" bash -c "! grep -l 'PRIVATE KEY\\|$(cat "$WORK/tokens/default.web-01")' '$WORK'/scrape.*"

# --- a pending change from run --manifests shows up with its reason, on the API port ---
stop_controller
mesh_yaml ca-2 ca-1 ca-2 ca-3 >"$WORK/m3.yaml"
run apply -f "$WORK/m3.yaml"
check "add ca-3" exit_is 0
mkdir -p "$WORK/manifests"
cp "$WORK/dps.yaml" "$WORK/manifests/dps.yaml"
mesh_yaml ca-3 ca-1 ca-2 ca-3 >"$WORK/manifests/mesh.yaml"   # switch before anyone trusts ca-3
start_controller --interval 1s --manifests "$WORK/manifests"
pending_shown() {
    local i
    for i in $(seq 100); do
        scrape "$API_URL/metrics" --cacert "$WORK/cp-ca.pem"
        grep -q '^meshca_mesh_pending_change{mesh="default",reason=".*ca-3.*"} 1$' "$WORK/scrape" && return 0
        sleep 0.1
    done
    return 1
}
check "without --metrics, the API port serves /metrics without a token; the switch to ca-3 is pending with its reason" \
    pending_shown
check "API-port scrape: promtool reports nothing" promtool_clean
check "the pending change has a since time" bash -c "
    s=\$(awk '/^meshca_mesh_pending_since_seconds\\{mesh=\"default\"\\} /{print \$2}' '$WORK/scrape')
    [ -n \"\$s\" ] && [ \"\$s\" -le \"\$(date +%s)\" ] && [ \"\$s\" -gt \$((\$(date +%s) - 600)) ]"

# --- the control-plane CA: each certificate's expiry by role, the rotation's phase (cp-ca rotate) ---
# Scraped on the API port, trusting the CA bundle (both CAs once rotate ran: --switch changes
# the certificate the API serves).
cp "$WORK/cp-ca.pem" "$WORK/cpca-bundle.pem"
cpca_scrape() { scrape "$API_URL/metrics" --cacert "$WORK/cpca-bundle.pem"; }
# wait_cpca 'NAME{LABELS}' VALUE: scrapes until the sample has VALUE (bounded: 100 scrapes; the
# controller's CA check runs every --interval, here 1 s).
wait_cpca() {
    local i
    for i in $(seq 100); do
        cpca_scrape
        [ "$(val "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    echo "  $1 = '$(val "$1")', expected '$2'"
    return 1
}
cpca_scrape
old_cpca_end=$(enddate "$WORK/cp-ca.pem")
check "control-plane CA: the current certificate's notAfter equals cp-ca -o pem's (openssl)" \
    is 'meshca_cp_ca_cert_not_after_seconds{role="current"}' "$old_cpca_end"
check "control-plane CA: no rotation (phase none 1, started 0, switched 0)" bash -c "
    grep -qx 'meshca_cp_ca_rotation_phase{phase=\"none\"} 1' '$WORK/scrape' &&
    grep -qx 'meshca_cp_ca_rotation_phase{phase=\"started\"} 0' '$WORK/scrape' &&
    grep -qx 'meshca_cp_ca_rotation_phase{phase=\"switched\"} 0' '$WORK/scrape'"
check "control-plane CA: no next or previous certificate, no phase-since series" \
    bash -c "! grep -qE 'role=\"(next|previous)\"|^meshca_cp_ca_rotation_phase_since_seconds' '$WORK/scrape'"
before_rotate=$(date +%s)
run cp-ca rotate
check "cp-ca rotate" exit_is 0
"$MESHCA" cp-ca -o pem >"$WORK/cpca-bundle.pem"
# The bundle is oldest first: the next CA is its second certificate.
awk 'n >= 1 {print} /END CERTIFICATE/ {n++}' "$WORK/cpca-bundle.pem" >"$WORK/cpca-next.pem"
check "after rotate, the controller's check shows phase started" \
    wait_cpca 'meshca_cp_ca_rotation_phase{phase="started"}' 1
check "... phase none is 0" is 'meshca_cp_ca_rotation_phase{phase="none"}' 0
check "... the next certificate's notAfter equals the new CA's (openssl)" \
    is 'meshca_cp_ca_cert_not_after_seconds{role="next"}' "$(enddate "$WORK/cpca-next.pem")"
check "... the current one is unchanged" is 'meshca_cp_ca_cert_not_after_seconds{role="current"}' "$old_cpca_end"
check "... started since the rotate (between its start and now)" bash -c "
    s=\$(awk '/^meshca_cp_ca_rotation_phase_since_seconds\\{phase=\"started\"\\} /{print \$2}' '$WORK/scrape')
    [ -n \"\$s\" ] && [ \"\$s\" -ge $before_rotate ] && [ \"\$s\" -le \$(date +%s) ]"
check "during the control-plane CA rotation: promtool reports nothing" promtool_clean
run cp-ca rotate --switch
check "cp-ca rotate --switch" exit_is 0
check "after --switch, phase switched" wait_cpca 'meshca_cp_ca_rotation_phase{phase="switched"}' 1
check "... the former next is current, the former current previous" bash -c "
    grep -qx 'meshca_cp_ca_cert_not_after_seconds{role=\"current\"} $(enddate "$WORK/cpca-next.pem")' '$WORK/scrape' &&
    grep -qx 'meshca_cp_ca_cert_not_after_seconds{role=\"previous\"} $old_cpca_end' '$WORK/scrape' &&
    ! grep -q 'role=\"next\"' '$WORK/scrape'"
check "... the phase-since series names switched, not started" bash -c "
    grep -q '^meshca_cp_ca_rotation_phase_since_seconds{phase=\"switched\"} ' '$WORK/scrape' &&
    ! grep -q 'phase_since_seconds{phase=\"started\"}' '$WORK/scrape'"
run cp-ca rotate --finish
check "cp-ca rotate --finish" exit_is 0
check "after --finish, phase none again" wait_cpca 'meshca_cp_ca_rotation_phase{phase="none"}' 1
check "... no previous certificate, no phase-since series" \
    bash -c "! grep -qE 'role=\"previous\"|^meshca_cp_ca_rotation_phase_since_seconds' '$WORK/scrape'"
check "after the control-plane CA rotation: promtool reports nothing" promtool_clean

# --- the alerting rules shipped in doc/ load in Prometheus ---
promtool check rules "$SOURCE_ROOT/doc/alerting-rules.yml" >"$WORK/out" 2>"$WORK/err"
rc=$?
check "doc/alerting-rules.yml passes promtool check rules" exit_is 0

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
