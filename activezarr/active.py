"""``Active``: reductions over selections of one indexed variable, run where the data lives.

``Active(index, "tas").mean[0:12, :, 10:20]`` plans the selection against the chunk grid,
hands batches of chunks to a backend (local, or a Reductionist server with local fallback)
on a thread pool or any ``concurrent.futures.Executor``, and combines the partial results.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import itertools
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Self

import numpy as np

from .backends.base import Backend, ChunkBatch, Job
from .backends.local import LocalBackend
from .errors import ActiveZarrError, SelectionError, UnsupportedVariableError, redact
from .index import cache as _cache  # noqa: F401 - opened on every first call: import it now
from .index import parquet as _parquet  # noqa: F401 - (open_variable imports them lazily)
from .index.freshness import check_variable_fresh
from .index.load import INLINE, MISSING, VariableIndex, open_variable
from .index.network import ReadPolicy
from .index.sources import is_remote, is_source_file
from .plan import ChunkPlan, DimSelection, normalize_selection, plan_chunks, small_pieces
from .reduction.missing import MissingRule, Packing, storage_dtype, swaps_one_element
from .reduction.partials import OPS, Accumulator, Groups, Op, ReductionSpec, reduce_block
from .reduction.records import RecordRead, record_read

BATCH_BYTES = 16 * 2**20  # bytes one batch of whole uncompressed chunks may hold
DECODED_BATCH_BYTES = 3 * 2**18  # ... of compressed chunks, decoded (each thread holds one)
BATCH_ROWS = 64  # partly selected chunks per batch
SMALL_CHUNKS = 8  # a selection touching at most this many chunks ...
SMALL_VALUES = 1 << 16  # ... and values is read inline, without planning tables or threads
SMALL_SPAN = 1 << 16  # mapped pages of a chunk read over a longer span are released after
SMALL_DECODED = 8 * 2**20  # ... and, when compressed, at most this many decoded bytes


@dataclass
class RunStats:
    """What the last reduction did: where chunks went and what crossed the network."""

    chunks_local: int = 0
    chunks_remote: int = 0
    chunks_fill: int = 0
    requests: int = 0
    retries: int = 0
    bytes_requested: int = 0
    bytes_received: int = 0
    fallbacks: list[str] = field(default_factory=list)
    breaker_trips: int = 0  # times a server's circuit breaker opened during the run
    chunks_breaker: int = 0  # chunks reduced locally, unasked, while the breaker was open
    local_reasons: list[str] = field(default_factory=list)  # why chunks stayed local
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                if key == "local_reasons":  # a set in spirit: each reason once
                    value = [v for v in value if v not in self.local_reasons]
                setattr(self, key, getattr(self, key) + value)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __getstate__(self) -> dict[str, Any]:
        return self.as_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _normalize_axis(axis, ndim: int) -> tuple[int, ...] | None:
    """``axis`` (None, an int or a sequence of ints) as sorted non-negative axes.

    Only integers are axes: ``1.5``, ``"01"`` or ``True`` raise ``SelectionError`` instead of
    being read as some other axis.
    """
    if axis is None:
        return None
    axes = (axis,) if _is_int(axis) else axis
    if not isinstance(axes, tuple | list) or not all(_is_int(a) for a in axes):
        what = f"axis {axis!r} is not an integer or a sequence of integers"
        raise SelectionError(
            f"{what}; use e.g. axis=0 or axis=(1, 2)",
            cli=f"{what}; use e.g. --axis 0 or --axis 1,2",
        )
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < ndim:
            raise SelectionError(
                f"axis {a} is out of range for a selection with {ndim} dimensions "
                f"(axes run {-ndim}..{ndim - 1})"
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise SelectionError(f"axis {axis} repeats a dimension")
    return tuple(sorted(out))


IN_FLIGHT = 64  # batches submitted ahead to an external executor (a dask cluster)


def _ordered_window(
    pool: cf.Executor | None, call, items: Iterable, window: int, share: int = 0
) -> Iterator:
    """Results of ``pool.submit(*call(item))`` in item order, at most ``window`` submitted
    ahead of the one being read: results wait to be folded, not the whole selection's.

    With ``share`` = k, every k-th item, the first included, is run by the calling thread
    when its turn comes, while the pool works on the items after it (k = 1, or no pool: all
    of them). The caller would otherwise only wait, so a pool one thread smaller does the
    same work, and one thread's buffers and malloc arena (about 3 MB) are not made. The
    caller starts at once on the first item, instead of waiting for the pool's first (a
    selection of few big batches would lose one batch's time).
    """
    pending: collections.deque = collections.deque()
    items = iter(items)
    turns = itertools.count()

    def put(item) -> None:
        mine = pool is None or (share and next(turns) % share == 0)
        pending.append((None, item) if mine else (pool.submit(*call(item)), None))

    for item in itertools.islice(items, window):
        put(item)
    while pending:
        future, item = pending.popleft()
        for ahead in itertools.islice(items, 1):
            put(ahead)
        if future is not None:
            yield future.result()
        else:
            fn, *args = call(item)
            yield fn(*args)


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


@dataclass(frozen=True)
class BackendConfig:
    """How to build a backend in another process (dask workers): kind plus options."""

    kind: str
    storage_options: dict | None
    options: dict


def make_backend(config: BackendConfig) -> Backend:
    if config.kind == "local":
        return LocalBackend(config.storage_options, policy=config.options.get("policy"))
    from .backends.reductionist import ReductionistBackend

    return ReductionistBackend(storage_options=config.storage_options, **config.options)


_worker_backends: dict[str, Backend] = {}
_worker_lock = threading.Lock()


def _worker_backend(config: BackendConfig) -> Backend:
    """One backend per configuration per process, reused by every batch it runs."""
    key = repr(config)
    with _worker_lock:
        backend = _worker_backends.get(key)
        if backend is None:
            backend = _worker_backends[key] = make_backend(config)
    return backend


def dispatch(backend: Backend, local: LocalBackend, job: Job, batch: ChunkBatch):
    """Reduce a batch on ``backend``, falling back to ``local`` for rows it cannot take.

    Returns the partials and the counts for ``RunStats``.
    """
    stats = RunStats()
    if backend is local:
        stats.add(chunks_local=len(batch))
        return local.reduce(job, batch, stats), stats.as_dict()
    ok = backend.supports(job, batch)
    parts = []
    if ok.any():
        parts += backend.reduce(job, batch.subset(ok), stats)
    if not ok.all():
        parts += local.reduce(job, batch.subset(~ok), stats)
        stats.add(chunks_local=int((~ok).sum()))
        explain = getattr(backend, "local_reason", None)
        reason = explain(job) if explain else None
        if reason:
            stats.add(local_reasons=[reason])
    return parts, stats.as_dict()


def run_batch(config: BackendConfig, job: Job, batch: ChunkBatch):
    """``dispatch`` in a worker process: the picklable entry point for executors."""
    local = _worker_backend(BackendConfig("local", config.storage_options, {}))
    backend = local if config.kind == "local" else _worker_backend(config)
    return dispatch(backend, local, job, batch)


class Reduction:
    """``active.mean`` and friends: index with a selection, or call to set axis/components."""

    def __init__(self, active: Active, op: Op, axis=None, components: bool = False) -> None:
        self._active = active
        self._op = op
        self._axis = axis
        self._components = components

    def __call__(self, axis=None, components: bool = False) -> Reduction:
        return Reduction(self._active, self._op, axis, components)

    def __getitem__(self, selection):
        return self._active.reduce(self._op, selection, self._axis, self._components)

    def __repr__(self) -> str:
        return f"<{self._op} of {self._active!r}; index it with a selection, e.g. [0:12]>"


class Active:
    """Reductions of one variable of a persisted index.

    Parameters
    ----------
    index : str, Path, dict or VariableIndex
        Path or URL of a kerchunk JSON index (or parquet reference directory), a
        reference dict, or a variable loaded and checked already (``index.load``). A local netCDF4/HDF5 file is indexed on first use into
        ``activezarr.catalog.single.index_cache_dir()`` (``$ACTIVEZARR_INDEX_DIR``, default
        ``~/.cache/activezarr/indexes``) and that index is reused while the file is unchanged.
    variable : str
        Variable name (``group/name`` inside groups).
    backend : {"local", "reductionist"}
        Where chunks are reduced.
    storage_options : dict, optional
        fsspec options for remote data and indexes (``anon``, ``key``, ``secret``,
        ``endpoint_url``, ``client_kwargs``).
    server : str, optional
        Reductionist server URL (``backend="reductionist"``).
    max_workers : int, optional
        Threads that read and reduce chunks (default: CPU count, 16 for remote data).
        Locally the calling thread is one of them: it reduces every ``max_workers``-th
        batch itself, and the pool holds the others.
    executor : concurrent.futures.Executor, optional
        Run chunk batches there instead of on the internal thread pool.
    check_stale : bool
        Refuse (``StaleIndexError``) when a source changed since it was indexed: the
        fingerprints the index records (size, mtime or ETag, a digest of its first and last
        4 KB), else those of the catalog beside it.
    allow_paths : sequence of str or Path
        Directories local chunk URLs may also lie under, besides those of the sources the
        index records (``IndexLoadError`` otherwise; see docs/api-contract.md).
    read_timeout : float, optional
        Seconds a read of remote data may wait for bytes before it is abandoned and tried
        again (default 30, or ``$ACTIVEZARR_READ_TIMEOUT``).
    read_retries : int, optional
        Retries of a remote read that failed in a way a retry may cure (default 4, or
        ``$ACTIVEZARR_READ_RETRIES``); then ``ChunkReadError`` names the object and bytes.
    read_deadline : float, optional
        Seconds one request for remote data may take in all, however steadily bytes arrive
        (default 300, or ``$ACTIVEZARR_READ_DEADLINE``). The timeout, retries and deadline
        apply to every remote read: the index, the freshness check and the chunks.

    Examples
    --------
    >>> a = Active("indexes/tas.json", "tas")  # doctest: +SKIP
    >>> a.mean[0:12, :, 10:20]  # doctest: +SKIP
    >>> a.mean(axis=0)[:]  # time mean map  # doctest: +SKIP
    """

    def __init__(
        self,
        index: str | os.PathLike | dict,
        variable: str,
        *,
        backend: Literal["local", "reductionist"] | Backend = "local",
        storage_options: dict | None = None,
        server: str | None = None,
        max_workers: int | None = None,
        executor: cf.Executor | None = None,
        check_stale: bool = True,
        allow_paths: Sequence[str | os.PathLike] = (),
        read_timeout: float | None = None,
        read_retries: int | None = None,
        read_deadline: float | None = None,
        **backend_options: Any,
    ) -> None:
        policy = ReadPolicy().with_options(read_timeout, read_retries, read_deadline)
        if isinstance(index, VariableIndex):  # loaded and checked already (catalog.reduce)
            source, var = index.source, index
        else:
            if not isinstance(index, dict) and is_source_file(index):
                from .catalog.single import ensure_index  # a source file: index it once

                index, _ = ensure_index(index, storage_options=storage_options)
            source = "<refs dict>" if isinstance(index, dict) else str(index)
            var = open_variable(index, variable, storage_options, allow_paths, policy)
        self.index: VariableIndex = var
        if var.dtype.kind not in "iuf":
            raise UnsupportedVariableError(
                f"variable '{variable}' of index {source} has dtype {var.dtype.str!r}; "
                "activezarr reduces and reads numeric variables only (signed and unsigned "
                "integers, floats)"
            )
        if check_stale:
            check_variable_fresh(source, var, storage_options, policy)
        self.variable = variable
        self.source = source
        self.storage_options = storage_options
        self.rule = MissingRule.from_metadata(var.dtype, var.fill_attr, var.attrs, var.no_fill)
        self._element_rule = (  # netCDF4's rule for one element, where it differs
            MissingRule.from_metadata(
                var.dtype, var.fill_attr, var.attrs, var.no_fill, one_element=True
            )
            if swaps_one_element(var.dtype, var.attrs)
            else None
        )
        self.packing = Packing.from_attrs(var.attrs, var.dtype)
        self._storage_dtype = storage_dtype(var.dtype, var.attrs)
        self._fill = self._fill_scalar()
        self._valid_fill = self._unmasked_fill()
        remote = any("://" in u and not u.startswith("file://") for u in var.urls)
        self.max_workers = max_workers or (16 if remote else max(2, os.cpu_count() or 2))
        if executor is not None and hasattr(executor, "get_executor"):
            executor = executor.get_executor()  # a dask.distributed Client
        self._executor = executor
        self._own_pool: cf.ThreadPoolExecutor | None = None
        self.read_policy = policy
        self.local = LocalBackend(storage_options, policy=self.read_policy)
        self.backend = self._make_backend(backend, server, backend_options)
        self.stats = RunStats()
        # derived once, used by every call
        grid = var.grid
        self._strides = tuple(int(np.prod(grid[d + 1 :], dtype=np.int64)) for d in range(len(grid)))
        self._url_local = [not is_remote(u) for u in var.urls]
        chunks = var.chunks
        self._chunk_strides = tuple(
            int(np.prod(chunks[d + 1 :], dtype=np.int64)) for d in range(len(chunks))
        )
        self._chunk_bytes = int(np.prod(var.chunks, dtype=np.int64)) * var.dtype.itemsize
        self._specs: dict = {}
        self._base_job = self._job(None, None)

    def _make_backend(self, backend, server, options) -> Backend:
        if isinstance(backend, Backend):
            self._config = None
            return backend
        if backend not in ("local", "reductionist"):
            raise ActiveZarrError(f"unknown backend {backend!r}; use 'local' or 'reductionist'")
        options = dict(options)
        if backend == "reductionist":
            options.update(server=server, workers=self.max_workers)
        else:
            options = {"policy": self.read_policy}
        self._config = BackendConfig(backend, self.storage_options, options)
        return self.local if backend == "local" else make_backend(self._config)

    # -- description ---------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self.index.shape

    @property
    def ndim(self) -> int:
        return len(self.index.shape)

    @property
    def chunks(self) -> tuple[int, ...]:
        return self.index.chunks

    @property
    def dimensions(self) -> tuple[str, ...]:
        return self.index.dims

    @property
    def attrs(self) -> dict[str, Any]:
        return self.index.attrs

    @property
    def dtype(self) -> np.dtype:
        """The dtype values have once decoded (unsigned view, scale and offset applied)."""
        return self.packing.decoded_dtype(self._storage_dtype)

    def __repr__(self) -> str:
        return redact(
            f"Active({self.source!r}, {self.variable!r}, shape={self.shape}, "
            f"chunks={self.chunks}, backend={self.backend.name!r})"
        )

    # -- operations ----------------------------------------------------------------------

    @property
    def mean(self) -> Reduction:
        return Reduction(self, "mean")

    @property
    def sum(self) -> Reduction:
        return Reduction(self, "sum")

    @property
    def min(self) -> Reduction:
        return Reduction(self, "min")

    @property
    def max(self) -> Reduction:
        return Reduction(self, "max")

    @property
    def count(self) -> Reduction:
        return Reduction(self, "count")

    def reduce(self, op: Op, selection=(), axis=None, components: bool = False, groups=None):
        """Reduce ``selection`` with ``op`` over ``axis`` (all axes when None).

        ``groups`` (a ``reduction.partials.Groups`` over a reduced dimension, local backend
        only) keeps one result per group along a new leading axis, in the same one pass over
        the chunks: monthly climatologies, seasonal means.
        """
        if op not in OPS:
            raise ActiveZarrError(f"unknown operation {op!r}; use one of {', '.join(OPS)}")
        sel = normalize_selection(selection, self.shape, self.dimensions)
        spec = self._spec(op, sel, axis)
        kept = spec.kept_axes
        groups = self._groups(groups, sel, spec)
        rule = self._rule_for(sel)
        records = self._record_read(sel)
        if records is None:
            acc = self._accumulate(sel, spec, rule, groups)
        else:
            acc = self._accumulate_records(sel, spec, rule, groups, records)
        result = acc.finalize(self.packing, components)
        flips = tuple(i + bool(groups) for i, d in enumerate(kept) if sel[d].reverse)
        if flips:
            flip = lambda a: np.flip(a, axis=flips)
            result = {k: flip(v) for k, v in result.items()} if components else flip(result)
        return result

    def _accumulate(self, sel, spec: ReductionSpec, rule: MissingRule, groups) -> Accumulator:
        """The partials of ``sel`` added up (increasing index order)."""
        values = None if groups else self._small_values(sel, reducing=True)
        if values is not None:  # a few chunks: inline, no planning tables, no thread pool
            return Accumulator.of(
                spec, reduce_block(values, rule.mask(values), spec, spec.reduce_axes)
            )
        plan = plan_chunks(sel, self.shape, self.chunks)
        job = replace(self._job(plan, spec, rule), groups=groups)
        lead = (groups.n,) if groups else ()
        acc = Accumulator(lead + tuple(sel[d].size for d in spec.kept_axes), spec)
        self.stats = RunStats()
        for where, part in self._run(job, plan, reducing=True):
            acc.add(where, part)
        return acc

    def _record_read(self, sel: tuple[DimSelection, ...]) -> RecordRead | None:
        """netCDF-C's read of ``sel`` when it reaches past a record variable's own extent
        (``reduction.records``), else None."""
        var = self.index
        if var.extent is None:
            return None
        positions = tuple((s.start, s.step, s.size) for s in sel)
        return record_read(positions, var.extent, var.unlimited)

    def _accumulate_records(self, sel, spec, rule, groups, records: RecordRead) -> Accumulator:
        """``_accumulate`` of a selection past a record variable's extent, as netCDF-C lays it
        out: the values read, then fill. Where they land where they are stored (one short
        dimension, the usual case), the part read is reduced chunk by chunk and the fill part
        added as a block; otherwise the selection is read whole and reduced in memory."""
        if groups is not None:
            raise ActiveZarrError(
                f"variable '{self.variable}' is shorter than its unlimited dimension: grouped "
                "reductions past its last record are not supported; select its records"
            )
        fill = self._record_fill()
        if not (records.natural and records.stored is not None):
            values = records.layout(self._read_stored(sel, records), fill)
            return Accumulator.of(
                spec, reduce_block(values, rule.mask(values), spec, spec.reduce_axes)
            )
        j, kept = records.short[0], spec.kept_axes
        head = self._stored_selection(sel, records)
        n = head[j].size
        acc = Accumulator(tuple(sel[d].size for d in kept), spec)
        block = lambda a, b: tuple(slice(a, b) if d == j else slice(None) for d in kept)
        acc.add(block(0, n), self._accumulate(head, spec, rule, None).partial())
        shape = [s.size for s in sel]
        shape[j] -= n
        tail = np.broadcast_to(fill, shape)
        acc.add(block(n, None), reduce_block(tail, rule.mask(tail), spec, spec.reduce_axes))
        return acc

    def _stored_selection(self, sel, records: RecordRead) -> tuple[DimSelection, ...]:
        """The part of ``sel`` netCDF-C reads from the file."""
        return tuple(
            replace(s, stop=start + step * (n - 1) + 1, size=n)
            for s, (start, step, n) in zip(sel, records.stored, strict=True)
        )

    def _read_stored(self, sel, records: RecordRead) -> np.ndarray | None:
        if records.stored is None:
            self.stats = RunStats()  # nothing read
            return None
        return self._values(self._stored_selection(sel, records))

    def _record_fill(self) -> np.generic:
        """The fill netCDF-C writes past a record variable's extent, in the storage dtype:
        the dataset's own fill value (netCDF's ``_FillValue``), else with filling off the
        type's default."""
        value = None if self.index.no_fill else self.index.fill_value
        return self._fill_scalar(value if value is not None else self._default_fill())

    def _groups(self, groups: Groups | None, sel, spec: ReductionSpec) -> Groups | None:
        """``groups`` checked against the selection, its codes in increasing index order."""
        if groups is None:
            return None
        g = groups.axis
        if g not in spec.reduce_axes or sel[g].drop:
            raise ActiveZarrError(f"groups run along a reduced dimension, not dimension {g}")
        if self.backend is not self.local:
            raise ActiveZarrError(
                "grouped reductions run on the local backend; reduce each group's selection "
                f"on {self.backend.name!r} instead"
            )
        codes = np.asarray(groups.codes, dtype=np.int64).reshape(-1)
        if codes.size != sel[g].size:
            raise ActiveZarrError(
                f"{codes.size} group codes for {sel[g].size} selected positions of dimension {g}"
            )
        return Groups(g, codes[::-1] if sel[g].reverse else codes, int(groups.n))

    def _spec(self, op: Op, sel: tuple[DimSelection, ...], axis) -> ReductionSpec:
        """The reduction of ``op`` over ``axis`` of a selection (cached per distinct key)."""
        drops = tuple(s.drop for s in sel)
        try:
            key = (op, drops, axis if axis is None or _is_int(axis) else tuple(axis))
            found = self._specs.get(key)
        except TypeError:  # not hashable or iterable: _normalize_axis says what is wrong
            key = found = None
        if found is not None:
            return found
        kept_dims = [d for d, drop in enumerate(drops) if not drop]
        axes = _normalize_axis(axis, len(kept_dims))
        reduced = set(kept_dims) if axes is None else {kept_dims[a] for a in axes}
        reduced |= {d for d, drop in enumerate(drops) if drop}
        spec = ReductionSpec(
            op,
            tuple(sorted(reduced)),
            tuple(d for d in range(self.ndim) if d not in reduced),
            self._storage_dtype,
            flip_extremes=self.packing.active and self.packing.scale < 0,
            packing=self.packing,
        )
        if key is not None:
            self._specs[key] = spec
        return spec

    def _span(self, inner: tuple[slice, ...]) -> int:
        """Bytes from the first to the last element of an in-chunk selection (a bound)."""
        strides = self._chunk_strides
        first = sum(s.start * n for s, n in zip(inner, strides, strict=True))
        last = sum((s.stop - 1) * n for s, n in zip(inner, strides, strict=True))
        return (last - first) * self.index.dtype.itemsize

    def _small_values(self, sel: tuple[DimSelection, ...], reducing: bool) -> np.ndarray | None:
        """The selected values (storage dtype, dropped dimensions kept, not reversed) when
        the selection is a few chunks of local data, read inline; else None.

        Sets ``stats`` as the batched path does.
        """
        if self._executor is not None or self.backend is not self.local:
            return None
        size = 1
        for s in sel:
            size *= s.size
        if size > SMALL_VALUES:
            return None
        pieces = small_pieces(sel, self.chunks, SMALL_CHUNKS)
        if pieces is None:
            return None
        var, job = self.index, self._base_job
        strides, local = self._strides, self._url_local
        flats = [
            sum(c * s for c, s in zip(coords, strides, strict=True)) for coords, _, _ in pieces
        ]
        var.load_chunks(np.asarray(flats, dtype=np.int64))  # parquet: read those row groups
        url_ids = var.url_ids
        chunks = []
        for flat, (_, inner, outer) in zip(flats, pieces, strict=True):
            uid = int(url_ids[flat])
            if uid >= 0 and not local[uid]:
                return None
            chunks.append((flat, uid, inner, outer))
        if job.codecs and len(chunks) * self._chunk_bytes > SMALL_DECODED:
            return None  # enough decoding for both cores to pay
        out = np.empty(tuple(s.size for s in sel), dtype=job.view_dtype)
        fills = 0
        for flat, uid, inner, outer in chunks:
            if uid == MISSING:
                out[outer] = self._fill
                fills += 1
                continue
            if uid == INLINE:
                chunk = self.local.chunk(job, None, 0, 0, var.inline[flat])
            else:
                offset, nbytes = int(var.offsets[flat]), int(var.sizes[flat])
                chunk = self.local.chunk(job, var.urls[uid], offset, nbytes)
                out[outer] = chunk[inner]
                if not job.codecs and self._span(inner) > SMALL_SPAN:  # unmap what was read
                    self.local.readers.local.release(var.urls[uid], offset, offset + nbytes)
                continue
            out[outer] = chunk[inner]
        stored = len(chunks) - fills
        counted = len(chunks) if job.fill is not None else stored
        self.stats = RunStats(chunks_local=counted if reducing else 0, chunks_fill=fills)
        return out.astype(self._storage_dtype, copy=False)

    def _values(self, sel: tuple[DimSelection, ...]) -> np.ndarray:
        """The stored values of ``sel`` (storage dtype, increasing index order, dropped
        dimensions kept)."""
        values = self._small_values(sel, reducing=False)
        if values is None:
            plan = plan_chunks(sel, self.shape, self.chunks)
            job = self._job(plan, None)
            out = np.empty(plan.selected_shape, dtype=job.view_dtype)
            out[...] = self._fill
            self.stats = RunStats()
            batches = list(self._batches(job, plan, reducing=False))
            self._map(lambda b: self.local.select(job, b, out), batches)
            values = out.astype(self._storage_dtype, copy=False)
        return values

    def __getitem__(self, selection):
        """The selected values, masked and unpacked, as netCDF4-python's ``var[sel]``."""
        sel = normalize_selection(selection, self.shape, self.dimensions)
        records = self._record_read(sel)
        if records is None:
            values = self._values(sel)
        else:
            values = records.layout(self._read_stored(sel, records), self._record_fill())
        mask = self._rule_for(sel).mask(values)
        data = self.packing.decode(values)
        index = tuple(
            0 if s.drop else (slice(None, None, -1) if s.reverse else slice(None)) for s in sel
        )
        mask = np.zeros(data.shape, bool) if mask is None else mask
        result = np.ma.masked_array(data[(*index, ...)], mask=mask[(*index, ...)])
        if result.ndim:
            return result
        # one element, as netCDF4-python returns it: np.ma.masked when missing, a numpy scalar
        # when unpacked by scale/offset, else a 0-d masked array
        if result.mask:
            return np.ma.masked
        return result.data[()] if self.packing.active else result

    def _unmasked_fill(self) -> np.ndarray | None:
        """The fill value when the CF rules do not mask it (then unwritten chunks count)."""
        fill = np.asarray(self._fill, dtype=self._storage_dtype)
        mask = self.rule.mask(fill)
        return None if mask is not None and bool(mask) else fill

    def _fill_scalar(self, value: Any = None):
        """``value`` (by default the value unwritten chunks hold; JSON spelling) in the
        storage dtype."""
        from .reduction.missing import decode_json_float

        if value is None:
            value = self.index.fill_value
        if value is None:
            value = self._default_fill()
        if value is None:
            return 0
        value = decode_json_float(value)
        native = np.asarray(value).astype(self.index.dtype.newbyteorder("="))
        return native.view(self._storage_dtype)

    def _default_fill(self):
        from .reduction.missing import default_fill

        return default_fill(self.index.dtype.newbyteorder("="))

    # -- machinery -----------------------------------------------------------------------

    def _plan(self, selection) -> ChunkPlan:
        sel = normalize_selection(selection, self.shape, self.dimensions)
        return plan_chunks(sel, self.shape, self.chunks)

    def _rule_for(self, sel: tuple[DimSelection, ...]) -> MissingRule:
        """The missing-data rule of a selection: netCDF4's one-element rule when every
        dimension is indexed by an integer and it differs (``swaps_one_element``)."""
        if self._element_rule is not None and all(s.drop for s in sel):
            return self._element_rule
        return self.rule

    def _job(
        self, plan: ChunkPlan | None, spec: ReductionSpec | None, rule: MissingRule | None = None
    ) -> Job:
        var = self.index
        view = self._storage_dtype.newbyteorder(var.dtype.byteorder)
        if view.itemsize == 1:
            view = self._storage_dtype
        return Job(
            variable=self.variable,
            source=self.source,
            urls=tuple(var.urls),
            chunks=var.chunks,
            raw_dtype=var.dtype,
            view_dtype=view,
            codecs=tuple(var.codecs),
            rule=rule or self.rule,
            packing=self.packing,
            spec=spec,
            steps=() if plan is None else tuple(int(s) for s in plan.steps),
            fill_value=var.fill_value,
            attrs=var.attrs,
            fill=self._valid_fill,
        )

    def _batches(self, job: Job, plan: ChunkPlan, reducing: bool) -> Iterator[ChunkBatch]:
        """Plan rows in batches that share one in-chunk selection, in file order.

        Rows with the same selection pattern (all whole chunks; the edge chunks of each side)
        form one stack for the backend; each batch holds at most ``BATCH_BYTES`` of chunks
        (``DECODED_BATCH_BYTES`` once decoded: the stack a thread decodes into).
        """
        var = self.index
        flat = plan.flat_chunk_ids(var.grid)
        var.load_chunks(flat)
        url_ids = var.url_ids[flat] if flat.size else np.zeros(0, np.int32)
        stored = url_ids != MISSING
        self.stats.add(chunks_fill=int((~stored).sum()))
        if reducing and job.fill is not None:
            rows = np.arange(url_ids.size)  # unwritten chunks hold valid (unmasked) fill
        else:
            rows = np.flatnonzero(stored)
        if job.groups is not None:  # chunks wholly outside every group are not read
            g = job.groups.axis
            seen = np.r_[0, np.cumsum(job.groups.codes >= 0)]
            rows = rows[seen[plan.out_stop[rows, g]] > seen[plan.out_start[rows, g]]]
        if not rows.size:
            return
        chunk_bytes = int(np.prod(var.chunks, dtype=np.int64)) * var.dtype.itemsize
        budget = DECODED_BATCH_BYTES if job.codecs else BATCH_BYTES
        per_batch = max(1, budget // max(chunk_bytes, 1))
        if reducing and getattr(self.backend, "max_batch_rows", None):
            per_batch = min(per_batch, self.backend.max_batch_rows)
        group = plan.signature[rows]
        order = np.lexsort((var.offsets[flat[rows]], url_ids[rows], group))
        rows, group = rows[order], group[order]
        bounds = np.flatnonzero(np.diff(group)) + 1
        for members in np.split(rows, bounds):
            for i in range(0, members.size, per_batch):
                yield self._batch(
                    plan, flat, members[i : i + per_batch], bool(plan.is_complete[members[0]])
                )

    def _batch(self, plan: ChunkPlan, flat: np.ndarray, rows: np.ndarray, complete: bool):
        var = self.index
        ids = flat[rows]
        url_ids = var.url_ids[ids]
        inline = {}
        for pos in np.flatnonzero(url_ids == INLINE):
            inline[int(pos)] = var.inline[int(ids[pos])]
        return ChunkBatch(
            rows=rows,
            url_ids=url_ids,
            offsets=var.offsets[ids],
            sizes=var.sizes[ids],
            in_start=plan.in_start[rows],
            in_stop=plan.in_stop[rows],
            out_start=plan.out_start[rows],
            out_stop=plan.out_stop[rows],
            complete=complete,
            inline=inline,
        )

    def _run(self, job: Job, plan: ChunkPlan, reducing: bool) -> Iterator[tuple]:
        """Every ``(block, partial)`` of the plan, from the backend or the local fallback.

        Partials are yielded batch by batch as they are ready (in batch order, so sums add
        in the same order every run) and folded by the caller at once: memory holds the
        partials of the batches in flight, not one partial per chunk of the whole selection.
        Batches are made as the window moves, not all up front.
        """
        made = self._batches(job, plan, reducing)
        first = list(itertools.islice(made, 2))
        batches = itertools.chain(first, made)
        if self._executor is not None and len(first) > 1:
            config = self._config
            outcomes = _ordered_window(
                self._executor, lambda b: (run_batch, config, job, b), batches, IN_FLIGHT
            )
        elif len(first) > 1:
            fn = lambda b: (dispatch, self.backend, self.local, job, b)
            outcomes = _ordered_window(
                self._pool(), fn, batches, self.max_workers + 1, self._caller_share
            )
        else:
            outcomes = (dispatch(self.backend, self.local, job, b) for b in batches)
        for batch_parts, counts in outcomes:
            self.stats.add(**counts)
            yield from batch_parts

    @property
    def _caller_share(self) -> int:
        """How many of ``max_workers`` the calling thread is, when it works too: local
        batches (CPU work: it would only wait); remote ones wait on the network in the pool."""
        return self.max_workers if self.backend is self.local and self._executor is None else 0

    def _pool(self) -> cf.Executor | None:
        """The executor batches go to (None: the calling thread runs them all)."""
        if self._executor is not None:
            return self._executor
        threads = self.max_workers - (1 if self._caller_share else 0)
        if self._own_pool is None and threads > 0:
            self._own_pool = cf.ThreadPoolExecutor(threads, "activezarr")
        return self._own_pool

    def _map(self, fn, batches: Sequence[ChunkBatch]) -> list:
        if len(batches) <= 1:
            return [fn(b) for b in batches]
        call = lambda b: (fn, b)
        share = self._caller_share
        return list(_ordered_window(self._pool(), call, batches, self.max_workers + 1, share))

    def close(self) -> None:
        """Close files, connections and the thread pool."""
        if self._own_pool is not None:
            self._own_pool.shutdown(wait=True)
            self._own_pool = None
        self.backend.close()
        self.local.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._own_pool is not None:
                self._own_pool.shutdown(wait=False)
            self.local.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass
