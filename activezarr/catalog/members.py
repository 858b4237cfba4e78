"""The entries one variable's ``combine`` or ``reduce`` needs, chosen and trimmed in SQL.

A catalog view's conditions (facets, path globs, attributes), "holds the variable" and a
``where`` range along a dimension are one query on the store, so a catalog of a million rows
costs what the files found cost: rows outside the range are never read. The entries come
trimmed to what laying files end to end needs (the variable's summary, the coordinate
ranges, the fingerprint and index), a few hundred bytes each.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import ActiveZarrError
from ..index.jsontext import loads
from . import store
from .catalog import Entry
from .search import Condition, condition, order, where

if TYPE_CHECKING:
    from .catalog import Catalog

BATCH = 1024  # rows fetched at a time
SLACK = 1e-9  # relative: the store's range test keeps a file the exact test may drop


def members(
    catalog: Catalog,
    var: str,
    dim: str | None = None,
    within: dict[str, Any] | None = None,
    *,
    earliest: bool = False,
) -> Iterator[Entry]:
    """The entries of ``catalog`` holding ``var`` (those whose recorded range of the
    dimension of ``within`` (``{dim: slice(first, last)}``) meets it), in source order, with
    ``variables`` holding ``var`` alone and ``coords`` the range of ``dim`` alone (default:
    the first dimension of ``var`` in the first file). ``earliest``: only the entry that
    starts first along ``dim`` (by its recorded value)."""
    conditions = (*catalog._conditions, condition("variable", var))
    if within and len(within) == 1:
        (name, bounds), = within.items()  # fmt: skip
        conditions += _range_conditions(catalog, conditions, name, bounds)
    clause, args = where(conditions)
    path = _json_path(var)
    if dim is None and path is not None:
        first = catalog._query(
            f"SELECT json_extract(variables, ?) FROM files{clause} ORDER BY "
            f"{order(conditions)} LIMIT 1",
            [f"{path}.dimensions[0]", *args],
        )
        dim = first[0][0] if first else None
    along = _json_path(dim) if isinstance(dim, str) else None
    summary = "json_extract(variables, ?)" if path else "variables"
    ranges = "json_extract(coords, ?)" if along else "coords"
    by = order(conditions)
    if earliest:
        by = f"{'json_extract(coords, ?), ' if along else ''}{by} LIMIT 1"
    sql = (
        f"SELECT source, index_name, fingerprint, {ranges}, {summary} FROM files{clause} "
        f"ORDER BY {by}"
    )
    params = [along] if along else []
    params += [path] if path else []
    params += [*args, f"{along}.min"] if earliest and along else args
    with store.opened(catalog.directory) as con:
        cursor = con.execute(sql, params)
        while rows := cursor.fetchmany(BATCH):
            for source, index_name, fingerprint, coords, variables in rows:
                if path:
                    variables = f"{{{json.dumps(var)}:{variables}}}"
                if along:
                    coords = f"{{{json.dumps(dim)}:{coords}}}" if coords else "{}"
                row = {"source": source, "index_name": index_name, "fingerprint": fingerprint,
                       "coords": coords, "variables": variables}  # fmt: skip
                yield Entry.from_row(row, catalog.directory)


def fingerprints(catalog: Catalog, var: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(source, fingerprint)`` of the entries of ``catalog`` holding ``var``, streamed."""
    clause, args = where((*catalog._conditions, condition("variable", var)))
    with store.opened(catalog.directory) as con:
        cursor = con.execute(f"SELECT source, fingerprint FROM files{clause}", args)
        while rows := cursor.fetchmany(BATCH):
            yield from ((source, loads(text)) for source, text in rows)


