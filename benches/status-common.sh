# Sourced (not run) by benches/status-digest.sh and status-write-latency.sh: the bench server
# (OURS, default the example built in target/release) as a single-node cluster with ITEMS
# items, on PORT (peer port PEER_PORT), its data and log under $data (the caller's temp dir).
# Expects `set -euo pipefail`.

bin=${OURS:-$PWD/target/release/examples/bench_server}

start_single_node() { # sets pid; the caller's EXIT trap kills it
  "$bin" serve --port "$PORT" --items "$ITEMS" --data "$data/n" --node-id 1 \
    --peer-port "$PEER_PORT" --cluster "1@127.0.0.1:$PEER_PORT" --cluster-secret bench \
    >"$data/log" 2>&1 &
  pid=$!
}

wait_preloaded() { # in a cluster the preload runs once the node leads: wait for the last item
  for _ in $(seq 1 3000); do
    curl -sf "http://127.0.0.1:$PORT/items/$ITEMS" >/dev/null && break
    sleep 0.2
  done
  curl -sf "http://127.0.0.1:$PORT/items/$ITEMS" >/dev/null || { echo "preload did not finish" >&2; exit 1; }
  sleep 3
}
