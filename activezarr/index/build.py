"""Source files to persisted kerchunk indexes: open, translate every variable, write atomically.

``translate`` walks an HDF5/netCDF4 file with h5py and returns the kerchunk references of
every supported variable; ``write_index`` writes them to ``<out>/<stem>.json`` (temporary file
+ rename) with the chunk-table sidecar. Recording the file in a catalog is the catalog's part
(``activezarr.catalog.single.build_index``).
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py

from ..errors import IndexBuildError, UnsupportedVariableError
from . import cache
from .hdf5 import DatasetRefs, dataset_refs, is_dimension_only, read_attrs
from .load import from_table
from .member import Member
from .refs import dumps_document, meta_text, ref_item, write_atomic
from .sources import HDF5_SIGNATURE, NETCDF3_SIGNATURES, Source

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
    fingerprint: dict[str, Any] = field(default_factory=dict)  # the source's, before reading

    @property
    def member(self) -> Member:
        """The ``activezarr`` member: the source's fingerprint and the attribute types."""
        return Member(
            sources={self.source.url: self.fingerprint},
            attribute_types={v.name: v.attr_types for v in self.variables if v.attr_types},
            variables={v.name: v.extra for v in self.variables},
            present=True,
        )

    def refs_for(self, *names: str) -> dict[str, Any]:
        """Metadata of everything plus the chunk references of ``names`` only."""
        out = {k: meta_text(v) for k, v in self.meta.items()}
        for var in self.variables:
            if var.name in names:
                out.update(var.refs)
        return out

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
    check_signature(source.head(8), source.display)
    fingerprint = source.recorded_fingerprint()
    try:
        with source.open() as fh, h5py.File(fh, "r") as h5:
            translation = _translate_file(h5, source)
            translation.fingerprint = fingerprint
            return translation
    except (OSError, ValueError) as exc:
        if isinstance(exc, IndexBuildError):
            raise
        raise IndexBuildError(f"{source.display}: cannot be read as HDF5 ({exc})") from exc


def _translate_file(h5: h5py.File, source: Source) -> Translation:
    refs: dict[str, Any] = {".zgroup": {"zarr_format": 2}, ".zattrs": read_attrs(h5)}
    result = Translation(source, refs, [])

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group):
            refs[f"{name}/.zgroup"] = {"zarr_format": 2}
            refs[f"{name}/.zattrs"] = read_attrs(obj)
            return
        if isinstance(obj, h5py.Dataset) and is_dimension_only(obj) and obj.ndim == 1:
            lengths[obj.name] = max(lengths.get(obj.name, 0), int(obj.shape[0]))
        if not isinstance(obj, h5py.Dataset) or is_dimension_only(obj):
            return
        where = f"{source.display}: variable '{name}'"
        try:
            ds = dataset_refs(obj, source.url, where)
        except UnsupportedVariableError as exc:
            warnings.warn(str(exc), stacklevel=2)
            result.skipped.append(str(exc))
            return
        refs.update(ds.meta)
        result.variables.append(ds)

    lengths: dict[str, int] = {}
    h5.visititems(visit)
    for ds in result.variables:  # netCDF dimension lengths: the longest variable along each
        for key, n in zip(ds.growable, ds.shape, strict=True):
            if key:
                lengths[key] = max(lengths.get(key, 0), n)
    for ds in result.variables:
        ds.grow(lengths)
    return result


def index_path_for(source: Source, out: Path) -> Path:
    return out / f"{source.stem}.json"


def write_index(target: Path, translation: Translation, *, durable: bool = True) -> None:
    write_atomic(target, translation.json_text(), durable=durable)
    # the binary chunk tables, for fast loading
    cache.save(
        target,
        [from_table(var, str(target)) for var in translation.variables],
        translation.member,
    )
    log.info("wrote %s", target)
