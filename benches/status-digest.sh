#!/usr/bin/env bash
# What a `/_lithair/cluster` answer costs at rest: the bench server runs as a single-node
# cluster with ITEMS preloaded items; once they are all there, its peak RSS is reset
# (`echo 5 > /proc/PID/clear_refs`) and POLLS status answers are timed. One line:
#   status-digest: items N rss_kb R peak_growth_kb G ms_per_poll T
# (peak_growth_kb: VmHWM after the polls minus VmHWM at the reset; an app's state keeps its
# digest up as it applies, so no poll passes over the state; before, the first poll after a
# write computed it, later ones at the same applied index reused it).
#
#   benches/status-digest.sh
#   ITEMS=1000000 OURS=/tmp/base/bench_server benches/status-digest.sh
#
# Bounded waits; the server is killed by its pid at exit; data under a temp dir.
set -euo pipefail
ITEMS=${ITEMS:-1000000}
POLLS=${POLLS:-5}
PORT=${PORT:-18400}
PEER_PORT=${PEER_PORT:-18401}
source "$(dirname "$0")/status-common.sh"
data=$(mktemp -d)
start_single_node
trap 'kill -KILL $pid 2>/dev/null || true; rm -rf "$data"' EXIT
wait_preloaded
echo 5 >"/proc/$pid/clear_refs"
before=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
t0=$(date +%s%N)
for _ in $(seq 1 "$POLLS"); do curl -sf "http://127.0.0.1:$PORT/_lithair/cluster" >/dev/null; done
t1=$(date +%s%N)
after=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
echo "status-digest: items $ITEMS rss_kb $rss peak_growth_kb $((after - before)) ms_per_poll $(((t1 - t0) / POLLS / 1000000))"
