"""Source files to persisted kerchunk indexes: open, translate every variable, write atomically.

``translate`` walks an HDF5/netCDF4 file with h5py and returns the kerchunk references of
every supported variable; ``write_index`` writes them to ``<out>/<stem>.json`` (temporary file
+ rename) with the chunk-table sidecar. Recording the file in a catalog is the catalog's part
(``activezarr.catalog.single.build_index``).
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import IndexBuildError, UnsupportedVariableError
from . import cache, h5objects
from .atomic import write_atomic
from .h5objects import H5Dataset, H5Object, root_group
from .hdf5 import DatasetRefs, PhonyDims, dataset_refs, is_dimension_only, read_attrs
from .load import VariableIndex, from_table
from .member import Member
from .refs import dumps_document, meta_text, ref_item
from .sources import HDF5_SIGNATURE, NETCDF3_SIGNATURES, Source, remote_failure

log = logging.getLogger(__name__)


@dataclass
class Translation:
    """The references of one file and what was skipped on the way.

    ``meta`` holds the group and array metadata references; chunk references stay in each
    variable's arrays until written (``json_text``) or asked for (``refs_for``, ``refs``).
    """

    source: Source
    meta: dict[str, Any]
    variables: list[DatasetRefs]
    skipped: list[str] = field(default_factory=list)
    skipped_names: dict[str, str] = field(default_factory=dict)  # variable -> the reason
    fingerprint: dict[str, Any] = field(default_factory=dict)  # the source's, before reading
    # the stored values of the coordinate variables along leading dimensions, read while the
    # file was open (only those whose every chunk is stored: see ``coordinate_values``)
    coordinates: dict[str, np.ndarray] = field(default_factory=dict)
    _tables: dict[str, VariableIndex] = field(default_factory=dict, repr=False)

    @property
    def member(self) -> Member:
        """The ``activezarr`` member: the source's fingerprint and the attribute types."""
        return Member(
            sources={self.source.url: self.fingerprint},
            attribute_types={v.name: v.attr_types for v in self.variables if v.attr_types},
            variables={v.name: v.extra for v in self.variables},
            present=True,
            skipped=self.skipped_names,
        )

    def refs_for(self, *names: str) -> dict[str, Any]:
        """Metadata of everything plus the chunk references of ``names`` only."""
        out = {k: meta_text(v) for k, v in self.meta.items()}
        for var in self.variables:
            if var.name in names:
                out.update(var.refs)
        return out

    def table(self, name: str) -> VariableIndex:
        """Variable ``name`` as a ``VariableIndex`` (made once: the sidecar and the catalog
        entry both use it)."""
        found = self._tables.get(name)
        if found is None:
            var = next(v for v in self.variables if v.name == name)
            found = self._tables[name] = from_table(var, self.source.url)
        return found

    @functools.cached_property
    def refs(self) -> dict[str, Any]:
        """Every reference as one kerchunk dict (slow for files with very many chunks)."""
        return self.refs_for(*(v.name for v in self.variables))

    def json_text(self) -> str:
        """The whole index as kerchunk version 1 JSON, one reference per line."""
        own = {k for var in self.variables for k in var.meta}
        lines = [ref_item(k, v) for k, v in self.meta.items() if k not in own]
        for var in self.variables:
            lines += var.json_items()
        return dumps_document(lines, self.member.to_json())


def check_signature(head: bytes, name: str) -> None:
    """Refuse files that are not HDF5 with a message that says what they are and what to do."""
    if head.startswith(NETCDF3_SIGNATURES):
        raise IndexBuildError(
            f"{name}: is a netCDF3 (classic) file, not netCDF4/HDF5; activezarr indexes only "
            "HDF5-based files. Convert it with `nccopy -k netCDF4 in.nc out.nc`"
        )
    if not head.startswith(HDF5_SIGNATURE):
        raise IndexBuildError(f"{name}: is not a netCDF4/HDF5 file (no HDF5 signature)")


