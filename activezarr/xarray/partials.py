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
from .selection import MAX_RUN_PRODUCT, LazySelection, runs

Op = Literal["mean", "sum", "min", "max", "count"]
PARTIALS_BYTES = 8 * 2**20  # per-chunk partials one Active call may hold (two run at once)
_ACTIVE_OP = {"mean": "sum", "sum": "sum", "min": "min", "max": "max", "count": "count"}


@dataclass
class Partials:
    """Statistics per kept cell: ``count`` always, ``value`` the sum, min or max (by ``op``)."""

    op: Op
    dims: tuple[str, ...]  # kept stored dimensions, stored order
    count: np.ndarray
    value: np.ndarray | None  # None for count; undefined where count == 0


def selection_partials(active: Active, sel: LazySelection, reduced: set[str], op: Op) -> Partials:
    """Partials of ``op`` over the ``reduced`` stored dimensions of ``sel``."""
    shape = active.shape
    pieces = [runs(e, n) for e, n in zip(sel.entries, shape, strict=True)]
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
    tasks = []  # (where in the output, selection): one Active reduction each
    for combo in itertools.product(*pieces):
        if any(stop == start for i, (_, start, stop) in enumerate(combo) if i in kept):
            continue  # an empty piece adds nothing
        where = tuple(slice(combo[i][1], combo[i][2]) for i in out)
        selection = tuple(p[0] for p in combo)
        for piece in _bounded(selection, active, [i for i in kept if i not in out]):
            tasks.append((where, piece))
    acc = _Accumulator(op, out_shape)
    for where, part in zip((w for w, _ in tasks), _reduce_all(active, op, tasks, axis)):
        acc.add(where, part)
    return Partials(op, tuple(sel.dims[i] for i in out), acc.count, acc.value)


def _reduce_all(active: Active, op: Op, tasks: list, axis) -> Iterator[dict]:
    """``Active.reduce`` of every task's selection, in order. Several run side by side: a
    small selection (one batch of chunks) is reduced in the calling thread, so runs of a
    label list or of a time group would otherwise use one core."""

    def one(task):
        return active.reduce(_ACTIVE_OP[op], task[1], axis, components=True)

    workers = min(len(tasks), active.max_workers)
    if workers <= 1:
        yield from map(one, tasks)
        return
    with cf.ThreadPoolExecutor(workers, "activezarr-runs") as pool:
        yield from pool.map(one, tasks)


def _bounded(selection: tuple, active: Active, reduced: list[int]) -> list[tuple]:
    """``selection`` cut along a reduced dimension into pieces whose per-chunk partials
    (``Active`` holds one per touched chunk until it combines them) stay under
    ``PARTIALS_BYTES``; the pieces' results add up to the whole's."""
    shape, chunks = active.shape, active.chunks
    spans = []
    for entry, n, c in zip(selection, shape, chunks, strict=True):
        if isinstance(entry, int):
            spans.append((1, 1))
            continue
        start, stop, step = entry.indices(n)
        size = len(range(start, stop, step))
        lo, hi = (start, start + (size - 1) * step) if size else (0, 0)
        lo, hi = min(lo, hi), max(lo, hi)
        spans.append((hi // c - lo // c + 1 if size else 0, min(size, c)))
    kept = [i for i, e in enumerate(selection) if not isinstance(e, int) and i not in reduced]
    n_chunks = int(np.prod([k for k, _ in spans], dtype=np.int64))
    per_part = 16 * int(np.prod([spans[i][1] for i in kept], dtype=np.int64))
    pieces = -(-n_chunks * per_part // PARTIALS_BYTES)
    if pieces <= 1 or not reduced:
        return [selection]
    dim = max(reduced, key=lambda i: spans[i][0])
    start, stop, step = selection[dim].indices(shape[dim])
    indices = range(start, stop, step)
    per_piece = -(-len(indices) // min(pieces, len(indices)))
    out = []
    for first in range(0, len(indices), per_piece):
        part = indices[first : first + per_piece]
        stop_at = part.stop if part.stop >= 0 else None
        out.append(selection[:dim] + (slice(part.start, stop_at, step),) + selection[dim + 1 :])
    return out


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
        key = "sum" if self.op in ("mean", "sum") else self.op
        value = np.ma.getdata(part[key])
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


def finish(p: Partials) -> np.ndarray:
    """The operation's values: float64 mean, sums and extremes as decoded, NaN where empty."""
    empty = p.count == 0
    if p.op == "count":
        return p.count
    value = p.value if p.value is not None else np.zeros(p.count.shape)
    if p.op == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.true_divide(value, np.where(empty, 1, p.count), dtype=np.float64)
    if empty.any():
        if value.dtype.kind != "f":
            value = value.astype(np.float64)
        value = np.where(empty, np.nan, value)
    return value
