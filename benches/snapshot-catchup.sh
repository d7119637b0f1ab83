#!/usr/bin/env bash
# Memory of a leader while a new follower catches up through an InstallSnapshot. Nodes 1 and
# 2 of a 3-node cluster start (node 3's data directory stays empty); ITEMS items with names
# of NAME_BYTES bytes are written through the leader in bulk commands of BULK items
# (`examples/snapshot_catchup.rs`); once the leader took a snapshot and compacted its log
# (node 3 can then only catch up through a snapshot) and the snapshot index stays put, the
# leader's peak RSS is reset (`echo 5 > /proc/PID/clear_refs`), node 3 starts, and when node 3
# has applied what the leader has (polling node 3 only: a status answer after a write reads
# the answering node's whole state for its digest), one line:
#   catchup: items N snapshot_bytes S leader_hwm_before_kb A leader_rss_at_start_kb R \
#       leader_hwm_during_kb B leader_peak_growth_kb B-R leader_rss_after_kb C \
#       leader_cpu_ms D catchup_ms E installed K
# (leader_hwm_during_kb is VmHWM since the reset, the peak while node 3 caught up: the
# snapshot, then the log tail after it (tail_entries); leader_growth_at_install_kb is the
# peak's growth over the RSS at the reset when node 3 first reports the snapshot installed:
# what the snapshot transfer cost the leader in memory).
#
#   BENCH=target/release/examples/snapshot_catchup benches/snapshot-catchup.sh
#   ITEMS=1000000 NAME_BYTES=100 BENCH=/tmp/base/snapshot_catchup benches/snapshot-catchup.sh
#
# Bounded waits; every process started is killed by its pid at exit; data under a temp dir.
set -euo pipefail

ITEMS=${ITEMS:-500000}
NAME_BYTES=${NAME_BYTES:-100}
BULK=${BULK:-20000}
# Longest wait for a leader, a snapshot or the catch-up, in seconds.
READY_WAIT_S=${READY_WAIT_S:-300}

if [ -z "${BENCH:-}" ]; then
    cargo build --release --example snapshot_catchup
    BENCH=target/release/examples/snapshot_catchup
fi
# shellcheck source=benches/cluster-common.sh
source "$(dirname "$0")/cluster-common.sh"

CLUSTER_BASE=$(random_port_base) CLUSTER_NAME=snap CLUSTER_SECRET=s CLUSTER_MAP="" CLUSTER_ARGS=()
for i in 1 2 3; do CLUSTER_MAP="$CLUSTER_MAP${CLUSTER_MAP:+,}$i@127.0.0.1:$((CLUSTER_BASE + 10 + i))"; done

doc() { curl -sf --max-time 2 "http://127.0.0.1:$((CLUSTER_BASE + $1))/_lithair/cluster"; }
field() { grep -o "\"$1\":[0-9]*" | head -n 1 | cut -d: -f2; }
kb() { grep "^$2:" "/proc/$1/status" | awk '{print $2}'; }
cpu_ms() { # user+system CPU of PID in ms (fields 14 and 15 of /proc/PID/stat, in ticks)
    awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat"
}

start_node 1
start_node 2
leader=""
for _ in $(seq $((READY_WAIT_S * 10))); do
    for i in 1 2; do
        if doc "$i" 2>/dev/null | grep -q '"role":"leader"'; then leader=$i; fi
    done
    [ -n "$leader" ] && break
    sleep 0.1
done
[ -n "$leader" ] || { echo "no leader" >&2; exit 1; }
url="http://127.0.0.1:$((CLUSTER_BASE + leader))"
for k in $(seq $((ITEMS / BULK))); do
    # Retried (a leader not ready yet answers 503) under one idempotency key: created once.
    for try in $(seq 100); do
        curl -sf --max-time 120 -X POST -H "Idempotency-Key: bulk-$k" \
            "$url/api/bulk/$BULK/$NAME_BYTES" >/dev/null && break
        [ "$try" -lt 100 ] || { echo "bulk $k failed" >&2; exit 1; }
        sleep 0.2
    done
done
# Wait until the leader's snapshot covers all it applied but TAIL_MAX entries and stays put
# for 3 s: no snapshot of its own (a second copy of the state while it is built) and no long
# log tail then mixes with what the transfer costs.
TAIL_MAX=${TAIL_MAX:-2}
last=-1 still=0
for _ in $(seq $((READY_WAIT_S * 10))); do
    now=$(doc "$leader")
    index=$(field snapshot_index <<<"$now")
    tail=$(($(field applied_index <<<"$now") - index))
    if [ "$index" -gt 0 ] && [ "$index" = "$last" ] && [ "$tail" -le "$TAIL_MAX" ]; then
        still=$((still + 1))
    else
        still=0
    fi
    if [ "$tail" -gt "$TAIL_MAX" ] && [ $((RANDOM % 10)) = 0 ]; then
        # A snapshot is due only when an event is applied: one small write, about once a
        # second, starts the one that covers the tail (none starts while one runs).
        curl -sf --max-time 5 -X POST -H 'Content-Type: application/json' \
            -d '{"name":"t"}' "$url/api/items" >/dev/null || true
    fi
    last=$index
    [ "$still" -ge 30 ] && break
    sleep 0.1
done
[ "$still" -ge 30 ] || { echo "no settled snapshot" >&2; exit 1; }
pid=${NODE_PID[$leader]}
snap_bytes=$(stat -c %s "$TMP/snap$leader/snapshots/$(printf %020d "$last").snap")
# Before the reset: a status answer (an app's state keeps its digest, so it reads no records;
# see benches/status-digest.sh).
target=$(doc "$leader" | field applied_event_index)
hwm_before=$(kb "$pid" VmHWM)
echo 5 >"/proc/$pid/clear_refs"
rss_at_reset=$(kb "$pid" VmRSS)
cpu0=$(cpu_ms "$pid")
t0=$(date +%s%N)
start_node 3
done_ok="" hwm_installed=""
for _ in $(seq $((READY_WAIT_S * 20))); do
    if [ -z "$hwm_installed" ] && [ "$(doc 3 2>/dev/null | field snapshots_installed || true)" = 1 ]; then
        hwm_installed=$(kb "$pid" VmHWM)
    fi
    got=$(doc 3 2>/dev/null | field applied_event_index || true)
    if [ -n "$got" ] && [ "$got" -ge "$target" ]; then done_ok=1; break; fi
    sleep 0.05
done
[ -n "$done_ok" ] || { echo "node 3 did not catch up" >&2; exit 1; }
t1=$(date +%s%N)
hwm_during=$(kb "$pid" VmHWM)
echo "catchup: items $ITEMS snapshot_bytes $snap_bytes leader_hwm_before_kb $hwm_before" \
    "leader_rss_at_start_kb $rss_at_reset leader_hwm_during_kb $hwm_during" \
    "leader_peak_growth_kb $((hwm_during - rss_at_reset))" \
    "leader_growth_at_install_kb $((${hwm_installed:-$hwm_during} - rss_at_reset))" \
    "tail_entries $(( $(doc "$leader" | field applied_index) - last ))" \
    "leader_rss_after_kb $(kb "$pid" VmRSS)" \
    "leader_cpu_ms $(( $(cpu_ms "$pid") - cpu0 )) catchup_ms $(( (t1 - t0) / 1000000 ))" \
    "installed $(doc 3 | field snapshots_installed)"
