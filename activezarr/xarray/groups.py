"""``da.active.groupby("time.month")`` and ``da.active.resample(time="1MS")``.

xarray itself decides the groups (so calendars, cftime, seasons and bin edges are exactly
xarray's) on a small integer array of positions along the grouped dimension; each group's
positions become a selection of runs of that dimension, reduced actively with the grouped
dimension (and any others asked for) reduced. Runs tile the dimension, so every chunk is read
by the runs that overlap it: once, or twice where a run boundary cuts a chunk.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from .accessor import _dims, _Reductions, result_dtype
from .partials import Op, Partials, finish

WINDOW_BYTES = 32 * 2**20  # per-time-step partials held at once (Active holds as much again)

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
        if self._runs_are_cheap(target):
            part = self._by_runs(target, reduced, op)
        else:
            part = self._windowed(target, reduced, op)
        stacked = finish(part)  # group axis first, then the kept dims in stored order
        out_dims = part.dims[1:]
        kept = [d for d in da.dims if d in out_dims]
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

    def _runs_are_cheap(self, target) -> bool:
        """Reduce group by group (the backend reduces over time, little comes back) unless
        run boundaries would cut many chunks, each then read again: runs of at least four
        chunks along time, or any run length on a remote backend, where transfer dominates."""
        if target.active.backend.name != "local":
            return True
        codes = np.full(self._accessor._da.sizes[self.dim], -1)
        for i, members in enumerate(self._groups):
            codes[members] = i
        n_runs = 1 + int(np.count_nonzero(codes[1:] != codes[:-1]))
        axis = target.sel.dims.index(self.dim)
        return codes.size / n_runs >= 4 * target.active.chunks[axis]

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

    def _windowed(self, target, reduced: list[str], op: Op) -> Partials:
        """One pass over the chunks: per-time-step partials of chunk-aligned windows of time,
        folded into their groups (each chunk read and decoded once)."""
        da = self._accessor._da
        stored = target.sel
        axis = stored.dims.index(self.dim)
        base = np.arange(target.active.shape[axis])[stored.entries[axis]]
        codes = np.full(base.size, -1, dtype=np.int64)
        for i, members in enumerate(self._groups):
            codes[members] = i
        others = [d for d in reduced if d != self.dim]
        cells = int(np.prod([da.sizes[d] for d in da.dims if d != self.dim and d not in others]))
        acc = _GroupAccumulator(op, len(self._groups))
        dims = None
        for start, stop in _windows(base, target.active.chunks[axis], cells):
            entries = list(stored.entries)
            entries[axis] = base[start:stop]
            part = target.partials(others, op, replace(stored, entries=tuple(entries)))
            t = part.dims.index(self.dim)
            value = None if part.value is None else np.moveaxis(part.value, t, 0)
            acc.add(codes[start:stop], np.moveaxis(part.count, t, 0), value)
            dims = tuple(d for d in part.dims if d != self.dim)
        if acc.count is None:
            raise ValueError(f"no {self.dim!r} steps to group")
        return _grouped(op, dims, acc.count, acc.value)


def _windows(base: np.ndarray, chunk: int, cells: int):
    """``(start, stop)`` windows of the time positions ``base``: about ``WINDOW_BYTES`` of
    per-step partials each, cut at the stored chunk boundaries when ``base`` is a range."""
    steps = max(1, WINDOW_BYTES // max(1, cells * 16))
    n = base.size
    if n > 1 and (np.diff(base) == 1).all() and steps >= chunk:
        steps -= steps % chunk
        first = (chunk - int(base[0]) % chunk) % chunk or steps
        cuts = [0, *range(min(first, n), n, steps), n]
    else:
        cuts = [*range(0, n, steps), n]
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


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


class _GroupAccumulator:
    """Per-group partials, folded from per-time-step partials (time axis first)."""

    def __init__(self, op: Op, n_groups: int) -> None:
        self.op = op
        self.n = n_groups
        self.count = None
        self.value = None

    def add(self, codes: np.ndarray, count: np.ndarray, value: np.ndarray | None) -> None:
        """Fold steps with group ``codes`` (-1: in no group) into the groups."""
        keep = codes >= 0
        if not keep.all():
            codes, count = codes[keep], count[keep]
            value = None if value is None else value[keep]
        if not codes.size:
            return
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        run_codes = codes[starts]
        if self.count is None:
            self.count = np.zeros((self.n, *count.shape[1:]), dtype=np.int64)
        np.add.at(self.count, run_codes, np.add.reduceat(count, starts, axis=0))
        if self.op == "count":
            return
        if self.op in ("mean", "sum"):
            value = np.where(count > 0, value, 0)
            runs = np.add.reduceat(value, starts, axis=0)
            if self.value is None:
                self.value = np.zeros((self.n, *value.shape[1:]), dtype=runs.dtype)
            np.add.at(self.value, run_codes, runs)
            return
        best = np.minimum if self.op == "min" else np.maximum
        identity = _identity(value.dtype, self.op)
        value = np.where(count > 0, value, identity)
        runs = best.reduceat(value, starts, axis=0)
        if self.value is None:
            self.value = np.full((self.n, *value.shape[1:]), identity, dtype=value.dtype)
        best.at(self.value, run_codes, runs)


def _identity(dtype: np.dtype, op: str):
    if dtype.kind == "f":
        return np.inf if op == "min" else -np.inf
    info = np.iinfo(dtype)
    return info.max if op == "min" else info.min
