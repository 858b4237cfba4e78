"""Persisted indexes to ``VariableIndex``: zarr metadata plus compact chunk tables.

A kerchunk reference set (JSON v0/v1 file or URL, or a dict) loads into, for one variable,
three flat numpy arrays over the C-ordered chunk grid (url id, byte offset, byte length) and a
small table of URLs. Chunks absent from the index have url id ``MISSING`` (they read as the
fill value); small inline chunks have url id ``INLINE`` and their bytes in ``inline``.
"""

from __future__ import annotations

import binascii
import contextlib
import gc
import json
import math
import operator
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexLoadError, UnsupportedVariableError
from . import scan
from .member import Member, parse_member, typed_attrs
from .refs import decode_inline, loads
from .scan import PAD, ChunkRefs, check_duplicates, parse_small, split
from .sources import is_remote, local_path
from .validate import (
    ArrayMeta,
    check_table,
    check_tables,
    confine,
    normalize_local,
    parse_fill_value,
    parse_zarray,
    parse_zattrs,
)

MISSING = -1
INLINE = -2
MAX_INDEX_BYTES = 2**30  # a JSON index beyond 1 GiB (~9M references) must be parquet
MAX_GEN_REFS = 10_000_000
INLINE_SLACK = 4096  # bytes an inline chunk may exceed its chunk (a codec's header, a checksum)


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
    fill_value: Any
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
    # a record variable shorter than its unlimited dimension(s): the dataset's own extent and
    # which axes are unlimited (``reduction.records``); None when it has the shape it reports
    extent: tuple[int, ...] | None = None
    unlimited: tuple[bool, ...] | None = None
    attribute_types: dict[str, str] = field(default_factory=dict)  # attr -> recorded type
    sources: dict[str, dict] = field(default_factory=dict)  # recorded fingerprints of urls
    source_sizes: dict[str, int] = field(default_factory=dict)  # known sizes, for lazy rows
    # source records taken by ``vouch_sources`` while loading: the freshness check that follows
    # in the same open uses them (once) instead of taking them again; copies start without
    taken: dict[str, dict] = field(default_factory=dict, init=False, repr=False, compare=False)
    # Fills rows of the table on demand (parquet indexes); None once the table is complete.
    loader: Callable[[np.ndarray | None], None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.extent is None:
            return
        fits = len(self.extent) == len(self.shape) and all(
            e == n or (u and e < n)
            for e, n, u in zip(self.extent, self.shape, self.unlimited, strict=True)
        )
        if not fits:
            raise IndexLoadError(
                f"{self.source}: variable '{self.name}': activezarr extent {list(self.extent)} "
                f"does not fit its shape {list(self.shape)}"
            )

    def load_chunks(self, flat: np.ndarray | None = None) -> None:
        """Make the chunk table hold the rows of the flat chunk ids ``flat`` (all when None).

        A no-op for indexes loaded whole (JSON, the binary cache); parquet indexes read the
        row groups that hold these chunks the first time they are asked for.
        """
        if self.loader is not None:
            self.loader(flat)

    @property
    def grid(self) -> tuple[int, ...]:
        return chunk_grid(self.shape, self.chunks)

    @property
    def n_chunks(self) -> int:
        return int(np.prod(self.grid, dtype=np.int64))

    @property
    def n_stored(self) -> int:
        self.load_chunks()
        return int(np.count_nonzero(self.url_ids != MISSING))

    @property
    def stored_bytes(self) -> int:
        self.load_chunks()
        return int(self.sizes[self.url_ids >= 0].sum())


@dataclass
class IndexDocument:
    """A parsed index: its flat references, the ``activezarr`` member and where it came from.

    ``kind`` is "file" (a local index file), "remote" (an index URL) or "dict" (a reference
    dict built by the caller).
    """

    location: str
    refs: dict[str, Any]
    member: Member
    kind: str
    chunks: ChunkRefs | None = None  # plain references kept as arrays (``read_index(tables=True)``)

    def roots(
        self, allow_paths: Sequence[str | os.PathLike] = (), urls: Sequence[str] = ()
    ) -> list[str] | None:
        """Directories local chunk URLs may lie under (None: not confined, see ``confine``).

        The allowed paths, plus the directories of the sources the index records (not for an
        index fetched from a URL: it may read local files only under ``allow_paths``); an index
        that records none (plain kerchunk, parquet) may read under its own directory and those
        of the sources the catalog beside it lists; a dict without recorded sources is the
        caller's own and is not confined unless ``allow_paths`` is given.
        """
        roots = [os.path.abspath(os.fspath(p)) for p in allow_paths]
        if self.kind == "remote":
            return roots  # an index fetched from a server names no local file of its own
        recorded = [u for u in self.member.sources if not is_remote(u)]
        roots += [os.path.dirname(local_path(u)) for u in recorded]
        if self.member.sources:
            return roots
        if self.kind == "file":
            index = os.path.abspath(local_path(self.location))
            return roots + [os.path.dirname(index)] + catalog_source_dirs(index, list(urls))
        if self.kind == "dict" and not roots:
            return None
        return roots


def catalog_source_dirs(index: str, urls: list[str]) -> list[str]:
    """Directories of those of ``urls`` that the catalog beside ``index`` records for it."""
    from .freshness import _recorded

    try:
        recorded, _ = _recorded(Path(index).parent, Path(index).name, list(urls))
    except (OSError, ValueError, KeyError, TypeError):  # no readable catalog: none recorded
        return []
    return [os.path.dirname(local_path(u)) for u in recorded if not is_remote(u)]


def read_index(
    index: str | os.PathLike | dict,
    storage_options: dict | None = None,
    policy=None,
    tables: bool = False,
) -> IndexDocument:
    """Parse an index (file, URL or dict) into an ``IndexDocument``, checking its structure.

    Version 1 ``templates`` are substituted into URLs and ``gen`` entries expanded (see
    ``expand_gen``); anything malformed raises ``IndexLoadError``. ``tables``: the plain
    chunk references of a JSON text stay arrays (``document.chunks``), out of ``refs``.
    """
    chunks = None
    if isinstance(index, dict):
        location, kind, data = "<refs dict>", "dict", index
    else:
        location = os.fspath(index)
        kind = "remote" if is_remote(location) else "file"
        data, chunks = _read_json(location, storage_options, policy)
        if chunks is not None and not tables:
            with _gc_paused():
                data, chunks = _with_chunks(data, chunks), None
    if not isinstance(data, dict):
        raise IndexLoadError(f"index {location} is not a JSON object of references")
    version = data.get("version")
    if version is None and not isinstance(data.get("refs"), dict):
        # version 0: the object is the references
        return IndexDocument(location, _checked_refs(data, location), Member(), kind, chunks)
    if version not in (1, None) or isinstance(version, bool):
        raise IndexLoadError(
            f"index {location} has version {version!r:.40}; activezarr reads kerchunk "
            "reference sets of version 0 and 1"
        )
    refs = data.get("refs")
    if not isinstance(refs, dict):
        raise IndexLoadError(f"index {location}: 'refs' must be an object of references")
    member = parse_member(data.get("activezarr"), f"index {location}")
    templates = data.get("templates") or {}
    if not isinstance(templates, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in templates.items()
    ):
        raise IndexLoadError(f"index {location}: 'templates' must map names to strings")
    if data.get("gen"):
        refs = {**refs, **expand_gen(data["gen"], templates, f"index {location}")}
    if templates:
        refs = _apply_templates(refs, templates, location)
    return IndexDocument(location, _checked_refs(refs, location), member, kind, chunks)


def _with_chunks(data: dict, chunks: ChunkRefs) -> dict:
    """The parsed rest of a document with its plain references put back, in text order
    (each parsed reference goes in before the plain ones that follow it in the text)."""
    version0 = data.get("version") is None and not isinstance(data.get("refs"), dict)
    refs = data if version0 else data["refs"]
    ids = chunks.url_ids.tolist()
    plain = zip(map(chunks.urls.__getitem__, ids), chunks.offsets.tolist(), chunks.sizes.tolist())
    keys, values = chunks.keys(), list(map(list, plain))
    merged: dict[str, Any] = {}
    at = 0
    cuts = np.searchsorted(chunks.key_at, chunks.member_at).tolist()
    for (key, value), cut in zip(refs.items(), cuts, strict=True):
        merged.update(zip(keys[at:cut], values[at:cut]))
        merged[key], at = value, cut
    merged.update(zip(keys[at:], values[at:]))
    return merged if refs is data else {**data, "refs": merged}


def _checked_refs(refs: dict, location: str) -> dict:
    bad = next((k for k in refs if not isinstance(k, str) or not k), None)
    if bad is not None:
        raise IndexLoadError(f"index {location}: reference key {bad!r:.60} is not a name")
    return refs


def read_refs(index: str | Path | dict, storage_options: dict | None = None) -> dict[str, Any]:
    """The flat key → value reference mapping of an index (file, URL or dict)."""
    return read_index(index, storage_options).refs


def read_document(index: str | Path | dict, storage_options: dict | None = None) -> IndexDocument:
    """Alias of ``read_index`` (the parsed document: refs and the activezarr member)."""
    return read_index(index, storage_options)


def refs_of(document: IndexDocument) -> dict[str, Any]:
    """The flat reference mapping of a parsed document."""
    return document.refs


def variable_facts(document: Any) -> dict[str, dict]:
    """Per-variable fill facts of an index's member: a parsed document, or a raw JSON object
    holding an ``activezarr`` key (a parquet index's ``.zmetadata``); {} for plain kerchunk."""
    if isinstance(document, IndexDocument):
        return document.member.variables
    if isinstance(document, dict):
        return parse_member(document.get("activezarr"), "index metadata").variables
    return {}


def load_from_document(document: IndexDocument, name: str, source: str = "") -> VariableIndex:
    """Variable ``name`` of a parsed document (``read_document``), facts included."""
    return load_variable(document, name)


def _read_remote(location: str, storage_options: dict | None, policy=None) -> bytes:
    """The bytes of a remote index (at most ``MAX_INDEX_BYTES + 1``), each read retried
    (``policy``: a ``network.ReadPolicy``, the timeouts and retries given to ``Active``)."""
    from .network import file_info, read_range
    from .sources import remote_failure, remote_filesystem

    fs = remote_filesystem(location.split("://", 1)[0], storage_options, policy)
    try:
        size = file_info(fs, location, policy).get("size")
        end = MAX_INDEX_BYTES + 1 if not isinstance(size, int) else min(size, MAX_INDEX_BYTES + 1)
        return read_range(fs, location, 0, end, policy, exact=False) if end else b""
    except Exception as exc:
        if isinstance(exc, FileNotFoundError) and not isinstance(exc.__cause__, Exception):
            raise
        why = remote_failure(location, exc, storage_options)
        raise IndexLoadError(f"index {why}") from exc


def _not_json(location: str, head: bytes, exc: Exception) -> str:
    """Why ``location`` is no index: a data file given in its place, or broken JSON."""
    from .sources import HDF5_SIGNATURE, NETCDF3_SIGNATURES

    if head.startswith(HDF5_SIGNATURE):
        return (
            f"{location} is a netCDF4/HDF5 data file, not an index: index it first "
            "(activezarr.build_index(path), or `activezarr index FILE`) and open the index "
            "it writes"
        )
    if head.startswith(NETCDF3_SIGNATURES):
        return (
            f"{location} is a netCDF3 (classic) data file, not an index; activezarr indexes "
            "netCDF4/HDF5 files: convert it with `nccopy -k netCDF4 in.nc out.nc`, then index it"
        )
    return f"index {location} is not valid JSON ({exc})"


def _read_json(
    location: str, storage_options: dict | None, policy=None
) -> tuple[Any, ChunkRefs | None]:
    """The parsed document and its plain references as arrays (None: all in the document)."""
    try:
        if is_remote(location):
            raw = _read_remote(location, storage_options, policy)
            buf = np.zeros(len(raw) + PAD, np.uint8)
            buf[: len(raw)] = np.frombuffer(raw, np.uint8)
            n = len(raw)
        else:
            buf, n = _read_local(local_path(location))
        if n > MAX_INDEX_BYTES:
            raise IndexLoadError(
                f"index {location} is larger than {MAX_INDEX_BYTES:,} bytes; write large "
                "indexes as parquet (`activezarr index --format parquet`)"
            )
        return _parse(buf, n, location)
    except IndexLoadError:
        raise
    except FileNotFoundError:
        raise IndexLoadError(
            f"index {location} does not exist; build it with `activezarr index <file>`"
        ) from None
    except IsADirectoryError:
        raise IndexLoadError(f"index {location} is a directory, not an index file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexLoadError(_not_json(location, bytes(buf[:8]), exc)) from None
    except (RecursionError, ValueError, MemoryError) as exc:
        raise IndexLoadError(
            f"index {location} cannot be parsed ({type(exc).__name__}: {exc})"
        ) from None
    except OSError as exc:
        raise IndexLoadError(f"index {location} cannot be read ({exc})") from exc


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


def _read_local(path: str) -> tuple[np.ndarray, int]:
    """The bytes of a local index (at most ``MAX_INDEX_BYTES + 1``) in a buffer padded for
    ``scan.split``, and how many there are."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_INDEX_BYTES:
            return np.zeros(0, np.uint8), size
        if not size:  # a pipe or a special file: what it holds, up to the limit
            raw = fh.read(MAX_INDEX_BYTES + 1)
            buf = np.zeros(len(raw) + PAD, np.uint8)
            buf[: len(raw)] = np.frombuffer(raw, np.uint8)
            return buf, len(raw)
        buf = np.zeros(size + PAD, np.uint8)
        view, n = memoryview(buf), 0
        while n < size and (got := fh.readinto(view[n:size])):
            n += got
        return buf, n


def _parse(buf: np.ndarray, n: int, location: str) -> tuple[Any, ChunkRefs | None]:
    """``scan.split`` of an index's text, else the whole text parsed (``refs.loads``, orjson
    when installed) and checked for keys that appear twice; the cyclic GC paused."""
    if n < scan.SMALL:
        return parse_small(buf[:n].tobytes(), location), None
    with _gc_paused():
        found = split(buf, n, location)
        if found is not None:
            return found.data, found.chunks
        data = loads(memoryview(buf)[:n])
        check_duplicates(buf[:n], data, location)
        return data, None


TEMPLATE = re.compile(r"{{\s*(\w+)\s*}}")


def _apply_templates(refs: dict, templates: dict, location: str) -> dict:
    """``{{name}}`` in reference URLs replaced by ``templates[name]`` (fsspec's simple form)."""

    def expand(key: str, url: Any) -> Any:
        if not isinstance(url, str) or "{{" not in url:
            return url
        out = TEMPLATE.sub(lambda m: templates.get(m.group(1), m.group(0)), url)
        if "{{" in out:
            raise IndexLoadError(
                f"index {location}: reference {key!r}: URL {url!r:.80} uses a template that "
                "is not defined or not a plain {{name}}"
            )
        return out

    return {
        k: [expand(k, v[0]), *v[1:]] if isinstance(v, list) and v else v for k, v in refs.items()
    }


def expand_gen(gen: Any, templates: dict[str, str], where: str) -> dict[str, list]:
    """The references a version 1 ``gen`` list describes (see ``generators.py``)."""
    from .generators import expand

    return expand(gen, templates, where, MAX_GEN_REFS)


def _meta(refs: dict, key: str, where: str) -> Any:
    """A decoded metadata value (JSON text, inline bytes or an object), or None if absent."""
    value = refs.get(key)
    if value is None or isinstance(value, dict):
        return value
    try:
        if isinstance(value, str):
            value = decode_inline(value)
        if isinstance(value, bytes):
            return json.loads(value, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError, binascii.Error) as exc:
        raise IndexLoadError(f"{where}: {key} is not valid JSON ({exc})") from None
    raise IndexLoadError(f"{where}: {key} must be JSON text or an object, not {value!r:.60}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object, refused when a key repeats (readers disagree on which one counts)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key {twice!r:.40} appears twice")
    return out


def list_variables(refs: dict) -> list[str]:
    """Names of every array in the reference set."""
    return sorted(k[: -len("/.zarray")] for k in refs if k.endswith("/.zarray")) + (
        [""] if ".zarray" in refs else []
    )


def _array_meta(
    refs: dict, name: str, source: str, types: dict[str, str] | None = None
) -> tuple[ArrayMeta, dict[str, Any]]:
    key = f"{name}/.zarray" if name else ".zarray"
    zarray = _meta(refs, key, f"index {source}")
    if zarray is None:
        known = ", ".join(list_variables(refs)) or "none"
        raise IndexLoadError(f"variable '{name}' is not in index {source} (variables: {known})")
    meta = parse_zarray(zarray, f"index {source}: {key}")
    attrs_key = f"{name}/.zattrs" if name else ".zattrs"
    attrs = _meta(refs, attrs_key, f"index {source}") or {}
    attrs = parse_zattrs(attrs, len(meta.shape), f"index {source}: {attrs_key}", types)
    return meta, attrs


def variable_from_meta(
    refs: dict,
    name: str,
    source: str = "<refs>",
    facts: dict | None = None,
    member: Member | None = None,
) -> VariableIndex:
    """A ``VariableIndex`` from metadata alone: every chunk still marked missing.

    ``member`` is the index's ``activezarr`` member (attribute types; fill facts); ``facts``,
    when given, are this variable's fill facts instead of the member's. The facts tell the
    stored fill, the ``_FillValue`` attribute and no-fill apart; without them (plain kerchunk)
    the ``.zarray`` fill value is the ``_FillValue`` and unwritten chunks hold it (or netCDF's
    default).
    """
    types = (member.attribute_types.get(name) if member else None) or {}
    if member is not None and name in member.skipped and f"{name}/.zarray" not in refs:
        raise UnsupportedVariableError(
            f"variable '{name}' is not in index {source}: it {member.skipped[name]}"
        )
    meta, attrs = _array_meta(refs, name, source, types)
    if facts is None and member is not None:
        facts = member.variables.get(name)
    where = f"index {source}: variable '{name}'"
    n = math.prod(chunk_grid(meta.shape, meta.chunks))
    return VariableIndex(
        name=name,
        source=source,
        shape=meta.shape,
        chunks=meta.chunks,
        dtype=meta.dtype,
        codecs=meta.codecs,
        attrs=typed_attrs(attrs, types, where),
        dims=tuple(attrs.get("_ARRAY_DIMENSIONS") or ()),
        urls=[],
        url_ids=np.full(n, MISSING, dtype=np.int32),
        offsets=np.zeros(n, dtype=np.uint64),
        sizes=np.zeros(n, dtype=np.uint64),
        attribute_types=dict(types),
        **fill_fields(meta.fill_value, facts, meta.dtype, where),
    )


def fill_fields(zarr_fill: Any, facts: Any, dtype: np.dtype, where: str) -> dict[str, Any]:
    """``fill_value`` / ``fill_attr`` / ``no_fill`` of a variable, from our facts if any."""
    if facts is None:
        return {"fill_value": zarr_fill, "fill_attr": zarr_fill, "no_fill": False}
    if not isinstance(facts, dict) or "fill" not in facts:
        raise IndexLoadError(f"{where}: activezarr.variables entry must hold 'fill'")
    no_fill = facts.get("no_fill", False)
    if not isinstance(no_fill, bool):
        raise IndexLoadError(f"{where}: activezarr no_fill {no_fill!r:.40} is not true/false")
    attr = facts.get("_FillValue")
    if attr is not None and not (
        isinstance(attr, int | float | str) and not isinstance(attr, bool)
    ):
        raise IndexLoadError(f"{where}: activezarr _FillValue {attr!r:.40} is not a value")
    return {
        "fill_value": parse_fill_value(facts["fill"], dtype, f"{where}: activezarr fill"),
        "fill_attr": attr,
        "no_fill": no_fill,
        **record_fields(facts, where),
    }


def record_fields(facts: dict, where: str) -> dict[str, Any]:
    """``extent`` / ``unlimited`` of a record variable shorter than its dimension (checked
    against the shape by ``VariableIndex``)."""
    extent, unlimited = facts.get("extent"), facts.get("unlimited")
    if extent is None and unlimited is None:
        return {}
    ints = isinstance(extent, list) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in extent
    )
    bools = isinstance(unlimited, list) and all(isinstance(u, bool) for u in unlimited)
    if not (ints and bools and len(extent) == len(unlimited)):
        raise IndexLoadError(
            f"{where}: activezarr extent/unlimited must be lists of lengths and true/false"
        )
    return {"extent": tuple(extent), "unlimited": tuple(unlimited)}


def load_variable(
    refs: dict | IndexDocument,
    name: str,
    source: str = "<refs>",
    check: bool = True,
    **confinement,
) -> VariableIndex:
    """Load and check the metadata and chunk table of variable ``name``.

    ``refs`` is a flat reference dict or an ``IndexDocument`` (which brings the attribute
    types, the recorded sources and the confinement of local chunk URLs); ``confinement``
    is ``allow_paths=[...]`` (see ``IndexDocument.roots``). ``check=False`` leaves the chunk
    table unchecked against the sources (the binary cache checks it when it is opened).
    """
    doc = refs if isinstance(refs, IndexDocument) else IndexDocument(source, refs, Member(), "dict")
    var = variable_from_meta(doc.refs, name, doc.location, member=doc.member)
    sep = _array_meta(doc.refs, name, doc.location)[0].separator
    chunk_bytes = math.prod(var.chunks) * var.dtype.itemsize
    max_inline = (2 if var.codecs else 1) * chunk_bytes + INLINE_SLACK
    with _gc_paused():
        table = _chunk_table(doc.refs, name, var.shape, var.chunks, sep, doc.location, max_inline)
        if doc.chunks is not None:
            table = _with_plain(table, doc.chunks, name, var.grid, sep, doc.location)
    var.urls, var.url_ids, var.offsets, var.sizes, var.inline = table
    if check:
        check_variable(var, doc, **confinement)
    return var


def check_variable(
    var: VariableIndex,
    doc: IndexDocument,
    allow_paths: Sequence[str | os.PathLike] = (),
    realpaths: dict[str, str] | None = None,
    table: bool = True,
) -> None:
    """Chunk URLs confined and the chunk table inside its sources (see ``validate.py``).

    ``realpaths``: resolved directories shared by the checks of many indexes; ``table=False``
    leaves the chunk table to the caller (``validate.check_tables`` checks many at once).
    """
    where = f"index {doc.location}: variable '{var.name}'"
    roots = doc.roots(allow_paths, var.urls)
    sizes = {}
    if roots is not None and doc.kind != "remote" and doc.member.sources:
        from .freshness import vouch_sources  # a recorded source widens roots: is it real?

        var.taken = vouch_sources(doc.location, doc.member.sources, var.urls, allow_paths)
    if roots is not None:
        sizes = confine(var.urls, roots, where, realpaths)
    else:
        for url in var.urls:
            if not is_remote(url):
                normalize_local(url, where)
    var.sources = {u: fp for u, fp in doc.member.sources.items() if u in var.urls}
    for url, fp in var.sources.items():
        if isinstance(fp.get("size"), int) and not isinstance(fp.get("size"), bool):
            sizes.setdefault(url, fp["size"])
    var.source_sizes = sizes
    if table:
        check_table(var, where, sizes)


def _chunk_table(
    refs: dict,
    name: str,
    shape: tuple,
    chunks: tuple,
    sep: str,
    location: str,
    max_inline: int | None = None,
):
    """The chunk table of one variable, every key and reference checked; inline chunks
    longer than ``max_inline`` bytes are refused before they are decoded.

    Per-chunk work runs in C loops (``itemgetter``, ``map``, ``zip``, ``str`` methods,
    ``np.fromstring``): keys are checked and parsed as one string, references as columns.
    """
    grid = chunk_grid(shape, chunks)
    n = math.prod(grid)
    url_ids = np.full(n, MISSING, dtype=np.int32)
    offsets = np.zeros(n, dtype=np.uint64)
    sizes = np.zeros(n, dtype=np.uint64)
    inline: dict[int, bytes] = {}
    prefix = f"{name}/" if name else ""
    cut = len(prefix)
    ndim = max(len(grid), 1)
    keys = [k for k in refs if k.startswith(prefix)]
    if name:
        for meta in (".zarray", ".zattrs", ".zgroup", ".zmetadata"):
            if prefix + meta in refs:
                keys.remove(prefix + meta)
    else:  # the root array: its chunk keys have no "/"; other arrays' keys do
        keys = [k for k in keys if "/" not in k and not k.startswith(".")]
    if not keys:
        return [], url_ids, offsets, sizes, inline
    where = f"index {location}: variable '{name}'"
    coords = _chunk_coords(keys, cut, sep, ndim)
    if coords is None:
        bad = next(k for k in keys if not _is_chunk_suffix(k[cut:], sep, ndim))
        raise IndexLoadError(
            f"{where}: key {bad!r:.80} is not a chunk key ({ndim} chunk numbers joined by {sep!r})"
        )
    inside = np.all(coords < np.array(grid or (1,)), axis=1)
    flat = np.zeros(len(keys), np.int64)
    if grid:
        flat[inside] = np.ravel_multi_index(tuple(coords[inside].T), grid)
    getter = operator.itemgetter(*keys)
    values = list(getter(refs)) if len(keys) > 1 else [getter(refs)]
    if set(map(type, values)) == {list}:
        is_ref = inside
    else:
        is_ref = np.fromiter(map(list.__instancecheck__, values), bool, len(values)) & inside
    refs_at = np.flatnonzero(is_ref)
    triples = values if len(refs_at) == len(values) else [values[i] for i in refs_at.tolist()]
    if set(map(len, triples)) - {3}:  # [url] alone is the whole file (size 0 = to the end)
        triples = [[t[0], 0, 0] if len(t) == 1 else t for t in triples]
        bad = next((i for i, t in zip(refs_at, triples, strict=True) if len(t) != 3), None)
        if bad is not None:
            raise IndexLoadError(
                f"{where}: {keys[bad]} is {values[bad]!r:.80}, not [url, offset, length]"
            )
    columns = list(zip(*triples, strict=True)) if triples else [(), (), ()]
    if set(map(type, columns[0])) - {str} or "" in columns[0]:
        k = next(
            i for i, t in zip(refs_at, triples, strict=True) if type(t[0]) is not str or not t[0]
        )
        raise IndexLoadError(f"{where}: {keys[k]} is {values[k]!r:.80}: the URL must be a string")
    url_table = {u: i for i, u in enumerate(dict.fromkeys(columns[0]))}
    if len(url_table) == 1:
        ids = np.zeros(len(columns[0]), np.int32)
    else:
        ids = np.fromiter(map(url_table.__getitem__, columns[0]), np.int32, len(columns[0]))
    numbers = columns[1] + columns[2]
    if set(map(type, numbers)) - {int}:
        k = next(i for i, t in zip(refs_at, triples, strict=True) if not _ints(t[1], t[2]))
        raise IndexLoadError(
            f"{where}: {keys[k]} is {values[k]!r:.80}: offset and length must be integers"
        )
    try:
        table = np.array(numbers, dtype=np.int64).reshape(2, -1)
    except OverflowError:
        table = np.full((2, 1), -1, np.int64)
    if (table < 0).any():
        raise IndexLoadError(f"{where}: a chunk offset or length is negative or beyond 2**63")
    sel = flat[refs_at]
    url_ids[sel] = ids
    offsets[sel] = table[0].astype(np.uint64)
    sizes[sel] = table[1].astype(np.uint64)
    for i in np.flatnonzero(~is_ref & inside).tolist():
        value = values[i]
        if not isinstance(value, str):
            raise IndexLoadError(
                f"{where}: {keys[i]} is {value!r:.60}, not a reference or inline data"
            )
        claimed = (len(value) - 7) * 3 // 4 if value.startswith("base64:") else len(value)
        if max_inline is not None and claimed > max_inline:
            raise IndexLoadError(
                f"{where}: {keys[i]} holds {claimed:,} bytes of inline data, more than a chunk "
                f"of this variable can ({max_inline:,})"
            )
        try:
            data = decode_inline(value)
        except (binascii.Error, ValueError) as exc:
            raise IndexLoadError(f"{where}: {keys[i]} has bad base64 data ({exc})") from None
        url_ids[flat[i]] = INLINE
        inline[int(flat[i])] = data
    return list(url_table), url_ids, offsets, sizes, inline


def _with_plain(table: tuple, chunks: ChunkRefs, name: str, grid: tuple, sep: str, location: str):
    """``table`` (``_chunk_table`` of the parsed references) with the variable's plain
    references (``chunks``) added, checked as ``_chunk_table`` checks them."""
    urls, url_ids, offsets, sizes, inline = table
    rows = chunks.rows_for(f"{name}/" if name else None)
    if not rows.size:
        return table
    found = chunks.chunk_ids(rows, len(name) + 1 if name else 0, sep, grid)
    if not isinstance(found, tuple):
        raise IndexLoadError(
            f"index {location}: variable '{name}': key {chunks.key(found)!r:.80} is not a "
            f"chunk key ({max(len(grid), 1)} chunk numbers joined by {sep!r})"
        )
    flat, inside = found
    rows, flat = rows[inside], flat[inside]
    ids = chunks.url_ids[rows]
    heads = ids[np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]]))] if ids.size else ids
    known = {u: i for i, u in enumerate(urls)}
    number = np.zeros(len(chunks.urls), np.int32)
    for u in dict.fromkeys(heads.tolist()):  # in order of first use, as _chunk_table numbers
        number[u] = known.setdefault(chunks.urls[u], len(known))
    url_ids[flat] = number[chunks.url_ids[rows]]
    offsets[flat] = chunks.offsets[rows]
    sizes[flat] = chunks.sizes[rows]
    return list(known), url_ids, offsets, sizes, inline


