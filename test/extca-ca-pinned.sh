#!/usr/bin/env bash
# extca-ca-pinned.sh - a vault backend's tls.caCert is the only CA trusted for Vault: libcurl
# (Debian: built with --with-ca-path=/etc/ssl/certs) kept the system CA directory beside the
# CA given, so a server whose certificate came from any CA there passed as Vault and got the
# token. Against the Vault PKI TEST DOUBLE, with its TLS CA put in a private /etc/ssl/certs (a
# mount namespace: the system's is never touched) and tls.caCert another CA: refused
# (ca-bad-answer, the verification named), no request reached the double. Needs a mount
# namespace (root, or unprivileged user namespaces): skipped otherwise. The same for etcds://
# with --etcd-cacert.
source "$(dirname "$0")/lib.sh"
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
VD="$WORK/vault"
trap '[ -s "$VD/pid" ] && kill "$(cat "$VD/pid")" 2>/dev/null; rm -rf "$WORK"' EXIT
MESHCA=$(readlink -f "$MESHCA")

NS=
if unshare -m --propagation private true 2>/dev/null; then
    NS="unshare -m --propagation private"
elif unshare -rm --propagation private true 2>/dev/null; then
    NS="unshare -rm --propagation private"
else
    echo "ok - tls.caCert is the only CA # SKIP no mount namespace here"
    finish
fi
if ! timeout 30 bash "$(dirname "$0")/extca/start-vault-double.sh" "$VD" >"$WORK/double.log" 2>&1; then
    echo "FAIL - the Vault PKI test double did not start"
    cat "$WORK/double.log"
    exit 1
fi
TOKEN=$(cat "$VD/token")
# The double's TLS CA, as a system CA of the private directory.
mkdir -p "$WORK/sys-certs"
cp "$VD/tls-ca.pem" "$WORK/sys-certs/"
ln -s tls-ca.pem "$WORK/sys-certs/$(openssl x509 -in "$VD/tls-ca.pem" -noout -hash).0"

mesh() { # mesh CA-FILE: a vault-only mesh whose tls.caCert is CA-FILE
    cat <<YAML
type: Mesh
name: probe
mtls:
  enabledBackend: vault-1
  backends:
  - name: vault-1
    type: vault
    dpCert: {requestTimeout: 3s}
    conf:
      fromCp:
        address: https://127.0.0.1:$(cat "$VD/port")
        namespace: mesh-team
        pki: pki
        role: mesh
        tls: {caCert: {file: $1}, serverName: vault.test}
        auth: {token: {secret: vault-token}}
---
type: Secret
mesh: probe
name: vault-token
data: $(printf %s "$TOKEN" | base64 -w0)
YAML
}
in_ns() { # in_ns CMD...: CMD where /etc/ssl/certs is the private directory
    timeout 60 $NS sh -c 'mount --bind "$1" /etc/ssl/certs && shift && exec "$@"' sh "$WORK/sys-certs" "$@"
}

mesh "$VD/tls-ca.pem" >"$WORK/right.yaml"
in_ns "$MESHCA" apply --dry-run -f "$WORK/right.yaml" -o json >"$WORK/out" 2>"$WORK/err"
rc=$?
check "the right tls.caCert: the dry run passes (exit 0)" exit_is 0
requests=$(wc -l <"$VD/requests.log")

mesh "$VD/client-ca.pem" >"$WORK/wrong.yaml"
in_ns "$MESHCA" apply --dry-run -f "$WORK/wrong.yaml" -o json >"$WORK/out" 2>"$WORK/err"
rc=$?
check "tls.caCert not Vault's CA, Vault's CA a system CA: refused, exit 2" exit_is 2
check "tls.caCert not Vault's CA: ca-bad-answer (how a TLS failure is classed)" json_has ca-bad-answer "mtls.backends[0]"
check "tls.caCert not Vault's CA: the verification named" out_has "SSL certificate problem: unable to get local issuer certificate"
check "tls.caCert not Vault's CA: no request reached the double" test "$(wc -l <"$VD/requests.log")" -eq "$requests"
check "no token in any output" bash -c "! grep -qF -- '$TOKEN' '$WORK/out' '$WORK/err'"

# The same for etcds:// and --etcd-cacert: an HTTPS server (the hostile-controller double, not
# etcd) with a certificate from the private system CA directory is not taken for etcd.
E=$WORK/etcd
mkdir -p "$E"
cp "$VD/server.pem" "$E/tls.pem"
cp "$VD/server.key" "$E/tls-key.pem"
echo ok >"$E/mode"
EPORT=$(python3 "$(dirname "$0")/free-ports.py" 1)
python3 "$(dirname "$0")/doubles/hostile_controller.py" "$EPORT" "$E" 2>"$WORK/etcd.log" &
EPID=$!
for _ in $(seq 100); do [ -e "$E/ready" ] && break; sleep 0.1; done
# vault.test is the name in the double's certificate: an /etc/hosts line would need root, so the
# address is 127.0.0.1 and the certificate is checked for the CA alone (the name check fails
# after it, with another message).
in_ns "$MESHCA" --store "etcds://127.0.0.1:$EPORT" --etcd-cacert "$VD/client-ca.pem" get meshes \
    >"$WORK/out" 2>"$WORK/err"
rc=$?
kill "$EPID" 2>/dev/null
check "--etcd-cacert not the server's CA, the server's CA a system CA: refused, exit 2" exit_is 2
check "--etcd-cacert: refused for its CA" err_has "SSL certificate problem: unable to get local issuer certificate"

finish
