# lib.sh - end-to-end harness: a meshca controller serving the dataplane API, three dataplanes
# (web, backend, db) each with one real proxy terminating mTLS with the files of its own
# `meshca agent` (nginx for web and backend, HAProxy for db), and a client loop in which every
# dataplane calls the others with its own certificate. Agents reach the controller only through
# the API (a token each, the control-plane CA as --ca-file); they never open the store.
# Everything runs on 127.0.0.1 inside a mktemp directory and is torn down on exit (trap),
# leaving no process behind.
#
# Sourced by test/e2e/<scenario>.sh. Expects $MESHCA (the built binary) and $SOURCE_ROOT.
#
# How a client request is verified (honestly, both ways):
#   the leaves carry URI SANs only (spiffe://, kuma://), so curl's host name check cannot pass and
#   curl cannot skip only that check (--insecure would skip the chain verification too). The
#   client is therefore `openssl s_client -CAfile <own bundle> -verify_return_error -cert/-key
#   <own leaf>`: the handshake aborts unless the server's chain verifies against the client's
#   bundle, and nginx (ssl_verify_client on) answers 400 unless the client's chain verifies
#   against the server's bundle. A request counts as good only when the answer is "HTTP/1.1 200"
#   with the body naming the server called (which also proves it reached the right proxy).
#   -cert_chain sends the intermediates of cert.pem too (s_client's -cert sends the leaf only),
#   as a real proxy does: a cross-signed CA in the chain must reach the peer.
set -uo pipefail
: "${MESHCA:?set MESHCA to the built meshca binary}"
: "${SOURCE_ROOT:?set SOURCE_ROOT to the source tree}"
MESHCA=$(readlink -f "$MESHCA")

DPS=(web backend db)
HAPROXY_DP=${HAPROXY_DP:-db}    # this dataplane's proxy is HAProxy; the others are nginx
E2E=$(mktemp -d "${TMPDIR:-/tmp}/meshca-e2e.XXXXXX")
# The store: SQLite in the run's directory, or with MESHCA_TEST_STORE=etcd (the runner's suite
# etcd) a fresh one-member etcd on free ports (test/etcd-lib.sh), so every scenario runs
# unchanged on both backends. cleanup() stops the member (its EXIT trap replaces etcd-lib's).
case "${MESHCA_TEST_STORE:-sqlite}" in
    sqlite) export MESHCA_STORE="sqlite://$E2E/store/meshca.db" ;;
    etcd)
        # shellcheck source=../etcd-lib.sh
        source "$SOURCE_ROOT/test/etcd-lib.sh"
        etcd_require || { rm -rf "$E2E"; exit 77; }
        etcd_start 1 || { rm -rf "$E2E"; exit 2; }
        export MESHCA_STORE=$ETCD_URL
        ;;
    *)
        echo "MESHCA_TEST_STORE must be sqlite or etcd, not '$MESHCA_TEST_STORE'" >&2
        rm -rf "$E2E"
        exit 2
        ;;
esac
WAIT_MAX=${WAIT_MAX:-60}        # seconds any wait loop may take
LOOP_SLEEP=${LOOP_SLEEP:-0.05}  # between two client requests
LOOP_MAX=${LOOP_MAX:-6000}      # requests at most per client loop
T0=$(date +%s)
declare -A PORT AGENT_PID
CONTROLLER_PID=
API_PORT=
API_URL=
LOOP_PID=
e2e_failed=0

say() { printf '[%3ds] %s\n' "$(($(date +%s) - T0))" "$*"; }
die() {
    say "FAIL: $*"
    e2e_failed=1
    exit 1
}

