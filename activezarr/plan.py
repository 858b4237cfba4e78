"""Selections to chunk tasks: the only module that does index arithmetic.

``normalize_selection`` turns a user selection into one ``DimSelection`` per dimension
(raising ``SelectionError`` for every malformed or out-of-range part), and ``plan_chunks``
crosses those with the chunk grid into a ``ChunkPlan``: numpy arrays with one row per touched
chunk (chunk coordinates, selection inside the chunk, position in the output) and an
``is_complete`` flag for chunks the selection covers whole. No per-chunk Python objects.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import SelectionError


@dataclass(frozen=True)
class DimSelection:
    """The selected indices along one dimension: ``range(start, stop, step)``, step > 0.

    ``reverse`` records a negative user step (the same indices, output order flipped);
    ``drop`` records an integer index (the dimension disappears from the result).
    """

    start: int
    stop: int
    step: int
    size: int
    drop: bool = False
    reverse: bool = False


def _dim_label(dims: tuple[str, ...] | None, d: int) -> str:
    if dims and d < len(dims) and dims[d]:
        return f"dimension {d} ('{dims[d]}')"
    return f"dimension {d}"


def _normalize_int(key: Any, length: int, label: str) -> DimSelection:
    i = operator.index(key)
    if not -length <= i < length:
        raise SelectionError(f"index {i} is out of range for {label} of length {length}")
    i %= length
    return DimSelection(i, i + 1, 1, 1, drop=True)


def _normalize_slice(key: slice, length: int, label: str) -> DimSelection:
    for part in (key.start, key.stop, key.step):
        if part is not None:
            try:
                operator.index(part)
            except TypeError:
                raise SelectionError(
                    f"slice {key} for {label} has a non-integer bound {part!r}"
                ) from None
    if key.step == 0:
        raise SelectionError(f"slice step cannot be zero ({label})")
    start, stop, step = key.indices(length)
    indices = range(start, stop, step)
    size = len(indices)
    if step > 0:
        return DimSelection(start, start + size * step if size else start, step, size)
    if size == 0:
        return DimSelection(0, 0, 1, 0, reverse=True)
    first = indices[-1]
    return DimSelection(first, first + size * -step, -step, size, reverse=True)


def normalize_selection(
    selection: Any, shape: tuple[int, ...], dims: tuple[str, ...] | None = None
) -> tuple[DimSelection, ...]:
    """One ``DimSelection`` per dimension for a numpy-style basic selection.

    Examples
    --------
    >>> [(d.start, d.stop, d.step) for d in normalize_selection((0, slice(None, None, 2)), (3, 5))]
    [(0, 1, 1), (0, 6, 2)]
    """
    keys = selection if isinstance(selection, tuple) else (selection,)
    ndim = len(shape)
    if sum(k is Ellipsis for k in keys) > 1:
        raise SelectionError("a selection can hold at most one Ellipsis (...)")
    if any(k is Ellipsis for k in keys):
        at = next(i for i, k in enumerate(keys) if k is Ellipsis)
        fill = ndim - (len(keys) - 1)
        keys = keys[:at] + (slice(None),) * max(fill, 0) + keys[at + 1 :]
    if len(keys) > ndim:
        raise SelectionError(
            f"too many indices: {len(keys)} given for a variable with {ndim} dimensions"
            + (f" {dims}" if dims else "")
        )
    keys = keys + (slice(None),) * (ndim - len(keys))
    out = []
    for d, (key, length) in enumerate(zip(keys, shape, strict=True)):
        label = _dim_label(dims, d)
        if isinstance(key, slice):
            out.append(_normalize_slice(key, length, label))
        elif isinstance(key, bool | np.bool_):
            raise SelectionError(f"boolean index {key!r} is not supported for {label}")
        else:
            try:
                out.append(_normalize_int(key, length, label))
            except TypeError:
                raise SelectionError(
                    f"index {key!r} for {label} must be an integer, a slice or ..."
                ) from None
    return tuple(out)


@dataclass(frozen=True)
class DimPlan:
    """Per-dimension table of the touched chunks (arrays of equal length)."""

    chunk: np.ndarray  # chunk index along the dimension
    in_start: np.ndarray  # first selected index inside the chunk
    in_stop: np.ndarray  # one past the last selected index inside the chunk
    out_start: np.ndarray  # position of the first selected element in the output
    out_stop: np.ndarray
    complete: np.ndarray  # the chunk's whole extent is selected


def plan_dimension(sel: DimSelection, length: int, chunk: int) -> DimPlan:
    """Touched chunks along one dimension of ``length`` split into chunks of ``chunk``."""
    idx = np.arange(sel.start, sel.stop, sel.step, dtype=np.int64)
    cid = idx // chunk
    first = np.flatnonzero(np.r_[True, cid[1:] != cid[:-1]]) if idx.size else np.array([], int)
    last = np.r_[first[1:], idx.size] - 1 if idx.size else np.array([], int)
    chunks = cid[first]
    in_start = idx[first] - chunks * chunk
    in_stop = idx[last] - chunks * chunk + 1
    complete = (sel.step == 1) & (in_start == 0) & (in_stop == chunk)
    complete &= (chunks + 1) * chunk <= length
    return DimPlan(chunks, in_start, in_stop, first, last + 1, complete)


@dataclass(frozen=True)
class ChunkPlan:
    """Every touched chunk of a selection, one row per chunk, in C order of the chunk grid.

    ``chunk_coords``, ``in_start``, ``in_stop``, ``out_start`` and ``out_stop`` are
    ``(n, ndim)`` int64 arrays; the selection inside chunk ``i`` along dimension ``d`` is
    ``in_start[i, d]:in_stop[i, d]:steps[d]`` and lands at ``out_start[i, d]:out_stop[i, d]``
    of the selected (not yet squeezed) array.
    """

    selection: tuple[DimSelection, ...]
    steps: np.ndarray
    chunk_coords: np.ndarray
    in_start: np.ndarray
    in_stop: np.ndarray
    out_start: np.ndarray
    out_stop: np.ndarray
    is_complete: np.ndarray
    signature: np.ndarray  # equal ids <=> equal in-chunk selection (in_start, in_stop)

    @property
    def n_chunks(self) -> int:
        return int(self.chunk_coords.shape[0])

    @property
    def selected_shape(self) -> tuple[int, ...]:
        return tuple(s.size for s in self.selection)

    def flat_chunk_ids(self, grid: tuple[int, ...]) -> np.ndarray:
        """Index of each chunk in the C-ordered chunk grid."""
        if not grid:
            return np.zeros(self.n_chunks, dtype=np.int64)
        return np.ravel_multi_index(tuple(self.chunk_coords.T), grid).astype(np.int64)


def plan_chunks(
    selection: tuple[DimSelection, ...], shape: tuple[int, ...], chunks: tuple[int, ...]
) -> ChunkPlan:
    """Cross the per-dimension chunk tables into one row per touched chunk."""
    per_dim = [plan_dimension(s, n, c) for s, n, c in zip(selection, shape, chunks, strict=True)]
    ndim = len(shape)
    counts = [p.chunk.size for p in per_dim]
    grid = np.indices(counts).reshape(ndim, -1) if ndim else np.zeros((0, 1), dtype=np.int64)

    def cross(field: str) -> np.ndarray:
        cols = [getattr(p, field)[grid[d]] for d, p in enumerate(per_dim)]
        n = grid.shape[1]
        return np.stack(cols, axis=1) if cols else np.zeros((n, 0), dtype=np.int64)

    complete = cross("complete").all(axis=1)
    return ChunkPlan(
        signature=_signatures(per_dim, grid),
        selection=selection,
        steps=np.array([s.step for s in selection], dtype=np.int64),
        chunk_coords=cross("chunk").astype(np.int64),
        in_start=cross("in_start").astype(np.int64),
        in_stop=cross("in_stop").astype(np.int64),
        out_start=cross("out_start").astype(np.int64),
        out_stop=cross("out_stop").astype(np.int64),
        is_complete=complete,
    )


def _signatures(per_dim: list[DimPlan], grid: np.ndarray) -> np.ndarray:
    """One id per touched chunk naming its in-chunk selection, from per-dimension classes."""
    classes, sizes = [], []
    for p in per_dim:
        pairs = np.stack([p.in_start, p.in_stop], axis=1)
        uniq, inverse = (
            np.unique(pairs, axis=0, return_inverse=True) if len(pairs) else (pairs, pairs[:, 0])
        )
        classes.append(inverse.reshape(-1))
        sizes.append(max(len(uniq), 1))
    if not classes:
        return np.zeros(grid.shape[1], dtype=np.int64)
    per_row = tuple(c[grid[d]] for d, c in enumerate(classes))
    return np.ravel_multi_index(per_row, sizes).astype(np.int64)


Piece = tuple[tuple[int, ...], tuple[slice, ...], tuple[slice, ...]]


def small_pieces(
    selection: tuple[DimSelection, ...], chunks: tuple[int, ...], limit: int
) -> list[Piece] | None:
    """``(chunk coords, in-chunk slices, output slices)`` of every touched chunk, or None when
    the selection may touch more than ``limit`` chunks.

    Plain Python on purpose: for a few chunks, building the numpy tables of ``plan_chunks``
    costs more than reading the data.

    >>> small_pieces((DimSelection(3, 7, 1, 4),), (5,), 4)
    [((0,), (slice(3, 5, 1),), (slice(0, 2, None),)), ((1,), (slice(0, 2, 1),), (slice(2, 4, None),))]
    """
    bound = 1
    for s, c in zip(selection, chunks, strict=True):
        if s.size == 0:
            return []
        bound *= (s.start + (s.size - 1) * s.step) // c - s.start // c + 1
        if bound > limit:
            return None
    per_dim = []
    for s, c in zip(selection, chunks, strict=True):
        last = s.start + (s.size - 1) * s.step
        pieces = []
        for ci in range(s.start // c, last // c + 1):
            base = ci * c
            k0 = -(-(max(s.start, base) - s.start) // s.step)  # first selected index in chunk
            k1 = (min(last, base + c - 1) - s.start) // s.step  # last one
            if k0 > k1:
                continue
            first = s.start + k0 * s.step - base
            stop = s.start + k1 * s.step - base + 1
            pieces.append((ci, slice(first, stop, s.step), slice(k0, k1 + 1)))
        per_dim.append(pieces)
    return [
        (tuple(p[0] for p in combo), tuple(p[1] for p in combo), tuple(p[2] for p in combo))
        for combo in itertools.product(*per_dim)
    ]
