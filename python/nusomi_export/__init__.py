"""nusomi_export: sealed computer-use sessions to training datasets.

The engine of the ``nusomi`` CLI as a Python package: open a
:class:`Store`, query it (:meth:`Store.sql`, or inside a datafusion-python
``SessionContext`` with :func:`register`), :func:`export` a spec with a
progress bar, :func:`verify` what was published, and :func:`open_export` it
into ``datasets`` or ``webdataset`` for a training loop.
"""

from . import _native
from ._api import Manifest, Plan, Store, Verification, export, plan, verify
from .embedding import check_datafusion, datafusion_major, register
from .errors import BundleError, DataFusionVersionError, NusomiError, ShardMismatch, SpecError
from .loading import open_export

__version__ = _native.__version__

__all__ = [
    "BundleError",
    "DataFusionVersionError",
    "Manifest",
    "NusomiError",
    "Plan",
    "ShardMismatch",
    "SpecError",
    "Store",
    "Verification",
    "check_datafusion",
    "datafusion_major",
    "export",
    "open_export",
    "plan",
    "register",
    "verify",
]
