"""Many per-file indexes to one virtual index along a dimension (what kerchunk's
MultiZarrToZarr writes, made from the files' chunk tables).

The combined index is plain kerchunk JSON (version 1) that ``Active``, fsspec, zarr and
xarray open like any other. It holds the variable, the coordinate variables of its dimensions
(the concatenated one rebuilt from every file's values, inline) and pure ``[url, offset,
length]`` chunk references, nothing inlined from the sources. The chunk tables come from the
files' sidecars and are joined with numpy; the JSON is written line by line as it is made. One zarr array has one chunk grid, so
every file must have the same chunks and encoding, and every file but the last a length along
the concatenated dimension that is a whole number of chunks; files that break this are named
in an ``ActiveZarrError`` that points to ``Catalog.reduce``, which has no such limit.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ActiveZarrError
from ..index.atomic import write_atomic
from ..index.load import INLINE, MISSING, VariableIndex, open_variables, read_index
from ..index.member import combined_member
from ..index.refs import document_pieces, inline_bytes, json_attr, ref_item
from .concat import Layout, _names, concatenate, layout, narrowing_error, narrowing_fix
from .entries import version
from .members import fingerprints, members
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


def use_reduce(what: str, lay: Layout, odd: list[str]) -> ActiveZarrError:
    """The error for files one chunk grid cannot hold: leave them out, or reduce without
    combining."""
    py, cli = narrowing_fix(odd, [p.name for p in lay.parts])
    return ActiveZarrError(
        f"{what}; {py}, or reduce them one by one with Catalog.reduce, which needs no common grid",
        cli=f"{what}; {cli}, or reduce them one by one with `activezarr catalog reduce --var "
        f"{lay.variable} --op OP`, which needs no common grid",
    )


def default_name(var: str, dim: str, conditions: tuple = ()) -> str:
    """``combined_<var>_<dim>.json``; for a narrowed selection (``conditions``), a name of
    its own (a digest of the conditions added), so two selections never share one file."""
    if not conditions:
        return f"combined_{var.replace('/', '_')}_{dim}.json"
    spelled = repr([(c.sql, c.params) for c in conditions]).encode()
    digest = hashlib.sha256(spelled).hexdigest()[:12]
    return f"combined_{var.replace('/', '_')}_{dim}_{digest}.json"


def combine(
    catalog: Catalog, var: str, concat_dim: str = "time", out=None, *, reuse: bool = False
) -> Path:
    """Combine the catalog's entries holding ``var`` along ``concat_dim``; see the module.

    The files' chunk tables come from their sidecars (``open_variables``) and are joined with
    numpy (``concatenate``); the combined JSON is written as it is made, one line per chunk.
    ``reuse``: see ``Catalog.combine``.
    """
    target = Path(out) if out is not None else catalog.directory / default_name(var, concat_dim)
    if reuse and is_current(catalog, var, concat_dim, target):
        log.info("%s is current: the catalog rows it was made from are unchanged", target)
        return target
    lay = layout(members(catalog, var, concat_dim), var, concat_dim)
    check_grid(lay)
    indexes = [p.entry.index for p in lay.parts]
    parquet = next((i for i in indexes if Path(i).is_dir()), None)
    if parquet is not None:
        raise ActiveZarrError(
            f"{parquet} is a parquet index: combine writes JSON and reads JSON indexes only; "
            "re-index as JSON or use Catalog.reduce, which reads any index",
            cli=f"{parquet} is a parquet index: combine writes JSON and reads JSON indexes only; "
            "re-index it with --format json, or use `activezarr catalog reduce`, which reads "
            "any index",
        )
    _check_protocols(lay)
    options = catalog.storage_options
    first = read_index(str(indexes[0]), options)
    bar = on_terminal(len(lay.parts))
    has_coord = f"{lay.dim}/.zarray" in first.refs and lay.parts[0].lo is not None
    opened = open_variables(indexes, [var, lay.dim] if has_coord else [var], options)
    variables = [row[0] for row in opened]
    coords = [row[1] if has_coord else None for row in opened]
    check_encoding(lay, variables)
    values = []
    for p, c in zip(lay.parts, coords, strict=True):
        values.append(_values(lay, p, c, options))
        bar.step()
    bar.close()
    check_overlap(lay, values)
    joined = concatenate(variables, lay.parts[0].axis, f"combined {var}")
    names = {lay.variable, *lay.dims}
    member = combined_member([first.member], names)  # attribute types and fills of the first
    items = _items(first.refs, lay, joined, np.concatenate(values) if has_coord else None)
    write_atomic(target, document_pieces(items, member.to_json() if member else None))
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
        catalog.combined.refresh()
    return target


def is_current(catalog: Catalog, var: str, concat_dim: str, target: Path) -> bool:
    """Whether ``target`` exists and the catalog lists it as made by this version, of
    ``var`` along ``concat_dim``, from exactly the rows ``catalog`` selects for ``var`` now,
    with the fingerprints they have now."""
    if target.resolve().parent != catalog.directory.resolve() or not target.is_file():
        return False
    catalog.combined.refresh()  # another process may have combined meanwhile
    try:
        record = catalog.combined[target.name]
    except (KeyError, ValueError):
        return False
    made = (record.get("variable"), record.get("concat_dim"), record.get("activezarr_version"))
    if made != (var, concat_dim, version()):
        return False
    sources = record.get("sources") or {}
    n = 0
    for source, fingerprint in fingerprints(catalog, var):
        if sources.get(source) != fingerprint:
            return False
        n += 1
    return n == len(sources)


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
        raise use_reduce(
            f"cannot combine '{var}' along '{lay.dim}': {_names(odd)} "
            f"{'has' if len(odd) == 1 else 'have'} chunks "
            f"{sorted({chunks[n] for n in odd})} where the other files have {common}",
            lay,
            odd,
        )

    def others(shape):
        return [n for i, n in enumerate(shape) if i != axis]

    shapes = {n: others(v["shape"]) for n, v in info.items()}
    first = shapes[lay.parts[0].name]
    odd = [n for n, s in shapes.items() if s != first]
    if odd:
        raise use_reduce(
            f"cannot combine '{var}' along '{lay.dim}': {_names(odd)} "
            f"{'differs' if len(odd) == 1 else 'differ'} in shape from {lay.parts[0].name} in "
            "the other dimensions",
            lay,
            odd,
        )
    step = common[axis]
    ragged = [p.name for p in lay.parts[:-1] if p.length % step]
    if ragged:
        raise use_reduce(
            f"cannot combine '{var}' along '{lay.dim}': {_names(ragged)} "
            f"{'is' if len(ragged) == 1 else 'are'} not a whole number of chunks of {step} "
            f"along '{lay.dim}' (only the last file may be shorter), so one chunk grid cannot "
            "hold them",
            lay,
            ragged,
        )


def check_encoding(lay: Layout, variables: list[VariableIndex]) -> None:
    """dtype, fill value, codecs and CF decoding attributes agree in every file."""
    var = lay.variable

    def encoding(v: VariableIndex):
        attrs = {k: json_attr(v.attrs[k]) for k in DECODING_ATTRS if k in v.attrs}
        fills = [json_attr(v.fill_value), json_attr(v.fill_attr), v.no_fill]
        return json.dumps([v.dtype.str, fills, v.codecs, attrs], sort_keys=True)

    codes = [encoding(v) for v in variables]
    odd = [p.name for p, c in zip(lay.parts, codes, strict=True) if c != codes[0]]
    if odd:
        raise use_reduce(
            f"cannot combine '{var}' along '{lay.dim}': {_names(odd)} "
            f"{'stores' if len(odd) == 1 else 'store'} it with another dtype, fill value, "
            f"compression or scale/offset than {lay.parts[0].name}",
            lay,
            odd,
        )


def _values(lay: Layout, part, coord: VariableIndex | None, storage_options) -> np.ndarray:
    """The coordinate values of one file, in the layout's units."""
    if coord is None:
        return np.arange(part.offset, part.offset + part.length, dtype=np.float64)
    return lay.coordinate_values(part, storage_options, coord)


