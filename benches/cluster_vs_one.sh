#!/usr/bin/env bash
# One node against a Ballista cluster of two executors on this machine: the
# same export (every frame, `partitions` 4) run in turn RUNS times each, with
# the median wall time of each and their ratio, and a check that every run's
# manifest is byte-identical (the point: same bytes, whichever engine).
#
#   benches/cluster_vs_one.sh [FORMAT] [SESSIONS]     (defaults: parquet 48)
#
# Uses target/release/nusomi when it was built with the cluster feature
# (the default; `cargo build --release`), else builds the debug one.
# The scheduler and executors listen on 127.0.0.1 and are stopped at exit.
# Both share this machine's cores: equal times are the expected outcome.
set -euo pipefail
cd "$(dirname "$0")/.."
FORMAT=${1:-parquet}
SESSIONS=${2:-48}
RUNS=${RUNS:-5}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
WORK=$TARGET/cluster-bench
BIN=${BIN:-$TARGET/release/nusomi}
mkdir -p "$WORK"
# The cluster's shared secret: every process and the client read it.
export NUSOMI_CLUSTER_SECRET_FILE=$WORK/secret
[ -s "$NUSOMI_CLUSTER_SECRET_FILE" ] || head -c 48 /dev/urandom | base64 > "$NUSOMI_CLUSTER_SECRET_FILE"
# A binary with the feature refuses a scheduler address without a port at once.
PROBE=$([ -x "$BIN" ] && "$BIN" cluster executor --scheduler probe 2>&1 || true)
if [[ $PROBE != *"is not HOST:PORT"* ]]; then
  cargo build --bin nusomi
  BIN=$TARGET/debug/nusomi
fi
echo "binary: $BIN"
mkdir -p "$WORK"
STORE=$WORK/demo-$SESSIONS/store
[ -d "$STORE" ] || "$BIN" demo --dir "$WORK/demo-$SESSIONS" --sessions "$SESSIONS" > "$WORK/demo.log"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SP=$(port)
"$BIN" cluster scheduler --port "$SP" > "$WORK/scheduler.log" 2>&1 & PIDS+=($!)
for i in 1 2; do
  "$BIN" cluster executor --scheduler "127.0.0.1:$SP" --port "$(port)" --grpc-port "$(port)" \
    --concurrent-tasks 2 --work-dir "$WORK/executor-$i" > "$WORK/executor-$i.log" 2>&1 & PIDS+=($!)
done
sleep 3

OUT=$WORK/out
cat > "$WORK/spec.json" <<JSON
{"workflow": ["process_invoice", "triage_ticket", "update_crm_record", "book_travel", "reconcile_payments"],
 "format": "$FORMAT", "as_of": "2030-01-01T00:00:00Z", "frame_sampling": {"mode": "all"},
 "partitions": 4, "destination": {"kind": "local", "path": "$OUT"}}
JSON
one() { # MODE: prints wall seconds, keeps the manifest's SHA-256
  rm -rf "$OUT"
  local args=(export create --store "$STORE" "$WORK/spec.json")
  [ "$1" = cluster ] && args+=(--cluster "df://127.0.0.1:$SP")
  local t0 t1
  t0=$(date +%s.%N); "$BIN" "${args[@]}" > /dev/null; t1=$(date +%s.%N)
  sha256sum "$OUT/manifest.json" | cut -c1-64 >> "$WORK/manifests-$1"
  echo "$t1 - $t0" | bc
}
rm -f "$WORK"/manifests-*
one single > /dev/null; one cluster > /dev/null   # warm-up
rm -f "$WORK"/manifests-*
S=(); C=()
for _ in $(seq 1 "$RUNS"); do S+=("$(one single)"); C+=("$(one cluster)"); done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
MS=$(median "${S[@]}"); MC=$(median "${C[@]}")
BYTES=$(du -sb "$OUT" | cut -f1)
echo "format $FORMAT, $SESSIONS sessions, $(( BYTES / 1000000 )) MB written, $RUNS runs each"
echo "one node:           median ${MS}s  (${S[*]})"
echo "2 executors:        median ${MC}s  (${C[*]})"
echo "cluster / one node: $(echo "scale=2; $MC / $MS" | bc)"
if [ "$(sort -u "$WORK"/manifests-* | wc -l)" = 1 ]; then
  echo "manifests: all $((RUNS * 2)) byte-identical"
else
  echo "manifests DIFFER" >&2; exit 1
fi
