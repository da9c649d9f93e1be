"""Reads `"unit": "step"` exports of a store with the readers trainers use:
Hugging Face `datasets` (Parquet steps: the observation decodes as a PIL image
of the stored size), LLaMA-Factory's sharegpt rules (JSON Lines `messages` +
`images`: optional system turn, user/assistant alternating, one `<image>` per
listed image, every image path exists), Qwen-VL fine-tuning's shape (`image`
list + `conversations` human/gpt) and the `webdataset` library (each observed
frame's image stored once; history keys resolve inside the export).

LLaMA-Factory itself needs torch, so its sharegpt converter's checks are
restated here (src/llamafactory/data/converter.py: SharegptDatasetConverter;
mm_plugin: the number of `<image>` tokens must equal the number of images).

usage: check_steps.py NUSOMI_BIN STORE_DIR WORK_DIR
"""
import glob
import json
import os
import pathlib
import shutil
import sys

from checks import check, export_create, listed_files_match, offline_datasets

nusomi, store, work = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
offline_datasets(work)


def export(name, fmt, extra, partitions=None, folder=None):
    out = work / "steps" / (folder or name)
    spec = {
        "workflow": ["process_invoice", "triage_ticket", "update_crm_record", "book_travel", "reconcile_payments"],
        "format": fmt,
        "unit": "step",
        "destination": {"kind": "local", "path": str(out)},
        "shard_size_bytes": 2_000_000,
        "as_of": "2030-01-01T00:00:00Z",
        **extra,
    }
    spec_path = work / f"spec-steps-{folder or name}.json"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ)
    if partitions:
        env["DATAFUSION_EXECUTION_TARGET_PARTITIONS"] = str(partitions)
    job = export_create(nusomi, store, spec_path, env)
    check(job["status"] == "completed", f"{name}: step export completed")
    manifest = json.loads((out / "manifest.json").read_text())
    listed = listed_files_match(out, manifest, name)
    check(manifest["rows"] > 0 and manifest["actions"] == manifest["rows"],
          f"{name}: {manifest['rows']} steps, {len(listed)} files match the manifest")
    return out, manifest


import datasets

