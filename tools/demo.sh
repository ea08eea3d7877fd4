#!/usr/bin/env bash
# demo.sh - what a new user runs first: install, build, and walk a CA rotation through meshca.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
tools/build.sh build
exec test/demo/validate-walkthrough.sh build/cmd/meshca
