"""HDF5 groups and datasets through h5py's low-level API, each attribute read at most once.

h5py's high-level objects re-open a dataset's property list, dataspace and attributes on every
property access (``dset.attrs["units"]`` costs ~40 µs, ``dset.dims`` ~100 µs), which is most
of the time indexing a small file takes. These wrappers read the same things, with h5py's own
conversions (``AttributeManager.__getitem__``, ``Dataset.fillvalue``, ``Dataset.maxshape``,
``DimensionProxy``), once per object.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np
from h5py import h5a, h5d, h5ds, h5f, h5g, h5i, h5o, h5p, h5s, h5t

_MISSING = object()


def decode_name(name: bytes | None) -> Any:
    """An HDF5 name as h5py shows it: UTF-8 text, else the bytes (``HLObject._d``)."""
    if name is None:
        return None
    try:
        return name.decode("utf8")
    except UnicodeDecodeError:
        return name


_PLAIN_TYPES: dict[str, h5t.TypeID] = {}


def memory_type(dtype: np.dtype) -> h5t.TypeID:
    """``h5t.py_create(dtype)``, made once per plain dtype (a number or a fixed-length
    string, whose type depends on nothing but ``dtype.str``): attributes read many."""
    if dtype.metadata is not None or dtype.fields is not None or dtype.kind not in "biufS":
        return h5t.py_create(dtype)
    htype = _PLAIN_TYPES.get(dtype.str)
    if htype is None:
        htype = _PLAIN_TYPES[dtype.str] = h5t.py_create(dtype)
    return htype


def read_attribute(aid: h5a.AttrID, dtype: np.dtype | None = None) -> Any:
    """An attribute's value exactly as ``h5py``'s ``obj.attrs[name]`` returns it (``dtype``:
    ``aid.dtype`` when the caller has it)."""
    dtype = aid.dtype if dtype is None else dtype
    shape = aid.shape
    if shape is None:  # an empty dataspace
        return h5py.Empty(dtype)
    htype = memory_type(dtype)
    if dtype.subdtype is not None:  # numpy has no top-level array types: fold them into shape
        dtype, subshape = dtype.subdtype
        shape = shape + subshape
    arr = np.zeros(shape, dtype=dtype, order="C")
    aid.read(arr, mtype=htype)
    info = h5t.check_string_dtype(dtype) if dtype.kind == "O" else None
    if info and info.length is None:  # variable-length strings: bytes to str
        arr = np.array(
            [b.decode("utf-8", "surrogateescape") for b in arr.flat], dtype=dtype
        ).reshape(arr.shape)
    return arr[()] if arr.ndim == 0 else arr


class H5Object:
    """A group or dataset: its low-level id, its path, its attributes (read on first use)."""

    def __init__(self, oid: h5o.ObjectID, name: str, cpl: h5p.PropID) -> None:
        self.id = oid
        self.name = name
        self._cpl = cpl
        self._values: dict[str, Any] = {}
        self._dtypes: dict[str, np.dtype] = {}
        self._names: list[str] | None = None

    @property
    def attr_names(self) -> list[str]:
        """Attribute names in h5py's order (creation order when tracked, else by name)."""
        if self._names is None:  # read once (a cached_property takes a lock on every get)
            names: list[str] = []
            order = self._cpl.get_attr_creation_order()
            tracked = order & h5p.CRT_ORDER_TRACKED
            index = h5py.h5.INDEX_CRT_ORDER if tracked else h5py.h5.INDEX_NAME
            h5a.iterate(self.id, lambda name, *_: names.append(decode_name(name)), index_type=index)
            self._names = names
        return self._names

    def __contains__(self, key: str) -> bool:
        return key in self.attr_names

    def attr(self, key: str) -> Any:
        """The value of attribute ``key`` (``KeyError`` when absent), as h5py reads it."""
        value = self._values.get(key, _MISSING)
        if value is _MISSING:
            if key not in self.attr_names:
                raise KeyError(f"no attribute {key!r}")
            aid = h5a.open(self.id, key.encode("utf8") if isinstance(key, str) else key)
            dtype = self._dtypes[key] = aid.dtype
            value = self._values[key] = read_attribute(aid, dtype)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self.attr(key) if key in self.attr_names else default

    def attr_dtype(self, key: str) -> np.dtype:
        """The stored (file) type of attribute ``key``."""
        if key not in self._dtypes:
            self._dtypes[key] = h5a.open(self.id, key.encode("utf8")).dtype
        return self._dtypes[key]

    def attr_nbytes(self, key: str) -> int:
        """The stored size of attribute ``key`` (no read; ``KeyError`` when absent)."""
        if key not in self.attr_names:
            raise KeyError(f"no attribute {key!r}")
        return h5a.open(self.id, key.encode("utf8")).get_storage_size()


