#!/usr/bin/env bash
# bad-input.sh - hostile and broken manifests get exit 1 and a clear diagnostic, never a crash or
# a hang (each run is bounded by timeout; a crash would exit with a signal status > 128).
source "$(dirname "$0")/lib.sh"

# Billion laughs: 9 levels of 10 aliases would expand to 10^9 nodes.
{
    echo 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]'
    for i in 1 2 3 4 5 6 7 8 9; do
        p=$((i - 1))
        echo "a$i: &a$i [*a$p,*a$p,*a$p,*a$p,*a$p,*a$p,*a$p,*a$p,*a$p,*a$p]"
    done
} >"$WORK/bomb.yaml"
start=$(date +%s.%N)
run validate -o json -f "$WORK/bomb.yaml"
# A figure for the reader, not an assertion (speed is measured by benchmarks).
echo "# alias bomb answered in $(python3 -c "import sys; print(round($(date +%s.%N) - $start, 3))") s"
check "alias bomb is refused with exit 1" exit_is 1
check "alias bomb reports alias-limit" json_has alias-limit

head -c 65536 /dev/urandom >"$WORK/random.yaml"
run validate -f "$WORK/random.yaml"
check "random bytes exit 1" exit_is 1

printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: "ca-1\n' >"$WORK/truncated.yaml"
run validate -o json -f "$WORK/truncated.yaml"
check "truncated file exits 1" exit_is 1
check "truncated file reports yaml-syntax" json_has yaml-syntax

python3 -c 'import sys; sys.stdout.write("type: Mesh\nname: default\n" + "# padding padding padding\n" * 380000)' >"$WORK/big.yaml"
run validate -o json -f "$WORK/big.yaml"
check "9 MiB file exits 1" exit_is 1
check "9 MiB file reports too-large" json_has too-large

printf 'type: Mesh\nname: default\nmtls:\n\tenabledBackend: ca-1\n' >"$WORK/tabs.yaml"
run validate -o json -f "$WORK/tabs.yaml"
check "tab indentation is tab-indent at line 4" json_has tab-indent "" 4

printf 'type: Mesh\nname: default\nname: other\n' >"$WORK/dupkey.yaml"
run validate -o json -f "$WORK/dupkey.yaml"
check "duplicate key reported at line 3" json_has duplicate-key "" 3

printf 'type: Mesh\nname: [a, b]\nmtls:\n  skipValidation: maybe\n' >"$WORK/types.yaml"
run validate -o json -f "$WORK/types.yaml"
check "a sequence where a string belongs is wrong-type" json_has wrong-type name 2
check "a non-boolean skipValidation is wrong-type" json_has wrong-type mtls.skipValidation 4

python3 -c 'print("a: " + "[" * 100 + "]" * 100)' >"$WORK/deep.yaml"
run validate -o json -f "$WORK/deep.yaml"
check "nesting deeper than 64 reports too-deep" json_has too-deep

# Issue 9 #20: what is not a regular file must be refused at once, never waited on. Each run is
# bounded by `timeout 10` (exit 124), so a hang fails the check instead of the whole suite.
# run_bounded [DIR] ARGS...: like run, in DIR (the default store of a command that needs one
# lands there, away from the source tree).
run_bounded() {
    local dir=$1
    shift
    (cd "$dir" && unset MESHCA_STORE && exec timeout 10 "$MESHCA" "$@") >"$WORK/out" 2>"$WORK/err"
    rc=$?
}
mkfifo "$WORK/fifo.yaml"
run_bounded "$WORK" validate -f "$WORK/fifo.yaml"
check "validate -f FIFO does not hang and exits 2 (unreadable)" exit_is 2
check "validate -f FIFO names the path and says it is a FIFO" \
    grep -qF "cannot read '$WORK/fifo.yaml': a FIFO, not a regular file" "$WORK/out" "$WORK/err"
mkdir -p "$WORK/applydir"
run_bounded "$WORK/applydir" apply -f "$WORK/fifo.yaml"
check "apply -f FIFO does not hang and exits 2 (unreadable)" exit_is 2
check "apply -f FIFO names the path" grep -qF "'$WORK/fifo.yaml': a FIFO" "$WORK/out" "$WORK/err"
run_bounded "$WORK" validate -f "$SOURCE_ROOT/manifests/examples/rotation/universal/0-mesh.yaml" \
    --from "$SOURCE_ROOT/manifests/examples/rotation/universal/0-mesh.yaml" --status "$WORK/fifo.yaml"
check "validate --status FIFO does not hang and exits 2" exit_is 2
check "validate --status FIFO names the path" grep -qF "'$WORK/fifo.yaml': a FIFO" "$WORK/out" "$WORK/err"

