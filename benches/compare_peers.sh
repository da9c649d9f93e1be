#!/usr/bin/env bash
# Times our export against peers on the same selection of one store, hashing
# included, and prints ratios (peer time / our time; > 1 means we are faster):
#   nusomi export create (parquet, webdataset)  vs
#   Polars sink_parquet, DuckDB COPY … (FORMAT parquet, FILE_SIZE_BYTES …),
#   pyarrow + webdataset ShardWriter.
# Builds the release binary once (reused afterwards) and a demo store of
# SESSIONS sessions (default 200, ≈ 0.5 GB of frames) under target/peers/.
# usage: benches/compare_peers.sh [SESSIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${1:-200}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
VENV=${NUSOMI_VENV:-$PWD/.venv}
WORK=$TARGET/peers
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/requirements.txt
cargo build --release --bin nusomi
mkdir -p "$WORK"
if [ ! -f "$WORK/demo-$SESSIONS.done" ]; then
  rm -rf "$WORK/demo"
  "$TARGET/release/nusomi" demo --dir "$WORK/demo" --sessions "$SESSIONS" > "$WORK/demo.log"
  touch "$WORK/demo-$SESSIONS.done"
fi
"$VENV/bin/python" scripts/compare_peers.py "$TARGET/release/nusomi" "$WORK/demo/store" "$WORK"
