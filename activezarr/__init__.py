"""activezarr: reduce netCDF4/HDF5 variables where the data lives, through persisted indexes.

>>> from activezarr import Active, build_index
>>> index = build_index("tas.nc", out="indexes")  # doctest: +SKIP
>>> Active(index, "tas").mean[0:12, :, 10:20]  # doctest: +SKIP
"""

from .active import Active
from .catalog import Catalog
from .errors import (
    ActiveZarrError,
    ChunkReadError,
    IndexBuildError,
    IndexLoadError,
    ReductionistError,
    SelectionError,
    StaleIndexError,
    UnsupportedVariableError,
)
from .index.build import build_index
from .index.load import load_variable as _load_variable
from .index.load import read_refs as _read_refs

__version__ = "0.1.0"


def open_index(index, storage_options: dict | None = None) -> dict:
    """The reference dict of an index (path, URL or dict), for inspection or reuse."""
    return _read_refs(index, storage_options)


__all__ = [
    "Active",
    "ActiveZarrError",
    "Catalog",
    "ChunkReadError",
    "IndexBuildError",
    "IndexLoadError",
    "ReductionistError",
    "SelectionError",
    "StaleIndexError",
    "UnsupportedVariableError",
    "__version__",
    "build_index",
    "open_index",
]
