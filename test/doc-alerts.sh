#!/usr/bin/env bash
# doc-alerts.sh - doc/alerting-rules.yml loads (promtool check rules) and each alert fires, and
# stays silent, as doc/alerting-rules.test.yml's cases say (promtool test rules).
set -uo pipefail
SRC=${1:-$(cd "$(dirname "$0")/.." && pwd)}
command -v promtool >/dev/null || { echo "1..0 # SKIP no promtool (tools/deps.sh installs prometheus)"; exit 77; }
passed=0
failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }

if out=$(promtool check rules "$SRC/doc/alerting-rules.yml" 2>&1); then ok "promtool check rules"
else fail "promtool check rules:"$'\n'"$out"; fi
# promtool resolves rule_files relative to the test file.
if out=$(cd "$SRC/doc" && promtool test rules alerting-rules.test.yml 2>&1); then
    ok "promtool test rules: every alert fires and stays silent as the cases say"
else fail "promtool test rules:"$'\n'"$out"; fi
# Every alert of the rules file has a case.
for a in $(sed -n 's/^ *- alert: //p' "$SRC/doc/alerting-rules.yml"); do
    if grep -q "alertname: $a\$" "$SRC/doc/alerting-rules.test.yml"; then ok "$a has a case"
    else fail "$a has no case in doc/alerting-rules.test.yml"; fi
done
echo "doc-alerts: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
