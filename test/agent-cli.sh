#!/usr/bin/env bash
# agent-cli.sh - `meshca agent` against the built binary and a controller serving the dataplane
# API: the --out directory (created 0700, symlinks and files refused), the three files changing
# together (..data swap, checked by a concurrent reader), the reload command's timeout and
# signals (nothing left behind), tokens and failover, a controller that goes away and comes back.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
# The default store of the build, relative to the working directory (no URL written here).
cd "$WORK" || exit 2
MESHCA=$(readlink -f "$MESHCA")
PIDS=()   # processes this script started that must not outlive it
trap 'for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; stop_controller KILL; rm -rf "$WORK"' EXIT

mesh_fixture >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0
start_controller --interval 1s
check "set-up: the controller serves the API" grep -q "serving the dataplane API on $API_URL" "$CTL_LOG"
# What every agent of web-01 is given: the controllers, their CA, its token.
A=(--server "$API_URL" --ca-file "$WORK/cp-ca.pem" --token-file "$(token_for web-01)")

# acked GEN: the dataplane status says generation GEN was acknowledged.
acked() {
    "$MESHCA" inspect dataplanes -m default -o json 2>/dev/null | python3 -c '
import json, sys
items = json.load(sys.stdin)
items = items.get("items", items) if isinstance(items, dict) else items
acked = [i["mtls"].get("acknowledgedGeneration", 0) for i in items if i["name"] == "web-01"]
sys.exit(0 if acked and acked[0] == int(sys.argv[1]) else 1)' "$1"
}
# acked_gen / identity_gen: web-01's acknowledged and current generations.
acked_gen() {
    "$MESHCA" inspect dataplanes -m default -o json 2>/dev/null | python3 -c '
import json, sys
items = json.load(sys.stdin)
items = items.get("items", items) if isinstance(items, dict) else items
print([i["mtls"].get("acknowledgedGeneration", 0) for i in items if i["name"] == "web-01"][0])'
}
identity_gen() {
    "$MESHCA" inspect dataplanes -m default -o json 2>/dev/null | python3 -c '
import json, sys
items = json.load(sys.stdin)
items = items.get("items", items) if isinstance(items, dict) else items
print([i["mtls"].get("generation", 0) for i in items if i["name"] == "web-01"][0])'
}
# gone PIDFILE: the process whose pid is in PIDFILE no longer runs (a zombie waiting for init
# to reap it counts as gone).
gone() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1")
    ! kill -0 "$pid" 2>/dev/null || [ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)" = Z ]
}
# exits_within SECONDS PID: PID ends within SECONDS; its exit code in $rc.
exits_within() {
    local i
    for i in $(seq $(($1 * 10))); do
        kill -0 "$2" 2>/dev/null || { wait "$2"; rc=$?; return 0; }
        sleep 0.1
    done
    rc=124
    return 1
}

# --- issue 9 #12: --out DIR is created 0700; symlinks and non-directories are refused --------
run agent -m default -d web-01 "${A[@]}" --out "$WORK/new-out" --reload true --once
check "agent_out_missing_dir_is_created: exit 0" exit_is 0
check "agent_out_missing_dir_is_created: mode 0700" test "$(stat -c %a "$WORK/new-out")" = 700
check "agent_out_missing_dir_is_created: says so" out_has "created $WORK/new-out (mode 0700)"
check "agent_out_missing_dir_is_created: key.pem is 0600" test "$(stat -L -c %a "$WORK/new-out/key.pem")" = 600

run agent -m default -d web-01 "${A[@]}" --out "$WORK/no-such-parent/out" --reload true --once
check "agent_out_missing_parent_is_refused: exit 2" exit_is 2
check "agent_out_missing_parent_is_refused: names the cause" err_has "--out: cannot create $WORK/no-such-parent/out: its parent directory does not exist"
check "agent_out_missing_parent_is_refused: nothing created" test ! -e "$WORK/no-such-parent"

