"""Fixtures: the `nusomi` binary, a demo store and its bundles, made by
scripts/test.sh (which also builds and installs this package)."""

import json
import os
import pathlib
import subprocess

import pytest


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: run these tests through scripts/test.sh, which builds the "
            "nusomi binary, a demo store and this package and sets it"
        )
    return value


@pytest.fixture(scope="session", autouse=True)
def offline_datasets(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["HF_DATASETS_CACHE"] = str(tmp_path_factory.mktemp("hf-cache"))


@pytest.fixture(scope="session")
def nusomi_bin() -> str:
    return _env("NUSOMI_BIN")


@pytest.fixture(scope="session")
def demo_store() -> str:
    return _env("NUSOMI_DEMO_STORE")


@pytest.fixture(scope="session")
def demo_bundles() -> pathlib.Path:
    return pathlib.Path(_env("NUSOMI_DEMO_BUNDLES"))


@pytest.fixture(scope="session")
def loaders_python() -> str:
    return _env("NUSOMI_LOADERS_PYTHON")


@pytest.fixture(scope="session")
def cli(nusomi_bin):
    def run(*args: str) -> str:
        done = subprocess.run([nusomi_bin, *args], capture_output=True, text=True)
        assert done.returncode == 0, f"nusomi {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout

    return run


@pytest.fixture(scope="session")
def cli_export(cli, tmp_path_factory):
    """`nusomi export create --json` of a spec dict; the manifest."""

    def run(spec: dict) -> dict:
        path = tmp_path_factory.mktemp("spec") / "spec.json"
        path.write_text(json.dumps(spec))
        job = json.loads(cli("export", "create", "--store", os.environ["NUSOMI_DEMO_STORE"], "--json", str(path)))
        assert job["status"] == "completed", job
        return json.loads((pathlib.Path(spec["destination"]["path"]) / "manifest.json").read_text())

    return run
