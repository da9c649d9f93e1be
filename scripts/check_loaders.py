"""The loaders large training runs stream with, on real exports:

* MosaicML Streaming's `StreamingDataset` reads an MDS export (frames, and
  steps with splits: one dataset per split folder) with
  `validate_hash="sha256"`; every sample equals the JSON Lines export of the
  same spec, the image decodes to the bundle's pixels, a shuffled epoch
  resumes mid-way from `state_dict()` and sees each sample exactly once, and
  a flipped byte in a shard fails hash validation;
* `wids.ShardListDataset` reads `wids.json` beside a WebDataset export and
  gives random access to every sample.

Runs in its own venv (torch + mosaicml-streaming + wids; streaming's
dependencies would break `datasets` in the main one).

usage: check_loaders.py NUSOMI_BIN STORE_DIR BUNDLES_DIR WORK_DIR
"""
import io
import json
import pathlib
import shutil
import sys

from PIL import Image

from checks import check, export_create, listed_files_match

nusomi, store, bundles, work = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]), pathlib.Path(sys.argv[4])
work.mkdir(parents=True, exist_ok=True)

originals = {}
for b in bundles.iterdir():
    sid = json.loads((b / "session.json").read_text())["session_id"]
    for idx, line in enumerate((b / "frames.jsonl").read_text().splitlines()):
        originals[f"{sid}_{idx:06}"] = b / json.loads(line)["file"]


def export(fmt, name, extra=None):
    out = work / "loaders" / name
    spec = {
        "workflow": ["process_invoice", "triage_ticket", "update_crm_record", "book_travel", "reconcile_payments"],
        "format": fmt,
        "frame_sampling": {"mode": "event_only", "keep_action_frames": True},
        "destination": {"kind": "local", "path": str(out)},
        "shard_size_bytes": 1_000_000,
        "as_of": "2030-01-01T00:00:00Z",
        **(extra or {}),
    }
    spec_path = work / f"spec-loaders-{name}.json"
    spec_path.write_text(json.dumps(spec))
    job = export_create(nusomi, store, spec_path)
    check(job["status"] == "completed", f"{name}: export create completes")
    manifest = json.loads((out / "manifest.json").read_text())
    listed_files_match(out, manifest, name)
    return out, manifest


def jsonl_rows(out, manifest):
    rows = []
    for s in manifest["shards"]:
        rows.extend(json.loads(line) for line in (out / s["path"]).read_text().splitlines())
    return rows


from streaming import StreamingDataset  # noqa: E402

# Frames: every sample equals the JSON Lines row, the image is the bundle's.
# Read through `remote` (a local folder is a remote to streaming), so every
# shard is fetched and its SHA-256 checked against index.json.
mds, m = export("mds", "mds-frames")
check(len(m["shards"]) > 1, "mds: shards rolled at 1 MB")
jl, jm = export("jsonl", "jsonl-frames")
expected = jsonl_rows(jl, jm)
ds = StreamingDataset(remote=str(mds), local=str(work / "loaders" / "mds-frames-cache"), shuffle=False,
                      validate_hash="sha256", batch_size=1)
check(len(ds) == m["rows"] == len(expected), f"mds: StreamingDataset sees {len(ds)} samples, the manifest's rows")
for i, want in enumerate(expected):
    got = ds[i]
    for col, value in want.items():
        if col == "image":
            continue
        if got[col] != value:
            sys.exit(f"FAIL: mds: sample {i} column {col}: {got[col]!r} != {value!r}")
    img = got["image"]
    check_img = Image.open(originals[want["key"]])
    if i < 3 or i == len(expected) - 1:
        if img.size != check_img.size or img.convert("RGB").tobytes() != check_img.convert("RGB").tobytes():
            sys.exit(f"FAIL: mds: sample {i} image is not the bundle's frame")
print(f"ok: mds: {len(expected)} samples equal the JSON Lines export column by column; images decode to the bundle's pixels")

# A shuffled epoch, interrupted and resumed from state_dict, sees every
# sample exactly once.
shutil.rmtree("/tmp/streaming", ignore_errors=True)
keys_all = sorted(r["key"] for r in expected)
ds = StreamingDataset(local=str(mds), shuffle=True, shuffle_seed=7, validate_hash="sha256", batch_size=4)
first = []
it = iter(ds)
for _ in range(8):
    first.append(next(it)["key"])
