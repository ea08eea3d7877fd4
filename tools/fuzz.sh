#!/usr/bin/env bash
# fuzz.sh - the long fuzzing run (SPEC S12): builds the libFuzzer targets (clang, ASan+UBSan,
# build-fuzz/) and runs each for SECONDS (default 600), keeping the grown corpora in
# build-fuzz/corpus/ so the next run starts where this one stopped. The test suite runs the same
# targets for 45 s each (suite 'fuzz', tools/test.sh). A crashing input is kept and named in the
# output: fix the bug and add the input to test/data/fuzz-corpus/ (the manifest target) or its
# target's subdirectory, where the unit suite replays it.
# Usage: tools/fuzz.sh [SECONDS] [TARGET...]   targets: manifest status pem csr api-body
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
tools/deps.sh
if [ ! -d build-fuzz ]; then
    CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
mkdir -p build-fuzz/corpus
tests=()
for t in "$@"; do tests+=("fuzz-$t"); done
# meson's per-test timeout is 180 s: scale it to the run asked for.
MESHCA_FUZZ_SECONDS=$seconds MESHCA_FUZZ_KEEP=$PWD/build-fuzz/corpus \
    meson test -C build-fuzz --suite fuzz --print-errorlogs -v \
    --timeout-multiplier $((seconds / 120 + 2)) "${tests[@]}"
