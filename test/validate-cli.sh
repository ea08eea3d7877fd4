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
# Issue 9 #21: inline CA material is in the manifest, so offline validate refuses what apply
# refuses, with apply's own rules, at the datasource's line and field path. Fixtures (fixed
# dates, far from now) come from test/data/inline-ca/generate.py.
ca="$TEST_DATA_DIR/inline-ca"
# inline_mesh NAME CERT_PEM_FILE KEY_SOURCE [BACKEND_LINE]: a Mesh with one provided backend whose
# cert is inlineString; KEY_SOURCE is a PEM file (inlineString) or "secret" (a named secret).
inline_mesh() {
    local f="$WORK/inline-$1.yaml"
    {
        printf 'type: Mesh\nname: inline\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: provided\n'
        [ -n "${4:-}" ] && printf '    %s\n' "$4"
        printf '    conf:\n      cert:\n        inlineString: |\n'
        sed 's/^/          /' "$2"
        if [ "$3" = secret ]; then
            printf '      key:\n        secret: ca-1-key\n'
        else
            printf '      key:\n        inlineString: |\n'
            sed 's/^/          /' "$3"
        fi
    } >"$f"
    cert_line=$(($(grep -n '^      cert:$' "$f" | cut -d: -f1) + 1))
    key_line=$(($(grep -n '^      key:$' "$f" | cut -d: -f1) + 1))
}
# apply --dry-run runs the same checks against a store; a scratch default store in its own dir.
mkdir -p "$WORK/dry"
dry_run() {
    (cd "$WORK/dry" && unset MESHCA_STORE && exec timeout 60 "$MESHCA" apply --dry-run -o json -f "$1") \
        >"$WORK/out" 2>"$WORK/err"
    rc=$?
}
# expect_inline NAME CODE WHICH(cert|key): validate exits 1 with CODE at that datasource; apply
# --dry-run refuses the same file with the same code.
expect_inline() {
    local f="$WORK/inline-$1.yaml" line path
    if [ "$3" = key ]; then line=$key_line; else line=$cert_line; fi
    path="mtls.backends[0].conf.$3"
    run validate -o json -f "$f"
    check "$1: offline validate exits 1" exit_is 1
    check "$1: offline validate reports $2 at $path line $line" json_has "$2" "$path" "$line"
    dry_run "$f"
    check "$1: apply --dry-run refuses it too (exit 1)" exit_is 1
    check "$1: apply --dry-run reports $2 at $path line $line" json_has "$2" "$path" "$line"
}

inline_mesh good "$ca/good.cert.pem" "$ca/good.key.pem"
run validate -o json -f "$WORK/inline-good.yaml"
check "a sound inline CA validates (exit 0, no diagnostics)" python3 -c '
import json, sys; d = json.load(open(sys.argv[1])); assert d == {"ok": True, "diagnostics": []}, d' "$WORK/out"
check "no key material in validate output" out_lacks "PRIVATE KEY"
dry_run "$WORK/inline-good.yaml"
check "apply --dry-run accepts the same inline CA" exit_is 0

inline_mesh good-secret-key "$ca/good.cert.pem" secret
run validate -f "$WORK/inline-good-secret-key.yaml"
check "an inline cert with its key in a secret validates offline (the key is not read)" exit_is 0

for defect in expired:ca-expired not-yet-valid:ca-not-yet-valid leaf-as-ca:ca-not-ca \
    rsa-1024:ca-weak-key no-keycertsign:ca-not-ca key-agreement:ca-key-agreement p521:ca-weak-key \
    chain-order:ca-chain-order path-length:ca-path-length; do
    name=${defect%%:*}
    inline_mesh "$name" "$ca/$name.cert.pem" "$ca/$name.key.pem"
    expect_inline "$name" "${defect#*:}" cert
done
inline_mesh key-mismatch "$ca/key-mismatch.cert.pem" "$ca/key-mismatch.key.pem"
expect_inline key-mismatch ca-key-mismatch key

printf -- '-----BEGIN CERTIFICATE-----\nthis is not base64 DER\n-----END CERTIFICATE-----\n' >"$WORK/undecodable.pem"
inline_mesh undecodable "$WORK/undecodable.pem" "$ca/good.key.pem"
expect_inline undecodable ca-unparsable cert

