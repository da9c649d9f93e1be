"""The product's verbs: Store (open, seal, SQL), export, verify, plan."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import pyarrow as pa

from . import _native

SpecLike = Union[Mapping[str, Any], str, "os.PathLike[str]"]
Progress = Union[bool, Callable[[int, int, int], object], None]


class Store:
    """A sealed store: a local path or an object-store URL (``file://``,
    ``s3://``, ``az://``, ``gs://``, ``memory://``), opened with the
    credentials the ``nusomi`` CLI takes from the environment
    (``AWS_*``, ``AZURE_STORAGE_*``, ``GOOGLE_APPLICATION_CREDENTIALS`` …).

    >>> store = Store("./nusomi-demo/store")            # doctest: +SKIP
    >>> store.sql("SELECT count(*) AS n FROM sessions")  # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._native = _native.Store(os.fspath(root))

    @property
    def root(self) -> str:
        """The root as given."""
        return self._native.root

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    def seal(
        self, paths: Iterable[str | os.PathLike[str]], *, parallelism: int = 0
    ) -> list[dict[str, Any]]:
        """Seals recording bundle folders into the store.

        Returns one dict per bundle, in the order given: ``bundle``,
        ``status`` (``"sealed"`` or ``"already_sealed"``), ``session_id``,
        ``workflow``, ``frames``, ``events``, ``image_bytes``, ``seal``.
        Raises :class:`~nusomi_export.BundleError` (file, line, field) for
        the first refused bundle; the others are sealed all the same and
        every result is in the exception's ``results``.
        """
        return self._native.seal([os.fspath(p) for p in paths], parallelism)

    def sql(self, query: str) -> pa.Table:
        """Runs ``query`` over ``sessions`` and ``frames`` (and the
        product's SQL functions); the rows as a ``pyarrow.Table``."""
        return pa.table(self._native.sql(query))

    def sql_reader(self, query: str) -> pa.RecordBatchReader:
        """Like :meth:`sql`, streamed: batches are read from the query as
        the reader is consumed (memory stays bounded for image columns)."""
        return pa.RecordBatchReader.from_stream(self._native.sql(query))


def _store(store: Store | str | os.PathLike[str]) -> Store:
    return store if isinstance(store, Store) else Store(store)


def _spec_text(spec: SpecLike) -> str:
    if isinstance(spec, Mapping):
        return json.dumps(spec)
    if isinstance(spec, os.PathLike):
        return Path(spec).read_text()
    text = str(spec)
    if not text.lstrip().startswith("{") and Path(text).is_file():
        return Path(text).read_text()
    return text


@dataclass(frozen=True)
class Manifest:
    """A published export's ``manifest.json`` (``data``), with where it is."""

    data: dict[str, Any]
    url: str
    id: str | None = None
    already_finished: bool = False
    shards_reused: int = 0

    @property
    def digest(self) -> str:
        """SHA-256 over the shards' digests: equal digests, equal exports."""
        return self.data["digest"]

    @property
    def format(self) -> str:
        return self.data["format"]

    @property
    def rows(self) -> int:
        return self.data["rows"]

    @property
    def shards(self) -> list[dict[str, Any]]:
        """``[{path, bytes, rows, sha256}]`` in order."""
        return self.data["shards"]

    @property
    def splits(self) -> list[dict[str, Any]] | None:
        return self.data.get("splits")

    @property
    def as_of(self) -> str | None:
        return self.data.get("as_of")

    @classmethod
    def read(cls, location: str | os.PathLike[str]) -> Manifest:
        """Reads the manifest of a local export (its folder, its
        ``manifest.json`` or a ``file://`` URL of either)."""
        path = _manifest_path(location)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise _errors().NusomiError(f"{path}: no manifest.json there (not an export folder?)") from None
        except json.JSONDecodeError as e:
            raise _errors().NusomiError(f"{path}: not a manifest: {e}") from None
        return cls(data=data, url=path.as_uri())


def _errors():  # late import: errors.py must not import the extension
    from . import errors

    return errors


def _manifest_path(location: str | os.PathLike[str]) -> Path:
    text = os.fspath(location)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise _errors().NusomiError(
            f"{text}: open_export and Manifest.read read local exports (a folder, its "
            "manifest.json or a file:// URL); copy the export down first, or verify it "
            "in place with nusomi_export.verify"
        )
    path = Path(text)
    return (path if path.name == "manifest.json" else path / "manifest.json").resolve()


def _progress_callback(progress: Progress) -> tuple[Callable[[int, int, int], object] | None, Any]:
    if callable(progress):
        return progress, None
    if not progress:
        return None, None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None, None
    bar = tqdm(desc="export", unit=" rows", dynamic_ncols=True)

    def update(rows: int, nbytes: int, shards: int) -> None:
        bar.update(rows - bar.n)
        bar.set_postfix(MB=f"{nbytes / 1e6:.1f}", shards=shards, refresh=False)

    return update, bar


def export(
    spec: SpecLike,
    store: Store | str | os.PathLike[str],
    *,
    progress: Progress = True,
    workspace_id: str | None = None,
) -> Manifest:
    """Runs an export spec (a dict, JSON text, or a spec file's path) from
    ``store`` into the spec's ``destination`` and returns its manifest.

    ``progress=True`` shows a tqdm bar where tqdm is installed; a callable
    gets ``(rows, bytes, shards)`` ten times a second. Ctrl-C (or an
    exception from the callable) cancels the export: what it wrote is
    removed before ``KeyboardInterrupt`` is raised, and no manifest is
    left. A bad spec raises :class:`~nusomi_export.SpecError` naming the
    field. The GIL is released while it runs.
    """
    callback, bar = _progress_callback(progress)
    try:
        out = json.loads(_native.export(_store(store)._native, _spec_text(spec), callback, workspace_id))
    finally:
        if bar is not None:
            bar.close()
    return Manifest(
        data=out["manifest"],
        url=out["manifest_url"],
        id=out["id"],
        already_finished=out["already_finished"],
        shards_reused=out["shards_reused"],
    )


@dataclass(frozen=True)
class Verification:
    """What ``verify`` found: every shard's presence, size and SHA-256."""

    intact: bool
    shards: int
    bytes: int
    mismatches: list[dict[str, Any]] = field(default_factory=list)


def verify(location: str | os.PathLike[str]) -> Verification:
    """Checks a published export against its manifest (no store needed):
    a folder, its ``manifest.json``, a ``file://``, ``s3://``, ``az://``
    or ``gs://`` URL, or an ``https://`` download link."""
    report = json.loads(_native.verify(os.fspath(location)))
    return Verification(
        intact=report["intact"],
        shards=report["shards"],
        bytes=report["bytes"],
        mismatches=report.get("mismatches", []),
    )


@dataclass(frozen=True)
class Plan:
    """What a spec compiles to: its SQL, its times resolved against
    ``as_of``, and (with ``explain``) DataFusion's plans for it."""

    sql: str
    as_of: str
    unit: str
    resolved: dict[str, Any]
    explain: list[dict[str, str]] = field(default_factory=list)


def plan(
    spec: SpecLike,
    store: Store | str | os.PathLike[str] | None = None,
    *,
    explain: bool = False,
) -> Plan:
    """Validates ``spec`` and returns the SQL it compiles to; with a
    ``store`` the SQL is also planned there (``explain=True`` returns the
    logical and physical plans)."""
    if explain and store is None:
        raise ValueError("plan(explain=True) needs the store to plan against")
    native = None if store is None else _store(store)._native
    out = json.loads(_native.plan(_spec_text(spec), native, explain))
    return Plan(
        sql=out["sql"],
        as_of=out["as_of"],
        unit=out["unit"],
        resolved=out["resolved"],
        explain=out["explain"],
    )
