"""Masked reductions of one stack of chunks, written to read memory once.

For a whole-selection reduction (no kept axes) the data is walked in blocks small enough to
stay in the CPU cache, so the missing-value test and the reduction read each block from
memory once; a block with nothing to mask is reduced with plain numpy calls (``where=`` is
several times slower and is used only for blocks that need it).
"""

from __future__ import annotations

import numpy as np

from .missing import MissingRule
from .reduce import Partial, ReductionSpec, extreme_identity, reduce_block, sum_dtype

BLOCK = 1 << 16  # elements per cache block (512 KB of float64)


def reduce_all(data: np.ndarray, rule: MissingRule, spec: ReductionSpec) -> Partial:
    """Statistics of every element of ``data`` (any shape) as one 0-d ``Partial``."""
    if not data.flags.c_contiguous:
        return reduce_block(data, rule.mask(data), spec, tuple(range(data.ndim)))
    flat = data.reshape(-1)
    dt = spec.dtype
    acc = sum_dtype(dt)
    count = 0
    total = acc.type(0)
    lo = hi = None
    need_sum, need_min, need_max = spec.needs_sum, spec.needs_min, spec.needs_max
    for start in range(0, flat.size, BLOCK):
        block = flat[start : start + BLOCK]
        mask = rule.mask(block)
        if mask is not None and mask.any():
            valid = ~mask
            n = int(np.count_nonzero(valid))
            if n == 0:
                continue
            count += n
            if need_sum:
                total += np.sum(block, dtype=acc, where=valid)
            if need_min:
                v = np.min(block, initial=extreme_identity(dt, "min"), where=valid)
                lo = v if lo is None else min(lo, v)
            if need_max:
                v = np.max(block, initial=extreme_identity(dt, "max"), where=valid)
                hi = v if hi is None else max(hi, v)
            continue
        count += block.size
        if need_sum:
            total += block.sum(dtype=acc)
        if need_min:
            v = block.min()
            lo = v if lo is None else min(lo, v)
        if need_max:
            v = block.max()
            hi = v if hi is None else max(hi, v)
    part = Partial(np.asarray(count, dtype=np.int64))
    if need_sum:
        part.sum = np.asarray(total, dtype=acc)
    if need_min:
        part.min = np.asarray(extreme_identity(dt, "min") if lo is None else lo).astype(dt)
    if need_max:
        part.max = np.asarray(extreme_identity(dt, "max") if hi is None else hi).astype(dt)
    return part
