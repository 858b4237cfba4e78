"""Byte-range reads of chunk data: ``os.pread`` for local files, fsspec for remote ones.

``read_ranges`` takes parallel arrays (url, offset, size) and returns one bytes-like object per
range. Ranges that touch end to end are read with one call and sliced, which is what makes
many small chunks cheap; remote reads go through fsspec ``cat_ranges``, which runs them
concurrently.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ChunkReadError
from .index.fetch import RangeIgnored, fetch_ranges
from .index.network import ReadPolicy, ShortRead, retryable
from .index.sources import is_remote, local_path, remote_failure, remote_filesystem

MAX_MERGED = 64 * 2**20  # never merge ranges into one read larger than this


def open_file_budget() -> int:
    """How many local files one reader keeps open (a descriptor, and a map that holds its own):
    a quarter of the process's descriptor limit, so a combined index of thousands of files
    stays under ``ulimit -n`` with room for everything else."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            soft = 8192
    except (ImportError, OSError, ValueError):
        soft = 1024
    return max(4, min(1024, soft // 8))


def adjacent_runs(offsets: np.ndarray, sizes: np.ndarray, limit: int = MAX_MERGED) -> list:
    """Split ranges (in the given order) into runs whose ranges touch end to end.

    Returns a list of ``(first, last_exclusive)`` positions.

    >>> adjacent_runs(np.array([0, 10, 40]), np.array([10, 20, 5]))
    [(0, 2), (2, 3)]
    """
    n = len(offsets)
    if n == 0:
        return []
    ends = offsets + sizes
    breaks = np.flatnonzero(offsets[1:] != ends[:-1]) + 1
    runs = []
    for a, b in zip(np.r_[0, breaks], np.r_[breaks, n], strict=True):
        a, b = int(a), int(b)
        start = a
        while start < b:  # cap the size of one read
            total = np.cumsum(sizes[start:b])
            stop = start + max(1, int(np.searchsorted(total, limit, side="right")))
            runs.append((start, min(stop, b)))
            start = min(stop, b)
    return runs


PAGE = mmap.PAGESIZE


class LocalFiles:
    """Positional reads and memory maps of local files, a bounded number kept open.

    Maps are read-only and shared by threads; ``release`` drops pages a reduction is done with
    from this process (they stay in the page cache), so resident memory stays bounded by the
    chunks in flight rather than growing to the file size. At most ``budget`` descriptors and
    ``budget`` maps stay open: the least recently used are closed when another file is opened
    (a descriptor only when no read is using it; a map when its last user lets go of it), so reading a combined index of thousands of files never runs out of
    descriptors.
    """

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget or open_file_budget()
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._busy: Counter[str] = Counter()
        self._maps: OrderedDict[str, mmap.mmap] = OrderedDict()
        self._lock = threading.Lock()

    def mapping(self, url: str) -> mmap.mmap | None:
        """A read-only map of the whole file, or None for an empty file."""
        found = self._maps.get(url)
        if found is not None:
            return found
        with self._using(url) as fd, self._lock:
            found = self._maps.get(url)
            if found is None:
                if os.fstat(fd).st_size == 0:
                    return None
                found = self._maps[url] = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                while len(self._maps) > self.budget:
                    # not closed here: a thread may have just been handed it; a map closes
                    # (and frees its descriptor) when its last user and view let go of it
                    self._maps.popitem(last=False)
        return found

    def release(self, url: str, start: int, stop: int) -> None:
        """Drop the mapped pages of ``[start, stop)`` from this process's resident set."""
        mm = self._maps.get(url)
        if mm is None or stop <= start:
            return
        first = start // PAGE * PAGE
        try:
            mm.madvise(mmap.MADV_DONTNEED, first, min(stop, len(mm)) - first)
        except (OSError, ValueError, AttributeError):
            pass  # an optimisation only: some platforms lack madvise

    @contextlib.contextmanager
    def _using(self, url: str) -> Iterator[int]:
        """The descriptor of ``url``, not closed by another thread while the block runs."""
        with self._lock:
            fd = self._fds.get(url)
            if fd is None:
                fd = self._open(url)
            else:
                self._fds.move_to_end(url)
            self._busy[url] += 1
        try:
            yield fd
        finally:
            with self._lock:
                self._busy[url] -= 1
                if not self._busy[url]:
                    del self._busy[url]

    def _open(self, url: str) -> int:
        """Open ``url`` (lock held), closing the least recently used idle descriptors."""
        idle = [u for u in self._fds if u not in self._busy]
        for old in idle[: max(0, len(self._fds) + 1 - self.budget)]:
            os.close(self._fds.pop(old))
        try:
            fd = os.open(local_path(url), os.O_RDONLY)
        except OSError as exc:
            fix = (
                "the index points at a file that moved or was deleted: re-index it"
                if exc.errno in (errno.ENOENT, errno.ENOTDIR)
                else "check the file's permissions and the open-file limit (ulimit -n)"
            )
            raise ChunkReadError(f"cannot open {url}: {exc.strerror}; {fix}") from exc
        self._fds[url] = fd
        return fd

    def read_into(self, url: str, offset: int, out: memoryview) -> None:
        """Fill ``out`` with the bytes of ``url`` from ``offset`` (no allocation)."""
        with self._using(url) as fd:
            got = 0
            while got < len(out):
                n = os.preadv(fd, [out[got:]], offset + got)
                if n <= 0:
                    raise ChunkReadError(
                        f"{url}: expected {len(out)} bytes at offset {offset}, file ends after "
                        f"{got}; the file changed since it was indexed: re-index it"
                    )
                got += n

    def read(self, url: str, offset: int, size: int) -> bytearray:
        data = bytearray(size)
        self.read_into(url, offset, memoryview(data))
        return data

    def read_ranges(
        self, urls: Sequence[str], offsets: np.ndarray, sizes: np.ndarray
    ) -> list[memoryview]:
        out: list[memoryview] = []
        for a, b in adjacent_runs_by_url(urls, offsets, sizes):
            blob = memoryview(
                self.read(urls[a], int(offsets[a]), int(offsets[b - 1] + sizes[b - 1] - offsets[a]))
            )
            base = int(offsets[a])
            for i in range(a, b):
                lo = int(offsets[i]) - base
                out.append(blob[lo : lo + int(sizes[i])])
        return out

    def close(self) -> None:
        with self._lock:
            for mm in self._maps.values():
                try:
                    mm.close()
                except BufferError:
                    pass  # a result still views the map; it closes when that is freed
            self._maps.clear()
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


def adjacent_runs_by_url(urls: Sequence[str], offsets: np.ndarray, sizes: np.ndarray) -> list:
    """``adjacent_runs`` that also breaks wherever the URL changes.

    >>> adjacent_runs_by_url(["a", "a", "b"], np.array([0, 10, 20]), np.array([10, 10, 5]))
    [(0, 2), (2, 3)]
    """
    n = len(urls)
    if n == 0:
        return []
    offsets = np.asarray(offsets)
    breaks = offsets[1:] != (offsets + sizes)[:-1]
    if list(urls).count(urls[0]) != n:  # (one file, the usual case, needs no comparing)
        names = np.empty(n, dtype=object)
        names[:] = urls
        breaks |= names[1:] != names[:-1]
    bounds = [0, *(np.flatnonzero(breaks) + 1).tolist(), n]
    starts, stops = bounds[:-1], bounds[1:]
    if int(np.sum(sizes, dtype=np.uint64)) <= MAX_MERGED:  # no run can be too long
        return list(zip(starts, stops, strict=True))
    total = np.concatenate([[0], np.cumsum(sizes, dtype=np.uint64)])
    long = (total[stops] - total[starts]) > MAX_MERGED
    runs = []
    for a, b, split in zip(starts, stops, long.tolist(), strict=True):
        if split:  # cap the size of one read
            runs += [(a + x, a + y) for x, y in adjacent_runs(offsets[a:b], sizes[a:b])]
        else:
            runs.append((a, b))
    return runs


class RemoteFiles:
    """Concurrent byte-range reads of remote objects through fsspec ``cat_ranges``.

    Ranges of one object closer than ``max_gap`` bytes are fetched with one request (the gap is
    read and dropped), as long as the merged request stays under ``max_block``: with small
    chunks the number of round trips, not bytes, is what costs. Every request has the
    ``policy``'s timeouts; those that fail in a way a retry may cure (and replies of another
    length than asked: a short read is never data) are asked again, with backoff, at most
    ``policy.retries`` times; then one ``ChunkReadError`` names the object and byte range.
    """

    def __init__(
        self,
        storage_options: dict | None = None,
        *,
        max_gap: int = 64 * 2**10,
        max_block: int = 16 * 2**20,
        policy: ReadPolicy | None = None,
    ) -> None:
        self.storage_options = storage_options or {}
        self.max_gap = max_gap
        self.max_block = max_block
        self.policy = policy or ReadPolicy()
        self.retries = 0  # requests asked again, over this reader's life
        self._fs: dict[str, object] = {}
        self._lock = threading.Lock()

    def _filesystem(self, url: str):
        protocol = url.split("://", 1)[0]
        with self._lock:
            fs = self._fs.get(protocol)
            if fs is None:
                fs = self._fs[protocol] = remote_filesystem(
                    protocol, self.storage_options, self.policy
                )
        return fs

    def read_ranges(self, urls: Sequence[str], offsets: np.ndarray, sizes: np.ndarray) -> list:
        if not len(urls):
            return []
        starts = np.asarray(offsets, dtype=np.int64)
        ends = starts + np.asarray(sizes, dtype=np.int64)
        groups = merged_ranges(list(urls), starts, ends, self.max_gap, self.max_block)
        by_protocol: dict[str, list[MergedRange]] = {}
        for group in groups:
            by_protocol.setdefault(group.url.split("://", 1)[0], []).append(group)
        out: list = [None] * len(urls)
        for requests in by_protocol.values():
            for group, blob in zip(requests, self._fetch(requests), strict=True):
                view = memoryview(blob)
                for i in group.members:
                    lo = int(starts[i]) - group.start
                    out[i] = view[lo : lo + int(ends[i] - starts[i])]
        return out

    def _fetch(self, requests: list[MergedRange]) -> list:
        """The bytes of each request (one filesystem), concurrently; failed requests are
        asked again (``retryable``, at most ``policy.retries`` times) and the first that
        keeps failing raised as ``ChunkReadError`` naming its object and byte range."""
        fs = self._filesystem(requests[0].url)
        blobs: list = [None] * len(requests)
        pending = list(range(len(requests)))
        for attempt in range(self.policy.retries + 1):
            if attempt:
                with self._lock:
                    self.retries += len(pending)
                time.sleep(self.policy.delay(attempt))
            failures = self._attempt(fs, requests, pending, blobs)
            fatal = [i for i, exc in failures.items() if not retryable(exc)]
            if fatal or not failures or attempt == self.policy.retries:
                break
            pending = sorted(failures)
        if failures:
            i = (fatal or sorted(failures))[0]
            exc = failures[i]
            exc.attempts = attempt + 1
            raise ChunkReadError(self._message(requests[i], exc)) from exc
        return blobs

    def _attempt(self, fs, requests: list[MergedRange], pending: list[int], blobs: list) -> dict:
        """One ``cat_ranges`` of the ``pending`` requests into ``blobs``; the failures."""
        failures: dict[int, BaseException] = {}
        try:
            got = fetch_ranges(
                fs,
                [requests[i].url for i in pending],
                [requests[i].start for i in pending],
                [requests[i].end for i in pending],
                self.policy.deadline,
            )
        except Exception as exc:  # noqa: BLE001 - the whole call failed: every request did
            return dict.fromkeys(pending, exc)
        for i, blob in zip(pending, got, strict=True):
            asked = requests[i].end - requests[i].start
            if isinstance(blob, BaseException):
                failures[i] = blob
            elif len(blob) > asked:  # a filesystem without fetch's check of the reply's head
                failures[i] = RangeIgnored(
                    f"sent {len(blob)} bytes for a range of {asked}: the server ignores "
                    "HTTP range requests"
                )
            elif len(blob) < asked:
                failures[i] = ShortRead(f"got {len(blob)} of the {asked} bytes asked for")
            else:
                blobs[i] = blob
        return failures

    def _message(self, group: MergedRange, exc: BaseException) -> str:
        where = f"bytes {group.start}-{group.end} ({len(group.members)} chunk range(s))"
        if isinstance(exc, FileNotFoundError):
            return (
                f"{remote_failure(group.url, exc)} ({where}); the index may be stale: re-index it"
            )
        return f"reading {where} of {remote_failure(group.url, exc, self.storage_options)}"

    def close(self) -> None:
        self._fs.clear()


@dataclass
class MergedRange:
    """One request: ``[start, end)`` of ``url``, covering the ranges at ``members``."""

    url: str
    start: int
    end: int
    members: list[int]


def merged_ranges(
    urls: Sequence[str], starts: np.ndarray, ends: np.ndarray, max_gap: int, max_block: int
) -> list[MergedRange]:
    """Group byte ranges into requests: same URL, gaps of at most ``max_gap`` bytes, and no
    request longer than ``max_block`` (a single longer range stays one request).

    >>> [(m.start, m.end, m.members) for m in merged_ranges(
    ...     ["a", "a", "a", "b"], np.array([10, 0, 100, 0]), np.array([20, 10, 110, 5]), 8, 99)]
    [(0, 20, [1, 0]), (100, 110, [2]), (0, 5, [3])]
    """
    order = sorted(range(len(urls)), key=lambda i: (urls[i], int(starts[i])))
    groups: list[MergedRange] = []
    for i in order:
        start, end = int(starts[i]), int(ends[i])
        last = groups[-1] if groups else None
        if (
            last is not None
            and last.url == urls[i]
            and start - last.end <= max_gap
            and max(end, last.end) - last.start <= max_block
        ):
            last.end = max(last.end, end)
            last.members.append(i)
        else:
            groups.append(MergedRange(urls[i], start, end, [i]))
    return groups


class Readers:
    """Routes each URL to the local or the remote reader."""

    def __init__(self, storage_options: dict | None = None, policy: ReadPolicy | None = None):
        self.local = LocalFiles()
        self.remote = RemoteFiles(storage_options, policy=policy)

    def read_ranges(self, urls: Sequence[str], offsets: np.ndarray, sizes: np.ndarray) -> list:
        if urls and is_remote(urls[0]):
            return self.remote.read_ranges(urls, offsets, sizes)
        return self.local.read_ranges(urls, offsets, sizes)

    def close(self) -> None:
        self.local.close()
        self.remote.close()
