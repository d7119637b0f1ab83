#!/usr/bin/env bash
# A node joins a loaded 3-node cluster of bench servers (examples/bench_server) holding ITEMS
# preloaded items: does the leader keep its leadership, do writes fail, what happens to the
# write latency? Each run starts nodes 1-3 with `--items ITEMS`, waits for a leader and for the
# preload, runs `cluster_bench load --mode items` against the leader for SECS seconds with
# CLIENTS clients and, JOIN_AT seconds into it, starts node 4 with `--join` (it is added as a
# learner, catches up through a snapshot, and is promoted: two membership changes). One line
# per run:
#   join: items N; load: ...p50, p99, max, longest gap, retries R (attempts that failed);
#   leader L term T -> leader L' term T'; sequencer_rebuilds K; node 4 voter yes|no
# then the leader's log lines about leadership and stalls, if any.
#
#   benches/join-under-load.sh                                 # from the project root
#   ITEMS=1000000 SECS=30 RUNS=2 benches/join-under-load.sh
#   OURS=/tmp/old/bench_server benches/join-under-load.sh      # an older server binary
#
# LOADER is the load client (default the cluster_bench example built here: it needs
# `--mode items`). Bounded: every wait is a bounded poll; data lives in a temp directory
# removed at exit; every process it started is killed at exit (by its pid).
set -euo pipefail

ITEMS=${ITEMS:-200000}
SECS=${SECS:-20}
JOIN_AT=${JOIN_AT:-5}
CLIENTS=${CLIENTS:-64}
RUNS=${RUNS:-1}
# JOIN=0: the same run without node 4 (the load alone, for comparison).
JOIN=${JOIN:-1}
# Longest wait for a leader and for the preload, in polls of POLL_S seconds.
LEADER_POLLS=120
PRELOAD_POLLS=1800
POLL_S=0.5

if [ -z "${LOADER:-}" ]; then
    cargo build --release --example cluster_bench
    LOADER=target/release/examples/cluster_bench
fi
if [ -z "${OURS:-}" ]; then
    cargo build --release --example bench_server
    OURS=target/release/examples/bench_server
fi
BENCH=$OURS # cluster-common.sh's start_node runs "$BENCH serve ..."

# shellcheck source=benches/cluster-common.sh
source "$(dirname "$0")/cluster-common.sh"

status_of() { curl -sf "http://127.0.0.1:$1/_lithair/cluster" || true; }
field() { grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2 || true; }

watch_leader() { # watch_leader PORT...: "+MS ms: leader L term T" each time it changes (first port answering)
    local start seen="" now port line
    start=$(date +%s%N)
    while true; do
        for port in "$@"; do
            line=$(status_of "$port")
            [ -n "$line" ] || continue
            now="leader $(echo "$line" | field leader) term $(echo "$line" | field term)"
            if [ "$now" != "$seen" ]; then
                echo "+$(( ($(date +%s%N) - start) / 1000000 )) ms: $now (asked port $port)"
                seen=$now
            fi
            break
        done
        sleep 0.1
    done
}

one_run() {
    local base polls=0 leader="" term before after rebuilds voter load_pid out
    base=$(random_port_base)
    start_lithair "$base" jl s3cret --items "$ITEMS"
    while [ -z "$leader" ] && [ "$polls" -lt "$LEADER_POLLS" ]; do
        leader=$(status_of $((base + 1)) | grep -o '"leader":[1-9]' | cut -d: -f2 || true)
        [ -n "$leader" ] || sleep "$POLL_S"
        polls=$((polls + 1))
    done
    [ -n "$leader" ] || { echo "no leader elected"; stop_all; rm -rf "${TMP:?}"/jl*; return; }
    polls=0
    until curl -sf "http://127.0.0.1:$((base + leader))/items/$ITEMS" >/dev/null; do
        polls=$((polls + 1))
        [ "$polls" -lt "$PRELOAD_POLLS" ] || { echo "preload did not finish"; stop_all; return; }
        sleep "$POLL_S"
    done
    sleep 2 # the followers apply the last preload batches
    # The leader may have changed during the preload (a 1M-item preload can stall one).
    before=$(status_of $((base + leader)))
    leader=$(echo "$before" | field leader)
    [ -n "$leader" ] && [ "$leader" != 0 ] || { echo "no leader after the preload"; stop_all; return; }
    before=$(status_of $((base + leader)))
    term=$(echo "$before" | field term)
    watch_leader $((base + leader)) $((base + 1)) $((base + 2)) $((base + 3)) >"$TMP/watch.out" &
    PIDS+=($!)
    "$LOADER" load --targets "127.0.0.1:$((base + leader))" --clients "$CLIENTS" \
        --seconds "$SECS" --mode items >"$TMP/load.out" 2>&1 &
    load_pid=$!
    PIDS+=("$load_pid")
    sleep "$JOIN_AT"
    if [ "$JOIN" = 1 ]; then
        "$OURS" serve --port $((base + 4)) --bind 127.0.0.1 --data "$TMP/jl4" --items "$ITEMS" \
            --cluster-secret s3cret --node-id 4 --peer-port $((base + 14)) \
            --join "127.0.0.1:$((base + leader))" >>"$TMP/jl4.log" 2>&1 &
        PIDS+=($!)
    fi
    wait "$load_pid" || true
    forget_pid "$load_pid"
    out=$(cat "$TMP/load.out")
    after=$(status_of $((base + leader)))
    rebuilds=$(echo "$after" | field sequencer_rebuilds)
    voter=$(echo "$after" | grep -o '{"id":4,[^}]*' | grep -o '"voter":[a-z]*' | cut -d: -f2 || true)
    echo "join: items $ITEMS; load: $(echo "$out" | grep -o 'ok requests.*' || echo "$out");" \
        "leader $leader term $term -> leader $(echo "$after" | field leader) term" \
        "$(echo "$after" | field term); sequencer_rebuilds ${rebuilds:-n/a}; node 4 voter ${voter:-no}"
    echo "  leader changes seen from the load's start (node 4 started at +$((JOIN_AT * 1000)) ms):"
    sed 's/^/    /' "$TMP/watch.out"
    for i in 1 2 3 4; do
        grep -h "no longer leads\|stalled\|leads term\|elect\|campaign" "$TMP/jl$i.log" 2>/dev/null |
            sed "s/^/  node $i log: /" || true
    done
    stop_all
    rm -rf "${TMP:?}"/jl*
}

echo "join under load (JOIN=$JOIN): $RUNS run(s), $ITEMS items, $CLIENTS clients, $SECS s, join at $JOIN_AT s, $OURS"
for _ in $(seq "$RUNS"); do one_run; done