mkdir -p "$WORK/elsewhere"
ln -s "$WORK/elsewhere" "$WORK/link-out"
run agent -m default -d web-01 "${A[@]}" --out "$WORK/link-out" --reload true --once
check "agent_out_symlink_is_refused: exit 2" exit_is 2
check "agent_out_symlink_is_refused: names the link and its target" err_has "--out: $WORK/link-out is a symbolic link (to '$WORK/elsewhere'), refused"
check "agent_out_symlink_is_refused: nothing written through it" test -z "$(ls -A "$WORK/elsewhere")"

: >"$WORK/a-file"
run agent -m default -d web-01 "${A[@]}" --out "$WORK/a-file" --reload true --once
check "agent_out_file_is_refused: exit 2" exit_is 2
check "agent_out_file_is_refused: says what is wrong" err_has "--out: $WORK/a-file exists and is not a directory"

mkdir -m 0755 "$WORK/loose-out"
run agent -m default -d web-01 "${A[@]}" --out "$WORK/loose-out" --reload true --once
check "agent_out_loose_permissions_warn: still works" exit_is 0
check "agent_out_loose_permissions_warn: warns with the mode" err_has "warning: --out: $WORK/loose-out is open to group or others (mode 0755)"

# --- issue 9 #13: the three files change together ------------------------------------------------
OUT="$WORK/certs"
mkdir -m 0700 "$OUT"   # an existing directory, as before the fix of #12
run agent -m default -d web-01 "${A[@]}" --out "$OUT" --reload true --once
check "agent_files_layout: first sync exit 0" exit_is 0
gen1=$(readlink "$OUT/..data")
layout_ok() {
    [[ $(readlink "$OUT/..data") =~ ^\.\.[0-9]{4}_[0-9]{2}_[0-9]{2}_[0-9]{2}_[0-9]{2}_[0-9]{2}\.[A-Za-z0-9]{6}$ ]] &&
        [ "$(readlink "$OUT/key.pem")" = ..data/key.pem ] &&
        [ "$(readlink "$OUT/cert.pem")" = ..data/cert.pem ] &&
        [ "$(readlink "$OUT/ca-bundle.pem")" = ..data/ca-bundle.pem ] &&
        [ "$(stat -L -c %a "$OUT/key.pem")" = 600 ] &&
        [ -f "$OUT/$(readlink "$OUT/..data")/cert.pem" ]
}
check "agent_files_layout: ..data -> ..YYYY_MM_DD_HH_MM_SS.xxxxxx, stable symlinks into ..data" layout_ok
check "agent_files_layout: cert verifies against the bundle" openssl verify -CAfile "$OUT/ca-bundle.pem" "$OUT/cert.pem"
run agent -m default -d web-01 "${A[@]}" --out "$OUT" --reload true --once --renew
check "agent_files_layout: a renewal is written" exit_is 0
check "agent_files_layout: ..data now names another generation" test "$(readlink "$OUT/..data")" != "$gen1"
check "agent_files_layout: the old generation is removed" test -n "$gen1" -a ! -e "$OUT/$gen1"
check "agent_files_layout: just ..data and one generation, no temporary link" \
    test "$(find "$OUT" -mindepth 1 -maxdepth 1 -name '..*' | wc -l)" -eq 2 -a ! -e "$OUT/..data_tmp"

# A reader that does what a proxy does on reload: resolves the files once, reads cert then key,
# keeping every distinct (cert, key) pair it saw, while the agent renews (a fresh key and CSR
# each time) and rewrites the files, 60 times. Afterwards every pair must
# match. Before the fix key.pem was renamed before cert.pem, and this reader saw mixed pairs.
cat >"$WORK/reader.py" <<'PY'
import hashlib, os, sys, time
out, stop, pairs_dir = sys.argv[1], sys.argv[2], sys.argv[3]
seen, reads, deadline = set(), 0, time.time() + 120
while not os.path.exists(stop) and time.time() < deadline:
    try:
        d = os.path.dirname(os.path.realpath(os.path.join(out, "cert.pem")))
        cert = open(os.path.join(d, "cert.pem"), "rb").read()
        key = open(os.path.join(d, "key.pem"), "rb").read()
    except OSError:
        continue   # a generation removed under us: read again, as a proxy retries
    reads += 1
    h = hashlib.sha256(cert + b"\0" + key).hexdigest()
    if h not in seen:
        seen.add(h)
        os.makedirs(os.path.join(pairs_dir, h))
        open(os.path.join(pairs_dir, h, "cert.pem"), "wb").write(cert)
        open(os.path.join(pairs_dir, h, "key.pem"), "wb").write(key)
