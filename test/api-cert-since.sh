#!/usr/bin/env bash
# api-cert-since.sh - a dataplane deleted and applied again (a new host): the old host's stolen
# certificate and key are refused 401 on CSR POST, GET identity (blocking too) and PUT ack,
# while the new host's token and then its certificate work; and a store restored from a backup
# older than the dataplane's identity refuses the agent's certificate and takes its token.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
MESHCA=$(readlink -f "$MESHCA")
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
DP_URL=/v1/meshes/default/dataplanes/web-01

mesh_fixture >"$WORK/mesh.yaml"
sed -n '/^type: Dataplane/,$p' "$WORK/mesh.yaml" >"$WORK/web-01.yaml"

# api AUTH METHOD PATH [BODY-FILE]: one request; AUTH is "cert DIR" (DIR/cert.pem, DIR/key.pem)
# or "token FILE". The status in $code, the body in $WORK/out ($WORK/err: curl's own errors).
api() {
    local auth=()
    case $1 in
    cert) auth=(--cert "$2/cert.pem" --key "$2/key.pem") ;;
    token) auth=(-H "Authorization: Bearer $(cat "$2")") ;;
    esac
    local method=$3 path=$4 body=${5:-}
    code=$(curl -sS --max-time 30 --cacert "$WORK/cp-ca.pem" "${auth[@]}" -X "$method" \
        ${body:+-H 'Content-Type: application/json' --data-binary @"$body"} \
        -o "$WORK/out" -w '%{http_code}' "$API_URL$path" 2>"$WORK/err")
    rc=$?
}
code_is() { [ "$code" = "$1" ]; }
# A CSR body for a fresh P-256 key, in $WORK/csr.json.
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/csr.key" 2>/dev/null &&
    openssl req -new -key "$WORK/csr.key" -subj / -out "$WORK/csr.pem" 2>/dev/null &&
    python3 -c 'import json, sys; print(json.dumps({"csr": open(sys.argv[1]).read()}))' \
        "$WORK/csr.pem" >"$WORK/csr.json" || { echo "FAIL - cannot make a CSR with openssl"; exit 2; }
echo '{"generation": 1}' >"$WORK/ack.json"
identity_record() { "$STORE_TOOL" get identities default web-01 2>/dev/null; }

run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0
start_controller --interval 1s
cp "$(token_for web-01)" "$WORK/first.token"
# The store as a backup before web-01's first certificate (the restore case, at the end).
if on_sqlite && command -v sqlite3 >/dev/null; then
    (umask 077 && sqlite3 "$WORK/store/meshca.db" ".backup '$WORK/before-identity.db'")
fi

# 1. The old host: generation 1, its files copied (stolen).
agent_once web-01
check "set-up: the old host's agent loads generation 1" grep -q "generation 1 loaded and acknowledged" "$WORK/agent.out"
cp -a "$WORK/dp/web-01" "$WORK/stolen"
api cert "$WORK/stolen" GET "$DP_URL/identity"
check "before the delete, the old certificate reads the identity (200)" code_is 200
issued_at=$(date +%s)

# 2. Deleted, then applied again (the new host). The clock moves past the second the old
# certificate was signed in (since and notBefore are whole seconds): bounded, not a timed check.
for i in $(seq 30); do [ "$(date +%s)" -gt "$issued_at" ] && break; sleep 0.1; done
run delete dataplane web-01 -m default
check "delete dataplane web-01 exits 0" exit_is 0
run apply -f "$WORK/web-01.yaml"
check "web-01 applies again" exit_is 0

# 3. No identity yet: the old certificate starts none.
api cert "$WORK/stolen" POST "$DP_URL/csr" "$WORK/csr.json"
check "re-created, no identity: the old certificate's CSR is refused 401" code_is 401
check "... as unauthenticated, saying there is no identity and to use the token" \
    grep -q '"code":"unauthenticated".*default/web-01 has no identity in the store.*dataplane token' "$WORK/out"
check "... and nothing was written (no identity record)" bash -c '! "$0" get identities default web-01' "$STORE_TOOL"
api cert "$WORK/stolen" GET "$DP_URL/identity"
check "re-created, no identity: GET identity with the old certificate is 401" code_is 401
api cert "$WORK/stolen" GET "$DP_URL/identity?index=5&wait=20s"
check "a blocking query with it is refused at once (401), not parked" code_is 401

# 4. The new host registers with a new token (the old one went with the delete).
rm -rf "$WORK/dp/web-01" "$WORK/tokens"
agent_once web-01
check "the new host's agent registers web-01 with its token (exit 0)" [ "$agent_rc" -eq 0 ]
check "... and loads generation 1" grep -q "generation 1 loaded and acknowledged" "$WORK/agent.out"
check "the new host's key is not the old one" \
    bash -c '! cmp -s "$0/stolen/key.pem" "$0/dp/web-01/key.pem"' "$WORK"
record=$(identity_record)
check "the new identity record keeps since" grep -q '"since":[0-9]' <<<"$record"

