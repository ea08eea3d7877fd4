#!/usr/bin/env bash
# Scenario: builtin ca-1 -> cfssl ca-2 (a real `cfssl serve` on 127.0.0.1 signs meshca's
# intermediate; meshca signs the leaves with it): add -> switch -> remove under traffic, zero
# failed requests; every leaf ends chaining to cfssl's root through the intermediate.
source "$(dirname "$0")/lib.sh"

CF="$E2E/cfssl"
stop_cfssl() { [ -s "$CF/pid" ] && kill "$(cat "$CF/pid")" 2>/dev/null; return 0; }
# lib.sh's cleanup reads the exit code from $?: keep it through stopping cfssl.
trap 'rc=$?; stop_cfssl; (exit $rc); cleanup' EXIT
timeout 60 bash "$SOURCE_ROOT/test/extca/start-cfssl.sh" "$CF" >"$E2E/cfssl-start.log" 2>&1 ||
    { cat "$E2E/cfssl-start.log"; die "cannot start cfssl serve"; }
say "cfssl serve on 127.0.0.1:$(cat "$CF/port") ($(cfssl version 2>/dev/null | head -1))"

# cfssl_mesh FILE ENABLED BACKEND...: as write_mesh, with ca-2 a cfssl backend behind the
# profile's auth key (Secret cfssl-key).
cfssl_mesh() {
    local f=$1 enabled=$2 b
    shift 2
    printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: %s\n  backends:\n' "$enabled" >"$f"
    for b in "$@"; do
        if [ "$b" = ca-2 ]; then
            printf '  - name: ca-2\n    type: cfssl\n    conf:\n      url: http://127.0.0.1:%s\n' "$(cat "$CF/port")"
            printf '      profile: intermediate-auth\n      authKey: {secret: cfssl-key}\n'
        else
            printf '  - name: %s\n    type: builtin\n' "$b"
        fi
    done >>"$f"
}
printf 'type: Secret\nmesh: default\nname: cfssl-key\ndata: %s\n' "$(base64 -w0 "$CF/authkey")" >"$E2E/cfssl-key.yaml"

setup ca-1
cfssl_mesh "$E2E/1-add.yaml" ca-1 ca-1 ca-2
cfssl_mesh "$E2E/2-switch.yaml" ca-2 ca-1 ca-2
cfssl_mesh "$E2E/3-remove.yaml" ca-2 ca-2

start_loop 120
sleep 1
apply_ok "$E2E/cfssl-key.yaml" "$E2E/1-add.yaml"
wait_for "every dataplane trusts ca-2 (cfssl's root)" all_support ca-2
sleep 1
apply_ok "$E2E/2-switch.yaml"
wait_for "every dataplane holds a ca-2 certificate" all_issued ca-2
sleep 1
apply_ok "$E2E/3-remove.yaml"
wait_for "every dataplane trusts ca-2 only" all_supported_exactly ca-2 '"ca-2"'
sleep 1
stop_loop
verify_strict
for dp in "${DPS[@]}"; do
    d=$(readlink -f "$E2E/dp/$dp/client")
    openssl verify -x509_strict -CAfile "$CF/root.pem" -untrusted "$d/cert.pem" "$d/cert.pem" >"$E2E/verify.out" 2>&1 ||
        { cat "$E2E/verify.out"; die "$dp: the leaf does not chain to cfssl's root"; }
    cmp -s <(openssl x509 -in "$d/ca-bundle.pem" -outform DER) <(openssl x509 -in "$CF/root.pem" -outform DER) &&
        [ "$(grep -c 'BEGIN CERTIFICATE' "$d/ca-bundle.pem")" -eq 1 ] ||
        die "$dp: the bundle is not exactly cfssl's root"
    awk '/BEGIN/{n++} n==2' "$d/cert.pem" | openssl x509 -noout -ext basicConstraints | grep -q 'CA:TRUE, pathlen:0' ||
        die "$dp: the second certificate of cert.pem is not the pathlen-0 intermediate"
done
say "ok: every leaf chains to cfssl's root through the intermediate; every bundle is cfssl's root"
store_has_no_dataplane_secrets
expect_no_failures
