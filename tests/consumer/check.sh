#!/usr/bin/env bash
# The consumer-crate check (issue 19): a service outside this workspace that depends on the facade
# by path must resolve the same foca as the workspace, the fork `ha-foca` in third_party/foca
# (the TurnUndead fix, third_party/foca/HA_PATCH.md), and never crates.io `foca`. A
# `[patch.crates-io]` in this workspace's root would not reach such a service; this is the check
# that would have caught it.
#
# It creates the consumer in a temporary directory (path dependency on ha/ only, its own empty
# [workspace]), resolves it with `cargo tree` (offline from the workspace's Cargo.lock when the
# local registry cache has what it needs, online otherwise), and fails when
#   - the consumer resolves any package named `foca` (upstream, without the fix), or
#   - the consumer's `ha-foca` is not the one ha-tests resolves in the workspace: ha-tests holds
#     the 5%-loss gossip simulation (tests/tests/gossip_sim.rs, no_false_down_under_5pct_loss),
#     so the simulation runs against exactly the consumer's resolution, or
#   - the workspace itself resolves a `foca` anywhere (any member, any target), or
#   - the consumer resolves a package (name, version, source) the workspace does not.
# Cheap: resolution only, nothing is compiled. Run: tests/consumer/check.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ha-consumer.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "consumer check FAILED: $*" >&2
  exit 1
}

# `cargo tree` with one package per line ("name vX.Y.Z (path)" for path packages, "name vX.Y.Z"
# for crates.io), every edge kind and target, no duplicates. Offline first: CI has just used
# the same lock file, so nothing new is needed unless the resolution changed.
resolve() {
  local out
  if out=$(cargo tree "$@" --offline --target all -e normal,build,dev --prefix none --format '{p}' 2>"$tmp/stderr"); then
    :
  elif offline_error=$(grep -m1 '^error' "$tmp/stderr" || true) &&
    out=$(cargo tree "$@" --target all -e normal,build,dev --prefix none --format '{p}' 2>"$tmp/stderr"); then
    echo "($* resolved online; offline: ${offline_error:-failed})" >&2
  else
    cat "$tmp/stderr" >&2
    fail "cargo tree $* did not resolve"
  fi
  # `(*)` marks a package already printed; drop the marker, keep one line per package.
  printf '%s\n' "$out" | sed -e 's/ (\*)$//' -e '/^$/d' | sort -u
}

mkdir -p "$tmp/consumer/src"
cat >"$tmp/consumer/Cargo.toml" <<EOF
# A downstream service, as a user would write it: the facade by path, nothing else.
[package]
name = "ha-consumer-check"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
ha-framework = { path = "$root/ha" }

# Its own workspace root: nothing of $root applies, as for a real downstream crate.
[workspace]
EOF
echo 'pub use ha::Node;' >"$tmp/consumer/src/lib.rs"
# Start from the workspace's lock so the consumer resolves the versions CI tests (and offline).
cp "$root/Cargo.lock" "$tmp/consumer/Cargo.lock"

consumer=$(resolve --manifest-path "$tmp/consumer/Cargo.toml")
workspace=$(resolve --manifest-path "$root/Cargo.toml" --workspace)
simulator=$(resolve --manifest-path "$root/Cargo.toml" -p ha-tests)

upstream=$(printf '%s\n' "$consumer" | grep -E '^foca v' || true)
[ -z "$upstream" ] || fail "the consumer resolves crates.io foca without the TurnUndead fix: ${upstream//$'\n'/, } (see third_party/foca/HA_PATCH.md)"

upstream=$(printf '%s\n' "$workspace" | grep -E '^foca v' || true)
[ -z "$upstream" ] || fail "the workspace resolves a package named foca: ${upstream//$'\n'/, }; depend on ha-foca"

fork=$(printf '%s\n' "$consumer" | grep -E '^ha-foca v' || true)
expected_path="$root/third_party/foca"
[ -n "$fork" ] || fail "the consumer resolves no ha-foca at all"
[ "$(printf '%s\n' "$fork" | wc -l)" -eq 1 ] || fail "the consumer resolves several ha-foca: ${fork//$'\n'/, }"
case "$fork" in
  *"($expected_path)") ;;
  *) fail "the consumer's ha-foca is '$fork', not the fork in $expected_path" ;;
esac

simulated=$(printf '%s\n' "$simulator" | grep -E '^ha-foca v' || true)
[ "$fork" = "$simulated" ] \
  || fail "the consumer resolves '$fork' but ha-tests (the 5%-loss gossip simulation) resolves '$simulated'"

extra=$(comm -23 <(printf '%s\n' "$consumer" | grep -v '^ha-consumer-check ') <(printf '%s\n' "$workspace"))
[ -z "$extra" ] || fail "the consumer resolves packages the workspace does not test with: ${extra//$'\n'/, }"

echo "consumer check passed: a crate outside the workspace depending on ha-framework by path"
echo "  resolves $fork,"
echo "  the same package ha-tests (gossip_sim.rs, no_false_down_under_5pct_loss) resolves;"
echo "  no crates.io foca in the consumer or the workspace; $(printf '%s\n' "$consumer" | wc -l) packages, all in the workspace's resolution."
