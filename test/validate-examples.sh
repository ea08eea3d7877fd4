#!/usr/bin/env bash
# validate-examples.sh - the rotation walkthrough of manifests/examples, in both forms, step by
# step: each step valid from the previous one once the mesh caught up, each premature one refused.
source "$(dirname "$0")/lib.sh"
cd "$SOURCE_ROOT/manifests/examples/rotation"

for form in universal kubernetes; do
    f=$form
    enabled_line=5
    [ $form = kubernetes ] && enabled_line=8
    run validate -o json -f $f/0-mesh.yaml -f $f/dataplanes.yaml
    check "$form: initial mesh is valid" exit_is 0

    run validate -o json -f $f/1-add.yaml -f $f/dataplanes.yaml --from $f/0-mesh.yaml --status status/0-caught-up.json
    check "$form: add is allowed" exit_is 0

    run validate -o json -f $f/2-switch.yaml -f $f/dataplanes.yaml --from $f/1-add.yaml --status status/1-caught-up.json
    check "$form: switch is allowed once every dataplane trusts ca-2" exit_is 0

    run validate -o json -f $f/3-remove.yaml -f $f/dataplanes.yaml --from $f/2-switch.yaml --status status/2-caught-up.json
    check "$form: remove is allowed once no dataplane holds a ca-1 certificate" exit_is 0

    run validate -o json -f $f/2-switch.yaml -f $f/dataplanes.yaml --from $f/1-add.yaml --status status/1-db-behind.json
    check "$form: switch refused while db-01 lacks ca-2" exit_is 1
    check "$form: switch refusal is switch-not-propagated at enabledBackend" json_has switch-not-propagated mtls.enabledBackend $enabled_line
    check "$form: switch refusal names db-01" out_has "db-01"

    run validate -o json -f $f/3-remove.yaml -f $f/dataplanes.yaml --from $f/2-switch.yaml --status status/2-db-behind.json
    check "$form: remove refused while db-01 presents a ca-1 certificate" json_has remove-still-in-use
    check "$form: remove refusal exits 1" exit_is 1

    run validate -o json -f $f/2-switch.yaml -f $f/dataplanes.yaml --from $f/0-mesh.yaml --status status/0-caught-up.json
    check "$form: add+switch at once is multi-step" json_has multi-step
    check "$form: add+switch exits 1" exit_is 1

    run validate -o json -f $f/3-remove.yaml -f $f/dataplanes.yaml --from $f/1-add.yaml --status status/1-caught-up.json
    check "$form: switch+remove at once is multi-step" json_has multi-step

    run validate -o json -f $f/2-switch.yaml -f $f/dataplanes.yaml --from $f/1-add.yaml
    check "$form: without status the switch passes with a status-unknown warning" json_has status-unknown
    check "$form: without status exit is 0" exit_is 0

    # A snapshot of another (empty) store: the switch is checked against no dataplane at all.
    echo '[]' >"$WORK/empty-status.json"
    run validate -o json -f $f/2-switch.yaml --from $f/1-add.yaml --status "$WORK/empty-status.json"
    check "$form: a switch against an empty snapshot warns status-unknown at enabledBackend" \
        json_has status-unknown mtls.enabledBackend $enabled_line
    check "$form: the warning says the snapshot holds no dataplane of the mesh" \
        out_has "holds no dataplane of mesh 'default'"
    check "$form: a warning only (exit 0)" exit_is 0
    run validate -o json -f $f/3-remove.yaml --from $f/2-switch.yaml --status "$WORK/empty-status.json"
    check "$form: a removal against an empty snapshot warns status-unknown" json_has status-unknown
    run validate -o json -f $f/2-switch.yaml --from $f/1-add.yaml --status status/1-caught-up.json
    check "$form: a snapshot holding the mesh's dataplanes gives no such warning" \
        bash -c "! grep -q status-unknown '$WORK/out'"
done

# The demo script itself, as a user runs it.
"$SOURCE_ROOT/test/demo/validate-walkthrough.sh" "$MESHCA" >"$WORK/out" 2>"$WORK/err"
rc=$?
check "the README walkthrough runs as expected" exit_is 0
finish
