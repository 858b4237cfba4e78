"""Per-cell partial statistics of a selection, from ``Active``, combined over selection runs.

``selection_partials`` reduces a ``LazySelection`` over some stored dimensions and returns
``Partials``: count and the sum, min or max each kept cell needs, as plain numpy arrays in stored
dimension order. A selection that ``Active`` cannot take in one call (a label list that is not
an arithmetic run) is split into runs; the runs' partials are placed or combined here, so every
element is read once. ``finish`` turns partials into the value of an operation (NaN where
nothing valid was seen), the same rules as ``Active``'s own results.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..active import Active
from ..errors import SelectionError
from ..reduction.partials import Groups
from .selection import MAX_RUN_PRODUCT, LazySelection, runs

Op = Literal["mean", "sum", "min", "max", "count"]
TimeGroups = tuple[str, np.ndarray, int] | None  # (dimension, code per position, groups)
# a mean's partials are its sum and count, summed as a mean sums (float64 for 64-bit integers)
_ACTIVE_OP = {"mean": "mean", "sum": "sum", "min": "min", "max": "max", "count": "count"}
_COMPONENT = {"mean": "sum", "sum": "sum", "min": "min", "max": "max", "count": "count"}


@dataclass
class Partials:
    """Statistics per kept cell: ``count`` always, ``value`` the sum, min or max (by ``op``)."""

    op: Op
    dims: tuple[str, ...]  # kept stored dimensions, stored order
    count: np.ndarray
    value: np.ndarray | None  # None for count; undefined where count == 0


def selection_partials(
    active: Active, sel: LazySelection, reduced: set[str], op: Op, groups: TimeGroups = None
) -> Partials:
    """Partials of ``op`` over the ``reduced`` stored dimensions of ``sel``.

    With ``groups`` (``(dimension, codes, n)``: the group of each position of ``sel`` along
    a reduced dimension, -1 for none) the partials gain a leading axis of ``n`` groups, all
    computed in the same pass over the chunks.
    """
    shape = active.shape
    pieces = [runs(e, n) for e, n in zip(sel.entries, shape, strict=True)]
    stored_groups = None
    if groups is not None:
        name, codes, n = groups
        axis = sel.dims.index(name)
        piece, codes = covering(sel.entries[axis], shape[axis], codes)
        pieces[axis] = [(piece, 0, codes.size)]
        stored_groups = Groups(axis, codes, n)
    n_calls = int(np.prod([len(p) for p in pieces]))
    if n_calls > MAX_RUN_PRODUCT:
        raise SelectionError(
            f"this selection splits into {n_calls} rectangular pieces (label lists that are "
            f"not runs); activezarr stops at {MAX_RUN_PRODUCT}. Select ranges with slices, "
            "or load the selection and reduce it with xarray"
        )
    kept = [i for i, (d, e) in enumerate(zip(sel.dims, sel.entries)) if not isinstance(e, int)]
    out = [i for i in kept if sel.dims[i] not in reduced]
    axis = tuple(k for k, i in enumerate(kept) if sel.dims[i] in reduced)
    out_shape = tuple(_selected_len(sel.entries[i], shape[i]) for i in out)
    lead, lead_shape = ((), ()) if groups is None else ((slice(None),), (groups[2],))
    tasks = []  # (where in the output, selection): one Active reduction each
    for combo in itertools.product(*pieces):
        if any(stop == start for i, (_, start, stop) in enumerate(combo) if i in kept):
            continue  # an empty piece adds nothing
        where = lead + tuple(slice(combo[i][1], combo[i][2]) for i in out)
        tasks.append((where, tuple(p[0] for p in combo)))
    dims = tuple(sel.dims[i] for i in out)
    parts = _reduce_all(active, op, tasks, axis, stored_groups)
    if len(tasks) == 1:  # one piece is the whole output: its arrays are the partials
        return _as_partials(op, dims, next(parts))
    acc = _Accumulator(op, lead_shape + out_shape)
    for where, part in zip((w for w, _ in tasks), parts):
        acc.add(where, part)
    if acc.value is None and op != "count":  # nothing selected: every cell empty
        acc.value = np.zeros(acc.shape)
    return Partials(op, dims, acc.count, acc.value)


def _as_partials(op: Op, dims: tuple[str, ...], part: dict) -> Partials:
    """``Active``'s components as ``Partials`` (no copy: ``Active`` made them for us)."""
    count = np.ma.getdata(part["count"]).astype(np.int64, copy=False)
    if op == "count":
        return Partials(op, dims, count, None)
    return Partials(op, dims, count, np.ma.getdata(part[_COMPONENT[op]]))


