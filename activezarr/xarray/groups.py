"""``da.active.groupby("time.month")`` and ``da.active.resample(time="1MS")``.

xarray itself decides the groups (so calendars, cftime, seasons and bin edges are exactly
xarray's) on a small integer array of positions along the grouped dimension. On the local
backend every position's group code goes to ``Active``, which adds each chunk into its
group's partials in one pass over the chunks (a chunk spanning groups is split there). On a
remote backend each group's positions become a selection of runs of that dimension, reduced
where the data lives with the grouped dimension (and any others asked for) reduced.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from .accessor import _dims, _Reductions, mean_dtype, result_dtype
from .partials import Op, Partials, finish

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
        if self._one_pass(target):
            part = self._by_codes(target, reduced, op)
        else:
            part = self._by_runs(target, reduced, op)
        out_dims = part.dims[1:]
        stacked = finish(part, mean_dtype(target.dtype))  # group axis first, then kept dims
        del part  # the partials go before the result is built
        kept = [d for d in da.dims if d in out_dims]
        stacked = np.transpose(stacked, [0] + [1 + out_dims.index(d) for d in kept])
        stacked = stacked.astype(result_dtype(target.dtype, op, stacked), copy=False)
        empty = [i for i, members in enumerate(self._groups) if not len(members)]
        if op == "count" and empty:  # xarray reindexes empty resample bins with NaN
            stacked = stacked.astype(np.float64)
            stacked[empty] = np.nan
        gone = set(reduced)
        coords = {n: c.variable for n, c in da.coords.items() if not set(c.dims) & gone}
        coords[self._gdim] = self._template[self._gdim].variable
        attrs = append_cell_methods(dict(da.attrs), reduced, op) if _keep_attrs(keep_attrs) else {}
        result = xr.DataArray(
            stacked, dims=[self._gdim, *kept], coords=coords, name=da.name, attrs=attrs
        )
        order = [self._gdim if d == self.dim else d for d in da.dims if d == self.dim or d in kept]
        return result.transpose(*order)

    def _one_pass(self, target) -> bool:
        """Whether ``Active`` can fold the groups itself, reading each chunk once: on the
        local backend (Reductionist reduces each group's runs, where little comes back),
        unless a label list repeats time steps, and unless the variable is shorter than its
        unlimited dimension (records never written read as fill, group by group)."""
        if target.active.backend.name != "local" or target.active.index.extent is not None:
            return False
        entry = target.sel.entries[target.sel.dims.index(self.dim)]
        return isinstance(entry, slice) or np.unique(entry).size == np.size(entry)

    def _codes(self) -> np.ndarray:
        """The group of each position along the grouped dimension (-1: in none)."""
        codes = np.full(self._accessor._da.sizes[self.dim], -1, dtype=np.int64)
        for i, members in enumerate(self._groups):
            codes[members] = i
        return codes

    def _by_codes(self, target, reduced: list[str], op: Op) -> Partials:
        """Every group in one pass over the chunks: ``Active`` adds each chunk into the
        partials of its group (splitting a chunk that spans groups)."""
        groups = (self.dim, self._codes(), len(self._groups))
        part = target.partials(reduced, op, groups=groups)
        return _grouped(op, part.dims, part.count, part.value)

    def _by_runs(self, target, reduced: list[str], op: Op) -> Partials:
        """Each group reduced on its own (its time runs): the backend reduces over time."""
        stored = target.sel
        axis = stored.dims.index(self.dim)
        base = np.arange(target.active.shape[axis])[stored.entries[axis]]
        counts, values, part = [], [], None
        for group in self._groups:
            entries = list(stored.entries)
            entries[axis] = base[group]
            part = target.partials(reduced, op, replace(stored, entries=tuple(entries)))
            counts.append(part.count)
            values.append(part.value)
        if part is None:
            raise ValueError(f"no {self._gdim} groups along {self.dim!r}")
        value = None if op == "count" else np.stack(values)
        return _grouped(op, part.dims, np.stack(counts), value)


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


def _grouped(op: Op, dims: tuple[str, ...], count, value) -> Partials:
    return Partials(op, ("<group>", *dims), count, value)
