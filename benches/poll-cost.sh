#!/usr/bin/env bash
# What polling before sleeping (`--poll-window-us`, see src/http/poll_window.rs) buys and costs
# one server: for the default window and for 0 (never poll), the bench server is started pinned
# to CPU 1, one keep-alive client on CPU 0 sends REQUESTS GET /json one after the other, pausing
# GAP_US between them, and the server's CPU time (user + system, /proc/PID/stat) is read around
# the run; then around IDLE_S seconds of no load.
#
# Usage (from the project root): benches/poll-cost.sh [GAP_US...]   (default: 0 100 1000)
# Environment: OURS, ITEMS as in http-common.sh; REQUESTS (default 5000), IDLE_S (default 2).
# Prints one line per window and gap, then one per window idle:
#   window=default gap_us=1000 rps=840 server_cpu_ms=190 caught=12 sleeps=4990
# (caught, sleeps: the server's lithair_http_polls_caught_total and lithair_http_sleeps_total
# over the run; both stay 0 with polling off)
#   window=0 idle_s=2 server_cpu_ms=0
set -euo pipefail
gaps=("$@")
[ ${#gaps[@]} -eq 0 ] && gaps=(0 100 1000)
port=18192
source "$(dirname "$0")/http-common.sh"
tick_ms=$((1000 / $(getconf CLK_TCK)))
counter() { # counter NAME: the server's metric NAME now
  curl -sf "http://127.0.0.1:$port/_lithair/metrics" | awk -v m="$1" '$1 == m {print $2}'
}
cpu_ms() { awk -v t="$tick_ms" '{print ($14 + $15) * t}' "/proc/$pid/stat"; }
paced() { # paced GAP_US: prints requests/s of one sequential keep-alive client
  taskset -c 0 python3 - "$port" "$1" "${REQUESTS:-5000}" <<'PY'
import socket, sys, time
port, gap, n = int(sys.argv[1]), int(sys.argv[2]) / 1e6, int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
request = b"GET /json HTTP/1.1\r\nHost: bench\r\n\r\n"
start = time.time()
for _ in range(n):
    s.sendall(request)
    answer = s.recv(4096)  # one small answer, one segment on loopback
    if not answer.startswith(b"HTTP/1.1 200"):
        sys.exit(f"unexpected answer: {answer[:40]!r}")
    if gap:
        time.sleep(gap)
print(f"{n / (time.time() - start):.0f}")
PY
}
for window in default 0; do
  data=$(mktemp -d)
  if [ "$window" = default ]; then OURS_ARGS=""; else OURS_ARGS="--poll-window-us $window"; fi
  start_server ours "$port" /json
  for gap in "${gaps[@]}"; do
    caught=$(counter lithair_http_polls_caught_total); sleeps=$(counter lithair_http_sleeps_total)
    before=$(cpu_ms); rps=$(paced "$gap"); after=$(cpu_ms)
    caught=$(($(counter lithair_http_polls_caught_total) - caught))
    sleeps=$(($(counter lithair_http_sleeps_total) - sleeps))
    echo "window=$window gap_us=$gap rps=$rps server_cpu_ms=$((after - before)) caught=$caught sleeps=$sleeps"
  done
  before=$(cpu_ms); sleep "${IDLE_S:-2}"; after=$(cpu_ms)
  echo "window=$window idle_s=${IDLE_S:-2} server_cpu_ms=$((after - before))"
  kill -KILL "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$data"
done
