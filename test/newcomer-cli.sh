#!/usr/bin/env bash
# newcomer-cli.sh - what a first trial from a fresh clone ran into (the eighth such trial): an
# agent with a plain-http or scheme-less --server left an empty --out behind, Ctrl-C of a
# connected agent printed libcurl's "Callback aborted" as a failing controller, a misspelt
# command or flag got no "did you mean", and a misspelt backend type was also an in-place change.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
BG=   # an agent started in the background, killed on exit
trap '[ -n "$BG" ] && kill -KILL "$BG" 2>/dev/null; stop_controller KILL; rm -rf "$WORK"' EXIT

# --- a misspelt command or flag gets the nearest one, as kubectl and git do -----------------
# (Before: "unknown command 'aply'; run 'meshca --help'" and nothing nearer.)
run aply -f "$WORK/mesh.yaml"
check "misspelt_command: exit 2" exit_is 2
check "misspelt_command: suggests apply" \
    err_has "meshca: error: unknown command 'aply' (did you mean 'apply'?); run 'meshca --help'"
run help inpsect
check "help_of_misspelt_command: exit 2, suggests inspect" \
    bash -c "[ $rc -eq 2 ] && grep -qF \"unknown command 'inpsect' (did you mean 'inspect'?)\" '$WORK/err'"
run ls
check "two_letter_command: no guess (ls is not 'ca')" \
    bash -c "[ $rc -eq 2 ] && grep -qxF \"meshca: error: unknown command 'ls'; run 'meshca --help'\" '$WORK/err'"
run apply -f "$WORK/mesh.yaml" --dryrun
check "misspelt_flag: exit 2" exit_is 2
check "misspelt_flag: suggests the command's own flag" \
    err_has "meshca: error: unknown flag '--dryrun' (did you mean '--dry-run'?); run 'meshca help apply'"
check "misspelt_flag: nothing applied" test ! -e "$WORK/store"
run agent -m default -d web-01 --sever https://127.0.0.1:1 --out "$WORK/out-0"
check "misspelt_agent_flag: suggests --server" \
    bash -c "[ $rc -eq 2 ] && grep -qF \"unknown flag '--sever' (did you mean '--server'?); run 'meshca help agent'\" '$WORK/err'"
run get meshes --stroe "sqlite://$WORK/x.db"
check "misspelt_global_flag_after_the_command: suggests --store" \
    bash -c "[ $rc -eq 2 ] && grep -qF \"unknown flag '--stroe' (did you mean '--store'?)\" '$WORK/err'"
run --stroe "sqlite://$WORK/x.db" get meshes
check "misspelt_global_flag_before_the_command: suggests --store" \
    bash -c "[ $rc -eq 2 ] && grep -qF \"unknown flag '--stroe' (did you mean '--store'?); run 'meshca --help'\" '$WORK/err'"
run apply -f "$WORK/mesh.yaml" --dry-run=true
check "flag_without_value_given_one: says it takes no value" \
    bash -c "[ $rc -eq 2 ] && grep -qxF \"meshca: error: flag '--dry-run' takes no value; run 'meshca help apply'\" '$WORK/err'"
run reconcile --frobnicate
check "unknown_flag_far_from_any: no guess" \
    bash -c "[ $rc -eq 2 ] && grep -qxF \"meshca: error: unknown flag '--frobnicate'; run 'meshca help reconcile'\" '$WORK/err'"

# --- one mistake in an inbound port is one error, at the value --------------------------------
# (Before: also "inbound port must be in 1..65535" at the inbound's first column, a second error
# in other words for the same mistake, whether the port was out of range, not a number or absent.)
for case in "99999:7:11:port 99999 is out of range 1-65535" "eighty:7:11:expected an integer, got a string"; do
    IFS=: read -r value line col msg <<<"$case"
    printf 'type: Dataplane\nmesh: default\nname: x\nnetworking:\n  address: 1.2.3.4\n  inbound:\n  - port: %s\n    tags: {kuma.io/service: a}\n' "$value" >"$WORK/port.yaml"
    run validate -f "$WORK/port.yaml"
    check "inbound_port_$value: exit 1, one error at the value" \
        bash -c "[ $rc -eq 1 ] && grep -qxF 'port.yaml:$line:$col: error: networking.inbound[0].port: $msg' <(sed 's|^.*/||' '$WORK/out') && grep -qF '1 error, 0 warnings' '$WORK/out'"
