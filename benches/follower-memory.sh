#!/usr/bin/env bash
# Memory of a restarted follower: a 3-node cluster of bench servers (examples/bench_server)
# with ITEMS preloaded items; once the preload is done, one follower is stopped (SIGTERM),
# started again on its data, and its RSS is read once it is ready. Prints one line per node
# before the restart, then `restarted follower I: rss=R MiB` (a follower holds one copy of
# the state; the leader a second one, the sequencer's). With LEAD=1 the leader then hands its
# leadership to the restarted follower (`cluster transfer-leader`), and the last line is
# `follower I leads: first write acknowledged N ms after the transfer request, rss=R MiB`:
# what it costs a node to start leading (its sequencer's copy of the state).
#
#   benches/follower-memory.sh                      # from the project root
#   ITEMS=1000000 OURS=/tmp/old/bench_server benches/follower-memory.sh
#   SECRET=s3cr3t-s3cr3t OURS=... benches/follower-memory.sh   # a server that needs a secret
#   ITEMS=1000000 LEAD=1 benches/follower-memory.sh
#
# Bounded: every wait is a bounded poll; data lives in a temp directory removed at exit;
# every process it started is killed at exit (by its pid).
set -euo pipefail
ITEMS=${ITEMS:-300000}
if [ -z "${OURS:-}" ]; then
    cargo build --release --example bench_server
    OURS=target/release/examples/bench_server
fi
TMP=$(mktemp -d)
BASE=$((20000 + RANDOM % 10000))
MAP="1@127.0.0.1:$((BASE + 11)),2@127.0.0.1:$((BASE + 12)),3@127.0.0.1:$((BASE + 13))"
declare -a PID
start() { # start I: node I on its data directory
    "$OURS" --port $((BASE + $1)) --items "$ITEMS" --data "$TMP/n$1" --node-id "$1" \
        --peer-port $((BASE + 10 + $1)) --cluster "$MAP" --bind 127.0.0.1 \
        ${SECRET:+--cluster-secret "$SECRET"} >>"$TMP/n$1.log" 2>&1 &
    PID[$1]=$!
}
cleanup() {
    for pid in "${PID[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
rss() { echo $(($(awk '/VmRSS/ {print $2}' "/proc/$1/status") / 1024)); }
role() {
    curl -sf "http://127.0.0.1:$((BASE + $1))/_lithair/cluster" | grep -o '"role":"[a-z]*"' | cut -d'"' -f4 || true
}
for i in 1 2 3; do start "$i"; done
for _ in $(seq 1 600); do # the preload: the last item is served (up to 20 min)
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((BASE + 1))/items/$ITEMS")" = 200 ] && break
    sleep 2
done
sleep 3
for i in 1 2 3; do echo "node $i: $(role "$i"), rss=$(rss "${PID[$i]}") MiB"; done
follower=1
[ "$(role 1)" = leader ] && follower=2
kill "${PID[$follower]}"
wait "${PID[$follower]}" 2>/dev/null || true
start "$follower"
for _ in $(seq 1 600); do # replayed and ready (up to 10 min)
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((BASE + follower))/ready")" = 200 ] && break
    sleep 1
done
sleep 3
echo "restarted follower $follower: $(role "$follower"), rss=$(rss "${PID[$follower]}") MiB"
[ "${LEAD:-0}" = 1 ] || exit 0
leader=""
for i in 1 2 3; do [ "$(role "$i")" = leader ] && leader=$i; done
[ -n "$leader" ] || { echo "no leader to transfer from"; exit 1; }
post() { # the status of one POST /items to node $1
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H 'content-type: application/json' \
        -d '{"name":"lead","price":1.5,"tags":[],"in_stock":true}' "http://127.0.0.1:$((BASE + $1))/items" || true
}
start_ns=$(date +%s%N)
"$OURS" cluster transfer-leader --node "127.0.0.1:$((BASE + leader))" --to "$follower" \
    ${SECRET:+--cluster-secret "$SECRET"} >/dev/null
for _ in $(seq 1 3000); do # acknowledged by the new leader (up to ~5 min)
    [ "$(role "$follower")" = leader ] && [ "$(post "$follower")" = 201 ] && break
    sleep 0.01
done
end_ns=$(date +%s%N)
[ "$(role "$follower")" = leader ] || { echo "follower $follower did not take the leadership"; exit 1; }
sleep 2
echo "follower $follower leads: first write acknowledged $(((end_ns - start_ns) / 1000000)) ms after the transfer request, rss=$(rss "${PID[$follower]}") MiB"
