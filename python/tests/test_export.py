"""export(), verify(), plan() and Store.seal from Python against the CLI."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

import nusomi_export
from nusomi_export import BundleError, SpecError

WORKFLOWS = ["process_invoice", "triage_ticket", "update_crm_record", "book_travel", "reconcile_payments"]


def spec(fmt: str, dest: pathlib.Path, **extra) -> dict:
    return {
        "workflow": WORKFLOWS,
        "format": fmt,
        "frame_sampling": {"mode": "event_only", "keep_action_frames": True},
        "destination": {"kind": "local", "path": str(dest)},
        "shard_size_bytes": 1_000_000,
        "as_of": "2030-01-01T00:00:00Z",
        "tag": f"py-{fmt}",
        **extra,
    }


CASES = {
    "parquet": {},
    "arrow": {},
    "jsonl": {},
    "webdataset": {},
    "mds": {},
    "parquet-splits": {"splits": {"train": 0.6, "val": 0.2, "test": 0.2, "salt": "s"}},
    "jsonl-steps": {
        "unit": "step",
        "coordinates": "normalized_1000",
        "history": {"actions": 3, "frames": 2},
        "messages": {"preset": "sharegpt", "action_syntax": "pyautogui"},
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_export_equals_the_cli(case, cli_export, demo_store, tmp_path):
    fmt = case.split("-")[0]
    extra = CASES[case]
    expected = cli_export(spec(fmt, tmp_path / "cli", **extra))
    seen = []
    manifest = nusomi_export.export(
        spec(fmt, tmp_path / "py", **extra), store=demo_store, progress=lambda *p: seen.append(p)
    )
    assert manifest.digest == expected["digest"]
    assert [(s["path"], s["sha256"]) for s in manifest.shards] == [
        (s["path"], s["sha256"]) for s in expected["shards"]
    ]
    assert manifest.rows == expected["rows"] > 0
    assert manifest.url == f"file://{(tmp_path / 'py').resolve()}/manifest.json"
    assert seen and seen[-1][0] == manifest.rows, "the last progress report has every row"
    assert nusomi_export.verify(tmp_path / "py").intact


def test_spec_as_json_text_and_file(demo_store, tmp_path):
    text = json.dumps(spec("jsonl", tmp_path / "a"))
    first = nusomi_export.export(text, store=demo_store, progress=False)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec("jsonl", tmp_path / "b")))
    second = nusomi_export.export(path, store=nusomi_export.Store(demo_store), progress=False)
    assert first.digest == second.digest


def test_a_bad_spec_names_the_field(demo_store, tmp_path):
    bad = spec("parquet", tmp_path / "x", frame_sampling={"mode": "every_n_ms", "interval_ms": 0})
    bad["filter"] = {"outcome": "maybe"}
    with pytest.raises(SpecError) as e:
        nusomi_export.export(bad, store=demo_store)
    assert "frame_sampling.interval_ms" in e.value.fields
    assert "filter.outcome" in e.value.fields
    assert "frame_sampling.interval_ms" in str(e.value)
    assert not (tmp_path / "x").exists()
    with pytest.raises(SpecError) as e:
        nusomi_export.plan({"format": "parquet", "workflow": "Bad Name"})
    assert e.value.field == "workflow"


def test_interrupting_leaves_nothing(demo_store, tmp_path):
    dest = tmp_path / "interrupted"
    s = spec("parquet", dest, frame_sampling={"mode": "all"}, shard_size_bytes=200_000)
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        import nusomi_export
        # Python leaves Ctrl-C ignored when it starts with SIGINT ignored
        # (a child of a background job, as CI may run this): install the
        # handler a terminal session has.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        reports = []
        def progress(rows, nbytes, shards):
            reports.append(rows)
            if len(reports) == 1:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
        try:
            nusomi_export.export({s!r}, store={demo_store!r}, progress=progress)
        except KeyboardInterrupt:
            print("interrupted after", reports)
            sys.exit(0)
        print("finished before the interrupt", reports)
        sys.exit(3)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "interrupted" in done.stdout
    left = sorted(p.relative_to(dest) for p in dest.rglob("*")) if dest.exists() else []
    assert left == [], f"an interrupted export left {left}"


def test_plan(demo_store, tmp_path):
    p = nusomi_export.plan(spec("parquet", tmp_path / "p"), store=demo_store, explain=True)
    assert p.as_of == "2030-01-01T00:00:00Z"
    assert "sample_event_only" in p.sql and p.unit == "frame"
    kinds = [e["plan_type"] for e in p.explain]
    assert "logical_plan" in kinds and "physical_plan" in kinds
    assert nusomi_export.plan(spec("parquet", tmp_path / "p")).sql == p.sql


def test_verify_reports_a_flipped_byte(demo_store, tmp_path):
    m = nusomi_export.export(spec("webdataset", tmp_path / "w"), store=demo_store, progress=False)
    shard = tmp_path / "w" / m.shards[0]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = nusomi_export.verify(str(tmp_path / "w" / "manifest.json"))
    assert not report.intact
    assert [x["path"] for x in report.mismatches] == [m.shards[0]["path"]]


def test_seal(demo_bundles, tmp_path, cli):
    bundles = sorted(demo_bundles.iterdir())[:3]
    store = nusomi_export.Store(tmp_path / "store")
    first = store.seal(bundles)
    assert [r["status"] for r in first] == ["sealed"] * 3
    assert [r["bundle"] for r in first] == [str(b) for b in bundles]
    assert [r["status"] for r in store.seal(bundles)] == ["already_sealed"] * 3
    n = json.loads(cli("sql", "--store", str(tmp_path / "store"), "--format", "json", "SELECT count(*) AS n FROM sessions"))
    assert n == [{"n": 3}]

    broken = tmp_path / "broken"
    shutil.copytree(sorted(demo_bundles.iterdir())[4], broken)
    events = (broken / "events.jsonl").read_text().splitlines()
    events[1] = events[1].replace('"t_ms"', '"t_ms_typo"')
    (broken / "events.jsonl").write_text("\n".join(events) + "\n")
    fresh = sorted(demo_bundles.iterdir())[3]
    with pytest.raises(BundleError) as e:
        store.seal([fresh, broken])
    err = e.value
    assert (err.bundle, err.file, err.line) == (str(broken), "events.jsonl", 2), str(err)
    assert [r["status"] for r in err.results] == ["sealed", "refused"]
