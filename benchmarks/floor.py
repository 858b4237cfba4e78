"""The floor: the least a chunk-wise reduction must do, as a ~60-line prototype.

kerchunk offsets -> ``os.pread`` of each chunk (into one reused buffer per thread when
uncompressed) -> decode (if compressed) -> numpy sum of the selected part, on a few threads,
no masking and no CF decoding. Selections are slices with
step 1 (the benchmark cases); ``axis`` is None or 0.
"""

from __future__ import annotations

import itertools
import json
import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass
class Plan:
    shape: tuple[int, ...]  # of the selection
    chunks: tuple[int, ...]
    dtype: np.dtype
    codecs: list  # numcodecs codecs to decode with, in decode order
    jobs: list  # (offset, length, chunk slices, output slices)


def plan(refs_path: str, var: str, sel: tuple) -> Plan:
    """Every chunk the selection touches: where it is and which part of it is wanted."""
    with open(refs_path) as fh:
        refs = json.load(fh)
    refs = refs.get("refs", refs)
    meta = _json(refs[f"{var}/.zarray"])
    shape, chunks = meta["shape"], meta["chunks"]
    sel = tuple(sel) + (slice(None),) * (len(shape) - len(sel))
    bounds = [s.indices(n)[:2] for s, n in zip(sel, shape, strict=True)]
    per_dim = [_dim_pieces(lo, hi, c) for (lo, hi), c in zip(bounds, chunks, strict=True)]
    jobs = []
    for combo in itertools.product(*per_dim):
        key = f"{var}/" + ".".join(str(ci) for ci, _, _ in combo)
        _, offset, length = refs[key]
        jobs.append((offset, length, tuple(p[1] for p in combo), tuple(p[2] for p in combo)))
    return Plan(
        shape=tuple(hi - lo for lo, hi in bounds),
        chunks=tuple(chunks),
        dtype=np.dtype(meta["dtype"]),
        codecs=_codecs(meta),
        jobs=jobs,
    )


def mean(path: str, plan: Plan, axis: int | None = None, threads: int = 2):
    """Mean of the planned selection (over everything, or over axis 0)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        parts = [plan.jobs[i::threads] for i in range(threads)]
        with ThreadPoolExecutor(threads) as pool:
            totals = list(pool.map(lambda jobs: _sum_jobs(fd, plan, jobs, axis), parts))
    finally:
        os.close(fd)
    total = sum(totals)
    return total / (np.prod(plan.shape) if axis is None else plan.shape[0])


def mean_mapped(path: str, plan: Plan, axis: int | None = None, threads: int = 2):
    """The memory-map floor: every uncompressed chunk summed straight from ``mmap`` (numpy
    reads the page cache in place, no copy), on ``threads`` threads."""
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    count = int(np.prod(plan.chunks))

    def run(jobs):
        total = 0.0 if axis is None else np.zeros(plan.shape[1:])
        for offset, _, inner, outer in jobs:
            block = np.frombuffer(mm, plan.dtype, count, offset).reshape(plan.chunks)[inner]
            if axis is None:
                total += block.sum(dtype=np.float64)
            else:
                total[outer[1:]] += block.sum(axis=0, dtype=np.float64)
        return total

    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(run, [plan.jobs[i::threads] for i in range(threads)]))
    return total / (np.prod(plan.shape) if axis is None else plan.shape[0])


def _sum_jobs(fd: int, plan: Plan, jobs: list, axis: int | None):
    total = 0.0 if axis is None else np.zeros(plan.shape[1:])
    buf = bytearray(max((job[1] for job in jobs), default=0))  # reused: no page faults
    for offset, length, inner, outer in jobs:
        if plan.codecs:
            raw = os.pread(fd, length, offset)
            for codec in plan.codecs:
                raw = codec.decode(raw)
        else:
            raw = memoryview(buf)[: os.preadv(fd, [memoryview(buf)[:length]], offset)]
        block = np.frombuffer(raw, plan.dtype).reshape(plan.chunks)[inner]
        if axis is None:
            total += block.sum(dtype=np.float64)
        else:
            total[outer[1:]] += block.sum(axis=0, dtype=np.float64)
    return total


def _dim_pieces(lo: int, hi: int, chunk: int) -> list[tuple[int, slice, slice]]:
    """(chunk index, slice within the chunk, slice within the selection) along one axis."""
    pieces = []
    for ci in range(lo // chunk, -(-hi // chunk)):
        start, stop = max(lo, ci * chunk), min(hi, (ci + 1) * chunk)
        pieces.append(
            (ci, slice(start - ci * chunk, stop - ci * chunk), slice(start - lo, stop - lo))
        )
    return pieces


def _codecs(meta: dict) -> list:
    import numcodecs

    configs = ([meta["compressor"]] if meta.get("compressor") else []) + (
        meta.get("filters") or []
    )[::-1]
    return [numcodecs.get_codec(c) for c in configs]


def _json(value):
    return json.loads(value) if isinstance(value, str | bytes) else value
