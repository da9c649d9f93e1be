#!/usr/bin/env bash
# How the store's costs grow with its size (issue 12's table): for each N,
# builds a store of N one-frame sessions (scripts/make_store.py: one 32×24
# PNG and one click each, spread over 2026) under target/scale/, then times
# with the release binary, each a separate process (wall seconds and peak
# RSS from /usr/bin/time; the median of RUNS runs):
#   seal      sealing all N bundles, one `nusomi seal` call per 40,000 (once)
#   count     nusomi sql "SELECT count(*) FROM sessions"
#   export2   an export of the 2 sessions of a narrow started_at window (Parquet)
# Prints one Markdown row per N. Builds the release binary once (reused).
# usage: benches/store_scale.sh [N ...]   (default: 1000 10000 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${*:-1000 10000 100000}
RUNS=${RUNS:-3}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$TARGET/release/nusomi
WORK=$TARGET/scale
cargo build --release --bin nusomi
mkdir -p "$WORK"

# Wall seconds and peak RSS (MiB) of one run of "$@": "<wall> <mib>".
measure() {
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" > /dev/null 2> "$WORK/stderr.txt" || {
    cat "$WORK/stderr.txt" >&2
    return 1
  }
  awk '{printf "%s %.0f\n", $1, $2 / 1024}' "$WORK/time.txt"
}

# Median over RUNS runs of "$@": "<wall> <mib>".
median() {
  for _ in $(seq "$RUNS"); do measure "$@"; done | sort -n | awk '{a[NR]=$0} END {print a[int((NR + 1) / 2)]}'
}

iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

echo "| sessions | seal (one call): wall s / peak MiB | count(*): wall s / peak MiB | export of 2 sessions: wall s / peak MiB |"
echo "|---|---|---|---|"
for n in $SIZES; do
  dir=$WORK/$n
  if [ ! -f "$dir/sealed" ]; then
    rm -rf "$dir/store"
    python3 scripts/make_store.py "$n" "$dir/bundles" > /dev/null  # keeps bundles already there
    # At most 40,000 bundle names per call (the kernel's argument limit):
    # larger stores are sealed in several calls, wall times summed.
    seal=$(cd "$dir/bundles" && ls | xargs -n 40000 echo | while read -r names; do
      # shellcheck disable=SC2086
      measure "$BIN" seal --store "$dir/store" $names
    done | awk '{w += $1; if ($2 > m) m = $2} END {printf "%.2f %d\n", w, m}')
    echo "$seal" > "$dir/sealed"
  fi
  seal=$(cat "$dir/sealed")
  count=$(median "$BIN" sql --store "$dir/store" "SELECT count(*) FROM sessions")
  # Sessions start at 2026-01-01 + i·(365 d / n): a window of two of them.
  start=1767225600
  i=$((n / 2))
  since=$(iso $((start + i * 31536000 / n)))
  until=$(iso $((start + (i + 2) * 31536000 / n)))
  cat > "$dir/spec.json" <<EOF
{"workflow": ["process_invoice", "triage_ticket", "update_crm_record", "book_travel", "reconcile_payments"],
 "format": "parquet", "frame_sampling": {"mode": "all"}, "as_of": "2030-01-01T00:00:00Z",
 "filter": {"since": "$since", "until": "$until"},
 "destination": {"kind": "local", "path": "$dir/export"}}
EOF
  export2=$(median sh -c "rm -rf '$dir/export' && exec '$BIN' export create --store '$dir/store' '$dir/spec.json'")
  rows=$(python3 -c "import json; m = json.load(open('$dir/export/manifest.json')); print(m['sessions'])")
  [ "$rows" = 2 ] || { echo "the export selected $rows sessions, not 2" >&2; exit 1; }
  fmt() { awk '{printf "%s / %s", $1, $2}' <<< "$1"; }
  echo "| $n | $(fmt "$seal") | $(fmt "$count") | $(fmt "$export2") |"
done
