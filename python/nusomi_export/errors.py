"""The exceptions nusomi_export raises.

Every error of the engine arrives as one of these, with the engine's
message; the ones a caller acts on carry the place that is wrong.
"""

from __future__ import annotations

from typing import Any


class NusomiError(Exception):
    """An operation of nusomi_export failed; the message says what and where."""


class SpecError(NusomiError, ValueError):
    """An export spec was refused.

    ``errors`` lists every problem as ``{"field": ..., "message": ...}``
    (field paths such as ``filter.outcome`` or ``frame_sampling.interval_ms``;
    empty for the spec as a whole); ``field`` is the first problem's path.
    """

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors: list[dict[str, str]] = list(errors or [])
        self.field: str | None = self.errors[0]["field"] if self.errors else None
        self.fields: list[str] = [e["field"] for e in self.errors]


class BundleError(NusomiError, ValueError):
    """A recording bundle was refused; nothing of it was written.

    ``bundle`` is the bundle folder, ``file`` the file in it
    (``session.json``, ``frames.jsonl`` …), ``line`` the 1-based line of a
    ``.jsonl`` file, ``field`` the field path to blame (all but ``bundle``
    may be ``None``), ``reason`` what is wrong. From ``Store.seal``,
    ``results`` holds every bundle's result (the others may have sealed).
    """

    def __init__(
        self,
        message: str,
        *,
        bundle: str | None = None,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.bundle = bundle
        self.file = file
        self.line = line
        self.field = field
        self.reason = reason
        self.results: list[dict[str, Any]] = []


class ShardMismatch(NusomiError):
    """A shard's bytes are not the ones its manifest lists.

    ``shard`` is its path in the export, ``expected``/``actual`` the SHA-256
    (or ``actual`` ``None`` when the file is missing).
    """

    def __init__(self, message: str, *, shard: str, expected: str, actual: str | None) -> None:
        super().__init__(message)
        self.shard = shard
        self.expected = expected
        self.actual = actual


class DataFusionVersionError(NusomiError, ImportError):
    """The installed ``datafusion`` package speaks another DataFusion major
    than this build of nusomi_export; its FFI would not be safe to use."""
