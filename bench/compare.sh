#!/bin/sh
# One command for the side-by-side benchmarks: install the peers (etcd, Serf, and protoc for
# etcd's gRPC client) from the system's packages, build ha's bot and the benchmark binaries in
# release mode (with the bench crate's `grpc` feature), run them all, and write
# bench/RESULTS.md (plots in bench/results/, every figure in target/bench/*.json).
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
# etcd-client's build script runs protoc; point it at the system's (installed above).
PROTOC="${PROTOC:-$(command -v protoc)}"
export PROTOC
# The bot on its own, as the README builds it: built together with the bench crate, cargo would
# give the dependencies they share the union of both's features (the gRPC client's among them),
# and the measured bot would carry that code (text 9.5 MB against 8.8 with fat LTO, about
# 0.7 MiB more resident when idle).
cargo build --release -p ha-examples --bin bot
cargo build --release -p ha-bench --features ha-bench/grpc --bins
exec target/release/compare "$@"
