#!/usr/bin/env bash
# leader-replicas.sh - two `meshca run` replicas on one store (issue 11): exactly one leads and
# signs, agents reach either replica (--server A,B), the leader is killed with SIGKILL in the
# middle of a builtin -> builtin rotation, the other leads within the lease bound and the
# rotation completes; no generation is issued twice and no CA is generated twice. Runs on SQLite
# (suite integration) and, with MESHCA_TEST_STORE=etcd, on a real etcd member (suite etcd).
source "$(dirname "$0")/lib.sh"
export MESHCA_STORE="${TEST_STORE_URL:-sqlite://$WORK/store/meshca.db}"
source "$(dirname "$0")/api-lib.sh"
MESHCA=$(readlink -f "$MESHCA")
cd "$WORK" || exit 2
TTL=3                       # --lease-ttl of both replicas, seconds
DPS="dp-1 dp-2 dp-3 dp-4"
declare -A RPID RURL RLOG   # replica name -> pid, API URL, log
AGENTS=()
trap 'for p in "${AGENTS[@]}" "${RPID[@]}"; do kill -KILL "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] && cp -r "$WORK" "$KEEP_WORK"; rm -rf "$WORK"' EXIT

mesh_yaml() { # mesh_yaml ENABLED BACKEND...
    local enabled=$1 b
    shift
    printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: %s\n  backends:\n' "$enabled"
    for b in "$@"; do printf '  - name: %s\n    type: builtin\n' "$b"; done
}
mesh_yaml ca-1 ca-1 >m0.yaml
mesh_yaml ca-1 ca-1 ca-2 >m1.yaml
mesh_yaml ca-2 ca-1 ca-2 >m2.yaml
mesh_yaml ca-2 ca-2 >m3.yaml
n=0
for dp in $DPS; do
    n=$((n + 1))
    printf -- '---\ntype: Dataplane\nmesh: default\nname: %s\nnetworking: {address: 127.0.0.1, inbound: [{port: %d, tags: {kuma.io/service: s%d}}]}\n' \
        "$dp" $((8000 + n)) "$n"
done >dps.yaml
run apply -f m0.yaml -f dps.yaml
check "set-up: apply" exit_is 0

start_replica() { # start_replica NAME
    local port i
    port=$(free_port)
    RLOG[$1]=$WORK/$1.log
    "$MESHCA" run --listen "127.0.0.1:$port" --interval 1s --lease-ttl ${TTL}s >"${RLOG[$1]}" 2>&1 &
    RPID[$1]=$!
    RURL[$1]=https://127.0.0.1:$port
    for i in $(seq 100); do
        grep -q "serving the dataplane API" "${RLOG[$1]}" && return 0
        sleep 0.1
    done
    return 1
}
# leader_pid: the pid in the identity of the replica `inspect leader` names ("" when none).
leader_pid() {
    "$MESHCA" inspect leader -o json 2>/dev/null | python3 -c '
import json, sys
l = json.load(sys.stdin)["leader"]
print(l["id"].rsplit(":", 1)[1] if l else "")'
}
# wait_for SECONDS CMD...: CMD succeeds within SECONDS (polled every 0.2 s).
wait_for() {
    local n=$(($1 * 5)) i
    shift
    for i in $(seq "$n"); do
        "$@" && return 0
        sleep 0.2
    done
    return 1
}
# all_acked [BACKEND]: every dataplane acknowledged its current generation (issued by BACKEND).
all_acked() {
    "$MESHCA" inspect dataplanes -m default -o json 2>/dev/null | python3 -c '
import json, sys
items = json.load(sys.stdin)
items = items.get("items", items) if isinstance(items, dict) else items
want = sys.argv[1] if len(sys.argv) > 1 else None
ok = len(items) == int(sys.argv[2]) and all(
    i["mtls"].get("generation", 0) > 0 and
    i["mtls"].get("acknowledgedGeneration", 0) == i["mtls"].get("generation", 0) and
    (want is None or i["mtls"].get("issuedBackend") == want) for i in items)
sys.exit(0 if ok else 1)' "${1:-}" 4
}
apply_ok() { run apply -f "$1" && [ "$rc" -eq 0 ]; }

