"""Masked reductions over flat data, written to read memory once.

For a whole-selection reduction (no kept axes) the data is walked in blocks small enough to
stay in the CPU cache, so the missing-value test and the reduction read each block from
memory once; a block with nothing to mask is reduced with plain numpy calls (``where=`` is
several times slower and is used only for blocks that need it). ``FlatReducer`` keeps the
running statistics, so blocks can come from anywhere: an array, or a file streamed through a
small buffer. ``reduce_rows`` reduces a stack of chunks that keep some axes: rows landing in
the same output block (and group, for grouped reductions) in one numpy pass.
"""

from __future__ import annotations

import itertools

import numpy as np

from .missing import MissingRule
from .partials import Groups, Partial, ReductionSpec, extreme_identity, reduce_block

BLOCK = 1 << 16  # elements per cache block (512 KB of float64)


class FlatReducer:
    """Running count / sum / min / max of the valid elements of the blocks it is given."""

    def __init__(self, rule: MissingRule, spec: ReductionSpec) -> None:
        self.rule = rule
        self.spec = spec
        self.acc = spec.acc_dtype
        self.count = 0
        self.total = self.acc.type(0)
        self.lo = self.hi = None
        # the clean path folds a stored extreme: not when min/max are of unpacked values
        self.clean_test = None if spec.decode_extremes else rule.clean_test()

    def add(self, flat: np.ndarray) -> None:
        """Fold a 1-d array in, a cache-sized block at a time."""
        for start in range(0, flat.size, BLOCK):
            self._block(flat[start : start + BLOCK])

    def _block(self, block: np.ndarray) -> None:
        if self.clean_test is not None and block.size and self._clean_block(block):
            return
        spec = self.spec
        mask = self.rule.mask(block)
        where = True
        if mask is not None and mask.any():
            where = ~mask
            n = int(np.count_nonzero(where))
            if n == 0:
                return
        else:
            n = block.size
        self.count += n
        if spec.needs_sum:
            self.total += np.sum(spec.summands(block), dtype=self.acc, where=where)
        if spec.needs_min or spec.needs_max:
            block = spec.extreme_values(block)
            dt = spec.extreme_dtype
        if spec.needs_min:
            self._fold_min(np.min(block, initial=extreme_identity(dt, "min"), where=where))
        if spec.needs_max:
            self._fold_max(np.max(block, initial=extreme_identity(dt, "max"), where=where))

    # np.minimum/np.maximum, not Python's min/max: a NaN in any block must win, as in numpy.
    def _fold_min(self, value) -> None:
        self.lo = value if self.lo is None else np.minimum(self.lo, value)

    def _fold_max(self, value) -> None:
        self.hi = value if self.hi is None else np.maximum(self.hi, value)

    def _clean_block(self, block: np.ndarray) -> bool:
        """Reduce ``block`` without a mask if one extreme proves nothing in it is missing.

        One max (or min) pass giving a scalar is cheaper than the equality mask (a bool array
        and a scan of it); NaN data makes the test false and the block takes the exact path.
        """
        side = self.clean_test[0]
        edge = clean_edge(block, self.clean_test)
        if edge is None:
            return False
        spec = self.spec
        self.count += block.size
        if spec.needs_sum:
            self.total += spec.summands(block).sum(dtype=self.acc)
        if spec.needs_min:
            self._fold_min(edge if side == "min" else block.min())
        if spec.needs_max:
            self._fold_max(edge if side == "max" else block.max())
        return True

    def partial(self) -> Partial:
        spec, dt = self.spec, self.spec.extreme_dtype
        part = Partial(np.asarray(self.count, dtype=np.int64))
        if spec.needs_sum:
            part.sum = np.asarray(self.total, dtype=self.acc)
        if spec.needs_min:
            lo = extreme_identity(dt, "min") if self.lo is None else self.lo
            part.min = np.asarray(lo).astype(dt)
        if spec.needs_max:
            hi = extreme_identity(dt, "max") if self.hi is None else self.hi
            part.max = np.asarray(hi).astype(dt)
        return part


def reduce_all(data: np.ndarray, rule: MissingRule, spec: ReductionSpec) -> Partial:
    """Statistics of every element of ``data`` (any shape) as one 0-d ``Partial``."""
    if not data.flags.c_contiguous:
        return reduce_block(data, rule.mask(data), spec, tuple(range(data.ndim)))
    reducer = FlatReducer(rule, spec)
    reducer.add(data.reshape(-1))
    return reducer.partial()


def clean_edge(block: np.ndarray, test: tuple):
    """The extreme of ``block`` that proves nothing in it is missing (``MissingRule.
    clean_test``), or None when it does not (NaN data never proves it)."""
    side, limit, bound = test
    if side == "max":
        edge = block.max()
        clean = (limit is None or edge < limit) and (bound is None or edge <= bound)
    else:
        edge = block.min()
        clean = (limit is None or edge > limit) and (bound is None or edge >= bound)
    return edge if clean else None


def reduce_masked(
    data: np.ndarray, rule: MissingRule, spec: ReductionSpec, axes: tuple[int, ...]
) -> Partial:
    """``reduce_block`` over ``axes`` with the missing-value mask only when it is needed.

    One max (or min) pass, as in ``FlatReducer``, proves most blocks have nothing to mask;
    then the sums and counts need no ``where=`` (several times slower) and no mask array.
    NaN data fails the test and takes the exact path.
    """
    test = rule.clean_test()
    if test is not None and data.size and clean_edge(data, test) is not None:
        return reduce_block(data, None, spec, axes)
    return reduce_block(data, rule.mask(data), spec, axes)


