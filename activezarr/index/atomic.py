"""Files written whole or not at all: a temporary file beside the target, then a rename.

No numpy here: the catalog's store imports it on the command line's quick paths.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path


def read_umask() -> int:
    """The process umask, read once at import (reading it means setting it: not thread-safe)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = read_umask()
_TMP_NUMBERS = itertools.count()


def create_temporary(path: Path, mode: int = 0o666) -> tuple[int, Path]:
    """A new, empty file beside ``path`` named ``.<name>.<pid>-<n>.tmp`` (``O_EXCL``: never
    someone else's), open for writing, with the mode a new file gets (``mode`` less the umask).

    Cheaper than ``tempfile.mkstemp`` (no random names, no ``fchmod``): indexing many small
    files makes two of them per file.
    """
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}-{next(_TMP_NUMBERS)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode), tmp
        except FileExistsError:  # left by a dead process that had our pid
            continue


def write_atomic(
    path: Path, data: str | bytes | Iterable[str] | Iterable[bytes], *, durable: bool = True
) -> os.stat_result:
    """Write ``data`` (or its pieces, as they come) to ``path`` through a temporary file and
    a rename; return the new file's status (size and modification time, as ``os.stat(path)``
    gives them after).

    A crash leaves either the old file or the new one, never half of either. ``durable``
    also flushes the file to disk before the rename (a power cut cannot lose it); indexing
    many files turns it off, like the catalog's own commits, since an fsync per file costs
    more than translating it.
    """
    try:
        fd, tmp = create_temporary(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = create_temporary(path)
    try:
        for piece in _blocks(data):
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
        status = os.fstat(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
        return status
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # os.write names no file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def _blocks(data, size: int = 1 << 20) -> Iterator[bytes]:
    """``data`` (text or bytes, whole or in pieces of one kind) as bytes, pieces gathered
    into blocks of about ``size`` bytes."""
    if isinstance(data, str | bytes):
        yield data.encode() if isinstance(data, str) else data
        return
    block: list = []
    held = 0
    join = lambda pieces: "".join(pieces).encode()  # bytes pieces: joined as they are
    for piece in data:
        if isinstance(piece, bytes):
            join = b"".join
        block.append(piece)
        held += len(piece)
        if held >= size:
            yield join(block)
            block, held = [], 0
    if block:
        yield join(block)
