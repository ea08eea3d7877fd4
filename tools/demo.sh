#!/usr/bin/env bash
# demo.sh - what a new user runs first: install, build, and walk a CA rotation through meshca
# with real nginx proxies and a request loop (test/e2e/demo.sh; the offline validate walkthrough
# stays in test/demo/validate-walkthrough.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
tools/build.sh build
exec test/e2e/demo.sh build/cmd/meshca
