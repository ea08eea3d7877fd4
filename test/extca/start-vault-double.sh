#!/usr/bin/env bash
# start-vault-double.sh DIR - makes the CAs and token of the Vault PKI test double and starts it in the background.
# Writes DIR/port and DIR/pid; returns once the double listens (bounded: 15 s). The double is a
# TEST DOUBLE (test/doubles/vault_pki_double.py), not Vault: no Vault server is packaged in Debian.
set -euo pipefail
dir=$1
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
cd "$dir"
q() { "$@" >/dev/null 2>&1; }

# The PKI mount's CA (what Vault signs leaves with).
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout vault-ca.key \
    -out vault-ca.pem -days 30 -subj "/CN=vault test double pki CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
# The server's TLS certificate: only the name vault.test, so the client must use tls.serverName.
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tls-ca.key \
    -out tls-ca.pem -days 30 -subj "/CN=vault test double TLS CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
q openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
    -out server.csr -subj "/CN=vault.test"
printf 'subjectAltName=DNS:vault.test\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' > server.ext
q openssl x509 -req -in server.csr -CA tls-ca.pem -CAkey tls-ca.key -CAcreateserial -days 30 \
    -extfile server.ext -out server.pem
# The client certificate of auth/cert/login, from its own CA.
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client-ca.key \
    -out client-ca.pem -days 30 -subj "/CN=vault test double client CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
q openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key \
    -out client.csr -subj "/CN=meshca controller"
printf 'extendedKeyUsage=clientAuth\nbasicConstraints=critical,CA:FALSE\n' > client.ext
q openssl x509 -req -in client.csr -CA client-ca.pem -CAkey client-ca.key -CAcreateserial \
    -days 30 -extfile client.ext -out client.pem
openssl rand -hex 16 | sed 's/^/hvs.test-/' > token
chmod 600 token ./*.key

rm -f port
python3 "$here/../doubles/vault_pki_double.py" --dir "$dir" --token-file token \
    --namespace "${VAULT_DOUBLE_NAMESPACE:-mesh-team}" --port-file port --log requests.log \
    --lease "${VAULT_DOUBLE_LEASE:-3600}" --slow "${VAULT_DOUBLE_SLOW:-4}" \
    </dev/null >double.out 2>&1 &
echo $! > pid
for _ in $(seq 150); do
    [ -s port ] && exit 0
    kill -0 "$(cat pid)" 2>/dev/null || { cat double.out >&2; exit 1; }
    sleep 0.1
done
echo "vault test double did not start within 15 s" >&2
exit 1