# --- teardown ------------------------------------------------------------------------------------
stop_pid() { # stop_pid PID: TERM (CONT first, in case it is paused), then KILL after 5 s
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -CONT "$pid" 2>/dev/null
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

stop_proxy() { # stop_proxy DP: the dataplane's nginx or HAProxy
    if [ "$1" = "$HAPROXY_DP" ]; then stop_haproxy "$1"; else stop_nginx "$1"; fi
}

stop_haproxy() { # stop_haproxy DP: TERM to the master (it stops its workers), KILL if still there
    local d=$E2E/dp/$1 pid i
    [ -f "$d/haproxy/haproxy.pid" ] || return 0
    pid=$(head -1 "$d/haproxy/haproxy.pid" 2>/dev/null)
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    pkill -KILL -f -- "$d/haproxy/haproxy.cfg" 2>/dev/null
    return 0
}

stop_nginx() { # stop_nginx DP: nginx -s stop, then kill the master by its pid file if still there
    local d=$E2E/dp/$1 pid i
    [ -f "$d/nginx/nginx.pid" ] || return 0
    pid=$(cat "$d/nginx/nginx.pid" 2>/dev/null)
    nginx -c "$d/nginx/nginx.conf" -p "$d/nginx/" -s stop 2>/dev/null
    for i in $(seq 50); do
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    return 0
}

cleanup() {
    local rc=$? dp
    trap - EXIT INT TERM
    stop_pid "$LOOP_PID"
    for dp in "${DPS[@]}"; do stop_pid "${AGENT_PID[$dp]:-}"; done
    stop_pid "$CONTROLLER_PID"
    # Before the `wait` below, which would otherwise wait for the etcd member too.
    [ "${MESHCA_TEST_STORE:-sqlite}" != etcd ] || etcd_stop
    for dp in "${DPS[@]}"; do stop_proxy "$dp" & done
    wait
    # Nothing may be left behind: any process still naming this run's directory is a bug here.
    local left
    left=$(pgrep -f -- "$E2E" | grep -vx "$$" | tr '\n' ' ')
    if [ -n "$left" ]; then
        echo "FAIL: processes left behind: $left"
        ps -o pid,args -p ${left// /,} 2>/dev/null
        kill -KILL $left 2>/dev/null
        rc=1
    fi
    [ "$e2e_failed" -eq 0 ] || rc=1
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
        echo "--- logs (last lines) ---"
        for f in "$E2E"/controller.log "$E2E"/dp/*/agent.log "$E2E"/dp/*/nginx/error.log "$E2E"/dp/*/reload.log; do
            [ -f "$f" ] || continue
            echo "== $f"
            tail -n 15 "$f"
        done
    fi
    if [ -n "${KEEP_E2E:-}" ]; then echo "kept $E2E"; else rm -rf "$E2E"; fi
    say "total $(($(date +%s) - T0)) s, exit $rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- set-up --------------------------------------------------------------------------------------
m() { "$MESHCA" "$@"; }

# free_ports: 4 free TCP ports on 127.0.0.1 (test/free-ports.py: below the kernel's ephemeral
# range, reserved against other tests): PORT[dp] for the proxies, API_PORT for the controller.
# Scenarios run side by side (meson runs suite e2e two at a time).
free_ports() {
    local ports
    ports=$(python3 "$(dirname "${BASH_SOURCE[0]}")/../free-ports.py" 4) || die "no free ports on 127.0.0.1"
    read -r -a ports <<<"$ports"
    [ "${#ports[@]}" -eq 4 ] || die "no free ports on 127.0.0.1"
    local i=0 dp
    for dp in "${DPS[@]}"; do
        PORT[$dp]=${ports[$i]}
        i=$((i + 1))
    done
    API_PORT=${ports[3]}
    API_URL="https://127.0.0.1:$API_PORT"
}

# mesh_yaml ENABLED BACKEND... : a Mesh "default" with these backends. A backend is NAME (builtin)
# or NAME:provided (conf from secrets NAME-cert / NAME-key). Extra dpCert block via $DPCERT.
mesh_yaml() {
    local enabled=$1 b name
    shift
    printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: %s\n  backends:\n' "$enabled"
    for b in "$@"; do
        name=${b%%:*}
        printf '  - name: %s\n' "$name"
        if [ "${b#*:}" = provided ]; then
            printf '    type: provided\n'
            [ -z "${DPCERT:-}" ] || printf '%s\n' "$DPCERT"
            printf '    conf:\n      cert: {secret: %s-cert}\n      key: {secret: %s-key}\n' "$name" "$name"
        else
            printf '    type: builtin\n'
            [ -z "${DPCERT:-}" ] || printf '%s\n' "$DPCERT"
        fi
    done
}

# write_mesh FILE ENABLED BACKEND...
write_mesh() {
    local f=$1
    shift
    mesh_yaml "$@" >"$f"
}

dataplanes_yaml() {
    local dp sep=
    for dp in "${DPS[@]}"; do
        printf '%stype: Dataplane\nmesh: default\nname: %s\nnetworking:\n  address: 127.0.0.1\n' "$sep" "$dp"
        printf '  inbound:\n  - port: %s\n    tags: {kuma.io/service: %s}\n' "${PORT[$dp]}" "$dp"
        sep=$'---\n'
    done
}

# provided_ca NAME: a CA made with `meshca ca create`, stored as Secret resources NAME-cert/-key.
provided_ca() {
    local name=$1
    m ca create --out-dir "$E2E/$name" --common-name "$name" >/dev/null || die "ca create $name"
    {
        printf 'type: Secret\nmesh: default\nname: %s-cert\ndata: %s\n---\n' "$name" "$(base64 -w0 "$E2E/$name/ca.pem")"
        printf 'type: Secret\nmesh: default\nname: %s-key\ndata: %s\n' "$name" "$(base64 -w0 "$E2E/$name/ca-key.pem")"
    } >"$E2E/$name-secrets.yaml"
}

# nginx_conf DP: one nginx per dataplane, its own prefix, pid, logs and temp paths.
nginx_conf() {
    local dp=$1 d=$E2E/dp/$1
    mkdir -p "$d/nginx/tmp"
    cat >"$d/nginx/nginx.conf" <<EOF
daemon on;
pid $d/nginx/nginx.pid;
error_log $d/nginx/error.log notice;
worker_processes 1;
events { worker_connections 256; }
http {
    access_log $d/nginx/access.log;
    client_body_temp_path $d/nginx/tmp/body;
    proxy_temp_path $d/nginx/tmp/proxy;
    server {
        listen 127.0.0.1:${PORT[$dp]} ssl;
        ssl_certificate $d/certs/cert.pem;
        ssl_certificate_key $d/certs/key.pem;
        ssl_client_certificate $d/certs/ca-bundle.pem;
        ssl_verify_client on;
        ssl_verify_depth 4;
        keepalive_timeout 0;
        location / { return 200 "$dp\n"; }
    }
}
EOF
}

# haproxy_conf DP: one HAProxy (master-worker) terminating mTLS: `ssl crt` a combined PEM (leaf,
# chain, key: built by the reload script), `ca-file` the bundle, `verify required`. Reloads are
# seamless: the master hands the listening sockets to the new worker (expose-fd listeners).
haproxy_conf() {
    local dp=$1 d=$E2E/dp/$1
    mkdir -p "$d/haproxy"
    cat >"$d/haproxy/haproxy.cfg" <<EOF
global
    master-worker
    pidfile $d/haproxy/haproxy.pid
    stats socket $d/haproxy/admin.sock mode 600 level admin expose-fd listeners
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
    timeout http-request 5s
frontend mtls
    bind 127.0.0.1:${PORT[$dp]} ssl crt $d/haproxy/combined.pem ca-file $d/certs/ca-bundle.pem verify required
    http-request return status 200 content-type text/plain string "$dp"
EOF
}

# reload_script DP: what the agent runs after writing the files. It starts the proxy the first
# time, else reloads it gracefully (nginx -s reload; HAProxy: a combined PEM, then USR2 to its
# master); then waits until the proxy really serves the new certificate (so the agent's
# acknowledgement means "loaded"), and publishes a snapshot of the three files for this
# dataplane's client side (cert and key are then always a matching pair).
reload_script() {
    local dp=$1 d=$E2E/dp/$1 start
    if [ "$dp" = "$HAPROXY_DP" ]; then
        start=$(cat <<EOF
umask 077
cat "\$d/certs/cert.pem" "\$d/certs/key.pem" >"\$d/haproxy/combined.pem.tmp" && mv "\$d/haproxy/combined.pem.tmp" "\$d/haproxy/combined.pem" || exit 1
haproxy -c -q -f "\$d/haproxy/haproxy.cfg" 2>>"\$d/reload.log" || exit 1
pid=\$(head -1 "\$d/haproxy/haproxy.pid" 2>/dev/null)
if [ -n "\$pid" ] && kill -0 "\$pid" 2>/dev/null; then
    kill -USR2 "\$pid" || exit 1
else
    haproxy -W -D -f "\$d/haproxy/haproxy.cfg" -p "\$d/haproxy/haproxy.pid" 2>>"\$d/reload.log" || exit 1
fi
EOF
)
    else
        start=$(cat <<EOF
conf="-c \$d/nginx/nginx.conf -p \$d/nginx/"
nginx \$conf -t -q 2>>"\$d/reload.log" || exit 1
if [ -f "\$d/nginx/nginx.pid" ] && kill -0 "\$(cat "\$d/nginx/nginx.pid")" 2>/dev/null; then
    nginx \$conf -s reload 2>>"\$d/reload.log" || exit 1
else
    nginx \$conf 2>>"\$d/reload.log" || exit 1
fi
EOF
)
    fi
    cat >"$d/reload.sh" <<EOF
#!/usr/bin/env bash
set -u
d=$d
$start
want=\$(openssl x509 -in "\$d/certs/cert.pem" -noout -fingerprint -sha256)
for i in \$(seq 100); do
    got=\$(openssl s_client -connect 127.0.0.1:${PORT[$dp]} -cert "\$d/certs/cert.pem" -key "\$d/certs/key.pem" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null)
    [ "\$got" = "\$want" ] && break
    sleep 0.05
done
[ "\$got" = "\$want" ] || { echo "the proxy does not serve the new certificate" >>"\$d/reload.log"; exit 1; }
snap=\$d/client.\$(date +%s%N)
mkdir "\$snap" && cp "\$d/certs/cert.pem" "\$d/certs/key.pem" "\$d/certs/ca-bundle.pem" "\$snap/" || exit 1
ln -sfn "\$snap" "\$d/client.tmp" && mv -T "\$d/client.tmp" "\$d/client"
EOF
    chmod +x "$d/reload.sh"
}

# start_controller: `meshca run --listen 127.0.0.1:$API_PORT`, serving the dataplane API with
# the control-plane CA it keeps in the store; $E2E/cp-ca.pem is what agents get as --ca-file.
CONTROLLER_STARTS=0
start_controller() {
    local i
    "$MESHCA" run --listen "127.0.0.1:$API_PORT" --interval "${CONTROLLER_INTERVAL:-1s}" >>"$E2E/controller.log" 2>&1 &
    CONTROLLER_PID=$!
    for i in $(seq 50); do
        [ "$(grep -c 'serving the dataplane API' "$E2E/controller.log")" -gt "$CONTROLLER_STARTS" ] && break
        kill -0 "$CONTROLLER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$CONTROLLER_PID" 2>/dev/null || die "the controller did not start: $(tail -3 "$E2E/controller.log")"
    CONTROLLER_STARTS=$(grep -c 'serving the dataplane API' "$E2E/controller.log")
    m cp-ca -o pem >"$E2E/cp-ca.pem" || die "cp-ca"
}

start_agent() {
    local dp=$1 d=$E2E/dp/$1
    mkdir -p "$d"
    if [ "$dp" = "$HAPROXY_DP" ]; then haproxy_conf "$dp"; else nginx_conf "$dp"; fi
    reload_script "$dp"
    m token issue -m default -d "$dp" --ttl 1h >"$d/token" || die "token issue $dp"
    "$MESHCA" agent -m default -d "$dp" --out "$d/certs" --server "$API_URL" --ca-file "$E2E/cp-ca.pem" \
        --token-file "$d/token" --reload "$d/reload.sh" >"$d/agent.log" 2>&1 &
    AGENT_PID[$dp]=$!
}

# setup BACKEND...: store, mesh (first backend enabled), dataplanes, controller, agents; waits
# until every dataplane serves a certificate of the first backend.
setup() {
    free_ports
    dataplanes_yaml >"$E2E/dataplanes.yaml"
    write_mesh "$E2E/0-mesh.yaml" "${1%%:*}" "$@"
    apply_ok "$E2E/0-mesh.yaml" "$E2E/dataplanes.yaml"
    [ "${MESHCA_TEST_STORE:-sqlite}" != etcd ] || store_is_the_etcd_member
    start_controller
    local dp
    for dp in "${DPS[@]}"; do start_agent "$dp"; done
    wait_for "every dataplane holds a ${1%%:*} certificate" all_issued "${1%%:*}"
    say "ports: web ${PORT[web]}, backend ${PORT[backend]}, db ${PORT[db]} (${HAPROXY_DP}: HAProxy), API $API_PORT"
}

# store_is_the_etcd_member: the apply went to the scenario's etcd member (it holds the mesh and
# the three dataplanes), not to a SQLite file, so a pass on etcd is really a pass on etcd.
store_is_the_etcd_member() {
    local n
    n=$(curl -s -m 5 -X POST "http://$(etcd_endpoint 0)/v3/kv/range" \
        -d '{"key":"AA==","range_end":"AA==","count_only":true}' |
        python3 -c 'import json, sys; print(json.load(sys.stdin).get("count", 0))')
    if [ "${n:-0}" -lt 4 ] || [ -e "$E2E/store" ]; then
        die "the store is not the etcd member at $(etcd_endpoint 0) ($n keys there)"
    fi
    say "ok: the store is etcd at $(etcd_endpoint 0) ($n keys after the first apply)"
}

pause_agent() { kill -STOP "${AGENT_PID[$1]}" && say "agent $1 paused (SIGSTOP)"; }
resume_agent() { kill -CONT "${AGENT_PID[$1]}" && say "agent $1 resumed (SIGCONT)"; }

# --- the store's view ----------------------------------------------------------------------------
# dp_query PYTHON-EXPR: evaluates EXPR with `dps` = {name: mtls} from `inspect dataplanes -o json`;
# exit 0 when true.
dp_query() {
    m inspect dataplanes -m default -o json 2>/dev/null | python3 -c '
import json, sys
try:
    items = json.load(sys.stdin)
except Exception:
    sys.exit(1)
if isinstance(items, dict):
    items = items.get("items", [])
dps = {i["name"]: i["mtls"] for i in items}
sys.exit(0 if eval(sys.argv[1]) else 1)' "$1"
}
acked='all(v["generation"] > 0 and v["acknowledgedGeneration"] == v["generation"] for v in dps.values())'
all_issued() { dp_query "len(dps) == 3 and all(v[\"issuedBackend\"] == \"$1\" for v in dps.values()) and $acked"; }
all_support() { dp_query "len(dps) == 3 and all(\"$1\" in v[\"supportedBackends\"] for v in dps.values()) and $acked"; }
all_supported_exactly() { dp_query "len(dps) == 3 and all(v[\"supportedBackends\"] == [$2] for v in dps.values()) and $acked"; }
regenerations_at_least() { dp_query "len(dps) == 3 and all(v[\"certificateRegenerations\"] >= $1 for v in dps.values())"; }

# wait_for DESCRIPTION COMMAND...: polls every 0.5 s, at most $WAIT_MAX seconds.
wait_for() {
    local what=$1 deadline=$(($(date +%s) + WAIT_MAX))
    shift
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || {
            m inspect dataplanes -m default
            die "timed out after ${WAIT_MAX}s waiting until $what"
        }
        sleep 0.5
    done
    say "ok: $what"
}

# --- applying ------------------------------------------------------------------------------------
# apply_args FILE... [-- FLAG...]: "-f FILE" for each file, then the flags, into APPLY_ARGS.
apply_args() {
    APPLY_ARGS=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        APPLY_ARGS+=(-f "$1")
        shift
    done
    [ $# -eq 0 ] || { shift; APPLY_ARGS+=("$@"); }
}

# apply_ok FILE... [-- FLAG...]: the apply must succeed.
apply_ok() {
    apply_args "$@"
    if m apply "${APPLY_ARGS[@]}" >"$E2E/apply.out" 2>&1; then
        say "applied ${*##*/}: $(tr '\n' ' ' <"$E2E/apply.out")"
    else
        cat "$E2E/apply.out"
        die "apply ${*##*/} was refused"
    fi
}

# apply_refused CODE NAME FILE... [-- FLAG...]: the apply must exit 1 with a diagnostic CODE
# whose message names NAME (a dataplane, or any text); prints the refusal.
apply_refused() {
    local code=$1 name=$2 rc
    shift 2
    apply_args "$@"
    m apply "${APPLY_ARGS[@]}" -o json >"$E2E/apply.json" 2>"$E2E/apply.err"
    rc=$?
    [ "$rc" -eq 1 ] || { cat "$E2E/apply.json" "$E2E/apply.err"; die "apply ${*##*/}: exit $rc, want 1 (refused)"; }
    python3 - "$E2E/apply.json" "$code" "$name" <<'PY' || { cat "$E2E/apply.json"; die "apply ${*##*/}: no '$code' diagnostic naming '$name'"; }
import json, sys
doc = json.load(open(sys.argv[1]))
hits = [d for d in doc["diagnostics"] if d["code"] == sys.argv[2] and sys.argv[3] in d["message"]]
for d in hits:
    print("  refused as expected (%s): %s" % (d["code"], d["message"]))
sys.exit(0 if hits and not doc["ok"] else 1)
PY
}

# --- the client loop -----------------------------------------------------------------------------
# One request: FROM calls TO with FROM's own loaded certificate and bundle (see the top comment).
request() {
    local from=$1 to=$2 snap resp
    snap=$(readlink -f "$E2E/dp/$from/client") || return 1
    resp=$(printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$to" |
        timeout 5 openssl s_client -connect "127.0.0.1:${PORT[$to]}" -quiet -verify_return_error \
            -cert "$snap/cert.pem" -cert_chain "$snap/cert.pem" -key "$snap/key.pem" -CAfile "$snap/ca-bundle.pem" 2>"$E2E/loop.err") ||
        { printf '%s -> %s: %s\n' "$from" "$to" "$(grep -m1 -E 'verify error|alert|error' "$E2E/loop.err" || echo "exit status, no response")" >>"$E2E/loop.errors"; return 1; }
    case $resp in
        "HTTP/1.1 200"*"$to"*) return 0 ;;
        *) printf '%s -> %s: %s\n' "$from" "$to" "$(head -1 <<<"$resp")" >>"$E2E/loop.errors"; return 1 ;;
    esac
}

