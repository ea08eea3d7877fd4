#!/usr/bin/env bash
# api-csr-commit.sh - CSR POSTs through `meshca run` are group-committed off the loop (issue 13):
# many sent at once all end signed with their own keys; a 202 is sent only once the key is
# durable, so a kill -9 right after the first 202s loses none of them; a commit that fails is
# answered 503, never 202, and leaves no key behind.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
cd "$WORK" || exit 2
MESHCA=$(readlink -f "$MESHCA")
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
N=24
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; stop_controller KILL; rm -rf "$WORK"' EXIT

{
    printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n'
    for i in $(seq -w 1 $N); do
        printf -- '---\ntype: Dataplane\nmesh: default\nname: dp-%s\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 8443\n    tags: {kuma.io/service: web}\n' "$i"
    done
} >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0

# csr ROUND DP: a fresh P-256 key and its CSR as the API body, in $WORK/csr/ROUND.DP.*
csr() {
    local f="$WORK/csr/$1.$2"
    mkdir -p "$WORK/csr"
    openssl ecparam -name prime256v1 -genkey -noout -out "$f.key" 2>/dev/null &&
        openssl req -new -key "$f.key" -subj / -out "$f.pem" 2>/dev/null &&
        python3 -c 'import json, sys; print(json.dumps({"csr": open(sys.argv[1]).read()}))' "$f.pem" >"$f.json"
}
# post ROUND DP: POSTs that CSR; the status in $WORK/csr/ROUND.DP.code, the body in .out.
post() {
    local f="$WORK/csr/$1.$2"
    curl -sS --max-time 30 --cacert "$WORK/cp-ca.pem" -H "Authorization: Bearer $(cat "$(token_for "$2")")" \
        -H 'Content-Type: application/json' --data-binary @"$f.json" -o "$f.out" -w '%{http_code}\n' \
        "$API_URL/v1/meshes/default/dataplanes/$2/csr" >"$f.code" 2>/dev/null
}
# signed_with ROUND DP: the identity the API serves holds a certificate for that CSR's key
# (bounded: the controller signs on its next pass).
signed_with() {
    local f="$WORK/csr/$1.$2" i
    for i in $(seq 100); do
        curl -sS --max-time 10 --cacert "$WORK/cp-ca.pem" -H "Authorization: Bearer $(cat "$(token_for "$2")")" \
            -o "$f.identity" "$API_URL/v1/meshes/default/dataplanes/$2/identity" 2>/dev/null &&
            python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["certificate"])' "$f.identity" >"$f.crt" 2>/dev/null &&
            [ "$(openssl x509 -in "$f.crt" -noout -pubkey 2>/dev/null)" = "$(openssl req -in "$f.pem" -noout -pubkey 2>/dev/null)" ] &&
            return 0
        sleep 0.1
    done
    return 1
}
for i in $(seq -w 1 $N); do
    token_for "dp-$i" >/dev/null
    csr 1 "dp-$i" && csr 2 "dp-$i" && csr 3 "dp-$i" || { echo "FAIL - cannot make CSRs with openssl"; exit 2; }
done

# 1. A commit that fails (failpoint csr.commit): 503 naming the store, and no key stored.
MESHCA_FAILPOINTS=csr.commit=error start_controller --interval 1h
post 1 dp-01
check "a failed commit is answered 503, not 202" [ "$(cat "$WORK/csr/1.dp-01.code")" = 503 ]
check "its error says the key could not be stored" grep -q '"code":"unavailable".*cannot store the key of .default/dp-01' "$WORK/csr/1.dp-01.out"
stop_controller
run reconcile --once
check "no key of it reached the store: the next pass issues nothing" grep -q ' 0 issued' "$WORK/out"

# 2. All at once, each on its own connection: every one 202, every one signed with its key.
start_controller --interval 1h
curl -sS --max-time 10 --cacert "$WORK/cp-ca.pem" -H "Authorization: Bearer $(cat "$(token_for dp-01)")" \
    -o "$WORK/id01.out" -w '%{http_code}\n' "$API_URL/v1/meshes/default/dataplanes/dp-01/identity" >"$WORK/id01.code"
check "dp-01 never got a certificate for the refused CSR (404 not-issued)" \
    grep -q '^404$' "$WORK/id01.code"
for i in $(seq -w 1 $N); do
    post 2 "dp-$i" &
    PIDS+=($!)
done
wait "${PIDS[@]}"
PIDS=()
codes=$(cat "$WORK"/csr/2.*.code | sort | uniq -c | tr -s ' ')
check "$N concurrent POSTs all answered 202 ($codes)" [ "$codes" = " $N 202" ]
unsigned=0
for i in $(seq -w 1 $N); do
    signed_with 2 "dp-$i" || unsigned=$((unsigned + 1))
done
check "every one of them is signed with its own key ($unsigned not)" [ "$unsigned" -eq 0 ]

# 3. kill -9 right after the first 202s: every key answered 202 is in the store, and signed by
# the next controller's first pass.
for i in $(seq -w 1 $N); do
    post 3 "dp-$i" &
    PIDS+=($!)
done
for i in $(seq 300); do
    grep -lq 202 "$WORK"/csr/3.*.code 2>/dev/null && break
    sleep 0.01
done
kill -KILL "$CTL_PID"
wait "$CTL_PID" 2>/dev/null
CTL_PID=
wait "${PIDS[@]}"
PIDS=()
accepted=$(grep -l 202 "$WORK"/csr/3.*.code 2>/dev/null | sed 's|.*/3\.||; s|\.code$||')
n_accepted=$(echo "$accepted" | grep -c .)
check "some POSTs were answered 202 before the kill ($n_accepted)" [ "$n_accepted" -gt 0 ]
others=$(cat "$WORK"/csr/3.*.code | grep -vc '^202$')
check "the others got no answer at all (no 503 from a half-done commit: $others unanswered)" \
    [ -z "$(cat "$WORK"/csr/3.*.code | grep -v '^202$' | grep -v '^000$')" ]
start_controller --interval 1h
lost=0
for dp in $accepted; do
    signed_with 3 "$dp" || { lost=$((lost + 1)); echo "  lost: $dp"; }
done
check "no CSR answered 202 was lost to the kill ($lost lost of $n_accepted)" [ "$lost" -eq 0 ]
stop_controller

finish
