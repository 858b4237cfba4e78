"""One HDF5 dataset to zarr v2 metadata and kerchunk chunk references, via h5py.

Chunk locations come from ``DatasetID.chunk_iter`` (one pass over the chunk index; a
``get_chunk_info(i)`` loop is quadratic). HDF5 filters map to numcodecs configs listed in
pipeline order in ``filters`` with ``compressor`` null, as kerchunk writes them, so zarr's
decode (filters in reverse) undoes the HDF5 pipeline. fletcher32 maps to numcodecs'
``Fletcher32``, which checks and strips the checksum.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from ..errors import UnsupportedVariableError
from ..reduction.missing import default_fill, safe_cast
from .h5objects import H5Dataset, H5Object
from .member import type_name
from .refs import encode_fill_value, inline_bytes, json_attr, meta_text, ref_item

log = logging.getLogger(__name__)

# HDF5 / netCDF-C bookkeeping attributes that mean nothing to a zarr reader.
HIDDEN_ATTRS = frozenset(
    {
        "CLASS",
        "DIMENSION_LIST",
        "NAME",
        "REFERENCE_LIST",
        "_Netcdf4Dimid",
        "_Netcdf4Coordinates",
        "_nc3_strict",
        "_NCProperties",
        "_SuperblockVersion",
        "_IsNetcdf4",
        "_FillValue",
    }
)
NC_DIM_ONLY = b"This is a netCDF dimension but not a netCDF variable"

FILTER_NAMES = {
    4: "szip",
    5: "nbit",
    6: "scaleoffset",
    32000: "lzf",
    32004: "lz4",
    32008: "bitshuffle",
    32013: "zfp",
    32026: "blosc2",
}


@dataclass
class DatasetRefs:
    """What indexing one dataset produced: metadata, a chunk table, a catalog summary.

    Chunk references are kept as arrays (grid coordinates, byte offsets, byte sizes, all in
    one ``url``) plus a few inline chunks, and turned into kerchunk text only when written.
    """

    name: str
    url: str
    meta: dict[str, Any]  # the .zarray and .zattrs references
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    dimensions: list[str]
    coords: np.ndarray  # (n, ndim) int64 chunk grid coordinates
    offsets: np.ndarray  # (n,) uint64
    sizes: np.ndarray  # (n,) uint64
    inline: dict[str, str] = field(default_factory=dict)  # chunk key -> inline value
    attrs: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # activezarr's own facts (fills)
    growable: list[str | None] = field(default_factory=list)  # unlimited axes: their scale
    attr_types: dict[str, str] = field(default_factory=dict)  # attribute -> HDF5 type
    phony_axes: list[tuple[int, bool]] = field(default_factory=list)  # (axis, unlimited)

    def grow(self, lengths: dict[str, int]) -> None:
        """Extend unlimited axes to their netCDF dimension's length (``lengths`` by scale).

        netCDF reports a record variable with the length its unlimited dimension has reached
        through any variable, and reads records never written as fill; in HDF5 each dataset
        keeps its own extent. The records beyond it become unwritten chunks; the extent is
        recorded (``extra``) because netCDF-C reads past it its own way (``reduction.records``).
        """
        shape = [
            max(n, lengths.get(key, 0)) if key else n
            for n, key in zip(self.shape, self.growable, strict=True)
        ]
        if tuple(shape) != self.shape:  # the extent and unlimited axes: how netCDF-C reads it
            self.extra.update(extent=list(self.shape), unlimited=[bool(k) for k in self.growable])
            self.shape = tuple(shape)
            self.meta[f"{self.name}/.zarray"]["shape"] = shape

    @property
    def n_chunks(self) -> int:
        return len(self.offsets) + len(self.inline)

    @property
    def stored_bytes(self) -> int:
        return int(self.sizes.sum()) + sum(len(v) for v in self.inline.values())

    def chunk_keys(self) -> list[str]:
        if not self.chunks:
            return [f"{self.name}/0"] * len(self.offsets)
        return [f"{self.name}/" + ".".join(map(str, c)) for c in self.coords.tolist()]

    @property
    def refs(self) -> dict[str, Any]:
        """The references as a kerchunk dict (built on demand: slow for many chunks)."""
        out = {k: meta_text(v) for k, v in self.meta.items()}
        for key, off, size in zip(
            self.chunk_keys(), self.offsets.tolist(), self.sizes.tolist(), strict=True
        ):
            out[key] = [self.url, off, size]
        out.update(self.inline)
        return out

    def json_items(self) -> list[str]:
        """The references as ``"key":value`` JSON text items (fast: one f-string a chunk)."""
        items = [ref_item(k, v) for k, v in self.meta.items()]
        url = json.dumps(self.url).replace("%", "%%")
        name = json.dumps(self.name)[1:-1].replace("%", "%%")
        key = ".".join(["%d"] * len(self.chunks)) if self.chunks else "0"
        line = f'"{name}/{key}":[{url},%d,%d]'
        table = np.concatenate(
            [
                self.coords,
                self.offsets[:, None].astype(np.int64),
                self.sizes[:, None].astype(np.int64),
            ],
            axis=1,
        )
        items += [line % tuple(row) for row in table.tolist()]
        items += [f"{json.dumps(k)}:{json.dumps(v)}" for k, v in self.inline.items()]
        return items


def _filter_config(code: int, values: tuple, dtype: np.dtype, where: str) -> dict | None:
    if code == h5py.h5z.FILTER_DEFLATE:
        return {"id": "zlib", "level": int(values[0]) if values else 4}
    if code == h5py.h5z.FILTER_SHUFFLE:
        return {"id": "shuffle", "elementsize": dtype.itemsize}
    if code == h5py.h5z.FILTER_FLETCHER32:
        return {"id": "fletcher32"}
    if code == 32015:
        return {"id": "zstd", "level": int(values[0]) if values else 0}
    if code == 307:  # bzip2 (netCDF-C's filter, netCDF4-python's compression="bzip2")
        return {"id": "bz2", "level": min(max(int(values[0]) if values else 9, 1), 9)}
    if code == 32001:  # blosc: each chunk is a self-describing blosc frame
        return _blosc_config(values)
    name = FILTER_NAMES.get(code, f"id {code}")
    raise UnsupportedVariableError(
        f"{where} uses the HDF5 filter {name} ({code}), which activezarr cannot decode; "
        "rewrite it with zlib (e.g. `nccopy -d 4 in.nc out.nc`) to reduce it"
    )


BLOSC_CNAMES = ("blosclz", "lz4", "lz4hc", "snappy", "zlib", "zstd")


def _blosc_config(values: tuple) -> dict:
    """numcodecs' Blosc for the HDF5 blosc filter's parameters (version, version format,
    type size, chunk bytes, level, shuffle, compressor): decoding reads them from each
    frame, so they only describe how the data was written."""
    values = tuple(int(v) for v in values) + (0,) * 7
    cname = BLOSC_CNAMES[values[6]] if values[6] < len(BLOSC_CNAMES) else "blosclz"
    return {"id": "blosc", "cname": cname, "clevel": values[4], "shuffle": values[5]}


def codec_pipeline(dset: H5Dataset, where: str) -> list[dict]:
    """numcodecs configs for the dataset's HDF5 filter pipeline, in pipeline order."""
    plist = dset.dcpl
    configs = []
    for i in range(plist.get_nfilters()):
        code, _flags, values, _name = plist.get_filter(i)
        cfg = _filter_config(code, values, dset.dtype, where)
        if cfg is not None:
            configs.append(cfg)
    return configs


