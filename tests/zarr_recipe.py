"""An index opened as other kerchunk readers open it: fsspec's reference filesystem under a
zarr 3 store, the recipe of reference/kerchunk-zarr.md §5 unchanged (zarr format 2, no
consolidated metadata). Tests use it to check that what we write opens without activezarr."""

from __future__ import annotations

import os

import fsspec
import zarr


def reference_store(fo) -> zarr.storage.FsspecStore:
    """A read-only zarr store over ``fo``: an index path, a reference dict, or a mapping of
    references (fsspec's ``LazyReferenceMapper`` for parquet)."""
    fs = fsspec.filesystem(
        "reference",
        fo=os.fspath(fo) if isinstance(fo, os.PathLike) else fo,
        remote_protocol="file",
        asynchronous=True,
        remote_options={"asynchronous": True},
    )
    return zarr.storage.FsspecStore(fs, read_only=True, path="")


def open_zarr(fo) -> zarr.Group:
    """The root group of the index ``fo`` (see ``reference_store``), as zarr reads it."""
    return zarr.open_group(reference_store(fo), mode="r", zarr_format=2, use_consolidated=False)
