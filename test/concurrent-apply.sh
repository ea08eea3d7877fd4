#!/usr/bin/env bash
# concurrent-apply.sh - two conflicting `meshca apply` at once, 100 times (issue 11 "Done when",
# issue 14 concurrency): each pair adds a different backend to the same mesh, so applied one
# after the other the second is a multi-step change (R7) and refused. Exactly one of each pair
# must win and be what the store holds (no update lost), and the loser must exit 1 saying why:
# the compare-and-swap conflict when their reads overlapped, else the refused step.
# MESHCA_RACE_PAIRS (default 100).
source "$(dirname "$0")/lib.sh"
export MESHCA_STORE="sqlite://$WORK/store/meshca.db"
pairs=${MESHCA_RACE_PAIRS:-100}
: >"$WORK/out"
: >"$WORK/err"
conflict_msg="was changed by someone else since this apply read it"

mesh() { # mesh NAME BACKEND...
    local name=$1
    shift
    printf 'type: Mesh\nname: %s\nmtls:\n  enabledBackend: ca-1\n  backends:\n' "$name"
    for b in "$@"; do printf '  - {name: %s, type: builtin}\n' "$b"; done
}

lost=0 untold=0 conflicts=0 refused=0
for t in $(seq 1 "$pairs"); do
    mesh "race$t" ca-1 >"$WORK/base.yaml"
    mesh "race$t" ca-1 ca-2 >"$WORK/a.yaml"
    mesh "race$t" ca-1 ca-3 >"$WORK/b.yaml"
    "$MESHCA" apply -f "$WORK/base.yaml" >/dev/null 2>&1 || { echo "  trial $t: base apply failed"; lost=$((lost + 1)); continue; }
    timeout 60 "$MESHCA" apply -f "$WORK/a.yaml" >"$WORK/a.out" 2>&1 &
    pa=$!
    timeout 60 "$MESHCA" apply -f "$WORK/b.yaml" >"$WORK/b.out" 2>&1 &
    pb=$!
    wait $pa
    ra=$?
    wait $pb
    rb=$?
    stored=$("$MESHCA" get meshes -m "race$t" -o json | python3 -c '
import json, sys; d = json.load(sys.stdin); d = d["items"] if isinstance(d, dict) else d
print(",".join(b["name"] for b in d[0]["mtls"]["backends"]))')
    if [ "$ra" = 0 ] && [ "$rb" = 1 ] && [ "$stored" = ca-1,ca-2 ]; then
        loser=$WORK/b.out
    elif [ "$rb" = 0 ] && [ "$ra" = 1 ] && [ "$stored" = ca-1,ca-3 ]; then
        loser=$WORK/a.out
    else
        lost=$((lost + 1))
        echo "  trial $t: exits $ra $rb, stored $stored"
        continue
    fi
    if grep -qF "$conflict_msg" "$loser"; then
        conflicts=$((conflicts + 1))
    elif grep -qF "several rotation steps at once" "$loser"; then
        refused=$((refused + 1))
    else
        untold=$((untold + 1))
        echo "  trial $t: the loser exited 1 without saying why:"
        sed 's/^/    /' "$loser" | head -5
    fi
done
echo "  $pairs pairs of conflicting applies: $lost lost updates; losers told: $conflicts by the compare-and-swap conflict, $refused by the refused step; $untold untold"
rc=0
check "no update lost in $pairs races (exactly one of each pair wins, and the store holds it)" test $lost -eq 0
check "every loser exits 1 saying why" test $untold -eq 0
check "some pairs really overlapped (a compare-and-swap conflict was reported)" test $conflicts -gt 0
finish
