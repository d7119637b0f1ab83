# Sourced (not run) by benches/cluster-compare.sh, cluster-reads.sh, cluster-writes.sh and
# failover.sh: the temp data directory, the pids of every process a bench starts
# (killed by pid, never by name), and the start (and restart) of a 3-node Lithair cluster.
# Expects `set -euo pipefail` and the project root as the working directory. BENCH is the
# caller's cluster_bench binary, or the example built here when unset.

if [ -z "${BENCH:-}" ]; then
    cargo build --release --example cluster_bench
    BENCH=target/release/examples/cluster_bench
fi

TMP=$(mktemp -d)
PIDS=()
# The pid of each running node of the cluster start_lithair started, by node id.
NODE_PID=()

# A random base port for a bench's servers (each uses base+1 .. base+40). It stays below
# the kernel's ephemeral range (net.ipv4.ip_local_port_range starts at 32768 by default), so a
# node's listening port can never be taken by some client's outgoing connection.
random_port_base() { echo $((20000 + RANDOM % 12000)); }

stop_all() { # kills and reaps every process started so far
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
    NODE_PID=()
}

cleanup() {
    stop_all
    rm -rf "$TMP"
}
trap cleanup EXIT

forget_pid() { # forget_pid PID: a reaped process (its pid may be reused: never kill it again)
    local kept=() pid
    for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || kept+=("$pid"); done
    PIDS=("${kept[@]}")
}

start_node() { # start_node I: node I of the cluster start_lithair set up, on its data directory
    local i=$1
    "$BENCH" serve --node-id "$i" --port $((CLUSTER_BASE + i)) --bind 127.0.0.1 \
        --peer-port $((CLUSTER_BASE + 10 + i)) --data "$TMP/$CLUSTER_NAME$i" --cluster "$CLUSTER_MAP" \
        --cluster-secret "$CLUSTER_SECRET" "${CLUSTER_ARGS[@]}" >>"$TMP/$CLUSTER_NAME$i.log" 2>&1 &
    PIDS+=($!)
    NODE_PID[i]=$!
}

kill_node() { # kill_node I [MARK]: kill -9 node I and reap it; MARK gets the kill's time (ns)
    local pid=${NODE_PID[$1]}
    kill -9 "$pid" 2>/dev/null || true
    # Written after the signal, so a write the dying leader still commits is never counted as
    # sent after the kill; the mark errs late by the time `date` takes to start.
    if [ -n "${2:-}" ]; then date +%s%N >"$2"; fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
    NODE_PID[$1]=""
}

start_lithair() { # start_lithair BASE NAME SECRET [SERVE ARGS...]: nodes 1..3, HTTP BASE+1.., peers BASE+11..
    local i
    CLUSTER_BASE=$1 CLUSTER_NAME=$2 CLUSTER_SECRET=$3 CLUSTER_MAP=""
    shift 3
    CLUSTER_ARGS=("$@")
    for i in 1 2 3; do CLUSTER_MAP="$CLUSTER_MAP${CLUSTER_MAP:+,}$i@127.0.0.1:$((CLUSTER_BASE + 10 + i))"; done
    for i in 1 2 3; do start_node "$i"; done
}
