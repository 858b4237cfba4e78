"""The local backend: read chunk bytes, decode with numcodecs, mask and reduce with numpy.

A batch holds chunks that share one selection pattern, so it is reduced as one
``(k, *chunk)`` stack with one slice: whole chunks and edge chunks alike cost a few numpy calls
per batch, not per chunk, and chunks that land in the same output block (and time group) leave
the batch as one partial. Uncompressed local chunks are viewed straight from a memory map
(no copy), in offset order, as long runs wherever they sit end to end in the file; pages are
released after use so resident memory stays small. Compressed chunks are decoded into the
stack (zlib releases the GIL, so worker threads decode in parallel), into one reused buffer
per thread; HDF5's byte shuffle is undone by c-blosc's SIMD unshuffle.
"""

from __future__ import annotations

import functools
import struct
import threading
from collections.abc import Iterator

import numpy as np

from ..errors import ChunkReadError
from ..index.load import INLINE
from ..index.network import ReadPolicy
from ..index.sources import is_remote
from ..readers import Readers, adjacent_runs, adjacent_runs_by_url
from ..reduction.kernels import FlatReducer, reduce_all, reduce_masked, reduce_rows, row_of
from ..reduction.partials import Accumulator, Partial
from .base import Backend, BlockPartial, ChunkBatch, Job
from .decode import BoundedStream, ChunkTooLarge, bound_for, bounded, deliver, fills_exactly

STREAM_PIECE = 1 << 20  # bytes read and reduced at a time when streaming whole chunks
MAX_CLASSES = 512  # more offset classes than this in a batch: copy chunk by chunk instead
SHUFFLED_BATCH = 1 << 20  # shuffled chunks up to this size are unshuffled together, by so much
BLOSC_ABOVE = 1 << 14  # ... but above this size by blosc, chunk by chunk (its call costs ~4 us)


class CodecCache:
    """numcodecs pipelines by config, built once per distinct pipeline."""

    def __init__(self) -> None:
        self._pipelines: dict[str, list] = {}
        self._lock = threading.Lock()
        self._last: tuple | None = None

    def decoders(self, codecs: tuple[dict, ...], nbytes: int = 0) -> list:
        """Decoders in decode order; ``nbytes`` bounds what a chunk decodes to."""
        last = self._last
        if last is not None and last[0] is codecs and last[2] == nbytes:
            return last[1]
        key = repr((codecs, nbytes))
        found = self._pipelines.get(key)
        if found is None:
            with self._lock:
                bound = bound_for(codecs, nbytes) if nbytes else None
                found = [_decoder(c, nbytes, bound) for c in reversed(codecs)]
                self._pipelines[key] = found
        self._last = (codecs, found, nbytes)  # one pipeline per job: skip the repr next time
        return found


class LibdeflateZlib:
    """zlib decoding with libdeflate (the optional ``deflate`` package): same bytes, about
    1.5x faster than zlib. Anything libdeflate refuses goes through zlib, bounded by
    ``limit`` (a decompression bomb is refused there, see ``decode.py``)."""

    checks_size = True  # decode(buf, out) fills all of ``out`` or raises

    def __init__(self, bound: int, limit: int | None = None) -> None:
        import deflate

        self._decompress = deflate.zlib_decompress
        self.bound = bound
        self._fallback = BoundedStream("zlib", limit or bound_for((), bound), {})

    def decode(self, buf, out=None):
        try:
            data = self._decompress(buf, self.bound)
        except Exception:  # noqa: BLE001 - a bound too small, or input libdeflate rejects
            data = self._fallback.decode(buf)
        return deliver(data, out)


