"""Reading and writing kerchunk reference sets (version 1 JSON), with atomic file writes."""

from __future__ import annotations

import base64
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

try:
    import orjson
except ImportError:  # optional (extra "fast"): the standard library parses the same JSON
    orjson = None

META_NAMES = (".zgroup", ".zarray", ".zattrs")


def loads(data: bytes | str) -> Any:
    """Parse JSON with orjson when installed (several times faster), falling back to the
    standard library for what orjson refuses (NaN literals, huge integers, deep nesting: the
    standard library then parses it or raises)."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


# ``json.dumps(value, separators=(",", ":"))``, without building an encoder per call
compact_json = json.JSONEncoder(separators=(",", ":")).encode


def is_meta_key(key: str) -> bool:
    """True for zarr v2 metadata keys (``.zgroup``, ``var/.zarray``, ``var/.zattrs``)."""
    return key.rsplit("/", 1)[-1] in META_NAMES


def meta_text(value: Any) -> Any:
    """A metadata value as the reference spec writes it: JSON text (a string stays as it is)."""
    if isinstance(value, str):
        return value
    return compact_json(value)


def ref_item(key: str, value: Any) -> str:
    """One ``"key":value`` item of a version 1 JSON index (metadata values as JSON strings)."""
    if is_meta_key(key):
        value = meta_text(value)
    return f"{json.dumps(key)}:{compact_json(value)}"


def encode_fill_value(value: Any, dtype: np.dtype) -> Any:
    """The zarr v2 JSON spelling of a fill value (non-finite floats as strings)."""
    if value is None:
        return None
    if dtype.kind == "f":
        v = float(value)
        if np.isnan(v):
            return "NaN"
        if np.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if dtype.kind in "iu":
        return int(value)
    if dtype.kind in "SUO":
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if dtype.kind == "b":
        return bool(value)
    return None


def inline_bytes(data: bytes) -> str:
    """An inline reference value; base64 so that any bytes survive JSON."""
    return "base64:" + base64.b64encode(data).decode("ascii")


def decode_inline(value: str) -> bytes:
    """The bytes of an inline reference value (``base64:`` prefix, else UTF-8 text)."""
    if value.startswith("base64:"):
        return base64.b64decode(value[7:], validate=True)
    return value.encode("utf-8")


def json_attr(value: Any) -> Any:
    """An HDF5 attribute value as plain JSON (numbers, strings, lists).

    An empty attribute (an HDF5 null dataspace, h5py's ``Empty``) is an empty list, as
    netCDF4-python reads it: an empty array.
    """
    if type(value).__name__ == "Empty":  # h5py.Empty, without importing h5py here
        return []
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SUO":
            return [json_attr(v) for v in value.tolist()]
        return json_attr(value.item()) if value.size == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_umask() -> int:
    """The process umask, read once at import (reading it means setting it: not thread-safe)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
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
    path: Path, data: str | bytes | Iterable[str], *, durable: bool = True
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
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise


def _blocks(data: str | bytes | Iterable[str], size: int = 1 << 20) -> Iterator[bytes]:
    """``data`` as bytes, pieces gathered into blocks of about ``size`` bytes."""
    if isinstance(data, str | bytes):
        yield data.encode() if isinstance(data, str) else data
        return
    block: list[str] = []
    held = 0
    for piece in data:
        block.append(piece)
        held += len(piece)
        if held >= size:
            yield "".join(block).encode()
            block, held = [], 0
    if block:
        yield "".join(block).encode()


MEMBER = "activezarr"  # our top-level member next to "refs": kerchunk readers ignore it


def dumps_document(items: list[str], member: dict[str, Any] | None = None) -> str:
    """A version 1 JSON index from ``ref_item`` lines, with the ``activezarr`` member if given.

    The member comes after ``refs``: kerchunk readers (fsspec, VirtualiZarr) ignore top-level
    members they do not know.
    """
    return "".join(document_pieces(items, member))


def document_pieces(items: Iterable[str], member: dict[str, Any] | None = None) -> Iterator[str]:
    """``dumps_document`` piece by piece, for ``write_atomic`` to stream to disk."""
    yield '{"version":1,"refs":{\n'
    sep = ""
    for item in items:
        yield sep + item
        sep = ",\n"
    tail = "\n}"
    if member is not None:
        tail += f',\n"{MEMBER}":' + compact_json(member)
    yield tail + "}\n"


def dumps_refs(refs: dict[str, Any], member: dict[str, Any] | None = None) -> str:
    """Serialise a reference dict as kerchunk version 1 JSON (compact, one key per line)."""
    return dumps_document([ref_item(k, v) for k, v in refs.items()], member)