print(reads)
PY
mkdir "$WORK/pairs"
python3 "$WORK/reader.py" "$OUT" "$WORK/stop-reader" "$WORK/pairs" >"$WORK/reads" &
reader=$!
PIDS+=("$reader")
t=$(date +%s)
for i in $(seq 2 61); do
    "$MESHCA" agent -m default -d web-01 "${A[@]}" --out "$OUT" --reload true --once --renew >/dev/null 2>&1
done
touch "$WORK/stop-reader"
exits_within 30 "$reader"
mismatched=0
pairs=0
for p in "$WORK"/pairs/*/; do
    pairs=$((pairs + 1))
    a=$(openssl x509 -in "$p/cert.pem" -noout -pubkey 2>/dev/null)
    b=$(openssl pkey -in "$p/key.pem" -pubout 2>/dev/null)
    [ -n "$a" ] && [ "$a" = "$b" ] || mismatched=$((mismatched + 1))
done
echo "# reader: $(cat "$WORK/reads") reads, $pairs distinct pairs, $mismatched mismatched"
check "agent_rewrite_never_shows_key_of_other_cert: the reader saw many generations" test "$pairs" -ge 30
check "agent_rewrite_never_shows_key_of_other_cert: no mismatched pair" test "$mismatched" -eq 0
check "agent_rewrite_never_shows_key_of_other_cert: one generation left" \
    test "$(find "$OUT" -mindepth 1 -maxdepth 1 -type d -name '..*' | wc -l)" -eq 1

# --- issue 9 #14: the reload command is bounded and killed with its process group ----------------
# slow.sh: a reload that never ends; its child's pid is kept to prove the group was killed.
cat >"$WORK/slow.sh" <<'EOF'
#!/bin/sh
sleep 1000 &
echo $! >"$1"
wait
EOF
chmod +x "$WORK/slow.sh"
gen_before=$("$MESHCA" inspect dataplanes -m default -o json | python3 -c 'import json,sys; i=json.load(sys.stdin); i=i.get("items",i) if isinstance(i,dict) else i; print(i[0]["mtls"]["acknowledgedGeneration"])')

start=$(date +%s)
timeout 30 "$MESHCA" agent -m default -d web-01 "${A[@]}" --out "$OUT" --reload "$WORK/slow.sh $WORK/t.pid" \
    --reload-timeout 1s --once --renew >"$WORK/out" 2>"$WORK/err"
rc=$?
[ -s "$WORK/t.pid" ] && PIDS+=("$(cat "$WORK/t.pid")")
check "agent_reload_timeout_is_a_failed_reload: exit 1" exit_is 1
check "agent_reload_timeout_is_a_failed_reload: within a few seconds" test $(($(date +%s) - start)) -le 6
check "agent_reload_timeout_is_a_failed_reload: says so" err_has "reload command timed out after 1000 ms and was killed; generation"
check "agent_reload_timeout_is_a_failed_reload: not acknowledged" acked "$gen_before"
check "agent_reload_timeout_is_a_failed_reload: the command's group was killed" gone "$WORK/t.pid"

run agent -m default -d web-01 "${A[@]}" --out "$OUT" --reload true --reload-timeout soon --once
check "agent_reload_timeout_bad_value: usage error" exit_is 2
check "agent_reload_timeout_bad_value: names the flag" err_has "--reload-timeout: 'soon' is not a duration"

# agent_in_reload PIDFILE FLAG...: starts an agent in the background whose reload never ends,
# and waits (at most 10 s) until that command runs; the agent's pid in $agent.
agent_in_reload() {
    local pidfile=$1 i
    shift
    "$MESHCA" agent -m default -d web-01 "${A[@]}" --out "$OUT" --reload "$WORK/slow.sh $pidfile" "$@" \
        >"$WORK/out" 2>"$WORK/err" &
    agent=$!
    PIDS+=("$agent")
    for i in $(seq 100); do [ -s "$pidfile" ] && break; sleep 0.1; done
    [ -s "$pidfile" ] && PIDS+=("$(cat "$pidfile")")
}

# SIGTERM while the reload runs (loop mode, default 30 s timeout): the agent ends at once and
# takes the command's group with it.
agent_in_reload "$WORK/term.pid" --renew
check "agent_sigterm_during_reload_ends_agent: the reload command is running" test -s "$WORK/term.pid"
kill -TERM "$agent"
exits_within 5 "$agent"
check "agent_sigterm_during_reload_ends_agent: exits within 5 s with 0" exit_is 0
check "agent_sigterm_during_reload_ends_agent: the command's group was killed" gone "$WORK/term.pid"
check "agent_sigterm_during_reload_ends_agent: not acknowledged" acked "$gen_before"

# SIGINT with --once while the reload runs: a failed (interrupted) reload, exit 1.
agent_in_reload "$WORK/int.pid" --once --renew
check "agent_sigint_during_reload_once: the reload command is running" test -s "$WORK/int.pid"
kill -INT "$agent"
exits_within 5 "$agent"
check "agent_sigint_during_reload_once: exits within 5 s with 1" exit_is 1
check "agent_sigint_during_reload_once: says why" err_has "reload command interrupted: the agent is stopping"
check "agent_sigint_during_reload_once: the command's group was killed" gone "$WORK/int.pid"

run agent -m default -d web-01 "${A[@]}" --out "$OUT" --reload true --once
check "after all that, a good reload acknowledges" exit_is 0

run help agent
check "help agent documents --reload-timeout" out_has "--reload-timeout D  how long CMD may run (default 30s)"

# --- issue 10: the agent over the API ----------------------------------------------------------
check "agent_never_opens_the_store: the agent's help names no store flag" out_lacks "--store"
run agent -m default -d web-01 --server "https://127.0.0.1:$(free_port),$API_URL" --ca-file "$WORK/cp-ca.pem" \
    --token-file "$(token_for web-01)" --out "$WORK/failover" --reload true --once
check "agent_fails_over_to_the_next_server: exit 0" exit_is 0
check "agent_fails_over_to_the_next_server: files written" test -s "$WORK/failover/cert.pem"

cat >"$WORK/db.yaml" <<'YAML'
type: Dataplane
mesh: default
name: db-01
networking: {address: 127.0.0.1, inbound: [{port: 9443, tags: {kuma.io/service: db}}]}
YAML
run apply -f "$WORK/db.yaml"
run agent -m default -d db-01 --server "$API_URL" --ca-file "$WORK/cp-ca.pem" --token-file "$(token_for web-01)" \
    --out "$WORK/db-out" --reload true --once
check "agent_with_another_dataplanes_token_is_refused: exit 1" exit_is 1
check "agent_with_another_dataplanes_token_is_refused: 403 naming both" err_has "HTTP 403: the token of dataplane default/web-01 may not act for default/db-01"
check "agent_with_another_dataplanes_token_is_refused: no key sent, no certificate" test ! -e "$WORK/db-out/cert.pem"
# The --out this run created is removed again: a refused agent leaves nothing behind (its key
# was never accepted). One that existed stays, with the refused key for the next run.
check "agent_refused_removes_the_out_it_created: gone" test ! -e "$WORK/db-out"
check "agent_refused_removes_the_out_it_created: says so" \
    out_has "default/db-01: removed $WORK/db-out again: this run created it and the controller accepted nothing"
mkdir -m 0700 "$WORK/db-kept"
run agent -m default -d db-01 --server "$API_URL" --ca-file "$WORK/cp-ca.pem" --token-file "$(token_for web-01)" \
    --out "$WORK/db-kept" --reload true --once
check "agent_refused_keeps_an_existing_out: exit 1" exit_is 1
check "agent_refused_keeps_an_existing_out: DIR and the refused key stay" test -d "$WORK/db-kept" -a -s "$WORK/db-kept/key.next.pem"
check "agent_refused_keeps_an_existing_out: nothing said about removing" out_lacks "removed $WORK/db-kept"
run token revoke -m default -d db-01
"$MESHCA" token issue -m default -d db-01 >"$WORK/db.token"
run token revoke -m default -d db-01
run agent -m default -d db-01 --server "$API_URL" --ca-file "$WORK/cp-ca.pem" --token-file "$WORK/db.token" \
    --out "$WORK/db-out" --reload true --once
check "agent_with_a_revoked_token_is_refused: exit 1 with 401" bash -c "[ $rc -eq 1 ] && grep -q 'HTTP 401' '$WORK/err'"
check "agent_refused_removes_the_out_it_created: after a 401 too" test ! -e "$WORK/db-out"
mkdir -m 0700 "$WORK/db-out"   # an existing DIR: a refused agent leaves it (and its key) as it is
run agent -m default -d db-01 --server "$API_URL" --ca-file "$WORK/cp-ca.pem" --token-file "$WORK/db.token" \
    --out "$WORK/db-out" --reload true --once
check "agent_private_key_stays_in_out: a failed first contact leaves its key only in --out" \
    bash -c "test -s '$WORK/db-out/key.next.pem' && test \"\$(stat -c %a '$WORK/db-out/key.next.pem')\" = 600"

# A running agent keeps its files while the controller is gone (kill -9), and resumes by itself
# when it comes back on the same address: a new generation reaches it without a restart.
"$MESHCA" agent -m default -d web-01 "${A[@]}" --out "$OUT" --reload true >"$WORK/loop.out" 2>"$WORK/loop.err" &
loop_agent=$!
PIDS+=("$loop_agent")
# (The failover agent above took web-01's identity for its own key: this one sends a CSR first.)
for i in $(seq 100); do
    grep -q "loaded and acknowledged" "$WORK/loop.out" && [ "$(acked_gen)" = "$(identity_gen)" ] && break
    sleep 0.1
done
sleep 0.5
# A blocking query answers within a second of a change: a backend added, the bundle is loaded.
cat >"$WORK/mesh2.yaml" <<'YAML'
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
  - name: ca-2
    type: builtin
YAML
before=$(readlink "$OUT/..data")
t0=$(date +%s%N)
run apply -f "$WORK/mesh2.yaml"
for i in $(seq 100); do [ "$(readlink "$OUT/..data")" != "$before" ] && break; sleep 0.02; done
elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
echo "# the parked agent loaded the new bundle ${elapsed_ms} ms after the apply"
check "agent_blocking_query_answers_within_a_second_of_a_change" test "$elapsed_ms" -lt 1000
sleep 0.5
before=$(readlink "$OUT/..data")
stop_controller KILL
sleep 3
check "agent_keeps_serving_while_no_controller_answers: still running" kill -0 "$loop_agent"
check "agent_keeps_serving_while_no_controller_answers: files unchanged" test "$(readlink "$OUT/..data")" = "$before"
check "agent_keeps_serving_while_no_controller_answers: says it keeps the files" grep -q "keeping the current files" "$WORK/loop.err"
CTL_PORT=${API_URL##*:} start_controller --interval 1s
cat >"$WORK/mesh3.yaml" <<'YAML'
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
  - name: ca-2
    type: builtin
  - name: ca-3
    type: builtin
YAML
run apply -f "$WORK/mesh3.yaml"
resumed() { [ "$(readlink "$OUT/..data")" != "$before" ] && grep -c 'BEGIN CERTIFICATE' "$OUT/ca-bundle.pem" | grep -qx 3; }
for i in $(seq 300); do resumed && break; sleep 0.1; done
check "agent_resumes_by_itself_when_the_controller_is_back: new bundle loaded" resumed
kill -TERM "$loop_agent"
exits_within 5 "$loop_agent"
check "agent_resumes_by_itself_when_the_controller_is_back: SIGTERM ends it with 0" exit_is 0

finish
