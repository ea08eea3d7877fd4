#!/usr/bin/env bash
# cp-ca-rotate.sh - doc/cp-ca.md's rotation of the control-plane CA against a running controller:
# `cp-ca rotate` (a next CA, a 2-certificate bundle), `--switch` (the controller serves a
# certificate of the new CA without a restart or SIGHUP), `--finish` (1 certificate again);
# agents given the bundle work before and after the switch, one given only the old CA is refused
# with the --ca-file message, the refusals of steps out of order, no key in any output.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
MESHCA=$(readlink -f "$MESHCA")
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"

mesh_fixture web-01 db-01:5432:db >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0

# Every command's output is kept here too: no private key may appear in any of it.
ALL="$WORK/all-output"
keep() { cat "$WORK/out" "$WORK/err" >>"$ALL"; }
# certs FILE: how many certificates FILE holds.
certs() { grep -c -- "-----BEGIN CERTIFICATE-----" "$1"; }
# nth N FILE: the Nth certificate (1-based) of a PEM bundle.
nth() { awk -v n="$1" '/-----BEGIN CERTIFICATE-----/ { i++ } i == n { print } /-----END CERTIFICATE-----/ && i == n { exit }' "$2"; }
# fp FILE: SHA-1 fingerprint of the first certificate of FILE.
fp() { openssl x509 -noout -fingerprint -sha1 -in "$1" | cut -d= -f2; }
# served_issuer: the issuer of the certificate the API serves now.
served_issuer() {
    openssl s_client -connect "${API_URL#https://}" </dev/null 2>/dev/null | openssl x509 -noout -issuer
}
# verifies CAFILE: the API's certificate verifies against CAFILE alone.
verifies() {
    openssl s_client -connect "${API_URL#https://}" -CAfile "$1" -verify_return_error </dev/null >/dev/null 2>&1
}
# agent_with CAFILE DP [FLAG...]: one agent run (--once) trusting CAFILE; output in $WORK/out/err.
agent_with() {
    local ca=$1 dp=$2
    shift 2
    mkdir -p "$WORK/dp"
    timeout 60 "$MESHCA" agent -m default -d "$dp" --out "$WORK/dp/$dp" --server "$API_URL" \
        --ca-file "$ca" --token-file "$(token_for "$dp")" --reload true --once "$@" >"$WORK/out" 2>"$WORK/err"
    rc=$?
    keep
}
# said TEXT: the controller's log holds TEXT (bounded wait: the check runs at every --interval).
said() {
    local i
    for i in $(seq 150); do
        grep -qF -- "$1" "$CTL_LOG" && return 0
        sleep 0.2
    done
    return 1
}

start_controller
cp "$WORK/cp-ca.pem" "$WORK/old.pem"
check "set-up: cp-ca prints 1 certificate before any rotation" [ "$(certs "$WORK/old.pem")" = 1 ]
agent_with "$WORK/old.pem" web-01
check "an agent given the old CA works" out_has "generation 1 loaded and acknowledged"

# Steps out of order are refused (exit 1) and say what to do.
run cp-ca rotate --switch
keep
check "--switch without a next CA: exit 1" exit_is 1
check "... says there is none and how to start" \
    err_has "no control-plane CA rotation in progress: no next CA to switch to; start one with 'meshca cp-ca rotate'"
run cp-ca rotate --finish
keep
check "--finish without a rotation: exit 1" exit_is 1
check "... says there is nothing to finish" \
    err_has "no control-plane CA rotation in progress: nothing to finish; start one with 'meshca cp-ca rotate'"
run cp-ca rotate --switch --finish
check "--switch and --finish together: usage error (exit 2)" exit_is 2

# Step 1, twice at once: one stores its CA, the other is refused.
"$MESHCA" cp-ca rotate >"$WORK/r1.out" 2>"$WORK/r1.err" &
p1=$!
"$MESHCA" cp-ca rotate >"$WORK/r2.out" 2>"$WORK/r2.err" &
p2=$!
wait "$p1"
rc1=$?
wait "$p2"
rc2=$?
cat "$WORK"/r[12].out "$WORK"/r[12].err >>"$ALL"
check "two concurrent rotates: one exits 0, the other 1 ($rc1, $rc2)" [ "$((rc1 + rc2))" = 1 ] && [ "$((rc1 * rc2))" = 0 ]
check "... the one that stored says the next steps" \
    grep -q "Next steps:" "$WORK/r$((rc1 == 0 ? 1 : 2)).out"
