#!/bin/bash
# Key response and first frame of the restore wizard while a restore runs.
#
# Brings up a drill node (KEYS objects), runs `etcd-rescue restore` on it in
# tmux at 80x24 with ETCD_RESCUE_TUI_TIMINGS set, presses y at the plan and
# at every stage, and while each stage runs keeps typing scroll keys (j/k)
# every 20 ms. The wizard appends to the timings file the first-frame time
# (process start to first frame on the terminal) and, for every key, the
# time from reading the key to the next frame written. Then the same for the
# picker (no --snapshot) RUNS times, to measure the first frame alone.
# Needs root (the drill), tmux. Usage: tests/bench/tui-latency.sh [KEYS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
keys=${1:-3000}
runs=${2:-10}
cargo build --release --quiet
bin=$PWD/target/release/etcd-rescue
work=$(mktemp -d /tmp/tui-bench-XXXXXX)
sock="$work/tmux-0.sock"
drill_pid=""
# Every wait below has a deadline; a bench that hangs measures nothing.
cleanup() {
    tmux -S "$sock" kill-server 2>/dev/null || true
    if [ -n "$drill_pid" ]; then
        kill -TERM "$drill_pid" 2>/dev/null || true
        # The drill stops its pods (grace periods) first: 120 s, then SIGKILL and drill down.
        for _ in $(seq 1200); do kill -0 "$drill_pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$drill_pid" 2>/dev/null; then
            kill -KILL "$drill_pid" 2>/dev/null || true
            "$bin" drill down --dir "$work/drill" >/dev/null 2>&1 || true
        fi
        wait "$drill_pid" 2>/dev/null || true
    fi
    if grep -qF " $work/" /proc/self/mountinfo; then
        echo "mounts left under $work: the directory is kept" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap "exit 130" INT TERM HUP PIPE
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

"$bin" drill --dir "$work/drill" --keys "$keys" >"$work/drill.out" 2>&1 &
drill_pid=$!
for _ in $(seq 600); do
    grep -q '^Snapshot taken' "$work/drill.out" 2>/dev/null && break
    kill -0 "$drill_pid" 2>/dev/null || { cat "$work/drill.out"; exit 1; }
    sleep 0.1
done
snap=$(sed -n 's/^Snapshot taken after seeding: //p' "$work/drill.out")
[ -n "$snap" ] || { cat "$work/drill.out"; exit 1; }

screen() { tmux -S "$sock" capture-pane -p -t w; }
wait_for() { # text, seconds
    for _ in $(seq $(($2 * 20))); do screen | grep -qF -- "$1" && return 0; sleep 0.05; done
    echo "timed out waiting for: $1"; screen; exit 1
}
session=0
start() { # timings file, args...: a new tmux server (a socket of its own) per session
    local t=$1; shift
    tmux -S "$sock" kill-server 2>/dev/null || true
    session=$((session + 1))
    sock="$work/tmux-$session.sock"
    t0=$(date +%s%N)
    tmux -S "$sock" new-session -d -s w -x 80 -y 24 \
        "env PATH=$path ETCD_RESCUE_TUI_TIMINGS=$t $bin $*; echo '[exit '\$?']'; sleep 600"
    # Outside view of the first frame: until tmux shows the wizard's top line
    # (an upper bound: includes exec, tmux and the polling itself). At most 20 s.
    local deadline=$(( $(date +%s) + 20 ))
    until screen | grep -qF "etcd-rescue restore"; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out waiting for the first frame"; screen; exit 1; }
    done
    echo "seen $(( ($(date +%s%N) - t0) / 1000 ))" | awk '{ printf "seen %.3f\n", $2 / 1000 }' >>"$work/seen"
}

timings=$work/restore.timings
start "$timings" restore --root "$work/drill" --snapshot "$snap"
wait_for "Review the plan" 60
tmux -S "$sock" send-keys -t w y
for n in $(seq 1 10); do
    wait_for "Stage $n of 10 " 120
    wait_for "waiting for y" 120
    tmux -S "$sock" send-keys -t w y
    # While the stage runs (until the next question or the summary), keep typing; at most 120 s.
    next="Stage $((n + 1)) of 10 "
    [ "$n" = 10 ] && next="Time per stage"
    deadline=$(( $(date +%s) + 120 ))
    while ! screen | grep -qF -- "$next"; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out waiting for: $next"; screen; exit 1; }
        tmux -S "$sock" send-keys -t w k
        sleep 0.02
        tmux -S "$sock" send-keys -t w j
        sleep 0.02
    done
done
wait_for "Time per stage" 60
tmux -S "$sock" send-keys -t w q
wait_for "[exit 0]" 20

picker=$work/picker.timings
for _ in $(seq "$runs"); do
    start "$picker" restore --root "$work/drill"
    wait_for "Choose the snapshot" 20
    tmux -S "$sock" send-keys -t w q
    wait_for "[exit 130]" 20
done

stats() { # label, file, key
    awk -v k="$3" '$1 == k { print $2 }' "$2" | sort -n | awk -v label="$1" '{ v[NR] = $1 } END {
        if (NR == 0) { printf "%-34s none\n", label; exit }
        i = int(NR * 0.95); if (i < 1) i = 1
        printf "%-34s n=%d  median %.2f ms  p95 %.2f ms  max %.2f ms\n", label, NR, v[int((NR + 1) / 2)], v[i], v[NR] }'
}
echo "tui latency, drill with $keys keys, 80x24 in tmux (etcd-rescue $(git describe --always --dirty 2>/dev/null || echo '?'))"
stats "first frame, restore --snapshot" "$timings" first-frame
stats "first frame, picker" "$picker" first-frame
stats "first frame seen in tmux (bound)" "$work/seen" seen
stats "key to frame, while a stage runs" "$timings" key-while-applying
stats "key to frame, at a question" "$timings" key
