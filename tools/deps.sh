#!/usr/bin/env bash
# deps.sh - installs, with apt, whatever meshca's build, tests and demo need and the machine lacks.
set -euo pipefail

packages=(
    gcc pkg-config meson ninja-build        # build
    libyaml-dev libssl-dev libcurl4-openssl-dev libjansson-dev libsqlite3-dev   # libraries (SPEC S1)
    libevent-dev                            # the dataplane API's HTTPS server (evhttp, SPEC S13)
    check                                   # unit tests
    openssl curl python3 procps groff-base  # integration tests: openssl verify, HTTP, JSON checks, pgrep, man page check
    python3-yaml jq git                     # lint-cli.sh: roots -o yaml read back, doc/ci.md's jobs run as written
    nginx-light haproxy                     # the end-to-end data plane (two real proxies, SPEC S9)
    etcd-server                             # the etcd store's tests run a real etcd (/usr/bin/etcd)
    etcd-client                             # bench-all: etcd's own read of everything (etcdctl get --prefix)
    golang-cfssl                            # the cfssl backend's tests run a real `cfssl serve`
    clang libclang-rt-dev sqlite3           # fuzz targets (libFuzzer, build-fuzz); secret scan's store dump
    prometheus                              # promtool: metrics-cli.sh checks every /metrics scrape and doc/alerting-rules.yml
    bsdutils                                # script(1): progress-cli.sh runs meshca on a pseudo-terminal
    e2fsprogs                               # chattr(1): faults.sh makes the SQLite store immutable
    zsh                                     # help-cli.sh: 'meshca completion zsh' run through zsh's bashcompinit
    mount                                   # mount --bind in a private namespace: agent-hostile-controller.sh, extca-ca-pinned.sh
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing: ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
