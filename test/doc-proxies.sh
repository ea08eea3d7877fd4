#!/usr/bin/env bash
# doc-proxies.sh - runs doc/proxies.md: its nginx server block and HAProxy frontend, the HAProxy
# reload script and both `meshca agent` commands, with this run's paths and ports and a reload
# in place of systemd; then the page's openssl s_client calls between the two proxies, before
# and after a CA switch.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
: "${SOURCE_ROOT:?set SOURCE_ROOT to the top of the source tree}"
command -v nginx >/dev/null && command -v haproxy >/dev/null || { echo "nginx or haproxy not installed (tools/deps.sh)"; exit 77; }
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
export PATH="$(dirname "$MESHCA"):$PATH"   # the page says 'meshca'
NG_AGENT=
HA_AGENT=
cleanup() {
    [ -n "$NG_AGENT" ] && kill "$NG_AGENT" 2>/dev/null
    [ -n "$HA_AGENT" ] && kill "$HA_AGENT" 2>/dev/null
    [ -s "$WORK/nginx/nginx.pid" ] && kill -QUIT "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null
    [ -s "$WORK/haproxy/haproxy.pid" ] && kill -TERM "$(head -1 "$WORK/haproxy/haproxy.pid")" 2>/dev/null
    stop_controller KILL
    sleep 0.3
    rm -rf "$WORK"
}
trap cleanup EXIT
DOC="$SOURCE_ROOT/doc/proxies.md"

# fence LANG N: the Nth (0-based) ```LANG block of the page.
fence() {
    python3 - "$DOC" "$1" "$2" <<'PY'
import re, sys
blocks = re.findall(r"```" + re.escape(sys.argv[2]) + r"\n(.*?)```", open(sys.argv[1]).read(), re.S)
print(blocks[int(sys.argv[3])], end="")
PY
}

read -r NPORT HPORT < <(python3 "$SOURCE_ROOT/test/free-ports.py" 2 | tr '\n' ' ')
mkdir -p "$WORK/nginx/tmp" "$WORK/haproxy" "$WORK/nginx-mesh" "$WORK/haproxy-mesh"
NGINX="nginx -c $WORK/nginx/nginx.conf"
HAPID="$WORK/haproxy/haproxy.pid"
# localize: the page's places and ports become this run's; systemd's reload becomes the
# proxies' own (starting them the first time, as reload-or-restart does).
LOCALIZE=$(cat <<'PY'
import sys
work, api, nport, hport, nginx, hapid = sys.argv[1:]
text = sys.stdin.read()
for old, new in [
    ("/etc/nginx/mesh", work + "/nginx-mesh"),
    ("/etc/haproxy/mesh", work + "/haproxy-mesh"),
    ("/etc/haproxy/db-01.pem", work + "/haproxy/db-01.pem"),
    ("/etc/haproxy/haproxy.cfg", work + "/haproxy/haproxy.cfg"),
    ("/etc/meshca/cp-ca.pem", work + "/cp-ca.pem"),
    ("/etc/meshca/web-01.token", work + "/web-01.token"),
    ("/etc/meshca/db-01.token", work + "/db-01.token"),
    ("/etc/meshca/haproxy-reload.sh", work + "/haproxy-reload.sh"),
    ("https://10.0.0.11:5690", api),
    ("listen 8443 ssl", "listen 127.0.0.1:%s ssl" % nport),
    ("bind :9443 ssl", "bind 127.0.0.1:%s ssl" % hport),
    ("127.0.0.1:8443", "127.0.0.1:" + nport),
    ("127.0.0.1:9443", "127.0.0.1:" + hport),
    ("nginx -t -q && systemctl reload-or-restart nginx",
     "%s -t -q && { %s -s reload 2>/dev/null || %s; }" % (nginx, nginx, nginx)),
    ("\nsystemctl reload-or-restart haproxy\n",
     '\nif [ -s %s ] && kill -0 "$(head -1 %s)" 2>/dev/null; then kill -USR2 "$(head -1 %s)"; '
     'else haproxy -W -D -f %s/haproxy/haproxy.cfg -p %s; fi\n' % (hapid, hapid, hapid, work, hapid)),
]:
    text = text.replace(old, new)
sys.stdout.write(text)
PY
)
localize() { python3 -c "$LOCALIZE" "$WORK" "$API_URL" "$NPORT" "$HPORT" "$NGINX" "$HAPID"; }

mesh_fixture web-01:8443:web db-01:9443:db >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0
start_controller --interval 1s
check "set-up: the controller serves the API" grep -q "serving the dataplane API on $API_URL" "$CTL_LOG"
"$MESHCA" token issue -m default -d web-01 --out "$WORK/web-01.token"
"$MESHCA" token issue -m default -d db-01 --out "$WORK/db-01.token"

