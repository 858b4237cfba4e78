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
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from ..errors import UnsupportedVariableError
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

FILTER_NAMES = {4: "szip", 6: "scaleoffset", 32000: "lzf", 32004: "lz4", 32008: "bitshuffle"}


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
    name = FILTER_NAMES.get(code, f"id {code}")
    raise UnsupportedVariableError(
        f"{where} uses the HDF5 filter {name} ({code}), which activezarr cannot decode; "
        "rewrite it with zlib (e.g. `nccopy -d 4 in.nc out.nc`) to reduce it"
    )


def codec_pipeline(dset: h5py.Dataset, where: str) -> list[dict]:
    """numcodecs configs for the dataset's HDF5 filter pipeline, in pipeline order."""
    plist = dset.id.get_create_plist()
    configs = []
    for i in range(plist.get_nfilters()):
        code, _flags, values, _name = plist.get_filter(i)
        cfg = _filter_config(code, values, dset.dtype, where)
        if cfg is not None:
            configs.append(cfg)
    return configs


def dimension_names(dset: h5py.Dataset) -> list[str]:
    """Names of the dimension scales attached to each axis (``phony_dim_<i>`` if none)."""
    if dset.ndim == 1 and h5py.h5ds.is_scale(dset.id):
        return [dset.name.rsplit("/", 1)[-1]]  # a coordinate variable is its own dimension
    names = []
    for i, dim in enumerate(dset.dims):
        try:
            scale = dim[0] if len(dim) else None
        except (RuntimeError, KeyError, ValueError):
            scale = None
        names.append(scale.name.rsplit("/", 1)[-1] if scale is not None else f"phony_dim_{i}")
    return names


def read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    """Attributes as JSON values, without HDF5/netCDF bookkeeping."""
    out = {}
    for key in obj.attrs:
        if key in HIDDEN_ATTRS:
            continue
        try:
            out[key] = json_attr(obj.attrs[key])
        except (OSError, TypeError, ValueError) as exc:
            log.warning("attribute %s of %s not indexed: %s", key, obj.name, exc)
    return out


def is_dimension_only(dset: h5py.Dataset) -> bool:
    """A netCDF dimension without a coordinate variable: a scale that holds no data."""
    name = dset.attrs.get("NAME") if "NAME" in dset.attrs else None
    return isinstance(name, bytes) and name.startswith(NC_DIM_ONLY)


def check_dtype(dset: h5py.Dataset, where: str) -> np.dtype:
    dt = dset.dtype
    if dt.kind not in "iuf" or dt.fields is not None or h5py.check_string_dtype(dt):
        kind = {"S": "string", "O": "variable-length", "V": "compound/opaque"}.get(dt.kind, dt.str)
        raise UnsupportedVariableError(
            f"{where} has {kind} type {dt}, which activezarr cannot reduce; skipped"
        )
    return dt


def zarr_fill_value(dset: h5py.Dataset) -> Any:
    """The ``.zarray`` fill value kerchunk writes: ``_FillValue``, else null for netCDF
    variables (and time-like ones), else the HDF5 dataset's own fill value."""
    if "_FillValue" in dset.attrs:
        return np.asarray(dset.attrs["_FillValue"]).ravel()[0]
    units = dset.attrs.get("units")
    units = units.decode("utf-8", "replace") if isinstance(units, bytes) else units
    if any("_Netcdf4" in k for k in dset.attrs) or (isinstance(units, str) and "since" in units):
        return None
    return dset.fillvalue


def fill_facts(dset: h5py.Dataset) -> dict[str, Any]:
    """What netCDF4's masking needs beyond kerchunk's metadata, for the index's own member.

    ``fill``: what unwritten chunks read as (the HDF5 fill value); ``_FillValue``: the
    attribute exactly as stored (its type decides whether netCDF4 uses it), absent when the
    file has none; ``no_fill``: created without fill (HDF5 fill time NEVER).
    """
    facts: dict[str, Any] = {"fill": encode_fill_value(dset.fillvalue, dset.dtype)}
    if "_FillValue" in dset.attrs:
        raw = np.asarray(dset.attrs["_FillValue"]).ravel()
        if raw.size:
            facts["_FillValue"] = encode_fill_value(raw[0], raw.dtype)
    plist = dset.id.get_create_plist()
    facts["no_fill"] = plist.get_fill_time() == h5py.h5d.FILL_TIME_NEVER
    return facts


def dataset_refs(dset: h5py.Dataset, url: str, where: str) -> DatasetRefs:
    """Zarr metadata and chunk references for one dataset."""
    dtype = check_dtype(dset, where)
    plist = dset.id.get_create_plist()
    if plist.get_external_count():
        raise UnsupportedVariableError(f"{where} stores its data in external files; skipped")
    layout = plist.get_layout()
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
            coords = np.zeros((1, ndim), dtype=np.int64)
            offsets = np.array([offset], dtype=np.uint64)
            sizes = np.array([dset.id.get_storage_size()], dtype=np.uint64)
    elif layout == h5py.h5d.COMPACT:
        raw = np.asarray(dset[()], dtype=dtype).tobytes()
        inline[f"{name}/" + (".".join("0" * ndim) if ndim else "0")] = inline_bytes(raw)
    else:
        raise UnsupportedVariableError(f"{where} is a virtual dataset; skipped")
    dims = dimension_names(dset)
    attrs = read_attrs(dset)
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
    )


def chunk_table(dset: h5py.Dataset, chunks: tuple[int, ...], where: str):
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