def _chunk_coords(keys: list[str], cut: int, sep: str, ndim: int) -> np.ndarray | None:
    """Chunk coordinates of ``keys`` (each a common prefix of ``cut`` characters, the
    variable's name, then ``ndim`` canonical integers joined by ``sep``), or None when any
    key is not one.

    Checked on the joined text and by C loops over the keys, not key by key in Python.
    """
    suffixes = list(map(operator.itemgetter(slice(cut, None)), keys))  # names may hold spaces
    body = " ".join(suffixes)
    if body.count(" ") != len(keys) - 1:
        return None  # a chunk key with a space
    if set(map(operator.methodcaller("count", sep), suffixes)) != {ndim - 1}:
        return None  # a key with another number of parts
    digits = body.replace(" ", "").replace(sep, "")
    if not (digits.isascii() and digits.isdigit()):
        return None
    numbers = " " + body.replace(sep, " ")
    if "  " in numbers or numbers.endswith(" ") or re.search(" 0[0-9]", numbers):
        return None  # an empty part ("0..1") or a leading zero ("01", not the key zarr asks)
    if re.search(r"[0-9]{19}", numbers):
        return None  # beyond int64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        coords = np.fromstring(numbers, dtype=np.int64, sep=" ")
    if coords.size != len(keys) * ndim:
        return None
    return coords.reshape(len(keys), ndim)