state = ds.state_dict(num_samples=8, from_beginning=False)
del it, ds
shutil.rmtree("/tmp/streaming", ignore_errors=True)
ds2 = StreamingDataset(local=str(mds), shuffle=True, shuffle_seed=7, validate_hash="sha256", batch_size=4)
ds2.load_state_dict(state)
rest = [s["key"] for s in ds2]
check(sorted(first + rest) == keys_all, f"mds: a shuffled epoch resumed after 8 samples sees each of {len(keys_all)} once")
del ds2
shutil.rmtree("/tmp/streaming", ignore_errors=True)

# A flipped byte fails the SHA-256 the index carries.
bad = work / "loaders" / "mds-flipped"
shutil.copytree(mds, bad)
shard = bad / m["shards"][0]["path"]
data = bytearray(shard.read_bytes())
data[-10] ^= 0xFF
shard.write_bytes(bytes(data))
# Streaming checks hashes as it fetches a shard from `remote` into `local`.
try:
    flipped = StreamingDataset(remote=str(bad), local=str(work / "loaders" / "mds-cache"), shuffle=False,
                               validate_hash="sha256", batch_size=1)
    _ = [flipped[i] for i in range(len(flipped))]
    sys.exit("FAIL: mds: a flipped byte went unnoticed")
except Exception as e:  # streaming raises ValueError on a checksum mismatch
    check("checksum" in str(e).lower() or "hash" in str(e).lower(), f"mds: a flipped byte fails hash validation ({type(e).__name__})")
shutil.rmtree("/tmp/streaming", ignore_errors=True)

# Steps with splits: one MDS dataset per split folder.
steps_spec = {
    "unit": "step",
    "messages": {"preset": "sharegpt", "system": "You operate a computer."},
    "history": {"actions": 3, "frames": 2},
    "splits": {"train": 0.7, "val": 0.3},
}
smds, sm = export("mds", "mds-steps", steps_spec)
sjl, sjm = export("jsonl", "jsonl-steps", steps_spec)
for section in sm["splits"]:
    name = section["name"]
    if not section["shards"]:
        continue
    ds = StreamingDataset(local=str(smds), split=name, shuffle=False, validate_hash="sha256", batch_size=1)
    check(len(ds) == section["rows"], f"mds steps: split {name} has its section's {section['rows']} steps")
    want = {}
    jsec = next(s for s in sjm["splits"] if s["name"] == name)
    for p in jsec["shards"]:
        for line in (sjl / p).read_text().splitlines():
            r = json.loads(line)
            want[r["key"]] = r
    for i in range(len(ds)):
        got = ds[i]
        w = want[got["key"]]
        if got["messages"] != w["messages"] or got["action"] != w["action"] or got["observation_key"] != w["observation_key"]:
            sys.exit(f"FAIL: mds steps: {got['key']} differs from the JSON Lines step")
        if not isinstance(got["image"], Image.Image):
            sys.exit(f"FAIL: mds steps: {got['key']} has no observation image")
    print(f"ok: mds steps: split {name}: every step equals the JSON Lines step and carries its observation image")
    shutil.rmtree("/tmp/streaming", ignore_errors=True)

# wids: random access over a WebDataset export through wids.json.
import wids  # noqa: E402

wd, wm = export("webdataset", "wds-frames")
ds = wids.ShardListDataset(str(wd / "wids.json"), cache_dir=str(work / "wids-cache"))
check(len(ds) == wm["rows"], f"wids: ShardListDataset over wids.json has the {wm['rows']} samples")
keys = [r["key"] for r in expected]
for i in [0, len(ds) // 2, len(ds) - 1]:
    sample = ds[i]
    meta = sample[".json"]  # decoded by wids' default "PIL" transformations
    meta = meta if isinstance(meta, dict) else json.loads(meta.read())
    image = sample[".png"] if ".png" in sample else sample.get(".jpg")
    if meta["key"] != keys[i] or sample["__key__"] != keys[i]:
        sys.exit(f"FAIL: wids: sample {i} is {sample['__key__']}, expected {keys[i]}")
    original = Image.open(originals[keys[i]])
    if not isinstance(image, Image.Image) or image.convert("RGB").tobytes() != original.convert("RGB").tobytes():
        sys.exit(f"FAIL: wids: sample {i} does not hold the bundle's image")
print("ok: wids: random access returns the export's samples in order with the bundle's images")
print("exports readable by MosaicML Streaming (MDS) and wids (WebDataset)")