# A directory holding a manifest named like YAML that is a FIFO: refused by name, not skipped.
mkdir -p "$WORK/fifodir"
cp "$SOURCE_ROOT/manifests/examples/rotation/universal/0-mesh.yaml" "$WORK/fifodir/"
mkfifo "$WORK/fifodir/pipe.yaml"
run_bounded "$WORK" validate -o json -f "$WORK/fifodir"
check "a FIFO named *.yaml in a directory is refused (exit 2), not waited on" exit_is 2
check "the FIFO in the directory is named" grep -qF "fifodir/pipe.yaml': a FIFO" "$WORK/out"

# A provided CA whose cert is `file: FIFO`: apply (which reads CA material) must not hang.
cat >"$WORK/fifo-ca.yaml" <<YAML
type: Mesh
name: fifo
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: provided
    conf:
      cert: {file: "$WORK/fifo.yaml"}
      key: {file: "$WORK/fifo.yaml"}
YAML
mkdir -p "$WORK/applyca"
run_bounded "$WORK/applyca" apply -f "$WORK/fifo-ca.yaml"
check "apply with a provided cert from a FIFO does not hang, and refuses (exit 1)" exit_is 1
check "the FIFO datasource is named with its file:line:col and field path" \
    grep -qE "fifo-ca.yaml:9:13: error: mtls.backends\[0\]\.conf\.cert: .*cannot open file '$WORK/fifo.yaml': a FIFO, not a regular file" "$WORK/err"

# Two symlinks to the directory itself: walked once (it used to be walked 2^32 times).
mkdir -p "$WORK/loop"
cp "$SOURCE_ROOT/manifests/examples/rotation/universal/0-mesh.yaml" "$WORK/loop/mesh.yaml"
ln -s . "$WORK/loop/a"
ln -s . "$WORK/loop/b"
mkdir -p "$WORK/loop/sub"
ln -s .. "$WORK/loop/sub/up"
run_bounded "$WORK" validate -o json -f "$WORK/loop"
check "a directory with symlinks to itself is walked once, promptly (exit 0)" exit_is 0
check "the mesh in the looping directory is loaded once (no duplicate)" python3 -c '
import json, sys; d = json.load(open(sys.argv[1])); assert d["ok"] and not d["diagnostics"], d' "$WORK/out"

# Issue 9 #22: an empty directory (qsort on NULL was undefined behaviour).
mkdir -p "$WORK/empty"
run_bounded "$WORK" validate -f "$WORK/empty"
check "validate -f EMPTYDIR exits 0 without a sanitizer report" exit_is 0
check "validate -f EMPTYDIR prints no runtime error" out_lacks "runtime error"

# Issue 9 #23: `get -m ../x` said "cannot read the store: invalid argument", naming nothing.
mkdir -p "$WORK/getdir"
for cmd in get inspect; do
    run_bounded "$WORK/getdir" $cmd dataplanes -m ../x
    check "$cmd -m ../x is refused (exit 2)" exit_is 2
    check "$cmd -m ../x names the mesh and why" err_has "invalid mesh name '../x': a mesh name is a DNS label"
    check "$cmd -m ../x does not blame the store" out_lacks "cannot read the store"
done

for f in bomb random truncated big tabs dupkey types deep; do
    run validate -f "$WORK/$f.yaml"
    check "$f: no crash (exit 1, not a signal)" exit_is 1
done
# A backend conf the static checks refuse is reported once, at its field: apply's CA backend
# check (which would say it again at the conf) is left out for it.
cat >"$WORK/vault-bad.yaml" <<'YAML'
type: Mesh
name: vm
mtls:
  enabledBackend: v1
  backends:
  - name: v1
    type: vault
    conf:
      fromCp:
        address: https://127.0.0.1:8200
        namespace: ""
        pki: pki
        role: dp
        tls:
          caCert:
            inline: "!!!notbase64"
        auth:
          token:
            inline: "aGVsbG8="
YAML
export MESHCA_STORE="sqlite://$WORK/store/meshca.db"
run apply --dry-run -o json -f "$WORK/vault-bad.yaml"
check "bad vault conf: apply exits 1" exit_is 1
check "bad vault conf: the empty namespace at its field" \
    json_has bad-conf mtls.backends[0].conf.fromCp.namespace 11
check "bad vault conf: the bad base64 at its field" \
    json_has bad-datasource mtls.backends[0].conf.fromCp.tls.caCert.inline 16
check "bad vault conf: an empty string is called one" out_has "got an empty string"
check "bad vault conf: exactly those two errors, nothing again at the conf" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
items = d["diagnostics"] if isinstance(d, dict) else d
errs = [x for x in items if x.get("severity") == "error"]
assert len(errs) == 2, errs' "$WORK/out"
unset MESHCA_STORE

finish
