"""The ``.active`` accessor: xarray reductions over named dimensions, run by ``Active``.

``da.active.mean("time")`` recovers which part of the indexed variable ``da`` shows (after any
``.sel``/``.isel``), reduces it chunk by chunk where the data lives, and returns a computed
DataArray shaped, named and labelled as ``da.mean("time")`` would be, with CF ``cell_methods``
appended. Values follow activezarr's netCDF4 rules (``valid_*`` masks too, which xarray ignores);
a reduction over nothing valid is NaN (xarray's ``min_count=1``). Dtypes follow xarray: float
data keeps its dtype, integer means are float64, integer sums int64.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ActiveZarrError
from .open import ENCODING_KEY, IndexSource
from .partials import Op, Partials, finish, selection_partials
from .selection import LazySelection, lazy_selection

CELL_METHOD = {"mean": "mean", "sum": "sum", "min": "minimum", "max": "maximum"}


@functools.cache
def _xarray_keeps_attrs() -> bool:
    """Whether this xarray keeps attrs through reductions by default (it changed over time)."""
    probe = xr.DataArray([1.0], dims="x", attrs={"a": 1})
    return bool(probe.mean().attrs)


def _keep_attrs(keep_attrs: bool | None) -> bool:
    if keep_attrs is not None:
        return keep_attrs
    option = xr.get_options()["keep_attrs"]
    return _xarray_keeps_attrs() if option == "default" else bool(option)


def _dims(da_dims: tuple[Hashable, ...], dim) -> list[Hashable]:
    """``dim`` (None, ``...``, a name or names) as a list of ``da``'s dimensions."""
    if dim is None or dim is ...:
        return list(da_dims)
    names = [dim] if isinstance(dim, str) or not isinstance(dim, Iterable) else list(dim)
    missing = [d for d in names if d not in da_dims]
    if missing:
        raise ValueError(
            f"dimension(s) {missing} not found in the data's dimensions {tuple(da_dims)}"
        )
    return names


def append_cell_methods(attrs: dict, dims: list[Hashable], op: Op) -> dict:
    """``attrs`` with ``"<dim>: [<dim>: ]<method>"`` appended to CF ``cell_methods``."""
    if op not in CELL_METHOD or not dims:
        return attrs
    entry = " ".join(f"{d}:" for d in dims) + f" {CELL_METHOD[op]}"
    old = attrs.get("cell_methods")
    return {**attrs, "cell_methods": f"{old} {entry}" if old else entry}


def result_dtype(dtype: np.dtype, op: Op, values: np.ndarray) -> np.dtype:
    """The dtype xarray gives ``op`` over data of ``dtype``; float64 when NaN must fit, and
    the values' own when a float64 sum would overflow xarray's float32 (inf is no sum)."""
    if op == "count":
        return np.dtype(np.int64)
    if dtype.kind == "f":
        if values.dtype.kind == "f" and values.dtype.itemsize > dtype.itemsize:
            with np.errstate(over="ignore"):
                lost = np.isfinite(values) & ~np.isfinite(values.astype(dtype))
            return values.dtype if lost.any() else dtype
        return dtype
    if op == "mean" or (values.dtype.kind == "f" and np.isnan(values).any()):
        return np.dtype(np.float64)
    if op == "sum":
        return np.dtype(np.uint64 if dtype.kind == "u" else np.int64)
    return dtype