# A PEM with trailing garbage was accepted by both: OpenSSL stops reading at the last block.
{ cat "$ca/good.cert.pem"; echo "garbage pasted after the certificate"; } >"$WORK/trailing.pem"
inline_mesh trailing "$WORK/trailing.pem" "$ca/good.key.pem"
expect_inline trailing ca-unparsable cert
run validate -f "$WORK/inline-trailing.yaml"
check "trailing text is named with its line in the PEM" out_has "text after its last PEM block (line 10)"
{ cat "$ca/good.key.pem"; echo "SECRETTAIL"; } >"$WORK/trailing-key.pem"
inline_mesh trailing-key "$ca/good.cert.pem" "$WORK/trailing-key.pem"
expect_inline trailing-key ca-unparsable key
check "the trailing text of a key is not echoed" out_lacks "SECRETTAIL"

inline_mesh short-ca "$ca/good.cert.pem" "$ca/good.key.pem" "dpCert: {rotation: {expiration: 100y}}"
expect_inline short-ca ca-expires-before-leaf cert

# inline (base64) is read the same way.
printf 'type: Mesh\nname: inline\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: provided\n    conf:\n      cert:\n        inline: %s\n      key:\n        secret: ca-1-key\n' \
    "$(base64 -w0 "$ca/expired.cert.pem")" >"$WORK/inline-b64.yaml"
run validate -o json -f "$WORK/inline-b64.yaml"
check "an expired CA given as inline base64 is ca-expired offline" json_has ca-expired "mtls.backends[0].conf.cert" 10

# skipValidation skips backend checks in apply, so offline too.
inline_mesh skip "$ca/expired.cert.pem" "$ca/expired.key.pem"
sed -i 's/^mtls:$/mtls:\n  skipValidation: true/' "$WORK/inline-skip.yaml"
run validate -f "$WORK/inline-skip.yaml"
check "skipValidation: the inline CA is not checked offline either" exit_is 0
# Issue 9 #23: a bad RSAbits was reported twice by apply (static bad-conf and the CA check's
# ca-conf); a 500ms caCert.expiration passed validate and failed apply. One rule, one report.
printf 'type: Mesh\nname: rsa\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n    conf:\n      caCert: {RSAbits: 1024, expiration: 500ms}\n' >"$WORK/rsabits.yaml"
run validate -o json -f "$WORK/rsabits.yaml"
check "validate reports RSAbits once, as ca-conf at its path and line" python3 -c '
import json, sys
d = [x for x in json.load(open(sys.argv[1]))["diagnostics"] if x["path"].endswith("RSAbits")]
assert [(x["code"], x["path"], x["line"], x["column"]) for x in d] == [("ca-conf", "mtls.backends[0].conf.caCert.RSAbits", 9, 25)], d' "$WORK/out"
check "validate refuses the 500ms caCert.expiration that apply refuses" json_has ca-conf "mtls.backends[0].conf.caCert.expiration" 9
dry_run "$WORK/rsabits.yaml"
check "apply --dry-run reports RSAbits once too" python3 -c '
import json, sys
d = [x for x in json.load(open(sys.argv[1]))["diagnostics"] if x["path"].endswith("RSAbits")]
assert len(d) == 1 and d[0]["code"] == "ca-conf", d' "$WORK/out"
# Base64 was decoded by two functions with different checks: unpadded inline data passed validate
# and failed apply ("inline is not valid base64"). One decoder now: both accept it.
printf 'type: Mesh\nname: inline\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: provided\n    conf:\n      cert:\n        inline: %s\n      key:\n        inline: %s\n' \
    "$(base64 -w0 "$ca/good.cert.pem")" "$(base64 -w0 "$ca/good.key.pem" | tr -d =)" >"$WORK/inline-unpadded.yaml"
run validate -f "$WORK/inline-unpadded.yaml"
check "unpadded inline base64 validates" exit_is 0
dry_run "$WORK/inline-unpadded.yaml"
check "apply --dry-run reads the same unpadded inline base64" exit_is 0
finish
