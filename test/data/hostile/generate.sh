#!/usr/bin/env bash
# generate.sh - writes the hostile inputs that must not be checked in (9 MiB files, FIFOs, device
# links, symlink loops, empty directories) and the CA manifests built from test/data/inline-ca/,
# into DIR. Used by test/hostile.sh; the small hostile files sit beside this script.
# Usage: generate.sh DIR
set -euo pipefail
out=${1:?usage: generate.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
ca=$here/../inline-ca
mkdir -p "$out"
cd "$out"

# Over the 8 MiB file limit (a valid start, then comments).
python3 -c 'import sys; sys.stdout.write("type: Mesh\nname: default\n" + "# padding padding padding\n" * 380000)' >big.yaml
# Over the 1 MiB scalar limit, in a file under 8 MiB.
python3 -c 'import sys; sys.stdout.write("type: Secret\nmesh: default\nname: s\ndata: " + "QUFB" * 300000 + "\n")' >long-scalar.yaml
# Over the 100,000 documents limit.
python3 -c 'import sys; sys.stdout.write("---\n{}\n" * 100001)' >many-docs.yaml
# Not regular files: a FIFO nobody writes, an endless device, symlink loops.
mkfifo fifo.yaml
ln -s /dev/zero zero.yaml
ln -s loop-b.yaml loop-a.yaml
ln -s loop-a.yaml loop-b.yaml
mkdir -p dirloop/sub
cp "$here/crlf.yaml" dirloop/mesh.yaml
ln -s .. dirloop/sub/up
mkdir -p empty
# A status file that is a FIFO.
mkfifo status-fifo.json

# Provided CAs: a mesh whose backend takes its cert and key inline (inlineString) from the
# fixtures of test/data/inline-ca, one file per defect.
provided() { # provided NAME CERT-PEM-FILE KEY-PEM-FILE
    {
        printf 'type: Mesh\nname: %s\nmtls:\n  enabledBackend: ca-1\n  backends:\n' "$1"
        printf '  - name: ca-1\n    type: provided\n    conf:\n      cert:\n        inlineString: |\n'
        sed 's/^/          /' "$2"
        printf '      key:\n        inlineString: |\n'
        sed 's/^/          /' "$3"
    } >"ca-$1.yaml"
}
provided weak-rsa1024 "$ca/rsa-1024.cert.pem" "$ca/rsa-1024.key.pem"
provided leaf-as-ca "$ca/leaf-as-ca.cert.pem" "$ca/leaf-as-ca.key.pem"
provided mismatched "$ca/good.cert.pem" "$ca/key-mismatch.key.pem"
printf -- '-----BEGIN CERTIFICATE-----\nTUlJQm9uZSBndWFyYW50ZWVkIGdhcmJhZ2U=\n-----END CERTIFICATE-----\n' >malformed.pem
provided malformed-pem malformed.pem "$ca/good.key.pem"
# A key where the certificate belongs and the certificate where the key belongs.
provided swapped-pem "$ca/good.key.pem" "$ca/good.cert.pem"
# Bad base64 as inline data.
sed -e 's/inlineString: |/inline: "@@@not base64@@@"/' -e '/^          /d' ca-leaf-as-ca.yaml >ca-bad-base64.yaml