def _ints(*values) -> bool:
    return all(type(v) is int for v in values)


def _is_chunk_suffix(suffix: str, sep: str, ndim: int) -> bool:
    parts = suffix.split(sep)
    return len(parts) == ndim and all(re.fullmatch("0|[1-9][0-9]{0,17}", p) for p in parts)


def open_variable(
    index: str | Path | dict,
    name: str,
    storage_options: dict | None = None,
    allow_paths: Sequence[str | os.PathLike] = (),
    policy=None,
) -> VariableIndex:
    """Load variable ``name`` of an index, through the binary cache for local index files
    (``policy``: how a remote index is read, a ``network.ReadPolicy``).

    Whatever the route (JSON, parquet, the cache), the result is checked (``check_variable``).
    """
    if isinstance(index, dict):
        return load_variable(read_index(index), name, allow_paths=allow_paths)
    location = os.fspath(index)
    if is_remote(location):
        doc = read_index(location, storage_options, policy, tables=True)
        return load_variable(doc, name, allow_paths=allow_paths)
    from .parquet import is_parquet, load_parquet_variable

    if is_parquet(location):
        member = _parquet_member(location)
        if name in member.skipped:
            raise UnsupportedVariableError(
                f"variable '{name}' is not in index {location}: it {member.skipped[name]}"
            )
        var = load_parquet_variable(location, name)
        types = member.attribute_types.get(name) or {}
        var.attrs = typed_attrs(var.attrs, types, f"index {location}: variable '{name}'")
        var.attribute_types = dict(types)
        check_variable(var, IndexDocument(location, {}, member, "file"), allow_paths)
        return var
    from . import cache

    path = Path(local_path(location))
    found = cache.load(path, name, location) if path.is_file() else None
    if found is not None:
        var, member = found
        check_variable(var, IndexDocument(location, {}, member, "file"), allow_paths)
        return var
    doc = read_index(location, tables=True)
    var = load_variable(doc, name, allow_paths=allow_paths)
    cache.save_document(path, doc, var)
    return var


