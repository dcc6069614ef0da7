#!/usr/bin/env bash
# Prepares this machine for the benchmarks: wrk and valgrind (Debian's packages, as root; wrk
# loads the servers, valgrind's cachegrind counts instructions for bench/instructions.py) and
# the `bench` extra (concmon with every adapter, plus the peers it is compared with) in .venv.
# Usage: bash scripts/bench-setup.sh   (from anywhere; run as root, or wrk is only checked)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"

missing=()
for tool in wrk valgrind; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "bench-setup: ${missing[*]} missing; install as root with: apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q -e "$root[bench]"
echo "bench-setup: ready; run $venv/bin/python bench/peers.py from $root"
