#!/usr/bin/env bash
# run-fuzz.sh - one bounded libFuzzer run for the test suite (suite 'fuzz'): starts from the given
# corpora, writes new inputs to a scratch directory (the checked-in corpora stay as they are),
# fails on any crash, leak, timeout or sanitizer report, and prints executions and time.
# Usage: run-fuzz.sh FUZZER CORPUS... (MESHCA_FUZZ_SECONDS, default 45; MESHCA_FUZZ_KEEP=DIR keeps
# the grown corpus in DIR/NAME for the next run, as tools/fuzz.sh does for long runs)
set -uo pipefail
fuzzer=$1
shift
seconds=${MESHCA_FUZZ_SECONDS:-45}
name=$(basename "$fuzzer")
artifacts=$(mktemp -d)
if [ -n "${MESHCA_FUZZ_KEEP:-}" ]; then
    scratch=$MESHCA_FUZZ_KEEP/$name
    mkdir -p "$scratch"
else
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
fi
start=$(date +%s)
# -timeout: one input taking 10 s is a hang; -rss_limit_mb: a runaway allocation is a finding.
"$fuzzer" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$scratch" "$@" >"$scratch.log" 2>&1
rc=$?
elapsed=$(($(date +%s) - start))
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch.log" | tail -1)
if [ "$rc" -ne 0 ] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$scratch.log"; then
    tail -60 "$scratch.log"
    echo "FAIL - $name: exit $rc after ${execs:-?} executions in ${elapsed}s; crashing input kept in $artifacts:"
    ls -l "$artifacts"
    rm -f "$scratch.log"
    exit 1
fi
rm -f "$scratch.log"
rmdir "$artifacts" 2>/dev/null
echo "ok - $name: ${execs:-?} executions in ${elapsed}s, 0 crashes, 0 leaks, 0 sanitizer reports"