def open_variables(
    indexes: Sequence[str | Path],
    names: Sequence[str],
    storage_options: dict | None = None,
    allow_paths: Sequence[str | os.PathLike] = (),
) -> list[list[VariableIndex]]:
    """``open_variable`` of the variables ``names`` of many local indexes of one archive: per
    index, one checked ``VariableIndex`` per name.

    Sidecars are read with ``cache.load_many`` (each header parsed once, metadata shared
    between files checked once) and confinement resolves each directory once; a variable
    without a usable sidecar opens the usual way.
    """
    from . import cache

    if isinstance(names, str):
        raise TypeError("names is a sequence of variable names, e.g. ['tas']")
    found = cache.load_many([local_path(os.fspath(i)) for i in indexes], names)
    realpaths: dict[str, str] = {}
    out: list[list[VariableIndex]] = []
    unchecked: dict[str, list] = {name: [] for name in names}  # tables checked per variable
    for index, hits in zip(indexes, found, strict=True):
        row = []
        for name, hit in zip(names, hits, strict=True):
            if hit is None:
                row.append(open_variable(index, name, storage_options, allow_paths))
                continue
            var, member = hit
            doc = IndexDocument(os.fspath(index), {}, member, "file")
            check_variable(var, doc, allow_paths, realpaths, table=False)
            unchecked[name].append((var, f"index {doc.location}: variable '{name}'"))
            row.append(var)
        out.append(row)
    for tables in unchecked.values():
        check_tables(tables)
    return out


def _parquet_member(location: str) -> Member:
    """The ``activezarr`` member of a parquet index (a key of its ``.zmetadata``), if any."""
    from .parquet import read_metadata

    meta = read_metadata(location)
    if not isinstance(meta, dict):
        raise IndexLoadError(f"parquet index {location}: .zmetadata is not a JSON object")
    return parse_member(meta.get("activezarr"), f"parquet index {location}")


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
    types = dict(ds.attr_types)
    return VariableIndex(
        name=ds.name,
        source=source,
        shape=tuple(ds.shape),
        chunks=tuple(ds.chunks),
        dtype=np.dtype(zarray["dtype"]),
        codecs=codecs,
        attrs=typed_attrs(attrs, types, f"{source}: variable '{ds.name}'"),
        dims=tuple(attrs.get("_ARRAY_DIMENSIONS") or ()),
        urls=[ds.url] if len(ds.offsets) else [],
        url_ids=url_ids,
        offsets=offsets,
        sizes=sizes,
        inline=inline,
        attribute_types=types,
        **fill_fields(zarray.get("fill_value"), ds.extra or None, np.dtype(zarray["dtype"]), ""),
    )
