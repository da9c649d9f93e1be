"""The store inside a datafusion-python ``SessionContext``.

:func:`register` adds ``sessions``, ``frames`` and every SQL function of
the product through DataFusion's FFI, so ``ctx.sql(...)`` plans with the
engine's own table providers: filters on the logged columns prune files
and rows in the store, and statistics and ordering reach the host's
optimizer. The FFI is only safe between equal DataFusion majors; a
mismatch raises :class:`~nusomi_export.DataFusionVersionError`.
"""

from __future__ import annotations

import os
from typing import Any

from . import _native
from ._api import Store, _store
from .errors import DataFusionVersionError

TABLES = ("sessions", "frames")


def datafusion_major() -> int:
    """The DataFusion major this build of nusomi_export speaks."""
    return _native.datafusion_major()


def check_datafusion() -> Any:
    """Imports ``datafusion`` and checks its major; returns the module."""
    try:
        import datafusion
    except ImportError as e:
        raise DataFusionVersionError(
            f"nusomi_export.register needs the datafusion package (DataFusion "
            f"{datafusion_major()}): pip install 'datafusion>={datafusion_major()},<{datafusion_major() + 1}'"
        ) from e
    have = str(getattr(datafusion, "__version__", "unknown"))
    want = datafusion_major()
    try:
        major = int(have.split(".")[0])
    except ValueError:
        major = -1
    if major != want:
        raise DataFusionVersionError(
            f"the installed datafusion package is {have} (DataFusion {major}); this build "
            f"of nusomi_export speaks DataFusion {want} through its FFI, and mixing majors "
            f"crashes the process (datafusion-python issues 1217, 1283). Install "
            f"datafusion {want}.x: pip install 'datafusion>={want},<{want + 1}'"
        )
    return datafusion


def register(
    ctx: Any,
    store: Store | str | os.PathLike[str],
    *,
    tables: tuple[str, ...] = TABLES,
    functions: bool = True,
) -> None:
    """Adds ``store``'s ``sessions`` and ``frames`` tables and the product's
    SQL functions (``sample_event_only``, ``frame_key``, ``split_of``,
    ``step_action``, ``smart_resize`` …) to the datafusion-python
    ``SessionContext`` ``ctx``.

    >>> from datafusion import SessionContext              # doctest: +SKIP
    >>> ctx = SessionContext()                             # doctest: +SKIP
    >>> register(ctx, "./nusomi-demo/store")               # doctest: +SKIP
    >>> ctx.sql("SELECT workflow, count(*) FROM sessions GROUP BY 1").show()  # doctest: +SKIP
    """
    datafusion = check_datafusion()
    native = _store(store)._native
    for name in tables:
        ctx.register_table(name, native.table(name))
    if functions:
        for f in _native.functions():
            ctx.register_udf(datafusion.ScalarUDF.from_pycapsule(f))
