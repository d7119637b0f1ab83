# Sourced (not run) by benches/cluster-compare.sh and benches/cluster-reads.sh: the temp data
# directory, the pids of every process a bench starts (killed by pid, never by name), and the
# start of a 3-node Lithair cluster. Expects `set -euo pipefail` and BENCH set by the caller.

TMP=$(mktemp -d)
PIDS=()

stop_all() { # kills and reaps every process started so far
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

cleanup() {
    stop_all
    rm -rf "$TMP"
}
trap cleanup EXIT

start_lithair() { # start_lithair BASE NAME SECRET [SERVE ARGS...]: nodes 1..3, HTTP BASE+1.., peers BASE+11..
    local base=$1 name=$2 secret=$3 map="" i
    shift 3
    for i in 1 2 3; do map="$map${map:+,}$i@127.0.0.1:$((base + 10 + i))"; done
    for i in 1 2 3; do
        "$BENCH" serve --node-id "$i" --port $((base + i)) --bind 127.0.0.1 \
            --peer-port $((base + 10 + i)) --data "$TMP/$name$i" --cluster "$map" \
            --cluster-secret "$secret" "$@" >"$TMP/$name$i.log" 2>&1 &
        PIDS+=($!)
    done
}
