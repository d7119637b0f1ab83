#!/usr/bin/env bash
# Linearizable reads of a 3-node Lithair cluster on loopback, against their ceiling (stale
# local reads), measured by `cluster_bench load` (CLIENTS keep-alive clients, SECONDS_RUN
# seconds per line). One cluster per read mode (`--read-mode read-index`, then `lease`); each
# runs: stale reads on the leader, linearizable reads on the leader, on a follower, on all.
#
#   benches/cluster-reads.sh                 # from the project root
#   CLIENTS=32 SECONDS_RUN=5 BENCH=path/to/cluster_bench benches/cluster-reads.sh
#
# Data lives in a temp directory removed at exit; every process it started is killed at exit
# (by its pid). The machine may be shared: note `uptime` (printed) next to the figures.
set -euo pipefail

CLIENTS=${CLIENTS:-128}
SECONDS_RUN=${SECONDS_RUN:-5}
# Longest wait for a cluster to elect a leader, in seconds.
READY_WAIT_S=30

if [ -z "${BENCH:-}" ]; then
    cargo build --release --example cluster_bench
    BENCH=target/release/examples/cluster_bench
fi
# shellcheck source=benches/cluster-common.sh
source "$(dirname "$0")/cluster-common.sh"

run_mode() { # run_mode READ_MODE: one cluster, four load lines
    local mode=$1 base=$((20000 + RANDOM % 20000)) leader=""
    start_lithair "$base" "$mode" reads --read-mode "$mode"
    for _ in $(seq "$READY_WAIT_S"); do
        leader=$(curl -sf "http://127.0.0.1:$((base + 1))/_lithair/cluster" \
            | grep -o '"leader":[0-9]*' | cut -d: -f2 || true)
        if [ -n "$leader" ] && [ "$leader" != 0 ]; then break; fi
        leader=""
        sleep 1
    done
    if [ -z "$leader" ]; then echo "no leader in ${READY_WAIT_S} s ($mode)" >&2; exit 1; fi
    # The item every read fetches.
    curl -sf -X POST -H 'Content-Type: application/json' -d '{"name":"read-me"}' \
        "http://127.0.0.1:$((base + leader))/api/items" >/dev/null
    local follower=$((leader % 3 + 1))
    local all="127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))"
    for spec in "stale 127.0.0.1:$((base + leader)) leader" "read 127.0.0.1:$((base + leader)) leader" \
        "read 127.0.0.1:$((base + follower)) follower" "read $all all"; do
        set -- $spec
        echo "[$mode, $3] load: $(uptime | sed 's/.*load average: //')"
        "$BENCH" load --targets "$2" --clients "$CLIENTS" --seconds "$SECONDS_RUN" --mode "$1"
    done
    stop_all
}

run_mode read-index
run_mode lease
