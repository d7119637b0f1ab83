#!/usr/bin/env bash
# Autobahn|Testsuite fuzzingclient against examples/ws_echo: groups 1-10 (RFC 6455) and the
# permessage-deflate groups 12 and 13 (RFC 7692). Each deflate case echoes 1000 messages, so the
# full groups (216 cases) take about 40 minutes on 2 busy cores: by default a representative
# subset runs (every 12.x data set and every 13.x negotiation variant, plain and fragmented);
# `--deflate-full` (or AUTOBAHN_DEFLATE=full) runs all of 12 and 13.
# Installs what it needs: a Python 2.7 virtualenv (from pyenv) with autobahntestsuite 0.8.2 and
# pinned dependencies, cached in $AUTOBAHN_HOME.
# Exits non-zero unless every case is OK or INFORMATIONAL; the last line is
# `autobahn: N passed, M failed`.
set -euo pipefail
cd "$(dirname "$0")/.."

deflate=${AUTOBAHN_DEFLATE:-subset}
for arg in "$@"; do
  case $arg in
    --deflate-full) deflate=full ;;
    --no-deflate) deflate=none ;;
    *) echo "usage: $0 [--deflate-full | --no-deflate]" >&2; exit 2 ;;
  esac
done
cases='"1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "8.*", "9.*", "10.*"'
case $deflate in
  full) cases="$cases, \"12.*\", \"13.*\"" ;;
  # 12.N.5: 4 KiB messages of each data set (JSON, bitmap, text, HTML, PDF); 12.N.11: 8 KiB
  # fragmented to 256 bytes; 13.N.4 and 13.N.11: every negotiation variant, plain and fragmented
  # (21 cases, about 100 s on 2 busy cores).
  subset) cases="$cases, \"12.*.5\", \"12.1.11\", \"12.3.11\", \"13.*.4\", \"13.*.11\"" ;;
  none) ;;
  *) echo "autobahn: AUTOBAHN_DEFLATE must be full, subset or none" >&2; exit 2 ;;
esac
root=$PWD
home=${AUTOBAHN_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/lithair-autobahn}
venv=$home/venv

find_python2() {
  local candidate
  if command -v pyenv >/dev/null 2>&1; then
    for candidate in "$(pyenv root)"/versions/2.7*/bin/python2.7; do
      [[ -x $candidate ]] && { echo "$candidate"; return; }
    done
  fi
  for candidate in "$HOME"/.pyenv/versions/2.7*/bin/python2.7 "$(command -v python2.7 || true)"; do
    [[ -n $candidate && -x $candidate ]] && { echo "$candidate"; return; }
  done
  echo "autobahn: Python 2.7 not found (expected from pyenv: 'pyenv install 2.7.18')" >&2
  exit 1
}

if [[ ! -x $venv/bin/wstest ]]; then
  echo "== autobahn: installing autobahntestsuite into $venv"
  python2=$(find_python2)
  rm -rf "$venv" "$home/bootstrap"
  mkdir -p "$home"
  # virtualenv 16 still runs on and creates Python 2.7 environments; it is used from a
  # private directory so nothing is installed into the interpreter itself.
  "$python2" -m pip install --disable-pip-version-check -q --target "$home/bootstrap" 'virtualenv<20'
  PYTHONPATH=$home/bootstrap "$python2" -m virtualenv -q "$venv"
  "$venv/bin/pip" install --disable-pip-version-check -q -r tests/autobahn/requirements.txt
fi

echo "== autobahn: building ws_echo"
cargo build --release --example ws_echo
# CARGO_TARGET_DIR, when set, moves the build out of the tree.
echo_bin=${CARGO_TARGET_DIR:-$root/target}/release/examples/ws_echo

# The venv's own Python picks the port and reads the report: no other interpreter is assumed.
python=$venv/bin/python
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
"$echo_bin" --port "$port" >"$work/ws_echo.log" 2>&1 &
echo_pid=$!
cleanup() {
  kill "$echo_pid" 2>/dev/null || true
  wait "$echo_pid" 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 100); do
  if "$python" -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; then break; fi
  kill -0 "$echo_pid" 2>/dev/null || { cat "$work/ws_echo.log"; echo "autobahn: ws_echo died"; exit 1; }
  sleep 0.1
done

report=${AUTOBAHN_REPORT:-$work/report}
sed -e "s|@PORT@|$port|" -e "s|@OUTDIR@|$report|" -e "s|@CASES@|[$cases]|" \
  tests/autobahn/fuzzingclient.json >"$work/spec.json"
echo "== autobahn: fuzzingclient against ws://127.0.0.1:$port, deflate cases: $deflate (report in $report)"
(cd "$work" && timeout "$([[ $deflate == full ]] && echo 5400 || echo 1200)" "$venv/bin/wstest" -m fuzzingclient -s "$work/spec.json" >"$work/wstest.log" 2>&1) || {
  tail -30 "$work/wstest.log"
  echo "autobahn: wstest failed"
  exit 1
}
"$python" tests/autobahn/summarize.py "$report/index.json" lithair
