#!/usr/bin/env bash
# Lithair's 3-node cluster against etcd's, on loopback, measured by the same load client
# (`cluster_bench load`: CLIENTS keep-alive clients, SECONDS_RUN seconds each) with the same
# durability (both fsync before acknowledging). Prints both lines and the throughput ratio.
#
#   benches/cluster-compare.sh            # from the project root
#   CLIENTS=64 SECONDS_RUN=5 benches/cluster-compare.sh
#
# Installs Debian's etcd-server with apt-get when `etcd` is missing. Data lives in a temp
# directory removed at exit; every process it started is killed at exit (by its pid).
# The machine may be shared: note `uptime` (printed) next to the figures.
set -euo pipefail

CLIENTS=${CLIENTS:-256}
SECONDS_RUN=${SECONDS_RUN:-10}
# Longest wait for a cluster to elect a leader / report healthy, in seconds.
READY_WAIT_S=30

# shellcheck source=benches/cluster-common.sh
source "$(dirname "$0")/cluster-common.sh"
BASE=$(random_port_base)

if ! command -v etcd >/dev/null; then
    echo "installing etcd-server (apt-get)" >&2
    apt-get install -y etcd-server >/dev/null || { apt-get update >/dev/null && apt-get install -y etcd-server >/dev/null; }
fi

wait_for() { # wait_for DESCRIPTION COMMAND...: polls once a second up to READY_WAIT_S
    local what=$1; shift
    for _ in $(seq "$READY_WAIT_S"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    echo "$what did not come up in ${READY_WAIT_S} s" >&2
    exit 1
}

measure() { # measure WHAT READY_CHECK TARGETS MODE: once READY_CHECK passes, one load run into RESULT
    wait_for "$1" "$2"
    echo "load: $(uptime)"
    RESULT=$("$BENCH" load --targets "$3" --clients "$CLIENTS" --seconds "$SECONDS_RUN" --mode "$4")
}

# --- Lithair: nodes 1..3, HTTP BASE+1.., peers BASE+11.. ---
start_lithair "$BASE" lithair compare
LITHAIR_TARGETS="127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2)),127.0.0.1:$((BASE + 3))"
lithair_has_leader() { curl -sf "http://127.0.0.1:$((BASE + 1))/_lithair/cluster" | grep -q '"leader":[1-9]'; }
measure "the Lithair cluster" lithair_has_leader "$LITHAIR_TARGETS" write
LITHAIR=$RESULT
echo "lithair: $LITHAIR"
stop_all

# --- etcd: members e1..e3, clients BASE+21.., peers BASE+31.. ---
CLUSTER=""
for i in 1 2 3; do CLUSTER="$CLUSTER${CLUSTER:+,}e$i=http://127.0.0.1:$((BASE + 30 + i))"; done
ETCD_TARGETS=""
for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$TMP/etcd$i" \
        --listen-client-urls "http://127.0.0.1:$((BASE + 20 + i))" \
        --advertise-client-urls "http://127.0.0.1:$((BASE + 20 + i))" \
        --listen-peer-urls "http://127.0.0.1:$((BASE + 30 + i))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((BASE + 30 + i))" \
        --initial-cluster "$CLUSTER" --initial-cluster-state new \
        --initial-cluster-token lithair-compare >"$TMP/etcd$i.log" 2>&1 &
    PIDS+=($!)
    ETCD_TARGETS="$ETCD_TARGETS${ETCD_TARGETS:+,}127.0.0.1:$((BASE + 20 + i))"
done
etcd_healthy() { curl -sf "http://127.0.0.1:$((BASE + 21))/health" | grep -q '"health":"true"'; }
measure "the etcd cluster" etcd_healthy "$ETCD_TARGETS" etcd
ETCD=$RESULT
echo "etcd:    $ETCD"

rate() { sed -E 's/.*: ([0-9]+) acknowledged\/s.*/\1/' <<<"$1"; }
L=$(rate "$LITHAIR")
E=$(rate "$ETCD")
if [ "$E" -gt 0 ]; then
    echo "writes/s: lithair $L, etcd $E, ratio $(awk -v l="$L" -v e="$E" 'BEGIN { printf "%.2f", l / e }')x"
else
    echo "writes/s: lithair $L, etcd $E (etcd acknowledged nothing)"
fi