class ByteUnshuffle:
    """HDF5's byte shuffle undone by c-blosc's SIMD unshuffle (shipped inside numcodecs),
    about 5x faster than numcodecs' ``Shuffle`` loop; the same bytes out.

    The shuffled bytes are handed to blosc as a one-block, uncompressed frame (a 16-byte
    header, the block's start, the stream's length, the bytes: blosc copies a stream whose
    stored size equals the block size as it is, then unshuffles the block). Without blosc,
    or for sizes a frame cannot say, one strided numpy copy per byte of an element.
    """

    checks_size = True  # decode(buf, out) fills all of ``out`` or raises

    def __init__(self, elementsize: int) -> None:
        self.elementsize = elementsize
        self._blosc = _blosc_decompress()
        self.uses_blosc = self._blosc is not None

    def decode(self, buf, out=None):
        """Unshuffle ``buf``; bytes past the last whole element are left as they are, as
        HDF5's shuffle leaves them (netCDF-C puts fletcher32 before shuffle, so an 8-byte
        variable's shuffled chunk ends in the 4 checksum bytes)."""
        src = np.frombuffer(buf, dtype=np.uint8)
        k = self.elementsize
        size = src.size - src.size % k  # the shuffled part
        target = np.empty(src.size, np.uint8) if out is None else _bytes_of(out).reshape(-1)
        if target.size != src.size:
            raise ValueError("decoded size differs from the chunk size")
        if self.fits_blosc(size):
            self.blosc_into(src, target, size)
        else:
            lanes = target[:size].reshape(-1, k)
            n = size // k
            for b in range(k):
                lanes[:, b] = src[b * n : (b + 1) * n]
        target[size:] = src[size:]
        return target if out is None else out

    def fits_blosc(self, size: int) -> bool:
        """Whether blosc can unshuffle ``size`` bytes (shuffled whole elements) as one frame."""
        return self._blosc is not None and 0 < size <= BLOSC_MAX and self.elementsize < 256

    def blosc_into(self, data, target: np.ndarray, size: int) -> None:
        """The first ``size`` bytes of ``data`` unshuffled by blosc into ``target``'s."""
        frame = b"".join((_blosc_frame_head(size, self.elementsize), data[:size]))
        self._blosc(frame, target[:size])


BLOSC_MAX = 2**31 - 64  # blosc's int32 sizes, header included


def _blosc_frame_head(size: int, k: int) -> bytes:
    """A blosc 1 frame's header for ``size`` shuffled bytes of ``k``-byte elements, stored
    as one uncompressed block (flags: shuffle, one stream; blosclz never runs)."""
    return struct.pack("<BBBBiiiii", 2, 1, 0x11, k, size, size, size + 24, 20, size)


@functools.cache
def _blosc_decompress():
    """numcodecs' blosc ``decompress(source, dest)``, or None (checked once on a sample)."""
    try:
        from numcodecs import blosc
    except ImportError:
        return None
    sample = np.arange(64, dtype=np.uint32)
    shuffled = sample.view(np.uint8).reshape(-1, 4).T.tobytes()
    out = np.empty(64, np.uint32)
    try:
        blosc.decompress(_blosc_frame_head(256, 4) + shuffled, out)
    except Exception:  # noqa: BLE001 - a blosc that reads frames differently: do not use it
        return None
    return blosc.decompress if np.array_equal(out, sample) else None


def _bytes_of(out) -> np.ndarray:
    return (out if isinstance(out, np.ndarray) else np.frombuffer(out, np.uint8)).view(np.uint8)


def _decoder(config: dict, nbytes: int, bound: int | None = None):
    """The decoder of one codec config: numcodecs, or libdeflate for zlib when installed,
    or numpy for a byte shuffle of multi-byte elements; compressors bounded by ``bound``
    (``decode.bounded``)."""
    if config.get("id") == "zlib" and nbytes and _has_libdeflate():
        return LibdeflateZlib(nbytes + 64, bound)
    if config.get("id") == "shuffle" and int(config.get("elementsize", 4)) > 1:
        return ByteUnshuffle(int(config.get("elementsize", 4)))
    found = bounded(config, bound) if bound else None
    if found is not None:
        return found
    import numcodecs  # imported on first use: it costs 0.1 s

    return numcodecs.get_codec(dict(config))


@functools.cache
def _has_libdeflate() -> bool:
    try:
        import deflate  # noqa: F401
    except ImportError:
        return False
    return True


def _selection(job: Job, batch: ChunkBatch, first_rows: int | None = None) -> tuple:
    """The in-chunk slices shared by every row of the batch, with a leading stack axis."""
    start, stop = batch.in_start[0], batch.in_stop[0]
    sl = [slice(int(a), int(b), s) for a, b, s in zip(start, stop, job.steps, strict=True)]
    if first_rows is not None:
        sl[0] = slice(0, int(stop[0] - start[0]), job.steps[0])
    return (slice(None), *sl)


