"""Reads a store with Delta Lake readers (the `deltalake` package, Polars
`scan_delta`, DuckDB's `delta` extension when given) and generic Parquet
readers (pyarrow, DuckDB) and checks it against what `nusomi sql` reports and
what the bundles hold.

usage: check_store.py NUSOMI_BIN STORE_DIR BUNDLES_DIR [DUCKDB_DELTA_PATH]

DUCKDB_DELTA_PATH: a folder holding a DuckDB with its `delta` extension
(scripts/test.sh installs duckdb 1.5.5 + duckdb-extension-delta there: the
extension is not published for the DuckDB the other checks use, and DuckDB
cannot download it offline).
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
duckdb_delta = sys.argv[4] if len(sys.argv) > 4 else None


def nusomi_sql(query):
    out = subprocess.run([nusomi, "sql", "--store", str(store), "--format", "json", query],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)




# Delta Lake readers: the two tables, as the logs define them.
from deltalake import DeltaTable
import polars as pl

SESSION_COLS = ["session_id", "workflow", "outcome", "started_at", "sealed_at", "seal",
                "frame_count", "event_count", "action_count", "instruction"]
ours_sessions = nusomi_sql(
    "SELECT session_id, workflow, outcome, CAST(started_at AS VARCHAR) AS started_at, "
    "CAST(sealed_at AS VARCHAR) AS sealed_at, seal, frame_count, event_count, action_count, "
    "instruction FROM sessions ORDER BY session_id")
ours_frames = nusomi_sql(
    "SELECT session_id, count(*) AS n, sum(t_ms) AS t "
    "FROM frames GROUP BY session_id ORDER BY session_id")


def session_rows(table):
    """Rows of a pyarrow sessions table in nusomi sql's JSON shape."""
    rows = []
    for r in sorted(table.select(SESSION_COLS).to_pylist(), key=lambda r: r["session_id"]):
        for c in ("started_at", "sealed_at"):
            r[c] = r[c].strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
        rows.append(r)
    return rows


def ours_rows():
    rows = []
    for r in ours_sessions:
        r = dict(r)
        for c in ("started_at", "sealed_at"):
            r[c] = r[c].replace("Z", "").rstrip("0").rstrip(".")
        rows.append(r)
    return rows


dt_sessions = DeltaTable(str(store / "sessions"))
dt_frames = DeltaTable(str(store / "frames"))
check(len(ours_sessions) > 0, f"nusomi sql sees {len(ours_sessions)} sessions")
check(session_rows(dt_sessions.to_pyarrow_table()) == ours_rows(),
      f"deltalake reads the same {len(ours_sessions)} session rows (every column compared)")
fr = dt_frames.to_pyarrow_table(columns=["session_id", "frame_idx", "t_ms", "image"]).to_pylist()
agg = {}
for r in fr:
    a = agg.setdefault(r["session_id"], [0, 0])
    a[0] += 1
    a[1] += r["t_ms"]
check([[k, *v] for k, v in sorted(agg.items())] == [[r["session_id"], r["n"], r["t"]] for r in ours_frames],
      f"deltalake reads the same frames ({len(fr)}: counts and t_ms per session)")
delta_images = {(r["session_id"], r["frame_idx"]): hashlib.sha256(r["image"]).hexdigest() for r in fr}
pl_sessions = pl.scan_delta(str(store / "sessions")).collect().to_arrow()
check(session_rows(pl_sessions) == ours_rows(), "Polars scan_delta reads the same session rows")
one = ours_sessions[len(ours_sessions) // 2]["session_id"]
pl_n = (pl.scan_delta(str(store / "frames")).filter(pl.col("session_id") == one)
        .select(pl.len()).collect().item())
check(pl_n == next(r["n"] for r in ours_frames if r["session_id"] == one),
      f"Polars scan_delta with a session_id filter reads that session's {pl_n} frames")
if duckdb_delta:
    code = f"""
import duckdb, json, sys
c = duckdb.connect(config={{"allow_unsigned_extensions": "true"}})
import duckdb_extension_delta, pathlib
ext = next(pathlib.Path(duckdb_extension_delta.__file__).parent.rglob("delta.duckdb_extension"))
c.execute(f"LOAD '{{ext}}'")
s = c.execute("SELECT session_id, frame_count, seal FROM delta_scan('{store / "sessions"}') ORDER BY 1").fetchall()
f = c.execute("SELECT session_id, count(*), sum(t_ms) FROM delta_scan('{store / "frames"}') GROUP BY 1 ORDER BY 1").fetchall()
print(json.dumps([s, f]))
"""
    env = dict(__import__("os").environ, PYTHONPATH=duckdb_delta)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout
    s_rows, f_rows = json.loads(out)
    check(s_rows == [[r["session_id"], r["frame_count"], r["seal"]] for r in ours_sessions],
          "DuckDB delta_scan reads the same sessions")
    check(f_rows == [[r["session_id"], r["n"], r["t"]] for r in ours_frames],
          "DuckDB delta_scan reads the same frames")

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
check(delta_images == by_key, "deltalake's images are the same bytes")

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
print("store readable by deltalake, Polars, pyarrow and DuckDB" + (" (incl. delta_scan)" if duckdb_delta else ""))