def check_overlap(lay: Layout, values: list[np.ndarray]) -> None:
    """Coordinate values unique across files (MultiZarrToZarr places chunks by value)."""
    reach, last = -np.inf, None
    for part, v in zip(lay.parts, values, strict=True):
        if v.size != part.length or np.isnan(v).any() or np.unique(v).size != v.size:
            raise use_reduce(
                f"cannot combine '{lay.variable}' along '{lay.dim}': coordinate '{lay.dim}' of "
                f"{part.name} has missing or repeated values, so it cannot place the file",
                lay,
                [part.name],
            )
        if v.size and v.min() <= reach:
            raise narrowing_error(
                f"cannot combine '{lay.variable}' along '{lay.dim}': {last} and {part.name} "
                f"overlap in '{lay.dim}'",
                [last, part.name],
                [p.name for p in lay.parts],
            )
        if v.size and v.max() > reach:
            reach, last = float(v.max()), part.name


def _check_protocols(lay: Layout) -> None:
    protocols = {s.split("://", 1)[0] if "://" in s else "file" for s in
                 (p.entry.source for p in lay.parts)}  # fmt: skip
    if len(protocols) > 1:
        raise ActiveZarrError(f"cannot combine sources from different stores: {protocols}")


def _items(
    refs: dict[str, Any], lay: Layout, joined: VariableIndex, values: np.ndarray | None
) -> Iterator[str]:
    """The combined index's references as ``ref_item`` lines, in kerchunk's order: the
    group, the concatenated coordinate (its values inline), the other dimensions' coordinate
    variables as the first file has them, then the variable with its chunks."""
    for key in (".zgroup", ".zattrs"):
        if key in refs:
            yield ref_item(key, refs[key])
    dim = lay.dim
    if values is not None:
        yield ref_item(f"{dim}/.zarray", _coordinate_zarray(values.size))
        if f"{dim}/.zattrs" in refs:
            yield ref_item(f"{dim}/.zattrs", refs[f"{dim}/.zattrs"])
        yield ref_item(f"{dim}/0", inline_bytes(values.astype("<f8").tobytes()))
    for d in lay.dims:
        if d != dim and f"{d}/.zarray" in refs:
            yield from (ref_item(k, v) for k, v in refs.items() if k.rsplit("/", 1)[0] == d)
    var = lay.variable
    zarray = _meta_object(refs[f"{var}/.zarray"])
    zarray["shape"] = list(joined.shape)
    yield ref_item(f"{var}/.zarray", zarray)
    if f"{var}/.zattrs" in refs:
        yield ref_item(f"{var}/.zattrs", refs[f"{var}/.zattrs"])
    yield from _chunk_items(joined, zarray.get("dimension_separator") or ".")


