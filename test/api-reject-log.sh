#!/usr/bin/env bash
# api-reject-log.sh - `meshca run` logs each rejected API request (401, 403) with the peer,
# method, path, status and reason, never the token or the Authorization value, and at most
# API_REJECT_LOG_PER_S (10) lines a second: the rest of a second is one "N more ... not logged"
# line, so a client hammering the API cannot flood the log; the counts add up to the metric.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
cd "$WORK" || exit 2
MESHCA=$(readlink -f "$MESHCA")

mesh_fixture web-01 db-01:9443:db >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0
start_controller --interval 1s
check "set-up: the controller serves the API" grep -q "serving the dataplane API on $API_URL" "$CTL_LOG"

# api METHOD PATH [CURL-FLAG...]: one request; its status on stdout.
api() {
    local method=$1 path=$2
    shift 2
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$WORK/cp-ca.pem" -X "$method" "$@" \
        "$API_URL$path"
}
# rejected_lines RE: lines of the controller's log matching RE (extended regex).
rejected_lines() { grep -cE -- "$1" "$CTL_LOG"; }
ID=/v1/meshes/default/dataplanes/web-01/identity
DB_CSR=/v1/meshes/default/dataplanes/db-01/csr
WEB_TOKEN=$(cat "$(token_for web-01)")
BAD_TOKEN=not-a-token-s3cr3t-4f9a2c
"$MESHCA" token issue -m default -d db-01 >"$WORK/revoked.token"
run token revoke -m default -d db-01
REVOKED=$(cat "$WORK/revoked.token")
BASIC=dXNlcjpzM2NyM3QtcGFzc3dvcmQ=

s1=$(api GET "$ID" -H "Authorization: Bearer $BAD_TOKEN")
s2=$(api POST "$DB_CSR" -H "Authorization: Bearer $WEB_TOKEN" -H 'Content-Type: application/json' -d '{"csr":"x"}')
s3=$(api GET "$ID" -H "Authorization: Bearer $REVOKED")
s4=$(api PUT /v1/meshes/default/dataplanes/web-01/ack -H "Authorization: Basic $BASIC" -d '{"generation":1}')
s5=$(api GET /v1/meshes/default/roots)
check "set-up: the answers are 401, 403, 401, 401, 401" test "$s1 $s2 $s3 $s4 $s5" = "401 403 401 401 401"
PEER='from 127\.0\.0\.1:[0-9]+: '
for i in $(seq 50); do [ "$(rejected_lines '^meshca: api: rejected ')" -ge 5 ] && break; sleep 0.1; done
check "api_rejected_request_logged: a bad token (401, peer, method, path, reason)" \
    test "$(rejected_lines "^meshca: api: rejected GET $ID ${PEER}401 unauthenticated: token: malformed bearer token\$")" -eq 1
check "api_rejected_request_logged: another dataplane's token (403 naming both)" \
    test "$(rejected_lines "^meshca: api: rejected POST $DB_CSR ${PEER}403 forbidden: the token of dataplane default/web-01 may not act for default/db-01\$")" -eq 1
check "api_rejected_request_logged: a revoked token" \
    test "$(rejected_lines "^meshca: api: rejected GET $ID ${PEER}401 unauthenticated: token: unknown or revoked token\$")" -eq 1
check "api_rejected_request_logged: an Authorization that is not Bearer" \
    test "$(rejected_lines "^meshca: api: rejected PUT /v1/meshes/default/dataplanes/web-01/ack ${PEER}401 unauthenticated: Authorization must be 'Bearer <token>'\$")" -eq 1
check "api_rejected_request_logged: no credential at all" \
    test "$(rejected_lines "^meshca: api: rejected GET /v1/meshes/default/roots ${PEER}401 unauthenticated: authentication required")" -eq 1
# Each token and the Basic credential appear nowhere in the log, whole or in part.
leaks=0
for secret in "$BAD_TOKEN" "$WEB_TOKEN" "$REVOKED" "$BASIC"; do
    grep -qF -- "$secret" "$CTL_LOG" && leaks=$((leaks + 1))
    grep -qF -- "${secret:0:12}" "$CTL_LOG" && leaks=$((leaks + 1))
    grep -qF -- "${secret: -12}" "$CTL_LOG" && leaks=$((leaks + 1))
done
check "api_rejected_request_log_holds_no_token: no token, no Authorization value" test "$leaks" -eq 0
check "api_rejected_request_log_holds_no_token: no Authorization header named" \
    test "$(grep -c 'Bearer [^<]\|Basic ' "$CTL_LOG")" -eq 0

# A client hammering the API with a bad token: 300 requests on one keep-alive connection.
N=300
urls=()
for i in $(seq $N); do urls+=("$API_URL$ID"); done
curl -s -o /dev/null -w '%{http_code}\n' --max-time 120 --cacert "$WORK/cp-ca.pem" \
    -H "Authorization: Bearer $BAD_TOKEN" "${urls[@]}" >"$WORK/codes"
check "set-up: $N answers 401" test "$(grep -cx 401 "$WORK/codes")" -eq $N
TOTAL=$((N + 5))
# logged + suppressed: every rejected request is either a line or in a "N more" count. The last
# count is said when its second ends (a timer): wait for it, bounded.
accounted() {
    local lines more
    lines=$(rejected_lines '^meshca: api: rejected ')
    more=$(sed -nE 's/^meshca: api: ([0-9]+) more rejected requests? \(401\/403\) not logged in the last second .*/\1/p' \
        "$CTL_LOG" | awk '{s += $1} END {print s + 0}')
    echo $((lines + more))
}
for i in $(seq 100); do [ "$(accounted)" -ge $TOTAL ] && break; sleep 0.1; done
lines=$(rejected_lines '^meshca: api: rejected ')
echo "# $TOTAL rejected requests: $lines lines, $(grep -c 'not logged in the last second' "$CTL_LOG") suppressed-count lines"
check "api_rejected_requests_rate_limited: each one is a line or in a count, exactly" test "$(accounted)" -eq $TOTAL
check "api_rejected_requests_rate_limited: far fewer lines than requests" test "$lines" -lt $((N / 2))
check "api_rejected_requests_rate_limited: the rest said as a count" \
    grep -qE '^meshca: api: [0-9]+ more rejected requests? \(401/403\) not logged in the last second \(meshca_api_requests_total counts every one\)$' "$CTL_LOG"
curl -s --max-time 10 --cacert "$WORK/cp-ca.pem" "$API_URL/metrics" >"$WORK/metrics"
counted=$(grep -E '^meshca_api_requests_total\{.*code="40[13]"' "$WORK/metrics" | awk '{s += $2} END {print s + 0}')
check "api_rejected_requests_rate_limited: the metric counts all $TOTAL" test "$counted" -eq $TOTAL
check "api_rejected_requests_rate_limited: still no token in the log" bash -c "! grep -qF -- '$BAD_TOKEN' '$CTL_LOG'"

finish
