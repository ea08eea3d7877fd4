#!/usr/bin/env bash
# agent-reload-retry.sh - an agent whose --reload command fails retries loading the same
# generation with its backoff (0.5 s doubling) until it loads, instead of waiting for the next
# generation in a blocking query (60 s): a reload that fails 3 times, then succeeds, gets the
# generation loaded and acknowledged, never acknowledged before it loaded, files written once.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/api-lib.sh"
cd "$WORK" || exit 2
MESHCA=$(readlink -f "$MESHCA")
export MESHCA
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; stop_controller KILL; rm -rf "$WORK"' EXIT

mesh_fixture >"$WORK/mesh.yaml"
run apply -f "$WORK/mesh.yaml"
check "set-up: apply" exit_is 0
start_controller --interval 1s
check "set-up: the controller serves the API" grep -q "serving the dataplane API on $API_URL" "$CTL_LOG"

# web-01's acknowledged and current generations.
gens() {
    "$MESHCA" inspect dataplanes -m default -o json 2>/dev/null | python3 -c '
import json, sys
items = json.load(sys.stdin)
items = items.get("items", items) if isinstance(items, dict) else items
m = [i["mtls"] for i in items if i["name"] == "web-01"][0]
print(m.get("acknowledgedGeneration", 0), m.get("generation", 0))'
}

# flaky.sh: a reload command that fails its first 3 runs. Each run appends a line: its number,
# the acknowledged generation at that moment, and the generation directory ..data names.
cat >"$WORK/flaky.sh" <<'SH'
#!/bin/sh
n=$(($(cat "$WORK/reloads" 2>/dev/null | wc -l) + 1))
acked=$("$MESHCA" inspect dataplanes -m default -o json 2>/dev/null | python3 -c '
import json, sys
items = json.load(sys.stdin)
items = items.get("items", items) if isinstance(items, dict) else items
print([i["mtls"].get("acknowledgedGeneration", 0) for i in items if i["name"] == "web-01"][0])')
echo "$n $acked $(readlink "$OUT/..data")" >>"$WORK/reloads"
[ "$n" -gt 3 ]
SH
chmod +x "$WORK/flaky.sh"
export WORK OUT="$WORK/certs"

# No --once and the default blocking wait (60 s): before the fix the agent, after the first
# failed reload, waited in a blocking query for the next generation and ran the reload again
# only when that query ended, a minute later. The loop below gives up after 20 s.
timeout 60 "$MESHCA" agent -m default -d web-01 --server "$API_URL" --ca-file "$WORK/cp-ca.pem" \
    --token-file "$(token_for web-01)" --out "$OUT" --reload "$WORK/flaky.sh" \
    >"$WORK/out" 2>"$WORK/err" &
agent=$!
PIDS+=("$agent")
for i in $(seq 200); do
    grep -q "loaded and acknowledged" "$WORK/out" && break
    kill -0 "$agent" 2>/dev/null || break
    sleep 0.1
done
rc=0
read -r acked gen <<<"$(gens)"
echo "# reload runs: $(wc -l <"$WORK/reloads" 2>/dev/null || echo 0); acknowledged $acked of generation $gen"
check "agent_retries_a_failed_reload: the generation is loaded and acknowledged" \
    grep -q "generation $gen loaded and acknowledged" "$WORK/out"
check "agent_retries_a_failed_reload: the store has it acknowledged" test "$gen" -ge 1 -a "$acked" = "$gen"
check "agent_retries_a_failed_reload: the reload ran 4 times (3 failed, 1 ok), not again after" \
    test "$(wc -l <"$WORK/reloads")" -eq 4
check "agent_retries_a_failed_reload: acked-generation holds it" \
    test -n "$gen" -a "$(cat "$OUT/acked-generation")" = "$gen"
check "agent_retries_a_failed_reload: not acknowledged while the reload failed (runs 1-3)" \
    test "$(awk -v g="$gen" '$1 <= 3 && $2 != g' "$WORK/reloads" | wc -l)" -eq 3
check "agent_retries_a_failed_reload: the files were written once, not again per retry" \
    test "$(awk '{print $3}' "$WORK/reloads" | sort -u | wc -l)" -eq 1 -a \
    "$(awk 'NR==1 {print $3}' "$WORK/reloads")" = "$(readlink "$OUT/..data")"
check "agent_retries_a_failed_reload: each failure is said, the first plainly" \
    grep -qx "meshca: default/web-01: reload command failed (exit 1); generation $gen not acknowledged" "$WORK/err"
check "agent_retries_a_failed_reload: the retries with their attempt number" \
    bash -c "grep -q 'generation $gen not acknowledged (attempt 2)\$' '$WORK/err' &&
             grep -q 'generation $gen not acknowledged (attempt 3)\$' '$WORK/err'"
check "agent_retries_a_failed_reload: three failure lines, no more" \
    test "$(grep -c 'not acknowledged' "$WORK/err")" -eq 3
check "agent_retries_a_failed_reload: the agent still runs" kill -0 "$agent"
kill -TERM "$agent"
wait "$agent"
rc=$?
check "agent_retries_a_failed_reload: SIGTERM ends it with 0" exit_is 0
check "agent_retries_a_failed_reload: no token in its output" \
    bash -c "! grep -qF -- '$(cat "$(token_for web-01)")' '$WORK/out' '$WORK/err'"

finish
