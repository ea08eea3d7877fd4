#!/usr/bin/env bash
# validate-cli.sh - `meshca validate` as a CI pipeline uses it: exit codes, the text, JSON and
# GitHub output shapes of SPEC S3, help, usage errors.
source "$(dirname "$0")/lib.sh"
ex="$SOURCE_ROOT/manifests/examples/rotation/universal"

cat >"$WORK/dup.yaml" <<'YAML'
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
  - name: ca-1
    type: builtin
YAML

run --help
check "meshca --help lists validate" out_has "validate"
run help validate
check "meshca help validate describes --status" out_has "--status"
run validate --help
check "validate --help exits 0" exit_is 0

run validate
check "validate without -f is a usage error (exit 2)" exit_is 2
run validate -f "$ex/0-mesh.yaml" --bogus
check "unknown flag is a usage error (exit 2)" exit_is 2
run validate -f "$ex/0-mesh.yaml" -o xml
check "unknown output format is a usage error (exit 2)" exit_is 2
run frobnicate
check "unknown command exits 2" exit_is 2

run validate -f "$WORK/does-not-exist.yaml"
check "missing file exits 2" exit_is 2
check "missing file is named" out_has "does-not-exist.yaml"

run validate -f "$ex/0-mesh.yaml"
check "valid mesh exits 0" exit_is 0

run validate -f "$WORK/dup.yaml"
check "duplicate backend exits 1" exit_is 1
check "text output is file:line:col: severity: path: message" \
    out_has "$WORK/dup.yaml:8:11: error: mtls.backends[1].name: duplicate backend name 'ca-1' (first at line 6)"

run validate -o json -f "$WORK/dup.yaml"
check "json output has the S3 shape" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] is False
x = d["diagnostics"][0]
assert set(x) == {"severity", "file", "line", "column", "path", "code", "message"}, x
assert (x["severity"], x["line"], x["column"], x["path"], x["code"]) == ("error", 8, 11, "mtls.backends[1].name", "duplicate-backend"), x
' "$WORK/out"

run validate -o json -f "$ex/0-mesh.yaml"
check "json output of a valid file says ok" python3 -c '
import json, sys; d = json.load(open(sys.argv[1])); assert d == {"ok": True, "diagnostics": []}, d' "$WORK/out"

run validate -o github -f "$WORK/dup.yaml"
check "github output is an ::error annotation" \
    out_has "::error file=$WORK/dup.yaml,line=8,col=11::mtls.backends[1].name: duplicate backend name 'ca-1' (first at line 6)"

run validate -f - <"$WORK/dup.yaml"
check "-f - reads standard input" exit_is 1

# Every problem is reported, not only the first.
cat >"$WORK/many.yaml" <<'YAML'
type: Mesh
name: Bad_Name
mtls:
  enabledBackends: ca-1
  backends:
  - name: ca-1
    type: builtn
YAML
run validate -o json -f "$WORK/many.yaml"
check "bad name reported" json_has invalid-name name 2
check "unknown field reported with its path" json_has unknown-field mtls.enabledBackends 4
check "did-you-mean suggests enabledBackend" out_has "did you mean 'enabledBackend'"
check "unknown backend type reported" json_has unknown-backend-type "mtls.backends[0].type" 7

# Issue 9 #7: removing the whole mtls block is the disable step, reported where it happens.
printf 'type: Mesh\nname: default\n' >"$WORK/no-mtls.yaml"
run validate -o github -f "$WORK/no-mtls.yaml" --from "$ex/0-mesh.yaml"
check "removing the mtls block is refused as disable-mtls" exit_is 1
check "every annotation has a file, line and column" out_lacks "::error ::"
check "the annotation points at the mesh" out_has "::error file=$WORK/no-mtls.yaml,line=2,col=7::mtls.enabledBackend: disabling mTLS"
run validate -f "$WORK/no-mtls.yaml" --from "$ex/0-mesh.yaml" --force
check "--force lets the removal of the mtls block through (disable-mtls covers it)" exit_is 0

# A secret's value never appears in output.
printf 'type: Secret\nname: s1\nmesh: default\ndata: "not base64 SECRETVALUE!!"\n' >"$WORK/secret.yaml"
run validate -f "$WORK/secret.yaml"
check "bad secret data is refused" exit_is 1
check "the secret's value is not echoed" out_lacks "SECRETVALUE"
finish