def mean_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype of a mean in xarray: float data keeps its dtype, other data float64."""
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


class _Target:
    """One DataArray's link to its index: the source, the stored variable and the selection."""

    def __init__(self, da: xr.DataArray, index=None, variable: str | None = None, **options):
        source = da.encoding.get(ENCODING_KEY)
        if index is not None:
            source = IndexSource(index, options.pop("storage_options", None), {})
        if not isinstance(source, IndexSource):
            raise ActiveZarrError(
                f"{da.name!r} does not come from an activezarr index: open it with "
                "activezarr.open_dataset(index), or name the index with "
                "da.active(index='indexes/<file>.json')"
            )
        if da.dtype.kind not in "biuf":
            raise ActiveZarrError(
                f"{da.name!r} holds {da.dtype} values (decoded times or strings): activezarr "
                "reduces numbers as stored; use xarray's own reduction for it"
            )
        self.da = da
        self.variable = variable or da.encoding.get("activezarr_variable") or str(da.name)
        self.active = source.active(self.variable, **options)
        self.sel: LazySelection = lazy_selection(
            da, self.active.dimensions, self.active.shape, source.coordinates
        )

    @property
    def dtype(self) -> np.dtype:
        """The dtype results are labelled from: xarray's, unless the values activezarr reads
        (netCDF4's decoding: ``_Unsigned``, packing, which xarray may apply otherwise or not
        at all) do not fit in it; then netCDF4's, so no value is wrapped or rounded."""
        ours, theirs = self.active.dtype, self.da.dtype
        return theirs if np.can_cast(ours, theirs, "safe") else ours

    def partials(self, reduced: Iterable[Hashable], op: Op, sel=None, groups=None) -> Partials:
        return selection_partials(self.active, sel or self.sel, set(reduced), op, groups)

    def to_dataarray(
        self,
        values: np.ndarray,
        stored_dims: tuple[str, ...],
        reduced: list[Hashable],
        op: Op,
        keep_attrs: bool | None,
    ) -> xr.DataArray:
        """``values`` (kept dims in stored order) labelled as xarray's reduction would be."""
        da = self.da
        dims = [d for d in da.dims if d in stored_dims]
        values = np.transpose(values, [stored_dims.index(d) for d in dims])
        gone = set(reduced)
        coords = {
            name: coord.variable for name, coord in da.coords.items() if not set(coord.dims) & gone
        }
        attrs = append_cell_methods(dict(da.attrs), reduced, op) if _keep_attrs(keep_attrs) else {}
        values = values.astype(result_dtype(self.dtype, op, values), copy=False)
        return xr.DataArray(values, dims=dims, coords=coords, name=da.name, attrs=attrs)


class _Reductions:
    """``mean``, ``sum``, ``min``, ``max`` and ``count`` in terms of one ``_reduce``."""

    def _reduce(self, op: Op, dim, keep_attrs: bool | None):
        raise NotImplementedError

    def mean(self, dim=None, *, keep_attrs: bool | None = None):
        """Mean over ``dim`` (a name, names, or None for all), missing values skipped."""
        return self._reduce("mean", dim, keep_attrs)

    def sum(self, dim=None, *, keep_attrs: bool | None = None):
        """Sum over ``dim``; NaN where nothing valid was seen (xarray's ``min_count=1``)."""
        return self._reduce("sum", dim, keep_attrs)

    def min(self, dim=None, *, keep_attrs: bool | None = None):
        """Minimum over ``dim``."""
        return self._reduce("min", dim, keep_attrs)

    def max(self, dim=None, *, keep_attrs: bool | None = None):
        """Maximum over ``dim``."""
        return self._reduce("max", dim, keep_attrs)

    def count(self, dim=None, *, keep_attrs: bool | None = None):
        """Number of valid values over ``dim``."""
        return self._reduce("count", dim, keep_attrs)