# client_loop SECONDS: every $LOOP_SLEEP one request, cycling over the 6 (from, to) pairs, at most
# $LOOP_MAX requests and SECONDS seconds; keeps "requests failed" in $E2E/loop.count.
client_loop() {
    local seconds=$1 n=0 f=0 from to pairs=() deadline
    for from in "${DPS[@]}"; do for to in "${DPS[@]}"; do [ "$from" = "$to" ] || pairs+=("$from $to"); done; done
    deadline=$(($(date +%s) + seconds))
    trap 'exit 0' TERM
    trap - EXIT
    while [ "$n" -lt "$LOOP_MAX" ] && [ "$(date +%s)" -lt "$deadline" ]; do
        set -- ${pairs[$((n % ${#pairs[@]}))]}
        if ! request "$1" "$2"; then
            f=$((f + 1))
            echo "$(date +%T.%N | cut -c1-12) $(tail -1 "$E2E/loop.errors")" >>"$E2E/loop.failures"
        fi
        n=$((n + 1))
        echo "$n $f" >"$E2E/loop.count.tmp" && mv "$E2E/loop.count.tmp" "$E2E/loop.count"
        sleep "$LOOP_SLEEP"
    done
}

start_loop() { # start_loop MAX-SECONDS
    : >"$E2E/loop.errors"
    : >"$E2E/loop.failures"
    echo "0 0" >"$E2E/loop.count"
    client_loop "$1" &
    LOOP_PID=$!
    say "client loop started (a request every ${LOOP_SLEEP}s, at most $LOOP_MAX requests / $1 s)"
}

loop_status() { read -r REQUESTS FAILED <"$E2E/loop.count"; say "requests so far: $REQUESTS, failed: $FAILED"; }

# stop_loop: stops the loop, sets REQUESTS and FAILED, prints them.
stop_loop() {
    stop_pid "$LOOP_PID"
    LOOP_PID=
    read -r REQUESTS FAILED <"$E2E/loop.count"
    say "requests: $REQUESTS, failed: $FAILED"
    if [ "$FAILED" -gt 0 ]; then
        echo "  first failures:"
        head -5 "$E2E/loop.failures" | sed 's/^/    /'
    fi
}

# verify_strict: every dataplane's loaded leaf and chain pass `openssl verify -x509_strict`
# against its own bundle (S5).
verify_strict() {
    local dp d
    for dp in "${DPS[@]}"; do
        d=$(readlink -f "$E2E/dp/$dp/client")
        openssl verify -x509_strict -CAfile "$d/ca-bundle.pem" -untrusted "$d/cert.pem" "$d/cert.pem" >"$E2E/verify.out" 2>&1 ||
            { cat "$E2E/verify.out"; die "$dp: openssl verify -x509_strict refused its leaf and chain"; }
    done
    say "ok: openssl verify -x509_strict accepts every leaf and chain"
}

# store_has_no_dataplane_secrets: a dump of the whole store holds no dataplane private key (of
# any generation the proxies loaded) and no token in the clear (issue 10).
# On etcd: every key and value of the member (a range over the whole key space through the v3
# JSON gateway), and the raw bytes of every file of its data directory (the bbolt database,
# which keeps the old revisions too, and the WAL).
store_has_no_dataplane_secrets() {
    local where=("$E2E/store/meshca.db")
    [ "${MESHCA_TEST_STORE:-sqlite}" != etcd ] || where=(etcd "$(etcd_endpoint 0)" "$ETCD_DIR")
    python3 - "$E2E/dp" "${where[@]}" <<'PY' || die "the store holds a dataplane key or token"
import base64, glob, json, os, sqlite3, sys, urllib.request
flat = lambda x: x.replace("\\n", "").replace("\n", "")
rawflat = lambda x: x.replace(b"\\n", b"").replace(b"\n", b"")
text = []
if sys.argv[2] == "etcd":
    b64 = lambda b: base64.b64encode(b).decode()
    req = urllib.request.Request("http://%s/v3/kv/range" % sys.argv[3],
        data=json.dumps({"key": b64(b"\0"), "range_end": b64(b"\0")}).encode(), method="POST")
    kvs = json.load(urllib.request.urlopen(req, timeout=10)).get("kvs", [])
    for kv in kvs:
        text += [base64.b64decode(kv.get(f, "")).decode("utf-8", "replace") for f in ("key", "value")]
    files = [os.path.join(d, f) for d, _, fs in os.walk(sys.argv[4]) for f in fs]
    assert kvs and files, "nothing read from etcd"
else:
    # Every value of every table as text (values are BLOBs: a plain .dump would show them as
    # hex), and the raw bytes of the database and its WAL.
    db = sys.argv[2]
    c = sqlite3.connect(db)
    for (t,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in c.execute('SELECT * FROM "%s"' % t):
            text += [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row]
    files = [p for p in (db, db + "-wal") if os.path.exists(p)]
text = flat("\n".join(text))
raw = rawflat(b"".join(open(p, "rb").read() for p in files))
# 48 base64 characters from inside the PEM body: past the ASN.1 header every key of one type
# shares (the store legitimately holds CA keys), so they are this key's own bytes. The store's
# JSON escapes newlines: compare without them.
first = lambda pem: "".join(l for l in pem.splitlines() if l and not l.startswith("-----"))[52:100]
keys = glob.glob(os.path.join(sys.argv[1], "*", "client.*", "key.pem"))
certs = glob.glob(os.path.join(sys.argv[1], "*", "client.*", "cert.pem"))
tokens = glob.glob(os.path.join(sys.argv[1], "*", "token"))
assert keys and tokens and certs
# The scan sees values: the dataplanes' certificates are there (public, in their identities).
assert any(first(open(f).read()) in text for f in certs), "the scan does not see stored values"
for k in keys:
    b = first(open(k).read())
    assert b not in text and b.encode() not in raw, "private key %s found in the store" % k
for t in tokens:
    v = open(t).read().strip()
    assert v not in text and v.encode() not in raw, "token %s found in the store" % t
print("  store scan (every value, and the raw database and WAL, %s): %d dataplane keys (every generation loaded) and %d tokens, none in it" % (sys.argv[2].split("/")[-1], len(keys), len(tokens)))
PY
    say "ok: no dataplane private key and no token in the store"
}

# expect_no_failures: the verdict of a rotation that must not break anything.
expect_no_failures() {
    [ "$REQUESTS" -gt 0 ] || die "the client loop made no request"
    [ "$FAILED" -eq 0 ] || die "$FAILED of $REQUESTS requests failed"
    say "PASS"
}
