#!/usr/bin/env bash
# Linearizable reads of a 3-node Lithair cluster on loopback, against their ceiling (stale
# local reads). One cluster per read mode (`--read-mode read-index`, then `lease`); each runs
# four cases: stale reads on the leader, linearizable reads on the leader, on a follower, and
# on all three nodes (one load process per node, their rates summed). Every case is measured
# three ways, each printed on its own SUMMARY line:
#   - `cluster_bench load` (CLIENTS closed-loop keep-alive clients, one request in flight
#     each, on two event-loop threads; its own cost still caps it below the server on a
#     small machine);
#   - wrk (WRK_CONNS keep-alive connections in total, WRK_THREADS threads per wrk process),
#     one request in flight per connection;
#   - wrk with a Lua script that pipelines PIPELINE_DEPTH requests per write, labelled
#     `pipelined`: never compare it with the non-pipelined figures.
#
#   benches/cluster-reads.sh                 # from the project root
#   CLIENTS=32 SECONDS_RUN=5 WRK_CONNS=128 BENCH=path/to/cluster_bench benches/cluster-reads.sh
#   MODES=read-index CASES="leader all-three" TOOLS=pipelined benches/cluster-reads.sh
# MODES (read-index lease), CASES (leader-stale leader follower all-three) and TOOLS
# (cluster_bench plain pipelined) pick a subset; every one by default.
#
# Installs Debian's wrk with apt-get when `wrk` is missing. Data lives in a temp directory
# removed at exit; every process it started is killed at exit (by its pid). The machine may
# be shared: note `uptime` (printed on every SUMMARY line) next to the figures.
set -euo pipefail

CLIENTS=${CLIENTS:-128}
SECONDS_RUN=${SECONDS_RUN:-5}
WRK_CONNS=${WRK_CONNS:-128}
WRK_THREADS=${WRK_THREADS:-2}
PIPELINE_DEPTH=${PIPELINE_DEPTH:-16}
MODES=${MODES:-read-index lease}
CASES=${CASES:-leader-stale leader follower all-three}
TOOLS=${TOOLS:-cluster_bench plain pipelined}
# Longest wait for a cluster to elect a leader, in seconds.
READY_WAIT_S=30

# shellcheck source=benches/cluster-common.sh
source "$(dirname "$0")/cluster-common.sh"

if ! command -v wrk >/dev/null; then
    echo "installing wrk (apt-get)" >&2
    apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi

# wrk sends PIPELINE_DEPTH copies of its request per write and counts every response.
cat >"$TMP/pipeline.lua" <<'LUA'
init = function(args)
  local depth = tonumber(args[1]) or 16
  local batch = {}
  for i = 1, depth do batch[i] = wrk.format(nil) end
  pipelined = table.concat(batch)
end
request = function() return pipelined end
LUA

load_now() { uptime | sed 's/.*load average: //'; }

picked() { # picked WORD LIST: whether WORD is one of the words of LIST
    case " $2 " in *" $1 "*) return 0 ;; *) return 1 ;; esac
}

summary() { # summary MODE CASE TOOL RATE DETAIL
    echo "SUMMARY mode=$1 case=$2 tool=$3 reads/s=$4 $5 (load avg $(load_now))"
}

run_wrk() { # run_wrk KIND(plain|pipelined) QUERY ADDR...: prints "RATE NON2XX P50 P99"
    local kind=$1 query=$2 out=() pids=() i=0 conns pid
    shift 2
    conns=$((WRK_CONNS / $#))
    [ "$conns" -ge "$WRK_THREADS" ] || conns=$WRK_THREADS
    for addr in "$@"; do
        local args=(-t"$WRK_THREADS" -c"$conns" -d"$SECONDS_RUN" --latency)
        [ "$kind" = pipelined ] && args+=(-s "$TMP/pipeline.lua")
        args+=("http://$addr/api/items/1$query")
        [ "$kind" = pipelined ] && args+=(-- "$PIPELINE_DEPTH")
        wrk "${args[@]}" >"$TMP/wrk.$i" 2>&1 &
        pids+=($!)
        out+=("$TMP/wrk.$i")
        i=$((i + 1))
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    # Summed rate and non-2xx count over every wrk; latency percentiles of the first.
    awk '/Requests\/sec/ { rate += $2 }
         /Non-2xx/ { bad += $NF }
         FILENAME == ARGV[1] && $1 == "50%" { p50 = $2 }
         FILENAME == ARGV[1] && $1 == "99%" { p99 = $2 }
         END { printf "%.0f %d %s %s\n", rate, bad, p50, p99 }' "${out[@]}"
}

run_case() { # run_case MODE CASE LOAD_MODE(stale|read) ADDR...
    local mode=$1 name=$2 load_mode=$3 query="" targets rate line
    shift 3
    picked "$name" "$CASES" || return 0
    [ "$load_mode" = stale ] && query="?consistency=stale"
    targets=$(IFS=,; echo "$*")
    if picked cluster_bench "$TOOLS"; then
        echo "[$mode, $name] cluster_bench, load: $(load_now)"
        line=$("$BENCH" load --targets "$targets" --clients "$CLIENTS" \
            --seconds "$SECONDS_RUN" --mode "$load_mode")
        echo "$line"
        rate=$(echo "$line" | grep -o '[0-9]* acknowledged/s' | cut -d' ' -f1)
        summary "$mode" "$name" cluster_bench "${rate:-?}" "(clients $CLIENTS)"
    fi
    for kind in plain pipelined; do
        picked "$kind" "$TOOLS" || continue
        set -- $(run_wrk "$kind" "$query" ${targets//,/ })
        if [ "$kind" = plain ]; then
            summary "$mode" "$name" wrk "$1" "non-2xx $2, p50 $3, p99 $4 (conns $WRK_CONNS)"
        else
            # wrk times a pipelined batch, not a request (its percentiles come out as 0 or a
            # batch's time): only the rate means something here.
            summary "$mode" "$name" "wrk-pipelined-depth-$PIPELINE_DEPTH" "$1" \
                "non-2xx $2 (conns $WRK_CONNS)"
        fi
    done
}

run_mode() { # run_mode READ_MODE: one cluster, four cases
    local mode=$1 base=$(random_port_base) leader=""
    start_lithair "$base" "$mode" reads --read-mode "$mode"
    for _ in $(seq "$READY_WAIT_S"); do
        leader=$(curl -sf "http://127.0.0.1:$((base + 1))/_lithair/cluster" \
            | grep -o '"leader":[0-9]*' | cut -d: -f2 || true)
        if [ -n "$leader" ] && [ "$leader" != 0 ]; then break; fi
        leader=""
        sleep 1
    done
    if [ -z "$leader" ]; then echo "no leader in ${READY_WAIT_S} s ($mode)" >&2; exit 1; fi
    # The item every read fetches.
    curl -sf -X POST -H 'Content-Type: application/json' -d '{"name":"read-me"}' \
        "http://127.0.0.1:$((base + leader))/api/items" >/dev/null
    local follower=$((leader % 3 + 1)) l="127.0.0.1:$((base + leader))"
    run_case "$mode" leader-stale stale "$l"
    run_case "$mode" leader read "$l"
    run_case "$mode" follower read "127.0.0.1:$((base + follower))"
    run_case "$mode" all-three read "127.0.0.1:$((base + 1))" "127.0.0.1:$((base + 2))" \
        "127.0.0.1:$((base + 3))"
    stop_all
}

for mode in $MODES; do run_mode "$mode"; done