def translate(source: Source) -> Translation:
    """kerchunk references for every numeric variable of ``source``."""
    if source.remote:
        check_signature(source.head(8), source.display)
        fingerprint = source.recorded_fingerprint()
    else:  # one open for the signature and the fingerprint, HDF5's own driver for the rest
        fingerprint, head = source.local_record()
        check_signature(head, source.display)
    fh = None
    try:
        if source.remote:
            fh = source.open()
            with fh, h5py.File(fh, "r") as h5:
                translation = _translate_file(h5, source)
        else:  # HDF5's own driver: cheaper than h5py.File and a Python file object per read
            fid = h5objects.open_file(source.url)
            try:
                translation = _translate_file(fid, source)
            finally:
                fid.close()
        translation.fingerprint = fingerprint
        return translation
    except (OSError, ValueError, RuntimeError) as exc:
        if isinstance(exc, IndexBuildError):
            raise
        failure = getattr(getattr(fh, "raw", None), "failure", None)
        if failure is not None:  # a remote read failed under h5py, which hides why
            where = remote_failure(source.display, failure, source.storage_options)
            raise IndexBuildError(f"reading {where}") from failure
        raise IndexBuildError(f"{source.display}: cannot be read as HDF5 ({exc})") from exc


def _translate_file(h5: h5py.File | h5py.h5f.FileID, source: Source) -> Translation:
    root = root_group(h5)
    refs: dict[str, Any] = {".zgroup": {"zarr_format": 2}, ".zattrs": read_attrs(root)}
    result = Translation(source, refs, [])

    def visit(name: str, obj: H5Object) -> None:
        if not isinstance(obj, H5Dataset):
            refs[f"{name}/.zgroup"] = {"zarr_format": 2}
            refs[f"{name}/.zattrs"] = read_attrs(obj)
            return
        if is_dimension_only(obj):
            if obj.ndim == 1:
                lengths[obj.name] = max(lengths.get(obj.name, 0), int(obj.shape[0]))
            return
        where = f"{source.display}: variable '{name}'"
        try:
            ds = dataset_refs(obj, source.url, where)
        except UnsupportedVariableError as exc:
            warnings.warn(str(exc), stacklevel=2)
            result.skipped.append(str(exc))
            result.skipped_names[name] = (
                str(exc).removeprefix(where).strip().removesuffix("; skipped")
            )
            return
        refs.update(ds.meta)
        result.variables.append(ds)
        datasets[ds.name] = obj

    lengths: dict[str, int] = {}
    datasets: dict[str, H5Dataset] = {}
    h5objects.visit(root.id, visit)
    for ds in result.variables:  # netCDF dimension lengths: the longest variable along each
        for key, n in zip(ds.growable, ds.shape, strict=True):
            if key:
                lengths[key] = max(lengths.get(key, 0), n)
    for ds in result.variables:
        ds.grow(lengths)
    phony = PhonyDims()
    for ds in phony.order(result.variables):
        if ds.phony_axes:
            phony.name(ds)
    result.coordinates = coordinate_values(result.variables, datasets)
    return result


def leading_dimensions(variables: list[DatasetRefs]) -> list[str]:
    """The first dimension of each data variable (not a coordinate along itself), sorted."""
    data = [v for v in variables if v.dimensions and list(v.dimensions) != [v.name]]
    return sorted({v.dimensions[0] for v in data})


def coordinate_values(
    variables: list[DatasetRefs], datasets: dict[str, H5Dataset]
) -> dict[str, np.ndarray]:
    """The stored values of the 1-d numeric coordinate variable of each leading dimension,
    when all of them are in the file as it is open (every chunk stored, no record beyond the
    dataset's extent): what reading them through the index would give, without reopening it.
    """
    by_name = {v.name: v for v in variables}
    out = {}
    for dim in leading_dimensions(variables):
        coord, dset = by_name.get(dim), datasets.get(dim)
        if coord is None or dset is None or list(coord.dimensions) != [dim]:
            continue
        if stored_whole(coord, dset) and coord.dtype[1] in "iuf":
            out[dim] = dset.read()
    return out


def stored_whole(ds: DatasetRefs, dset: H5Dataset) -> bool:
    """Every chunk of ``ds`` is stored and its shape is the dataset's own (not grown to a
    longer record dimension): reading ``dset`` gives what the index reads."""
    grid = [-(-n // c) for n, c in zip(ds.shape, ds.chunks, strict=True)]
    return ds.shape == dset.shape and ds.n_chunks == math.prod(grid)


def index_path_for(source: Source, out: Path) -> Path:
    return out / f"{source.stem}.json"


def write_index(target: Path, translation: Translation, *, durable: bool = True) -> None:
    status = write_atomic(target, translation.json_text(), durable=durable)
    # the binary chunk tables, for fast loading
    tables = [translation.table(var.name) for var in translation.variables]
    cache.save(target, tables, translation.member, status)
    log.info("wrote %s", target)