run run --lease-ttl 1500ms
check "--lease-ttl takes whole seconds: exit 2 naming the flag" \
    bash -c "[ $rc -eq 2 ] && grep -q -- \"--lease-ttl: '1500ms' is not a whole number of seconds\" '$WORK/err'"
start_replica a && start_replica b
check "set-up: both replicas serve the API" test -n "${RPID[a]:-}" -a -n "${RPID[b]:-}"
leads() { [ "$(leader_pid)" = "$1" ]; } # leads PID: the replica with pid PID leads
someone_leads() { [ -n "$(leader_pid)" ]; }
check "exactly one replica leads" wait_for 10 someone_leads
lp=$(leader_pid)
if [ "$lp" = "${RPID[a]}" ]; then L=a F=b; else L=b F=a; fi
check "the leader is one of the two replicas" test "$lp" = "${RPID[$L]}"
check "the leader says 'leading'" wait_for 5 grep -qx "leading" "${RLOG[$L]}"
check "the follower says whom it follows, once" \
    wait_for 5 test "$(grep -c "^following .*:${RPID[$L]} at ${RURL[$L]}\$" "${RLOG[$F]}")" -eq 1
check "the follower never says 'leading'" test "$(grep -cx leading "${RLOG[$F]}")" -eq 0
"$MESHCA" cp-ca -o pem >cp-ca.pem
gauge() { # gauge REPLICA: its meshca_leader sample, from GET /metrics on its API port
    curl -s --cacert cp-ca.pem "${RURL[$1]}/metrics" | awk '$1 == "meshca_leader" { print $2 }'
}
check "/metrics: meshca_leader is 1 on the leader" test "$(gauge $L)" = 1
check "/metrics: meshca_leader is 0 on the follower" test "$(gauge $F)" = 0
run inspect leader
check "inspect leader names the leader and its API" out_has "LEADER $(hostname):${RPID[$L]} API ${RURL[$L]}"
"$MESHCA" cp-ca -o pem >cp-ca.pem

# Agents know both replicas; half of them ask the follower first (their CSRs land there).
cat >reload.sh <<'SH'
#!/bin/sh
# Records what was loaded: the leaf's serial, and the fingerprint of every CA in the bundle.
d=$1
{
    printf 'serial %s\n' "$(openssl x509 -in "$d/cert.pem" -noout -serial | cut -d= -f2)"
    python3 - "$d/ca-bundle.pem" <<'PY'
import hashlib, re, sys, base64
for b in re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", open(sys.argv[1]).read(), re.S):
    print("ca", hashlib.sha256(base64.b64decode("".join(b.split()))).hexdigest())
PY
} >>"$d.loads"
SH
chmod +x reload.sh
i=0
for dp in $DPS; do
    i=$((i + 1))
    if [ $((i % 2)) = 0 ]; then servers=${RURL[$F]},${RURL[$L]}; else servers=${RURL[$L]},${RURL[$F]}; fi
    mkdir -p "$WORK/dp"
    "$MESHCA" agent -m default -d "$dp" --out "$WORK/dp/$dp" --server "$servers" --ca-file cp-ca.pem \
        --token-file "$(token_for "$dp")" --reload "$WORK/reload.sh $WORK/dp/$dp" >"$WORK/$dp.agent.log" 2>&1 &
    AGENTS+=($!)
done
check "every agent (through either replica) got a ca-1 certificate and acknowledged it" wait_for 60 all_acked ca-1
check "only the leader signed: the follower ran no pass" test "$(grep -c ': issued' "${RLOG[$F]}")" -eq 0
check "the leader signed the CSRs sent to the follower" grep -q "default/dp-2: issued" "${RLOG[$L]}"

