"""Byte-range reads of chunk data: ``os.pread`` for local files, fsspec for remote ones.

``read_ranges`` takes parallel arrays (url, offset, size) and returns one bytes-like object per
range. Ranges that touch end to end are read with one call and sliced, which is what makes
many small chunks cheap; remote reads go through fsspec ``cat_ranges``, which runs them
concurrently.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np

from .errors import ChunkReadError
from .index.sources import is_remote, local_path

MAX_MERGED = 64 * 2**20  # never merge ranges into one read larger than this


def adjacent_runs(offsets: np.ndarray, sizes: np.ndarray, limit: int = MAX_MERGED) -> list:
    """Split ranges (in the given order) into runs whose ranges touch end to end.

    Returns a list of ``(first, last_exclusive)`` positions.

    >>> adjacent_runs(np.array([0, 10, 30]), np.array([10, 20, 5]))
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


class LocalFiles:
    """Positional reads from local files, one descriptor per file kept open."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def _fd(self, url: str) -> int:
        fd = self._fds.get(url)
        if fd is None:
            with self._lock:
                fd = self._fds.get(url)
                if fd is None:
                    try:
                        fd = os.open(local_path(url), os.O_RDONLY)
                    except OSError as exc:
                        raise ChunkReadError(
                            f"cannot open {url}: {exc.strerror}; the index points at a file "
                            "that moved or was deleted: re-index it"
                        ) from exc
                    self._fds[url] = fd
        return fd

    def read(self, url: str, offset: int, size: int) -> bytes:
        fd = self._fd(url)
        data = os.pread(fd, size, offset)
        if len(data) != size:
            data = self._read_rest(fd, url, offset, size, data)
        return data

    def _read_rest(self, fd: int, url: str, offset: int, size: int, data: bytes) -> bytes:
        parts = [data]
        got = len(data)
        while got < size:
            more = os.pread(fd, size - got, offset + got)
            if not more:
                raise ChunkReadError(
                    f"{url}: expected {size} bytes at offset {offset}, file ends after {got}; "
                    "the file changed since it was indexed: re-index it"
                )
            parts.append(more)
            got += len(more)
        return b"".join(parts)

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
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


def adjacent_runs_by_url(urls: Sequence[str], offsets: np.ndarray, sizes: np.ndarray) -> list:
    """``adjacent_runs`` that also breaks wherever the URL changes."""
    runs = []
    start = 0
    n = len(urls)
    for i in range(1, n + 1):
        if i == n or urls[i] != urls[start]:
            runs += [
                (start + a, start + b) for a, b in adjacent_runs(offsets[start:i], sizes[start:i])
            ]
            start = i
    return runs


class RemoteFiles:
    """Concurrent byte-range reads of remote objects through fsspec ``cat_ranges``."""

    def __init__(self, storage_options: dict | None = None) -> None:
        self.storage_options = storage_options or {}
        self._fs: dict[str, object] = {}
        self._lock = threading.Lock()

    def _filesystem(self, url: str):
        import fsspec

        protocol = url.split("://", 1)[0]
        with self._lock:
            fs = self._fs.get(protocol)
            if fs is None:
                fs = fsspec.filesystem(protocol, **self.storage_options)
                self._fs[protocol] = fs
        return fs

    def read_ranges(self, urls: Sequence[str], offsets: np.ndarray, sizes: np.ndarray) -> list:
        if not len(urls):
            return []
        fs = self._filesystem(urls[0])
        starts = [int(o) for o in offsets]
        ends = [int(o + s) for o, s in zip(offsets, sizes, strict=True)]
        try:
            blobs = fs.cat_ranges(list(urls), starts, ends, on_error="raise")
        except FileNotFoundError as exc:
            raise ChunkReadError(f"{urls[0]}: object not found ({exc}); re-index it") from exc
        except Exception as exc:  # noqa: BLE001 - fsspec backends raise many kinds
            raise ChunkReadError(f"reading {urls[0]} failed: {exc}") from exc
        return [memoryview(b) for b in blobs]

    def close(self) -> None:
        self._fs.clear()


class Readers:
    """Routes each URL to the local or the remote reader."""

    def __init__(self, storage_options: dict | None = None) -> None:
        self.local = LocalFiles()
        self.remote = RemoteFiles(storage_options)

    def read_ranges(self, urls: Sequence[str], offsets: np.ndarray, sizes: np.ndarray) -> list:
        if urls and is_remote(urls[0]):
            return self.remote.read_ranges(urls, offsets, sizes)
        return self.local.read_ranges(urls, offsets, sizes)

    def close(self) -> None:
        self.local.close()
        self.remote.close()
