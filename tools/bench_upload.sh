#!/usr/bin/env bash
# The AWS launcher's partition upload (a figure to report, not a test): a local
# moto S3 server, then `cosmicai bench upload` (speed, peak RSS, and the rerun
# that finds every file there without reading it again).
#   tools/bench_upload.sh                 # FILES=8 MIB=100 (CAI's largest partitions)
#   FILES=2 MIB=2048 tools/bench_upload.sh
# Needs the test venv (make python-setup). moto keeps objects in its memory: keep
# FILES x MIB within this machine's. Against AWS, run `cosmicai bench upload
# --bucket YOURS` with your credentials instead.
set -euo pipefail
BIN=${COSMICAI_BIN:-target/release/cosmicai}
PY=${COSMICAI_TEST_VENV:-.venv}/bin/python
FILES=${FILES:-8}
MIB=${MIB:-100}
out=$(mktemp)
"$PY" tests/aws/moto_server.py --port 0 >"$out" 2>/dev/null &
moto=$!
trap 'kill $moto 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 300); do grep -q '^PORT ' "$out" && break; sleep 0.1; done
port=$(sed -n 's/^PORT //p' "$out")
[ -n "$port" ] || { echo "moto did not start"; exit 1; }
AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
  "$BIN" bench upload --endpoint "http://127.0.0.1:$port" --bucket bench-upload \
  --files "$FILES" --mib "$MIB" "$@"
