#!/usr/bin/env bash
# fuzz-api.sh - runs the libFuzzer target of the dataplane API's CSR check for a bounded time
# (default 60 s) under ASan+UBSan. Usage: tools/fuzz-api.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
missing=()
for p in clang libclang-rt-14-dev libssl-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
out=build-fuzz
mkdir -p "$out/corpus-csr"
# Seed with a valid EC and RSA request, so mutations start from what parses.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
    -subj /CN=seed -out "$out/corpus-csr/ec.pem" 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -keyout /dev/null -subj /CN=seed \
    -out "$out/corpus-csr/rsa.pem" 2>/dev/null
clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I. \
    test/fuzz/fuzz-csr.c reconciler/api/csr.c manifests/error.c \
    $(pkg-config --cflags --libs openssl) -o "$out/fuzz-csr"
"$out/fuzz-csr" -max_total_time="$seconds" -max_len=20000 -timeout=10 "$out/corpus-csr"
