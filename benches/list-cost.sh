#!/usr/bin/env bash
# Server CPU time per list request of the bench server's generated model routes (filters,
# sort, paging over ITEMS preloaded items), from /proc/PID/stat of the server pinned to CPU 1:
# one request at a time, so the figure is the request's own work, not a rate.
#
# Usage (from the project root): benches/list-cost.sh QUERY [REQUESTS]
#   benches/list-cost.sh '/items?take=20&sort=name'
#   OURS=/tmp/base/bench_server benches/list-cost.sh '/items?in_stock=true&take=20&sort=-price'
# Environment: OURS (server binary, default target/release/examples/bench_server), ITEMS
# (default 100000), REQUESTS (default 40). Prints one line:
#   list QUERY: M ms CPU per request (N requests, body md5 H)
# Compare two builds in pairs (base, new, base, new...); the md5 shows both answered the same.
set -euo pipefail
query=$1
requests=${2:-40}
port=18192
export ITEMS=${ITEMS:-100000}
source "$(dirname "$0")/http-common.sh"
data=$(mktemp -d)
start_server ours "$port" "$query"
url="http://127.0.0.1:$port$query"
md5=$(curl -sg "$url" | md5sum | cut -d' ' -f1)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(ticks)
for _ in $(seq 1 "$requests"); do curl -sg -o /dev/null "$url"; done
after=$(ticks)
hz=$(getconf CLK_TCK)
echo "list $query: $(python3 -c "print(f'{($after - $before) * 1000 / $hz / $requests:.2f}')") ms CPU per request ($requests requests, body md5 $md5)"
