#!/usr/bin/env bash
# Instructions per request of one HTTP server under a bounded wrk run, counted by callgrind
# (user space only; the counters are zeroed after start-up and dumped before wrk's last second
# ends, so preloading is not counted). Deterministic enough to compare builds on a busy machine
# where requests/s are noise.
#
# Usage (from the project root): benches/http-instructions.sh ours|hyper PATH [wrk args...]
#   benches/http-instructions.sh ours /plaintext
#   CONNS=16 benches/http-instructions.sh hyper /plaintext -s pipeline.lua   (16 per write)
# Environment: OURS (server binary, default target/release/examples/bench_server), CONNS (wrk
# connections, default 16), SECS (default 4), CGOPTS (extra callgrind options), KEEP (copy the
# callgrind files to the current directory), HYPER (default ../shared/peers/target/release/peer-hyper,
# built by ../shared/bench/http-compare.sh). Needs valgrind, wrk, taskset, curl.
set -euo pipefail
kind=$1 path=$2; shift 2
port=18190
# Polling before sleeping (the server's default) would count as the server's CPU (or
# instructions) per request whenever wrk leaves it idle: measure the work, without it.
OURS_ARGS=${OURS_ARGS---poll-window-us 0}
source "$(dirname "$0")/http-common.sh"
data=$(mktemp -d)
# shellcheck disable=SC2086
start_server "$kind" "$port" "$path" valgrind --tool=callgrind ${CGOPTS:-} --callgrind-out-file="$data/cg.out"
callgrind_control -z $pid >/dev/null
out=$(taskset -c 0 wrk -t1 -c"${CONNS:-16}" -d"${SECS:-4}s" "$@" "http://127.0.0.1:$port$path")
reqs=$(echo "$out" | awk '/requests in/ {print $1}')
callgrind_control -d $pid >/dev/null
sleep 1.5
ir=$(grep -m1 "^summary:\|^totals:" "$data/cg.out.1" | awk '{print $2}')
echo "$kind $path requests=$reqs instructions=$ir per_request=$(python3 -c "print(round($ir/$reqs))")"
if [ -n "${KEEP:-}" ]; then cp "$data"/cg.out.* .; fi