check "... with the switch command" grep -q "2. meshca cp-ca rotate --switch" "$WORK/r$((rc1 == 0 ? 1 : 2)).out"
check "... the refused one says a rotation is in progress and what to do" \
    grep -q "a control-plane CA rotation is already in progress (next CA created .*): give every agent the bundle of 'meshca cp-ca -o pem' as --ca-file, then run 'meshca cp-ca rotate --switch'" \
    "$WORK/r$((rc1 == 0 ? 2 : 1)).err"
run cp-ca rotate
keep
check "a second rotate while a next CA exists: exit 1" exit_is 1
check "... says what to do" err_has "a control-plane CA rotation is already in progress (next CA created"
run cp-ca rotate --finish
keep
check "--finish before --switch: exit 1" exit_is 1
check "... says to switch first" err_has "the control-plane CA rotation is not switched yet: run 'meshca cp-ca rotate --switch' first"

run cp-ca -o pem
keep
cp "$WORK/out" "$WORK/bundle.pem"
check "after rotate, cp-ca prints 2 certificates" [ "$(certs "$WORK/bundle.pem")" = 2 ]
nth 1 "$WORK/bundle.pem" >"$WORK/first.pem"
nth 2 "$WORK/bundle.pem" >"$WORK/new.pem"
check "... the current (old) CA first" [ "$(fp "$WORK/first.pem")" = "$(fp "$WORK/old.pem")" ]
check "... then another one" [ "$(fp "$WORK/new.pem")" != "$(fp "$WORK/old.pem")" ]
check "... and says on stderr that a rotation is started and the next step" \
    err_has "a control-plane CA rotation is in progress (started): this bundle holds the current CA and the next one; make it every agent's --ca-file, then run 'meshca cp-ca rotate --switch'"
run cp-ca -o json
keep
check "cp-ca -o json: rotation started, roles current then next, top fields of the current CA" \
    python3 - "$WORK/out" "$(fp "$WORK/old.pem")" "$(fp "$WORK/new.pem")" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
old, new = sys.argv[2].lower(), sys.argv[3].lower()
roles = [(c["role"], c["fingerprintSHA1"]) for c in d["certificates"]]
assert d["rotation"] == "started", d["rotation"]
assert roles == [("current", old), ("next", new)], roles
assert d["fingerprintSHA1"] == old, d["fingerprintSHA1"]
assert "meshca cp-ca rotate --switch" in d["nextStep"], d["nextStep"]
PY
old_issuer=$(openssl x509 -noout -subject -in "$WORK/old.pem" | sed 's/^subject=/issuer=/')
new_issuer=$(openssl x509 -noout -subject -in "$WORK/new.pem" | sed 's/^subject=/issuer=/')
check "before the switch the controller still serves a certificate of the old CA" \
    [ "$(served_issuer)" = "$old_issuer" ]
agent_with "$WORK/bundle.pem" web-01 --renew
check "before the switch an agent given the 2-certificate bundle works" out_has "generation 2 loaded and acknowledged"

# Step 2: the controller notices the switch by itself (no SIGHUP, no restart).
run cp-ca rotate --switch
keep
check "--switch: exit 0" exit_is 0
check "... says the new CA is current" out_has "control-plane CA switched: "
check "... and the next step" out_has "  meshca cp-ca rotate --finish"
check "the controller says it serves a certificate of the new CA" \
    said "the control-plane CA was switched (cp-ca rotate --switch): the dataplane API serves a new certificate (expires "
check "the served certificate's issuer is the new CA ($new_issuer)" [ "$(served_issuer)" = "$new_issuer" ]
check "... it verifies against the new CA alone" verifies "$WORK/new.pem"
check "... not against the old one" bash -c "! openssl s_client -connect '${API_URL#https://}' -CAfile '$WORK/old.pem' -verify_return_error </dev/null >/dev/null 2>&1"
run cp-ca -o pem
keep
check "after --switch cp-ca prints the same 2 certificates, in the same order" cmp -s "$WORK/out" "$WORK/bundle.pem"
check "... and says the next step is --finish" \
    err_has "a control-plane CA rotation is in progress (switched): this bundle holds the previous CA and the current one; once every agent works with the current one, run 'meshca cp-ca rotate --finish'"
