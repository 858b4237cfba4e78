"""Which part of an indexed variable a lazy xarray DataArray shows, as per-dimension selections.

xarray keeps ``.sel``/``.isel`` on a lazily opened variable as one composed indexer over the
stored array (``LazilyIndexedArray.key``). ``lazy_selection`` recovers it as one entry per
stored dimension: an ``int`` (the dimension was dropped), a ``slice`` or a sorted-or-not integer
array (a label list); ``runs`` splits such an array into slices that ``Active`` can reduce.
Nothing here reads data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr
from xarray.core import indexing

from ..errors import SelectionError

Entry = int | slice | np.ndarray

MAX_RUN_PRODUCT = 20_000  # reductions one non-contiguous selection may split into


@dataclass(frozen=True)
class LazySelection:
    """Per stored dimension, what the DataArray selects; ``order`` maps result dims to stored."""

    dims: tuple[str, ...]  # the stored variable's dimensions
    entries: tuple[Entry, ...]  # one per stored dimension

    def kept(self) -> tuple[str, ...]:
        """Stored dimensions still present, in stored order."""
        return tuple(d for d, e in zip(self.dims, self.entries) if not isinstance(e, int))


def _unwrap(data):
    """The lazily indexed array under xarray's caching and decoding wrappers, or None."""
    seen = 0
    while data is not None and seen < 32:
        if isinstance(data, indexing.LazilyIndexedArray | indexing.LazilyVectorizedIndexedArray):
            return data
        data = getattr(data, "array", None)
        seen += 1
    return None


def lazy_selection(
    da: xr.DataArray,
    stored_dims: tuple[str, ...],
    shape: tuple[int, ...],
    coordinates: Callable[[], dict] | None = None,
):
    """The ``LazySelection`` of ``da`` over a stored variable with ``stored_dims``.

    A dask-backed ``da`` that only selects from what xarray opened (no arithmetic in its
    graph) is located by its coordinate labels instead, against ``coordinates()`` (the full
    dimension coordinates of the index).

    Raises ``SelectionError`` when ``da`` is no longer a lazy view of that variable (its values
    were loaded, it is a dask array, or it came out of arithmetic) or was indexed in a way that
    is not a per-dimension selection (vectorized indexing).
    """
    lazy = _unwrap(da.variable._data)
    if lazy is None and coordinates is not None and _plain_dask_read(da):
        return coordinate_selection(da, stored_dims, shape, coordinates)
    if lazy is None and da.name in da.dims and isinstance(da.variable, xr.IndexVariable):
        raise SelectionError(
            f"{da.name!r} is a dimension coordinate, which xarray holds in memory as an index: "
            f"reduce it with xarray itself (ds.{da.name}.mean()); activezarr reduces the data "
            "variables, read where they are stored"
        )
    if lazy is None:
        how = "a dask array" if hasattr(da.data, "dask") else "values in memory"
        raise SelectionError(
            f"{da.name!r} holds {how}, not a lazy view of the indexed variable, so activezarr "
            "cannot tell which chunks it covers; call .active before .load(), .chunk() or "
            "arithmetic (open with activezarr.open_dataset, without chunks=), or reduce with "
            "xarray's own da.mean(...)"
        )
    if lazy.array.shape != tuple(shape):
        raise SelectionError(
            f"{da.name!r} was opened with shape {lazy.array.shape}, but the index holds "
            f"shape {tuple(shape)}: is this the right index?"
        )
    key = lazy.key
    if isinstance(key, indexing.VectorizedIndexer):
        entries = _from_vectorized(da, key.tuple, stored_dims)
    else:
        entries = tuple(
            e if isinstance(e, slice) else (int(e) if np.ndim(e) == 0 else np.asarray(e))
            for e in key.tuple
        )
    return _checked(da, LazySelection(tuple(stored_dims), entries))


def _checked(da: xr.DataArray, sel: LazySelection) -> LazySelection:
    if set(sel.kept()) != set(da.dims) or len(sel.kept()) != da.ndim:
        raise SelectionError(
            f"{da.name!r} has dimensions {da.dims} but selects {sel.kept()} of the stored "
            f"variable {sel.dims}; renamed or expanded dimensions are not supported"
        )
    return sel


_READ_LAYERS = ("original-open_dataset-", "open_dataset-", "getitem-", "transpose-")


