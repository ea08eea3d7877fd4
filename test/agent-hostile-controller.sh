#!/usr/bin/env bash
# agent-hostile-controller.sh - an agent does not install what a compromised or broken
# controller sends (test/doubles/hostile_controller.py): a certificate for its own key that names
# another dataplane or mesh, a caBundle that is not certificates or not the certificate's CA, a
# chain that is junk, a second certificate in `certificate`. Each is refused with exit 1 naming
# why, nothing written (no cert.pem, key.pem or ca-bundle.pem), nothing acknowledged; the right
# answer is installed (the control). And --ca-file is the only CA trusted for the controller.
source "$(dirname "$0")/lib.sh"
cd "$WORK" || exit 2
MESHCA=$(readlink -f "$MESHCA")
D=$WORK/ctl
mkdir -p "$D"
CTL=
trap '[ -n "$CTL" ] && kill -KILL "$CTL" 2>/dev/null; rm -rf "$WORK"' EXIT

# Its TLS certificate (from a CA the agent is given as --ca-file), the mesh CA it signs with,
# and a CA that did not sign.
ec() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "$@" 2>/dev/null; }
ec -keyout "$D/cp-key.pem" -out "$WORK/cp-ca.pem" -subj /CN=cp-ca
ec -keyout "$D/mesh-ca-key.pem" -out "$D/mesh-ca.pem" -subj /CN=default
ec -keyout "$D/other-ca-key.pem" -out "$D/other-ca.pem" -subj /CN=default
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/tls-key.pem" \
    -subj /CN=127.0.0.1 -out "$D/tls.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$D/tls.cnf"
openssl x509 -req -in "$D/tls.csr" -CA "$WORK/cp-ca.pem" -CAkey "$D/cp-key.pem" -CAcreateserial \
    -days 1 -extfile "$D/tls.cnf" -out "$D/tls.pem" 2>/dev/null
check "set-up: the certificates" test -s "$D/tls.pem" -a -s "$D/mesh-ca.pem"
printf 'A%.0s' $(seq 43) >"$WORK/token"

PORT=$(python3 "$(dirname "$0")/free-ports.py" 1)
echo ok >"$D/mode"
python3 "$(dirname "$0")/doubles/hostile_controller.py" "$PORT" "$D" 2>"$WORK/ctl.log" &
CTL=$!
for _ in $(seq 100); do [ -e "$D/ready" ] && break; sleep 0.1; done
check "set-up: the hostile controller serves" test -e "$D/ready"

# agent MODE: one `agent --once` against the controller in MODE, on a fresh --out.
agent() {
    echo "$1" >"$D/mode"
    rm -rf "$WORK/dp" "$D/acks"
    timeout 60 "$MESHCA" agent -m default -d web-01 --out "$WORK/dp" --server "https://127.0.0.1:$PORT" \
        --ca-file "$WORK/cp-ca.pem" --token-file "$WORK/token" --once >"$WORK/out" 2>"$WORK/err"
    rc=$?
}
nothing_installed() {
    [ ! -e "$WORK/dp/cert.pem" ] && [ ! -e "$WORK/dp/key.pem" ] && [ ! -e "$WORK/dp/ca-bundle.pem" ] &&
        [ ! -e "$D/acks" ]
}

agent ok
check "the right certificate: exit 0" exit_is 0
check "the right certificate: installed" \
    bash -c "openssl x509 -in '$WORK/dp/cert.pem' -noout -ext subjectAltName | grep -q 'urn:meshca:dataplane:default:web-01'"
check "the right certificate: acknowledged" grep -qx '{"generation": 1}' "$D/acks"

