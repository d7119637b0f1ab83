#!/usr/bin/env bash
# Which side limits a wrk run: requests/s, and how busy each of the two CPUs was (wrk pinned to
# CPU 0, the server to CPU 1), from /proc/stat before and after. A load generator at ~100 %
# while the server's CPU has idle time means the figure measures wrk, not the server.
#
# Usage (from the project root): benches/wrk-cpu.sh ours|hyper PATH [wrk args...]
#   benches/wrk-cpu.sh ours /plaintext
# Environment: OURS, HYPER, ITEMS as in http-common.sh; CONNS (default 64), SECS (default 5).
# Prints: `KIND PATH rps=R wrk_cpu0_busy=B% server_cpu1_busy=S%`.
set -euo pipefail
kind=$1 path=$2; shift 2
port=18193
source "$(dirname "$0")/http-common.sh"
data=$(mktemp -d)
start_server "$kind" "$port" "$path"
busy() { awk '/^cpu[01] / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat | tr '\n' ' '; }
before=$(busy)
rps=$(taskset -c 0 wrk -t1 -c"${CONNS:-64}" -d"${SECS:-5}s" "$@" "http://127.0.0.1:$port$path" \
  | awk '/Requests\/sec/ {print $2}')
after=$(busy)
python3 - "$kind" "$path" "$rps" $before $after <<'PY'
import sys
kind, path, rps = sys.argv[1:4]
b0, i0, b1, i1, a0, j0, a1, j1 = map(int, sys.argv[4:12])
pct = lambda busy, idle: 100 * busy / max(busy + idle, 1)
print(f"{kind} {path} rps={float(rps):.0f} wrk_cpu0_busy={pct(a0 - b0, j0 - i0):.1f}% "
      f"server_cpu1_busy={pct(a1 - b1, j1 - i1):.1f}%")
PY