def reduce_rows(
    data: np.ndarray,
    rule: MissingRule,
    spec: ReductionSpec,
    starts: np.ndarray,
    stops: np.ndarray,
    groups: Groups | None = None,
    spans: np.ndarray | None = None,
) -> list[tuple[tuple, Partial]]:
    """``(output block, Partial)`` pairs of a stack of chunk selections, rows that land in
    the same block (and group) reduced together in one numpy pass.

    ``data[i]`` is one chunk's selected values (every stored dimension present); it lands at
    ``starts[i, j]:stops[i, j]`` along the ``j``-th kept dimension and, with ``groups``, covers
    ``spans[i, 0]:spans[i, 1]`` of the grouped dimension. A block is ``(group, ..., *slices)``
    with groups, ``slices`` without. A row whose positions fall into several groups is reduced
    with the grouped dimension kept and split at group changes; rows in no group are skipped.
    """
    keys = np.concatenate([starts, stops], axis=1)
    mixed: list[int] = []
    if groups is not None:
        row_group = groups.codes[spans[:, 0]]
        same = groups.run_ids()
        split = same[spans[:, 0]] != same[spans[:, 1] - 1]  # the row spans group changes
        row_group[split] = -2
        mixed = np.flatnonzero(split).tolist()
        keys = np.concatenate([row_group[:, None], keys], axis=1)
        wanted = np.flatnonzero(row_group >= 0)
    else:
        wanted = np.arange(len(data))
    out = _reduce_blocks(data, rule, spec, keys, wanted, groups)
    for i in mixed:
        out += _split_groups(data[i], rule, spec, keys[i, 1:], groups, spans[i])
    return out


def _reduce_blocks(data, rule, spec, keys, wanted, groups) -> list[tuple[tuple, Partial]]:
    """The rows ``wanted`` of ``data`` reduced block by block (rows with equal keys)."""
    axes = tuple(a + 1 for a in spec.reduce_axes)
    ordered = _runs(keys[wanted])
    if ordered is not None:  # the usual: one block, or a few in runs (months of days)
        members = [wanted[a:b] for a, b in itertools.pairwise(ordered)]
    else:
        uniq, inverse = np.unique(keys[wanted], axis=0, return_inverse=True)
        if uniq.shape[0] == len(data):  # every row its own block: one pass, split by row
            part = reduce_masked(data, rule, spec, axes)
            return [(_block(keys[i], groups), row_of(part, i)) for i in range(len(data))]
        inverse = inverse.reshape(-1)
        members = [wanted[inverse == k] for k in range(uniq.shape[0])]
    out = []
    for rows in members:
        first, last = int(rows[0]), int(rows[-1]) + 1
        sub = data[first:last] if last - first == rows.size else data[rows]
        out.append((_block(keys[rows[0]], groups), reduce_masked(sub, rule, spec, (0, *axes))))
    return out


def _runs(keys: np.ndarray) -> list[int] | None:
    """Bounds of the runs of equal consecutive rows of ``keys``, when there are few (at
    most half as many as rows, or one): each run is reduced as one block. None otherwise
    (a block may then appear in several runs, and is better gathered). Rows of one block
    in two runs would give two partials of it, which the caller adds up: still right."""
    if keys.shape[0] == 0:
        return []
    cuts = np.flatnonzero((keys[1:] != keys[:-1]).any(axis=1)) + 1
    if cuts.size and (cuts.size + 1) * 2 > keys.shape[0]:
        return None
    return [0, *cuts.tolist(), keys.shape[0]]


def _block(key: np.ndarray, groups: Groups | None) -> tuple:
    """A row key (``[group,] starts..., stops...``) as the block it lands in."""
    key = key.tolist()
    if groups is not None:
        group, key = key[0], key[1:]
    half = len(key) // 2
    slices = tuple(slice(a, b) for a, b in zip(key[:half], key[half:], strict=True))
    return slices if groups is None else (group, ..., *slices)


def row_of(part: Partial, i: int) -> Partial:
    """Row ``i`` of a partial of a stack (views)."""
    pick = lambda a: None if a is None else a[i]
    return Partial(part.count[i], pick(part.sum), pick(part.min), pick(part.max))


def _split_groups(row, rule, spec, bounds, groups: Groups, span) -> list[tuple[tuple, Partial]]:
    """One chunk's selection spanning several groups: reduced with the grouped dimension
    kept, then each run of equal group codes folded."""
    g = groups.axis
    axes = tuple(a for a in spec.reduce_axes if a != g)
    part = reduce_masked(row, rule, spec, axes)
    at = sum(1 for a in spec.kept_axes if a < g)  # where the grouped dimension is left
    codes = groups.codes[span[0] : span[1]]
    cuts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    fold = {"count": np.add, "sum": np.add, "min": np.minimum, "max": np.maximum}
    runs = {}
    for name, ufunc in fold.items():
        values = getattr(part, name)
        if values is not None:
            runs[name] = ufunc.reduceat(np.moveaxis(values, at, 0), cuts, axis=0)
    half = len(bounds) // 2
    slices = tuple(slice(int(a), int(b)) for a, b in zip(bounds[:half], bounds[half:], strict=True))
    out = []
    for r, code in enumerate(codes[cuts].tolist()):
        if code >= 0:
            picked = {name: values[r] for name, values in runs.items()}
            out.append(((code, ..., *slices), Partial(**picked)))
    return out