@xr.register_dataarray_accessor("active")
class ActiveDataArrayAccessor(_Reductions):
    """Active-storage reductions of a DataArray opened with ``activezarr.open_dataset``.

    Call it to choose where reductions run: ``da.active(backend="reductionist",
    server=URL)``, ``da.active(executor=client)``, or ``da.active(index=...)`` for a DataArray
    that xarray opened itself (from the same file or index).

    Examples
    --------
    >>> ds = activezarr.open_dataset("indexes/tas.json")  # doctest: +SKIP
    >>> tas = ds.tas.sel(time=slice("2000", "2009"), lat=slice(-30, 30))  # doctest: +SKIP
    >>> tas.active.mean("time")  # doctest: +SKIP
    >>> tas.active.weighted(np.cos(np.deg2rad(tas.lat))).mean(["lat", "lon"])  # doctest: +SKIP
    >>> tas.active.groupby("time.month").mean()  # doctest: +SKIP
    """

    def __init__(self, da: xr.DataArray, options: dict | None = None) -> None:
        self._da = da
        self._options = options or {}

    def __call__(self, **options: Any) -> ActiveDataArrayAccessor:
        """The accessor with ``Active`` options (``backend``, ``server``, ``executor``,
        ``max_workers``, ...), and optionally ``index``/``variable`` for plain xarray data."""
        return ActiveDataArrayAccessor(self._da, {**self._options, **options})

    def _target(self) -> _Target:
        return _Target(self._da, **self._options)

    def _reduce(self, op: Op, dim, keep_attrs: bool | None) -> xr.DataArray:
        reduced = _dims(self._da.dims, dim)
        target = self._target()
        part = target.partials(reduced, op)
        dims = part.dims
        values = finish(part, mean_dtype(target.dtype))
        del part  # the partials go before the result is built
        return target.to_dataarray(values, dims, reduced, op, keep_attrs)

    def weighted(self, weights: xr.DataArray):
        """Weighted reductions; see ``ActiveWeighted``."""
        from .weighted import ActiveWeighted

        return ActiveWeighted(self, weights)

    def groupby(self, group: str):
        """Group along time by ``"time.month"``, ``"time.season"``, ``"time.year"``, ..."""
        from .groups import ActiveGroupBy

        return ActiveGroupBy(self, group=group)

    def resample(self, indexer: dict | None = None, **indexer_kwargs: str):
        """Resample along time, e.g. ``resample(time="1MS")``; see ``ActiveGroupBy``."""
        from .groups import ActiveGroupBy

        freq = {**(indexer or {}), **indexer_kwargs}
        if len(freq) != 1:
            raise ValueError("resample takes one dimension=frequency pair, e.g. time='1MS'")
        return ActiveGroupBy(self, resample=freq)


@xr.register_dataset_accessor("active")
class ActiveDatasetAccessor(_Reductions):
    """``ds.active.mean("time")``: every numeric data variable reduced actively.

    Data variables with none of the dimensions are kept as they are; non-numeric ones (time
    bounds, strings) are reduced by xarray itself, as they are small and not reducible
    actively, and left out where xarray's ``ds.mean()`` leaves them out.
    """

    def __init__(self, ds: xr.Dataset, options: dict | None = None) -> None:
        self._ds = ds
        self._options = options or {}

    def __call__(self, **options: Any) -> ActiveDatasetAccessor:
        """The accessor with ``Active`` options (``backend``, ``server``, ``executor``...)."""
        return ActiveDatasetAccessor(self._ds, {**self._options, **options})

    def _reduce(self, op: Op, dim, keep_attrs: bool | None) -> xr.Dataset:
        ds = self._ds
        reduced = _dims(tuple(ds.dims), dim)
        out = {}
        for name, da in ds.data_vars.items():
            mine = [d for d in reduced if d in da.dims]
            if not mine:
                out[name] = da
            elif da.dtype.kind in "iufb":
                out[name] = da.active(**self._options)._reduce(op, mine, keep_attrs)
            else:  # xarray's own Dataset reduction, which leaves out what it does not reduce
                alone = getattr(ds[[name]], op)(mine, keep_attrs=keep_attrs)  # (strings: mean)
                if name in alone.data_vars:
                    out[name] = alone[name]
        attrs = dict(ds.attrs) if _keep_attrs(keep_attrs) else {}
        result = xr.Dataset(out, attrs=attrs)
        gone = set(reduced)
        coords = {n: c for n, c in ds.coords.items() if not set(c.dims) & gone}
        return result.assign_coords({n: c for n, c in coords.items() if n not in result.coords})
