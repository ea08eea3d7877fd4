#!/usr/bin/env bash
# start-cfssl.sh DIR - starts a real `cfssl serve` (Debian golang-cfssl) on 127.0.0.1 with a fresh root.
# Profiles: "intermediate" (a CA profile: ca_constraint is_ca, max_path_len 0), "intermediate-auth"
# (the same behind auth key "k1", whose hex is in DIR/authkey), "ca-unbounded" (a CA without a
# path length: meshca must refuse what it signs), "leaf" (not a CA). Writes
# DIR/port, DIR/pid, DIR/root.pem; returns once cfssl answers (bounded: 15 s).
set -euo pipefail
dir=$1
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
cd "$dir"
command -v cfssl >/dev/null || { echo "cfssl not installed (tools/deps.sh: golang-cfssl)" >&2; exit 1; }
echo '{"CN":"meshca test cfssl root","key":{"algo":"ecdsa","size":256}}' > root-csr.json
cfssl gencert -initca root-csr.json 2>/dev/null > root.json
python3 - <<'PY'
import json
d = json.load(open("root.json"))
open("root.pem", "w").write(d["cert"])
open("root-key.pem", "w").write(d["key"])
PY
rm -f root.json
chmod 600 root-key.pem
openssl rand -hex 32 > authkey
chmod 600 authkey
cat > config.json <<JSON
{"signing": {
  "default": {"expiry": "168h", "usages": ["digital signature", "key encipherment"]},
  "profiles": {
    "intermediate": {"expiry": "168h", "usages": ["cert sign", "crl sign"],
                     "ca_constraint": {"is_ca": true, "max_path_len": 0, "max_path_len_zero": true}},
    "intermediate-auth": {"expiry": "168h", "usages": ["cert sign", "crl sign"],
                          "ca_constraint": {"is_ca": true, "max_path_len": 0, "max_path_len_zero": true},
                          "auth_key": "k1"},
    "ca-unbounded": {"expiry": "168h", "usages": ["cert sign", "crl sign"],
                     "ca_constraint": {"is_ca": true}},
    "leaf": {"expiry": "24h", "usages": ["digital signature", "server auth"]}
  }},
 "auth_keys": {"k1": {"type": "standard", "key": "$(cat authkey)"}}}
JSON
chmod 600 config.json
# A free port (test/free-ports.py), then taken by cfssl (a race another test could still win: retried).
for attempt in 1 2 3; do
    port=$(python3 "$here/../free-ports.py" 1)
    cfssl serve -address 127.0.0.1 -port "$port" -ca root.pem -ca-key root-key.pem \
        -config config.json </dev/null >serve.log 2>&1 &
    echo $! > pid
    for _ in $(seq 150); do
        if curl -sf -m 1 -d '{"label":""}' "http://127.0.0.1:$port/api/v1/cfssl/info" >/dev/null 2>&1; then
            echo "$port" > port
            exit 0
        fi
        kill -0 "$(cat pid)" 2>/dev/null || break
        sleep 0.1
    done
    kill "$(cat pid)" 2>/dev/null || true
done
cat serve.log >&2
echo "cfssl serve did not start within 15 s" >&2
exit 1
