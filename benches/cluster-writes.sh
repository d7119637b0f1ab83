#!/usr/bin/env bash
# Committed writes of a 3-node Lithair cluster on loopback (issue 7: >= 25,000 writes/s with 256
# clients at p99 <= 50 ms; a single client's p50 <= one fsync + 0.5 ms), with the CPU time the
# three nodes spent per acknowledged write (user + system, from /proc/PID/stat; it varies much
# less than writes/s on a VM with steal). Each run starts a fresh cluster, waits for a leader,
# then runs `cluster_bench load --mode write` for SECS seconds against TARGETS:
#   leader    the leader only (256 clients by default)
#   all       all three nodes (followers forward to the leader)
#   single    one client on the leader, then one client on a follower
# One line per run:
#   leader: 21034 acknowledged/s, p50 11.9 ms, p99 28.1 ms; nodes 64 us/write (leader 44); load ...
#
#   benches/cluster-writes.sh                        # from the project root: leader, 3 runs
#   TARGETS=all RUNS=5 SECS=6 benches/cluster-writes.sh
#   TARGETS=single BENCH=/tmp/old/cluster_bench benches/cluster-writes.sh   # an older binary
#
# CTXT=1 adds, after each single-client line on the leader, the leader's voluntary context
# switches per acknowledged write by thread name (from /proc/PID/task/*/status), e.g.
#   ctxt/write: total 21.3; lithair-raft 7.4, lithair-log-writer-0 2.1, ...
#
# Compare two binaries with paired runs, back to back (BENCH=... for each), 3+ runs each.
# Runs of 10 s or more cross the nodes' 100k-event snapshots (built off the live state on a
# background thread: no write pause, but CPU the writes share). Bounded: every wait is a
# bounded poll; data lives in a temp directory removed at exit; every process it started is
# killed at exit (by its pid).
set -euo pipefail

TARGETS=${TARGETS:-leader}
RUNS=${RUNS:-3}
SECS=${SECS:-4}
CLIENTS=${CLIENTS:-256}
# Longest wait for a leader, in polls of POLL_S seconds.
LEADER_POLLS=60
POLL_S=0.5

# shellcheck source=benches/cluster-common.sh
source "$(dirname "$0")/cluster-common.sh"

ticks_of() { # ticks_of PID...: user + system clock ticks of the processes (0 for one gone)
    local sum=0 pid ticks
    for pid in "$@"; do
        ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || true)
        sum=$((sum + ${ticks:-0}))
    done
    echo "$sum"
}

check_nodes() { # a node that exited during a run: say so, with the end of its log
    local i
    for i in 1 2 3; do
        if ! kill -0 "${NODE_PID[$i]}" 2>/dev/null; then
            echo "node $i exited during the run; its log ends with:"
            tail -n 20 "$TMP/$CLUSTER_NAME$i.log"
        fi
    done
}

ctxt_of() { # ctxt_of PID: "thread-name voluntary-switches" per thread of the process
    local task
    for task in /proc/"$1"/task/*; do
        echo "$(tr ' ' '_' <"$task/comm" 2>/dev/null || echo gone)" \
            "$(awk '/^voluntary_ctxt_switches/ {print $2}' "$task/status" 2>/dev/null || echo 0)"
    done
}

ctxt_line() { # ctxt_line BEFORE AFTER N: switches per write by thread name, busiest first
    awk -v n="$3" 'FNR == NR { before[$1] += $2; next } { after[$1] += $2 }
        END {
            for (name in after) { d = (after[name] - before[name]) / n; total += d
                if (d >= 0.05) line = line sprintf("%s %.2f\n", name, d) }
            printf "ctxt/write: total %.2f; ", total
            cmd = "sort -k2 -rn"; printf "%s", line | cmd; close(cmd)
        }' "$1" "$2" | paste -sd' ' | sed 's/\([0-9]\) /\1, /g'
}

# load_line LABEL TARGET CLIENTS: one measured load run and its line
load_line() {
    local label=$1 target=$2 clients=$3 out n t0 t1 l0 l1 us_per_tick
    us_per_tick=$((1000000 / $(getconf CLK_TCK)))
    t0=$(ticks_of "${NODE_PID[@]}")
    l0=$(ticks_of "${NODE_PID[$LEADER]}")
    ctxt_of "${NODE_PID[$LEADER]}" >"$TMP/ctxt0"
    out=$("$BENCH" load --targets "$target" --clients "$clients" --seconds "$SECS" --mode write)
    ctxt_of "${NODE_PID[$LEADER]}" >"$TMP/ctxt1"
    t1=$(ticks_of "${NODE_PID[@]}")
    l1=$(ticks_of "${NODE_PID[$LEADER]}")
    n=$(echo "$out" | grep -o 'ok requests [0-9]*' | grep -o '[0-9]*$')
    check_nodes
    [ "${n:-0}" -gt 0 ] || { echo "$label: no acknowledged write: $out"; return; }
    echo "$label: $(echo "$out" | grep -o '[0-9]* acknowledged/s, p50 [0-9.]* ms, p99 [0-9.]* ms');" \
        "nodes $(((t1 - t0) * us_per_tick / n)) us/write (leader $(((l1 - l0) * us_per_tick / n)));" \
        "load$(uptime | sed 's/.*average//')"
    if [ "${CTXT:-0}" = 1 ]; then echo "  leader $(ctxt_line "$TMP/ctxt0" "$TMP/ctxt1" "$n")"; fi
}

one_run() {
    local base=$(random_port_base) polls=0 follower
    start_lithair "$base" cw s3cret
    LEADER=""
    while [ -z "$LEADER" ] && [ "$polls" -lt "$LEADER_POLLS" ]; do
        LEADER=$(curl -sf "http://127.0.0.1:$((base + 1))/_lithair/cluster" |
            grep -o '"leader":[1-9]' | cut -d: -f2 || true)
        [ -n "$LEADER" ] || sleep "$POLL_S"
        polls=$((polls + 1))
    done
    [ -n "$LEADER" ] || { echo "no leader elected"; stop_all; rm -rf "${TMP:?}"/cw*; return; }
    sleep 1
    follower=$((LEADER % 3 + 1))
    case "$TARGETS" in
    leader) load_line leader "127.0.0.1:$((base + LEADER))" "$CLIENTS" ;;
    all) load_line all "127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))" "$CLIENTS" ;;
    single)
        load_line "single, leader" "127.0.0.1:$((base + LEADER))" 1
        load_line "single, follower" "127.0.0.1:$((base + follower))" 1
        ;;
    esac
    stop_all
    rm -rf "${TMP:?}"/cw*
}

case "$TARGETS" in
leader | all | single) ;;
*) echo "TARGETS must be leader, all or single" >&2; exit 2 ;;
esac
echo "cluster writes: $TARGETS, $RUNS runs of $SECS s, $BENCH"
for _ in $(seq "$RUNS"); do one_run; done