def _coordinate_zarray(n: int) -> dict[str, Any]:
    """The ``.zarray`` kerchunk writes for a concatenated coordinate: float64, one chunk."""
    return {
        "shape": [n], "chunks": [max(n, 1)], "dtype": "<f8", "fill_value": None,
        "order": "C", "filters": None, "dimension_separator": ".", "compressor": None,
        "zarr_format": 2,
    }  # fmt: skip


def _meta_object(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value)


def _chunk_items(var: VariableIndex, sep: str) -> Iterator[str]:
    """One ``"name/i.j.k":[url,offset,length]`` line per stored chunk, in grid order."""
    grid = var.grid
    stored = np.flatnonzero(var.url_ids != MISSING)
    prefix = json.dumps(f"{var.name}/")[:-1]
    urls = [json.dumps(u) for u in var.urls]
    coords = [c.tolist() for c in np.unravel_index(stored, grid)] if grid else [[0] * stored.size]
    ids, offsets, sizes = (var.url_ids[stored].tolist(), var.offsets[stored].tolist(),
                           var.sizes[stored].tolist())  # fmt: skip
    for k, (flat, uid) in enumerate(zip(stored.tolist(), ids, strict=True)):
        key = sep.join(str(c[k]) for c in coords)
        if uid == INLINE:
            yield f'{prefix}{key}":{json.dumps(inline_bytes(var.inline[flat]))}'
        else:
            yield f'{prefix}{key}":[{urls[uid]},{offsets[k]},{sizes[k]}]'
