#!/usr/bin/env bash
# Where a follower's CPU goes under the 64-client HTTP write load of `compare_etcd`: runs the
# load against 3 bots, records one follower with DWARF call graphs (`perf record --call-graph
# dwarf`) for a few seconds in the middle of the run, and writes the report's "children" view
# (share of the follower's samples under each function) next to the data.
#
#   bench/profile_follower.sh [BOT] [OUT_DIR]
#
# BOT defaults to target/release/bot, OUT_DIR to target/bench/profile_follower. Needs `perf`
# (Debian: linux-perf) and root (or perf_event_paranoid <= 1), and the release binaries
# (`bench/compare.sh` builds them). The run lasts about 20 s; every process it starts is
# stopped by compare_etcd itself when the run ends.
set -euo pipefail
cd "$(dirname "$0")/.."
bot=$(realpath "${1:-target/release/bot}")
out=${2:-target/bench/profile_follower}
mkdir -p "$out"
. bench/write_load.sh
start_write_load 64 14 "$bot" "$out"
leader=$(sed 's/.*leader pid \([0-9]*\).*/\1/' <<<"$line")
members=$(sed 's/.*members \[\([0-9, ]*\)\].*/\1/' <<<"$line" | tr -d ' ')
follower=$(tr ',' '\n' <<<"$members" | grep -vx "$leader" | head -1)
echo "leader pid $leader, profiled follower pid $follower" | tee "$out/pids.txt"
# The write load starts a few seconds after the cluster; record the middle of it.
sleep 5
perf record --call-graph dwarf,16384 -F 199 -p "$follower" -o "$out/perf.data" -- sleep 5 \
    > /dev/null 2>&1
wait "$run"
tail -3 "$out/run.txt"
perf report -i "$out/perf.data" --children --sort symbol --stdio -g none 2>/dev/null \
    | grep '%' | cut -c1-200 > "$out/children.txt"
echo "wrote $out/children.txt (share of the follower's samples under each function)"
grep -E 'DigestJob::run|SnapshotJob::run|Applier<S>::apply +$|__x64_sys_fdatasync' "$out/children.txt" \
    | cut -c1-120 || true