STREAM_PART_MIN = 1 << 18  # stream a contiguous part of a chunk only when chunks are this big


def _contiguous_ranges(job: Job, batch: ChunkBatch) -> tuple[np.ndarray, np.ndarray] | None:
    """Byte ranges of the selected parts when each is one contiguous range, else None.

    Whole chunks always qualify; a part qualifies when only dimension 0 is cut (a run of
    whole rows) and the chunks are big enough for a read per chunk to pay.
    """
    if _is_whole(job, batch):
        return batch.offsets, batch.sizes
    start, stop = batch.in_start[0], batch.in_stop[0]
    rest_full = np.all(start[1:] == 0) and np.all(stop[1:] == np.array(job.chunks[1:]))
    if not rest_full or any(s != 1 for s in job.steps) or int(batch.sizes[0]) < STREAM_PART_MIN:
        return None
    row = int(np.prod(job.chunks[1:], dtype=np.int64)) * job.view_dtype.itemsize
    first = np.uint64(int(start[0]) * row)
    return batch.offsets + first, np.full(
        len(batch), (int(stop[0]) - int(start[0])) * row, np.uint64
    )


def _is_whole(job: Job, batch: ChunkBatch) -> bool:
    return bool(
        np.all(batch.in_start[0] == 0)
        and np.all(batch.in_stop[0] == job.chunks)
        and all(s == 1 for s in job.steps)
    )


