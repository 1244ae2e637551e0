#!/bin/sh
# Install the peers the side-by-side benchmarks compare ha with, from the system's packages:
# etcd (server and etcdctl) and Serf, plus protoc and protobuf's well-known .proto files
# (protobuf-compiler, libprotobuf-dev), which the etcd-client crate's build script needs for
# compare_native's gRPC path (the bench crate's `grpc` feature). Idempotent; needs root (or
# sudo) and the Debian archive.
set -eu
missing=""
command -v etcd >/dev/null 2>&1 || missing="$missing etcd-server"
command -v etcdctl >/dev/null 2>&1 || missing="$missing etcd-client"
command -v serf >/dev/null 2>&1 || missing="$missing serf"
command -v protoc >/dev/null 2>&1 || missing="$missing protobuf-compiler"
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing="$missing libprotobuf-dev"
if [ -z "$missing" ]; then
    echo "peers already installed: $(etcd --version | head -1), $(serf version | head -1), $(protoc --version)"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086 # the package list is meant to split
$SUDO apt-get install -y -qq --no-install-recommends $missing
echo "installed:$missing"
