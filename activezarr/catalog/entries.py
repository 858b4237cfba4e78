"""What the catalog records about one indexed file: variables, coordinate ranges, attributes.

Each entry records the source URL, its fingerprint (size + mtime locally, size + ETag
remotely), the index file (relative to the catalog's directory), the global attributes, the
variables (shape, dtype, chunks, dimensions, chunk count and stored bytes), the value range of
each leading dimension that has a coordinate variable (``coords``, e.g. time), when and by
which activezarr version it was made; its facets (``facets.py``) and time range as ISO dates;
the role of each variable (``data``, ``coordinate`` or ``bounds``).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np

from ..errors import ActiveZarrError, IndexBuildError
from ..index.build import leading_dimensions
from ..reduction.missing import MissingRule, Packing, storage_dtype
from .facets import facets, time_range

ATTR_MAX_CHARS = 256  # longer global attributes (history, references) stay out of the catalog


def version() -> str:
    from .. import __version__

    return __version__


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def variable_summary(translation) -> dict[str, Any]:
    return {
        v.name: {
            "shape": list(v.shape),
            "dtype": v.dtype,
            "chunks": list(v.chunks),
            "dimensions": v.dimensions,
            "n_chunks": v.n_chunks,
            "nbytes": v.stored_bytes,
        }
        for v in translation.variables
    }


def _json_number(value) -> float | int | None:
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def coordinate_ranges(translation) -> dict[str, dict[str, Any]]:
    """Value range of each leading dimension that has a 1-d numeric coordinate variable."""
    by_name = {v.name: v for v in translation.variables}
    ranges = {}
    for dim in leading_dimensions(translation.variables):
        coord = by_name.get(dim)
        if (
            coord is None
            or list(coord.dimensions) != [dim]
            or np.dtype(coord.dtype).kind not in "iuf"
        ):
            continue
        values = coordinate(translation, coord)
        valid = values.compressed() if np.ma.isMaskedArray(values) else values.ravel()
        attrs = translation.meta.get(f"{dim}/.zattrs") or {}
        if isinstance(attrs, str):
            attrs = json.loads(attrs)
        ranges[dim] = {
            "size": int(values.size),
            "min": _json_number(valid.min()) if valid.size else None,
            "max": _json_number(valid.max()) if valid.size else None,
            "first": _json_number(valid[0]) if valid.size else None,
            "last": _json_number(valid[-1]) if valid.size else None,
            "units": attrs.get("units"),
            "calendar": attrs.get("calendar"),
        }
    return ranges


def coordinate(translation, coord) -> np.ndarray:
    """A coordinate variable's values, masked and unpacked as ``Active(...)[:]`` gives them
    (a plain array when nothing is masked): from the values read while the file was open,
    else through the index."""
    source = translation.source
    stored = translation.coordinates.get(coord.name)
    if stored is not None:
        return cf_values(stored, translation.table(coord.name))
    from ..active import Active  # here: most files never need it

    try:
        with Active(
            translation.refs_for(coord.name),
            coord.name,
            storage_options=source.storage_options,
            check_stale=False,
        ) as a:
            return a[:]
    except ActiveZarrError as exc:
        raise IndexBuildError(
            f"{source.display}: cannot read coordinate '{coord.name}' ({exc})"
        ) from exc


def cf_values(stored: np.ndarray, var) -> np.ndarray:
    """Stored values of a whole variable (``VariableIndex`` ``var``) masked and unpacked by
    the CF rules, with the same steps (and warnings) as ``Active.__getitem__``: a masked
    array, or the plain array when no rule masks anything."""
    rule = MissingRule.from_metadata(var.dtype, var.fill_attr, var.attrs, var.no_fill)
    packing = Packing.from_attrs(var.attrs, var.dtype)
    wanted = storage_dtype(var.dtype, var.attrs)
    view = wanted.newbyteorder(var.dtype.byteorder) if wanted.itemsize > 1 else wanted
    values = np.ascontiguousarray(stored, dtype=var.dtype).view(view).astype(wanted, copy=False)
    mask = rule.mask(values)
    data = packing.decode(values)
    return data if mask is None else np.ma.masked_array(data, mask=mask)


def global_attrs(refs: dict[str, Any]) -> dict[str, Any]:
    """The file's global attributes that are short enough to select on."""
    attrs = refs.get(".zattrs") or {}
    if isinstance(attrs, str):
        attrs = json.loads(attrs)
    keep = {}
    for key, value in attrs.items():
        if isinstance(value, bool | int | float) or (
            isinstance(value, str) and len(value) <= ATTR_MAX_CHARS
        ):
            keep[key] = _json_number(value) if isinstance(value, float) else value
    return keep


def make_entry(translation, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """A catalog entry for one translated file (without its index name)."""
    variables = variable_summary(translation)
    entry = {
        "source": translation.source.url,
        "fingerprint": fingerprint,
        "size": fingerprint.get("size"),
        "mtime": fingerprint.get("mtime"),
        "etag": fingerprint.get("etag"),
        "index": None,
        "attrs": global_attrs(translation.meta),
        "variables": variables,
        "coords": coordinate_ranges(translation),
        "skipped": translation.skipped,
        "created_at": now(),
        "activezarr_version": version(),
        "roles": roles_of(variables, *_named_by_attributes(translation.meta)),
    }
    return with_facets(entry)


def _named_by_attributes(meta: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Variables named by another's ``bounds``/``climatology`` attribute, and by a
    ``coordinates`` attribute (auxiliary coordinates such as a scalar ``height``)."""
    bounds, auxiliary = set(), set()
    for key, attrs in meta.items():
        if not key.endswith("/.zattrs"):
            continue
        if isinstance(attrs, str):
            attrs = json.loads(attrs)
        for name in ("bounds", "climatology"):
            if isinstance(attrs.get(name), str):
                bounds.add(attrs[name])
        if isinstance(attrs.get("coordinates"), str):
            auxiliary.update(attrs["coordinates"].split())
    return bounds, auxiliary


def roles_of(
    variables: dict[str, dict[str, Any]],
    bounds: set[str] | None = None,
    auxiliary: set[str] | None = None,
) -> dict[str, str]:
    """``coordinate`` (1-d along itself, or named by a ``coordinates`` attribute), ``bounds``
    (of a coordinate) or ``data``.

    Without the attributes (an entry migrated from ``catalog.json``), names ending in
    ``_bnds``/``_bounds`` are taken as bounds and scalars as coordinates.
    """
    roles = {}
    for name, v in variables.items():
        dims = list(v.get("dimensions") or ())
        if dims == [name] or name in (auxiliary or ()) or (bounds is None and not dims):
            roles[name] = "coordinate"
        elif name in (bounds or ()) or (
            bounds is None and name.endswith(("_bnds", "_bounds", "_bnd"))
        ):
            roles[name] = "bounds"
        else:
            roles[name] = "data"
    return roles


def with_facets(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with its facets and ISO time range (``time_start``, ``time_end``)."""
    out = {**entry, **facets(entry.get("attrs") or {}, entry["source"])}
    out["time_start"], out["time_end"] = time_range(entry.get("coords") or {})
    return out