def shared_along(catalog: Catalog, dim: str) -> list[str]:
    """The variables along ``dim`` (not ``dim`` itself) that every entry of ``catalog``
    holds with each of their dimensions a variable of the file too (coordinates), sorted."""
    clause, args = where(catalog._conditions)
    rows = catalog._query(
        f"SELECT v.key, COUNT(*) FROM (SELECT source, variables FROM files{clause}) AS f, "
        "json_each(f.variables) AS v WHERE v.key != ? AND EXISTS (SELECT 1 FROM "
        "json_each(v.value, '$.dimensions') AS d WHERE d.value = ?) AND NOT EXISTS (SELECT 1 "
        "FROM json_each(v.value, '$.dimensions') AS d WHERE d.value NOT IN (SELECT name FROM "
        "variables AS n WHERE n.source = f.source)) GROUP BY v.key",
        [*args, dim, dim],
    )
    total = len(catalog)
    return sorted(name for name, n in rows if n == total)


def held_ranges(catalog: Catalog, dim: str) -> list[tuple]:
    """``(files, min, max, units, calendar)`` of the recorded ranges of ``dim`` in the
    entries of ``catalog``, per units and calendar, most files first."""
    path = _json_path(dim)
    if path is None:
        return []
    clause, args = where(catalog._conditions)
    pick = "json_extract(coords, ?)"
    rows = catalog._query(
        f"SELECT COUNT(*), MIN({pick}), MAX({pick}), {pick} AS u, {pick} AS c FROM files"
        f"{clause} {'AND' if clause else 'WHERE'} {pick} IS NOT NULL GROUP BY u, c "
        "ORDER BY 1 DESC",
        [f"{path}.min", f"{path}.max", f"{path}.units", f"{path}.calendar", *args, f"{path}.min"],
    )
    return [tuple(r) for r in rows]


def _json_path(name: str) -> str | None:
    """The JSON path of key ``name`` (None when SQLite's paths cannot quote it)."""
    return None if '"' in name or "\\" in name else f'$."{name}"'


def _range_conditions(
    catalog: Catalog, conditions: tuple[Condition, ...], dim: str, bounds: Any
) -> tuple[Condition, ...]:
    """The condition that a file's recorded range of ``dim`` meets ``bounds``, for each
    (units, calendar) the chosen files record; nothing where that cannot be told here
    (which the exact test in ``concat.window`` then decides, or rejects)."""
    path = _json_path(dim)
    if path is None or not isinstance(bounds, slice) or bounds.step is not None:
        return ()
    clause, args = where(conditions)
    units_sql = "json_extract(coords, ?)"
    groups = catalog._query(
        f"SELECT DISTINCT {units_sql}, {units_sql} FROM files{clause}",
        [f"{path}.units", f"{path}.calendar", *args],
    )
    numeric = all(_is_number(b) for b in (bounds.start, bounds.stop) if b is not None)
    if numeric and len({u for u, _ in groups}) > 1:
        return ()  # numbers are in the first file's units: which one is first is not known here
    keep, params = [], []
    for units, calendar in groups:
        span = _in_units(bounds, units, calendar)
        same = f"{units_sql} IS ? AND {units_sql} IS ?"
        params += [f"{path}.units", units, f"{path}.calendar", calendar]
        if span is None:
            keep.append(f"({same})")
            continue
        lo, hi = span
        keep.append(
            f"({same} AND (json_extract(coords, ?) IS NULL OR "
            "(json_extract(coords, ?) >= ? AND json_extract(coords, ?) <= ?)))"
        )
        params += [f"{path}.min", f"{path}.max", lo, f"{path}.min", hi]
    if not keep:
        return ()
    return (Condition(f"({' OR '.join(keep)})", tuple(params)),)


def _is_number(value: Any) -> bool:
    import numpy as np

    return isinstance(value, int | float | np.integer | np.floating)


def _in_units(bounds: slice, units: str | None, calendar: str | None):
    """``bounds`` as coordinate numbers in ``units``, widened by ``SLACK`` (None: unknown)."""
    from .concat import to_coordinate

    try:
        lo = -math.inf if bounds.start is None else to_coordinate(bounds.start, units, calendar)
        hi = math.inf if bounds.stop is None else to_coordinate(bounds.stop, units, calendar)
    except (ActiveZarrError, ValueError, TypeError, OverflowError):
        return None
    if math.isnan(lo) or math.isnan(hi):
        return None
    return lo - SLACK * max(1.0, abs(lo)), hi + SLACK * max(1.0, abs(hi))
