#!/usr/bin/env bash
# lint-cli.sh - issue 15's lint and output items driven through the built meshca: lifetime
# warnings in validate/apply and EXPIRED in inspect, durations as written through get -> apply,
# roots -o yaml, --quiet / -v and the terminal progress line, and doc/ci.md's CI jobs run as
# written.
source "$(dirname "$0")/lib.sh"
export MESHCA_STORE="sqlite://$WORK/store/meshca.db"

mesh_with() { # mesh_with FILE CA_EXPIRATION LEAF_EXPIRATION
    printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n    dpCert:\n      rotation: {expiration: %s}\n    conf:\n      caCert: {expiration: %s}\n' \
        "$3" "$2" >"$1"
}

# --- lifetime lint: builtin caCert shorter than the leaves (from the manifest alone) ---
mesh_with "$WORK/short.yaml" 12h 24h
run validate -f "$WORK/short.yaml" -o json
check "validate: a builtin CA shorter than its leaves is only a warning (exit 0)" exit_is 0
check "validate: ca-shorter-than-leaf at conf.caCert.expiration, line 11" \
    json_has ca-shorter-than-leaf "mtls.backends[0].conf.caCert.expiration" 11
run apply -f "$WORK/short.yaml"
check "apply: the same warning, and the mesh is stored" exit_is 0
check "apply: the warning has its file:line and code text" \
    err_has "short.yaml:11:28: warning: mtls.backends[0].conf.caCert.expiration: backend 'ca-1': caCert.expiration 12h is shorter than dpCert.rotation.expiration 24h"
check "apply: and the mesh was created" out_has "mesh/default created"

# --- lifetime lint from the root in the store: the controller made it, apply reads its expiry ---
now=$(date +%s)
export MESHCA_STORE="sqlite://$WORK/store1/meshca.db"
mesh_with "$WORK/soon.yaml" 20d 24h
run apply -f "$WORK/soon.yaml"
run reconcile --once
check "setup: reconcile generates the 20-day root" exit_is 0
run apply -f "$WORK/soon.yaml" -o json
check "apply: a root expiring within 30 days is ca-expires-soon (exit 0)" exit_is 0
check "apply: ca-expires-soon at mtls.backends[0]" json_has ca-expires-soon "mtls.backends[0]" 6

# A root generated 9 days ago that lives 10 days expires in a day; a 48h leaf renews at 70 %
# of its life (33.6h) at the earliest, after the root's expiry.
export MESHCA_STORE="sqlite://$WORK/store2/meshca.db"
mesh_with "$WORK/renew.yaml" 10d 48h
run apply -f "$WORK/renew.yaml"
run reconcile --once --now $((now - 9 * 86400))
check "setup: reconcile (9 days ago) generates a 10-day root" exit_is 0
run apply -f "$WORK/renew.yaml" -o json
check "apply: the leaves' renewal point after the root's expiry is renewal-after-ca-expiry" \
    json_has renewal-after-ca-expiry "mtls.backends[0]" 6
check "apply: renewal-after-ca-expiry is a warning (exit 0)" exit_is 0

export MESHCA_STORE="sqlite://$WORK/store3/meshca.db"
mesh_with "$WORK/old.yaml" 10d 24h
run apply -f "$WORK/old.yaml"
run reconcile --once --now $((now - 11 * 86400))
check "setup: reconcile (11 days ago) generates a 10-day root, expired yesterday" exit_is 0
run apply -f "$WORK/old.yaml" -o json
check "apply: an expired builtin root is ca-expired, a warning (a rotation away must apply)" \
    json_has ca-expired "mtls.backends[0]" 6
