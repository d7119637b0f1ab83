#!/usr/bin/env bash
# What status polls cost the writers: the bench server runs as a single-node cluster with
# ITEMS preloaded items; then one writer (wrk, one connection, one request at a time) POSTs
# /items for SECONDS, first alone, then while a poller GETs /_lithair/cluster, sleeping
# POLL_MS between two polls (every poll follows writes, so its state digest is a new one).
# One line per phase:
#   status-write-latency: items N polling off|on writes W p50_ms A p99_ms B max_ms C
#     cpu_us_per_write U polls P poll_p50_ms D poll_max_ms E
# (latencies of the POSTs as wrk measured them; cpu: the server's user+system time over the
# phase divided by the writes; poll_*: curl's total time per status answer.)
#
#   benches/status-write-latency.sh
#   ITEMS=1000000 OURS=/tmp/base/bench_server benches/status-write-latency.sh
#
# Needs wrk and curl. Bounded waits; the server and the poller are killed by their pids at
# exit; data under a temp dir.
set -euo pipefail
ITEMS=${ITEMS:-1000000}
SECONDS_EACH=${SECONDS_EACH:-20}
POLL_MS=${POLL_MS:-100}
PORT=${PORT:-18410}
PEER_PORT=${PEER_PORT:-18411}
source "$(dirname "$0")/status-common.sh"
data=$(mktemp -d)
start_single_node
poller=
trap '[ -n "$poller" ] && kill "$poller" 2>/dev/null; kill -KILL $pid 2>/dev/null || true; rm -rf "$data"' EXIT
wait_preloaded
cat >"$data/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"name":"written","price":1.5,"tags":["a"],"in_stock":true}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("wrk: requests %d errors %d p50_us %d p99_us %d max_us %d\n",
    summary.requests, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
EOF
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
phase() {
  local polling=$1
  : >"$data/polls"
  if [ "$polling" = on ]; then
    (while :; do
      curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$PORT/_lithair/cluster" >>"$data/polls"
      sleep "$(awk "BEGIN {print $POLL_MS / 1000}")"
    done) &
    poller=$!
  fi
  local c0; c0=$(cpu_ticks)
  wrk -t1 -c1 -d"${SECONDS_EACH}s" --timeout 10s -s "$data/post.lua" \
    "http://127.0.0.1:$PORT/items" >"$data/wrk" 2>&1
  local c1; c1=$(cpu_ticks)
  if [ -n "$poller" ]; then kill "$poller" 2>/dev/null || true; wait "$poller" 2>/dev/null || true; poller=; fi
  local line; line=$(grep '^wrk:' "$data/wrk") || { cat "$data/wrk" >&2; exit 1; }
  read -r _ _ writes _ errors _ p50 _ p99 _ max <<<"$line"
  [ "$errors" = 0 ] || { echo "$errors failed writes" >&2; exit 1; }
  local polls poll_p50 poll_max
  polls=$(wc -l <"$data/polls")
  if [ "$polls" -gt 0 ]; then
    poll_p50=$(sort -n "$data/polls" | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]*1000}')
    poll_max=$(sort -n "$data/polls" | tail -1 | awk '{printf "%.1f", $1*1000}')
  else
    poll_p50=-; poll_max=-
  fi
  echo "status-write-latency: items $ITEMS polling $polling writes $writes" \
    "p50_ms $(awk "BEGIN {printf \"%.2f\", $p50/1000}")" \
    "p99_ms $(awk "BEGIN {printf \"%.2f\", $p99/1000}")" \
    "max_ms $(awk "BEGIN {printf \"%.1f\", $max/1000}")" \
    "cpu_us_per_write $(( (c1 - c0) * tick_us / (writes > 0 ? writes : 1) ))" \
    "polls $polls poll_p50_ms $poll_p50 poll_max_ms $poll_max"
}
phase off
phase on
