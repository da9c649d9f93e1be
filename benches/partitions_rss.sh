#!/usr/bin/env bash
# Peak RSS of an export with `partitions: 4096` and 16 splits against a plain
# export of the same store, in one run (issue 23's memory finding).
#
# usage: benches/partitions_rss.sh NUSOMI_BIN STORE_DIR [RUNS]
# The store: e.g. `nusomi demo --dir /tmp/big --sessions 240` (348 MB).
# Prints one line per export: peak RSS (KiB, /usr/bin/time's %M) and wall s.
set -euo pipefail
bin=$1 store=$2 runs=${3:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
base = {"workflow": ["process_invoice", "triage_ticket", "update_crm_record", "book_travel",
                     "reconcile_payments"], "format": "parquet", "shard_size_bytes": 64 << 20}
json.dump(dict(base, destination={"kind": "local", "path": f"{work}/plain"}),
          open(f"{work}/plain.json", "w"))
json.dump(dict(base, destination={"kind": "local", "path": f"{work}/wide"}, partitions=4096,
               splits={f"s{i:02}": 1 / 16 for i in range(16)}), open(f"{work}/wide.json", "w"))
PY
for _ in $(seq "$runs"); do
  for k in plain wide; do
    rm -rf "${work:?}/$k"
    /usr/bin/time -f "$k peak_rss_kib=%M wall_s=%e" "$bin" export create --store "$store" \
      "$work/$k.json" 2>&1 >/dev/null | tail -n 1
  done
done