refused() { # refused MODE REASON
    agent "$1"
    check "$1: exit 1" exit_is 1
    check "$1: the reason" err_has "generation 1 refused, the files are kept: $2"
    check "$1: nothing installed, nothing acknowledged" nothing_installed
}
refused other-dp "the certificate names another dataplane (urn:meshca:dataplane:default:web-02), not default/web-01"
refused other-mesh "the certificate names another dataplane (urn:meshca:dataplane:other:web-01), not default/web-01"
refused spiffe-other "the certificate's SAN spiffe://other/web is not of mesh 'default'"
refused bundle-junk "caBundle: cannot parse certificate chain PEM"
refused bundle-other "the certificate does not verify against the caBundle sent with it: unable to get local issuer certificate"
refused chain-junk "chain: cannot parse certificate chain PEM"
refused leaf-extra "certificate: 2 certificates where one leaf is expected"

# --ca-file is the only CA an agent trusts for its controller. libcurl (Debian: built with
# --with-ca-path=/etc/ssl/certs) kept the system CA directory beside CURLOPT_CAINFO, so a server
# with a certificate from any CA there passed as the controller and got the token. A CA put in
# a private /etc/ssl/certs (a mount namespace: the system's is never touched) must not be
# trusted. Runs where a mount namespace can be made (root, or unprivileged user namespaces).
ns() { unshare -m --propagation private true 2>/dev/null && echo "unshare -m --propagation private" ||
    { unshare -rm --propagation private true 2>/dev/null && echo "unshare -rm --propagation private"; }; }
NS=$(ns)
if [ -z "$NS" ]; then
    echo "ok - system CA directory not trusted # SKIP no mount namespace here"
else
    mkdir -p "$WORK/sys-certs" "$D/rogue"
    cp "$D/mesh-ca.pem" "$D/mesh-ca-key.pem" "$D/other-ca.pem" "$D/rogue/"
    ec -keyout "$D/rogue-ca-key.pem" -out "$WORK/sys-certs/rogue-ca.pem" -subj /CN=public-ca
    ln -s rogue-ca.pem "$WORK/sys-certs/$(openssl x509 -in "$WORK/sys-certs/rogue-ca.pem" -noout -hash).0"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/rogue/tls-key.pem" \
        -subj /CN=127.0.0.1 -out "$D/rogue/tls.csr" 2>/dev/null
    openssl x509 -req -in "$D/rogue/tls.csr" -CA "$WORK/sys-certs/rogue-ca.pem" -CAkey "$D/rogue-ca-key.pem" \
        -CAcreateserial -days 1 -extfile "$D/tls.cnf" -out "$D/rogue/tls.pem" 2>/dev/null
    echo ok >"$D/rogue/mode"
    RPORT=$(python3 "$(dirname "$0")/free-ports.py" 1)
    python3 "$(dirname "$0")/doubles/hostile_controller.py" "$RPORT" "$D/rogue" 2>>"$WORK/ctl.log" &
    ROGUE=$!
    for _ in $(seq 100); do [ -e "$D/rogue/ready" ] && break; sleep 0.1; done
    rm -rf "$WORK/dp"
    # The agent alone sees the private /etc/ssl/certs holding the rogue CA. A certificate it
    # cannot verify is a controller it cannot reach: --once would retry for a minute; its first
    # round is all this needs.
    timeout 5 $NS sh -c 'mount --bind "$1" /etc/ssl/certs && shift && exec "$@"' sh "$WORK/sys-certs" \
        "$MESHCA" agent -m default -d web-01 --out "$WORK/dp" --server "https://127.0.0.1:$RPORT" \
        --ca-file "$WORK/cp-ca.pem" --token-file "$WORK/token" --once >"$WORK/out" 2>"$WORK/err"
    rc=$?
    kill -KILL "$ROGUE" 2>/dev/null
    check "a CA of the system's directory is not the controller's: not loaded (exit $rc)" \
        test "$rc" -ne 0
    check "a CA of the system's directory is not the controller's: the reason" \
        err_has "(--ca-file is not the CA of this controller's certificate"
    check "a CA of the system's directory is not the controller's: no request reached it (no CSR, no token)" \
        test ! -e "$D/rogue/csr.pem"
    check "a CA of the system's directory is not the controller's: nothing installed" test ! -e "$WORK/dp/cert.pem"
fi

finish