check "apply: ca-expired does not refuse the apply" exit_is 0
run validate -f "$WORK/old.yaml" --store "$MESHCA_STORE" -o json
check "validate --store: the same ca-expired warning" json_has ca-expired "mtls.backends[0]" 6
run inspect meshes
check "inspect meshes shows EXPIRED for that CA" out_has "EXPIRED"
run inspect meshes -o json
check "inspect meshes -o json: caExpired and the root's date" python3 -c '
import json, sys, time
b = json.load(open(sys.argv[1]))[0]["backends"][0]
assert b["caExpired"] is True, b
t = time.mktime(time.strptime(b["caExpirationTime"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
assert abs(t - (int(sys.argv[2]) - 86400)) < 120, (t, b)' "$WORK/out" "$now"

# --- durations kept as written: get -o yaml|json print what was applied, apply reads it back ---
export MESHCA_STORE="sqlite://$WORK/store4/meshca.db"
printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n    dpCert:\n      rotation: {expiration: 1440m}\n      requestTimeout: 120s\n    conf:\n      caCert: {expiration: 520w}\n' >"$WORK/written.yaml"
run apply -f "$WORK/written.yaml"
check "setup: apply of a mesh with durations 1440m, 120s, 520w" exit_is 0
run get meshes default -o yaml
check "get -o yaml prints dpCert.rotation.expiration as written (1440m, not 1d)" out_has "expiration: 1440m"
check "get -o yaml prints requestTimeout as written (120s, not 2m)" out_has "requestTimeout: 120s"
check "get -o yaml keeps conf's caCert.expiration as written" out_has "expiration: 520w"
check "no normalised form anywhere" out_lacks "expiration: 1d"
cp "$WORK/out" "$WORK/roundtrip.yaml"
run get meshes default -o json
check "get -o json prints the durations as written" python3 -c '
import json, sys; b = json.load(open(sys.argv[1]))["mtls"]["backends"][0]["dpCert"]
assert b == {"rotation": {"expiration": "1440m"}, "requestTimeout": "120s"}, b' "$WORK/out"
cp "$WORK/out" "$WORK/roundtrip.json"
run apply -f "$WORK/roundtrip.yaml"
check "apply of get -o yaml's output: unchanged" out_has "mesh/default unchanged"
run apply -f "$WORK/roundtrip.json"
check "apply of get -o json's output: unchanged" out_has "mesh/default unchanged"
run diff -f "$WORK/roundtrip.yaml"
check "diff of get -o yaml's output against the store: no change (exit 0)" exit_is 0
run get meshes default -o yaml
check "a second get -o yaml prints the same stream" cmp -s "$WORK/out" "$WORK/roundtrip.yaml"

# --- roots -o yaml: the same document as -o json, through libyaml ---
run reconcile --once
check "setup: the root of the mesh with written durations" exit_is 0
run roots -m default -o yaml
check "roots -o yaml exits 0" exit_is 0
check "roots -o yaml is YAML with the Consul fields" out_has "ActiveRootID: "
run roots -m default -o json
cp "$WORK/out" "$WORK/roots.json"
check "roots -o yaml reads back as the -o json document (PEM intact)" python3 -c '
import json, subprocess, sys
y = subprocess.run([sys.argv[2], "roots", "-m", "default", "-o", "yaml"], capture_output=True,
                   text=True, check=True).stdout
try:
    import yaml
except ImportError:
    sys.exit(0 if "RootCert: |" in y and "-----BEGIN CERTIFICATE-----" in y else 1)
# YAML 1.2 has no timestamp type (PyYAML reads 1.1): NotBefore stays a string, as meshca reads it.
class Loader(yaml.SafeLoader): pass
Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:timestamp"]
                                  for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
assert "RootCert: |" in y, y
assert yaml.load(y, Loader=Loader) == json.load(open(sys.argv[1])), y' "$WORK/roots.json" "$MESHCA"
run roots -m default -o text
check "roots -o text is a usage error naming the formats" err_has "(expected json|yaml|pem)"
run help roots
check "roots help lists yaml" out_has "json (default), yaml or pem"

# --- --quiet and -v (global: before or after the command) ---
export MESHCA_STORE="sqlite://$WORK/store5/meshca.db"
ex="$SOURCE_ROOT/manifests/examples/rotation/universal"
run --quiet apply -f "$ex/0-mesh.yaml"
check "--quiet apply exits 0" exit_is 0
check "--quiet apply prints no 'created' line" test ! -s "$WORK/out"
run get meshes default -o name
check "and the mesh was stored" out_has "mesh/default"
run apply -f "$ex/0-mesh.yaml" -q
check "-q after the command is the same flag" test ! -s "$WORK/out"
run apply -f "$WORK/short.yaml" -q
check "-q still prints warnings (ca-shorter-than-leaf)" err_has "warning: mtls.backends[0].conf.caCert.expiration"
check "-q prints nothing on stdout then" test ! -s "$WORK/out"
printf 'type: Mesh\nname: default\nmtls:\n  backends:\n  - name: ca-1\n    type: BUILTIN\n' >"$WORK/bad.yaml"
run -q apply -f "$WORK/bad.yaml"
check "-q still prints errors and exits 1" err_has "unknown backend type 'BUILTIN' (did you mean 'builtin'?)"
check "-q refused apply exit 1" exit_is 1
run validate -f "$ex/0-mesh.yaml" --quiet
check "--quiet validate prints no summary" test ! -s "$WORK/out"
run validate -f "$ex/0-mesh.yaml"
check "without it, the summary" out_has "valid: 1 resource (1 Mesh"
run -q get meshes default -o name
check "--quiet never hides asked-for output (get)" out_has "mesh/default"
run -q reconcile --once
check "--quiet reconcile prints no summary" test ! -s "$WORK/out"
run -v apply -f "$ex/0-mesh.yaml"
check "-v apply adds a detail line on stderr" err_has "meshca: 1 resource checked against the store: 0 created, 0 configured, 1 unchanged"
check "-v keeps the informational lines" out_has "mesh/default unchanged"
run apply -f "$ex/0-mesh.yaml"
check "without -v, no detail" test ! -s "$WORK/err"
run --help
check "--help lists --quiet and --verbose" out_has "-q, --quiet"
check "--help lists -v" out_has "-v, --verbose"

# --- progress: one updating line on a terminal, nothing otherwise ---
python3 - "$WORK/many.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(300):
        f.write("---\ntype: Dataplane\nmesh: default\nname: dp-%03d\nnetworking:\n  address: 10.1.%d.%d\n"
                "  inbound: [{port: 8080, tags: {kuma.io/service: web}}]\n" % (i, i // 250, i % 250))
PY
run apply -f "$WORK/many.yaml"
check "apply of 300 dataplanes, stderr not a terminal: exit 0" exit_is 0
check "no progress output when stderr is not a terminal" test ! -s "$WORK/err"
# script(1) gives meshca a pseudo-terminal; its output is what the terminal received.
timeout 60 script -qec "'$MESHCA' apply -f '$WORK/many.yaml' >/dev/null" /dev/null >"$WORK/tty" 2>&1
check "on a terminal, apply draws a progress line" grep -q "applying: 0/300" "$WORK/tty"
check "that line updates in place (carriage return, erase line) and ends at 300/300" \
    python3 -c 'import sys; t = open(sys.argv[1], "rb").read(); assert b"\r\x1b[Kapplying: 300/300 (100%)" in t and t.endswith(b"\r\x1b[K"), t[-80:]' "$WORK/tty"
timeout 60 script -qec "'$MESHCA' -q apply -f '$WORK/many.yaml' >/dev/null" /dev/null >"$WORK/tty" 2>&1
check "--quiet on a terminal: no progress either" test ! -s "$WORK/tty"

# --- doc/ci.md: the GitLab job's script and the GitHub validate step, run as written ---
# A repository whose target branch has ca-1 enabled with ca-2 added, and a change that switches
# to ca-2 while the snapshot says no dataplane trusts it yet.
repo="$WORK/repo"
mkdir -p "$repo/meshes"
printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n' >"$repo/meshes/mesh.yaml"
cp "$SOURCE_ROOT/manifests/examples/rotation/universal/dataplanes.yaml" "$repo/meshes/"
export MESHCA_STORE="sqlite://$WORK/store6/meshca.db"
run apply -f "$repo/meshes"
run inspect dataplanes -o json
cp "$WORK/out" "$WORK/status.json"
(cd "$repo" && git init -q -b main && git add -A && git -c user.email=t@t -c user.name=t commit -qm base &&
 git checkout -q -b change && sed -i 's/enabledBackend: ca-1/enabledBackend: ca-2/' meshes/mesh.yaml &&
 git -c user.email=t@t -c user.name=t commit -qam switch && git remote add origin "$repo" && git fetch -q origin)
python3 - "$SOURCE_ROOT/doc/ci.md" "$WORK" <<'PY'
import re, sys, yaml
doc, work = open(sys.argv[1]).read(), sys.argv[2]
blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
gh = next(yaml.safe_load(b) for b in blocks if "jobs:" in b)
gl = next(yaml.safe_load(b) for b in blocks if "meshca-validate:" in b)["meshca-validate"]
step = next(s for s in gh["jobs"]["validate"]["steps"] if s.get("name") == "meshca validate")
open(work + "/gh-step.sh", "w").write(step["run"])
# The job's scratch checkout of the target branch goes under this test's directory, not /tmp.
open(work + "/gl-script.sh", "w").write("\n".join(gl["script"]).replace("/tmp/base", work + "/gl-base") + "\n")
PY
check "doc/ci.md: both workflow files parse as YAML" test -s "$WORK/gl-script.sh" -a -s "$WORK/gh-step.sh"
bindir=$(dirname "$MESHCA")
mkdir -p "$WORK/runner"
git -C "$repo" worktree add -q "$WORK/runner/base" origin/main
(cd "$repo" && cp "$WORK/status.json" status.json &&
 PATH="$bindir:$PATH" MANIFESTS=meshes RUNNER_TEMP="$WORK/runner" bash -e "$WORK/gh-step.sh" >"$WORK/out" 2>"$WORK/err"; echo $? >"$WORK/rc"; rm -f status.json)
rc=$(cat "$WORK/rc")
check "GitHub step as documented: exit 1 on the unpropagated switch" exit_is 1
check "GitHub step prints the annotation at the changed line" \
    out_has "::error file=meshes/mesh.yaml,line=4,col=19::mtls.enabledBackend: cannot switch to 'ca-2' yet: 2 of 2 dataplanes do not trust it"
(cd "$repo" && PATH="$bindir:$PATH" MANIFESTS=meshes CI_MERGE_REQUEST_TARGET_BRANCH_NAME=main \
 MESHCA_STATUS_URL="file://$WORK/status.json" MESHCA_STATUS_TOKEN=t \
 bash -eo pipefail "$WORK/gl-script.sh" >"$WORK/out" 2>"$WORK/err"; echo $? >"$WORK/rc")
rc=$(cat "$WORK/rc")
check "GitLab script as documented: exit 1 on the unpropagated switch" exit_is 1
check "GitLab script prints the problem in the log" out_has "meshes/mesh.yaml:4:19: error: mtls.enabledBackend: cannot switch to 'ca-2' yet"
check "GitLab script writes a Code Quality report GitLab reads" python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert len(r) == 1, r
i = r[0]
assert i["check_name"] == "switch-not-propagated" and i["severity"] == "major", i
assert i["location"] == {"path": "meshes/mesh.yaml", "lines": {"begin": 4}}, i
assert i["fingerprint"] and i["description"].startswith("mtls.enabledBackend: cannot switch"), i' "$repo/gl-code-quality-report.json"

finish
