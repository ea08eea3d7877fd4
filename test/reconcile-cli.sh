#!/bin/bash
# reconcile-cli.sh - drives `meshca reconcile --once`, `agent` and `run` on a store seeded directly (SQLite, or etcd in suite etcd).
. "$(dirname "$0")/lib.sh"

ST="$WORK/store"
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$ST/meshca.db}"
OUT="$WORK/out-web"
mkdir -p "$OUT"

# put KIND MESH NAME TEXT: writes one object straight into the store through store.h
# (test/store-tool.c), so this test does not depend on `apply` and runs on any backend.
# Values are read as YAML (JSON is YAML).
put() { "$STORE_TOOL" put "$@" >/dev/null; }
run get meshes  # creates the empty store
put meshes default default 'type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin'
put dataplanes default web-01 'type: Dataplane
mesh: default
name: web-01
networking:
  address: 127.0.0.1
  inbound:
  - port: 8443
    tags: {kuma.io/service: web, version: v1}'

run reconcile --once
check "reconcile issues the first certificate" exit_is 0
check "reconcile prints mesh/dataplane, backend and expiry" out_has "default/web-01: issued (ca-1, expires "
check "reconcile prints a summary" out_has "1 mesh: 1 issued, 0 reissued, 0 renewed, 0 rebundled, 0 unchanged, 0 failed meshes"
check "no key material in the output" out_lacks "PRIVATE KEY"

run reconcile --once
check "a second pass changes nothing" out_has "1 mesh: 0 issued, 0 reissued, 0 renewed, 0 rebundled, 1 unchanged"

run agent -m default -d web-01 --out "$OUT" --reload false --once
check "agent exits 1 when the reload command fails" exit_is 1
check "agent says nothing was acknowledged" err_has "not acknowledged"

run agent -m default -d web-01 --out "$OUT" --reload true --once
check "agent loads and acknowledges when reload exits 0" exit_is 0
check "agent reports the load" out_has "default/web-01: loaded new certificate and bundle"
check "key.pem is 0600" test "$(stat -L -c %a "$OUT/key.pem")" = 600
check "cert verifies against the bundle" openssl verify -CAfile "$OUT/ca-bundle.pem" "$OUT/cert.pem"
check "status file records the acknowledgement" \
    grep -q '"acknowledgedGeneration":1' <("$STORE_TOOL" get dpstatus default web-01)

run agent -m default -d web-01 --out "$OUT" --reload false --once
check "nothing new: agent does not run the reload command" exit_is 0

run agent -m default -d web-01 --once
check "agent without --out is a usage error" exit_is 2

run reconcile --now 2045-01-01T00:00:00Z
check "an expired CA exits 1" exit_is 1
check "an expired CA is reported as ca-expired" err_has "[ca-expired]"

run reconcile --bogus
check "unknown flag is a usage error" exit_is 2

"$MESHCA" run --interval 200ms >"$WORK/run.out" 2>&1 &
pid=$!
sleep 1
kill -TERM "$pid"
wait "$pid"
rc=$?
check "run stops with exit 0 on SIGTERM" exit_is 0

"$MESHCA" agent -m default -d web-01 --out "$OUT" --interval 100ms >"$WORK/agent.out" 2>&1 &
pid=$!
sleep 0.5
kill -INT "$pid"
wait "$pid"
rc=$?
check "agent loop stops with exit 0 on SIGINT" exit_is 0

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
