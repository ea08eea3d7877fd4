#!/usr/bin/env bash
# build.sh - configures (once) and builds meshca in build/ (or the directory given).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
[ -f "$dir/build.ninja" ] || meson setup "$dir" "$@" >/dev/null
meson compile -C "$dir" >/dev/null