def dimension_scales(dset: H5Dataset) -> list[str | None]:
    """Full paths of the dimension scales attached to each axis (None where there is none)."""
    if dset.ndim == 1 and dset.is_scale():
        return [dset.name]  # a coordinate variable is its own dimension
    scales: list[str | None] = []
    for axis in range(dset.ndim):
        try:
            scales.append(dset.scale_name(axis))
        except (RuntimeError, KeyError, ValueError):
            scales.append(None)
    return scales


def dimension_names(scales: list[str | None]) -> list[str]:
    """Dimension names from their scales' paths (``phony_dim_<i>`` where there is none, until
    ``PhonyDims`` names them as netCDF-C does)."""
    return [
        s.rsplit("/", 1)[-1] if s is not None else f"phony_dim_{i}" for i, s in enumerate(scales)
    ]


class PhonyDims:
    """netCDF-C's names for the axes of datasets without dimension scales (plain HDF5).

    netCDF-C reads a group's subgroups before its own datasets, datasets in name order, and
    gives each such axis the first ``phony_dim_<n>`` of the group with the same length and
    unlimitedness that the dataset does not use yet, else a new one numbered across the file.
    With the same names, xarray opens files whose datasets have different shapes.
    """

    def __init__(self) -> None:
        self.count = 0
        self.groups: dict[str, list[tuple[str, int, bool]]] = {}

    def name(self, refs: DatasetRefs) -> None:
        """Rename ``refs``' phony axes in place (its dimensions and ``_ARRAY_DIMENSIONS``)."""
        group = refs.name.rpartition("/")[0]
        known = self.groups.setdefault(group, [])
        used: set[str] = set()
        for axis, unlimited in refs.phony_axes:
            n = refs.shape[axis]
            name = next(
                (d for d, dn, du in known if dn == n and du == unlimited and d not in used), None
            )
            if name is None:
                name = f"phony_dim_{self.count}"
                self.count += 1
                known.append((name, n, unlimited))
            used.add(name)
            refs.dimensions[axis] = name

    @staticmethod
    def order(variables: list[DatasetRefs]) -> list[DatasetRefs]:
        """``variables`` in the order netCDF-C meets them: subgroups first, then by name."""
        groups: dict[str, list[DatasetRefs]] = {}
        for var in variables:
            groups.setdefault(var.name.rpartition("/")[0], []).append(var)
        paths = set(groups)
        for path in list(paths):
            while path:
                path = path.rpartition("/")[0]
                paths.add(path)

        def walk(path: str) -> list[DatasetRefs]:
            children = sorted(p for p in paths if p and p.rpartition("/")[0] == path)
            out = [v for child in children for v in walk(child)]
            return out + sorted(groups.get(path, []), key=lambda v: v.name)

        return walk("")