# Parquet steps in Qwen2.5-VL coordinates, loaded by `datasets`.
# The folder's name is unique: `datasets` caches a folder loaded through its
# card under the folder's base name, so another `parquet/` folder loaded
# earlier in the same cache (check_exports.py's) would be returned instead.
out, m = export("parquet", "parquet", {
    "coordinates": {"smart_resize": {"factor": 28, "min_pixels": 3136, "max_pixels": 1003520}},
    "history": {"actions": 4, "frames": 2},
    "messages": {"preset": "sharegpt", "system": "You are a GUI agent.", "action_syntax": "pyautogui"},
}, folder="steps-parquet")
ds = datasets.load_dataset(str(out), split="train")
check(len(ds) == m["rows"], "parquet: datasets loads every step through the dataset card")
obs_keys = set(ds["observation_key"])
for row in ds.select(range(0, len(ds), max(1, len(ds) // 25))):
    img = row["image"]
    if img.size != (row["image_width"], row["image_height"]) or img.size[0] % 28 or img.size[1] % 28:
        sys.exit(f"FAIL: parquet: {row['key']}: image {img.size} is not the smart_resize size")
    a = row["action"]
    if a["x"] is not None and not (0 <= a["x"] < row["image_width"] and 0 <= a["y"] < row["image_height"]):
        sys.exit(f"FAIL: parquet: {row['key']}: {a} is off the resized image")
    if any(k not in obs_keys for k in row["history_keys"]):
        sys.exit(f"FAIL: parquet: {row['key']}: a history key is not in the export")
    if row["messages"][-1]["content"] != row["action_text"]:
        sys.exit(f"FAIL: parquet: {row['key']}: the assistant turn is not the action")
check(True, "parquet: observations are PIL images of the smart_resize size, actions on them, history keys resolve")
check(sum(m["steps"]["types"].values()) == m["rows"], "parquet: the manifest counts every action type")


def llamafactory_sharegpt(row, root):
    """LLaMA-Factory's sharegpt rules with tags role/content, user/assistant/system."""
    msgs = row["messages"]
    if msgs and msgs[0]["role"] == "system":
        msgs = msgs[1:]
    if len(msgs) == 0 or len(msgs) % 2:
        return "odd number of turns"
    for i, t in enumerate(msgs):
        if t["role"] != ("user", "assistant")[i % 2]:
            return f"turn {i} is {t['role']}"
        if not isinstance(t["content"], str):
            return f"turn {i} has no text"
    n = sum(t["content"].count("<image>") for t in row["messages"])
    if n != len(row["images"]):
        return f"{n} <image> tokens for {len(row['images'])} images"
    for p in row["images"]:
        if not (root / p).is_file():
            return f"image {p} does not exist"
    return None


out, m = export("sharegpt", "jsonl", {
    "coordinates": "normalized_1000",
    "history": {"actions": 3, "frames": 3},
    "messages": {"preset": "sharegpt", "system": "You are a GUI agent.", "action_syntax": "pyautogui"},
})
rows = [json.loads(line) for f in sorted(glob.glob(str(out / "shard-*.jsonl"))) for line in open(f)]
for r in rows:
    problem = llamafactory_sharegpt(r, out)
    if problem:
        sys.exit(f"FAIL: sharegpt: {r['key']}: {problem}")
check(len(rows) == m["rows"], f"sharegpt: {len(rows)} samples pass LLaMA-Factory's sharegpt rules")
check(len(list((out / "images").iterdir())) == m["steps"]["observations"] == m["images"]["count"],
      "sharegpt: one image file per observed frame")
check(any(len(r["images"]) > 1 for r in rows), "sharegpt: history screenshots are part of the samples")
dsj = datasets.load_dataset("json", data_files=sorted(glob.glob(str(out / "shard-*.jsonl"))), split="train")
check(len(dsj) == m["rows"], "sharegpt: datasets reads the JSON Lines as LLaMA-Factory does")

out, m = export("qwen_vl", "jsonl", {
    "coordinates": {"smart_resize": {}},
    "history": {"frames": 1},
    "messages": {"preset": "qwen_vl", "system": "You are a GUI agent.", "action_syntax": "json"},
})
rows = [json.loads(line) for f in sorted(glob.glob(str(out / "shard-*.jsonl"))) for line in open(f)]
for r in rows:
    conv = r["conversations"]
    ok = ([t["from"] for t in conv] == ["human", "gpt"]
          and conv[0]["value"].count("<image>") == len(r["image"])
          and all((out / p).is_file() for p in r["image"])
          and json.loads(conv[1]["value"])["type"] == r["action"]["type"])
    if not ok:
        sys.exit(f"FAIL: qwen_vl: {r['key']} is not a Qwen-VL fine-tuning sample")
check(len(rows) == m["rows"], "qwen_vl: every sample has image paths that exist, one <image> each, human/gpt turns")

# WebDataset: the webdataset library; images stored once.
import webdataset as wds
out, m = export("webdataset", "webdataset", {"history": {"actions": 2, "frames": 4}})
urls = sorted(glob.glob(str(out / "shard-*.tar")))
images, steps = {}, []
for sample in wds.WebDataset(urls, shardshuffle=False).decode("pil"):
    for ext in ("png", "jpg"):
        if ext in sample:
            if sample["__key__"] in images:
                sys.exit(f"FAIL: webdataset: {sample['__key__']} stored twice")
            images[sample["__key__"]] = sample[ext]
    if "json" in sample:
        steps.append(sample["json"])
observed = {s["observation_key"] for s in steps}
check(len(steps) == m["rows"], "webdataset: every step is a sample")
check(set(images) == observed and len(images) == m["steps"]["observations"],
      f"webdataset: {len(images)} image files = distinct observation frames")
check(all(k in images for s in steps for k in s["history_keys"]), "webdataset: every history key resolves inside the export")
check(all(images[s["observation_key"]].size == (s["width"], s["height"]) for s in steps),
      "webdataset: observations keep their original size (pixels)")


# Determinism on the demo store: every format, a second run under another
# partitioning writes the same bytes (shards, image files, card, manifest).
def tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


for fmt in ("parquet", "arrow", "jsonl", "webdataset"):
    extra = {"coordinates": "normalized_1000", "history": {"actions": 2, "frames": 2},
             "messages": {"preset": "sharegpt"}}
    a, _ = export(f"det-{fmt}", fmt, extra, partitions=1)
    ta = tree(a)
    shutil.rmtree(a)
    b, _ = export(f"det-{fmt}", fmt, extra, partitions=4)
    tb = tree(b)
    check(ta.keys() == tb.keys() and all(ta[k] == tb[k] for k in ta),
          f"{fmt}: a step export of the demo store is byte-identical under 1 and 4 partitions ({len(ta)} files)")
