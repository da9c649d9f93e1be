"""A PyTorch DataLoader with two workers over a WebDataset export.

usage: python torch_dataloader.py EXPORT_DIR

open_export checks every shard's SHA-256 against the manifest and returns a
webdataset.WebDataset; the DataLoader's two workers each read their own
shards. Prints one JSON line: samples seen, distinct keys, workers used.
"""

import json
import sys

import torch
from torch.utils.data import DataLoader, get_worker_info

import nusomi_export


def sample(s):
    meta = json.loads(s["json"])
    image = next(v for k, v in s.items() if k in ("png", "jpg", "jpeg", "webp"))
    worker = get_worker_info()
    return {
        "key": s["__key__"],
        "session_id": meta["session_id"],
        "image_bytes": len(image),
        "worker": worker.id if worker else -1,
    }


def main(export_dir: str) -> None:
    dataset = nusomi_export.open_export(export_dir).map(sample)
    loader = DataLoader(dataset, batch_size=8, num_workers=2, collate_fn=list)
    keys, workers = [], set()
    for batch in loader:
        keys += [s["key"] for s in batch]
        workers |= {s["worker"] for s in batch}
    print(json.dumps({"samples": len(keys), "distinct_keys": len(set(keys)), "workers": sorted(workers)}))


if __name__ == "__main__":
    main(sys.argv[1])
