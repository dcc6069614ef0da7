#!/usr/bin/env bash
# Prepares this machine for the benchmarks in bench/: wrk (Debian's package, installed as root;
# it loads the servers of bench/peers.py) and the `bench` extra (concmon with every adapter,
# the servers, and the peers it is compared with) in .venv.
# Usage: bash scripts/bench-setup.sh   (from anywhere; as another user wrk is only checked)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
    else
        echo "bench-setup: wrk is missing; install it as root with: apt-get install wrk" >&2
        exit 1
    fi
fi

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q -e "$root[bench]"
echo "bench-setup: ready; from $root run $venv/bin/python bench/core.py, bench/inprocess.py, bench/peers.py or bench/scrape.py"
