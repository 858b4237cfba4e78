"""``da.active.groupby("time.month")`` and ``da.active.resample(time="1MS")``.

xarray itself decides the groups (so calendars, cftime, seasons and bin edges are exactly
xarray's) on a small integer array of positions along the grouped dimension; each group's
positions become a selection of runs of that dimension, reduced actively with the grouped
dimension (and any others asked for) reduced. Runs tile the dimension, so every chunk is read
by the runs that overlap it: once, or twice where a run boundary cuts a chunk.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from .accessor import _dims, _Reductions, result_dtype
from .partials import Op, finish

if TYPE_CHECKING:
    from .accessor import ActiveDataArrayAccessor


class ActiveGroupBy(_Reductions):
    """Grouped reductions of an ``.active`` DataArray: ``mean``, ``sum``, ``min``, ``max``,
    ``count``, each one pass over the chunks for all groups.

    ``dim`` (default: the grouped dimension) may name further dimensions to reduce inside
    each group, as in ``groupby("time.month").mean(["time", "lon"])``.
    """

    def __init__(
        self, accessor: ActiveDataArrayAccessor, group: str | None = None, resample=None
    ) -> None:
        self._accessor = accessor
        da = accessor._da
        if group is not None:
            self.dim = group.split(".", 1)[0]
        else:
            (self.dim,) = resample
        if self.dim not in da.dims:
            raise ValueError(f"{self.dim!r} is not a dimension of {da.name!r} {da.dims}")
        positions = xr.DataArray(
            np.arange(da.sizes[self.dim]), dims=self.dim, coords={self.dim: da[self.dim]}
        )
        grouped = positions.groupby(group) if group is not None else positions.resample(resample)
        self._template = grouped.count()  # the result's group coordinate, in xarray's order
        (self._gdim,) = self._template.dims
        self._groups = _positions(
            grouped.groups, self._template[self._gdim].values, da.sizes[self.dim]
        )

    def _reduce(self, op: Op, dim, keep_attrs: bool | None) -> xr.DataArray:
        from .accessor import _keep_attrs, append_cell_methods

        da = self._accessor._da
        reduced = [self.dim] + [d for d in _dims(da.dims, dim or self.dim) if d != self.dim]
        target = self._accessor._target()
        stored = target.sel
        axis = stored.dims.index(self.dim)
        entry = stored.entries[axis]
        base = np.arange(target.active.shape[axis])[entry]  # stored position of each label
        results = []
        for group in self._groups:
            entries = list(stored.entries)
            entries[axis] = base[group]
            part = target.partials(reduced, op, replace(stored, entries=tuple(entries)))
            results.append(finish(part))
        out_dims = part.dims
        kept = [d for d in da.dims if d in out_dims]
        stacked = np.stack(results) if results else np.zeros((0,))
        stacked = np.transpose(stacked, [0] + [1 + out_dims.index(d) for d in kept])
        stacked = stacked.astype(result_dtype(da.dtype, op, stacked), copy=False)
        gone = set(reduced)
        coords = {n: c.variable for n, c in da.coords.items() if not set(c.dims) & gone}
        coords[self._gdim] = self._template[self._gdim].variable
        attrs = append_cell_methods(dict(da.attrs), reduced, op) if _keep_attrs(keep_attrs) else {}
        result = xr.DataArray(
            stacked, dims=[self._gdim, *kept], coords=coords, name=da.name, attrs=attrs
        )
        order = [self._gdim if d == self.dim else d for d in da.dims if d == self.dim or d in kept]
        return result.transpose(*order)


def _positions(groups: dict, labels: np.ndarray, n: int) -> list[np.ndarray]:
    """Positions of each label's members (empty for an empty resample bin)."""
    by_key = {_normalise(key): members for key, members in groups.items()}
    out = []
    for label in labels:
        members = by_key.get(_normalise(label))
        if members is None:
            out.append(np.zeros(0, dtype=np.int64))
        elif isinstance(members, slice):
            out.append(np.arange(n)[members])
        else:
            out.append(np.asarray(members, dtype=np.int64))
    return out


def _normalise(key):
    if isinstance(key, np.datetime64 | pd.Timestamp):
        return pd.Timestamp(key)
    if isinstance(key, np.generic):
        return key.item()
    return key
