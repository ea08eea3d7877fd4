#!/usr/bin/env bash
# readyz.sh - GET /readyz against a running controller: 200 while it can serve; 503 with
# {"error":{"code":"store-unreachable","message"}} once its SQLite store is removed under it
# (the directory moved away, as test/faults.sh does) while /healthz (liveness) stays 200; 200
# again once the store is put back. A second replica (a follower that sees the leader) is ready.
# Suite integration; about 5 s.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
export MESHCA_STORE="sqlite://$WORK/store/meshca.db"
db=$WORK/store/meshca.db
F_PID=
trap '[ -n "$F_PID" ] && kill "$F_PID" 2>/dev/null; stop_controller; rm -rf "$WORK"' EXIT

# probe URL-PATH [PORT-URL]: GET it; the status in $code, the body in $WORK/probe.
probe() {
    code=$(curl -s -m 10 -o "$WORK/probe" -w '%{http_code}' --cacert "$WORK/cp-ca.pem" "${2:-$API_URL}$1")
}
# wait_code PATH CODE [URL]: probes until the status is CODE (bounded: 300 probes, 0.1 s apart).
wait_code() {
    local i
    for i in $(seq 300); do
        probe "$1" "${3:-}"
        [ "$code" = "$2" ] && return 0
        sleep 0.1
    done
    echo "  $1: $code, expected $2: $(cat "$WORK/probe")"
    return 1
}
# body_is PYTHON-EXPR: the last body, parsed as JSON into d, makes the expression true.
body_is() {
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
        "$WORK/probe" "$1" || { echo "  body: $(cat "$WORK/probe")"; return 1; }
}

cat >"$WORK/mesh.yaml" <<'YAML'
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - {name: ca-1, type: builtin}
YAML
run apply -f "$WORK/mesh.yaml"
check "set-up: a mesh is applied" exit_is 0
start_controller --interval 500ms
check "the controller serves" kill -0 "$CTL_PID"

probe /readyz
check "a leader with its store: /readyz 200" test "$code" = 200
check '... body {"status":"ready"}' body_is 'd == {"status": "ready"}'

mv "$WORK/store" "$WORK/store.away"
check "store removed: /readyz turns 503" wait_code /readyz 503
check "... error code store-unreachable (SPEC S13 error shape)" \
    body_is 'd["error"]["code"] == "store-unreachable" and set(d) == {"error"} and set(d["error"]) == {"code", "message"}'
check "... the message names the store and the cause" \
    body_is "d['error']['message'].startswith('the store failed on its last attempt: ') and \"store '$db'\" in d['error']['message'] and 'removed or replaced while in use' in d['error']['message']"
probe /healthz
check "store removed: /healthz (liveness) still 200" test "$code" = 200
mv "$WORK/store.away" "$WORK/store"
check "store put back: /readyz 200 again" wait_code /readyz 200
check '... body {"status":"ready"}' body_is 'd == {"status": "ready"}'

# A follower on the same store sees the leader: ready too.
fport=$(free_port)
"$MESHCA" run --listen "127.0.0.1:$fport" --interval 500ms >"$WORK/follower.log" 2>&1 &
F_PID=$!
for _ in $(seq 100); do grep -q "following" "$WORK/follower.log" && break; sleep 0.1; done
check "a second replica follows the first" grep -q "following " "$WORK/follower.log"
check "the follower, seeing the leader: /readyz 200" wait_code /readyz 200 "https://127.0.0.1:$fport"
kill "$F_PID"
wait "$F_PID" 2>/dev/null
F_PID=

check "the log holds no token or key" bash -c "! grep -q 'PRIVATE KEY' '$CTL_LOG' '$WORK/follower.log'"
finish
