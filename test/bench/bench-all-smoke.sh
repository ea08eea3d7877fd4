#!/usr/bin/env bash
# bench-all-smoke.sh - bench-all's done_when lists every issue-13 target under one name whatever the
# flags, each figure beside its reference (value, reference, unit, ratio = value / reference, the
# same figures as the JSON's own sections); a target a flag leaves out is there with nulls and the
# flag. Runs bench-all --no-peers --no-reconcile --no-api --rounds 1 (about 10 s: one round of the
# signing loops only). Asserts no time. Suite bench-smoke. Usage: bench-all-smoke.sh BENCH-ALL
source "$(dirname "$0")/../lib.sh"
bench=${1:?usage: bench-all-smoke.sh BENCH-ALL}

timeout 20 "$bench" --rounds 0 >"$WORK/out" 2>"$WORK/err"
rc=$?
check "--rounds 0 is refused (exit 2)" exit_is 2
check "--rounds 0: its message gives the range" err_has "bench-all: --rounds takes 1 to 10"

timeout 170 "$bench" --no-peers --no-reconcile --no-api --rounds 1 >"$WORK/out" 2>"$WORK/err"
rc=$?
check "bench-all --no-peers --no-reconcile --no-api --rounds 1 exits 0" exit_is 0
check "the raw loops say they kept the best of 1 round" python3 - "$WORK/out" <<'PY'
import json, sys
raw = json.load(open(sys.argv[1]))["raw_openssl_per_s"]
sys.exit(0 if raw["rounds"] == 1 and "best of 1 round interleaved" in raw["loop"] else 1)
PY

# names of every target, in order: the list a reader and the docs rely on (doc/performance.md)
check "done_when names every target, in order, measured or not" python3 - "$WORK/out" <<'PY'
import json, sys
names = [t["target"] for t in json.load(open(sys.argv[1]))["done_when"]]
want = [
    "re-sign a known public key, 1 worker / raw ECDSA sign",
    "re-sign a known public key, 2 workers / 1 worker",
    "sign a CSR, 1 worker / raw verify+sign",
    "sign a CSR, 1 worker / openssl CLI loop",
    "sign a CSR, 2 workers / cfssl serve (2 in flight)",
    "full reconcile / pure signing time (SQLite)",
    "full reconcile / pure signing time (SQLite), 1 worker",
    "no-op reconcile wall seconds",
    "full reconcile on etcd / its bound (max of pure signing and etcd's put time)",
    "no-op reconcile on etcd wall seconds",
    "validate 100,000-dataplane status, seconds",
    "validate peak bytes per dataplane / 4 KiB",
    "meshca validate CLI, 100,000 dataplanes, CPU seconds",
    "meshca validate CLI peak bytes per dataplane / 4 KiB",
    "API CSRs per second with TLS and keep-alive / cfssl serve",
    "API CSRs per second with TLS and keep-alive, 1,000 agents connected / cfssl serve",
    "API CSRs per second with TLS and keep-alive, 10,000 agents connected / cfssl serve",
    "10,000 agents with blocking queries, KiB per connection / 64",
]
if names != want:
    print("got:", *names, sep="\n  ")
    sys.exit(1)
PY

check "each measured signing target has its figure and reference from the same run, ratio = value / reference" \
    python3 - "$WORK/out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
t = {x["target"]: x for x in d["done_when"]}
raw, m = d["raw_openssl_per_s"], d["meshca"]
expect = {
    "re-sign a known public key, 1 worker / raw ECDSA sign":
        (m["resign_public_key_per_s"]["workers_1"], raw["ecdsa_sign"], 0.5),
    "re-sign a known public key, 2 workers / 1 worker":
        (m["resign_public_key_per_s"]["workers_2"], m["resign_public_key_per_s"]["workers_1"], 1.8),
    "sign a CSR, 1 worker / raw verify+sign":
        (m["sign_csr_per_s"]["workers_1"], raw["verify_plus_sign"], 0.5),
}
bad = []
for name, (value, ref, goal) in expect.items():
    x = t[name]
    if not (value > 0 and ref > 0 and abs(x["value"] - value) < 0.01 and abs(x["reference"] - ref) < 0.01
            and x["unit"] == "per s" and abs(x["ratio"] - value / ref) < 0.001
            and x["goal"] == ">=" and x["goal_value"] == goal and x["met"] == (x["ratio"] >= goal)):
        bad.append((name, x, value, ref))
print(*bad, sep="\n")
sys.exit(1 if bad else 0)
PY

check "a target a flag left out has null value, reference and ratio, met false, and the flag" \
    python3 - "$WORK/out" <<'PY'
import json, sys
t = {x["target"]: x for x in json.load(open(sys.argv[1]))["done_when"]}
flags = {"sign a CSR, 1 worker / openssl CLI loop": "--no-peers",
         "sign a CSR, 2 workers / cfssl serve (2 in flight)": "--no-peers",
         "full reconcile / pure signing time (SQLite)": "--no-reconcile",
         "no-op reconcile on etcd wall seconds": "--no-reconcile",
         "meshca validate CLI peak bytes per dataplane / 4 KiB": "--no-reconcile",
         "API CSRs per second with TLS and keep-alive, 10,000 agents connected / cfssl serve": "--no-api",
         "10,000 agents with blocking queries, KiB per connection / 64": "--no-api"}
bad = [(n, t[n]) for n, flag in flags.items()
       if not (t[n]["value"] is None and t[n]["reference"] is None and t[n]["ratio"] is None
               and t[n]["met"] is False and t[n]["note"] == flag)]
print(*bad, sep="\n")
sys.exit(1 if bad else 0)
PY
finish
