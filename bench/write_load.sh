# Sourced by the profiling scripts (bench/profile_follower.sh, bench/sequential_hops.sh): start
# `compare_etcd`'s HTTP write load against 3 bots in the background and wait until the cluster
# has a leader.
#
#   start_write_load CLIENTS SECONDS BOT OUT_DIR
#
# Sets `run` (the load generator's pid; compare_etcd stops every process it started when the
# run ends) and `line` (its "members [...], leader pid N" line). Exits when `perf` is missing or
# the cluster does not start.
start_write_load() {
    local clients=$1 seconds=$2 bot=$3 out=$4
    command -v perf >/dev/null || { echo "perf is not installed (Debian: linux-perf)" >&2; exit 1; }
    target/release/compare_etcd --only writes --systems ha --clients "$clients" \
        --duration-s "$seconds" --rounds 1 --bot "$bot" > "$out/run.txt" 2>&1 &
    run=$!
    for _ in $(seq 1 120); do
        grep -q "leader pid" "$out/run.txt" && break
        kill -0 "$run" 2>/dev/null || { cat "$out/run.txt" >&2; exit 1; }
        sleep 0.5
    done
    line=$(grep "leader pid" "$out/run.txt") || { echo "the cluster did not start" >&2; exit 1; }
}
