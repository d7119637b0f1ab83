# Shared by the benches/http-*.sh, list-cost.sh and wrk-cpu.sh scripts (sourced, not run):
# starts one HTTP server pinned to CPU 1 on PORT, waits until it answers, and kills it on exit.
#
# start_server KIND PORT PATH [WRAPPER...]: KIND is `ours` (OURS, default the release
# bench_server) or `hyper` (HYPER, default ../shared/peers/target/release/peer-hyper); WRAPPER
# (e.g. valgrind and its flags) runs the server. ITEMS (default 10000) items are preloaded. Uses
# `data` (a temporary directory the caller made; removed on exit) and sets `pid`. OURS_ARGS
# (optional) adds flags to ours, e.g. `--poll-window-us 0`.
start_server() {
  local kind=$1 port=$2 path=$3 bin args
  shift 3
  case $kind in
    ours) bin=${OURS:-$PWD/target/release/examples/bench_server}; args="--port $port --items ${ITEMS:-10000} --data $data/d ${OURS_ARGS:-}";;
    hyper) bin=${HYPER:-$PWD/../shared/peers/target/release/peer-hyper}; args="--port $port --items ${ITEMS:-10000}";;
    *) echo "ours or hyper" >&2; exit 2;;
  esac
  # shellcheck disable=SC2086
  taskset -c 1 "$@" "$bin" $args >"$data/log" 2>&1 &
  pid=$!
  trap 'kill -KILL $pid 2>/dev/null || true; rm -rf "$data"' EXIT
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/plaintext" >/dev/null && break; sleep 0.2; done
  curl -sf "http://127.0.0.1:$port$path" >/dev/null || true
}
