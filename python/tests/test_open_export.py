"""open_export: an export into datasets / webdataset, shards checked first;
and the README's PyTorch DataLoader example with two workers."""

import json
import pathlib
import shutil
import subprocess

import datasets
import pytest
import webdataset

import nusomi_export
from nusomi_export import NusomiError, ShardMismatch

from test_export import spec

FRACTIONS = {"train": 0.5, "val": 0.25, "test": 0.25}


def salt_filling(store, n_splits: int) -> str:
    """The first salt under which the demo's sessions fall in `n_splits` splits."""
    for i in range(1000):
        q = f"SELECT count(DISTINCT split_of(session_id, 's{i}', 'train', 0.5, 'val', 0.25, 'test', 0.25)) AS n FROM sessions"
        if store.sql(q).to_pylist() == [{"n": n_splits}]:
            return f"s{i}"
    raise AssertionError(f"no salt puts the demo sessions in {n_splits} splits")


@pytest.fixture(scope="module")
def split_exports(demo_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("splits")
    splits = {**FRACTIONS, "salt": salt_filling(nusomi_export.Store(demo_store), 3)}
    out = {}
    for fmt in ["parquet", "jsonl", "webdataset"]:
        out[fmt] = (root / fmt, nusomi_export.export(spec(fmt, root / fmt, splits=splits), store=demo_store, progress=False))
    return out


def test_a_split_without_sessions(demo_store, tmp_path):
    splits = {**FRACTIONS, "salt": salt_filling(nusomi_export.Store(demo_store), 2)}
    for fmt in ["parquet", "webdataset"]:
        m = nusomi_export.export(spec(fmt, tmp_path / fmt, splits=splits), store=demo_store, progress=False)
        (empty,) = [s["name"] for s in m.splits if not s["shards"]]
        opened = nusomi_export.open_export(tmp_path / fmt)
        if fmt == "parquet":
            assert len(opened[empty]) == 0 and opened[empty].features == opened[next(k for k in opened if k != empty)].features
            assert sum(len(d) for d in opened.values()) == m.rows
        else:
            assert empty not in opened and sorted(opened) == sorted(s["name"] for s in m.splits if s["shards"])
            with pytest.raises(NusomiError, match=f"split '{empty}' of the export at .* has no samples"):
                nusomi_export.open_export(tmp_path / fmt, split=empty)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_datasets_reads_every_row_of_every_split(split_exports, fmt):
    path, m = split_exports[fmt]
    dd = nusomi_export.open_export(path)
    assert isinstance(dd, datasets.DatasetDict)
    assert sorted(dd) == sorted(s["name"] for s in m.splits)
    for section in m.splits:
        assert len(dd[section["name"]]) == section["rows"]
        one = nusomi_export.open_export(path / "manifest.json", split=section["name"])
        assert isinstance(one, datasets.Dataset) and len(one) == section["rows"]
        assert sorted(set(one["session_id"])) == sorted(set(dd[section["name"]]["session_id"]))
    assert sum(len(d) for d in dd.values()) == m.rows
    keys = [k for d in dd.values() for k in d["key"]]
    assert len(keys) == len(set(keys)) == m.rows


def test_webdataset_reads_every_sample(split_exports):
    path, m = split_exports["webdataset"]
    opened = nusomi_export.open_export(path)
    assert sorted(opened) == sorted(s["name"] for s in m.splits)
    total = 0
    for section in m.splits:
        ds = opened[section["name"]]
        assert isinstance(ds, webdataset.WebDataset)
        samples = [json.loads(j) for (j,) in ds.to_tuple("json")]
        assert len(samples) == section["rows"]
        total += len(samples)
    assert total == m.rows


def test_a_changed_shard_is_refused_by_name(split_exports, tmp_path):
    for fmt in ["parquet", "webdataset"]:
        src, m = split_exports[fmt]
        copy = tmp_path / fmt
        shutil.copytree(src, copy)
        victim = m.splits[1]["shards"][0]
        data = bytearray((copy / victim).read_bytes())
        data[len(data) // 3] ^= 0x01
        (copy / victim).write_bytes(bytes(data))
        with pytest.raises(ShardMismatch) as e:
            nusomi_export.open_export(copy)
        assert e.value.shard == victim and victim in str(e.value)
        other = m.splits[0]["name"]
        assert nusomi_export.open_export(copy, split=other) is not None, "the other splits still open"


def test_unknown_split_and_mds_say_what_to_do(split_exports, demo_store, tmp_path):
    path, _ = split_exports["parquet"]
    with pytest.raises(NusomiError, match="no split 'holdout'; it has test, train, val"):
        nusomi_export.open_export(path, split="holdout")
    nusomi_export.export(spec("mds", tmp_path / "mds"), store=demo_store, progress=False)
    with pytest.raises(NusomiError, match="StreamingDataset"):
        nusomi_export.open_export(tmp_path / "mds")
    with pytest.raises(NusomiError, match="no manifest.json"):
        nusomi_export.open_export(tmp_path)


def test_torch_dataloader_example(loaders_python, demo_store, tmp_path):
    """python/examples/torch_dataloader.py, as the README runs it."""
    m = nusomi_export.export(
        spec("webdataset", tmp_path / "wds", shard_size_bytes=300_000), store=demo_store, progress=False
    )
    assert len(m.shards) >= 2, "two workers get a shard each"
    example = pathlib.Path(__file__).parent.parent / "examples" / "torch_dataloader.py"
    done = subprocess.run(
        [loaders_python, str(example), str(tmp_path / "wds")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["samples"] == m.rows and report["distinct_keys"] == m.rows
    assert report["workers"] == [0, 1]
