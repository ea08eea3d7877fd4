# etcd-lib.sh - starts real etcd members (Debian etcd-server) on 127.0.0.1 for integration tests; stops them on exit.
# Sourced. Needs /usr/bin/etcd, curl and python3 (free ports).
#   etcd_start [N]     start a new N-member cluster (default 1, at most 3), wait until every member
#                      answers with a leader; sets ETCD_ENDPOINTS ("127.0.0.1:C1,...") and
#                      ETCD_URL ("etcd://$ETCD_ENDPOINTS"). Returns 1 (with the logs) on failure.
#   etcd_kill I        SIGKILL member I (0-based) and reap it.
#   etcd_restart I     start member I again on its data dir and ports; waits until healthy.
#   etcd_stop          kill every member and remove the data dirs (also run on EXIT).
#   etcd_endpoint I    print member I's HOST:PORT.
# A script skips itself (exit 77) when etcd is missing: `etcd_require || exit 77`.

ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
ETCD_DIR=
ETCD_ENDPOINTS=
ETCD_URL=
_etcd_n=0
_etcd_pids=()
_etcd_client_ports=()
_etcd_peer_ports=()

etcd_require() {
    if [ ! -x "$ETCD_BIN" ]; then
        echo "SKIP: $ETCD_BIN is not installed (Debian package etcd-server; tools/deps.sh installs it)"
        return 1
    fi
}

# Chain our cleanup in front of whatever EXIT trap the script (or lib.sh) already set.
_etcd_prev_trap=$(trap -p EXIT | sed -e "s/^trap -- '\(.*\)' EXIT\$/\1/")
# shellcheck disable=SC2064
trap "etcd_stop; ${_etcd_prev_trap:-:}" EXIT

etcd_endpoint() { echo "127.0.0.1:${_etcd_client_ports[$1]}"; }

# Free ports below the kernel's ephemeral range, reserved against other tests (test/free-ports.py).
_etcd_free_ports() {
    python3 "$(dirname "${BASH_SOURCE[0]}")/free-ports.py" "$1"
}

_etcd_spawn() {
    local i=$1 cluster="" j
    for ((j = 0; j < _etcd_n; j++)); do
        cluster+="${cluster:+,}m$j=http://127.0.0.1:${_etcd_peer_ports[$j]}"
    done
    # Short heartbeat and election, so failover tests take about a second, not ten.
    "$ETCD_BIN" --name "m$i" --data-dir "$ETCD_DIR/m$i" \
        --listen-client-urls "http://127.0.0.1:${_etcd_client_ports[$i]}" \
        --advertise-client-urls "http://127.0.0.1:${_etcd_client_ports[$i]}" \
        --listen-peer-urls "http://127.0.0.1:${_etcd_peer_ports[$i]}" \
        --initial-advertise-peer-urls "http://127.0.0.1:${_etcd_peer_ports[$i]}" \
        --initial-cluster "$cluster" --initial-cluster-state new \
        --initial-cluster-token "meshca-test-$$" \
        --heartbeat-interval 50 --election-timeout 500 \
        --logger zap --log-level warn >>"$ETCD_DIR/m$i.log" 2>&1 &
    _etcd_pids[$i]=$!
}

# Bounded: 200 tries, 100 ms apart. Healthy = answers /v3/maintenance/status and names a leader.
_etcd_wait() {
    local i=$1 try out
    for ((try = 0; try < 200; try++)); do
        if ! kill -0 "${_etcd_pids[$i]}" 2>/dev/null; then
            echo "etcd member $i exited while starting:" >&2
            tail -n 20 "$ETCD_DIR/m$i.log" >&2
            return 1
        fi
        out=$(curl -s -m 1 -X POST "http://$(etcd_endpoint "$i")/v3/maintenance/status" -d '{}' 2>/dev/null)
        case "$out" in *'"leader":"'[1-9]*) return 0 ;; esac
        sleep 0.1
    done
    echo "etcd member $i not healthy after 20 s:" >&2
    tail -n 20 "$ETCD_DIR/m$i.log" >&2
    return 1
}

etcd_start() {
    local n=${1:-1} ports i
    [ "$n" -ge 1 ] && [ "$n" -le 3 ] || { echo "etcd_start: 1 to 3 members" >&2; return 1; }
    etcd_stop
    ETCD_DIR=$(mktemp -d /tmp/meshca-etcd-XXXXXX)
    _etcd_n=$n
    read -r -a ports <<<"$(_etcd_free_ports $((2 * n)))"
    ETCD_ENDPOINTS=
    for ((i = 0; i < n; i++)); do
        _etcd_client_ports[$i]=${ports[$((2 * i))]}
        _etcd_peer_ports[$i]=${ports[$((2 * i + 1))]}
        ETCD_ENDPOINTS+="${ETCD_ENDPOINTS:+,}$(etcd_endpoint "$i")"
    done
    ETCD_URL="etcd://$ETCD_ENDPOINTS"
    for ((i = 0; i < n; i++)); do _etcd_spawn "$i"; done
    for ((i = 0; i < n; i++)); do _etcd_wait "$i" || { etcd_stop; return 1; }; done
}

etcd_kill() {
    local pid=${_etcd_pids[$1]:-}
    if [ -n "$pid" ]; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        _etcd_pids[$1]=
    fi
}

etcd_restart() {
    etcd_kill "$1"
    _etcd_spawn "$1"
    _etcd_wait "$1"
}

etcd_stop() {
    local i
    for ((i = 0; i < _etcd_n; i++)); do etcd_kill "$i"; done
    _etcd_n=0
    if [ -n "$ETCD_DIR" ]; then
        rm -rf "$ETCD_DIR"
        ETCD_DIR=
    fi
}
