#!/usr/bin/env bash
# bench.sh - builds meshca and prints the S11 bench as one JSON object (test/bench/bench-all).
# Usage: tools/bench.sh [--quick] [--no-peers] [--no-reconcile] [--no-api] [--rounds N] [BUILD_DIR=build via env]
#   --quick         reconcile 10,000 dataplanes only (the default adds 100,000)
#   --no-peers      skip the openssl CLI, cfssl gencert and cfssl serve figures
#   --no-reconcile  skip bench-reconcile (full/no-op reconcile, validate of 100,000 statuses)
#   --no-api        skip bench-api (CSRs through the API with TLS keep-alive, 10,000 parked agents)
#   --rounds N      rounds of the raw and signing loops, each figure its best round (default 3)
# Needs openssl and Debian golang-cfssl for the peers (tools/deps.sh installs them). The default
# run is bounded: 3 min 37 s on a quiet 2-core machine, up to 15 minutes under load, a third of it
# the etcd runs (doc/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BUILD_DIR:-build}
tools/build.sh "$dir"
exec "$dir/test/bench/bench-all" "$@"
