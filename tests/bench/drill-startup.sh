#!/bin/sh
# Start-up time of a small drill: from `etcd-rescue drill` to the node being
# up, seeded and snapshotted (what the drill prints as its last phase time),
# median of RUNS runs. Usage: tests/bench/drill-startup.sh [KEYS] [RUNS] [extra drill args...]
set -eu
cd "$(dirname "$0")/../.."
keys=${1:-3000}
runs=${2:-5}
shift 2 2>/dev/null || shift $#
cargo build --release --quiet
bin=target/release/etcd-rescue
work=$(mktemp -d /tmp/drill-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
i=0
while [ "$i" -lt "$runs" ]; do
    i=$((i + 1))
    dir="$work/run$i"
    start=$(date +%s.%N)
    "$bin" drill --dir "$dir" --keys "$keys" "$@" >"$work/out$i" 2>&1 &
    pid=$!
    n=0
    while ! grep -q '^Snapshot taken' "$work/out$i" 2>/dev/null; do
        n=$((n + 1))
        if [ "$n" -gt 600 ] || ! kill -0 "$pid" 2>/dev/null; then
            cat "$work/out$i"; kill "$pid" 2>/dev/null || true; exit 1
        fi
        sleep 0.05
    done
    end=$(date +%s.%N)
    kill -TERM "$pid"
    wait "$pid" || true
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }'
done | sort -n | awk -v keys="$keys" '{ t[NR] = $1 } END {
    printf "drill start-up, %d keys, %d runs: median %.2f s (min %.2f, max %.2f)\n", keys, NR, t[int((NR + 1) / 2)], t[1], t[NR] }'