class H5Dataset(H5Object):
    """A dataset's type, shape, layout and fill, as the h5py ``Dataset`` properties give them."""

    def __init__(self, oid: h5d.DatasetID, name: str) -> None:
        super().__init__(oid, name, oid.get_create_plist())
        self.dcpl = self._cpl
        self.dtype: np.dtype = oid.dtype
        self._space = oid.get_space()  # what ``oid.shape`` reads, kept for ``maxshape``
        self.shape: tuple[int, ...] = tuple(self._space.get_simple_extent_dims())
        self.ndim = len(self.shape)
        self.layout = self.dcpl.get_layout()
        self._maxshape: tuple[int | None, ...] | None = None
        self._fill: Any = _MISSING

    @property
    def chunks(self) -> tuple[int, ...] | None:
        return self.dcpl.get_chunk() if self.layout == h5d.CHUNKED else None

    @property
    def maxshape(self) -> tuple[int | None, ...]:
        if self._maxshape is None:
            dims = self._space.get_simple_extent_dims(True)
            self._maxshape = tuple(x if x != h5s.UNLIMITED else None for x in dims)
        return self._maxshape

    @property
    def fillvalue(self) -> Any:
        if self._fill is _MISSING:
            arr = np.zeros((1,), dtype=self.dtype)
            self.dcpl.get_fill_value(arr)
            self._fill = arr[0]
        return self._fill

    def read(self) -> np.ndarray:
        """Every value, as ``dset[()]``: straight into an array for plain numbers (what
        h5py's own fast reader does, without building a ``Dataset``)."""
        dtype = self.dtype
        if dtype.kind in "iuf" and dtype.metadata is None and self.ndim:
            arr = np.empty(self.shape, dtype=dtype)
            if arr.size:
                self.id.read(h5s.ALL, h5s.ALL, arr, mtype=memory_type(dtype))
            return arr
        return h5py.Dataset(self.id)[()]

    def scale_name(self, axis: int) -> str | None:
        """The path of the first dimension scale attached to ``axis`` (``dset.dims[axis][0]``)."""
        if not h5ds.get_num_scales(self.id, axis):
            return None
        scales: list = []
        h5ds.iterate(self.id, axis, scales.append, 0)
        return decode_name(h5i.get_name(scales[0]))

    def is_scale(self) -> bool:
        return bool(h5ds.is_scale(self.id))


def visit(root: h5g.GroupID, func: Callable[[str, H5Object], None]) -> None:
    """Call ``func(name, object)`` for every group and dataset below ``root`` (as h5py's
    ``visititems`` does, in the same order; named datatypes are left out)."""

    def each(name: bytes) -> None:
        oid = h5o.open(root, name)
        path = decode_name(name)
        if isinstance(oid, h5d.DatasetID):
            func(path, H5Dataset(oid, decode_name(h5i.get_name(oid))))
        elif isinstance(oid, h5g.GroupID):
            func(path, H5Object(oid, decode_name(h5i.get_name(oid)), oid.get_create_plist()))

    h5o.visit(root, each)


def root_group(h5: h5py.File | h5f.FileID) -> H5Object:
    gid = h5g.open(h5.id if isinstance(h5, h5py.File) else h5, b"/")
    return H5Object(gid, "/", gid.get_create_plist())


@functools.cache
def _read_access() -> h5p.PropFAID:
    """File access as ``h5py.File(path, "r", locking=False)`` sets it up (read only: no
    library version bounds matter), made once."""
    fapl = h5p.create(h5p.FILE_ACCESS)
    if hasattr(fapl, "set_file_locking"):  # HDF5 >= 1.12.1 / 1.10.7
        fapl.set_file_locking(False, True)
    return fapl


def open_file(path: str) -> h5f.FileID:
    """A local HDF5 file opened read-only with HDF5's own (``pread``) driver and no lock:
    cheaper than ``h5py.File`` and its Python file object per read. The caller closes it."""
    return h5f.open(os.fsencode(path), h5f.ACC_RDONLY, fapl=_read_access())
