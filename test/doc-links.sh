#!/usr/bin/env bash
# doc-links.sh - every relative markdown link in README.md and doc/ resolves to a file; the README's test command is .ci/run's, its install command has tools/deps.sh's packages.
set -uo pipefail
SRC=${1:-$(cd "$(dirname "$0")/.." && pwd)}
passed=0
failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }

# Prints "FILE:LINE: TARGET" for each relative link of ROOT's README.md and doc/*.md whose
# file, or #anchor's heading in a .md file, does not exist (links in code blocks and URLs skipped).
broken_links() {
    python3 - "$1" <<'PY'
import os, re, sys
root = sys.argv[1]
pages = [os.path.join(root, "README.md")]
docdir = os.path.join(root, "doc")
pages += sorted(os.path.join(docdir, f) for f in os.listdir(docdir) if f.endswith(".md"))
link = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")

def anchors(md):
    # GitHub's heading ids: lower case, punctuation dropped, spaces to '-', repeats numbered
    seen, out, fence = {}, set(), False
    with open(md, encoding="utf-8") as f:
        for line in f:
            if line.lstrip().startswith("```"):
                fence = not fence
            if fence or not re.match(r"^#{1,6} ", line):
                continue
            slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out

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
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                    continue
                path, _, frag = target.partition("#")
                full = os.path.join(os.path.dirname(page), path) if path else page
                if not os.path.exists(full):
                    print(f"{os.path.relpath(page, root)}:{n}: {target}")
                elif frag and full.endswith(".md") and frag not in anchors(full):
                    print(f"{os.path.relpath(page, root)}:{n}: {target} (no such heading)")
PY
}

# The checker itself: a tree with one good and one broken link must report the broken one only.
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mkdir -p "$t/doc"
printf '# x\n[ok](doc/a.md) [gone](doc/missing.md)\n```\n[in code](nowhere.md)\n```\n' >"$t/README.md"
printf '# A page\n[back](../README.md#x) [web](https://example.com/x.md) [bad](b.md#sec) [here](#a-page) [nohead](#gone)\n' >"$t/doc/a.md"
out=$(broken_links "$t")
expected=$'README.md:2: doc/missing.md\ndoc/a.md:2: b.md#sec\ndoc/a.md:2: #gone (no such heading)'
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