def read_attrs(obj: H5Object) -> dict[str, Any]:
    """Attributes as JSON values, without HDF5/netCDF bookkeeping."""
    return read_typed_attrs(obj)[0]


def read_typed_attrs(obj: H5Object) -> tuple[dict[str, Any], dict[str, str]]:
    """Attributes as JSON values, and the HDF5 type of each (see ``member.type_name``)."""
    out: dict[str, Any] = {}
    types: dict[str, str] = {}
    for key in obj.attr_names:
        if key in HIDDEN_ATTRS:
            continue
        try:
            out[key] = json_attr(obj.attr(key))
            name = type_name(obj.attr_dtype(key))
        except (OSError, TypeError, ValueError) as exc:
            log.warning("attribute %s of %s not indexed: %s", key, obj.name, exc)
            out.pop(key, None)
            continue
        if name is not None:
            types[key] = name
    return out, types


def is_dimension_only(dset: H5Dataset) -> bool:
    """A netCDF dimension without a coordinate variable: a scale that holds no data."""
    if "NAME" not in dset or dset.attr_nbytes("NAME") < len(NC_DIM_ONLY):
        return False  # a coordinate variable's NAME (its own name) is not worth reading
    name = dset.attr("NAME")
    return isinstance(name, bytes) and name.startswith(NC_DIM_ONLY)


def check_dtype(dset: H5Dataset, where: str) -> np.dtype:
    dt = dset.dtype
    if dt.kind not in "iuf" or dt.fields is not None or h5py.check_string_dtype(dt):
        kind = {"S": "string", "O": "variable-length", "V": "compound/opaque"}.get(dt.kind, dt.str)
        if dt.kind == "O" and h5py.check_string_dtype(dt):
            kind = "variable-length string"
        raise UnsupportedVariableError(
            f"{where} has {kind} type {dt}, which activezarr cannot reduce; skipped"
        )
    return dt