class LocalBackend(Backend):
    """Reduces chunks in this process (threads share one instance)."""

    name = "local"

    def __init__(self, storage_options: dict | None = None, policy: ReadPolicy | None = None):
        self.readers = Readers(storage_options, policy)
        self.codecs = CodecCache()
        self._thread = threading.local()

    def close(self) -> None:
        self.readers.close()

    # -- decoding --------------------------------------------------------------------------

    def decode_into(
        self, job: Job, data, out: np.ndarray, label: str, decoders: list | None = None
    ) -> None:
        """Decode one chunk's stored bytes into ``out`` (a chunk-shaped array).

        The last codec of the pipeline writes straight into ``out`` when its size is right,
        saving one copy of every decoded chunk. ``decoders``: these steps instead of the
        job's whole pipeline.
        """
        if decoders is None:
            decoders = self.codecs.decoders(job.codecs, out.nbytes)
        buf = data
        try:
            for codec in decoders[:-1]:
                buf = codec.decode(buf)
            last = decoders[-1] if decoders else None
            if last is not None and out.flags.c_contiguous and fills_exactly(last, buf, out):
                try:
                    last.decode(buf, out=out.reshape(-1).view(np.uint8))
                    return
                except ChunkTooLarge:
                    raise
                except (ValueError, TypeError, RuntimeError):
                    pass  # wrong size: decode normally below and report the mismatch
            if last is not None:
                buf = last.decode(buf)
        except ChunkTooLarge as exc:
            raise ChunkReadError(
                f"{job.source}: chunk {label} of '{job.variable}': {exc}"
            ) from None
        except Exception as exc:
            raise ChunkReadError(
                f"{job.source}: chunk {label} of '{job.variable}' could not be decoded "
                f"({type(exc).__name__}: {exc}); the file may have changed since it was indexed"
            ) from exc
        nbytes = memoryview(buf).nbytes
        if nbytes != out.nbytes:
            raise ChunkReadError(
                f"{job.source}: chunk {label} of '{job.variable}' decodes to {nbytes} bytes, "
                f"expected {out.nbytes} ({out.size} values); re-index the file"
            )
        out[...] = np.frombuffer(buf, dtype=out.dtype).reshape(out.shape)

    def chunk(self, job: Job, url: str | None, offset: int, size: int, blob=None) -> np.ndarray:
        """One whole chunk of a local file (or the inline ``blob``) as a chunk-shaped array.

        Uncompressed chunks are a view of the file's memory map (no read, no copy); others
        are read and decoded. For the few chunks of a small selection.
        """
        if blob is None and not job.codecs:
            nbytes = int(np.prod(job.chunks, dtype=np.int64)) * job.view_dtype.itemsize
            mm = self.readers.local.mapping(url)
            if size != nbytes or mm is None or offset + nbytes > len(mm):
                raise ChunkReadError(
                    f"{url}: chunk at offset {offset} of '{job.variable}' does not fit the file "
                    "or the chunk size; the file changed since it was indexed: re-index it"
                )
            return np.ndarray(job.chunks, job.view_dtype, mm, offset)
        if blob is None:
            blob = self.readers.local.read(url, offset, size)
        out = np.empty(job.chunks, dtype=job.view_dtype)
        self.decode_into(job, blob, out, f"at offset {offset}")
        return out

    # -- stacks of chunks ------------------------------------------------------------------

    def stacks(self, job: Job, batch: ChunkBatch) -> Iterator[tuple[np.ndarray, np.ndarray, tuple]]:
        """``(positions, stack, selection)``: chunk stacks covering every row that has data.

        ``stack[i]`` is the chunk at batch position ``positions[i]``; ``stack[selection]``
        is the selected part of every chunk at once.
        """
        url_ids = batch.url_ids
        local = [not is_remote(u) for u in job.urls]
        if (
            not job.codecs
            and len(job.chunks)
            and (url_ids >= 0).all()
            and all(local[u] for u in np.unique(url_ids))
        ):
            yield from self._mapped_stacks(job, batch)
        else:
            yield self._decoded_stack(job, batch)

    def _mapped_stacks(self, job: Job, batch: ChunkBatch):
        """Stacks taken from the memory map as equal-sized records.

        Chunks whose offsets differ by whole chunk sizes are rows of one record view of the
        file: a contiguous range of them is used in place (no copy), any other set is gathered
        with one fancy-indexing copy. Chunks are grouped by offset modulo the chunk size, which
        for files written chunk after chunk is a handful of groups.
        """
        nbytes = int(np.prod(job.chunks, dtype=np.int64)) * job.view_dtype.itemsize
        if np.any(batch.sizes != nbytes):
            raise ChunkReadError(
                f"{job.source}: uncompressed chunks of '{job.variable}' should hold {nbytes} "
                "bytes but the index says otherwise; re-index the file"
            )
        sel = _selection(job, batch)
        for uid in np.unique(batch.url_ids):
            url = job.urls[int(uid)]
            mm = self.readers.local.mapping(url)
            positions = np.flatnonzero(batch.url_ids == uid)
            offsets = batch.offsets[positions].astype(np.int64)
            if mm is None or int(offsets.max()) + nbytes > len(mm):
                raise ChunkReadError(
                    f"{url}: chunks of '{job.variable}' lie beyond the end of the file; "
                    "the file changed since it was indexed: re-index it"
                )
            base = int(offsets.min())
            remainder = (offsets - base) % nbytes
            classes = np.unique(remainder)
            if classes.size > MAX_CLASSES:
                yield positions, self._gathered(job, mm, url, positions, offsets, nbytes), sel
                continue
            for r in classes.tolist():
                members = np.flatnonzero(remainder == r)
                start = base + r
                records = np.ndarray(
                    ((len(mm) - start) // nbytes, *job.chunks), job.view_dtype, mm, start
                )
                rows = (offsets[members] - start) // nbytes
                order = np.argsort(rows, kind="stable")
                rows, members = rows[order], members[order]
                first, last = int(rows[0]), int(rows[-1])
                if last - first + 1 == rows.size:  # a run of neighbours: a view, no copy
                    stack = records[first : last + 1][sel]
                else:  # gather only the selected part of each chunk
                    stack = records[(rows, *sel[1:])]
                yield positions[members], stack, ...
                del stack, records
                self.readers.local.release(url, start + first * nbytes, start + (last + 1) * nbytes)

    def _gathered(self, job, mm, url, positions, offsets, nbytes) -> np.ndarray:
        """Chunks scattered at unrelated offsets, copied one by one into a stack."""
        stack = np.empty((len(positions), *job.chunks), dtype=job.view_dtype)
        count = nbytes // job.view_dtype.itemsize
        flat = stack.reshape(len(positions), -1)
        for i, off in enumerate(offsets.tolist()):
            flat[i] = np.frombuffer(mm, job.view_dtype, count, off)
        self.readers.local.release(url, int(offsets.min()), int(offsets.max()) + nbytes)
        return stack

    def _decoded_stack(self, job: Job, batch: ChunkBatch):
        """One stack decoded from stored bytes (compressed, inline, remote or fill)."""
        partial = not job.codecs and len(job.chunks) > 0 and not _is_whole(job, batch)
        offsets, sizes, shape = batch.offsets, batch.sizes, job.chunks
        if partial:  # fetch only the rows of dimension 0 the selection needs
            row = int(np.prod(job.chunks[1:], dtype=np.int64)) * job.view_dtype.itemsize
            first = int(batch.in_start[0][0])
            rows = int(batch.in_stop[0][0]) - first
            offsets = batch.offsets + np.uint64(first * row)
            sizes = np.full(len(batch), rows * row, dtype=np.uint64)
            shape = (rows, *job.chunks[1:])
        stored = np.flatnonzero(batch.url_ids >= 0)
        blobs: dict[int, object] = dict(batch.inline)
        if stored.size:
            urls = [job.urls[u] for u in batch.url_ids[stored]]
            read = self._read_local if not is_remote(urls[0]) else self.readers.read_ranges
            for pos, blob in zip(stored, read(urls, offsets[stored], sizes[stored]), strict=True):
                blobs[int(pos)] = blob
        keep = [p for p in range(len(batch)) if p in blobs or job.fill is not None]
        stack = self._stack((len(keep), *(job.chunks if not partial else shape)), job.view_dtype)
        done = not partial and self._unshuffled(job, batch, keep, blobs, stack)
        for i, pos in enumerate([] if done else keep):
            blob = blobs.get(pos)
            if blob is None:
                stack[i] = job.fill
            elif partial and batch.url_ids[pos] != INLINE:
                self._copy_raw(job, blob, stack[i, ...], pos)
            else:
                if partial:  # inline chunk: decode whole, keep the needed rows
                    whole = np.empty(job.chunks, dtype=job.view_dtype)
                    self.decode_into(job, blob, whole, str(pos))
                    stack[i] = whole[first : first + rows]
                else:
                    self.decode_into(job, blob, stack[i, ...], str(pos))
        return (
            np.array(keep, dtype=np.int64),
            stack,
            _selection(job, batch, first_rows=0 if partial else None),
        )

    def _unshuffled(self, job: Job, batch: ChunkBatch, keep: list, blobs: dict, stack) -> bool:
        """Decode whole small chunks whose last decoding step is a byte shuffle (netCDF's usual
        ``shuffle`` + ``zlib``): the other steps chunk by chunk into a byte buffer, then the
        bytes of many chunks are unshuffled at once. False (nothing done) for other pipelines,
        chunks over ``SHUFFLED_BATCH`` bytes, and, when c-blosc is there, chunks over
        ``BLOSC_ABOVE`` bytes (its unshuffle, chunk by chunk, is faster for those)."""
        nbytes = stack[0].nbytes if len(keep) > 1 else 0
        decoders = self.codecs.decoders(job.codecs, nbytes) if nbytes else []
        last = decoders[-1] if decoders else None
        if not isinstance(last, ByteUnshuffle):
            return False
        inflate = decoders[0] if len(decoders) == 2 else None
        if not isinstance(inflate, LibdeflateZlib):
            inflate = None
        if last.uses_blosc and nbytes > BLOSC_ABOVE:  # blosc unshuffles chunk by chunk
            return inflate is not None and self._inflate_unshuffle(
                job, inflate, last, keep, blobs, stack
            )
        size = last.elementsize
        if nbytes % size or nbytes > SHUFFLED_BATCH:
            return False  # (big chunks: a per-chunk unshuffle costs nothing in comparison)
        step = SHUFFLED_BATCH // nbytes  # rows decoded at a time: a little memory
        for a in range(0, len(keep), step):
            block = keep[a : a + step]
            raw = None
            if inflate is not None and all(p in blobs for p in block):
                raw = self._inflated(inflate, [blobs[p] for p in block], nbytes)
            if raw is None:
                raw = self._decoded_bytes(job, batch, block, blobs, nbytes, decoders[:-1])
            _unshuffle(raw, stack[a : a + len(block)], size)
            for i, pos in enumerate(block):
                if pos not in blobs:
                    stack[a + i] = job.fill
        return True

    def _inflate_unshuffle(self, job, inflate, unshuffle, keep, blobs, stack) -> bool:
        """netCDF's usual zlib + shuffle, chunks over ``BLOSC_ABOVE`` bytes: one tight loop,
        libdeflate then blosc's unshuffle straight into the stack, without the pipeline's
        per-chunk dispatch. A chunk libdeflate refuses, or of another size, goes through
        ``decode_into`` (which decodes it with zlib, or explains). False (nothing done) when
        a chunk is missing or the size is not whole elements."""
        nbytes = stack[0].nbytes
        whole = nbytes % unshuffle.elementsize == 0 and unshuffle.fits_blosc(nbytes)
        if not whole or not all(p in blobs for p in keep):
            return False
        rows = stack.reshape(len(keep), -1).view(np.uint8)
        decompress, bound = inflate._decompress, inflate.bound
        for i, pos in enumerate(keep):
            try:
                raw = decompress(blobs[pos], bound)
            except Exception:  # noqa: BLE001 - decode_into retries it and explains
                raw = None
            if raw is None or len(raw) != nbytes:
                self.decode_into(job, blobs[pos], stack[i, ...], str(pos))
            else:
                unshuffle.blosc_into(raw, rows[i], nbytes)
        return True

    def _decoded_bytes(self, job, batch, block, blobs, nbytes, decoders) -> np.ndarray:
        """The stored chunks of ``block`` through ``decoders``, as rows of bytes."""
        raw = np.zeros((len(block), nbytes), np.uint8)
        for i, pos in enumerate(block):
            blob = blobs.get(pos)
            if blob is not None:
                uid = int(batch.url_ids[pos])
                where = f"{pos} ({job.urls[uid]} at {batch.offsets[pos]})" if uid >= 0 else pos
                self.decode_into(job, blob, raw[i], str(where), decoders)
        return raw

    @staticmethod
    def _inflated(inflate: LibdeflateZlib, blobs: list, nbytes: int) -> np.ndarray | None:
        """zlib chunks inflated by libdeflate into one ``(k, nbytes)`` byte array, or None
        when any fails or has another size (the caller then decodes chunk by chunk)."""
        try:
            parts = [inflate._decompress(b, inflate.bound) for b in blobs]
        except Exception:  # noqa: BLE001 - decode_into retries each and explains
            return None
        if any(len(p) != nbytes for p in parts):
            return None
        return np.frombuffer(b"".join(parts), np.uint8).reshape(len(parts), nbytes)

    def _copy_raw(self, job: Job, blob, out: np.ndarray, pos: int) -> None:
        arr = np.frombuffer(blob, dtype=job.view_dtype)
        if arr.size != out.size:
            raise ChunkReadError(
                f"{job.source}: chunk {pos} of '{job.variable}' is shorter than the index says; "
                "re-index the file"
            )
        out[...] = arr.reshape(out.shape)

    # -- reducing --------------------------------------------------------------------------

    def reduce(self, job: Job, batch: ChunkBatch, stats=None) -> list[BlockPartial]:
        spec = job.spec
        assert spec is not None
        whole = not spec.kept_axes and job.groups is None  # one partial for the batch
        if whole and self._local_raw(job, batch):
            ranges = _contiguous_ranges(job, batch)
            if ranges is not None:
                return [((), self._stream_reduce(job, batch, *ranges))]
            if int(batch.sizes[0]) >= STREAM_PART_MIN:
                return [((), self._buffered_reduce(job, batch))]
        if whole:
            acc = Accumulator((), spec)
            for _, stack, sel in self.stacks(job, batch):
                acc.add((), reduce_all(stack[sel], job.rule, spec))
            return [((), Partial(acc.count, acc.sum, acc.min, acc.max))]
        if job.groups is None and self._local_raw(job, batch):
            ranges = _contiguous_ranges(job, batch)
            if ranges is not None:
                return self._read_kept(job, batch, *ranges)
        kept, groups = list(spec.kept_axes), job.groups
        out = []
        for positions, stack, sel in self.stacks(job, batch):
            spans = None
            if groups is not None:
                spans = np.stack(
                    [
                        batch.out_start[positions, groups.axis],
                        batch.out_stop[positions, groups.axis],
                    ],
                    axis=1,
                )
            starts = batch.out_start[positions][:, kept]
            stops = batch.out_stop[positions][:, kept]
            out += reduce_rows(stack[sel], job.rule, spec, starts, stops, groups, spans)
        return out

    def _read_kept(self, job: Job, batch: ChunkBatch, starts, lengths) -> list[BlockPartial]:
        """Reductions that keep axes, over selected parts that are one byte range per chunk:
        each part is read into the thread's buffer and reduced there (no page mapping, no
        ``madvise``, no page faults); chunks landing in the same output block are added up
        here, so one partial per block leaves the batch."""
        spec = job.spec
        axes = tuple(a + 1 for a in spec.reduce_axes)
        dt = job.view_dtype
        rows = int(batch.in_stop[0][0]) - int(batch.in_start[0][0])
        shape = (1, rows, *job.chunks[1:])
        size = int(lengths[0])
        buf = self._buffer(size)
        view = memoryview(buf)[:size]
        kept = list(spec.kept_axes)
        bounds = np.concatenate([batch.out_start[:, kept], batch.out_stop[:, kept]], axis=1)
        blocks: dict[tuple, Accumulator] = {}
        for pos, key in enumerate(map(tuple, bounds.tolist())):
            url = job.urls[int(batch.url_ids[pos])]
            self.readers.local.read_into(url, int(starts[pos]), view)
            data = np.frombuffer(buf, dt, size // dt.itemsize).reshape(shape)
            part = row_of(reduce_masked(data, job.rule, spec, axes), 0)
            acc = blocks.get(key)
            if acc is None:  # own the arrays: the next read reuses the buffer
                blocks[key] = Accumulator.of(spec, _copied(part))
            else:
                acc.add((), part)
        half = len(kept)
        return [
            (tuple(slice(a, b) for a, b in zip(k[:half], k[half:], strict=True)), acc.partial())
            for k, acc in blocks.items()
        ]

    def _local_raw(self, job: Job, batch: ChunkBatch) -> bool:
        """Uncompressed chunks of local files, all stored: plain byte ranges."""
        return (
            not job.codecs
            and len(job.chunks) > 0
            and bool((batch.url_ids >= 0).all())
            and not any(is_remote(job.urls[u]) for u in np.unique(batch.url_ids))
        )

    def _stream_reduce(self, job: Job, batch: ChunkBatch, starts, lengths) -> Partial:
        """Stream byte ranges (runs of neighbours merged) through a small per-thread buffer.

        Each piece is read into a buffer that stays in the CPU cache and reduced there, so the
        bytes cross memory once; no page of the file is mapped into this process.
        """
        reducer = FlatReducer(job.rule, job.spec)
        buf = self._buffer()
        piece = STREAM_PIECE // job.view_dtype.itemsize * job.view_dtype.itemsize
        view = memoryview(buf)
        for uid in np.unique(batch.url_ids):
            url = job.urls[int(uid)]
            mine = np.flatnonzero(batch.url_ids == uid)
            order = mine[np.argsort(starts[mine], kind="stable")]
            offsets, sizes = starts[order], lengths[order]
            for a, b in adjacent_runs(offsets, sizes, limit=2**62):
                start = int(offsets[a])
                stop = int(offsets[b - 1] + sizes[b - 1])
                for at in range(start, stop, piece):
                    n = min(piece, stop - at)
                    self.readers.local.read_into(url, at, view[:n])
                    reducer.add(np.frombuffer(buf, job.view_dtype, n // job.view_dtype.itemsize))
        return reducer.partial()

    def _buffered_reduce(self, job: Job, batch: ChunkBatch) -> Partial:
        """Parts of big chunks cut along several dimensions: read each chunk's rows of
        dimension 0 into the thread's buffer (no page mapping) and reduce the part."""
        dt = job.view_dtype
        row = int(np.prod(job.chunks[1:], dtype=np.int64)) * dt.itemsize
        first = int(batch.in_start[0][0])
        rows = int(batch.in_stop[0][0]) - first
        size = rows * row
        buf = self._buffer(size)
        sel = _selection(job, batch, first_rows=0)[1:]
        reducer = FlatReducer(job.rule, job.spec)
        for pos in range(len(batch)):
            url = job.urls[int(batch.url_ids[pos])]
            self.readers.local.read_into(
                url, int(batch.offsets[pos]) + first * row, memoryview(buf)[:size]
            )
            chunk = np.frombuffer(buf, dt, size // dt.itemsize).reshape((rows, *job.chunks[1:]))
            reducer.add(np.ascontiguousarray(chunk[sel]).reshape(-1))
        return reducer.partial()

    def _read_local(self, urls: list[str], offsets: np.ndarray, sizes: np.ndarray) -> list:
        """Views of each range's bytes, read (ranges that touch end to end in one call) into
        this thread's blob buffer: reused batch after batch, as the decode buffer is."""
        buf = self._thread_array("blobs", int(sizes.sum()))
        view, at, out = memoryview(buf), 0, []
        for a, b in adjacent_runs_by_url(urls, offsets, sizes):
            start = int(offsets[a])
            n = int(offsets[b - 1] + sizes[b - 1]) - start
            self.readers.local.read_into(urls[a], start, view[at : at + n])
            for i in range(a, b):
                lo = at + int(offsets[i]) - start
                out.append(view[lo : lo + int(sizes[i])])
            at += n
        return out

    def _thread_array(self, name: str, nbytes: int) -> np.ndarray:
        """This thread's byte buffer ``name``, grown to at least ``nbytes``.

        It grows with a quarter to spare: batches of compressed chunks differ a little in
        size, and growing by a few KB at a time left a trail of freed buffers in the
        thread's malloc arena (about 1 MB more resident per thread). The spare quarter is
        address space until a batch writes into it."""
        buf = getattr(self._thread, name, None)
        if buf is None or buf.nbytes < nbytes:
            buf = np.empty(nbytes + nbytes // 4, np.uint8)
            setattr(self._thread, name, buf)
        return buf[:nbytes]

    def _stack(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised array in this thread's decode buffer (reused batch after batch:
        each batch is reduced before the thread decodes the next, and partials never view
        it), so decoding allocates nothing per batch."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return self._thread_array("stack", nbytes).view(dtype).reshape(shape)

    def _buffer(self, size: int = STREAM_PIECE) -> bytearray:
        """This thread's read buffer, grown to at least ``size`` bytes."""
        buf = getattr(self._thread, "buffer", None)
        if buf is None or len(buf) < size:
            buf = self._thread.buffer = bytearray(max(size, STREAM_PIECE))
        return buf

    def select(self, job: Job, batch: ChunkBatch, out: np.ndarray) -> None:
        """Copy the selected values of every stored row into ``out`` (the selected array)."""
        ndim = len(job.chunks)
        for positions, stack, sel in self.stacks(job, batch):
            data = stack[sel]
            for i, pos in enumerate(positions.tolist()):
                where = tuple(
                    slice(int(batch.out_start[pos, d]), int(batch.out_stop[pos, d]))
                    for d in range(ndim)
                )
                out[where] = data[i]


def _copied(part: Partial) -> Partial:
    copy = lambda a: None if a is None else np.array(a)
    return Partial(copy(part.count), copy(part.sum), copy(part.min), copy(part.max))


def _unshuffle(raw: np.ndarray, stack: np.ndarray, size: int) -> None:
    """Undo a byte shuffle of ``size``-byte elements: ``raw[k]`` (bytes) into ``stack[k]``,
    byte lane by byte lane (reads stay contiguous; one transpose is several times slower)."""
    k = len(stack)
    lanes = raw.reshape(k, size, -1)
    target = stack.reshape(k, -1).view(np.uint8).reshape(k, -1, size)
    for j in range(size):
        target[:, :, j] = lanes[:, j, :]


__all__ = ["LocalBackend"]
