"""Persisted indexes to ``VariableIndex``: zarr metadata plus compact chunk tables.

A kerchunk reference set (JSON v0/v1 file or URL, or a dict) loads into, for one variable,
three flat numpy arrays over the C-ordered chunk grid (url id, byte offset, byte length) and a
small table of URLs. Chunks absent from the index have url id ``MISSING`` (they read as the
fill value); small inline chunks have url id ``INLINE`` and their bytes in ``inline``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import operator
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:
    import orjson
except ImportError:  # optional (extra "fast"): the standard library parses the same JSON
    orjson = None

from ..errors import IndexLoadError
from .refs import MEMBER, decode_inline
from .sources import is_remote

MISSING = -1
INLINE = -2


def chunk_grid(shape: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks along each dimension (0 along an empty dimension)."""
    return tuple(-(-n // c) if n else 0 for n, c in zip(shape, chunks, strict=True))


@dataclass
class VariableIndex:
    """Everything the planner and the backends need to know about one variable."""

    name: str
    source: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    fill_value: Any  # what unwritten chunks read as (zarr JSON spelling; None: netCDF default)
    codecs: list[dict]  # numcodecs configs in encode order (filters, then compressor)
    attrs: dict[str, Any]
    dims: tuple[str, ...]
    urls: list[str]
    url_ids: np.ndarray  # int32, one per chunk, C order
    offsets: np.ndarray  # uint64
    sizes: np.ndarray  # uint64
    inline: dict[int, bytes] = field(default_factory=dict)
    fill_attr: Any = None  # the file's _FillValue attribute (JSON spelling), None if it has none
    no_fill: bool = False  # created without fill: byte variables do not mask the default fill

    @property
    def grid(self) -> tuple[int, ...]:
        return chunk_grid(self.shape, self.chunks)

    @property
    def n_chunks(self) -> int:
        return int(np.prod(self.grid, dtype=np.int64))

    @property
    def n_stored(self) -> int:
        return int(np.count_nonzero(self.url_ids != MISSING))

    @property
    def stored_bytes(self) -> int:
        return int(self.sizes[self.url_ids >= 0].sum())


def read_document(index: str | Path | dict, storage_options: dict | None = None) -> dict:
    """The whole index document (file, URL or dict): ``refs`` and any top-level members."""
    return index if isinstance(index, dict) else _read_json(str(index), storage_options)


def variable_facts(document: dict) -> dict[str, dict]:
    """activezarr's per-variable facts from the index's own member ({} for plain kerchunk)."""
    member = document.get(MEMBER) if isinstance(document, dict) else None
    variables = member.get("variables") if isinstance(member, dict) else None
    return variables if isinstance(variables, dict) else {}


def read_refs(index: str | Path | dict, storage_options: dict | None = None) -> dict[str, Any]:
    """The flat key → value reference mapping of an index (file, URL or dict)."""
    return refs_of(read_document(index, storage_options))


def refs_of(data: dict) -> dict[str, Any]:
    """The flat reference mapping of an index document (templates applied)."""
    refs = data.get("refs", data) if data.get("version") == 1 or "refs" in data else data
    templates = data.get("templates") if isinstance(data, dict) else None
    if templates:
        refs = _apply_templates(refs, templates)
    return refs


def _read_json(location: str, storage_options: dict | None) -> dict:
    try:
        if is_remote(location):
            from .sources import remote_filesystem

            fs = remote_filesystem(location.split("://", 1)[0], storage_options)
            with fs.open(location, "rb") as fh:
                return _loads(fh.read())
        with open(location.removeprefix("file://"), "rb") as fh:
            return _loads(fh.read())
    except FileNotFoundError:
        raise IndexLoadError(
            f"index {location} does not exist; build it with `activezarr index <file>`"
        ) from None
    except json.JSONDecodeError as exc:
        raise IndexLoadError(f"index {location} is not valid JSON ({exc})") from exc


@contextlib.contextmanager
def _gc_paused():
    """No cyclic garbage collection while hundreds of thousands of lists are made: they
    hold no cycles, and each collection would walk all of them again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _loads(data: bytes):
    """Parse JSON with orjson when installed (several times faster on big indexes), falling
    back to the standard library for what orjson refuses (NaN literals)."""
    with _gc_paused():
        if orjson is not None:
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                pass
        return json.loads(data)


def _apply_templates(refs: dict, templates: dict) -> dict:
    pattern = re.compile(r"{{\s*(\w+)\s*}}")

    def expand(url: str) -> str:
        return pattern.sub(lambda m: templates.get(m.group(1), m.group(0)), url)

    return {
        k: [expand(v[0]), *v[1:]] if isinstance(v, list) and v and "{{" in v[0] else v
        for k, v in refs.items()
    }


def _meta(refs: dict, key: str) -> dict | None:
    value = refs.get(key)
    if value is None:
        return None
    if isinstance(value, str | bytes):
        return json.loads(decode_inline(value) if isinstance(value, str) else value)
    return value


def list_variables(refs: dict) -> list[str]:
    """Names of every array in the reference set."""
    return sorted(k[: -len("/.zarray")] for k in refs if k.endswith("/.zarray")) + (
        [""] if ".zarray" in refs else []
    )


def variable_from_meta(
    refs: dict, name: str, source: str = "<refs>", facts: dict | None = None
) -> VariableIndex:
    """A ``VariableIndex`` from metadata alone: every chunk still marked missing.

    ``facts`` (the index's own member for this variable) tells the stored fill, the
    ``_FillValue`` attribute and no-fill apart; without it (plain kerchunk) the ``.zarray``
    fill value is the ``_FillValue`` and unwritten chunks hold it (or netCDF's default).
    """
    zarray = _meta(refs, f"{name}/.zarray")
    if zarray is None:
        known = ", ".join(list_variables(refs)) or "none"
        raise IndexLoadError(f"variable '{name}' is not in index {source} (variables: {known})")
    attrs = _meta(refs, f"{name}/.zattrs") or {}
    shape = tuple(zarray["shape"])
    chunks = tuple(zarray["chunks"]) if shape else ()
    codecs = list(zarray.get("filters") or [])
    if zarray.get("compressor"):
        codecs.append(zarray["compressor"])
    grid = chunk_grid(shape, chunks)
    n = int(np.prod(grid, dtype=np.int64))
    return VariableIndex(
        name=name,
        source=source,
        shape=shape,
        chunks=chunks,
        dtype=np.dtype(zarray["dtype"]),
        codecs=codecs,
        attrs=attrs,
        dims=tuple(attrs.get("_ARRAY_DIMENSIONS") or ()),
        urls=[],
        url_ids=np.full(n, MISSING, dtype=np.int32),
        offsets=np.zeros(n, dtype=np.uint64),
        sizes=np.zeros(n, dtype=np.uint64),
        **fill_fields(zarray.get("fill_value"), facts),
    )


def fill_fields(zarr_fill: Any, facts: dict | None) -> dict[str, Any]:
    """``fill_value`` / ``fill_attr`` / ``no_fill`` of a variable, from our facts if any."""
    if not isinstance(facts, dict) or "fill" not in facts:
        return {"fill_value": zarr_fill, "fill_attr": zarr_fill, "no_fill": False}
    return {
        "fill_value": facts["fill"],
        "fill_attr": facts.get("_FillValue"),
        "no_fill": bool(facts.get("no_fill", False)),
    }


def load_variable(
    refs: dict, name: str, source: str = "<refs>", facts: dict | None = None
) -> VariableIndex:
    """Load the metadata and chunk table of variable ``name``."""
    var = variable_from_meta(refs, name, source, facts)
    zarray = _meta(refs, f"{name}/.zarray")
    var.urls, var.url_ids, var.offsets, var.sizes, var.inline = _chunk_table(
        refs, name, var.shape, var.chunks, zarray.get("dimension_separator") or "."
    )
    return var


def _chunk_table(refs: dict, name: str, shape: tuple, chunks: tuple, sep: str):
    """Vectorised: chunk keys are parsed as one string, references as flat lists."""
    grid = chunk_grid(shape, chunks)
    n = int(np.prod(grid, dtype=np.int64))
    url_ids = np.full(n, MISSING, dtype=np.int32)
    offsets = np.zeros(n, dtype=np.uint64)
    sizes = np.zeros(n, dtype=np.uint64)
    inline: dict[int, bytes] = {}
    prefix = f"{name}/" if name else ""
    cut = len(prefix)
    ndim = max(len(grid), 1)
    with _gc_paused():
        fast = _plain_chunk_table(refs, prefix, grid, sep) if name else None
    if fast is not None:
        return fast
    keys = [
        k
        for k in refs
        if k.startswith(prefix)
        and k[cut : cut + 1] not in (".", "")
        and (sep == "/" or "/" not in k[cut:])
    ]
    if not keys:
        return [], url_ids, offsets, sizes, inline
    text = " ".join(k[cut:] for k in keys).replace(sep, " ")
    try:
        coords = np.array(text.split(), dtype=np.int64).reshape(len(keys), ndim)
    except ValueError:
        keys = [k for k in keys if _is_chunk_suffix(k[cut:], sep, ndim)]
        text = " ".join(k[cut:] for k in keys).replace(sep, " ")
        coords = np.array(text.split(), dtype=np.int64).reshape(len(keys), ndim)
    inside = np.all((coords >= 0) & (coords < np.array(grid or (1,))), axis=1)
    flat = np.ravel_multi_index(tuple(coords.T), grid) if grid else np.zeros(len(keys), np.int64)
    values = [refs[k] for k in keys]
    is_ref = np.array([isinstance(v, list) for v in values], dtype=bool) & inside
    refs_at = np.flatnonzero(is_ref)
    url_table: dict[str, int] = {}
    ids = np.array(
        [url_table.setdefault(values[i][0], len(url_table)) for i in refs_at.tolist()],
        dtype=np.int32,
    )
    url_ids[flat[refs_at]] = ids
    whole = [i for i in refs_at.tolist() if len(values[i]) < 3]
    if whole:  # [url] alone: the whole file (size 0 = to the end)
        for i in whole:
            values[i] = [values[i][0], 0, 0]
    offsets[flat[refs_at]] = np.array([values[i][1] for i in refs_at.tolist()], dtype=np.uint64)
    sizes[flat[refs_at]] = np.array([values[i][2] for i in refs_at.tolist()], dtype=np.uint64)
    for i in np.flatnonzero(~is_ref & inside).tolist():
        value = values[i]
        url_ids[flat[i]] = INLINE
        inline[int(flat[i])] = decode_inline(value) if isinstance(value, str) else bytes(value)
    return list(url_table), url_ids, offsets, sizes, inline


def _plain_chunk_table(refs: dict, prefix: str, grid: tuple, sep: str):
    """``_chunk_table`` for the common index: every chunk key of the variable is
    ``<name>/<i>.<j>...`` and every value a ``[url, offset, size]`` list. Per-chunk work is
    done by C loops (``map``, ``zip``, ``str.split``), which is what makes 250,000 chunks
    load in a fraction of a second; anything else returns None (the general path)."""
    keys = [k for k in refs if k.startswith(prefix)]
    for meta in (".zarray", ".zattrs", ".zgroup", ".zmetadata"):
        if prefix + meta in refs:
            keys.remove(prefix + meta)
    if not keys or not grid:
        return None
    getter = operator.itemgetter(*keys)
    values = getter(refs) if len(keys) > 1 else (getter(refs),)
    if set(map(type, values)) != {list} or set(map(len, values)) != {3}:
        return None
    cut = len(prefix)
    text = " ".join(keys)[cut:].replace(" " + prefix, " ").replace(sep, " ")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # text that is not all numbers
        coords = np.fromstring(text, dtype=np.int64, sep=" ")
    if coords.size != len(keys) * len(grid) or not text.replace(" ", "").isdigit():
        return None
    coords = coords.reshape(len(keys), len(grid))
    if not np.all((coords >= 0) & (coords < np.array(grid))):
        return None
    urls, offsets, sizes = zip(*values, strict=True)
    table = {u: i for i, u in enumerate(dict.fromkeys(urls))}
    flat = np.ravel_multi_index(tuple(coords.T), grid)
    n = int(np.prod(grid, dtype=np.int64))
    url_ids = np.full(n, MISSING, dtype=np.int32)
    all_offsets = np.zeros(n, dtype=np.uint64)
    all_sizes = np.zeros(n, dtype=np.uint64)
    if len(table) == 1:
        url_ids[flat] = 0
    else:
        url_ids[flat] = np.fromiter(map(table.__getitem__, urls), np.int32, len(urls))
    all_offsets[flat] = np.array(offsets, dtype=np.uint64)
    all_sizes[flat] = np.array(sizes, dtype=np.uint64)
    return list(table), url_ids, all_offsets, all_sizes, {}


def _is_chunk_suffix(suffix: str, sep: str, ndim: int) -> bool:
    parts = suffix.split(sep)
    return len(parts) == ndim and all(p.isdigit() for p in parts)


def open_variable(
    index: str | Path | dict, name: str, storage_options: dict | None = None
) -> VariableIndex:
    """Load variable ``name`` of an index, through the binary cache for local index files."""
    if isinstance(index, dict):
        return load_from_document(index, name, "<refs dict>")
    location = str(index)
    if is_remote(location):
        return load_from_document(read_document(location, storage_options), name, location)
    from .parquet import is_parquet, load_parquet_variable

    if is_parquet(location):
        return load_parquet_variable(location, name)
    from . import cache

    path = Path(location.removeprefix("file://"))
    found = cache.load(path, name, location) if path.exists() else None
    if found is not None:
        return found
    document = read_document(location)
    var = load_from_document(document, name, location)
    cache.save_document(path, document, var)
    return var


def load_from_document(document: dict, name: str, source: str) -> VariableIndex:
    """Variable ``name`` of a whole index document (``read_document``), facts included."""
    return load_variable(refs_of(document), name, source, variable_facts(document).get(name))


def from_table(ds, source: str) -> VariableIndex:
    """A ``VariableIndex`` straight from an indexer's ``DatasetRefs`` (no JSON round trip)."""
    zarray = ds.meta[f"{ds.name}/.zarray"]
    attrs = ds.meta.get(f"{ds.name}/.zattrs") or {}
    grid = chunk_grid(ds.shape, ds.chunks)
    n = int(np.prod(grid, dtype=np.int64))
    url_ids = np.full(n, MISSING, dtype=np.int32)
    offsets = np.zeros(n, dtype=np.uint64)
    sizes = np.zeros(n, dtype=np.uint64)
    if len(ds.offsets):
        flat = np.ravel_multi_index(tuple(ds.coords.T), grid) if grid else np.zeros(1, np.int64)
        url_ids[flat] = 0
        offsets[flat] = ds.offsets
        sizes[flat] = ds.sizes
    inline = {}
    for key, value in ds.inline.items():
        coords = [int(c) for c in key.rsplit("/", 1)[1].split(".")] if grid else [0]
        flat_id = int(np.ravel_multi_index(coords, grid)) if grid else 0
        url_ids[flat_id] = INLINE
        inline[flat_id] = decode_inline(value)
    codecs = list(zarray.get("filters") or [])
    return VariableIndex(
        name=ds.name,
        source=source,
        shape=tuple(ds.shape),
        chunks=tuple(ds.chunks),
        dtype=np.dtype(zarray["dtype"]),
        codecs=codecs,
        attrs=attrs,
        dims=tuple(attrs.get("_ARRAY_DIMENSIONS") or ()),
        urls=[ds.url] if len(ds.offsets) else [],
        url_ids=url_ids,
        offsets=offsets,
        sizes=sizes,
        inline=inline,
        **fill_fields(zarray.get("fill_value"), ds.extra),
    )