def zarr_fill_value(dset: H5Dataset) -> Any:
    """The ``.zarray`` fill value: ``_FillValue``, else null for netCDF variables (and
    time-like ones), as kerchunk writes them, and for datasets whose own fill is 0 or netCDF's
    default (a netCDF scalar, a plain h5py dataset); else the dataset's own fill value.

    xarray and zarr read a ``.zarray`` fill as ``_FillValue``: a plain dataset's fill 0 there
    would mask every 0 (netCDF4 masks none: it is not a ``_FillValue``). Null reads the same
    0 in unwritten chunks; activezarr takes what they hold from its own member.
    """
    if "_FillValue" in dset:  # one netCDF4 uses (it ignores one it cannot cast): none else
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            usable = safe_cast({"_FillValue": dset.attr("_FillValue")}, "_FillValue", dset.dtype)
        return None if usable is None else usable.reshape(-1)[0]
    units = dset.get("units")
    units = units.decode("utf-8", "replace") if isinstance(units, bytes) else units
    if any("_Netcdf4" in k for k in dset.attr_names) or (
        isinstance(units, str) and "since" in units
    ):
        return None
    fill = dset.fillvalue
    default = default_fill(dset.dtype.newbyteorder("="))
    with np.errstate(all="ignore"):
        if fill == 0 or (default is not None and fill == np.asarray(default, dset.dtype)):
            return None
    return fill


def fill_facts(dset: H5Dataset) -> dict[str, Any]:
    """What netCDF4's masking needs beyond kerchunk's metadata, for the index's own member.

    ``fill``: what unwritten chunks read as (the HDF5 fill value); ``_FillValue``: the
    attribute exactly as stored (its type decides whether netCDF4 uses it), absent when the
    file has none; ``no_fill``: netCDF-C's "filling off", which it reports for every dataset
    whose HDF5 fill value is not user-defined (netCDF's ``fill_value=False``, and plain h5py
    datasets made without ``fillvalue=``), whatever the fill time.
    """
    facts: dict[str, Any] = {"fill": encode_fill_value(dset.fillvalue, dset.dtype)}
    if "_FillValue" in dset:
        raw = np.asarray(dset.attr("_FillValue")).ravel()
        if raw.size:
            facts["_FillValue"] = encode_fill_value(raw[0], raw.dtype)
    facts["no_fill"] = dset.dcpl.fill_value_defined() != h5py.h5d.FILL_VALUE_USER_DEFINED
    return facts


def dataset_refs(dset: H5Dataset, url: str, where: str) -> DatasetRefs:
    """Zarr metadata and chunk references for one dataset."""
    dtype = check_dtype(dset, where)
    if dset.dcpl.get_external_count():
        raise UnsupportedVariableError(f"{where} stores its data in external files; skipped")
    layout = dset.layout
    shape = tuple(int(n) for n in dset.shape)
    chunks = tuple(max(int(c), 1) for c in (dset.chunks or shape))
    filters = codec_pipeline(dset, where)
    name = dset.name.lstrip("/")
    ndim = len(shape)
    coords = np.zeros((0, ndim), dtype=np.int64)
    offsets = sizes = np.zeros(0, dtype=np.uint64)
    inline: dict[str, str] = {}
    if layout == h5py.h5d.CHUNKED:
        coords, offsets, sizes = chunk_table(dset, chunks, where)
    elif layout == h5py.h5d.CONTIGUOUS:
        offset = dset.id.get_offset()
        if offset is not None and dset.id.get_storage_size():
            chunks = virtual_chunks(shape, dtype.itemsize)
            coords, offsets, sizes = contiguous_table(shape, chunks, dtype.itemsize, offset)
    elif layout == h5py.h5d.COMPACT:
        raw = np.asarray(dset.read(), dtype=dtype).tobytes()
        inline[f"{name}/" + (".".join("0" * ndim) if ndim else "0")] = inline_bytes(raw)
    else:
        raise UnsupportedVariableError(f"{where} is a virtual dataset; skipped")
    scales = dimension_scales(dset)
    dims = dimension_names(scales)
    attrs, attr_types = read_typed_attrs(dset)
    attrs["_ARRAY_DIMENSIONS"] = dims
    zarray = {
        "chunks": list(chunks),
        "compressor": None,
        "dtype": dtype.str,
        "fill_value": encode_fill_value(zarr_fill_value(dset), dtype),
        "filters": filters or None,
        "order": "C",
        "shape": list(shape),
        "zarr_format": 2,
    }
    meta = {f"{name}/.zarray": zarray, f"{name}/.zattrs": attrs}
    return DatasetRefs(
        name,
        url,
        meta,
        shape,
        dtype.str,
        chunks,
        dims,
        coords,
        offsets,
        sizes,
        inline,
        attrs,
        fill_facts(dset),
        [key if dset.maxshape[i] is None else None for i, key in enumerate(scales)],
        attr_types,
        [(i, dset.maxshape[i] is None) for i, key in enumerate(scales) if key is None],
    )


