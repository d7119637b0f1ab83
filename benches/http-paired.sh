#!/usr/bin/env bash
# Paired runs of Lithair's bench server and bare hyper on one path, to compare them on a noisy
# machine: both servers run at once (pinned to CPU 1; only the one under load works), and each
# round loads one then the other with the same wrk run (pinned to CPU 0), swapping which goes
# first every round, so a slow spell of the machine lands on both sides alike. The ratio of
# each round is ours/hyper; the summary gives their median and geometric mean.
#
# Usage (from the project root): benches/http-paired.sh PATH [wrk args...]
#   benches/http-paired.sh /json
#   ROUNDS=10 benches/http-paired.sh /plaintext -s pipeline.lua
# Environment: OURS, HYPER, ITEMS as in http-common.sh; ROUNDS (default 6), CONNS (default
# 64, as ../shared/bench/http-compare.sh), SECS (default 5).
# Prints one line per round, `round K: ours R1 hyper R2 ratio X`, then
#   `PATH: ours median M1 hyper median M2; ratio median X geomean Y (min A max B, N rounds)`.
set -euo pipefail
path=$1; shift
rounds=${ROUNDS:-6}
data=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; rm -rf "$data"' EXIT
start() { # start BIN PORT ARGS...: one server pinned to CPU 1, waited for
  local bin=$1 port=$2; shift 2
  taskset -c 1 "$bin" --port "$port" "$@" >"$data/$port.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/plaintext" >/dev/null && break; sleep 0.2; done
  curl -sf "http://127.0.0.1:$port$path" >/dev/null
}
start "${OURS:-$PWD/target/release/examples/bench_server}" 18194 --items "${ITEMS:-10000}" --data "$data/d"
start "${HYPER:-$PWD/../shared/peers/target/release/peer-hyper}" 18195 --items "${ITEMS:-10000}"
rps() { # rps PORT [wrk args...]
  local port=$1; shift
  taskset -c 0 wrk -t1 -c"${CONNS:-64}" -d"${SECS:-5}s" "$@" "http://127.0.0.1:$port$path" \
    | awk '/Requests\/sec/ {print $2}'
}
results=()
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then
    ours=$(rps 18194 "$@"); hyper=$(rps 18195 "$@")
  else
    hyper=$(rps 18195 "$@"); ours=$(rps 18194 "$@")
  fi
  echo "round $round: ours $ours hyper $hyper ratio $(python3 -c "print(f'{$ours / $hyper:.3f}')")"
  results+=("$ours:$hyper")
done
python3 - "$path" "${results[@]}" <<'PY'
import math, statistics, sys
path, pairs = sys.argv[1], [tuple(map(float, p.split(":"))) for p in sys.argv[2:]]
ratios = [o / h for o, h in pairs]
geomean = math.exp(sum(map(math.log, ratios)) / len(ratios))
print(f"{path}: ours median {statistics.median(o for o, _ in pairs):.0f} "
      f"hyper median {statistics.median(h for _, h in pairs):.0f}; ratio median "
      f"{statistics.median(ratios):.3f} geomean {geomean:.3f} "
      f"(min {min(ratios):.3f} max {max(ratios):.3f}, {len(ratios)} rounds)")
PY
