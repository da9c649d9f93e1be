"""From an export to a training loop: :func:`open_export` hands a local
export to the format's own loader (Hugging Face ``datasets`` for Parquet,
JSON Lines and Arrow IPC, ``webdataset`` for WebDataset) after checking
the SHA-256 the manifest lists for each shard it opens.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ._api import Manifest, _manifest_path
from .errors import NusomiError, ShardMismatch

_DATASETS_BUILDERS = {"parquet": "parquet", "jsonl": "json", "arrow": "arrow"}


def _sha256(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except FileNotFoundError:
        return None
    return h.hexdigest()


def check_shards(root: Path, shards: list[dict[str, Any]]) -> list[str]:
    """Checks each shard's SHA-256 against the manifest's; their paths.
    Raises :class:`ShardMismatch` naming the first that differs."""
    paths = []
    for s in shards:
        path = root / s["path"]
        actual = _sha256(path)
        if actual != s["sha256"]:
            what = "is missing" if actual is None else f"has SHA-256 {actual}"
            raise ShardMismatch(
                f"shard {s['path']} of the export at {root} {what}; its manifest lists "
                f"{s['sha256']} (the file changed after the export: re-export, or "
                f"`nusomi export verify {root}` for every shard)",
                shard=s["path"],
                expected=s["sha256"],
                actual=actual,
            )
        paths.append(str(path))
    return paths


def _series(manifest: Manifest) -> dict[str, list[dict[str, Any]]]:
    """Shards by split name (``train`` for an export without splits)."""
    splits = manifest.splits
    if not splits:
        return {"train": manifest.shards}
    by_path = {s["path"]: s for s in manifest.shards}
    return {sp["name"]: [by_path[p] for p in sp["shards"]] for sp in splits}


def _datasets(fmt: str, files: dict[str, list[str]], split: str | None, loader_args: dict[str, Any]) -> Any:
    """``datasets`` over the shards; a split no session fell in (no shards)
    is an empty Dataset with the others' features."""
    import datasets

    builder = _DATASETS_BUILDERS[fmt]
    full = {name: paths for name, paths in files.items() if paths}
    if not full:
        empty = datasets.Dataset.from_dict({})
        return empty if split is not None else datasets.DatasetDict({name: empty for name in files})
    loaded = datasets.load_dataset(builder, data_files=full, **loader_args)
    features = next(iter(loaded.values())).features
    out = {
        name: loaded[name] if name in full else datasets.Dataset.from_dict({k: [] for k in features}, features=features)
        for name in files
    }
    return out[split] if split is not None else datasets.DatasetDict(out)


def open_export(
    location: str | os.PathLike[str],
    split: str | None = None,
    *,
    verify: bool = True,
    **loader_args: Any,
) -> Any:
    """Opens a local export with its format's loader.

    * Parquet, JSON Lines, Arrow IPC: ``datasets.load_dataset(...)`` over
      the shards; with ``split`` a ``datasets.Dataset``, without it a
      ``DatasetDict`` by split (``train`` when the export has no splits).
    * WebDataset: ``webdataset.WebDataset(shards, shardshuffle=False)``
      (an ``IterableDataset`` a PyTorch ``DataLoader`` splits by worker);
      without ``split`` and with splits, a dict of them.
    * MDS: read it with mosaicml-streaming (``StreamingDataset``).

    Each shard opened is checked against the manifest's SHA-256 first
    (``verify=False`` skips it); a changed shard raises
    :class:`ShardMismatch` naming it. ``loader_args`` go to the loader
    (``cache_dir=``, ``streaming=True`` …).
    """
    manifest = Manifest.read(location)
    root = _manifest_path(location).parent
    fmt = manifest.format
    series = _series(manifest)
    if split is not None and split not in series:
        raise NusomiError(
            f"export at {root} has no split {split!r}; it has {', '.join(sorted(series))}"
        )
    wanted = {split: series[split]} if split is not None else series
    files = {
        name: check_shards(root, shards) if verify else [str(root / s["path"]) for s in shards]
        for name, shards in wanted.items()
    }
    if fmt in _DATASETS_BUILDERS:
        return _datasets(fmt, files, split, loader_args)
    if fmt == "webdataset":
        import webdataset as wds

        loader_args.setdefault("shardshuffle", False)
        if split is not None and not files[split]:
            raise NusomiError(f"split {split!r} of the export at {root} has no samples (no session fell in it)")
        # A split no session fell in has no shards: it is left out.
        opened = {name: wds.WebDataset(urls, **loader_args) for name, urls in files.items() if urls}
        if split is not None:
            return opened[split]
        return opened if manifest.splits else opened["train"]
    if fmt == "mds":
        raise NusomiError(
            f"export at {root} is MDS: read it with mosaicml-streaming, "
            f"streaming.StreamingDataset(local={str(root)!r}) (deterministic shuffle, "
            "mid-epoch resume; docs/loaders.md)"
        )
    raise NusomiError(f"export at {root} has format {fmt!r}, which open_export does not know")
