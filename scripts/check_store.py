"""Reads a store with generic Parquet readers (pyarrow, DuckDB) and checks it
against what `nusomi sql` reports and what the bundles hold.

usage: check_store.py NUSOMI_BIN STORE_DIR BUNDLES_DIR
"""
import hashlib
import json
import pathlib
import subprocess
import sys

import duckdb
import pyarrow.dataset as ds

from checks import check

nusomi, store, bundles = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])


def nusomi_sql(query):
    out = subprocess.run([nusomi, "sql", "--store", str(store), "--format", "json", query],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)




# pyarrow: the two folders are datasets of their own.
frames = ds.dataset(store / "frames", format="parquet")
sessions = ds.dataset(store / "sessions", format="parquet")
ours = nusomi_sql("SELECT count(*) AS n, sum(t_ms) AS t FROM frames")[0]
check(frames.count_rows() == ours["n"], f"pyarrow sees {ours['n']} frames")
ft = frames.to_table(columns=["session_id", "frame_idx", "t_ms", "image", "events"])
check(sum(ft.column("t_ms").to_pylist()) == ours["t"], "pyarrow t_ms sum matches")
n_sessions = nusomi_sql("SELECT count(*) AS n FROM sessions")[0]["n"]
check(sessions.count_rows() == n_sessions, f"pyarrow sees {n_sessions} sessions")
check(str(sessions.schema.field("started_at").type) == "timestamp[us, tz=UTC]", "started_at is a UTC timestamp")

# Image bytes are the bundles' files, unchanged.
by_key = {}
for sid, idx, img in zip(ft.column("session_id").to_pylist(), ft.column("frame_idx").to_pylist(),
                         ft.column("image").to_pylist()):
    by_key[(sid, idx)] = hashlib.sha256(img).hexdigest()
checked = 0
for bundle in sorted(bundles.iterdir()):
    sid = json.loads((bundle / "session.json").read_text())["session_id"]
    for idx, line in enumerate((bundle / "frames.jsonl").read_text().splitlines()):
        f = json.loads(line)["file"]
        want = hashlib.sha256((bundle / f).read_bytes()).hexdigest()
        if by_key.get((sid, idx)) != want:
            sys.exit(f"FAIL: image {sid}/{idx} differs from {bundle / f}")
        checked += 1
check(checked == ours["n"], f"{checked} images byte-identical to the bundles'")

# DuckDB over the documented globs, no Hive guessing needed.
con = duckdb.connect()
g = str(store / "frames" / "**" / "*.parquet")
n, img_bytes, wf = con.execute(
    f"SELECT count(*), sum(octet_length(image)), count(DISTINCT workflow) FROM read_parquet('{g}')").fetchone()
check(n == ours["n"], "DuckDB sees the same frames")
want_bytes = sum(p.stat().st_size for p in bundles.glob("*/frames/*"))
check(img_bytes == want_bytes, f"DuckDB image bytes = bundle frame bytes ({want_bytes})")
sg = str(store / "sessions" / "**" / "*.parquet")
rows = con.execute(
    f"SELECT s.workflow, count(*) FROM read_parquet('{sg}') s JOIN read_parquet('{g}') f USING (session_id) "
    "GROUP BY 1 ORDER BY 1").fetchall()
ours_wf = nusomi_sql("SELECT s.workflow AS w, count(*) AS n FROM sessions s JOIN frames f USING (session_id) "
                     "GROUP BY 1 ORDER BY 1")
check([(r["w"], r["n"]) for r in ours_wf] == [(w, c) for w, c in rows], "DuckDB join by workflow matches")
print("store readable by pyarrow and DuckDB")
