# store-state.py - classifies a store dump (test/store-dump.c lines) against the "before" and "after"
# dumps of a write: before, after, partial or torn. Shared by test/crash-kill.sh and test/failpoints.sh.
# Usage: python3 store-state.py MODE BEFORE AFTER TRIAL [NDP]
#   MODE apply: "after" is AFTER exactly. Any other MODE is a reconcile pass: certificates are fresh
#   on every run, so an object the reference pass left unchanged keeps its value, one it changed has
#   the reference's value, except identities and statuses (new serials, times), which must differ
#   from their before value.
#   AFTER "": no reference yet (the first run of `run`): "after" once every one of the NDP
#   identities differs from its before value.
#   partial: every object is either as before or as after, but not all on one side: what a write
#   split into several atomic parts (etcd, over store_txn_limit) may leave when it stops midway.
#   torn: some object is neither (or the dump has objects no side has).
import sys


def load(path):
    d = {}
    for line in open(path):
        kind, mesh, name, digest = line.rstrip("\n").split("\t")
        # The leader key of a killed controller outlives it until its lease ends: not state.
        if (kind, mesh, name) != ("controlplane", "meshca", "leader"):
            d[(kind, mesh, name)] = digest
    return d


mode, before, trial = sys.argv[1], load(sys.argv[2]), load(sys.argv[4])
if trial == before:
    print("before")
    sys.exit()
if not sys.argv[3]:
    ids = [k for k in trial if k[0] == "identities"]
    print("after" if len(ids) == int(sys.argv[5]) and all(trial[k] != before.get(k) for k in ids) else "torn")
    sys.exit()
after = load(sys.argv[3])
fresh = {"identities", "dpstatus", "meshstatus"}


def as_after(k):
    if k not in after:
        return k not in trial
    if k not in trial:
        return False
    if mode != "apply" and before.get(k) != after[k] and k[0] in fresh:
        return trial[k] != before.get(k)
    return trial[k] == after[k]


keys = set(before) | set(after) | set(trial)
if all(as_after(k) for k in keys):
    print("after")
elif all(as_after(k) or trial.get(k) == before.get(k) for k in keys):
    print("partial")
else:
    print("torn")
