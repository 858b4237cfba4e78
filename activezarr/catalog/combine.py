"""Many per-file indexes to one virtual index along a dimension (kerchunk MultiZarrToZarr).

The combined index is plain kerchunk JSON (version 1) that ``Active``, fsspec, zarr and
xarray open like any other. It holds the variable, the coordinate variables of its dimensions
(the concatenated one rebuilt from every file's values) and pure ``[url, offset, length]``
chunk references, nothing inlined from the sources. One zarr array has one chunk grid, so
every file must have the same chunks and encoding, and every file but the last a length along
the concatenated dimension that is a whole number of chunks; files that break this are named
in an ``ActiveZarrError`` that points to ``Catalog.reduce``, which has no such limit.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ActiveZarrError
from ..index.load import read_index
from ..index.member import combined_member
from ..index.refs import dumps_refs, write_atomic
from .concat import Layout, _names, layout
from .progress import on_terminal
from .store import record_combined

if TYPE_CHECKING:
    from .catalog import Catalog

log = logging.getLogger(__name__)

# attributes that change how stored values decode: they must agree across combined files
DECODING_ATTRS = (
    "scale_factor",
    "add_offset",
    "_Unsigned",
    "missing_value",
    "valid_min",
    "valid_max",
    "valid_range",
)
USE_REDUCE = (
    "; `activezarr catalog reduce --var VAR --op OP` (Catalog.reduce in Python) reduces such "
    "files one by one without combining"
)


def default_name(var: str, dim: str) -> str:
    return f"combined_{var.replace('/', '_')}_{dim}.json"


def combine(catalog: Catalog, var: str, concat_dim: str = "time", out=None) -> Path:
    """Combine the catalog's entries holding ``var`` along ``concat_dim``; see the module."""
    lay = layout(catalog.entries, var, concat_dim)
    check_grid(lay)
    bar = on_terminal(len(lay.parts))
    refs, members = [], []
    for p in lay.parts:
        refs.append(_load(p.entry.index, catalog.storage_options, members))
        bar.step()
    bar.close()
    check_encoding(lay, refs)
    values = [
        _values(lay, p, r, catalog.storage_options) for p, r in zip(lay.parts, refs, strict=True)
    ]
    check_overlap(lay, values)
    combined = _mzz(lay, [_keep(r, lay) for r in refs], values, catalog.storage_options)
    target = Path(out) if out is not None else catalog.directory / default_name(var, concat_dim)
    names = {lay.variable, *lay.dims}
    member = combined_member(members, names)  # attribute types and fills of the first file
    write_atomic(target, dumps_refs(combined, member.to_json() if member else None))
    log.info("combined %d files of %s along %s into %s", len(lay.parts), var, concat_dim, target)
    if target.resolve().parent == catalog.directory.resolve():
        record_combined(
            catalog.directory,
            target.name,
            {
                "index": target.name,
                "default_name": out is None,
                "variable": var,
                "concat_dim": concat_dim,
                "shape": _shape(lay),
                "sources": {p.entry.source: p.entry.fingerprint for p in lay.parts},
            },
        )
    return target


def _shape(lay: Layout) -> list[int]:
    shape = list(lay.parts[0].entry.variables[lay.variable]["shape"])
    shape[lay.parts[0].axis] = lay.length
    return shape


def check_grid(lay: Layout) -> None:
    """Same chunks and shape (but along the dimension) everywhere; whole chunks but last."""
    var, axis = lay.variable, lay.parts[0].axis
    info = {p.name: p.entry.variables[var] for p in lay.parts}
    chunks = {n: tuple(v["chunks"]) for n, v in info.items()}
    common, _ = Counter(chunks.values()).most_common(1)[0]
    odd = [n for n, c in chunks.items() if c != common]
    if odd:
        raise ActiveZarrError(
            f"cannot combine '{var}' along '{lay.dim}': {_names(odd)} "
            f"{'has' if len(odd) == 1 else 'have'} chunks "
            f"{sorted({chunks[n] for n in odd})} where the other files have {common}{USE_REDUCE}"
        )

    def others(shape):
        return [n for i, n in enumerate(shape) if i != axis]

    shapes = {n: others(v["shape"]) for n, v in info.items()}
    first = shapes[lay.parts[0].name]
    odd = [n for n, s in shapes.items() if s != first]
    if odd:
        raise ActiveZarrError(
            f"cannot combine '{var}' along '{lay.dim}': {_names(odd)} differ in shape from "
            f"{lay.parts[0].name} in the other dimensions{USE_REDUCE}"
        )
    step = common[axis]
    ragged = [p.name for p in lay.parts[:-1] if p.length % step]
    if ragged:
        raise ActiveZarrError(
            f"cannot combine '{var}' along '{lay.dim}': {_names(ragged)} "
            f"{'is' if len(ragged) == 1 else 'are'} not a whole number of chunks of {step} "
            f"along '{lay.dim}' (only the last file may be shorter), so one chunk grid cannot "
            f"hold them{USE_REDUCE}"
        )


