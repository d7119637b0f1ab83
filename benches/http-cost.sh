#!/usr/bin/env bash
# CPU cost per request of one HTTP server under a bounded wrk run, from the kernel's own
# accounting of the server process (this VM exposes no hardware counters, so no
# instructions/cycles here: see benches/http-instructions.sh for user-space instructions).
# Prints, per request: task-clock microseconds (user + kernel CPU time of the server), and the
# syscalls the server made (recv/read, send/write, epoll_wait, epoll_ctl, accept). CPU time per
# request is far steadier than requests/s on a machine with steal time, because the server is
# pinned to one core and idles whenever wrk (pinned to the other) cannot keep it busy.
#
# Usage (from the project root): benches/http-cost.sh ours|hyper PATH [wrk args...]
#   benches/http-cost.sh ours /plaintext
#   benches/http-cost.sh hyper /plaintext -s pipeline.lua      (16 requests per write)
# Environment: OURS (server binary, default target/release/examples/bench_server), HYPER
# (default ../shared/peers/target/release/peer-hyper), CONNS (wrk connections, default 64),
# SECS (default 5), RUNS (default 3; one line each). Needs perf (tracepoints), wrk, taskset, curl.
set -euo pipefail
kind=$1 path=$2; shift 2
port=18191
# Polling before sleeping (the server's default) would count as the server's CPU (or
# instructions) per request whenever wrk leaves it idle: measure the work, without it.
OURS_ARGS=${OURS_ARGS---poll-window-us 0}
source "$(dirname "$0")/http-common.sh"
data=$(mktemp -d)
start_server "$kind" "$port" "$path"
secs=${SECS:-5}
events=task-clock
for s in recvfrom read sendto write writev epoll_wait epoll_ctl accept4; do
  events="$events,syscalls:sys_enter_$s"
done
for _ in $(seq 1 "${RUNS:-3}"); do
  # perf counts the whole process (every thread) for slightly longer than wrk runs; the server
  # is idle outside wrk's run, so the margin adds nothing but idle epoll_wait calls.
  perf stat -x, -e "$events" -p "$pid" -o "$data/perf" -- sleep "$((secs + 1))" &
  perf_pid=$!
  sleep 0.3
  out=$(taskset -c 0 wrk -t1 -c"${CONNS:-64}" -d"${secs}s" "$@" "http://127.0.0.1:$port$path")
  wait $perf_pid
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  python3 - "$data/perf" "$reqs" "$rps" "$kind" "$path" "$*" <<'PY'
import sys
perf, reqs, rps, kind, path, extra = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), *sys.argv[4:]
counts = {}
for line in open(perf):
    parts = line.strip().split(',')
    if len(parts) < 3 or not parts[0].replace('.', '').isdigit():
        continue
    counts[parts[2].replace('syscalls:sys_enter_', '')] = float(parts[0])
cpu_us = counts.pop('task-clock') * 1000 / reqs  # task-clock is in milliseconds
per = ' '.join(f'{k}={v / reqs:.3f}' for k, v in counts.items() if v)
print(f'{kind} {path} {extra} reqs={reqs} rps={rps:.0f} cpu_us/req={cpu_us:.3f} {per}')
PY
done
