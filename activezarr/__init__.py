"""activezarr: reduce netCDF4/HDF5 variables where the data lives, through persisted indexes.

>>> from activezarr import Active, build_index
>>> index = build_index("tas.nc", out="indexes")  # doctest: +SKIP
>>> Active(index, "tas").mean[0:12, :, 10:20]  # doctest: +SKIP
"""

import importlib
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:  # imported when first used (below), so that the command line starts quickly
    from .active import Active
    from .catalog import Catalog
    from .xarray import open_dataset

__version__ = "0.1.0"


def build_index(path, out="indexes", *, storage_options=None, catalog=True, format="json"):
    """Index one netCDF4/HDF5 file into ``<out>/<stem>.json``; see ``activezarr.catalog.single``.

    h5py is imported only here, so that ``import activezarr`` stays quick for reductions.

    Examples
    --------
    >>> build_index("tas_2000.nc", out="indexes")  # doctest: +SKIP
    PosixPath('indexes/tas_2000.json')
    """
    from .catalog.single import build_index as _build

    return _build(path, out, storage_options=storage_options, catalog=catalog, format=format)


# public name -> the module that defines it, imported on first use: `import activezarr` (and
# the command line's catalog listing and search) need neither numpy nor h5py, zarr or xarray
_LAZY = {"Active": "active", "Catalog": "catalog", "open_dataset": "xarray"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    try:  # a submodule not imported yet (``activezarr.active``)
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'activezarr' has no attribute {name!r}")


def open_index(index, storage_options: dict | None = None) -> dict:
    """The reference dict of an index (path, URL or dict), for inspection or reuse."""
    from .index.load import read_refs

    return read_refs(index, storage_options)


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
    "open_dataset",
    "open_index",
]
