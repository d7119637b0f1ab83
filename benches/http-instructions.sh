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
here=$(pwd)
data=$(mktemp -d)
case $kind in
  ours) bin=${OURS:-$here/target/release/examples/bench_server}; args="--port $port --items 10000 --data $data/d";;
  hyper) bin=${HYPER:-$here/../shared/peers/target/release/peer-hyper}; args="--port $port --items 10000";;
  *) echo "ours or hyper" >&2; exit 2;;
esac
# shellcheck disable=SC2086
taskset -c 1 valgrind --tool=callgrind ${CGOPTS:-} --callgrind-out-file="$data/cg.out" "$bin" $args >"$data/log" 2>&1 &
pid=$!
trap 'kill -KILL $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/plaintext" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$port$path" >/dev/null || true
callgrind_control -z $pid >/dev/null
out=$(taskset -c 0 wrk -t1 -c"${CONNS:-16}" -d"${SECS:-4}s" "$@" "http://127.0.0.1:$port$path")
reqs=$(echo "$out" | awk '/requests in/ {print $1}')
callgrind_control -d $pid >/dev/null
sleep 1.5
ir=$(grep -m1 "^summary:\|^totals:" "$data/cg.out.1" | awk '{print $2}')
echo "$kind $path requests=$reqs instructions=$ir per_request=$(python3 -c "print(round($ir/$reqs))")"
if [ -n "${KEEP:-}" ]; then cp "$data"/cg.out.* .; fi
