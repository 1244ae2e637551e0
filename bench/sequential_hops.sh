#!/usr/bin/env bash
# The thread hops of one sequential HTTP write: runs `compare_etcd`'s 1-client write load
# against 3 bots, records the scheduler's wake-up and switch events of the whole machine for
# 1.5 s in the middle of it (`perf record -e sched:sched_waking -e sched:sched_switch -a`),
# and prints each write's chain of hops as bench/sequential_hops.py rebuilds it.
#
#   bench/sequential_hops.sh [BOT] [OUT_DIR]
#
# BOT defaults to target/release/bot, OUT_DIR to target/bench/sequential_hops. Needs `perf`
# (Debian: linux-perf), root (or perf_event_paranoid <= 1), python3 and the release binaries
# (`bench/compare.sh` builds them). About 10 s; compare_etcd stops every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bot=$(realpath "${1:-target/release/bot}")
out=${2:-target/bench/sequential_hops}
mkdir -p "$out"
. bench/write_load.sh
start_write_load 1 6 "$bot" "$out"
sleep 2.5
ls "/proc/$run/task" > "$out/load_generator_tids.txt"
perf record -q -e sched:sched_waking -e sched:sched_switch -a -o "$out/sched.data" -- sleep 1.5
wait "$run"
grep "^|" "$out/run.txt" | tail -1
perf script -i "$out/sched.data" -F comm,tid,cpu,time,event,trace 2>/dev/null \
    | python3 bench/sequential_hops.py "$out/load_generator_tids.txt" | tee "$out/hops.txt"