VIRTUAL_CHUNK_BYTES = 1 << 20  # target size of the virtual chunks of contiguous data
VIRTUAL_CHUNK_MIN = 1 << 16  # smaller virtual chunks than this: keep one chunk instead


def virtual_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """A chunk shape that cuts contiguous (unchunked) data into byte ranges of about 1 MB.

    Each virtual chunk is ``(1, ..., 1, c, n_k+1, ..., n_last)``: whole trailing dimensions
    and ``c`` steps of one dimension, ``c`` dividing its length, so that every chunk is one
    contiguous byte range of the same size and a small selection reads only what it needs.
    Data of a few MB, or that no such cut fits, stays one chunk.
    """
    total = math.prod(shape) * itemsize
    if total <= 4 * VIRTUAL_CHUNK_BYTES:
        return shape
    row = itemsize  # bytes of one step along dimension k, trailing dimensions whole
    for k in range(len(shape) - 1, -1, -1):
        if row * shape[k] <= VIRTUAL_CHUNK_BYTES:
            row *= shape[k]
            continue
        steps = _largest_divisor(shape[k], max(1, VIRTUAL_CHUNK_BYTES // row))
        if steps * row < VIRTUAL_CHUNK_MIN:
            return shape
        return (1,) * k + (steps,) + tuple(shape[k + 1 :])
    return shape


def _largest_divisor(n: int, limit: int) -> int:
    """The largest divisor of ``n`` that is at most ``limit``."""
    best = 1
    i = 1
    while i * i <= n:
        if n % i == 0:
            for d in (i, n // i):
                if best < d <= limit:
                    best = d
        i += 1
    return best


def contiguous_table(shape, chunks, itemsize: int, offset: int):
    """Grid coordinates, offsets and sizes of the virtual chunks of contiguous data."""
    grid = tuple(n // c for n, c in zip(shape, chunks, strict=True))
    nbytes = math.prod(chunks) * itemsize
    if all(n == 1 for n in grid):  # one chunk (a 0-d variable too): the common small case
        coords = np.zeros((1, len(grid)), dtype=np.int64)
        return coords, np.array([offset], np.uint64), np.array([nbytes], np.uint64)
    coords = np.indices(grid).reshape(len(grid), -1).T.astype(np.int64)
    starts = np.arange(len(coords), dtype=np.uint64) * np.uint64(nbytes) + np.uint64(offset)
    return coords, starts, np.full(len(coords), nbytes, dtype=np.uint64)


def chunk_table(dset: H5Dataset, chunks: tuple[int, ...], where: str):
    """Grid coordinates, byte offsets and sizes of every stored chunk (one ``chunk_iter`` pass)."""
    starts: list = []
    offsets: list = []
    sizes: list = []
    masks: list = []

    def visit(info) -> None:
        starts.append(info.chunk_offset)
        offsets.append(info.byte_offset)
        sizes.append(info.size)
        masks.append(info.filter_mask)

    dset.id.chunk_iter(visit)
    bad = int(np.count_nonzero(masks))
    if bad:
        raise UnsupportedVariableError(
            f"{where} has {bad} chunks stored with some filters skipped (HDF5 filter "
            "mask), which activezarr cannot describe as byte ranges; skipped"
        )
    ndim = len(chunks)
    coords = np.array(starts, dtype=np.int64).reshape(-1, ndim) // np.array(chunks, dtype=np.int64)
    return coords, np.array(offsets, dtype=np.uint64), np.array(sizes, dtype=np.uint64)
