#!/usr/bin/env bash
# How the store's costs grow with its size (issue 12's table): for each N,
# builds a store of N one-frame sessions (scripts/make_store.py: one 32×24
# PNG and one click each, spread over 2026) under target/scale/, then times
# with the release binary, each a separate process (wall seconds and peak
# RSS from /usr/bin/time; the median of RUNS runs):
#   seal      sealing all N bundles in one `nusomi seal --bundles-from` call
#             (once per store; also the Delta log entries it wrote per table)
#   count     nusomi sql "SELECT count(*) FROM sessions"
#   export2   an export of the 2 sessions of a narrow started_at window (Parquet)
# count and export2 also report the store's object-store requests
# (NUSOMI_COUNT_REQUESTS=1; destination writes not included).
# Prints one Markdown row per N. Builds the release binary once (reused).
# With SCALE_STORE_URL (e.g. s3://bucket/scale, credentials from AWS_*), the
# stores live at $SCALE_STORE_URL/<N> instead of target/scale/<N>/store
# (log entries are then not counted).
# With NUSOMI_BIN, that binary is timed instead (no build: e.g. two debug
# builds of two commits side by side, each with its own SCALE_WORK folder);
# with OPTIMIZE=1, `nusomi store optimize` runs after sealing (timed, shown
# after the seal figures).
# usage: benches/store_scale.sh [N ...]   (default: 1000 10000 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${*:-1000 10000 100000}
RUNS=${RUNS:-3}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
BIN=${NUSOMI_BIN:-$TARGET/release/nusomi}
WORK=${SCALE_WORK:-$TARGET/scale}
export NUSOMI_COUNT_REQUESTS=1
[ -n "${NUSOMI_BIN:-}" ] || cargo build --release --bin nusomi
mkdir -p "$WORK"

# Wall seconds, peak RSS (MiB) and store requests of one run of "$@":
# "<wall> <mib> <requests>".
measure() {
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" > /dev/null 2> "$WORK/stderr.txt" || {
    cat "$WORK/stderr.txt" >&2
    return 1
  }
  req=$(sed -n 's/^object-store requests: \([0-9]*\).*/\1/p' "$WORK/stderr.txt" | tail -n 1)
  awk -v r="${req:-?}" '{printf "%s %.0f %s\n", $1, $2 / 1024, r}' "$WORK/time.txt"
}

# Median over RUNS runs of "$@": "<wall> <mib>".
median() {
  for _ in $(seq "$RUNS"); do measure "$@"; done | sort -n | awk '{a[NR]=$0} END {print a[int((NR + 1) / 2)]}'
}

iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

echo "| sessions | seal (one call): wall s / peak MiB / log entries per table | count(*): wall s / peak MiB / requests | export of 2 sessions: wall s / peak MiB / requests |"
echo "|---|---|---|---|"
for n in $SIZES; do
  dir=$WORK/$n
  store=${SCALE_STORE_URL:+$SCALE_STORE_URL/$n}
  store=${store:-$dir/store}
  marker=$dir/sealed-delta${SCALE_STORE_URL:+-$(echo "$SCALE_STORE_URL" | tr -c 'a-z0-9\n' _)}
  if [ ! -f "$marker" ]; then
    [ -n "${SCALE_STORE_URL:-}" ] || rm -rf "$dir/store"
    python3 scripts/make_store.py "$n" "$dir/bundles" > /dev/null  # keeps bundles already there
    (cd "$dir/bundles" && ls | sed "s|^|$dir/bundles/|") > "$dir/bundles.txt"
    seal=$(measure "$BIN" seal --store "$store" --bundles-from "$dir/bundles.txt")
    if [ -d "$store/sessions/_delta_log" ]; then
      entries=$(( $(ls "$store/sessions/_delta_log" | grep -c '\.json$') - 1 ))
    else
      entries="-"
    fi
    if [ "${OPTIMIZE:-0}" = 1 ]; then
      opt=$(measure "$BIN" store optimize "$store" | awk '{print $1}')
      entries="$entries, optimize $opt s"
    fi
    echo "$seal $entries" | awk '{$3 = ""; print}' > "$marker"
  fi
  seal=$(cat "$marker")
  count=$(median "$BIN" sql --store "$store" "SELECT count(*) FROM sessions")
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
  export2=$(median sh -c "rm -rf '$dir/export' && exec '$BIN' export create --store '$store' '$dir/spec.json'")
  rows=$(python3 -c "import json; m = json.load(open('$dir/export/manifest.json')); print(m['sessions'])")
  [ "$rows" = 2 ] || { echo "the export selected $rows sessions, not 2" >&2; exit 1; }
  fmt() { awk '{printf "%s / %s / %s", $1, $2, $3}' <<< "$1"; }
  sealfmt() { awk '{printf "%s / %s / ", $1, $2; for (i = 3; i <= NF; i++) printf "%s%s", $i, (i < NF ? " " : "")}' <<< "$1"; }
  echo "| $n | $(sealfmt "$seal") | $(fmt "$count") | $(fmt "$export2") |"
done
