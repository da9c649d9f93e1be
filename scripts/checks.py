"""What the reader-check scripts share: `check` (stop at the first failure,
print what passed), Hugging Face `datasets` kept offline with its cache in the
work folder, `nusomi export create --json`, and checking the files a manifest
lists (shards, then a step export's image files) against their sizes and
SHA-256."""
import hashlib
import json
import os
import subprocess
import sys


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


def offline_datasets(work):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_CACHE", str(work / "hf-cache"))


def export_create(nusomi, store, spec_path, env=None):
    """Runs `nusomi export create --json SPEC` and returns the job object."""
    out = subprocess.run([nusomi, "export", "create", "--store", store, "--json", str(spec_path)],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out)


def listed_files_match(out, manifest, what):
    """Every file the manifest lists has its size and SHA-256; returns them."""
    listed = (manifest["shards"] + (manifest.get("images") or {}).get("files", [])
              + manifest.get("index_files", []))
    for s in listed:
        data = (out / s["path"]).read_bytes()
        if len(data) != s["bytes"] or hashlib.sha256(data).hexdigest() != s["sha256"]:
            sys.exit(f"FAIL: {what}: {s['path']} does not match the manifest")
    return listed
