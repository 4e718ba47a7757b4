#!/bin/sh
# The outage of a whole three-member control plane: one fleet command
# (`restore --nodes-file`, over ssh to the drill's sshds, in lockstep) against
# three single-node runs done one after another (as an operator without
# --nodes does it: member 1 ends waiting for its peers, member 2 forms the
# quorum, member 3 joins, then `verify` on member 1), alternated, median of RUNS.
# The outage: from the first `stop-control-plane` record of any member's
# journal to the last member's `verify` stage done (the last `verify` run for
# the single-node runs).
# Usage: [KEYS=3000] tests/bench/fleet-outage.sh [RUNS]
set -eu
cd "$(dirname "$0")/../.."
runs=${1:-3}
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/etcd-rescue
work=$(mktemp -d /var/tmp/fleet-bench-XXXXXX)
drill=$work/drill
"$bin" drill --dir "$drill" --members 3 --ssh --keys "${KEYS:-3000}" >"$work/drill.out" 2>&1 &
dpid=$!
trap 'kill -TERM $dpid 2>/dev/null; wait $dpid 2>/dev/null; rm -rf "$work"' EXIT
n=0
until grep -q '^Snapshot taken' "$work/drill.out" && [ -f "$drill/nodes.yaml" ]; do
    n=$((n + 1)); [ $n -lt 900 ] || { cat "$work/drill.out"; exit 1; }
    sleep 0.1
done
snap=$(python3 -c "import json;print(json.load(open('$drill/drill.json'))['snapshot'])")
roots=$(python3 -c "import json;print(' '.join(n['root'] for n in json.load(open('$drill/drill.json'))['nodes']))")
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# outage: from the first stop-control-plane record of the newest run on each root to the last verify done.
outage() {
    python3 - $roots <<'PY'
import glob, json, os, sys, datetime
ts = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
first, last = [], []
for root in sys.argv[1:]:
    j = sorted(glob.glob(os.path.join(root, "var/lib/etcd-rescue/runs/*/journal.jsonl")))[-1]
    recs = [json.loads(l) for l in open(j)][1:]
    first.append(min(ts(r["at"]) for r in recs if r["step"] == "stop-control-plane"))
    last.append(max(ts(r["at"]) for r in recs if r["step"] == "verify" and r["kind"] == "stage-done"))
print(f"{max(last) - min(first):.3f}")
PY
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# Each restore of the same snapshot must raise the revision past the one
# before it: the k-th restore raises it k * 1e9 past the snapshot.
k=0
i=0
while [ $i -lt "$runs" ]; do
    i=$((i + 1))
    k=$((k + 1))
    "$bin" restore --nodes-file "$drill/nodes.yaml" --snapshot "$snap" --yes --state-dir "$work/coord" \
        --bump-revision $((k * 1000000000)) \
        >"$work/fleet-$i" 2>&1 || { cat "$work/fleet-$i"; exit 1; }
    outage >>"$work/fleet"
    k=$((k + 1))
    j=0
    for root in $roots; do
        j=$((j + 1))
        "$bin" restore --root "$root" --snapshot "$snap" --yes --force --wait-timeout 300s \
            --bump-revision $((k * 1000000000)) \
            >"$work/single-$i-$j" 2>&1 || { cat "$work/single-$i-$j"; exit 1; }
    done
    first=$(echo "$roots" | cut -d' ' -f1)
    "$bin" verify --root "$first" --wait-timeout 120s >"$work/verify-$i" 2>&1 || { cat "$work/verify-$i"; exit 1; }
    outage >>"$work/single"
done
f=$(median <"$work/fleet")
s=$(median <"$work/single")
echo "three members, $runs alternated rounds (outage s):"
echo "  one fleet command (restore --nodes-file): $(tr '\n' ' ' <"$work/fleet")  median $f"
echo "  three single-node runs, one after another: $(tr '\n' ' ' <"$work/single")  median $s"
echo "fleet/sequential: $(echo "$f $s" | awk '{ printf "%.2f", $1 / $2 }')x"
