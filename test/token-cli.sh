#!/usr/bin/env bash
# token-cli.sh - token issue/revoke/list and cp-ca on the default store: the token printed alone
# and once, stored only as a hash, never listed; exit codes for bad input.
source "$(dirname "$0")/lib.sh"
ex="$SOURCE_ROOT/manifests/examples/rotation/universal"
# The default store, inside $WORK: whichever store this build defaults to.
unset MESHCA_STORE
cd "$WORK" || exit 2

run apply -f "$ex/0-mesh.yaml" -f "$ex/dataplanes.yaml"
check "apply of the mesh and dataplanes succeeds" exit_is 0

run token issue -m default -d web-01 --ttl 1h
check "token issue succeeds" exit_is 0
check "token issue prints one line, the token alone (43 base64url characters)" \
    grep -qxE '[A-Za-z0-9_-]{43}' "$WORK/out"
check "token issue prints nothing else" test "$(wc -l <"$WORK/out")" -eq 1 -a ! -s "$WORK/err"
token=$(cat "$WORK/out")
check "the token is nowhere in the store (hash only)" bash -c "! grep -rqF -- '$token' '$WORK/.meshca'"

run token list
check "token list shows the dataplane" out_has "web-01"
check "token list shows it valid" out_has "valid"
check "token list never prints the token" out_lacks "$token"
run token list -m default -o json
check "token list -o json has mesh, dataplane and expiry" python3 -c '
import json, sys; d = json.load(open(sys.argv[1]))
assert [(i["mesh"], i["dataplane"], i["status"]) for i in d] == [("default", "web-01", "valid")], d
assert set(d[0]) == {"mesh", "dataplane", "issuedAt", "expiresAt", "status"}, d' "$WORK/out"
check "token list -o json never prints the token" out_lacks "$token"

run token issue -m default -d nope-01
check "token issue for an unknown dataplane exits 1" exit_is 1
check "and names it" err_has "no dataplane 'nope-01' in mesh 'default'"
run token issue -m default -d web-01 --ttl 400d
check "token issue with a ttl above 366d exits 1" exit_is 1
check "and says which flag" err_has "--ttl: '400d'"
run token issue -m default -d ../etc
check "token issue with a path-like name exits 1" exit_is 1
run token issue -m default
check "token issue without -d is a usage error (exit 2)" exit_is 2
run token frobnicate
check "an unknown token command is a usage error (exit 2)" exit_is 2

run token revoke -m default -d web-01
check "token revoke succeeds" exit_is 0
check "token revoke says how many" out_has "revoked 1 token of default/web-01"
run token list -m default -o json
check "after revoke the list is empty" python3 -c '
import json, sys; assert json.load(open(sys.argv[1])) == []' "$WORK/out"

# --out FILE: the token written 0600 (not through the shell's umask), nothing on stdout.
umask 022
run token issue -m default -d web-01 --out "$WORK/web.token"
check "token issue --out succeeds" exit_is 0
check "token issue --out prints nothing" test ! -s "$WORK/out" -a ! -s "$WORK/err"
check "the --out file holds the token alone" grep -qxE '[A-Za-z0-9_-]{43}' "$WORK/web.token"
check "the --out file is mode 0600 under umask 022" test "$(stat -c %a "$WORK/web.token")" = 600
check "no temporary file is left beside it" test "$(ls "$WORK" | grep -c 'web.token')" -eq 1
old=$(cat "$WORK/web.token")
run token issue -m default -d web-01 --out "$WORK/web.token"
check "a second --out replaces the file with a new token" \
    bash -c "test \"\$(cat '$WORK/web.token')\" != '$old' && test \$(stat -c %a '$WORK/web.token') = 600"
run token list -m default -o json
check "both tokens are listed" python3 -c '
import json, sys; assert len(json.load(open(sys.argv[1]))) == 2' "$WORK/out"
run token issue -m default -d web-01 --out "$WORK/no-such-dir/web.token"
check "--out into a missing directory exits 2" exit_is 2
check "--out into a missing directory names the path" err_has "no-such-dir/web.token"
run token list -m default -o json
check "--out that cannot be written issues no token" python3 -c '
import json, sys; assert len(json.load(open(sys.argv[1]))) == 2' "$WORK/out"
run token issue -m default -d nope-01 --out "$WORK/nope.token"
check "--out for an unknown dataplane exits 1" exit_is 1
check "--out for an unknown dataplane leaves no file, temporary or not" \
    bash -c "! ls '$WORK' | grep -q nope.token"
run token revoke -m default -d web-01 --out "$WORK/x.token"
check "token revoke --out is a usage error (exit 2)" exit_is 2
run token revoke -m default -d web-01
check "revoke of the --out tokens" out_has "revoked 2 tokens of default/web-01"

run cp-ca
check "cp-ca succeeds" exit_is 0
check "cp-ca prints a PEM certificate" out_has "-----BEGIN CERTIFICATE-----"
check "cp-ca prints no private key" out_lacks "PRIVATE KEY"
cp "$WORK/out" "$WORK/ca1.pem"
run cp-ca -o pem
check "cp-ca prints the same CA the second time (created once)" cmp -s "$WORK/out" "$WORK/ca1.pem"
check "the CP CA is a CA openssl accepts" \
    openssl verify -x509_strict -CAfile "$WORK/ca1.pem" "$WORK/ca1.pem"
run cp-ca -o json
check "cp-ca -o json has the certificate and its expiry" python3 -c '
import json, sys; d = json.load(open(sys.argv[1]))
assert d["certificate"].startswith("-----BEGIN CERTIFICATE-----") and d["notAfter"].endswith("Z"), d' "$WORK/out"
check "cp-ca -o json prints no private key" out_lacks "PRIVATE KEY"
run cp-ca -o yaml
check "cp-ca -o yaml is a usage error (exit 2)" exit_is 2

# S8: deleting a Dataplane revokes its tokens.
run token issue -m default -d web-01
check "a fresh token for web-01 is issued" exit_is 0
run token issue -m default -d db-01
check "a token for db-01 is issued" exit_is 0
run delete dataplane web-01 -m default
check "web-01 is deleted" exit_is 0
run token list -m default -o json
check "deleting the dataplane revoked its tokens" python3 -c '
import json, sys; names = [t["dataplane"] for t in json.load(open(sys.argv[1]))]
assert names == ["db-01"], names' "$WORK/out"

finish
