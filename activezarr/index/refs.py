"""Reading and writing kerchunk reference sets (version 1 JSON)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .atomic import write_atomic  # noqa: F401 - also importable from here
from .jsontext import compact_json, loads  # noqa: F401 - also importable from here

META_NAMES = (".zgroup", ".zarray", ".zattrs")


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
