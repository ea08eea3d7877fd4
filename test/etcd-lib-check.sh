#!/usr/bin/env bash
# etcd-lib-check.sh - checks test/etcd-lib.sh itself: one and three members start, a killed member's data survives a restart, nothing outlives the script.
set -uo pipefail
here=$(dirname "$0")
source "$here/etcd-lib.sh"
etcd_require || exit 77
failed=0
check() { if "${@:2}"; then echo "ok - $1"; else echo "FAIL - $1"; failed=$((failed + 1)); fi; }

# get ENDPOINT KEY_B64: prints the stored value (base64) of the key, via the JSON gateway.
get() { curl -s -m 5 -X POST "http://$1/v3/kv/range" -d "{\"key\":\"$2\"}" | python3 -c '
import json, sys
kvs = json.load(sys.stdin).get("kvs", [])
print(kvs[0]["value"] if kvs else "")'; }
put() { curl -s -m 5 -X POST "http://$1/v3/kv/put" -d "{\"key\":\"$2\",\"value\":\"$3\"}" >/dev/null; }

check "one member starts and answers" etcd_start 1
check "ETCD_URL is etcd:// with the one endpoint" test "$ETCD_URL" = "etcd://$(etcd_endpoint 0)"
put "$(etcd_endpoint 0)" YQ== MQ==
check "a write is readable" test "$(get "$(etcd_endpoint 0)" YQ==)" = MQ==
dir1=$ETCD_DIR

check "three members start" etcd_start 3
check "the one-member cluster was stopped and removed first" test ! -e "$dir1"
check "three distinct endpoints" test "$(tr ',' '\n' <<<"$ETCD_ENDPOINTS" | sort -u | wc -l)" -eq 3
put "$(etcd_endpoint 0)" Yg== Mg==
etcd_kill 0
# Member 0 may have led: the other two elect a new leader first (bounded: 10 s), and a read
# during the election fails rather than answers.
served() { for _ in $(seq 100); do [ "$(get "$(etcd_endpoint 1)" Yg==)" = Mg== ] && return 0; sleep 0.1; done; return 1; }
check "with member 0 killed, member 1 serves its write" served
check "member 0 restarts on its data dir" etcd_restart 0
check "and has the write" test "$(get "$(etcd_endpoint 0)" Yg==)" = Mg==
pids=$(for i in 0 1 2; do echo "${_etcd_pids[$i]}"; done)
dir3=$ETCD_DIR
etcd_stop
alive=0
for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
check "etcd_stop kills every member" test "$alive" -eq 0
check "and removes the data dirs" test ! -e "$dir3"
echo "$failed failed"
[ "$failed" -eq 0 ]
