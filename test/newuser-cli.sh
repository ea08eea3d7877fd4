#!/usr/bin/env bash
# newuser-cli.sh - the mistakes a newcomer makes with `meshca agent` and friends, and the
# messages that must tell them what to fix: a missing or wrong --ca-file, a controller
# certificate that does not name the --server host, a --server that is the plain-HTTP metrics
# port, a refused token said once, a cp-ca that makes a new control-plane CA in a store no
# controller uses, a store that cannot be reached, 'help --help', the man page's global flags,
# a token revoke of a mistyped dataplane, a second agent with a fresh --out, an agent whose
# dataplane was deleted or whose --server has a path, an apply or validate of nothing, run --listen
# 0.0.0.0, etcd TLS flags with an etcd:// URL.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
BG=   # an agent started in the background, killed on exit
trap '[ -n "$BG" ] && kill -KILL "$BG" 2>/dev/null; stop_controller KILL; rm -rf "$WORK"' EXIT

mesh_fixture >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0
MPORT=$(free_port)
start_controller --interval 1m --metrics "127.0.0.1:$MPORT"
check "set-up: the controller serves the API" grep -q "serving the dataplane API on $API_URL" "$CTL_LOG"
TOKEN=$(token_for web-01)
PORT=${API_URL##*:}

# agent_bg_until TEXT FLAG...: an agent of web-01 in the background (output in $WORK/out and
# $WORK/err), until its standard error has TEXT (at most 15 s) or it ends; then it is killed.
agent_bg_until() {
    local text=$1 i
    shift
    # Emptied here, not only by the background job's redirection, which may come after the
    # first grep below and leave it reading the previous command's output.
    : >"$WORK/out"
    : >"$WORK/err"
    "$MESHCA" agent -m default -d web-01 --token-file "$TOKEN" "$@" >>"$WORK/out" 2>>"$WORK/err" &
    BG=$!
    for i in $(seq 150); do
        grep -qF -- "$text" "$WORK/err" && break
        kill -0 "$BG" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$BG" 2>/dev/null
    wait "$BG" 2>/dev/null
    BG=
}

# --- a --ca-file that can never work is refused at start, before --out is created ----------
# (Before: libcurl's "error setting certificate file" was taken for an unreachable controller
# and retried, for a minute with --once and for ever without.)
run agent -m default -d web-01 --out "$WORK/out-1" --server "$API_URL" \
    --ca-file "$WORK/no-such.pem" --token-file "$TOKEN" --once
check "agent_missing_ca_file: exit 2" exit_is 2
check "agent_missing_ca_file: names the flag, the file and why" \
    err_has "meshca: error: --ca-file: cannot read $WORK/no-such.pem: No such file or directory"
check "agent_missing_ca_file: --out not created" test ! -e "$WORK/out-1"

echo "not a certificate" >"$WORK/garbage.pem"
run agent -m default -d web-01 --out "$WORK/out-1" --server "$API_URL" \
    --ca-file "$WORK/garbage.pem" --token-file "$TOKEN" --once
check "agent_ca_file_without_certificate: exit 2" exit_is 2
check "agent_ca_file_without_certificate: says what to pass" \
    err_has "--ca-file: $WORK/garbage.pem holds no PEM certificate; pass the control-plane CA ('meshca cp-ca -o pem' against the controller's store)"
check "agent_ca_file_without_certificate: --out not created" test ! -e "$WORK/out-1"

run agent -m default -d web-01 --out "$WORK/out-1" --server "$API_URL" \
    --ca-file "$WORK" --token-file "$TOKEN" --once
check "agent_ca_file_directory: exit 2" exit_is 2
check "agent_ca_file_directory: says so" err_has "--ca-file: $WORK is not a regular file"

# --- a CA file of another control plane: the retry line says which flag is wrong ----------
# (cp-ca run against another store, the commonest way to get it: a fresh store makes its own.)
MESHCA_STORE="sqlite://$WORK/other/meshca.db" run cp-ca -o pem
cp "$WORK/out" "$WORK/other-cp-ca.pem"
check "cpca_creating_the_ca_says_so: exit 0, the certificate" bash -c "[ $rc -eq 0 ] && grep -q 'BEGIN CERTIFICATE' '$WORK/out'"
check "cpca_creating_the_ca_says_so: a note that only this store's controllers match" \
    err_has "meshca: note: this store had no control-plane CA: created one; it verifies only controllers that run on this same store"
MESHCA_STORE="sqlite://$WORK/other/meshca.db" run cp-ca -o pem
check "cpca_existing_ca_no_note: the same certificate" cmp -s "$WORK/out" "$WORK/other-cp-ca.pem"
check "cpca_existing_ca_no_note: nothing on stderr" test ! -s "$WORK/err"
run cp-ca -o pem
check "cpca_controller_store_no_note: the controller's CA, no note" \
    bash -c "cmp -s '$WORK/out' '$WORK/cp-ca.pem' && [ ! -s '$WORK/err' ]"
agent_bg_until "keeping the current files" --out "$WORK/out-2" --server "$API_URL" \
    --ca-file "$WORK/other-cp-ca.pem" --once
check "agent_wrong_ca_file: libcurl's reason is kept" err_has "SSL certificate problem"
check "agent_wrong_ca_file: names --ca-file and where to take it" \
    err_has "(--ca-file is not the CA of this controller's certificate: pass 'meshca cp-ca -o pem' run against the controller's store, or the CA of its --tls-cert); keeping the current files"
check "agent_wrong_ca_file: no certificate written" test ! -e "$WORK/out-2/cert.pem"

# --- a --server host the controller's certificate does not name ------------------------------
if getent hosts localhost >/dev/null; then
    agent_bg_until "keeping the current files" --out "$WORK/out-3" \
        --server "https://localhost:$PORT" --ca-file "$WORK/cp-ca.pem" --once
    check "agent_server_name_not_in_certificate: says --tls-san" \
        err_has "(the controller's certificate does not name the host of --server: give 'meshca run' that name or address with --tls-san); keeping the current files"
fi

# --- --server pointing at the controller's plain-HTTP --metrics port ----------------------------
check "set-up: metrics served on their own port" grep -q "serving metrics on http://127.0.0.1:$MPORT/metrics" "$CTL_LOG"
agent_bg_until "keeping the current files" --out "$WORK/out-5" \
    --server "https://127.0.0.1:$MPORT" --ca-file "$WORK/cp-ca.pem" --once
check "agent_server_is_metrics_port: says the port does not answer TLS and what --server must be" \
    err_has "(this port does not answer TLS: --server must be the address of 'meshca run --listen', not of its --metrics port or another service); keeping the current files"

# --- run --listen 0.0.0.0 without --tls-san: warned that the certificate names no dialable address
# (On the controller's port, taken on 127.0.0.1, so this run never listens beyond loopback.)
run run --listen "0.0.0.0:$PORT"
check "run_listen_unspecified_warns: the bind still fails on the taken port (exit 2)" \
    bash -c "[ $rc -eq 2 ] && grep -qF 'Address already in use' '$WORK/err'"
check "run_listen_unspecified_warns: says to give --tls-san" \
    err_has "meshca: warning: --listen 0.0.0.0:$PORT: the server certificate names only 0.0.0.0, which no agent dials; give --tls-san with this host's name or address (as agents' --server says it)"
run run --listen "0.0.0.0:$PORT" --tls-san 127.0.0.1
check "run_listen_unspecified_with_san: no warning" bash -c "[ $rc -eq 2 ] && ! grep -q 'warning: --listen' '$WORK/err'"

# --- with --once, the refusal that ends the run is printed once, as the error ----------------
echo "not-a-token" >"$WORK/bad.token"
run agent -m default -d web-01 --out "$WORK/out-4" --server "$API_URL" \
    --ca-file "$WORK/cp-ca.pem" --token-file "$WORK/bad.token" --once
check "agent_once_refused_token: exit 1" exit_is 1
check "agent_once_refused_token: the error names the 401 and how to get a token" \
    err_has "meshca: error: $API_URL: HTTP 401: token: malformed bearer token (a new token: 'meshca token issue' against the controller's store, then --token-file)"
check "agent_once_refused_token: said once, not also as a retry line" \
    test "$(grep -c "HTTP 401" "$WORK/err")" -eq 1

# --- etcd TLS flags beside a plain etcd:// URL (a missing 's') are refused, not dropped ----------
dead=$(free_port)   # no etcd there
run --store "etcd://127.0.0.1:$dead" --etcd-cacert "$WORK/cp-ca.pem" get meshes
check "etcd_tls_flag_with_plain_url: exit 2" exit_is 2
check "etcd_tls_flag_with_plain_url: says which flag and the URL to use" \
    err_has "meshca: error: --etcd-cacert is for TLS, but the store URL is etcd:// (plain HTTP): use etcds://127.0.0.1:$dead"
run get meshes --store "etcd://127.0.0.1:$dead" --etcd-key="$WORK/k.pem"
check "etcd_tls_flag_after_the_command: refused the same way" \
    bash -c "[ $rc -eq 2 ] && grep -qF -- '--etcd-key is for TLS' '$WORK/err'"
MESHCA_ETCD_CACERT="$WORK/cp-ca.pem" run --store "etcd://127.0.0.1:$dead" get meshes
check "etcd_tls_env_with_plain_url: the environment alone is not refused (exit 2: no etcd there)" \
    bash -c "[ $rc -eq 2 ] && ! grep -q 'is for TLS' '$WORK/err' && grep -qF 'no etcd member answered' '$WORK/err'"

# --- 'meshca help --help' is the overview, not an unknown command ------------------------------
for a in --help -h help; do
    run help "$a"
    check "help_$a: exit 0" exit_is 0
    check "help_$a: the overview" out_has "Run 'meshca help COMMAND' for the flags of a command."
done
run help no-such-command
check "help_unknown_command: still exit 2 naming it" \
    bash -c "[ $rc -eq 2 ] && grep -qF \"unknown command 'no-such-command'\" '$WORK/err'"

# --- run and cp-ca on an etcd nobody serves: the error names the store and the member ----------
dead=$(free_port)
run --store "etcd://127.0.0.1:$dead" run --listen "127.0.0.1:$(free_port)"
check "run_store_unreachable: exit 2" exit_is 2
check "run_store_unreachable: names the store URL and the member's failure" \
    err_has "cp-ca: cannot read the control-plane CA: store 'etcd://127.0.0.1:$dead': controlplane/meshca/ca: no etcd member answered (127.0.0.1:$dead: "
run --store "etcd://127.0.0.1:$dead" cp-ca
check "cpca_store_unreachable: exit 2, the same reason" \
    bash -c "[ $rc -eq 2 ] && grep -qF \"store 'etcd://127.0.0.1:$dead'\" '$WORK/err'"

# --- the man page keeps every line of the global flags (the etcd URL forms, the --quiet note) ---
python3 "$SOURCE_ROOT/tools/gen-man.py" "$MESHCA" 0 >"$WORK/meshca.1"
check "man_global_flags: --store's etcd URL forms are there" \
    grep -qF 'etcd://HOST:PORT[,HOST:PORT...][?max\-txn\-ops=N], etcds:// for TLS' "$WORK/meshca.1"
check "man_global_flags: the --quiet note is there" \
    grep -qF 'With \-\-quiet, errors, warnings and the output asked for' "$WORK/meshca.1"

# The right flags still work after all that.
agent_once web-01
check "agent_right_flags: exit 0" test "$agent_rc" -eq 0
check "agent_right_flags: acknowledged" grep -q "generation 1 loaded and acknowledged" "$WORK/agent.out"

# --- apply of a directory without manifests (or an empty file) is an error, not a silent 0 ------
mkdir -p "$WORK/empty-dir"
echo "type: Mesh" >"$WORK/empty-dir/mesh.yml.bak"
run apply -f "$WORK/empty-dir"
check "apply_nothing: exit 1" exit_is 1
check "apply_nothing: says where it found nothing and what it reads" \
    err_has "meshca: error: nothing to apply: no Mesh, Dataplane or Secret in $WORK/empty-dir (a directory is read for *.yaml and *.yml)"
: >"$WORK/empty.yaml"
run apply -f "$WORK/empty.yaml" --dry-run
check "apply_nothing_dry_run: exit 1 too" exit_is 1
run apply -f "$WORK/empty.yaml" -f "$WORK/mesh.yaml"
check "apply_empty_file_beside_manifests: fine (exit 0)" exit_is 0

# --- an apply refused for its input, or with nothing in it, creates no store -------------------
printf 'kind: Mesh\nmetadata:\n  name: default\nspec:\n  mtls: [\n' >"$WORK/broken.yaml"
MESHCA_STORE="sqlite://$WORK/fresh/meshca.db" run apply -f "$WORK/broken.yaml"
check "apply_refused_new_store: exit 1" exit_is 1
check "apply_refused_new_store: the parse error at file:line:column" err_has "broken.yaml:6:1: error:"
check "apply_refused_new_store: no note about reading an empty store" \
    bash -c "! grep -q 'no store at' '$WORK/err'"
check "apply_refused_new_store: no store directory made" test ! -e "$WORK/fresh"
MESHCA_STORE="sqlite://$WORK/fresh/meshca.db" run apply -f "$WORK/empty-dir"
check "apply_nothing_new_store: exit 1 and no store directory made" \
    bash -c "[ $rc -eq 1 ] && [ ! -e '$WORK/fresh' ]"
MESHCA_STORE="sqlite://$WORK/fresh/meshca.db" run apply -f "$WORK/mesh.yaml"
check "apply_accepted_new_store: exit 0 and the store is made" \
    bash -c "[ $rc -eq 0 ] && [ -s '$WORK/fresh/meshca.db' ]"

# validate of nothing stays valid (exit 0) but says on stderr that nothing was checked, in every
# format: -o github prints nothing else, and a CI job with the wrong -f would pass in silence.
for fmt in text github json; do
    run validate -o "$fmt" -f "$WORK/empty-dir"
    check "validate_nothing_$fmt: exit 0" exit_is 0
    check "validate_nothing_$fmt: warns that nothing was checked" \
        err_has "meshca: warning: no Mesh, Dataplane or Secret in the -f paths (a directory is read for *.yaml and *.yml): nothing was checked"
done
run validate -o github -f "$WORK/mesh.yaml"
check "validate_something: no such warning" bash -c "[ $rc -eq 0 ] && ! grep -q 'nothing was checked' '$WORK/err'"

# --- a second agent with a fresh --out for a dataplane that has an identity ---------------------
# (rm -rf the directory and start again, or a proxy moved to a new host.) The identity it is
# answered first was issued for the other agent's key, before its own CSR: it must wait for the
# next generation, not send CSR after CSR each outrun by the signature of the one before.
gen_of() {
    "$MESHCA" inspect dataplanes -m default -o json | python3 -c '
import json, sys
print([i["mtls"].get("generation", 0) for i in json.load(sys.stdin) if i["name"] == "web-01"][0])'
}
before=$(gen_of)
run agent -m default -d web-01 --out "$WORK/out-6" --server "$API_URL" \
    --ca-file "$WORK/cp-ca.pem" --token-file "$TOKEN" --once
check "agent_fresh_out_for_issued_dataplane: exit 0" exit_is 0
check "agent_fresh_out_for_issued_dataplane: one CSR sent" \
    test "$(grep -c "sent a CSR" "$WORK/out")" -eq 1
check "agent_fresh_out_for_issued_dataplane: the earlier generation is not taken for a lost key" \
    bash -c "! grep -q 'certifies a key this agent does not hold' '$WORK/err'"
check "agent_fresh_out_for_issued_dataplane: exactly one new generation, loaded" \
    bash -c "[ \"\$(cat '$WORK/out' | grep -o 'generation [0-9]* loaded' | cut -d' ' -f2)\" = $((before + 1)) ] && [ $(gen_of) -eq $((before + 1)) ]"
check "agent_fresh_out_for_issued_dataplane: its certificate is for its own key" \
    bash -c "[ \"\$(openssl x509 -noout -pubkey -in '$WORK/out-6/cert.pem')\" = \"\$(openssl pkey -pubout -in '$WORK/out-6/key.pem')\" ]"

# --- token revoke of a mistyped dataplane is an error, not "revoked 0 tokens" -----------------
run token revoke -m default -d web-0l
check "token_revoke_unknown_dataplane: exit 1" exit_is 1
check "token_revoke_unknown_dataplane: says nothing was revoked" \
    err_has "no dataplane 'web-0l' in mesh 'default' in the store, and no token of it: nothing revoked"
check "token_revoke_unknown_dataplane: no success line" test ! -s "$WORK/out"
run token revoke -m default -d web-01
check "token_revoke_known_dataplane: exit 0, its token revoked" \
    bash -c "[ $rc -eq 0 ] && grep -qF 'revoked 1 token of default/web-01' '$WORK/out'"
run token revoke -m default -d web-01
check "token_revoke_again: a stored dataplane without tokens is fine (exit 0, 0 tokens)" \
    bash -c "[ $rc -eq 0 ] && grep -qF 'revoked 0 tokens of default/web-01' '$WORK/out'"

# --- an agent whose dataplane was deleted says so and backs off, instead of spinning silently ---
run delete dataplane web-01 -m default
check "set-up: web-01 deleted" exit_is 0
timeout 20 "$MESHCA" agent -m default -d web-01 --out "$WORK/out-6" --server "$API_URL" \
    --ca-file "$WORK/cp-ca.pem" --once >"$WORK/out" 2>"$WORK/err"
rc=$?
check "agent_dataplane_deleted_once: exit 1 (not a loop ended by the timeout)" exit_is 1
check "agent_dataplane_deleted_once: names the 404" \
    err_has "meshca: error: $API_URL: HTTP 404: no dataplane 'web-01' in mesh 'default'"
agent_bg_until "HTTP 404" --out "$WORK/out-6" --server "$API_URL" --ca-file "$WORK/cp-ca.pem"
check "agent_dataplane_deleted_loop: the retry line says why" \
    err_has "meshca: default/web-01: $API_URL: HTTP 404: no dataplane 'web-01' in mesh 'default'"
timeout 20 "$MESHCA" agent -m default -d web-01 --out "$WORK/out-6" --server "$API_URL/api" \
    --ca-file "$WORK/cp-ca.pem" --once >"$WORK/out" 2>"$WORK/err"
rc=$?
check "agent_server_with_a_path_once: exit 1 naming the 404" \
    bash -c "[ $rc -eq 1 ] && grep -qF 'HTTP 404: no such endpoint' '$WORK/err'"

finish