done
printf 'type: Dataplane\nmesh: default\nname: x\nnetworking:\n  address: 1.2.3.4\n  inbound:\n  - tags: {kuma.io/service: a}\n' >"$WORK/port.yaml"
run validate -f "$WORK/port.yaml"
check "inbound_port_missing: one error, the missing field" \
    bash -c "[ $rc -eq 1 ] && grep -qF \"required field 'networking.inbound[0].port' is missing\" '$WORK/out' && grep -qF '1 error, 0 warnings' '$WORK/out'"
printf 'type: Dataplane\nmesh: default\nname: x\nnetworking:\n  address: 1.2.3.4\n  inbound:\n  - port: 0\n    tags: {kuma.io/service: a}\n' >"$WORK/port.yaml"
run validate -f "$WORK/port.yaml"
check "inbound_port_zero: still refused, once (invalid-port)" \
    bash -c "[ $rc -eq 1 ] && grep -qF 'inbound port must be in 1..65535' '$WORK/out' && grep -qF '1 error, 0 warnings' '$WORK/out'"

# --- the --metrics port the docs give is not Prometheus's own 9090 -------------------------
# A loopback --metrics is scraped by a Prometheus on the same host, which listens on 9090 by
# default: run exited 2 ("--metrics: cannot listen on 127.0.0.1:9090: Address already in use").
run help run
check "help_run_metrics_example: not Prometheus's port" \
    bash -c "grep -qF 'e.g. 127.0.0.1:5691; not 9090' '$WORK/out' && ! grep -q '127.0.0.1:9090' '$WORK/out'"
check "docs_metrics_examples: no --metrics or scrape target on 9090 in the README or doc/" \
    bash -c "! grep -rnE -- '--metrics [^ ]*:9090|targets: \\[\"[^\"]*:9090' '$SOURCE_ROOT/README.md' '$SOURCE_ROOT/doc'"

