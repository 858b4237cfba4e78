"""Partial results of reductions and how they combine into the final answer.

A reduction over a selection is split by chunk. Each chunk (or batch of whole chunks) yields a
``Partial``: count, and sum / min / max as the operation needs, over the output block that
chunk covers. An ``Accumulator`` adds partials into output-shaped arrays and ``finalize`` turns
them into the result: masked where count is 0, in the dtypes the contract promises (mean
float64, sums widened, min/max in the decoded dtype).

Sums are sums of *decoded* values, as netCDF4-python + numpy.ma compute them: a packed
variable is unpacked element by element (in the decoded dtype, e.g. float32) before it is
added in the accumulator (``ReductionSpec.acc_dtype``), so the mean of one element is that
element. Minimum and maximum are taken on stored values and decoded once at the end (unpacking
integers to floats is monotonic), except where it is not (integers that wrap, float data with
infinities, a non-finite scale or offset): there they are taken on the unpacked values. A NaN
anywhere in the selection makes them NaN, as numpy does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.ma  # results are masked arrays: imported with activezarr, not on a first call

from .missing import Packing

Op = Literal["mean", "sum", "min", "max", "count"]
OPS: tuple[Op, ...] = ("mean", "sum", "min", "max", "count")


def sum_dtype(dtype: np.dtype) -> np.dtype:
    """The widened dtype of a sum: int64, uint64 or float64."""
    return np.dtype({"i": "i8", "u": "u8", "b": "i8"}.get(dtype.kind, "f8"))


def accumulator_dtype(op: str, decoded: np.dtype) -> np.dtype:
    """What sums add up in: the widened sum dtype, except float64 for means of 64-bit
    integers (numpy.ma's ``mean(dtype=float64)`` converts each value, so an integer sum that
    wraps past 2**63 must not be divided)."""
    if op == "mean" and decoded.kind in "iu" and decoded.itemsize == 8:
        return np.dtype("f8")
    return sum_dtype(decoded)


def extreme_identity(dtype: np.dtype, which: Literal["min", "max"]):
    """The identity of min (the largest value) or of max (the smallest value)."""
    if dtype.kind == "f":
        return np.inf if which == "min" else -np.inf
    info = np.iinfo(dtype)
    return info.max if which == "min" else info.min


@dataclass(frozen=True)
class ReductionSpec:
    """What to compute: which statistics, over which axes of a chunk (all dims counted)."""

    op: Op
    reduce_axes: tuple[int, ...]
    kept_axes: tuple[int, ...]
    dtype: np.dtype  # the storage dtype values are compared in (native order)
    flip_extremes: bool = False  # a negative scale_factor: decoded min is the stored max
    packing: Packing | None = None  # CF unpacking, applied to values before they are summed

    @functools.cached_property  # asked for per block: computed once (frozen: fields only)
    def decoded_dtype(self) -> np.dtype:
        if self.packing is None or not self.packing.active:
            return self.dtype
        return self.packing.decoded_dtype(self.dtype)

    @functools.cached_property
    def decode_extremes(self) -> bool:
        """Min/max of unpacked values, not unpacked min/max, where unpacking may not be
        monotonic: to integers (which wrap: ``uint8 * uint8(2)``), through integers (an
        integer ``scale_factor`` with a float ``add_offset``: ``int8 * int16(273)`` wraps
        before the offset makes it float), from floats (``inf * 0`` is NaN) or by a
        non-finite scale or offset."""
        packing = self.packing
        if packing is None or not packing.active:
            return False
        if self.dtype.kind not in "iu" or self.decoded_dtype.kind in "iu":
            return True
        first = packing.scale_factor if packing.scale_factor is not None else packing.add_offset
        if np.asarray(first).dtype.kind != "f":
            return True
        return not (np.isfinite(packing.scale) and np.isfinite(packing.offset))

    @property
    def extreme_dtype(self) -> np.dtype:
        """The dtype min/max partials hold: stored values, or unpacked ones."""
        return self.decoded_dtype if self.decode_extremes else self.dtype

    def extreme_values(self, values: np.ndarray) -> np.ndarray:
        """What min/max are taken over: the stored values, or their unpacked integers."""
        return self.summands(values) if self.decode_extremes else values

    @property
    def acc_dtype(self) -> np.dtype:
        """The dtype of partial sums (sums of decoded values)."""
        return accumulator_dtype(self.op, self.decoded_dtype)

    def summands(self, values: np.ndarray) -> np.ndarray:
        """Stored values as what is summed: decoded as netCDF4-python decodes them."""
        if self.packing is None or not self.packing.active:
            return values
        with np.errstate(all="ignore"):  # masked elements may overflow; they are not summed
            return self.packing.decode(values)

    @property
    def needs_sum(self) -> bool:
        return self.op in ("mean", "sum")

    @property
    def stored_extreme(self) -> Literal["min", "max"] | None:
        """Which extreme of the stored values the operation needs."""
        if self.op not in ("min", "max"):
            return None
        if self.flip_extremes and not self.decode_extremes:
            return "max" if self.op == "min" else "min"
        return self.op

    @property
    def needs_min(self) -> bool:
        return self.stored_extreme == "min"

    @property
    def needs_max(self) -> bool:
        return self.stored_extreme == "max"


@dataclass(frozen=True, eq=False)
class Groups:
    """Groups along one reduced dimension (months of a time axis, say): a reduction with
    ``Groups`` keeps one partial per group, along a new leading axis of the result.

    ``codes[i]`` is the group of the ``i``-th selected position along stored dimension
    ``axis`` (in increasing index order), -1 when it belongs to no group.
    """

    axis: int
    codes: np.ndarray
    n: int

    def run_ids(self) -> np.ndarray:
        """For each position, the number of group changes before it (equal ids: one run)."""
        found = getattr(self, "_runs", None)
        if found is None:
            found = np.r_[0, np.cumsum(self.codes[1:] != self.codes[:-1])]
            object.__setattr__(self, "_runs", found)
        return found


@dataclass
class Partial:
    """Statistics of one block of the output (arrays shaped like that block; ``count`` may
    be a read-only broadcast view when every cell saw the same number of values)."""

    count: np.ndarray
    sum: np.ndarray | None = None
    min: np.ndarray | None = None
    max: np.ndarray | None = None


def reduce_block(
    data: np.ndarray, mask: np.ndarray | None, spec: ReductionSpec, axes: tuple[int, ...]
) -> Partial:
    """Reduce ``data`` over ``axes``, ignoring elements where ``mask`` is True."""
    valid = None if mask is None else ~mask
    if valid is None:  # the same count everywhere: one value seen through a read-only view
        kept = [n for i, n in enumerate(data.shape) if i not in axes]
        n = int(np.prod([data.shape[a] for a in axes], dtype=np.int64))
        count = np.broadcast_to(np.int64(n), kept)
    else:
        count = np.count_nonzero(valid, axis=axes).astype(np.int64, copy=False)
    part = Partial(np.asarray(count))
    dt = spec.extreme_dtype
    if spec.needs_sum:
        summands = spec.summands(data)
        part.sum = np.asarray(np.sum(summands, axis=axes, dtype=spec.acc_dtype, where=_w(valid)))
    if spec.needs_min or spec.needs_max:
        data = spec.extreme_values(data)
    if spec.needs_min:
        part.min = np.asarray(
            np.min(data, axis=axes, initial=extreme_identity(dt, "min"), where=_w(valid))
        ).astype(dt, copy=False)
    if spec.needs_max:
        part.max = np.asarray(
            np.max(data, axis=axes, initial=extreme_identity(dt, "max"), where=_w(valid))
        ).astype(dt, copy=False)
    return part


def _w(valid: np.ndarray | None):
    return True if valid is None else valid


class Accumulator:
    """Output-shaped running statistics that partials are added into."""

    def __init__(self, shape: tuple[int, ...], spec: ReductionSpec) -> None:
        self.spec = spec
        self.count = np.zeros(shape, dtype=np.int64)
        dt = spec.extreme_dtype
        self.sum = np.zeros(shape, dtype=spec.acc_dtype) if spec.needs_sum else None
        self.min = np.full(shape, extreme_identity(dt, "min"), dtype=dt) if spec.needs_min else None
        self.max = np.full(shape, extreme_identity(dt, "max"), dtype=dt) if spec.needs_max else None

    @classmethod
    def of(cls, spec: ReductionSpec, part: Partial) -> Accumulator:
        """An accumulator holding ``part`` alone (the whole output in one partial)."""
        acc = cls.__new__(cls)
        acc.spec = spec
        count = part.count if part.count.flags.writeable else np.array(part.count)
        acc.count, acc.sum, acc.min, acc.max = count, part.sum, part.min, part.max
        return acc

    def partial(self) -> Partial:
        """The running statistics as one ``Partial``."""
        return Partial(self.count, self.sum, self.min, self.max)

    def add(self, where: tuple[slice, ...], part: Partial) -> None:
        """Fold ``part`` into the output block ``where``."""
        where = where or ...  # a 0-d block: index with ... to get a view, not a scalar
        self.count[where] += part.count
        if self.sum is not None:
            self.sum[where] += part.sum
        if self.min is not None:
            np.minimum(self.min[where], part.min, out=self.min[where])
        if self.max is not None:
            np.maximum(self.max[where], part.max, out=self.max[where])

    def finalize(self, packing: Packing, components: bool = False):
        """The result of ``spec.op``: a MaskedArray, or a dict of them for components."""
        op = self.spec.op
        empty = self.count == 0
        count = np.ma.masked_array(self.count) if components or op == "count" else None
        if op == "count":
            return {"count": count} if components else count
        if op in ("mean", "sum"):
            if components or op == "sum":
                total = self.sum
                if op == "sum":
                    total = total.astype(sum_dtype(self.spec.decoded_dtype), copy=False)
                total = np.ma.masked_array(total, mask=empty)
                return {"sum": total, "count": count} if components else total
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.true_divide(self.sum, np.where(empty, 1, self.count), dtype=np.float64)
            return np.ma.masked_array(mean, mask=empty)
        raw = self.min if self.spec.stored_extreme == "min" else self.max
        value = raw if self.spec.decode_extremes else packing.decode(raw)
        if components:
            return {op: np.ma.masked_array(value, mask=empty), "count": count}
        return np.ma.masked_array(value, mask=empty)
