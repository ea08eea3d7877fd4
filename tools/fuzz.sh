#!/usr/bin/env bash
# fuzz.sh - runs the libFuzzer target of the manifest decoder and validators for a bounded time
# (default 60 s) under ASan+UBSan. Usage: tools/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
missing=()
for p in clang libclang-rt-14-dev libyaml-dev libjansson-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
out=build-fuzz
mkdir -p "$out/corpus"
# Seed the corpus with the shipped manifests.
find manifests/examples test/data -name '*.yaml' -exec cp {} "$out/corpus/" \; 2>/dev/null || true
clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I. \
    test/fuzz/fuzz-manifest.c manifests/*.c validators/*.c \
    $(pkg-config --cflags --libs yaml-0.1 jansson) -o "$out/fuzz-manifest"
"$out/fuzz-manifest" -max_total_time="$seconds" -max_len=65536 -timeout=10 "$out/corpus"
