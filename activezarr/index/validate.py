"""Everything an index claims, checked before anything is allocated or read.

An index is input from elsewhere. These checks turn every malformed claim into one
``IndexLoadError`` naming the index, the key and what is wrong:

* ``.zarray``: ``zarr_format`` 2, ``shape`` and ``chunks`` lists of non-negative / positive
  ints of the same length, a chunk grid of at most ``MAX_CHUNKS`` chunks, a chunk of at most
  ``MAX_CHUNK_BYTES`` decoded, a plain numpy ``dtype``, a ``fill_value`` of that dtype,
  ``order`` "C" ("F" is refused), ``dimension_separator`` "." or "/", and codecs that numcodecs
  knows (``filters`` then ``compressor``).
* ``.zattrs``: an object; ``_ARRAY_DIMENSIONS`` one name per dimension; ``scale_factor`` and
  ``add_offset`` numbers.
* chunk tables: offsets and lengths non-negative, inside the source (when its size is known:
  recorded in the index or found by a local ``stat``), uncompressed chunks exactly one chunk
  long, compressed ones at most ``MAX_CHUNK_BYTES``.
* local chunk URLs: absolute, no ``..``, and (symlinks resolved) under an allowed directory
  (``confine``).
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import IndexLoadError

MAX_CHUNKS = 2**25  # chunks in one variable's grid: tables cost ~20 B a chunk (670 MB here)
MAX_CHUNK_BYTES = 2**31  # one decoded chunk (contiguous variables are one chunk: 2 GiB)
MAX_NDIM = 32  # numpy's own limit
MAX_CODECS = 16
MAX_ELEMENTS = 2**62
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
DTYPE_PATTERN = re.compile(r"[<>|=]?[biufcSUVmM][0-9]{0,4}(\[[a-zA-Z0-9]+\])?")
NUMBER_ATTRS = ("scale_factor", "add_offset")


@dataclass(frozen=True)
class ArrayMeta:
    """A checked ``.zarray``: what the loader needs, in Python types."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    fill_value: Any
    codecs: list[dict]
    separator: str


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_zarray(value: Any, where: str) -> ArrayMeta:
    """Check a decoded ``.zarray`` object; ``where`` names the index and key."""
    if not isinstance(value, dict):
        raise IndexLoadError(f"{where} must be a JSON object")
    if value.get("zarr_format", 2) != 2:
        raise IndexLoadError(
            f"{where}: zarr_format {value.get('zarr_format')!r} is not 2 (kerchunk references "
            "hold zarr v2 metadata)"
        )
    shape = value.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        raise IndexLoadError(f"{where}: 'shape' must be a list of at most {MAX_NDIM} ints")
    if not all(_int(n) and n >= 0 for n in shape):
        raise IndexLoadError(f"{where}: 'shape' {shape!r:.80} must hold non-negative ints")
    chunks = value.get("chunks")
    if not shape and (chunks is None or chunks == []):
        chunks = []
    if not isinstance(chunks, list) or len(chunks) != len(shape):
        raise IndexLoadError(
            f"{where}: 'chunks' {chunks!r:.80} must be a list of {len(shape)} ints (one per "
            "dimension of 'shape')"
        )
    if not all(_int(c) and c >= 1 for c in chunks):
        raise IndexLoadError(f"{where}: 'chunks' {chunks!r:.80} must hold positive ints")
    if math.prod(shape) > MAX_ELEMENTS:
        raise IndexLoadError(f"{where}: 'shape' {shape} claims more than 2**62 elements")
    grid = [-(-n // c) if n else 0 for n, c in zip(shape, chunks, strict=True)]
    if math.prod(grid) > MAX_CHUNKS:
        raise IndexLoadError(
            f"{where}: shape {shape} in chunks {chunks} makes {math.prod(grid):,} chunks, "
            f"more than activezarr accepts ({MAX_CHUNKS:,})"
        )
    dtype = parse_dtype(value.get("dtype"), where)
    chunk_bytes = math.prod(chunks) * dtype.itemsize
    if chunk_bytes > MAX_CHUNK_BYTES:
        raise IndexLoadError(
            f"{where}: chunks {chunks} of {dtype} are {chunk_bytes:,} bytes each, more than "
            f"activezarr accepts ({MAX_CHUNK_BYTES:,})"
        )
    order = value.get("order", "C")
    if order != "C":
        raise IndexLoadError(
            f"{where}: order {order!r} is not supported (activezarr reads C-ordered chunks "
            "only; HDF5 and netCDF4 never write Fortran order)"
        )
    separator = value.get("dimension_separator") or "."
    if separator not in (".", "/"):
        raise IndexLoadError(f"{where}: dimension_separator {separator!r} is not '.' or '/'")
    codecs = parse_codecs(value.get("filters"), value.get("compressor"), where, dtype)
    fill = parse_fill_value(value.get("fill_value"), dtype, where)
    return ArrayMeta(tuple(shape), tuple(chunks), dtype, fill, codecs, separator)


def parse_dtype(value: Any, where: str) -> np.dtype:
    """A plain numpy dtype string (no structured or sub-array dtypes)."""
    if not isinstance(value, str) or not DTYPE_PATTERN.fullmatch(value):
        raise IndexLoadError(f"{where}: dtype {value!r:.60} is not a numpy dtype string")
    try:
        dtype = np.dtype(value)
    except TypeError as exc:
        raise IndexLoadError(f"{where}: dtype {value!r} is not a numpy dtype ({exc})") from None
    if dtype.itemsize == 0 or dtype.itemsize > 2**16:
        raise IndexLoadError(f"{where}: dtype {value!r} has an item size of {dtype.itemsize}")
    return dtype


def parse_codecs(
    filters: Any, compressor: Any, where: str, dtype: np.dtype | None = None
) -> list[dict]:
    """numcodecs configs in encode order; each must be one numcodecs knows, with parameters
    in range (``CODEC_RANGES``) and, for shuffle, the item size of the data it shuffles."""
    if filters is not None and not isinstance(filters, list):
        raise IndexLoadError(f"{where}: 'filters' must be a list of codec configs or null")
    codecs = list(filters or []) + ([compressor] if compressor is not None else [])
    if len(codecs) > MAX_CODECS:
        raise IndexLoadError(f"{where}: {len(codecs)} codecs; at most {MAX_CODECS} are accepted")
    itemsize = dtype.itemsize if dtype is not None else None
    for config in codecs:
        check_codec(config, where)
        check_parameters(config, where)
        if "astype" in config:  # the data after this filter has another item size
            try:
                itemsize = np.dtype(config["astype"]).itemsize
            except TypeError:
                itemsize = None
        elif config["id"] == "shuffle" and itemsize and config.get("elementsize", 4) != itemsize:
            raise IndexLoadError(
                f"{where}: shuffle elementsize {config.get('elementsize')!r} does not match the "
                f"{itemsize}-byte items it shuffles (it would unshuffle into wrong values)"
            )
    return codecs


# (codec id, parameter) -> inclusive range of the integers the codec accepts
CODEC_RANGES = {
    ("zlib", "level"): (-1, 9),
    ("gzip", "level"): (-1, 9),
    ("bz2", "level"): (1, 9),
    ("lzma", "preset"): (0, 9),
    ("zstd", "level"): (-131072, 22),
    ("blosc", "clevel"): (0, 9),
    ("blosc", "shuffle"): (-1, 2),
    ("blosc", "blocksize"): (0, 2**31 - 1),
    ("blosc", "typesize"): (1, 255),
    ("shuffle", "elementsize"): (1, 2**16),
    ("lz4", "acceleration"): (1, 2**16),
}
BLOSC_NAMES = ("blosclz", "lz4", "lz4hc", "zlib", "zstd", "snappy")


def check_parameters(config: dict, where: str) -> None:
    """Numeric codec parameters are ints in the codec's range; blosc's cname is one it has."""
    cid = config["id"]
    for (codec, name), (lo, hi) in CODEC_RANGES.items():
        if codec != cid or name not in config or config[name] is None:
            continue
        value = config[name]
        if not _int(value) or not lo <= value <= hi:
            raise IndexLoadError(
                f"{where}: codec {cid} {name}={value!r:.40} is out of range (an int from {lo} "
                f"to {hi})"
            )
    if cid == "blosc" and config.get("cname", "lz4") not in BLOSC_NAMES:
        raise IndexLoadError(f"{where}: codec blosc cname={config.get('cname')!r:.40} is unknown")


def check_codec(config: Any, where: str) -> None:
    """``config`` builds a numcodecs codec (unknown ids and bad parameters are refused)."""
    import numcodecs

    if not isinstance(config, dict) or not isinstance(config.get("id"), str):
        raise IndexLoadError(f"{where}: codec {config!r:.80} is not a config with an 'id'")
    try:
        numcodecs.get_codec(dict(config))
    except Exception as exc:  # noqa: BLE001 - any failure means the config cannot be used
        raise IndexLoadError(
            f"{where}: codec {config!r:.80} cannot be used ({type(exc).__name__}: {exc})"
        ) from None


def parse_fill_value(value: Any, dtype: np.dtype, where: str) -> Any:
    """The fill value, checked against the dtype (numbers, zarr's non-finite strings, null)."""
    if value is None or dtype.kind not in "biuf":
        return value
    ok = (
        (dtype.kind == "b" and isinstance(value, bool))
        or (dtype.kind in "iu" and _int(value))
        or (dtype.kind == "f" and (_is_number(value) and not isinstance(value, list)))
    )
    if not ok or isinstance(value, bool) != (dtype.kind == "b"):
        raise IndexLoadError(f"{where}: fill_value {value!r:.60} is not a value of {dtype}")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not info.min <= value <= info.max:
            raise IndexLoadError(f"{where}: fill_value {value} does not fit {dtype}")
    return value


def parse_zattrs(
    value: Any, ndim: int, where: str, types: dict[str, str] | None = None
) -> dict[str, Any]:
    """Check a decoded ``.zattrs`` object of an array with ``ndim`` dimensions.

    Without a recorded type, ``scale_factor`` and ``add_offset`` must be numbers (a string
    there is more likely damage than a file's string attribute); attributes with a recorded
    type are checked against it instead (``member.typed_attrs``).
    """
    if not isinstance(value, dict):
        raise IndexLoadError(f"{where} must be a JSON object")
    dims = value.get("_ARRAY_DIMENSIONS")
    if dims is not None and (
        not isinstance(dims, list)
        or len(dims) != ndim
        or not all(isinstance(d, str) and d for d in dims)
    ):
        raise IndexLoadError(
            f"{where}: _ARRAY_DIMENSIONS {dims!r:.80} must be {ndim} dimension names"
        )
    for key in NUMBER_ATTRS:
        if key in value and key not in (types or {}) and not _is_number(value[key]):
            raise IndexLoadError(
                f"{where}: {key} {value[key]!r:.60} is not a number (CF packing needs one)"
            )
    return value


def _is_number(value: Any) -> bool:
    if isinstance(value, np.generic | np.ndarray):
        return np.asarray(value).dtype.kind in "iuf" and np.size(value) >= 1
    if isinstance(value, list):
        return len(value) >= 1 and all(_is_number(v) for v in value)
    return (isinstance(value, int | float) and not isinstance(value, bool)) or (
        isinstance(value, str) and value in NON_FINITE
    )


def check_table(var, where: str, source_sizes: dict[str, int]) -> None:
    """Offsets and lengths of ``var`` (a ``VariableIndex``) against each other and the sources.

    ``source_sizes`` maps a URL to its size in bytes where known. Lengths of 0 mean "to the end
    of the file" (a ``[url]`` reference) and are allowed only where the size is known.
    """
    from .load import INLINE

    ids = var.url_ids
    if var.inline and not var.codecs:
        chunk_bytes = math.prod(var.chunks) * var.dtype.itemsize
        bad = next((k for k, v in var.inline.items() if len(v) != chunk_bytes), None)
        if bad is not None:
            raise IndexLoadError(
                f"{where}: inline chunk {bad} holds {len(var.inline[bad]):,} bytes; an "
                f"uncompressed chunk of {var.chunks} {var.dtype} is {chunk_bytes:,} bytes"
            )
    if len(var.urls) == 1 and _passes_plain(var, source_sizes.get(var.urls[0])):
        return  # every check below holds; found with a few reductions and no copies
    if ids.size and (ids.min() < INLINE or ids.max() >= len(var.urls)):
        raise IndexLoadError(f"{where}: chunk table names URLs the index does not list")
    stored = ids >= 0
    if not stored.any():
        return
    offsets = var.offsets[stored].astype(np.uint64)
    sizes = var.sizes[stored].astype(np.uint64)
    if (offsets >= 2**62).any() or (sizes >= 2**62).any():
        raise IndexLoadError(f"{where}: a chunk offset or length is beyond 2**62 bytes")
    chunk_bytes = math.prod(var.chunks) * var.dtype.itemsize
    limit = chunk_bytes if not var.codecs else MAX_CHUNK_BYTES
    big = sizes > limit
    if not var.codecs:
        # fletcher32 alone adds 4 bytes; any other codec means anything up to the cap
        big |= (sizes != chunk_bytes) & (sizes != 0)
    if big.any():
        k = int(np.flatnonzero(stored)[np.argmax(big)])
        raise IndexLoadError(
            f"{where}: chunk {k} claims {int(var.sizes[k]):,} bytes; a chunk of {var.chunks} "
            f"{var.dtype} is {chunk_bytes:,} bytes"
            + (" uncompressed" if not var.codecs else f" (at most {MAX_CHUNK_BYTES:,} accepted)")
        )
    for i, url in enumerate(var.urls):
        size = source_sizes.get(url)
        mine = ids[stored] == i
        if size is None:
            if (sizes[mine] == 0).any():
                raise IndexLoadError(
                    f"{where}: a whole-file reference [{url!r}] has no known size; give "
                    "[url, offset, length]"
                )
            continue
        ends = offsets[mine] + sizes[mine]
        if (ends > np.uint64(size)).any():
            k = int(np.argmax(ends > np.uint64(size)))
            raise IndexLoadError(
                f"{where}: a chunk at offset {int(offsets[mine][k]):,} with length "
                f"{int(sizes[mine][k]):,} ends beyond {url} ({size:,} bytes)"
            )


def check_tables(variables: list[tuple[Any, str]]) -> None:
    """``check_table`` of many ``(VariableIndex, where)`` whose ``source_sizes`` are set:
    one pass over all their tables when each is stored whole in its one source (the usual
    archive of small files), else (or when that pass fails) each on its own."""
    if not _pass_together([v for v, _ in variables]):
        for var, where in variables:
            check_table(var, where, var.source_sizes)


def _pass_together(variables: list) -> bool:
    """True when every table passes ``_passes_plain``, checked with a few numpy calls on all
    tables at once; False says only "not proven here"."""
    kinds = {(math.prod(v.chunks) * v.dtype.itemsize, bool(v.codecs)) for v in variables}
    if len(kinds) != 1 or any(len(v.urls) != 1 for v in variables):
        return False
    ((chunk_bytes, coded),) = kinds
    limits = [v.source_sizes.get(v.urls[0]) for v in variables]
    if None in limits or not all(v.url_ids.size for v in variables):
        return False
    ids = np.concatenate([v.url_ids for v in variables])
    offsets = np.concatenate([v.offsets for v in variables])
    sizes = np.concatenate([v.sizes for v in variables])
    ends = np.repeat(np.array(limits, dtype=np.uint64), [v.url_ids.size for v in variables])
    lo, hi = int(sizes.min()), int(sizes.max())
    if ids.min() != 0 or ids.max() != 0 or lo == 0 or int(offsets.max()) >= 2**62:
        return False
    if coded and hi > MAX_CHUNK_BYTES or not coded and (lo != chunk_bytes or hi != chunk_bytes):
        return False
    return bool(np.all(offsets + sizes <= ends))


def _passes_plain(var, size: int | None) -> bool:
    """True when a table whose chunks are all stored in its one source passes ``check_table``
    (the common case: a 250k-chunk table is checked in about a millisecond). False says only
    "not proven here": ``check_table`` then runs every check and names what fails."""
    ids, offsets, sizes = var.url_ids, var.offsets, var.sizes
    if not ids.size or ids.min() != 0 or ids.max() != 0:
        return False
    lo, hi = int(sizes.min()), int(sizes.max())
    if int(offsets.max()) >= 2**62 or hi >= 2**62 or lo == 0:
        return False
    chunk_bytes = math.prod(var.chunks) * var.dtype.itemsize
    if not var.codecs:
        if lo != chunk_bytes or hi != chunk_bytes:
            return False
        return size is None or int(offsets.max()) + chunk_bytes <= size
    if hi > MAX_CHUNK_BYTES:
        return False
    return size is None or int((offsets + sizes).max()) <= size


def normalize_local(url: str, where: str) -> str:
    """The absolute path a local chunk URL names; relative paths and ``..`` are refused."""
    path = url.removeprefix("file://")
    if "\x00" in path or not path.startswith("/"):
        raise IndexLoadError(
            f"{where}: chunk URL {url!r:.120} is not an absolute local path or file:// URL"
        )
    if ".." in path.split("/"):
        raise IndexLoadError(f"{where}: chunk URL {url!r:.120} contains '..'; refused")
    return path


def confine(
    urls: list[str], roots: list[str], where: str, realpaths: dict[str, str] | None = None
) -> dict[str, int]:
    """Refuse local ``urls`` outside ``roots`` (symlinks resolved); returns their sizes.

    A URL that does not exist is allowed through (reading it fails later with the file named):
    only existing files can leak. ``realpaths`` memoises resolved directories across calls
    (many indexes of one archive share them); a URL's own last component is still checked.
    """
    memo = {} if realpaths is None else realpaths
    real_roots = list(dict.fromkeys(_resolved(r, memo) for r in roots))
    sizes: dict[str, int] = {}
    for url in urls:
        if "://" in url and not url.startswith("file://"):
            continue
        path = normalize_local(url, where)
        real, st = _resolved_file(path, memo)
        if not any(real == r or real.startswith(r.rstrip("/") + "/") for r in real_roots):
            allowed = ", ".join(real_roots) or "none"
            what = (
                f"{where}: chunk URL {url!r:.120} lies outside the directories this index may "
                f"read ({allowed}); if you trust the index,"
            )
            raise IndexLoadError(
                f"{what} pass allow_paths=[DIR]",
                cli=f"{what} add --allow-path {os.path.dirname(real)}",
            )
        if st is not None:
            sizes[url] = st.st_size
    return sizes


def _resolved(path: str, memo: dict[str, str]) -> str:
    found = memo.get(path)
    if found is None:
        found = memo[path] = os.path.realpath(path)
    return found


def _resolved_file(path: str, memo: dict[str, str]) -> tuple[str, os.stat_result | None]:
    """``realpath(path)`` and the file's stat (None when missing): a path whose last
    component is a plain file is its resolved directory plus its name."""
    head, name = os.path.split(path)
    try:
        st = os.lstat(path)
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode) and name not in ("", ".", ".."):
        return os.path.join(_resolved(head, memo), name), st
    real = os.path.realpath(path)
    try:
        return real, os.stat(real)
    except OSError:
        return real, None
