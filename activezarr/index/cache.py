"""A binary sidecar of an index's chunk tables, so a large index opens in well under a millisecond.

Parsing a kerchunk JSON index with 250,000 references costs a second and hundreds of MB; the
same tables as numpy arrays are 5 MB and are memory-mapped, not read. One file per index,
``<index dir>/.activezarr-cache/<index name>.azc``, holds every variable:

- 16 bytes: the magic ``AZCT``, the format number (uint32) and the length of the header
  (uint64);
- the header, JSON: the index file's size and modification time (``stamp``) and, per
  variable, its metadata and where its three tables (url ids, offsets, sizes) start;
- the tables, each aligned to 64 bytes, little-endian.

The header also keeps the index's ``activezarr`` member (recorded sources) and each variable's
attribute types. A sidecar is input like the index beside it: whatever it holds goes through
the same checks as the JSON (``validate.py``), and one that fails them is ignored.
When the index changes (another stamp) the sidecar is ignored and rewritten. The JSON index
stays the source of truth; deleting the cache only costs time. Nothing in the sidecar is
executable (no pickle): numpy scalars in attributes are stored as ``{"$np": [dtype, value]}``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import mmap
import os
import struct
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import UMASK, create_temporary
from .refs import decode_inline, inline_bytes, json_attr, loads

log = logging.getLogger(__name__)

CACHE_DIR = ".activezarr-cache"
SUFFIX = ".azc"
MAGIC = b"AZCT"
FORMAT = 5  # 4: the activezarr member, attribute types, checked on load; 5: record extents
PREAMBLE = struct.Struct("<4sIQ")
ALIGN = 64
TABLE_DTYPES = {"url_ids": np.dtype("<i4"), "offsets": np.dtype("<u8"), "sizes": np.dtype("<u8")}
MAP_ABOVE = 1 << 16  # tables larger than this are memory-mapped rather than read


def cache_file(index: Path, variable: str | None = None) -> Path:
    """The sidecar of ``index`` (one file for all its variables)."""
    return index.parent / CACHE_DIR / (index.name + SUFFIX)


def _cache_path(index: str | os.PathLike) -> str:
    """``cache_file`` as text (no ``Path`` objects when thousands of indexes are opened)."""
    head, name = os.path.split(os.fspath(index))
    return os.path.join(head, CACHE_DIR, name + SUFFIX)


def _stamp(index: Path, status: os.stat_result | None = None) -> list[int]:
    st = status if status is not None else os.stat(index)
    return [FORMAT, st.st_size, st.st_mtime_ns]


def _encode(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return {"$np": [value.dtype.str, value.tolist()]}
    if isinstance(value, bytes):
        return {"$bytes": inline_bytes(value)}
    raise TypeError(f"cannot store {type(value).__name__} in the index cache")


def _decode(obj: dict) -> Any:
    if len(obj) == 1:
        if "$np" in obj:
            dtype, value = obj["$np"]
            arr = np.asarray(value, dtype=np.dtype(dtype))
            return arr[()] if arr.ndim == 0 else arr
        if "$bytes" in obj:
            return decode_inline(obj["$bytes"])
    return obj


_header_json = json.JSONEncoder(default=lambda v: _encode(v), separators=(",", ":")).encode


def save(index: Path, variables, member=None, status: os.stat_result | None = None) -> None:
    """Write the sidecar of ``index`` holding ``variables`` (``VariableIndex`` objects) and
    the index's ``activezarr`` member; ``status`` is the index's ``os.stat`` if known.

    Failures only cost speed later: they are logged, never raised.
    """
    target = cache_file(index)
    tmp = None
    try:
        meta: dict[str, Any] = {
            "stamp": _stamp(index, status),
            "member": member.to_json() if member is not None and member.present else None,
            "variables": {},
        }
        tables, at = [], 0
        for var in variables:
            entry = {
                "shape": list(var.shape),
                "chunks": list(var.chunks),
                "dtype": var.dtype.str,
                "fill_value": var.fill_value,
                "fill_attr": var.fill_attr,
                "no_fill": var.no_fill,
                "extent": None if var.extent is None else list(var.extent),
                "unlimited": None if var.unlimited is None else list(var.unlimited),
                "codecs": var.codecs,
                "attrs": {k: json_attr(v) for k, v in var.attrs.items()},
                "attribute_types": var.attribute_types,
                "dims": list(var.dims),
                "urls": var.urls,
                "inline": {str(k): inline_bytes(v) for k, v in var.inline.items()},
                "tables": {},
            }
            for field, dtype in TABLE_DTYPES.items():
                arr = np.ascontiguousarray(getattr(var, field), dtype=dtype)
                entry["tables"][field] = [at, arr.size]
                tables.append((at, arr))
                at += -(-arr.nbytes // ALIGN) * ALIGN
            meta["variables"][var.name] = entry
        header = _header_json(meta).encode()
        base = -(-(PREAMBLE.size + len(header)) // ALIGN) * ALIGN
        body = bytearray(base + at)
        body[: PREAMBLE.size] = PREAMBLE.pack(MAGIC, FORMAT, base - PREAMBLE.size)
        body[PREAMBLE.size : base] = header.ljust(base - PREAMBLE.size, b" ")
        for offset, arr in tables:
            body[base + offset : base + offset + arr.nbytes] = arr.tobytes()
        try:
            fd, tmp = create_temporary(target, 0o644)
        except FileNotFoundError:  # the first sidecar in this directory
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = create_temporary(target, 0o644)
        if 0o644 & UMASK:
            os.fchmod(fd, 0o644)  # readable by all whatever the umask, like the index itself
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
        os.replace(tmp, target)
    except (OSError, TypeError, ValueError) as exc:
        log.info("index cache not written for %s (%s)", index, exc)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def save_document(index: Path, document, first) -> None:
    """Write the sidecar of every variable of an index document (an ``IndexDocument``;
    ``first`` already loaded). Variables that fail their checks are left out: opening them
    reads the JSON and raises again."""
    from .load import list_variables, load_variable

    variables = [first]
    for name in list_variables(document.refs):
        if name != first.name:
            try:
                variables.append(load_variable(document, name, check=False))
            except Exception as exc:  # noqa: BLE001 - it raises again when opened itself
                log.info("variable %s of %s not cached (%s)", name, index, exc)
    save(index, variables, document.member)


def load(index: Path, variable: str, source: str):
    """``(VariableIndex, Member)`` of ``variable`` from the sidecar, or None when absent, out of
    date or failing the checks. The caller still checks the chunk table against the sources
    (``load.check_variable``)."""
    try:
        found = _read(index, [variable], partial(json.loads, object_hook=_decode))
        if found is None or found[1][0] is None:
            return None
        meta, ((entry, tables),) = found
        return _from_entry(variable, source, meta, entry, tables)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error) as exc:
        log.info("index cache of %s ignored (%s)", index, exc)
        return None


PER_FILE = ("urls", "tables", "inline")  # what differs between files of one archive


def load_many(indexes: list[str], names: Sequence[str]) -> list[list[tuple[Any, Any] | None]]:
    """``load`` of the variables ``names`` from many indexes: per index, per name,
    ``(VariableIndex, Member)`` or None.

    Files of one archive usually share everything but their URLs and chunk tables: the
    header of each is parsed once (orjson when installed) and compared with those already
    checked, and only a variable whose metadata is new goes through ``_from_entry``'s checks;
    the others reuse the checked metadata with their own URLs, tables and sources.
    """
    checked: dict[str, list[tuple[dict, dict, Any]]] = {n: [] for n in names}
    out = []
    for index in indexes:
        try:
            out.append(_load_shared(index, names, checked))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error) as exc:
            log.info("index cache of %s ignored (%s)", index, exc)
            out.append([None] * len(names))
    return out


def _load_shared(index: str, names: Sequence[str], checked: dict) -> list:
    found = _read(index, names, loads)
    if found is None:
        return [None] * len(names)
    meta, entries = found
    from .member import parse_member

    member = meta["member"]
    recorded = parse_member(member, f"index cache of {index}")
    if not recorded.sources:
        return [None] * len(names)  # no sources recorded: the caller opens it the usual way
    common = {k: v for k, v in member.items() if k != "sources"}
    out = []
    for name, (entry, tables) in zip(names, entries, strict=True):
        if entry is None:
            out.append(None)
            continue
        shared = {k: v for k, v in entry.items() if k not in PER_FILE}
        for seen, seen_member, template in checked[name]:
            if seen == shared and seen_member == common:
                break
        else:
            decoded = json.loads(json.dumps(meta), object_hook=_decode)  # numpy values back
            template = _from_entry(name, index, decoded, decoded["variables"][name], tables)[0]
            checked[name].append((shared, common, template))
        _check_tables(entry, tables, template.n_chunks)
        var = dataclasses.replace(
            template,
            source=str(index),
            urls=[str(u) for u in entry["urls"]],
            inline={int(k): decode_inline(v) for k, v in entry["inline"].items()},
            **tables,
        )
        out.append((var, recorded))
    return out


def _read(index: str | Path, names: Sequence[str], parse):
    """``(header, [(entry, tables) of each name])`` from the sidecar of ``index`` (``(None,
    None)`` for a name it lacks), or None when the sidecar is absent or out of date."""
    with open(_cache_path(index), "rb") as fh:
        magic, version, length = PREAMBLE.unpack(fh.read(PREAMBLE.size))
        if magic != MAGIC or version != FORMAT or length > 2**31:
            return None
        meta = parse(fh.read(length))
        if meta["stamp"] != _stamp(index):
            return None
        out = []
        for name in names:
            entry = meta["variables"].get(name)
            tables = None if entry is None else _tables(fh, PREAMBLE.size + length, entry)
            out.append((entry, tables))
    return meta, out


def _tables(fh, base: int, entry: dict) -> dict[str, np.ndarray]:
    """The three tables of one variable: memory-mapped when large, else read in one call."""
    spans = entry["tables"]
    total = sum(n * TABLE_DTYPES[f].itemsize for f, (_, n) in spans.items())
    if total > MAP_ABOVE:
        buffer = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        offset = base
    else:
        first = min(at for at, _ in spans.values())
        last = max(at + n * TABLE_DTYPES[f].itemsize for f, (at, n) in spans.items())
        fh.seek(base + first)
        buffer = fh.read(last - first)
        offset = -first
    return {
        field: np.frombuffer(buffer, TABLE_DTYPES[field], n, offset + at)
        for field, (at, n) in spans.items()
    }


def _check_tables(entry: dict, tables: dict, n: int) -> None:
    if set(tables) != set(TABLE_DTYPES) or any(tables[f].shape != (n,) for f in TABLE_DTYPES):
        raise ValueError("chunk table does not match the grid")
    if not isinstance(entry["urls"], list) or not isinstance(entry["inline"], dict):
        raise TypeError("urls or inline chunks malformed")


def _from_entry(name: str, source: str, meta: dict, entry: dict, tables: dict):
    from .load import VariableIndex, chunk_grid, fill_fields
    from .member import parse_member, typed_attrs
    from .validate import parse_zarray, parse_zattrs

    where = f"index cache of {source}"
    checked = parse_zarray(
        {
            "shape": entry["shape"],
            "chunks": entry["chunks"],
            "dtype": entry["dtype"],
            "fill_value": entry["fill_value"],
            "filters": entry["codecs"],
            "compressor": None,
        },
        where,
    )
    n = int(np.prod(chunk_grid(checked.shape, checked.chunks), dtype=np.int64))
    _check_tables(entry, tables, n)
    member = parse_member(meta["member"], where)
    types = entry["attribute_types"]
    parse_member({"format": 1, "attribute_types": {name: types}}, where)
    attrs = parse_zattrs(entry["attrs"], len(checked.shape), where, types)
    facts = {"fill": entry["fill_value"], "_FillValue": entry["fill_attr"]}
    facts["no_fill"] = entry["no_fill"]
    facts.update(extent=entry.get("extent"), unlimited=entry.get("unlimited"))
    var = VariableIndex(
        name=name,
        source=source,
        shape=checked.shape,
        chunks=checked.chunks,
        dtype=checked.dtype,
        codecs=checked.codecs,
        attrs=typed_attrs(attrs, types, where),
        dims=tuple(str(d) for d in entry["dims"]),
        urls=[str(u) for u in entry["urls"]],
        url_ids=tables["url_ids"],
        offsets=tables["offsets"],
        sizes=tables["sizes"],
        inline={int(k): decode_inline(v) for k, v in entry["inline"].items()},
        attribute_types=types,
        **fill_fields(None, facts, checked.dtype, where),
    )
    return var, member