def covering(entry, length: int, codes: np.ndarray) -> tuple[slice, np.ndarray]:
    """One slice covering ``entry`` along a grouped dimension, and the group code of each
    position it selects (-1 where ``entry`` does not select it).

    Raises ``ValueError`` when ``entry`` selects a position twice (a label list with
    repeats): no single pass counts it twice.
    """
    codes = np.asarray(codes, dtype=np.int64)
    if isinstance(entry, slice):
        return entry, codes
    idx = np.asarray(entry, dtype=np.int64).reshape(-1)
    idx = np.where(idx < 0, idx + length, idx)
    if idx.size == 0:
        return slice(0, 0), codes[:0]
    lo, hi = int(idx.min()), int(idx.max())
    full = np.full(hi - lo + 1, -1, dtype=np.int64)
    full[idx - lo] = codes
    if np.count_nonzero(full >= 0) != np.count_nonzero(codes >= 0):
        raise ValueError("a label list with repeated positions along the grouped dimension")
    return slice(lo, hi + 1), full


def _reduce_all(active: Active, op: Op, tasks: list, axis, groups) -> Iterator[dict]:
    """``Active.reduce`` of every task's selection, in order. Several run side by side: a
    small selection (one batch of chunks) is reduced in the calling thread, so runs of a
    label list would otherwise use one core."""

    def one(task):
        return active.reduce(_ACTIVE_OP[op], task[1], axis, components=True, groups=groups)

    workers = min(len(tasks), active.max_workers)
    if workers <= 1:
        yield from map(one, tasks)
        return
    with cf.ThreadPoolExecutor(workers, "activezarr-runs") as pool:
        yield from pool.map(one, tasks)


def _selected_len(entry, length: int) -> int:
    if isinstance(entry, slice):
        return len(range(*entry.indices(length)))
    return int(np.asarray(entry).size)


class _Accumulator:
    def __init__(self, op: Op, shape: tuple[int, ...]) -> None:
        self.op = op
        self.count = np.zeros(shape, dtype=np.int64)
        self.value: np.ndarray | None = None
        self.shape = shape

    def add(self, where: tuple[slice, ...], part: dict) -> None:
        where = where or ...
        count = np.ma.getdata(part["count"]).astype(np.int64, copy=False)
        if self.op == "count":
            self.count[where] += count
            return
        value = np.ma.getdata(part[_COMPONENT[self.op]])
        if self.value is None:
            self.value = np.zeros(self.shape, dtype=value.dtype)
        elif self.value.dtype != value.dtype:
            self.value = self.value.astype(np.result_type(self.value, value))
        valid = count > 0
        if self.op in ("mean", "sum"):
            self.value[where] += np.where(valid, value, 0)
        else:
            had = self.count[where] > 0
            best = np.minimum if self.op == "min" else np.maximum
            current = self.value[where]
            merged = np.where(had & valid, best(current, value), np.where(valid, value, current))
            self.value[where] = merged
        self.count[where] += count


def finish(p: Partials, mean_dtype=np.float64) -> np.ndarray:
    """The operation's values: means (divided in float64, written as ``mean_dtype``), sums
    and extremes as decoded, NaN where empty.

    A mean consumes ``p``: float64 sums are divided in place and ``p`` lets go of its
    arrays, so the counts are freed before the result is written.
    """
    if p.op == "count":
        return p.count
    empty = p.count == 0
    value = p.value
    if p.op == "mean":
        if value.dtype == np.float64 and value.flags.writeable:
            np.divide(value, p.count, out=value, where=~empty)
        else:
            value = np.asarray(np.divide(value, np.where(empty, 1, p.count), dtype=np.float64))
        p.count = p.value = None
        value[empty] = np.nan
        return value.astype(mean_dtype, copy=False)
    if empty.any():
        value = value.astype(np.float64 if value.dtype.kind != "f" else value.dtype)
        value[empty] = np.nan
    return value
