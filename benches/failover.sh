#!/usr/bin/env bash
# Failover time of a 3-node Lithair cluster on loopback (issue 7: kill -9 of the leader to the
# next committed write). Each trial runs a write load (`cluster_bench load`, CLIENTS clients
# over all three nodes, retrying with the same idempotency key), kills the leader with
# `kill -9` KILL_AFTER_S seconds into it, and the load client reports the time from the kill
# to the first acknowledgement of a write attempt sent after it (necessarily committed by a
# new leader). The killed node then restarts on its data directory and the next trial waits
# until it caught up. One line per trial, then
#   failover: N trials, p50 X ms, p90 Y ms, max Z ms
# First, unless STABILITY_SECONDS=0, a stability run: STABILITY_CLIENTS writers for
# STABILITY_SECONDS seconds with no kill, reporting how many terms (elections) passed: any
# is a spurious leader change under load.
#
#   benches/failover.sh                       # from the project root
#   TRIALS=20 CLIENTS=64 benches/failover.sh
#   STABILITY_SECONDS=0 TRIALS=5 benches/failover.sh
#   STABILITY_SECONDS=30 TRIALS=0 benches/failover.sh    # spurious elections only
#   ITEMS=1000000 STABILITY_SECONDS=0 TRIALS=5 benches/failover.sh  # a large state
#
# ITEMS=N runs a cluster of bench servers (examples/bench_server, OURS= for another build)
# holding N preloaded items instead of cluster_bench's own nodes, and loads it with
# `cluster_bench load --mode items`: the failover then includes what it costs a node holding a
# large state to start leading (its sequencer's copy of the state).
#
# Bounded: every wait is a bounded poll; data lives in a temp directory removed at exit, and
# every process it started is killed at exit (by its pid). The machine may be shared: note
# `uptime` (printed) next to the figures.
set -euo pipefail

TRIALS=${TRIALS:-10}
CLIENTS=${CLIENTS:-32}
# Each trial's load lasts LOAD_SECONDS; the leader dies KILL_AFTER_S seconds into it.
LOAD_SECONDS=${LOAD_SECONDS:-3}
KILL_AFTER_S=${KILL_AFTER_S:-1}
STABILITY_CLIENTS=${STABILITY_CLIENTS:-256}
STABILITY_SECONDS=${STABILITY_SECONDS:-10}
# Longest wait for a leader, or for a restarted node to catch up, in seconds.
READY_WAIT_S=30
# Poll interval of those waits, in seconds.
POLL_S=0.05

ITEMS=${ITEMS:-0}
if [ "$ITEMS" -gt 0 ]; then
    cargo build --release --example cluster_bench
    LOADER=${LOADER:-target/release/examples/cluster_bench}
    if [ -z "${OURS:-}" ]; then
        cargo build --release --example bench_server
        OURS=target/release/examples/bench_server
    fi
    BENCH=$OURS # cluster-common.sh's start_node runs "$BENCH serve ..."
    LOAD_MODE=(--mode items)
    SERVE_ARGS=(--items "$ITEMS")
    # The preload and a restarted node's replay take longer with a large state.
    READY_WAIT_S=600
else
    LOAD_MODE=()
    SERVE_ARGS=()
fi

# shellcheck source=benches/cluster-common.sh
source "$(dirname "$0")/cluster-common.sh"
LOADER=${LOADER:-$BENCH}
BASE=$(random_port_base)

TARGETS="127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2)),127.0.0.1:$((BASE + 3))"

status_of() { # status_of I: node I's /_lithair/cluster document (fails if it does not answer)
    curl -sf --max-time 1 "http://127.0.0.1:$((BASE + $1))/_lithair/cluster"
}

field() { # field NAME < DOCUMENT: a top-level numeric field of a status document
    grep -o "\"$1\":[0-9]*" | head -n 1 | cut -d: -f2
}

leader_now() { # prints "ID TERM" of a running node that says it leads (highest term), or fails
    local i doc best="" best_term=0 term
    for i in 1 2 3; do
        [ -n "${NODE_PID[$i]:-}" ] || continue
        doc=$(status_of "$i") || continue
        grep -q '"role":"leader"' <<<"$doc" || continue
        term=$(field term <<<"$doc")
        if [ "$term" -gt "$best_term" ]; then best="$i" best_term=$term; fi
    done
    [ -n "$best" ] && echo "$best $best_term"
}

