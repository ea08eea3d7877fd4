#!/usr/bin/env bash
# doc-backends.sh - replays the "Trying it" blocks of doc/cfssl.md (a real cfssl serve) and
# doc/vault.md (the Vault PKI test double) as a newcomer pastes them, in a scratch directory
# with a fresh store: every command must run as printed and say what the page says.
source "$(dirname "$0")/lib.sh"
: "${SOURCE_ROOT:?set SOURCE_ROOT to the top of the source tree}"
CFSSL_PID=
VAULT_PID=
cleanup() {
    [ -n "$CFSSL_PID" ] && kill "$CFSSL_PID" 2>/dev/null
    [ -s "$WORK/try-vault/vault/pid" ] && kill "$(cat "$WORK/try-vault/vault/pid")" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
command -v cfssl >/dev/null && command -v cfssljson >/dev/null || { echo "cfssl not installed (tools/deps.sh: golang-cfssl)"; exit 77; }
export PATH="$(dirname "$MESHCA"):$PATH"
unset MESHCA_STORE

# block DOC HEADING: the first ```sh block after the heading, on stdout.
block() {
    python3 - "$1" "$2" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
at = text.index(sys.argv[2])
print(re.search(r"```sh\n(.*?)```", text[at:], re.S).group(1), end="")
PY
}

# --- doc/cfssl.md: a root, cfssl serve behind an auth key, a mesh signed through it ---------
block "$SOURCE_ROOT/doc/cfssl.md" "## Trying it on one host" >"$WORK/cfssl.sh"
check "cfssl block: found, with the commands a newcomer pastes" \
    bash -c "grep -q '^cfssl serve ' '$WORK/cfssl.sh' && grep -q '^meshca apply -f mesh.yaml' '$WORK/cfssl.sh'"
PORT=$(python3 "$SOURCE_ROOT/test/free-ports.py" 1)
# The page's fixed place and port become this run's; the page's pause for cfssl to listen
# becomes a bounded wait on its log; its pid is kept to stop it.
python3 - "$WORK/cfssl.sh" "$WORK" "$PORT" <<'PY'
import sys
path, work, port = sys.argv[1:]
out = []
for line in open(path).read().replace("/tmp/try-cfssl", work + "/try-cfssl").replace("8888", port).splitlines():
    if line.startswith("sleep "):
        line = ('for i in $(seq 150); do grep -q "Now listening" serve.log && break; '
                'kill -0 "$(cat ' + work + '/cfssl.pid)" || break; sleep 0.1; done')
    out.append(line)
    if line.startswith("cfssl serve "):
        out.append("echo $! >" + work + "/cfssl.pid")
open(path, "w").write("\n".join(out) + "\n")
PY
(cd "$SOURCE_ROOT" && timeout 120 bash -e "$WORK/cfssl.sh") >"$WORK/out" 2>"$WORK/err"
rc=$?
CFSSL_PID=$(cat "$WORK/cfssl.pid" 2>/dev/null)
check "cfssl block: runs as printed (exit 0)" exit_is 0
check "cfssl block: apply stores the mesh and the key's Secret" \
    bash -c "grep -qxF 'mesh/default created' '$WORK/out' && grep -qxF 'secret/default/cfssl-key created' '$WORK/out'"
check "cfssl block: inspect shows the intermediate cfssl signed" out_has "/CN=meshca default intermediate"
check "cfssl block: roots -o pem is cfssl's root alone, the agents' bundle" \
    out_has "the trust bundle is cfssl's root"
check "cfssl block: the auth key is printed nowhere" \
    bash -c "! grep -qF \"\$(cat '$WORK/try-cfssl/auth-key.hex')\" '$WORK/out' '$WORK/err'"

# --- doc/vault.md: the Vault PKI test double and a mesh signed by it ------------------------
block "$SOURCE_ROOT/doc/vault.md" "## Trying it without a Vault server" >"$WORK/vault.sh"
check "vault block: found, starting the double" grep -q 'start-vault-double.sh' "$WORK/vault.sh"
sed -i "s|/tmp/try-vault|$WORK/try-vault|g" "$WORK/vault.sh"
# "$OLDPWD" in the page is the top of the clone the reader started from.
(cd "$SOURCE_ROOT" && timeout 120 bash -e "$WORK/vault.sh") >"$WORK/out" 2>"$WORK/err"
rc=$?
check "vault block: runs as printed (exit 0)" exit_is 0
check "vault block: apply stores the mesh" bash -c "grep -qxF 'mesh/default created' '$WORK/out'"
check "vault block: inspect shows the double's PKI CA" out_has "/CN=vault test double pki CA"
check "vault block: the token is printed nowhere" \
    bash -c "! grep -qF \"\$(cat '$WORK/try-vault/vault/token')\" '$WORK/out' '$WORK/err'"

finish
