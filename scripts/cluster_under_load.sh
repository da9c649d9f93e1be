#!/usr/bin/env bash
# Runs the killed-executor cluster test RUNS times in a row (default 10) while
# two busy loops keep both cores loaded, and says how many passed: the check
# that the test is not flaky under load (issue 23). Needs the test binary
# built (`cargo test --no-run`); builds nothing itself.
set -uo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
RUNS=${RUNS:-10}
BIN=$(ls -t "$TARGET"/debug/deps/it-* 2>/dev/null | grep -v '\.d$' | head -1)
[ -x "$BIN" ] || { echo "no test binary under $TARGET/debug/deps: run cargo test --no-run" >&2; exit 1; }
( while true; do :; done ) & B1=$!
( while true; do :; done ) & B2=$!
trap 'kill $B1 $B2 2>/dev/null' EXIT
pass=0
for i in $(seq 1 "$RUNS"); do
  s=$(date +%s)
  if "$BIN" cluster::an_executor_killed_mid_export_changes_nothing --exact > "$TARGET/cluster-load-$i.log" 2>&1; then
    pass=$((pass + 1)); r=ok
  else
    r="FAIL (log: $TARGET/cluster-load-$i.log)"
  fi
  echo "run $i: $r in $(( $(date +%s) - s )) s"
done
echo "passed $pass of $RUNS"
[ "$pass" -eq "$RUNS" ]
