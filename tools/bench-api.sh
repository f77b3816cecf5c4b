#!/usr/bin/env bash
# Load benchmark of the HTTP API (a figure to report, not a test): wrk with 200
# connections for 60 s on /api/objects against a release `cosmicai serve`.
#   tools/bench-api.sh            # DURATION=60s CONNECTIONS=200 by default
# Needs wrk (Debian: apt-get install wrk). Prints wrk's report with latency percentiles.
set -euo pipefail
BIN=${COSMICAI_BIN:-target/release/cosmicai}
DATA=${DATA:-data/bench-serve}
DURATION=${DURATION:-60s}
CONNECTIONS=${CONNECTIONS:-200}
QUERY=${QUERY:-/api/objects?class=GALAXY&z_max=0.3&limit=60}
command -v wrk >/dev/null || { echo "install wrk first (apt-get install wrk)"; exit 1; }
out=$(mktemp)
"$BIN" serve --addr 127.0.0.1:0 --data-dir "$DATA" >"$out" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 600); do grep -q '^listening on' "$out" && break; sleep 0.2; done
url=$(sed -n 's/^listening on //p' "$out")
[ -n "$url" ] || { echo "serve did not start"; exit 1; }
curl -sf "$url$QUERY" >/dev/null
echo "wrk: $CONNECTIONS connections, $DURATION, GET $QUERY ($(nproc) cores shared by server and wrk)"
wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$url$QUERY"