# Rotation: add ca-2; once trusted, switch (the leader re-signs from ca-2) and kill the leader.
check "rotation step 1: add ca-2" apply_ok m1.yaml
bundles_hold() { # bundles_hold N: every agent loaded a bundle of N CAs
    local dp
    for dp in $DPS; do [ "$(grep -c "BEGIN CERTIFICATE" "$WORK/dp/$dp/ca-bundle.pem")" -eq "$1" ] || return 1; done
}
check "every agent loads the bundle with ca-2" wait_for 60 bundles_hold 2
check "rotation step 2: switch to ca-2 (allowed once every agent acknowledged it)" wait_for 30 apply_ok m2.yaml
kill -KILL "${RPID[$L]}"
killed_at=$(date +%s%N)
wait "${RPID[$L]}" 2>/dev/null
# Bound: the lease (TTL) plus one follower step (TTL/3) plus the store's expiry delay (etcd ends
# a lease within about half a second) and slack for a loaded machine. Not a speed claim.
bound=$((TTL + TTL / 3 + 1 + 4))
check "the follower leads within the lease bound (${bound}s)" wait_for $bound leads "${RPID[$F]}"
took_ms=$((($(date +%s%N) - killed_at) / 1000000))
echo "# takeover: $F leads ${took_ms} ms after SIGKILL of $L (lease ttl ${TTL}s)"
check "the new leader says 'leading'" grep -qx leading "${RLOG[$F]}"
check "/metrics: meshca_leader is 1 on the new leader" test "$(gauge $F)" = 1
check "the rotation completes: every agent holds a ca-2 certificate, acknowledged" wait_for 60 all_acked ca-2
check "rotation step 3: remove ca-1" wait_for 30 apply_ok m3.yaml
check "every agent loads the bundle without ca-1" wait_for 60 bundles_hold 1
for dp in $DPS; do
    openssl verify -CAfile "$WORK/dp/$dp/ca-bundle.pem" -untrusted "$WORK/dp/$dp/cert.pem" \
        "$WORK/dp/$dp/cert.pem" >/dev/null 2>&1 || echo "not verified: $dp" >>verify.out
done
check "every certificate verifies against its bundle" test ! -s verify.out

# No generation issued twice: every (dataplane, generation) the replicas' passes wrote appears
# once across both logs, and each agent loaded each generation once, in order.
check "every agent acknowledged its last generation" wait_for 30 all_acked ca-2
check "no generation issued twice (both replicas' passes, and what each agent loaded)" \
    python3 - "$WORK" "${RLOG[a]}" "${RLOG[b]}" $DPS <<'PY'
import re, sys
work, logs, dps = sys.argv[1], sys.argv[2:4], sys.argv[4:]
seen = {}
for log in logs:
    for dp, gen in re.findall(r"^default/(\S+): \w+ \(.*generation (\d+)", open(log).read(), re.M):
        assert (dp, gen) not in seen, (dp, gen, "written by", seen[(dp, gen)], "and", log)
        seen[(dp, gen)] = log
for dp in dps:
    gens = [int(g) for g in re.findall(r"generation (\d+) loaded", open(f"{work}/{dp}.agent.log").read())]
    assert len(gens) >= 4 and gens == sorted(set(gens)), (dp, gens)
    # A serial once replaced never comes back (a rebundle keeps the certificate, so repeats
    # are consecutive only).
    serials = [l.split()[1] for l in open(f"{work}/dp/{dp}.loads") if l.startswith("serial ")]
    runs = [s for i, s in enumerate(serials) if i == 0 or s != serials[i - 1]]
    assert len(runs) == len(set(runs)), (dp, serials)
print(f"# {len(seen)} (dataplane, generation) pairs written, each once")
PY
# No CA generated twice: across every bundle every agent loaded, exactly two CAs (ca-1, ca-2).
check "no CA generated twice: exactly two distinct CA certificates in every bundle loaded" \
    test "$(cat "$WORK"/dp/*.loads | grep '^ca ' | sort -u | wc -l)" -eq 2
# Step 3 (remove ca-1) happened after the kill: only the new leader can have rebundled for it.
check "the new leader wrote the identities after the takeover" grep -Eq "^default/dp-1: (issued|reissued|rebundled) \(ca-2" "${RLOG[$F]}"

for p in "${AGENTS[@]}"; do kill -TERM "$p" 2>/dev/null; done
kill -TERM "${RPID[$F]}" 2>/dev/null
wait "${RPID[$F]}" 2>/dev/null
run inspect leader
check "a replica stopped by SIGTERM resigns: nobody leads" out_has "no replica of 'meshca run' leads"

echo "# $passed passed, $failed failed"
[ "$failed" -eq 0 ]
