#!/bin/sh
# One command for the side-by-side benchmarks: install the peers (etcd, Serf) from the
# system's packages, build ha's bot and the benchmark binaries in release mode, run them all,
# and write bench/RESULTS.md (plots in bench/results/, every figure in target/bench/*.json).
#
#   bench/compare.sh            # full run
#   bench/compare.sh --quick    # short runs, to check the harness
set -eu
cd "$(dirname "$0")/.."
bench/install_peers.sh
# A packaged etcd starts a system service on 2379/2380; the benchmarks use their own ports, but
# the service's CPU use would disturb the figures.
if command -v systemctl >/dev/null 2>&1; then
    systemctl stop etcd 2>/dev/null || true
fi
cargo build --release -p ha-examples --bin bot -p ha-bench --bins
exec target/release/compare "$@"