# 5. The attack: the old certificate against the new identity.
api cert "$WORK/stolen" POST "$DP_URL/csr" "$WORK/csr.json"
check "the old certificate's CSR for the new identity is refused 401" code_is 401
check "... saying web-01 was registered again and to use the token" \
    grep -q '"code":"unauthenticated".*default/web-01 was registered again after this certificate was issued.*dataplane token' "$WORK/out"
check "... and the identity record is unchanged (no pending key of it)" [ "$(identity_record)" = "$record" ]
api cert "$WORK/stolen" GET "$DP_URL/identity"
check "GET identity with the old certificate: 401" code_is 401
check "... the new host's certificate is not in the answer" bash -c '! grep -q BEGIN "$0"' "$WORK/out"
api cert "$WORK/stolen" GET "$DP_URL/identity?index=0&wait=20s"
check "a blocking GET with it: 401 at once" code_is 401
api cert "$WORK/stolen" PUT "$DP_URL/ack" "$WORK/ack.json"
check "PUT ack with the old certificate: 401" code_is 401
check "... unauthenticated" grep -q '"code":"unauthenticated"' "$WORK/out"
check "the refusals of the old certificate are in the controller's log (GET, CSR and ack)" \
    bash -c '[ "$(grep -c "api: rejected .*/dataplanes/web-01.*401 unauthenticated: .*registered again" "$0")" -ge 3 ]' "$CTL_LOG"
api cert "$WORK/stolen" GET /v1/meshes/default/roots
check "the mesh's public roots stay readable with it (200: nothing of the dataplane's)" code_is 200

# 6. The new host's credentials work.
api token "$(token_for web-01)" GET "$DP_URL/identity"
check "the new host's token reads the identity (200)" code_is 200
check "... generation 1" grep -q '"generation":1' "$WORK/out"
api cert "$WORK/dp/web-01" GET "$DP_URL/identity"
check "the new host's certificate reads the identity (200)" code_is 200
api cert "$WORK/dp/web-01" PUT "$DP_URL/ack" "$WORK/ack.json"
check "the new host's certificate acknowledges generation 1 (200)" code_is 200
api cert "$WORK/dp/web-01" POST "$DP_URL/csr" "$WORK/csr.json"
check "the new host's certificate sends a renewal CSR (202)" code_is 202
since=$(grep -o '"since":[0-9]*' <<<"$record")
same_since() { [ -n "$since" ] && [ "$(identity_record | grep -o '"since":[0-9]*')" = "$since" ]; }
check "the identity record still has the since it was created with" same_since
# The stolen agent: refused as itself, and with no valid token it gets no further.
echo not-a-token >"$WORK/no.token"
timeout 60 "$MESHCA" agent -m default -d web-01 --out "$WORK/stolen" --server "$API_URL" \
    --ca-file "$WORK/cp-ca.pem" --token-file "$WORK/no.token" --reload true --once --renew \
    >"$WORK/out" 2>"$WORK/err"
rc=$?
check "an agent on the stolen files gets exit 1" exit_is 1
check "... refused 401" err_has "HTTP 401"
stop_controller

# 7. A store restored from a backup older than web-01's identity: the agent's certificate is
# refused (no identity), its token (in the backup) taken, and the agent recovers with it.
if [ -f "$WORK/before-identity.db" ]; then
    mkdir -m 700 "$WORK/restored"
    cp "$WORK/before-identity.db" "$WORK/restored/meshca.db"
    export MESHCA_STORE="sqlite://$WORK/restored/meshca.db"
    start_controller --interval 1s
    api cert "$WORK/dp/web-01" GET "$DP_URL/identity"
    check "restored store without the identity: the agent's certificate is refused 401" code_is 401
    check "... saying there is no identity" grep -q 'has no identity in the store' "$WORK/out"
    api token "$WORK/first.token" GET "$DP_URL/identity"
    check "... its token from before the backup is taken (404 not-issued, not 401)" code_is 404
    check "... answered not-issued" grep -q '"code":"not-issued"' "$WORK/out"
    timeout 60 "$MESHCA" agent -m default -d web-01 --out "$WORK/dp/web-01" --server "$API_URL" \
        --ca-file "$WORK/cp-ca.pem" --token-file "$WORK/first.token" --reload true --once \
        >"$WORK/agent.out" 2>&1
    agent_rc=$?
    check "the agent recovers with its token (exit 0)" [ "$agent_rc" -eq 0 ]
    check "... and loads a generation of the restored store" grep -q "generation 1 loaded and acknowledged" "$WORK/agent.out"
    api cert "$WORK/dp/web-01" GET "$DP_URL/identity"
    check "... whose certificate is then taken (200)" code_is 200
    stop_controller
else
    echo "ok - # SKIP the restore case (sqlite and sqlite3 only)"
fi

# Nothing secret in any log.
check "no private key in the controller's output" bash -c "! grep -q 'PRIVATE KEY' '$CTL_LOG'"
finish
