#!/usr/bin/env bash
# apply-txn-limit.sh - on etcd an apply larger than one atomic transaction (the cluster's
# --max-txn-ops) is refused as a whole, exit 1, naming the counts, instead of being split into
# several transactions that could leave part of it stored. Suite etcd (MESHCA_TEST_STORE=etcd).
source "$(dirname "$0")/lib.sh"
[ -n "$TEST_STORE_URL" ] || { echo "SKIP: needs MESHCA_TEST_STORE=etcd (SQLite's limit is $((1024 * 1024)) ops)"; exit 77; }
# The cluster's default is 128 ops per txn; the URL tells meshca a smaller one to test with.
export MESHCA_STORE="$TEST_STORE_URL?max-txn-ops=4"

{
    printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n'
    for i in 1 2 3 4 5; do
        printf -- '---\ntype: Dataplane\nmesh: default\nname: dp-%d\nnetworking: {address: 127.0.0.1, inbound: [{port: %d, tags: {kuma.io/service: s%d}}]}\n' \
            "$i" $((8000 + i)) "$i"
    done
} >"$WORK/six.yaml"
run apply -f "$WORK/six.yaml" --dry-run
check "dry run: an apply of 6 objects over a limit of 4 is refused, exit 1" exit_is 1
check "dry run: says txn-too-large with both counts and the flag" \
    err_has "this apply writes 6 objects, more than the store applies atomically (4: etcd's --max-txn-ops"
run apply -f "$WORK/six.yaml"
check "apply of 6 objects over a limit of 4: refused, exit 1" exit_is 1
check "apply: nothing applied" err_has "nothing applied: 1 error"
run get meshes
check "nothing of it was stored" bash -c "! grep -q default '$WORK/out'"
run apply -f "$WORK/six.yaml" -o json
check "-o json: the code txn-too-large" json_has txn-too-large

# Within the limit: stored, all at once.
head -n 7 "$WORK/six.yaml" >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "an apply within the limit is stored" exit_is 0
awk 'NR > 7' "$WORK/six.yaml" | sed '1d' >"$WORK/dps.yaml"
run apply -f "$WORK/dps.yaml"
check "5 dataplanes over a limit of 4: refused" exit_is 1
run get dataplanes -m default
check "none of the 5 dataplanes was stored" bash -c "! grep -q dp- '$WORK/out'"

echo "# $passed passed, $failed failed"
[ "$failed" -eq 0 ]