# nginx: the page's server block inside a main configuration of this run.
{
    printf 'daemon on;\npid %s/nginx/nginx.pid;\nerror_log %s/nginx/error.log notice;\n' "$WORK" "$WORK"
    printf 'events { worker_connections 64; }\nhttp {\n    access_log %s/nginx/access.log;\n' "$WORK"
    printf '    client_body_temp_path %s/nginx/tmp/body;\n    proxy_temp_path %s/nginx/tmp/proxy;\n' "$WORK" "$WORK"
    fence nginx 0 | localize
    printf '}\n'
} >"$WORK/nginx/nginx.conf"
check "nginx block: taken from the page" grep -q "ssl_verify_client       on;" "$WORK/nginx/nginx.conf"
# HAProxy: the page's frontend after a global and defaults section of this run.
{
    printf 'global\n    master-worker\n    pidfile %s\n' "$HAPID"
    printf 'defaults\n    timeout connect 5s\n    timeout client 10s\n    timeout server 10s\n'
    fence haproxy 0 | localize
} >"$WORK/haproxy/haproxy.cfg"
check "haproxy block: taken from the page" grep -q "verify required" "$WORK/haproxy/haproxy.cfg"
fence sh 1 | localize >"$WORK/haproxy-reload.sh"
chmod 700 "$WORK/haproxy-reload.sh"
check "haproxy reload script: taken from the page, with its combined file" \
    grep -q "cat \"\$d/cert.pem\" \"\$d/key.pem\"" "$WORK/haproxy-reload.sh"

# The page's two agent commands (each ends with '&'), run as printed in this shell.
fence sh 0 | localize >"$WORK/nginx-agent.sh"
fence sh 2 | localize >"$WORK/haproxy-agent.sh"
source "$WORK/nginx-agent.sh" >"$WORK/nginx-agent.log" 2>&1
NG_AGENT=$!
source "$WORK/haproxy-agent.sh" >"$WORK/haproxy-agent.log" 2>&1
HA_AGENT=$!
# acked DP LOG N: the agent's log says generation N or a later one is loaded (at most 30 s).
acked() {
    local i
    for i in $(seq 300); do
        grep -oE "default/$1: generation [0-9]+ loaded and acknowledged" "$2" |
            awk -v n="$3" '{ if ($3 + 0 >= n) found = 1 } END { exit !found }' && return 0
        sleep 0.1
    done
    return 1
}
check "nginx agent: generation 1 loaded by nginx and acknowledged" acked web-01 "$WORK/nginx-agent.log" 1
check "haproxy agent: generation 1 loaded by HAProxy and acknowledged" acked db-01 "$WORK/haproxy-agent.log" 1

# The page's checks: each proxy's files call the other proxy.
fence sh 3 | localize >"$WORK/calls.sh"
calls() { (cd "$WORK" && timeout 20 bash "$WORK/calls.sh") >"$WORK/out" 2>"$WORK/err"; rc=$?; }
calls
check "calls: nginx answers db-01's certificate" bash -c "grep -qx 'web-01' '$WORK/out'"
check "calls: HAProxy answers web-01's certificate" bash -c "grep -qx 'db-01' '$WORK/out'"
printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$NPORT" -quiet \
    -verify_return_error -CAfile "$WORK/haproxy-mesh/db-01/ca-bundle.pem" >"$WORK/out" 2>/dev/null
check "no client certificate: nginx answers 400 as the page says" out_has "No required SSL certificate was sent"

# A switch to ca-2: the same calls still work, now with ca-2 certificates.
printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n' >"$WORK/add.yaml"
run apply -f "$WORK/add.yaml"
check "add ca-2: applied" exit_is 0
check "add ca-2: nginx loaded the new bundle" acked web-01 "$WORK/nginx-agent.log" 2
check "add ca-2: HAProxy loaded the new bundle" acked db-01 "$WORK/haproxy-agent.log" 2
sed 's/enabledBackend: ca-1/enabledBackend: ca-2/' "$WORK/add.yaml" >"$WORK/switch.yaml"
for i in $(seq 100); do
    run apply -f "$WORK/switch.yaml"
    [ "$rc" -eq 0 ] && break
    sleep 0.2
done
check "switch to ca-2: applied once both proxies trust it" exit_is 0
check "switch: nginx loaded a ca-2 certificate" acked web-01 "$WORK/nginx-agent.log" 3
check "switch: HAProxy loaded a ca-2 certificate" acked db-01 "$WORK/haproxy-agent.log" 3
run inspect dataplanes
check "switch: both dataplanes hold ca-2 certificates" \
    bash -c "[ \$(grep -cE '^default +(web|db)-01 +ca-2 ' '$WORK/out') -eq 2 ]"
calls
check "after the switch: nginx still answers db-01's certificate" bash -c "grep -qx 'web-01' '$WORK/out'"
check "after the switch: HAProxy still answers web-01's certificate" bash -c "grep -qx 'db-01' '$WORK/out'"

finish