run cp-ca -o json
keep
check "cp-ca -o json: rotation switched, roles previous then current" \
    python3 - "$WORK/out" "$(fp "$WORK/old.pem")" "$(fp "$WORK/new.pem")" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
old, new = sys.argv[2].lower(), sys.argv[3].lower()
roles = [(c["role"], c["fingerprintSHA1"]) for c in d["certificates"]]
assert d["rotation"] == "switched", d["rotation"]
assert roles == [("previous", old), ("current", new)], roles
assert d["fingerprintSHA1"] == new, d["fingerprintSHA1"]
PY
run cp-ca rotate --switch
keep
check "a second --switch: exit 1" exit_is 1
check "... says the next step is --finish" err_has "is already switched (at "
run cp-ca rotate
keep
check "rotate while switched: exit 1, says to finish first" \
    bash -c "[ $rc = 1 ] && grep -qF \"already in progress (switched at\" '$WORK/err' && grep -qF \"run 'meshca cp-ca rotate --finish' first\" '$WORK/err'"
agent_with "$WORK/bundle.pem" web-01 --renew
check "after the switch an agent given the bundle works" out_has "generation 3 loaded and acknowledged"

# An agent given only the old CA is refused with the --ca-file message, and keeps retrying; the
# bundle written into that same file lets it through without a restart (libcurl reads the file
# at each connection).
cp "$WORK/old.pem" "$WORK/agent-ca.pem"
mkdir -p "$WORK/dp"
"$MESHCA" agent -m default -d db-01 --out "$WORK/dp/db-01" --server "$API_URL" \
    --ca-file "$WORK/agent-ca.pem" --token-file "$(token_for db-01)" --reload true \
    >"$WORK/out" 2>"$WORK/err" &
agent=$!
for _ in $(seq 300); do grep -q "SSL certificate problem" "$WORK/err" && break; sleep 0.1; done
check "after the switch an agent given only the old CA is refused with the --ca-file message" \
    err_has "SSL certificate problem: self-signed certificate in certificate chain (--ca-file is not the CA of this controller's certificate: pass 'meshca cp-ca -o pem'"
check "... and loads nothing" bash -c "! grep -q 'loaded and acknowledged' '$WORK/out'"
cp "$WORK/bundle.pem" "$WORK/agent-ca.pem"
for _ in $(seq 450); do grep -q "loaded and acknowledged" "$WORK/out" && break; sleep 0.1; done
kill "$agent" 2>/dev/null
wait "$agent"
keep
check "... the bundle written into its --ca-file lets it through, without a restart" \
    out_has "generation 1 loaded and acknowledged"

# Step 3.
run cp-ca rotate --finish
keep
check "--finish: exit 0" exit_is 0
check "... says to give agents the 1-certificate bundle" \
    out_has "Next step: give every agent 'meshca cp-ca -o pem' (1 certificate) as --ca-file again"
run cp-ca -o pem
keep
cp "$WORK/out" "$WORK/final.pem"
check "after --finish cp-ca prints 1 certificate" [ "$(certs "$WORK/final.pem")" = 1 ]
check "... the new CA" [ "$(fp "$WORK/final.pem")" = "$(fp "$WORK/new.pem")" ]
check "... and no rotation note" bash -c "! grep -q 'rotation is in progress' '$WORK/err'"
run cp-ca rotate --finish
keep
check "a second --finish: exit 1" exit_is 1
agent_with "$WORK/final.pem" web-01 --renew
check "after --finish an agent given the new CA alone works" out_has "generation 4 loaded and acknowledged"
kill -HUP "$CTL_PID"
for _ in $(seq 100); do grep -q "SIGHUP: the dataplane API serves" "$CTL_LOG" && break; sleep 0.1; done
check "SIGHUP after --finish re-signs with the new CA" [ "$(served_issuer)" = "$new_issuer" ]

cat "$CTL_LOG" >>"$ALL"
check "no private key in any output or the controller's log" bash -c "! grep -q 'PRIVATE KEY' '$ALL'"
check "... (the outputs were captured)" grep -q "control-plane CA switched" "$ALL"
finish
