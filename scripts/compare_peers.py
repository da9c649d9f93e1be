"""Export the same selection (every frame of every workflow, in
(session_id, frame_idx) order, the export columns) with nusomi and with peers,
hashing every output file, and print wall time, MB/s of output, peak RSS and
ratios. Called by benches/compare_peers.sh.

usage: compare_peers.py NUSOMI_BIN STORE_DIR WORK_DIR
"""
import glob
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time

nusomi, store, work = sys.argv[1], sys.argv[2], sys.argv[3]
SHARD = 256 * 1024 * 1024
WORKFLOWS = ["process_invoice", "triage_ticket", "update_crm_record", "book_travel", "reconcile_payments"]


def hash_files(files):
    total = 0
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        total += os.path.getsize(f)
    return total


def fresh(name):
    d = os.path.join(work, "out", name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def run_nusomi(fmt):
    out = fresh(f"nusomi-{fmt}")
    spec = {"workflow": WORKFLOWS, "format": fmt, "frame_sampling": {"mode": "all"},
            "destination": {"kind": "local", "path": out}, "shard_size_bytes": SHARD,
            "as_of": "2030-01-01T00:00:00Z"}
    path = os.path.join(work, f"spec-{fmt}.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    t = time.time()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", nusomi, "export", "create", "--store", store, "--json", path],
                       check=True, capture_output=True, text=True)
    dt = time.time() - t
    rss_kb = int(r.stderr.strip().splitlines()[-1])
    size = sum(os.path.getsize(f) for f in glob.glob(out + "/shard-*"))
    return dt, size, rss_kb


def child_rss():
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


QUERY = """SELECT f.session_id || '_' || lpad(CAST(f.frame_idx AS VARCHAR), 6, '0') AS key, f.session_id, s.workflow,
  s.outcome, s.actor_kind, s.actor_id, s.started_at, s.tags, s.paths, f.frame_idx, f.t_ms, f.image,
  f.image_format, f.width, f.height, f.is_keyframe, f.events
FROM read_parquet('{store}/frames/**/*.parquet') f JOIN read_parquet('{store}/sessions/**/*.parquet') s
  USING (session_id) ORDER BY f.session_id, f.frame_idx"""


PEERS = {
    "duckdb": """
import duckdb, sys
out = sys.argv[2]
con = duckdb.connect()
q = sys.argv[3]
con.execute(f"COPY ({q}) TO '{out}' (FORMAT parquet, FILE_SIZE_BYTES {SHARD})")
""",
    "polars": """
import polars as pl, sys
store, out = sys.argv[1], sys.argv[2]
f = pl.scan_parquet(f"{store}/frames/**/*.parquet")
s = pl.scan_parquet(f"{store}/sessions/**/*.parquet").select(["session_id", "workflow", "outcome", "actor_kind", "actor_id", "started_at", "tags", "paths"])
q = (f.join(s, on="session_id")
      .with_columns((pl.col("session_id") + "_" + pl.col("frame_idx").cast(pl.String).str.zfill(6)).alias("key"))
      .select(["key", "session_id", "workflow", "outcome", "actor_kind", "actor_id", "started_at", "tags", "paths", "frame_idx", "t_ms", "image", "image_format", "width", "height", "is_keyframe", "events"])
      .sort(["session_id", "frame_idx"]))
q.sink_parquet(f"{out}/part-0.parquet")
""",
    "pyarrow+webdataset": """
import pyarrow.dataset as ds, pyarrow.parquet as pq, webdataset as wds, json, sys, glob, os
store, out = sys.argv[1], sys.argv[2]
sessions = ds.dataset(f"{store}/sessions", format="parquet").to_table()
meta = {r["session_id"]: r for r in sessions.select(["session_id", "workflow", "outcome", "actor_kind", "actor_id"]).to_pylist()}
# One frames file per session, named <session_id>-<seal16>.parquet.
files = {os.path.basename(p).rsplit("-", 1)[0]: p for p in glob.glob(f"{store}/frames/**/*.parquet", recursive=True)}
with wds.ShardWriter(f"{out}/shard-%06d.tar", maxsize=SHARD, verbose=0) as sink:
    for sid in sorted(meta):
        t = pq.read_table(files[sid]).sort_by("frame_idx")
        for r in t.to_pylist():
            key = f"{sid}_{r['frame_idx']:06}"
            ext = "jpg" if r["image_format"] == "jpeg" else "png"
            info = {k: v for k, v in r.items() if k not in ("image", "started_at")}
            info.update({k: v for k, v in meta[sid].items()})
            sink.write({"__key__": key, ext: r["image"], "json": json.dumps(info, default=str).encode()})
""",
}


def run_peer(name):
    out = fresh(name)
    code = f"SHARD = {SHARD}\n" + PEERS[name]
    before = child_rss()
    t = time.time()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-c", code, store, out, QUERY.format(store=store)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"{name}: failed: {r.stderr[-400:]}")
        return None
    size = hash_files(sorted(glob.glob(out + "/*")))
    dt = time.time() - t
    return dt, size, int(r.stderr.strip().splitlines()[-1])


rows = []
for fmt in ["parquet", "webdataset"]:
    dt, size, rss = run_nusomi(fmt)
    rows.append((f"nusomi {fmt}", dt, size, rss))
for peer in PEERS:
    res = run_peer(peer)
    if res:
        rows.append((peer, *res))
ours = {r[0]: r[1] for r in rows}
print(f"\n{'exporter':<22}{'seconds':>9}{'MB out':>9}{'MB/s':>8}{'peak RSS MB':>13}{'time / ours':>13}")
for name, dt, size, rss in rows:
    base = ours["nusomi webdataset"] if "webdataset" in name else ours["nusomi parquet"]
    print(f"{name:<22}{dt:>9.2f}{size / 1e6:>9.1f}{size / 1e6 / dt:>8.1f}{rss / 1024:>13.0f}{dt / base:>13.2f}")
