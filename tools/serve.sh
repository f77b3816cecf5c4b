#!/usr/bin/env bash
# `make serve`: the server and the explorer, built side by side.
#
# The explorer (Trunk and wasm-bindgen-cli to install the first time, then its wasm
# build) starts building in the background at once, at the lowest CPU priority; the
# server (the `cosmicai` binary, release) builds in the foreground at normal priority, so
# it is barely slowed while the explorer's build takes the cycles its serial stretches
# leave idle (one crate compiling, the linker). The server starts as soon as it is built:
# the API and the bundled data answer, and the page says "explorer building…" with the
# log's latest lines ($CARGO_TARGET_DIR/explorer-build.log) until the explorer lands,
# then shows it. Ctrl-C stops both. Arguments go to `cosmicai serve`.
set -euo pipefail
: "${CARGO_TARGET_DIR:?make serve sets it}"
cd "$(dirname "$0")/.."
log="$CARGO_TARGET_DIR/explorer-build.log"
say() { printf '\033[1m== make serve:\033[0m %s\n' "$*" >&2; }
started=$SECONDS

# Times measured on a 2-core machine, from a fresh clone and after a one-line change
# (README, "The first `make serve`").
if command -v trunk >/dev/null && command -v wasm-bindgen >/dev/null; then
  say "building the explorer in the background (seconds after a change in frontend/; log: $log)"
else
  say "installing Trunk and wasm-bindgen-cli, then building the explorer, in the background at low priority (the first time it lands about 7 minutes after the server is up; log: $log)"
fi
mkdir -p "$CARGO_TARGET_DIR"
# Its own session, so that Ctrl-C here (or the server stopping) ends it as a whole.
# Its log goes to the file; its one-line outcome to this terminal (fd 3).
# The tools and the explorer build in target directories of their own, so nothing
# waits on the server's lock; at the lowest priority, they take only the CPU the
# server's build leaves idle until it is done.
setsid nice -n 19 bash -c '
  # With autogroups (most Linux kernels) a new session gets its own fair share of
  # the CPU whatever its nice value: lower the group itself.
  echo 19 > /proc/self/autogroup 2>/dev/null || true
  start=$SECONDS
  if make --no-print-directory frontend; then
    echo "explorer built in $((SECONDS - start)) s"
    printf "\033[1m== make serve:\033[0m explorer built in %s s: the page shows it now\n" "$((SECONDS - start))" >&3
  else
    echo "explorer build failed: see the lines above"
    printf "\033[1m== make serve:\033[0m the explorer build failed: see %s\n" "$0" >&3
  fi' "$log" 3>&2 >"$log" 2>&1 </dev/null &
builder=$!
trap 'kill -- -"$builder" 2>/dev/null || true' EXIT

if [ -x "$CARGO_TARGET_DIR/release/cosmicai" ]; then
  say "building the server (cosmicai, release): seconds when little changed"
else
  say "building the server (cosmicai, release) for the first time: about 7 minutes on 2 cores; cargo's bar counts the crates"
fi
cargo build --release --bin cosmicai

say "starting the server ($((SECONDS - started)) s so far); the page answers once the data is prepared"
"$CARGO_TARGET_DIR/release/cosmicai" serve --frontend-log "$log" "$@"
