#!/usr/bin/env bash
# backup-restore.sh - doc/store.md's SQLite backup taken while `meshca run` serves, restored into
# another directory and served by a new controller (the controller host lost); an agent holding
# a certificate the restored store never saw sends a CSR instead of waiting forever.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
MESHCA=$(readlink -f "$MESHCA")
on_sqlite || { echo "1..0 # SKIP sqlite only"; exit 77; }
command -v sqlite3 >/dev/null || { echo "1..0 # SKIP no sqlite3 (tools/deps.sh installs it)"; exit 77; }
export MESHCA_STORE="sqlite://$WORK/store/meshca.db"

mesh_fixture >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0
start_controller --interval 1s
# The token is issued before the first backup, so the restored store knows it.
token_for web-01 >/dev/null

# backup FILE: the command doc/store.md gives (its line with `.backup`, the page's paths replaced
# by this script's), run while the controller serves.
DOC_BACKUP=$(grep -F '.backup' "${SOURCE_ROOT:-$(dirname "$0")/..}/doc/store.md" | grep -F 'sqlite3 /srv/mesh/meshca.db' | head -1)
check "doc/store.md gives a backup command" [ -n "$DOC_BACKUP" ]
backup() {
    local cmd=${DOC_BACKUP//\/srv\/mesh\/meshca.db/$WORK/store/meshca.db}
    cmd=${cmd//\/var\/backups\/meshca-\$(date +%F).db/$1}
    bash -c "$cmd"
}

# The older backup: the Dataplane is in it, its first certificate is not.
backup "$WORK/old.db"
rc=$?
check "backup while run serves: sqlite3 .backup exits 0" exit_is 0
check "the backup file is 0600 (it holds the CA keys)" [ "$(stat -c %a "$WORK/old.db")" = 600 ]
check "the backup passes integrity_check" [ "$(sqlite3 "$WORK/old.db" 'PRAGMA integrity_check')" = ok ]

agent_once web-01
rc=$agent_rc
check "the agent loads generation 1 from the first controller" grep -q "generation 1 loaded and acknowledged" "$WORK/agent.out"

# A backup taken after the issue holds it.
backup "$WORK/new.db"
rc=$?
check "a second backup while run serves exits 0" exit_is 0
stop_controller
cp "$WORK/cp-ca.pem" "$WORK/cp-ca-first.pem"

# The controller host is lost: a new one starts on the older backup, in another directory.
mkdir -m 700 "$WORK/restored"
cp "$WORK/old.db" "$WORK/restored/meshca.db"
export MESHCA_STORE="sqlite://$WORK/restored/meshca.db"
run inspect dataplanes -m default -o json
check "the restored store has web-01 without a certificate (generation 0)" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d=d.get("items",d) if isinstance(d,dict) else d; sys.exit(0 if [i["mtls"].get("generation",0) for i in d if i["name"]=="web-01"]==[0] else 1)' "$WORK/out"
start_controller --interval 1s
check "the new controller serves from the restored store" grep -q "serving the dataplane API on $API_URL" "$CTL_LOG"
check "the restored store keeps the control-plane CA the agents trust" \
    cmp -s "$WORK/cp-ca-first.pem" "$WORK/cp-ca.pem"

# The agent holds generation 1 of a store that no longer knows it: it must send a CSR (it used
# to wait for an answer that never came, until its certificate expired).
agent_once web-01
rc=$agent_rc
check "the agent against the restored store exits 0" exit_is 0
check "it says why it sends a CSR" grep -q "the controller has no certificate for this dataplane" "$WORK/agent.out"
check "one CSR, not a chase of several" [ "$(grep -c "sent a CSR" "$WORK/agent.out")" -eq 1 ]
check "it loads and acknowledges a generation of the restored store" grep -q "loaded and acknowledged (backend ca-1)" "$WORK/agent.out"
run inspect dataplanes -m default -o json
check "inspect: web-01 acknowledged its current generation" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d=d.get("items",d) if isinstance(d,dict) else d; m=[i["mtls"] for i in d if i["name"]=="web-01"][0]; sys.exit(0 if m.get("generation",0)>0 and m.get("acknowledgedGeneration")==m.get("generation") else 1)' "$WORK/out"
check "the key on disk matches the certificate on disk" \
    [ "$(openssl x509 -noout -pubkey -in "$WORK/dp/web-01/cert.pem" | sha256sum)" = "$(openssl pkey -pubout -in "$WORK/dp/web-01/key.pem" | sha256sum)" ]
stop_controller

# The newer backup restored: the agent's generation is known, it has nothing to do.
cp "$WORK/new.db" "$WORK/restored/meshca.db"
rm -f "$WORK/restored/meshca.db-wal" "$WORK/restored/meshca.db-shm"
run get dataplanes -m default
check "the newer backup restores: get lists web-01" out_has web-01
# It holds generation 1 for the key the agent had then; the agent holds a later key.
start_controller --interval 1s
agent_once web-01
rc=$agent_rc
check "the agent against the newer backup exits 0" exit_is 0
check "... refuses generation 1 (another key) and sends a CSR" \
    grep -q "generation 1 certifies a key this agent does not hold; sending a new CSR" "$WORK/agent.out"
check "... and loads generation 2" grep -q "generation 2 loaded and acknowledged" "$WORK/agent.out"
stop_controller

# Nothing secret in any log: no PEM private key, no token.
tok=$(cat "$(token_for web-01)")
check "no private key in the controller's or the agent's output" \
    bash -c "! grep -q 'PRIVATE KEY' '$CTL_LOG' '$WORK/agent.out'"
check "no token in the controller's or the agent's output" \
    bash -c "! grep -qF -- '$tok' '$CTL_LOG' '$WORK/agent.out'"
finish
