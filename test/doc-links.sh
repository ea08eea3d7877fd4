#!/usr/bin/env bash
# doc-links.sh - every relative markdown link in README.md and doc/ resolves to a file; the README's test command is .ci/run's, its install command has tools/deps.sh's packages.
set -uo pipefail
SRC=${1:-$(cd "$(dirname "$0")/.." && pwd)}
passed=0
failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }

# Prints "FILE:LINE: TARGET" for each relative link of ROOT's README.md and doc/*.md whose
# file does not exist (links in code blocks, URLs and same-page #anchors are not files).
broken_links() {
    python3 - "$1" <<'PY'
import os, re, sys
root = sys.argv[1]
pages = [os.path.join(root, "README.md")]
docdir = os.path.join(root, "doc")
pages += sorted(os.path.join(docdir, f) for f in os.listdir(docdir) if f.endswith(".md"))
link = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
for page in pages:
    fence = False
    with open(page, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.lstrip().startswith("```"):
                fence = not fence
                continue
            if fence:
                continue
            # inline code spans are not links
            line = re.sub(r"`[^`]*`", "", line)
            for target in link.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                    continue
                path = target.split("#", 1)[0]
                if not os.path.exists(os.path.join(os.path.dirname(page), path)):
                    print(f"{os.path.relpath(page, root)}:{n}: {target}")
PY
}

# The checker itself: a tree with one good and one broken link must report the broken one only.
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mkdir -p "$t/doc"
printf '# x\n[ok](doc/a.md) [gone](doc/missing.md)\n```\n[in code](nowhere.md)\n```\n' >"$t/README.md"
printf '[back](../README.md#top) [web](https://example.com/x.md) [bad](b.md#sec)\n' >"$t/doc/a.md"
out=$(broken_links "$t")
expected=$'README.md:2: doc/missing.md\ndoc/a.md:1: b.md#sec'
if [ "$out" = "$expected" ]; then ok "a broken link is reported with its file and line"; else fail "checker on a broken tree printed: [$out]"; fi

out=$(broken_links "$SRC")
if [ -z "$out" ]; then ok "every relative link in README.md and doc/*.md resolves"; else fail "broken links:"$'\n'"$out"; fi

# CI runs the README's test command.
if grep -qx 'exec tools/test.sh' "$SRC/.ci/run"; then ok ".ci/run runs tools/test.sh"; else fail ".ci/run does not exec tools/test.sh"; fi
if grep -q '^tools/test.sh$' "$SRC/README.md"; then ok "the README's test command is tools/test.sh"; else fail "README.md has no 'tools/test.sh' command line"; fi

# The README's install command names every package tools/deps.sh installs.
pkgs=$(sed -n '/^packages=(/,/^)/p' "$SRC/tools/deps.sh" | sed 's/#.*//; /packages=(/d; /^)/d' | tr -s ' \t' '\n' | sed '/^$/d')
install=$(sed -n '/^apt-get install/,/^```/p' "$SRC/README.md" | tr -s ' \\\t' '\n')
missing=
for p in $pkgs; do grep -qx -- "$p" <<<"$install" || missing="$missing $p"; done
if [ -n "$pkgs" ] && [ -z "$missing" ]; then ok "the README's apt-get install names all $(wc -w <<<"$pkgs") packages of tools/deps.sh"
else fail "the README's apt-get install lacks:${missing:- (no packages parsed from tools/deps.sh)}"; fi

echo "doc-links: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