def _load(index: Path, storage_options: dict | None, members: list) -> dict[str, Any]:
    if index.is_dir():
        raise ActiveZarrError(
            f"{index} is a parquet index: combine writes JSON and reads JSON indexes only; "
            "re-index as JSON or use Catalog.reduce, which reads any index"
        )
    document = read_index(str(index), storage_options)
    members.append(document.member)
    refs = document.refs
    return {k: json.loads(v) if k.endswith((".zarray", ".zattrs", ".zgroup")) and isinstance(
        v, str) else v for k, v in refs.items()}  # fmt: skip


def check_encoding(lay: Layout, refs: list[dict[str, Any]]) -> None:
    """dtype, fill value, codecs and CF decoding attributes agree in every file."""
    var = lay.variable

    def encoding(r):
        z, a = r[f"{var}/.zarray"], r.get(f"{var}/.zattrs") or {}
        keys = ("dtype", "fill_value", "filters", "compressor", "order")
        return json.dumps(
            [{k: z.get(k) for k in keys}, {k: a.get(k) for k in DECODING_ATTRS}], sort_keys=True
        )

    codes = [encoding(r) for r in refs]
    odd = [p.name for p, c in zip(lay.parts, codes, strict=True) if c != codes[0]]
    if odd:
        raise ActiveZarrError(
            f"cannot combine '{var}' along '{lay.dim}': {_names(odd)} store it with another "
            f"dtype, fill value, compression or scale/offset than {lay.parts[0].name}"
            f"{USE_REDUCE}"
        )


def _values(lay: Layout, part, refs: dict, storage_options: dict | None) -> np.ndarray:
    """The coordinate values of one file, in the layout's units."""
    if part.lo is None or f"{lay.dim}/.zarray" not in refs:
        return np.arange(part.offset, part.offset + part.length, dtype=np.float64)
    return lay.coordinate_values(part, storage_options, refs)


def check_overlap(lay: Layout, values: list[np.ndarray]) -> None:
    """Coordinate values unique across files (MultiZarrToZarr places chunks by value)."""
    reach, last = -np.inf, None
    for part, v in zip(lay.parts, values, strict=True):
        if v.size != part.length or np.isnan(v).any() or np.unique(v).size != v.size:
            raise ActiveZarrError(
                f"coordinate '{lay.dim}' of {part.name} has missing or repeated values, so it "
                f"cannot place the file in a combined index{USE_REDUCE}"
            )
        if v.size and v.min() <= reach:
            raise ActiveZarrError(
                f"cannot combine '{lay.variable}' along '{lay.dim}': {last} and {part.name} "
                f"overlap in '{lay.dim}'; select files that do not overlap{USE_REDUCE}"
            )
        if v.size and v.max() > reach:
            reach, last = float(v.max()), part.name


def _keep(refs: dict[str, Any], lay: Layout) -> dict[str, Any]:
    """Only the variable and the coordinate variables of its dimensions."""
    names = {lay.variable} | {d for d in lay.dims if f"{d}/.zarray" in refs}
    return {
        k: json.dumps(v) if isinstance(v, dict) else v
        for k, v in refs.items()
        if k in (".zgroup", ".zattrs") or k.rsplit("/", 1)[0] in names
    }


def _mzz(lay: Layout, refs: list[dict], values: list[np.ndarray], storage_options) -> dict:
    try:
        from kerchunk.combine import MultiZarrToZarr
    except ImportError as exc:  # pragma: no cover - kerchunk is a dependency
        raise ActiveZarrError("combining needs kerchunk: pip install kerchunk") from exc
    protocols = {u.split("://", 1)[0] if "://" in u else "file" for p in lay.parts
                 for u in [p.entry.source]}  # fmt: skip
    if len(protocols) > 1:
        raise ActiveZarrError(f"cannot combine sources from different stores: {protocols}")
    identical = [d for d in lay.dims if d != lay.dim and f"{d}/.zarray" in refs[0]]
    mzz = MultiZarrToZarr(
        refs,
        concat_dims=[lay.dim],
        coo_map={lay.dim: list(values)},
        identical_dims=identical,
        remote_protocol=protocols.pop(),
        remote_options=dict(storage_options or {}),
        inline_threshold=0,
    )
    with warnings.catch_warnings():
        # a single file of length one: "contains less than expected number of values"
        warnings.filterwarnings("ignore", message="Concatenated coordinate", category=UserWarning)
        out = mzz.translate()
    return {k: _as_text(v) for k, v in out["refs"].items()}


def _as_text(value):
    """Metadata as dicts so that ``dumps_refs`` writes it readably; chunks unchanged."""
    if isinstance(value, str) and value.startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