def _plain_dask_read(da: xr.DataArray) -> bool:
    """Whether ``da`` is a dask array that only reads and selects (nothing computed)."""
    graph = getattr(da.data, "dask", None)
    layers = getattr(graph, "layers", None)
    return bool(layers) and all(name.startswith(_READ_LAYERS) for name in layers)


def coordinate_selection(da, stored_dims, shape, coordinates: Callable[[], dict]):
    """Per-dimension positions of ``da``'s coordinate labels in the index's coordinates."""
    full = coordinates()
    entries: list[Entry] = []
    for dim, length in zip(stored_dims, shape, strict=True):
        index = full.get(dim)
        if dim in da.dims and dim not in da.indexes:
            if da.sizes[dim] != length:
                raise SelectionError(
                    f"dimension {dim!r} of {da.name!r} has no coordinate, so activezarr cannot "
                    "tell which part of it this dask array shows; open it with "
                    "activezarr.open_dataset (without chunks=)"
                )
            entries.append(slice(None))
            continue
        if index is None or not index.is_unique:
            raise SelectionError(
                f"the index's coordinate {dim!r} is missing or not unique: cannot locate "
                f"{da.name!r}'s labels; open it with activezarr.open_dataset (without chunks=)"
            )
        labels = da.indexes[dim] if dim in da.dims else [da.coords[dim].values[()]]
        positions = index.get_indexer(labels)
        if (positions < 0).any():
            raise SelectionError(f"{da.name!r} has {dim} labels that the index does not hold")
        entries.append(positions if dim in da.dims else int(positions[0]))
    return _checked(da, LazySelection(tuple(stored_dims), tuple(entries)))


def _from_vectorized(da: xr.DataArray, arrays, stored_dims) -> tuple[Entry, ...]:
    """Outer-shaped vectorized keys (what ``transpose`` makes) back to per-dimension entries."""
    entries: list[Entry] = []
    for dim, arr in zip(stored_dims, arrays, strict=True):
        arr = np.asarray(arr)
        if dim in da.dims:
            axis = da.dims.index(dim)
            line = np.moveaxis(arr, axis, -1).reshape(-1, arr.shape[axis])
            if not (line == line[0]).all():  # must vary along its own axis only
                raise _vectorized_error(da)
            entries.append(line[0].copy())
        elif arr.size and (arr == arr.flat[0]).all():
            entries.append(int(arr.flat[0]))
        else:
            raise _vectorized_error(da)
    return tuple(entries)


def _vectorized_error(da: xr.DataArray) -> SelectionError:
    return SelectionError(
        f"{da.name!r} was indexed with arrays along several dimensions at once (vectorized "
        "or pointwise indexing); activezarr reduces rectangular selections only. Select with "
        "slices, scalars or 1-D label lists per dimension, or load and reduce with xarray"
    )


def runs(entry: Entry, length: int) -> list[tuple[int | slice, int, int]]:
    """``entry`` as ``(selection, out_start, out_stop)`` pieces along one dimension.

    Integers and slices are one piece; an integer array is split into arithmetic runs
    (a constant step over the whole array is one piece; otherwise consecutive runs).
    """
    if isinstance(entry, int):
        return [(entry, 0, 0)]
    if isinstance(entry, slice):
        n = len(range(*entry.indices(length)))
        return [(entry, 0, n)]
    idx = np.asarray(entry, dtype=np.int64).reshape(-1)
    idx = np.where(idx < 0, idx + length, idx)
    if idx.size and (idx.min() < 0 or idx.max() >= length):
        raise SelectionError(f"index array selects outside a dimension of length {length}")
    if idx.size == 0:
        return [(slice(0, 0), 0, 0)]
    diffs = np.diff(idx)
    if idx.size == 1 or (diffs[0] != 0 and (diffs == diffs[0]).all()):
        step = int(diffs[0]) if idx.size > 1 else 1
        return [(_as_slice(int(idx[0]), idx.size, step), 0, idx.size)]
    bounds = np.flatnonzero(diffs != 1) + 1
    starts = np.concatenate([[0], bounds])
    stops = np.concatenate([bounds, [idx.size]])
    return [
        (_as_slice(int(idx[a]), int(b - a), 1), int(a), int(b))
        for a, b in zip(starts, stops, strict=True)
    ]


def _as_slice(first: int, n: int, step: int) -> slice:
    last = first + (n - 1) * step
    stop = last + (1 if step > 0 else -1)
    return slice(first, None if stop < 0 else stop, step)
