"""netCDF-C's read of a record variable past its own extent, as netCDF4-python returns it.

A record variable can be shorter than its unlimited dimension (another variable grew the
dimension further). netCDF-C 4.10 (``NC4_get_vars``) then, along each unlimited dimension of the
variable, reads the selected positions it takes to lie inside the dataset's extent, writes those
values at the start of the output in C order, writes fill values after them (netCDF's fill: the
``_FillValue`` attribute, else the type's default, also for variables created without fill), and
leaves the rest of the output as it was (netCDF4-python's is uninitialised memory). When the
short dimension is not the first one that selects several positions (``(x, time)`` with
``time`` short), or several dimensions are short, values do not land where they are stored:
they are packed at the start. activezarr copies this.

Where netCDF-C leaves memory uninitialised (two unlimited dimensions, one short and the other
selecting several positions), activezarr writes fill, so those positions are missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Positions = tuple[int, int, int]  # ``start, step, size``: range(start, start + step * size, step)


@dataclass(frozen=True)
class RecordRead:
    """How netCDF-C reads one selection of a record variable shorter than its dimension."""

    counts: tuple[int, ...]  # positions selected along each dimension
    stored: tuple[Positions, ...] | None  # what it reads from the file; None: nothing
    n_fill: int  # fill values it writes after the values read
    short: tuple[int, ...]  # dimensions along which it reads fewer positions than selected

    @property
    def n_read(self) -> int:
        return 0 if self.stored is None else math.prod(n for _, _, n in self.stored)

    @property
    def natural(self) -> bool:
        """Every value read lands where it is stored and fill covers the rest exactly: one
        short dimension, every dimension before it selecting one position."""
        if self.n_read + self.n_fill != math.prod(self.counts):
            return False
        if self.stored is None:
            return True
        j = self.short[0]
        return len(self.short) == 1 and all(n == 1 for n in self.counts[:j])

    def layout(self, values: np.ndarray | None, fill: np.generic) -> np.ndarray:
        """The selected values as netCDF-C lays them out (``values``: what it reads, shaped
        like ``stored``; ``fill`` in their dtype). Increasing index order, dimensions kept."""
        out = np.full(math.prod(self.counts), fill, dtype=np.asarray(fill).dtype)
        if values is not None:
            out[: values.size] = values.reshape(-1)
        return out.reshape(self.counts)


def record_read(
    sel: tuple[Positions, ...], extent: tuple[int, ...], unlimited: tuple[bool, ...]
) -> RecordRead | None:
    """netCDF-C's read of the positions ``sel`` (increasing, per dimension) of a variable
    stored with ``extent``; None when it is the plain read (nothing selected past the extent
    of an unlimited dimension, or nothing selected at all)."""
    counts = tuple(n for _, _, n in sel)
    if 0 in counts:
        return None
    stored, sizes, no_read, provide = [], [], False, False
    for (start, step, n), length, grows in zip(sel, extent, unlimited, strict=True):
        beyond = n  # a fixed dimension's fill size is its count, as a read one's after none
        if grows and not no_read:
            if start >= length:
                beyond = n
            elif start + step * (n - 1) >= length:
                beyond = n - -(-(length - start) // step)  # positions before length
            else:
                beyond = 0
            provide |= beyond > 0
            no_read = beyond == n
        sizes.append(beyond)
        stored.append((start, step, n - beyond if grows else n))
    if not provide:
        return None
    short = tuple(d for d, (a, b) in enumerate(zip(stored, sel, strict=True)) if a[2] < b[2])
    n_fill = math.prod(n or 1 for n in sizes)
    return RecordRead(counts, None if no_read else tuple(stored), n_fill, short)
