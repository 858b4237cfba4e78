"""The local backend: read chunk bytes, decode with numcodecs, mask and reduce with numpy.

Whole interior chunks come in batches: byte ranges that touch end to end are read with one
call and reduced as one ``(k, *chunk)`` array, so a selection over many tiny chunks costs a
few large numpy calls. Partly selected chunks are read one by one; uncompressed ones only
over the rows of their first dimension that the selection touches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numcodecs
import numpy as np

from ..errors import ChunkReadError
from ..index.load import INLINE, MISSING
from ..readers import Readers, adjacent_runs_by_url
from ..reduce import Accumulator, Partial, reduce_block
from .base import Backend, BlockPartial, ChunkBatch, Job


class CodecCache:
    """numcodecs pipelines by config, built once per distinct pipeline."""

    def __init__(self) -> None:
        self._pipelines: dict[str, list] = {}
        self._lock = threading.Lock()

    def decoders(self, codecs: tuple[dict, ...]) -> list:
        key = repr(codecs)
        found = self._pipelines.get(key)
        if found is None:
            with self._lock:
                found = [numcodecs.get_codec(dict(c)) for c in reversed(codecs)]
                self._pipelines[key] = found
        return found


class LocalBackend(Backend):
    """Reduces chunks in this process (threads share one instance)."""

    name = "local"

    def __init__(self, storage_options: dict | None = None) -> None:
        self.readers = Readers(storage_options)
        self.codecs = CodecCache()

    def close(self) -> None:
        self.readers.close()

    # -- reading -------------------------------------------------------------------------

    def decode(self, job: Job, data, row_label: str) -> np.ndarray:
        """One chunk's stored bytes as a full chunk-shaped array in ``job.view_dtype``."""
        buf = data
        try:
            for codec in self.codecs.decoders(job.codecs):
                buf = codec.decode(buf)
        except Exception as exc:  # noqa: BLE001 - codec errors have no common base
            raise ChunkReadError(
                f"{job.source}: chunk {row_label} of '{job.variable}' could not be decoded "
                f"({type(exc).__name__}: {exc}); the file may have changed since it was indexed"
            ) from exc
        arr = np.frombuffer(buf, dtype=job.view_dtype)
        n = int(np.prod(job.chunks, dtype=np.int64))
        if arr.size != n:
            raise ChunkReadError(
                f"{job.source}: chunk {row_label} of '{job.variable}' holds {arr.size} values, "
                f"expected {n}; re-index the file"
            )
        return arr.reshape(job.chunks)

    def _blobs(self, job: Job, batch: ChunkBatch, offsets=None, sizes=None) -> list:
        """Stored bytes of every stored row (inline bytes for inline rows, None if missing)."""
        offsets = batch.offsets if offsets is None else offsets
        sizes = batch.sizes if sizes is None else sizes
        stored = np.flatnonzero(batch.url_ids >= 0)
        out: list = [None] * len(batch)
        for pos, data in batch.inline.items():
            out[pos] = data
        if stored.size:
            urls = [job.urls[u] for u in batch.url_ids[stored]]
            blobs = self.readers.read_ranges(urls, offsets[stored], sizes[stored])
            for pos, blob in zip(stored, blobs, strict=True):
                out[pos] = blob
        return out

    def chunk_blocks(self, job: Job, batch: ChunkBatch) -> Iterator[tuple[int, np.ndarray]]:
        """``(position, selected block)`` for every row that has data (missing rows skipped)."""
        partial_read = not job.codecs and len(job.chunks) > 0
        if partial_read:
            offsets, sizes = self._row_ranges(job, batch)
            blobs = self._blobs(job, batch, offsets, sizes)
        else:
            blobs = self._blobs(job, batch)
        ndim = len(job.chunks)
        for pos, blob in enumerate(blobs):
            start, stop = batch.in_start[pos], batch.in_stop[pos]
            sl = [slice(int(start[d]), int(stop[d]), job.steps[d]) for d in range(ndim)]
            if blob is None:
                if job.fill is not None and batch.url_ids[pos] == MISSING:
                    shape = [len(range(s.start, s.stop, s.step)) for s in sl]
                    yield pos, np.full(shape, job.fill, dtype=job.view_dtype)
                continue
            if partial_read and batch.url_ids[pos] != INLINE:
                arr = np.frombuffer(blob, dtype=job.view_dtype)
                arr = arr.reshape((-1,) + job.chunks[1:])
                sl[0] = slice(0, int(stop[0] - start[0]), job.steps[0])
            else:
                arr = self.decode(job, blob, str(pos))
            yield pos, arr[tuple(sl)]

    def _row_ranges(self, job: Job, batch: ChunkBatch) -> tuple[np.ndarray, np.ndarray]:
        """Byte ranges covering only the selected rows of dimension 0 of each chunk."""
        row = np.uint64(int(np.prod(job.chunks[1:], dtype=np.int64)) * job.view_dtype.itemsize)
        first = batch.in_start[:, 0].astype(np.uint64)
        rows = (batch.in_stop[:, 0] - batch.in_start[:, 0]).astype(np.uint64)
        return batch.offsets + first * row, rows * row

    def complete_stacks(self, job: Job, batch: ChunkBatch) -> Iterator[tuple[int, np.ndarray]]:
        """``(first position, (k, *chunk) array)`` for whole chunks, as few arrays as possible."""
        stored = batch.url_ids >= 0
        if not job.codecs and stored.all():
            urls = [job.urls[u] for u in batch.url_ids]
            for a, b in adjacent_runs_by_url(urls, batch.offsets, batch.sizes):
                size = int(batch.offsets[b - 1] + batch.sizes[b - 1] - batch.offsets[a])
                blob = self.readers.read_ranges(
                    [urls[a]], batch.offsets[a : a + 1], np.array([size], dtype=np.uint64)
                )[0]
                arr = np.frombuffer(blob, dtype=job.view_dtype)
                yield a, arr.reshape((b - a,) + job.chunks)
            return
        blobs = self._blobs(job, batch)
        have = [p for p, b in enumerate(blobs) if b is not None or job.fill is not None]
        if not have:
            return
        stack = np.empty((len(have),) + job.chunks, dtype=job.view_dtype)
        for i, pos in enumerate(have):
            blob = blobs[pos]
            stack[i] = job.fill if blob is None else self.decode(job, blob, str(pos))
        yield -1, stack  # positions are not contiguous; only used where blocks merge

    # -- reducing ------------------------------------------------------------------------

    def reduce(self, job: Job, batch: ChunkBatch, stats=None) -> list[BlockPartial]:
        spec = job.spec
        assert spec is not None
        if batch.complete and not spec.kept_axes:
            return self._reduce_stacks_to_scalar(job, batch)
        if not spec.kept_axes:
            acc = Accumulator((), spec)
            for _, block in self.chunk_blocks(job, batch):
                acc.add((), reduce_block(block, job.rule.mask(block), spec, spec.reduce_axes))
            return [((), Partial(acc.count, acc.sum, acc.min, acc.max))]
        out = []
        for pos, block in self.chunk_blocks(job, batch):
            part = reduce_block(block, job.rule.mask(block), spec, spec.reduce_axes)
            where = tuple(
                slice(int(batch.out_start[pos, d]), int(batch.out_stop[pos, d]))
                for d in spec.kept_axes
            )
            out.append((where, part))
        return out

    def _reduce_stacks_to_scalar(self, job: Job, batch: ChunkBatch) -> list[BlockPartial]:
        spec = job.spec
        acc = Accumulator((), spec)
        for _, stack in self.complete_stacks(job, batch):
            axes = tuple(range(stack.ndim))
            acc.add((), reduce_block(stack, job.rule.mask(stack), spec, axes))
        return [((), Partial(acc.count, acc.sum, acc.min, acc.max))]

    def select(self, job: Job, batch: ChunkBatch, out: np.ndarray) -> None:
        """Copy the selected values of every stored row into ``out`` (the selected array)."""
        ndim = len(job.chunks)
        for pos, block in self.chunk_blocks(job, batch):
            where = tuple(
                slice(int(batch.out_start[pos, d]), int(batch.out_stop[pos, d]))
                for d in range(ndim)
            )
            out[where] = block


__all__ = ["LocalBackend", "MISSING"]
