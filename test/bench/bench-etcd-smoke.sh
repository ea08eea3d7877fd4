#!/usr/bin/env bash
# bench-etcd-smoke.sh - bench-reconcile's etcd mode (BENCH_STORE, as bench-all runs it) keeps working:
# on a fresh one-member etcd, 300 dataplanes issued, re-signed, then a no-op pass with no
# signature and no write, every object in the member (not in a SQLite file); a second run on the
# same member is refused (the bench needs an empty store). Asserts no time. Suite bench-smoke.
# Usage: bench-etcd-smoke.sh BENCH-RECONCILE
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../etcd-lib.sh"
bench=${1:?usage: bench-etcd-smoke.sh BENCH-RECONCILE}
etcd_require || exit 77
etcd_start 1 || exit 2

cd "$WORK" || exit 2
BENCH_STORE=$ETCD_URL timeout 120 "$bench" 300 >"$WORK/out" 2>"$WORK/err"
rc=$?
check "bench-reconcile 300 on etcd exits 0" exit_is 0
check "it reports the etcd store, 300 issued, 300 re-signed, a no-op pass of 0 signatures and 0 writes" \
    python3 - "$WORK/out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
r = d["reconcile"][0]
sys.exit(0 if d["store"] == "etcd" and r["dataplanes"] == 300 and r["csr_pass"]["issued"] == 300
         and r["full"]["reissued"] == 300 and r["noop"]["signatures"] == 0
         and r["noop"]["writes"] == 0 and r["noop"]["unchanged"] == 300 else 1)
PY
count() { # count PREFIX: keys under PREFIX in the member
    curl -s -m 10 -X POST "http://$(etcd_endpoint 0)/v3/kv/range" \
        -d "{\"key\":\"$(printf '%s' "$1" | base64 -w0)\",\"range_end\":\"$(printf '%s' "$1" | python3 -c 'import sys; p = sys.stdin.read().encode(); print(__import__("base64").b64encode(p[:-1] + bytes([p[-1] + 1])).decode())')\",\"count_only\":true}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin).get("count", 0))'
}
n_dp=$(count /meshca/dataplanes/)
n_id=$(count /meshca/identities/)
check "the passes ran on the etcd member: 300 dataplanes and 300 identities there (got $n_dp, $n_id)" \
    test "$n_dp" = 300 -a "$n_id" = 300

BENCH_STORE=$ETCD_URL timeout 120 "$bench" 300 >"$WORK/out" 2>"$WORK/err"
rc=$?
check "a second run on the same member is refused (exit 2)" exit_is 2
check "it says the store must be empty" err_has "holds 300 dataplanes: the bench needs an empty store"
finish
