"""``activezarr info``: a readable description of the variables of an index.

What a scientist checks first comes first: dimensions, units, names, the time range as dates;
then the storage (chunks, codecs, bytes). A fill value the file does not set is labelled as
netCDF's default. Sizes are decimal (kB, MB, GB), as everywhere in the command line.
"""

from __future__ import annotations

import numpy as np

from .errors import shown
from .index.freshness import check_variable_fresh
from .index.load import INLINE, list_variables, load_variable, read_index
from .index.member import parse_member
from .reduction.missing import default_fill
from .sizes import size_text

NAME_ATTRS = ("units", "long_name", "standard_name", "calendar")
CF_ATTRS = (
    "missing_value",
    "valid_min",
    "valid_max",
    "valid_range",
    "scale_factor",
    "add_offset",
    "_Unsigned",
)


def _codecs(codecs: list[dict]) -> str:
    if not codecs:
        return "none"
    return " -> ".join(
        c["id"] + "".join(f" {k}={v}" for k, v in c.items() if k != "id") for c in codecs
    )


def _fill_text(var) -> str | None:
    """The file's ``_FillValue``, or the value unwritten elements hold when it sets none."""
    if var.fill_attr is not None:
        return str(var.fill_attr)
    if var.fill_value is None or var.no_fill:
        return None
    default = default_fill(var.dtype)
    try:
        is_default = default is not None and float(var.fill_value) == float(default)
    except (TypeError, ValueError):
        is_default = False
    if is_default:
        return f"none set; netCDF's default fill value for {var.dtype} applies ({var.fill_value})"
    return f"none set; unwritten elements hold {var.fill_value}"


def _loader(index, storage_options, allow_paths):
    """(variable names, load(name) -> VariableIndex, location, skipped variables and why)
    for a JSON or parquet index."""
    location = str(index)
    if not isinstance(index, dict) and "://" not in location:
        from .index.parquet import is_parquet, load_parquet_variable, read_metadata

        if is_parquet(location):
            meta = read_metadata(location)
            names = list_variables(meta["metadata"])
            skipped = parse_member(meta.get("activezarr"), location).skipped
            return names, lambda name: load_parquet_variable(location, name), location, skipped
    doc = read_index(index, storage_options)
    return (
        list_variables(doc.refs),
        lambda name: load_variable(doc, name, allow_paths=allow_paths),
        doc.location,
        doc.member.skipped,
    )


def time_range(index, name: str, var, storage_options=None) -> str | None:
    """``first .. last`` of a coordinate with "UNITS since DATE" units, as dates."""
    units = var.attrs.get("units")
    if not isinstance(units, str) or " since " not in units or len(var.shape) != 1:
        return None
    if not var.shape[0]:
        return "empty"
    from .active import Active

    try:
        with Active(index, name, storage_options=storage_options, check_stale=False) as a:
            ends = np.ma.concatenate([np.ma.atleast_1d(a[0]), np.ma.atleast_1d(a[-1])])
    except Exception:  # noqa: BLE001 - a description, not a reduction: show what we can
        return None
    if np.ma.count_masked(ends):
        return None
    calendar = str(var.attrs.get("calendar") or "standard")
    try:
        import cftime

        dates = cftime.num2date(ends.data, units, calendar)
        first, last = (d.isoformat().removesuffix("T00:00:00") for d in dates)
    except Exception:  # noqa: BLE001 - cftime absent or a calendar it does not know
        return f"{ends[0]} .. {ends[-1]} {units}"
    return f"{first} .. {last} ({var.shape[0]} steps, calendar {calendar})"


def _attr_text(value) -> str:
    """An attribute as a reader checks it: its value, and its type when the index knows it."""
    if isinstance(value, np.ndarray | np.generic):
        return f"{value.tolist()} ({value.dtype})"
    return repr(value) if isinstance(value, str) else str(value)


def describe(
    index,
    variable: str | None = None,
    storage_options: dict | None = None,
    *,
    check_stale: bool = True,
    allow_paths=(),
) -> str:
    """Text describing each variable (or one) of ``index``; ``StaleIndexError`` when a source
    changed since it was indexed (unless ``check_stale=False``)."""
    names, load, location, skipped = _loader(index, storage_options, allow_paths)
    if variable:
        names = [variable]
    lines = [f"index: {shown(index)}"]
    total = 0
    loaded = {name: load(name) for name in names}
    ranges: dict[str, str | None] = {}

    def range_of(dim: str) -> str | None:
        if dim not in ranges:
            try:
                coord = loaded[dim] if dim in loaded else load(dim)
            except Exception:  # noqa: BLE001 - no coordinate variable of that name
                ranges[dim] = None
            else:
                ranges[dim] = time_range(index, dim, coord, storage_options)
        return ranges[dim]

    for name, var in loaded.items():
        if check_stale:
            check_variable_fresh(location, var, storage_options)
        stored = var.n_stored
        nbytes = var.stored_bytes + sum(len(b) for b in var.inline.values())
        total += nbytes
        dims = ", ".join(f"{d}={n}" for d, n in zip(var.dims, var.shape, strict=False))
        lines.append(f"{name}({dims})")
        for key in NAME_ATTRS:
            if key in var.attrs:
                lines.append(f"  {key}: {var.attrs[key]}")
        for dim in var.dims:
            span = range_of(dim)
            if span:
                lines.append(f"  {dim}: {span}")
        fill = _fill_text(var)
        if fill:
            lines.append(f"  _FillValue: {fill}")
        cf = [f"{k}={_attr_text(var.attrs[k])}" for k in CF_ATTRS if k in var.attrs]
        if cf:
            lines.append(f"  CF attributes: {', '.join(cf)}")
        inline = int(np.count_nonzero(var.url_ids == INLINE)) if var.inline else 0
        lines += [
            f"  shape {var.shape}  dtype {var.dtype}  chunks {var.chunks}",
            f"  chunks: {var.n_chunks} ({stored} stored, {var.n_chunks - stored} fill"
            + (f", {inline} inline)" if inline else ")"),
            f"  codecs: {_codecs(var.codecs)}",
            f"  stored bytes: {size_text(nbytes)}",
        ]
    if not variable:
        lines.append(f"total stored bytes: {size_text(total)} in {len(loaded)} variables")
        for name, reason in sorted(skipped.items()):
            lines.append(f"not indexed: '{name}' {reason}")
    return "\n".join(lines)
