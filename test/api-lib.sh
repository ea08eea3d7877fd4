# api-lib.sh - a controller serving the dataplane API, and agents reaching it (tokens, cp-ca),
# for the integration tests. Sourced after lib.sh (uses $WORK and $MESHCA; the store is the
# script's MESHCA_STORE). Agents never open the store.

# free_port: a TCP port free on 127.0.0.1 right now.
free_port() {
    python3 "$(dirname "${BASH_SOURCE[0]}")/free-ports.py" 1
}

CTL_PID=
API_URL=
CTL_LOG="$WORK/controller.log"

# start_controller [RUN-FLAG...]: `meshca run --listen 127.0.0.1:<free port>` (or $CTL_PORT) in
# the background; waits until it serves, sets API_URL and writes the control-plane CA to
# $WORK/cp-ca.pem.
start_controller() {
    local port=${CTL_PORT:-} i n
    stop_controller   # one controller per script: a second start must not orphan the first
    [ -n "$port" ] || port=$(free_port)
    n=$(grep -c "serving the dataplane API" "$CTL_LOG" 2>/dev/null)
    "$MESHCA" run --listen "127.0.0.1:$port" "$@" >>"$CTL_LOG" 2>&1 &
    CTL_PID=$!
    for i in $(seq 100); do
        [ "$(grep -c "serving the dataplane API" "$CTL_LOG" 2>/dev/null)" -gt "${n:-0}" ] && break
        kill -0 "$CTL_PID" 2>/dev/null || break
        sleep 0.1
    done
    API_URL="https://127.0.0.1:$port"
    "$MESHCA" cp-ca -o pem >"$WORK/cp-ca.pem"
}

# stop_controller [SIGNAL]: TERM (or SIGNAL) and wait.
stop_controller() {
    [ -n "$CTL_PID" ] || return 0
    kill -"${1:-TERM}" "$CTL_PID" 2>/dev/null
    wait "$CTL_PID" 2>/dev/null
    CTL_PID=
}

# token_for DP [MESH]: a dataplane token in $WORK/tokens/MESH.DP (issued once).
token_for() {
    local dp=$1 mesh=${2:-default} f
    f="$WORK/tokens/$mesh.$dp"
    mkdir -p "$WORK/tokens"
    [ -s "$f" ] || "$MESHCA" token issue -m "$mesh" -d "$dp" >"$f"
    echo "$f"
}

# agent_once DP [MESH [FLAG...]]: one agent run until a generation is loaded and acknowledged,
# files in $WORK/dp/DP (reload: true). Output in $WORK/agent.out, exit code in $agent_rc.
agent_once() {
    local dp=$1 mesh=${2:-default}
    shift $(($# >= 2 ? 2 : 1))
    mkdir -p "$WORK/dp"
    timeout 60 "$MESHCA" agent -m "$mesh" -d "$dp" --out "$WORK/dp/$dp" --server "$API_URL" \
        --ca-file "$WORK/cp-ca.pem" --token-file "$(token_for "$dp" "$mesh")" --reload "${RELOAD:-true}" \
        --once "$@" >"$WORK/agent.out" 2>&1
    agent_rc=$?
}

# settle: passes until one has nothing left to do (the controller may run them too); every
# pass's output is kept in $WORK/settle.log.
settle() {
    local i
    for i in $(seq 20); do
        "$MESHCA" reconcile --once >"$WORK/settle.out" 2>&1
        cat "$WORK/settle.out" >>"$WORK/settle.log"
        grep -q ' 0 issued, 0 reissued, 0 renewed, 0 rebundled' "$WORK/settle.out" &&
            ! grep -q conflict "$WORK/settle.out" && return 0
        sleep 0.1
    done
    return 1
}

trap 'stop_controller; rm -rf "$WORK"' EXIT

# mesh_fixture [NAME[:PORT[:SERVICE]]]...: the YAML most API scripts start from, on stdout: Mesh
# "default" with one builtin backend ca-1, and these Dataplanes on 127.0.0.1 (default: web-01,
# port 8443, service web).
mesh_fixture() {
    printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n'
    [ $# -gt 0 ] || set -- web-01
    local dp name port service
    for dp in "$@"; do
        IFS=: read -r name port service <<<"$dp"
        printf -- '---\ntype: Dataplane\nmesh: default\nname: %s\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: %s\n    tags: {kuma.io/service: %s}\n' \
            "$name" "${port:-8443}" "${service:-web}"
    done
}