mesh_fixture >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0
start_controller --interval 1m
check "set-up: the controller serves the API" grep -q "serving the dataplane API on $API_URL" "$CTL_LOG"
TOKEN=$(token_for web-01)
PORT=${API_URL##*:}

# --- a misspelt backend type over a stored mesh is one error, not two ------------------------
# (Before: also "backend 'ca-1' changed type or conf in place while it is the enabled backend;
# add the new CA under a new name and rotate to it", advice about a rotation nobody meant.)
printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: bultin\n' >"$WORK/typo.yaml"
run apply -f "$WORK/typo.yaml"
check "misspelt_backend_type_over_stored_mesh: exit 1" exit_is 1
check "misspelt_backend_type_over_stored_mesh: the typo, with its place and the fix" \
    err_has "typo.yaml:7:11: error: mtls.backends[0].type: unknown backend type 'bultin' (did you mean 'builtin'?)"
check "misspelt_backend_type_over_stored_mesh: no in-place change reported" out_lacks "in place"
check "misspelt_backend_type_over_stored_mesh: one error" err_has "nothing applied: 1 error"
run validate -f "$WORK/typo.yaml" --from "$WORK/mesh.yaml"
check "misspelt_backend_type_validate_from: one error, no in-place change" \
    bash -c "[ $rc -eq 1 ] && grep -qF '1 error, 0 warnings' '$WORK/out' && ! grep -q 'in place' '$WORK/out' '$WORK/err'"

# --- run --listen :PORT (Go's every-interface form) says what to write instead -------------------
# (Before: "--listen: ':5690' is not ADDRESS:PORT", and no word of which address.)
run run --listen :5690
check "run_listen_port_only: exit 2, says an address is needed and which" \
    bash -c "[ $rc -eq 2 ] && grep -qxF \"meshca: error: --listen: ':5690' is not ADDRESS:PORT (the address is required: 127.0.0.1:PORT for this host only, 0.0.0.0:PORT for every interface)\" '$WORK/err'"
run run --listen 127.0.0.1:0 --metrics :5691
check "run_metrics_port_only: the same hint for --metrics" \
    bash -c "[ $rc -eq 2 ] && grep -qF \"meshca: error: --metrics: ':5691' is not ADDRESS:PORT (the address is required\" '$WORK/err'"
# (Before: the store was opened first, so a new directory got an empty .meshca/meshca.db.)
MESHCA_STORE="sqlite://$WORK/fresh/meshca.db" run run --listen :5690
check "run_bad_listen_creates_no_store: exit 2, no store left behind" \
    bash -c "[ $rc -eq 2 ] && [ ! -e '$WORK/fresh' ]"
MESHCA_STORE="sqlite://$WORK/fresh/meshca.db" run run --listen 127.0.0.1:0 --manifests "$WORK/no-such-dir"
check "run_missing_manifests_dir: exit 2, names the flag and the directory, no store left behind" \
    bash -c "[ $rc -eq 2 ] && grep -qxF \"meshca: error: --manifests: cannot read $WORK/no-such-dir: No such file or directory\" '$WORK/err' && [ ! -e '$WORK/fresh' ]"

# --- a --server that is not https:// is a usage error, found before --out is created ---------
# (Before: "created DIR (mode 0700)" and then the error, the empty directory left behind.)
run agent -m default -d web-01 --out "$WORK/out-1" --server "http://127.0.0.1:$PORT" \
    --ca-file "$WORK/cp-ca.pem" --token-file "$TOKEN" --once
check "agent_http_server: exit 2" exit_is 2
check "agent_http_server: says the API is HTTPS only, with an example" \
    err_has "meshca: error: --server: 'http://127.0.0.1:$PORT' is not an https:// URL (the controller's API is served over HTTPS only, e.g. https://127.0.0.1:5690)"
check "agent_http_server: no 'at most 16 URLs' aside about another mistake" out_lacks "at most"
check "agent_http_server: --out not created" test ! -e "$WORK/out-1"
check "agent_http_server: no 'created' line" out_lacks "created"

run agent -m default -d web-01 --out "$WORK/out-1" --server "127.0.0.1:$PORT" \
    --ca-file "$WORK/cp-ca.pem" --token-file "$TOKEN" --once
check "agent_server_without_scheme: exit 2" exit_is 2
check "agent_server_without_scheme: names the URL" \
    err_has "meshca: error: --server: '127.0.0.1:$PORT' is not an https:// URL"
check "agent_server_without_scheme: --out not created" test ! -e "$WORK/out-1"

many=$(printf "$API_URL,%.0s" $(seq 17))
run agent -m default -d web-01 --out "$WORK/out-1" --server "$many" \
    --ca-file "$WORK/cp-ca.pem" --token-file "$TOKEN" --once
check "agent_too_many_servers: exit 2" exit_is 2
check "agent_too_many_servers: says the limit, not that an https URL is not one" \
    err_has "meshca: error: --server: more than 16 URLs"
check "agent_too_many_servers: --out not created" test ! -e "$WORK/out-1"

run agent -m default -d web-01 --out "$WORK/out-1" --server "$API_URL" \
    --ca-file "$WORK/cp-ca.pem" --token-file "$WORK/no-such.token" --once
check "agent_missing_token_file: exit 2" exit_is 2
check "agent_missing_token_file: names the flag and the file" \
    err_has "meshca: error: --token-file: cannot read a token from $WORK/no-such.token"
check "agent_missing_token_file: --out not created" test ! -e "$WORK/out-1"

# --- no --token-file and a fresh --out: said before the directory is made -------------------
# (Before: "created DIR (mode 0700)", the error, then "removed DIR again".)
run agent -m default -d web-01 --out "$WORK/out-1" --server "$API_URL" --ca-file "$WORK/cp-ca.pem" --once
check "agent_first_run_without_token: exit 1" exit_is 1
check "agent_first_run_without_token: says to pass --token-file and how to get one" \
    err_has "meshca: error: no certificate yet and no token: pass --token-file (meshca token issue -m default -d web-01)"
check "agent_first_run_without_token: --out never created" \
    bash -c "[ ! -e '$WORK/out-1' ] && ! grep -q 'created\|removed' '$WORK/out'"

# --- Ctrl-C of an agent parked on its blocking query ends it quietly ------------------------
# (Before: "meshca: default/web-01: https://...: Callback aborted; keeping the current files",
# libcurl's words for the agent's own interruption, read as a controller failing.)
"$MESHCA" agent -m default -d web-01 --out "$WORK/out-2" --server "$API_URL" \
    --ca-file "$WORK/cp-ca.pem" --token-file "$TOKEN" >"$WORK/out" 2>"$WORK/err" &
BG=$!
for i in $(seq 150); do
    grep -q "generation 1 loaded and acknowledged" "$WORK/out" && break
    kill -0 "$BG" 2>/dev/null || break
    sleep 0.1
done
check "set-up: the agent loaded generation 1" out_has "default/web-01: generation 1 loaded and acknowledged (backend ca-1)"
sleep 0.5   # its next request, the blocking query, is on the wire
kill -INT "$BG"
for i in $(seq 50); do kill -0 "$BG" 2>/dev/null || break; sleep 0.1; done
check "agent_ctrl_c_while_connected: it ended" bash -c "! kill -0 $BG 2>/dev/null"
wait "$BG"
rc=$?
BG=
check "agent_ctrl_c_while_connected: exit 0" exit_is 0
check "agent_ctrl_c_while_connected: no libcurl 'Callback aborted'" out_lacks "Callback aborted"
check "agent_ctrl_c_while_connected: nothing on standard error" test ! -s "$WORK/err"
check "agent_ctrl_c_while_connected: its files stay" test -s "$WORK/out-2/cert.pem"

# --- agent --once against a controller that does not answer: says it retries, Ctrl-C fails ---
# (Before: one line ending "keeping the current files", then a minute of silence; and Ctrl-C in
# that minute ended it with exit 0, as if it had loaded something, leaving --out behind.)
DEAD=$(free_port)
: >"$WORK/out"
: >"$WORK/err"
"$MESHCA" agent -m default -d web-01 --out "$WORK/out-3" --server "https://127.0.0.1:$DEAD" \
    --ca-file "$WORK/cp-ca.pem" --token-file "$TOKEN" --once >"$WORK/out" 2>"$WORK/err" &
BG=$!
for i in $(seq 150); do
    grep -qF "keeping the current files" "$WORK/err" && break
    kill -0 "$BG" 2>/dev/null || break
    sleep 0.1
done
check "agent_once_unreachable: the retry line says --once gives up after about a minute" \
    err_has "https://127.0.0.1:$DEAD: Failed to connect to 127.0.0.1 port $DEAD"
check "agent_once_unreachable: ... and how long it tries" \
    err_has "; keeping the current files (--once: trying again for about a minute before giving up)"
kill -INT "$BG"
for i in $(seq 50); do kill -0 "$BG" 2>/dev/null || break; sleep 0.1; done
wait "$BG"
rc=$?
BG=
check "agent_once_ctrl_c_before_anything_loaded: exit 2, not 0" exit_is 2
check "agent_once_ctrl_c_before_anything_loaded: says nothing was loaded" \
    err_has "meshca: error: stopped before a generation was loaded and acknowledged"
check "agent_once_ctrl_c_before_anything_loaded: the --out it created is removed" test ! -e "$WORK/out-3"

# --- run --manifests names the file, line and column of what it could not apply --------------
# (Before: "manifests: not applied, : did not find expected key ..." with neither file nor
# place; and a Dataplane of a mesh that does not exist was refused without a word.)
mkdir -p "$WORK/m"
mesh_fixture >"$WORK/m/mesh.yaml"
start_controller --interval 1s --manifests "$WORK/m"
# logged TEXT: the controller's log has TEXT (at most 15 s).
logged() { local i; for i in $(seq 150); do grep -qF -- "$1" "$CTL_LOG" && return 0; sleep 0.1; done; return 1; }
printf 'type: Dataplane\nmesh: default\nname: x\nnetworking:\n  address: 1.2.3.4\n  inbound:\n  - port: 80\n   tags: {kuma.io/service: a}\n' >"$WORK/m/dp.yaml"
check "manifests_yaml_syntax_error: the log names file, line and column" \
    logged "manifests: not applied, $WORK/m/dp.yaml:8:4: did not find expected key (while parsing a block mapping at line 5, column 3)"
printf 'type: Dataplane\nmesh: default\nname: x\nnetworking:\n  address: 1.2.3.4\n  inbound:\n  - port: 99999\n    tags: {kuma.io/service: a}\n' >"$WORK/m/dp.yaml"
check "manifests_invalid_field: the log names file, line, column and field path" \
    logged "manifests: not applied, $WORK/m/dp.yaml:7:11: networking.inbound[0].port: port 99999 is out of range 1-65535"
printf 'type: Dataplane\nmesh: nomesh\nname: x\nnetworking:\n  address: 1.2.3.4\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n' >"$WORK/m/dp.yaml"
check "manifests_dataplane_of_missing_mesh: refused, and said with its place" \
    logged "manifests: refused: $WORK/m/dp.yaml:2:7: mesh: mesh 'nomesh' does not exist: apply the Mesh first, or in the same apply"
run get dataplanes x
check "manifests_dataplane_of_missing_mesh: nothing stored" exit_is 1

finish
