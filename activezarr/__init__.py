"""activezarr: reduce netCDF4/HDF5 variables where the data lives, through persisted indexes.

>>> from activezarr import Active, build_index
>>> index = build_index("tas.nc", out="indexes")  # doctest: +SKIP
>>> Active(index, "tas").mean[0:12, :, 10:20]  # doctest: +SKIP
"""

from .active import Active
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
from .index.load import read_refs as _read_refs

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


def __getattr__(name: str):
    # the catalog (SQLite) and xarray are imported when first used: `import activezarr` stays
    # quick for reductions
    if name == "Catalog":
        from .catalog import Catalog

        return Catalog
    if name == "open_dataset":
        from .xarray import open_dataset

        return open_dataset
    raise AttributeError(f"module 'activezarr' has no attribute {name!r}")


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
    "open_dataset",
    "open_index",
]
