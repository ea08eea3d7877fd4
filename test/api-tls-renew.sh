#!/usr/bin/env bash
# api-tls-renew.sh - `meshca run` renews the dataplane API's certificate without a restart: on
# SIGHUP it serves a newly signed one (or re-reads --tls-cert/--tls-key), agents go on through
# it, and a pair that does not load leaves the previous one served.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
MESHCA=$(readlink -f "$MESHCA")
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"

printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n---\ntype: Dataplane\nmesh: default\nname: web-01\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 8443\n    tags: {kuma.io/service: web}\n' >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0

# served CAFILE: the serial of the certificate the API serves now, verified against CAFILE.
served() {
    local out
    out=$(openssl s_client -connect "${API_URL#https://}" -CAfile "$1" -verify_return_error </dev/null 2>/dev/null) || return 1
    openssl x509 -noout -serial <<<"$out"
}
# said N TEXT: the controller's log holds TEXT at least N times (bounded wait).
said() {
    local i
    for i in $(seq 100); do
        [ "$(grep -cF -- "$2" "$CTL_LOG")" -ge "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

start_controller
s1=$(served "$WORK/cp-ca.pem")
check "the API serves a certificate of the control-plane CA" [ -n "$s1" ]
agent_once web-01
check "an agent loads generation 1" grep -q "generation 1 loaded and acknowledged" "$WORK/agent.out"
kill -HUP "$CTL_PID"
check "SIGHUP: the controller says it serves a new certificate" \
    said 1 "SIGHUP: the dataplane API serves a new certificate (expires "
check "... and is still running" kill -0 "$CTL_PID"
s2=$(served "$WORK/cp-ca.pem")
check "the new certificate verifies against the same control-plane CA" [ -n "$s2" ]
check "... and is another one (serial $s1 -> $s2)" [ "$s1" != "$s2" ]
agent_once web-01 default --renew
check "an agent renews through the new certificate" grep -q "generation 2 loaded and acknowledged" "$WORK/agent.out"
stop_controller

# --tls-cert/--tls-key: the files re-read on SIGHUP.
"$MESHCA" ca create --common-name "api ca" --out-dir "$WORK/apica" >/dev/null
mkcert() { # mkcert NAME: NAME.pem / NAME.key for 127.0.0.1, signed by apica
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=api" \
        -keyout "$WORK/$1.key" -out "$WORK/$1.csr" 2>/dev/null &&
        printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$WORK/ext" &&
        openssl x509 -req -in "$WORK/$1.csr" -CA "$WORK/apica/ca.pem" -CAkey "$WORK/apica/ca-key.pem" \
            -set_serial "$2" -days 30 -extfile "$WORK/ext" -out "$WORK/$1.pem" 2>/dev/null
}
mkcert one 0x1001 && mkcert two 0x2002
cp "$WORK/one.pem" "$WORK/api.pem" && cp "$WORK/one.key" "$WORK/api.key" && chmod 600 "$WORK/api.key"
start_controller --tls-cert "$WORK/api.pem" --tls-key "$WORK/api.key"
check "--tls-cert: the first file is served" [ "$(served "$WORK/apica/ca.pem")" = serial=1001 ]
cp "$WORK/two.pem" "$WORK/api.pem" && cp "$WORK/two.key" "$WORK/api.key"
kill -HUP "$CTL_PID"
check "SIGHUP re-reads the files" said 2 "SIGHUP: the dataplane API serves a new certificate (expires "
check "--tls-cert: the replaced file is served" [ "$(served "$WORK/apica/ca.pem")" = serial=2002 ]
# /metrics says when the served certificate expires (MeshcaAPICertificateExpiring).
metric=$(curl -s --cacert "$WORK/apica/ca.pem" "$API_URL/metrics" | awk '$1 == "meshca_api_cert_not_after_seconds" {print $2}')
want=$(date -u -d "$(openssl x509 -noout -enddate -in "$WORK/two.pem" | cut -d= -f2)" +%s)
check "meshca_api_cert_not_after_seconds is the replaced file's notAfter ($metric = $want)" [ "$metric" = "$want" ]
cp "$WORK/one.pem" "$WORK/api.pem"   # the other certificate with this key: does not load
kill -HUP "$CTL_PID"
check "a pair that does not go together is refused, on stderr" \
    said 1 "meshca: SIGHUP: cannot renew the dataplane API's certificate, still serving the previous one: "
check "... naming why" grep -q "still serving the previous one: .*certificate and key do not go together" "$CTL_LOG"
check "... and the controller still runs" kill -0 "$CTL_PID"
check "... and the previous certificate is still served" [ "$(served "$WORK/apica/ca.pem")" = serial=2002 ]
check "no private key in the controller's log" bash -c "! grep -q 'PRIVATE KEY' '$CTL_LOG'"
finish
