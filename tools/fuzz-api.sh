#!/usr/bin/env bash
# fuzz-api.sh - the long fuzzing run of the dataplane API's inputs: CSRs and request bodies.
# Usage: tools/fuzz-api.sh [SECONDS]   (see tools/fuzz.sh)
exec "$(dirname "$0")/fuzz.sh" "${1:-600}" csr api-body