wait_leader() { # prints "ID TERM" once some node leads; fails after READY_WAIT_S
    local deadline=$((SECONDS + READY_WAIT_S))
    while [ "$SECONDS" -lt "$deadline" ]; do
        leader_now && return 0
        sleep "$POLL_S"
    done
    echo "no leader in ${READY_WAIT_S} s" >&2
    return 1
}

wait_caught_up() { # wait_caught_up I: node I follows a leader and applied the leader's commit
    local deadline=$((SECONDS + READY_WAIT_S)) leader commit applied
    while [ "$SECONDS" -lt "$deadline" ]; do
        if read -r leader _ < <(leader_now) && [ "$leader" != "$1" ]; then
            commit=$(status_of "$leader" | field commit_index) || commit=""
            applied=$(status_of "$1" | field applied_index) || applied=""
            if [ -n "$commit" ] && [ -n "$applied" ] && [ "$applied" -ge "$commit" ]; then
                return 0
            fi
        fi
        sleep "$POLL_S"
    done
    echo "node $1 did not catch up in ${READY_WAIT_S} s; the nodes say:" >&2
    for i in 1 2 3; do echo "node $i: $(status_of "$i" | sed 's/,"members".*//' || echo down)" >&2; done
    return 1
}

start_lithair "$BASE" failover failover "${SERVE_ARGS[@]}"
read -r _ TERM0 < <(wait_leader)
if [ "$ITEMS" -gt 0 ]; then
    # The preload is done when the last item is served; then the followers catch up.
    deadline=$((SECONDS + READY_WAIT_S))
    until curl -sf "http://127.0.0.1:$((BASE + 1))/items/$ITEMS" >/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "the preload of $ITEMS items did not finish" >&2; exit 1; }
        sleep 1
    done
    read -r leader _ < <(wait_leader)
    for i in 1 2 3; do [ "$i" = "$leader" ] || wait_caught_up "$i"; done
    echo "preloaded $ITEMS items"
fi

if [ "$STABILITY_SECONDS" -gt 0 ]; then
    echo "stability load: $(uptime)"
    "$LOADER" load --targets "$TARGETS" --clients "$STABILITY_CLIENTS" --seconds "$STABILITY_SECONDS" \
        "${LOAD_MODE[@]}"
    read -r _ TERM1 < <(wait_leader)
    echo "stability: $STABILITY_CLIENTS clients for $STABILITY_SECONDS s: term $TERM0 -> $TERM1, $((TERM1 - TERM0)) leader changes without a kill"
fi

[ "$TRIALS" -gt 0 ] || exit 0
echo "failover trials: $CLIENTS clients, $(uptime)"
RESULTS=()
for trial in $(seq "$TRIALS"); do
    mark="$TMP/kill$trial"
    "$LOADER" load --targets "$TARGETS" --clients "$CLIENTS" --seconds "$LOAD_SECONDS" \
        --kill-mark "$mark" "${LOAD_MODE[@]}" >"$TMP/load$trial.out" &
    load=$!
    PIDS+=("$load")
    sleep "$KILL_AFTER_S"
    read -r victim term < <(wait_leader)
    kill_node "$victim" "$mark"
    # When the killed process was reaped: its sockets close only once every one of its
    # threads exited, so survivors and clients cannot notice the crash before.
    teardown=$((($(date +%s%N) - $(cat "$mark")) / 1000000))
    wait "$load" || { echo "trial $trial: the load client failed" >&2; exit 1; }
    forget_pid "$load"
    read -r successor new_term < <(wait_leader)
    line=$(cat "$TMP/load$trial.out")
    ms=$(grep -o 'failover [0-9.]*' <<<"$line" | cut -d' ' -f2 || true)
    if [ -z "$ms" ]; then echo "trial $trial: no write acknowledged after the kill: $line" >&2; exit 1; fi
    RESULTS+=("$ms")
    echo "trial $trial: killed leader $victim (term $term), new leader $successor (term $new_term): failover $ms ms (kill to reaped $teardown ms) | $line"
    start_node "$victim"
    wait_caught_up "$victim"
done

printf '%s\n' "${RESULTS[@]}" | sort -n | awk -v n="$TRIALS" '
    { v[NR] = $1 }
    function rank(q) { r = int(q * n + 0.999999); return v[r < 1 ? 1 : r] }
    END { printf "failover: %d trials, p50 %s ms, p90 %s ms, max %s ms\n", n, rank(0.5), rank(0.9), v[n] }'
