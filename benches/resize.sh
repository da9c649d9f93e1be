#!/usr/bin/env bash
# A `smart_resize` step export against the same step export without
# resizing, side by side in one run (issue 25's target: the resized export at
# least 0.5x the throughput of the plain one). Both write Parquet step rows
# with their observations; the only difference is `coordinates`: `pixels`
# (the frame's bytes as they are) or `smart_resize` (every observation
# decoded, resized as Pillow's BICUBIC to Qwen2.5-VL's size, encoded again).
# Then the same resized export against the floor of its work done by Pillow
# alone (scripts/pillow_resize_floor.py: decode, BICUBIC, encode, SHA-256,
# write; one process per core), the yardstick for the resize itself.
# Builds the release binary once (reused afterwards) and a demo store of
# SESSIONS sessions (default 40, 960x600 frames) under target/resize-bench/.
# usage: benches/resize.sh [SESSIONS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${1:-40}
RUNS=${2:-5}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$TARGET/release/nusomi
VENV=${NUSOMI_VENV:-$PWD/.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/requirements.txt
WORK=$TARGET/resize-bench
cargo build --release --bin nusomi
mkdir -p "$WORK"
if [ ! -f "$WORK/demo-$SESSIONS.done" ]; then
  rm -rf "$WORK/demo"
  "$BIN" demo --dir "$WORK/demo" --sessions "$SESSIONS" > "$WORK/demo.log"
  touch "$WORK/demo-$SESSIONS.done"
fi
python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
base = {"workflow": ["process_invoice", "triage_ticket", "update_crm_record", "book_travel",
                     "reconcile_payments"], "format": "parquet", "unit": "step",
        "as_of": "2030-01-01T00:00:00Z"}
for name, coords in [("plain", "pixels"), ("resized", "smart_resize")]:
    json.dump(dict(base, coordinates=coords, destination={"kind": "local", "path": f"{work}/{name}"}),
              open(f"{work}/{name}.json", "w"))
PY
run() { echo "rm -rf $WORK/$1 && $BIN export create --store $WORK/demo/store $WORK/$1.json > /dev/null"; }
sh -c "$(run plain)"
rows=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['rows'])" "$WORK/plain/manifest.json")
echo "step rows (observations) per export: $rows"
farm-bench -n "$RUNS" --timeout 3000 --vs "sh -c '$(run plain)'" -- sh -c "$(run resized)" | tee "$WORK/farm-bench.txt"
echo "throughput of the resized export / the plain one = 1 / (the median wall ratio A/B above)"
sh -c "$(run resized)"
floor="rm -rf $WORK/pillow && $VENV/bin/python scripts/pillow_resize_floor.py $WORK/plain $WORK/resized $WORK/pillow"
farm-bench -n "$RUNS" --timeout 3000 --vs "sh -c '$floor'" -- sh -c "$(run resized)" | tee -a "$WORK/farm-bench.txt"
echo "A/B < 1: the resized export is faster than Pillow doing only its resize work"
