#!/usr/bin/env bash
# test.sh - the full test suite: install what is missing, build, run every test, then again
# under AddressSanitizer and UndefinedBehaviorSanitizer, then a bounded libFuzzer run of every
# fuzz target (clang, build-fuzz/). Suite 'crash' includes the kill -9 tests of apply,
# reconcile --once and run (test/crash-kill.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
tools/build.sh build
meson test -C build --print-errorlogs
tools/build.sh build-asan -Db_sanitize=address,undefined -Db_lundef=false
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs
# Only the fuzz targets and what they link are built there (meson test builds what it runs).
[ -f build-fuzz/build.ninja ] ||
    CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
meson test -C build-fuzz --suite fuzz --print-errorlogs -v
