#!/usr/bin/env bash
# api-fd-flood.sh - a flood of connections that exhausts the controller's file descriptors
# (`ulimit -n 64`, 120 idle connections): accept() fails with EMFILE, and the controller pauses
# accepting (500 ms at a time) instead of calling accept() again in a loop that took its CPU and
# wrote libevent's "Error from accept() call" once per call (100 MB of log in 6 s). It says so
# once, keeps serving a connection it already had, and accepts again once the flood is gone.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
cd "$WORK" || exit 2
MESHCA=$(readlink -f "$MESHCA")
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
mkdir -p "$WORK/store" && chmod 700 "$WORK/store"

mesh_fixture >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0
# The controller alone gets the low limit (a subshell's ulimit, then exec).
port=$(free_port)
( ulimit -n 64 && exec "$MESHCA" run --listen "127.0.0.1:$port" ) >>"$CTL_LOG" 2>&1 &
CTL_PID=$!
for _ in $(seq 100); do grep -q "serving the dataplane API" "$CTL_LOG" 2>/dev/null && break; sleep 0.1; done
API_URL="https://127.0.0.1:$port"
"$MESHCA" cp-ca -o pem >"$WORK/cp-ca.pem"
check "set-up: the controller serves" grep -q "serving the dataplane API on $API_URL" "$CTL_LOG"

# One TLS connection made before the flood, used during it; then 120 plain connections held 3 s.
python3 - "$port" "$WORK/cp-ca.pem" >"$WORK/flood.out" 2>&1 <<'PY'
import socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
kept = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                       server_hostname="127.0.0.1")
flood = []
for _ in range(120):
    try:
        flood.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    except OSError:
        break
print("flood", len(flood))
time.sleep(1.5)  # the controller is out of descriptors meanwhile
kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
print("kept", kept.recv(4096).split(b"\r\n")[0].decode())
time.sleep(1.5)
for s in flood:
    s.close()
PY
check "the flood got its connections (the backlog holds what is not accepted)" grep -q "^flood 120$" "$WORK/flood.out"
check "a connection made before the flood is served during it" grep -qx "kept HTTP/1.1 200 OK" "$WORK/flood.out"
accept_errors=$(grep -c "Error from accept() call" "$CTL_LOG")
check "no accept() warning per call (got $accept_errors lines)" test "$accept_errors" -eq 0
check "the pause said once" \
    test "$(grep -c "api: cannot accept connections: Too many open files; accepting again every 500 ms" "$CTL_LOG")" -eq 1
# Accepting again: a new connection (bounded: the flood's descriptors are freed as they close).
ok=
for _ in $(seq 50); do
    curl -s --max-time 5 --cacert "$WORK/cp-ca.pem" "$API_URL/healthz" | grep -q '"ok"' && { ok=1; break; }
    sleep 0.2
done
check "a new connection is accepted once the flood is gone" test -n "$ok"
check "the controller still runs" kill -0 "$CTL_PID"
check "its log stayed small ($(wc -c <"$CTL_LOG") bytes)" test "$(wc -c <"$CTL_LOG")" -lt 100000

finish
