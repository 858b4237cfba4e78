"""Files of one variable laid end to end along a dimension, in coordinate order.

``layout`` orders the catalog entries that hold a variable by the values of the concatenated
dimension's coordinate (recorded in the catalog, converted to common units when files use
different "<unit> since <date>" epochs) and gives each its offset along the concatenation.
``window`` turns a ``where`` range in coordinate values into the index range of one file,
reading the file's coordinate only when the recorded range overlaps it partly. Both combining
(``combine.py``) and reducing across files (``reduce.py``) rest on this.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ActiveZarrError
from ..index.load import VariableIndex, chunk_grid
from .catalog import Entry


@dataclass
class Part:
    """One file's share of the concatenation."""

    entry: Entry
    axis: int  # position of the concatenated dimension among the variable's dimensions
    length: int
    offset: int  # where the file starts along the concatenation
    lo: float | None  # coordinate range in the layout's units (None: no coordinate)
    hi: float | None
    units: str | None  # the file's own units, to convert values read from it
    calendar: str | None

    @property
    def name(self) -> str:
        return self.entry.source


@dataclass
class Layout:
    variable: str
    dim: str
    dims: tuple[str, ...]
    parts: list[Part]
    units: str | None  # of the coordinate values in ``lo``/``hi`` (the first file's)
    calendar: str | None

    @property
    def length(self) -> int:
        return sum(p.length for p in self.parts)

    def label(self, value: float) -> str:
        """A coordinate value as people read it: a date for time units, else the number."""
        if isinstance(self.units, str) and " since " in self.units:
            try:
                import cftime

                date = cftime.num2date(value, self.units, self.calendar or "standard")
                return date.isoformat().removesuffix("T00:00:00")
            except (ValueError, TypeError, OverflowError):  # not a date in this calendar
                pass
        return f"{value:g}"

    def coordinate_values(
        self, part: Part, storage_options: dict | None = None, refs: dict | None = None
    ) -> np.ndarray:
        """The coordinate values of one file, in the layout's units (NaN where missing).

        ``refs``, the file's references when the caller has loaded them already.
        """
        from ..active import Active

        if part.lo is None:
            return np.arange(part.offset, part.offset + part.length, dtype=np.float64)
        index = part.entry.index if refs is None else refs
        with Active(index, self.dim, storage_options=storage_options, check_stale=False) as a:
            values = a[:]
        values = np.ma.filled(values.astype(np.float64), np.nan)
        return convert_units(values, part.units, self.units, self.calendar)


def convert_units(
    values: np.ndarray, src: str | None, dst: str | None, calendar: str | None
) -> np.ndarray:
    """Coordinate values from units ``src`` to ``dst`` ("days since 1850-01-01" style)."""
    if src == dst or src is None or dst is None:
        return values
    if " since " not in src or " since " not in dst:
        raise ActiveZarrError(f"cannot compare coordinate values in '{src}' with '{dst}'")
    import cftime

    dates = cftime.num2date(values, src, calendar or "standard")
    return np.asarray(cftime.date2num(dates, dst, calendar or "standard"), dtype=np.float64)


def to_coordinate(value: Any, units: str | None, calendar: str | None) -> float:
    """A ``where`` bound as a coordinate number: numbers as they are, dates through the units.

    Dates may be ``datetime``/``date``, ``cftime`` or ``numpy.datetime64`` objects, or ISO
    strings (``"1850"``, ``"1850-01"``, ``"1850-01-01T12:00"``).
    """
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if units is None or " since " not in units:
        raise ActiveZarrError(
            f"where bound {value!r} is not a number and the coordinate has no time units "
            f"({units!r}); give coordinate values"
        )
    import cftime

    calendar = calendar or "standard"
    if isinstance(value, np.datetime64):
        value = str(np.datetime_as_string(value, unit="s"))
    if isinstance(value, str):
        value = _parse_date(value, calendar)
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = cftime.datetime(value.year, value.month, value.day, calendar=calendar)
    elif isinstance(value, dt.datetime):
        value = cftime.datetime(*value.timetuple()[:6], calendar=calendar)
    return float(cftime.date2num(value, units, calendar))


def _parse_date(text: str, calendar: str):
    import cftime

    date, _, clock = text.replace(" ", "T").partition("T")
    bits = [int(b) for b in date.split("-") if b]
    hms = [int(float(b)) for b in clock.split(":") if b] if clock else []
    if not 1 <= len(bits) <= 3 or len(hms) > 3:
        raise ActiveZarrError(f"cannot read {text!r} as a date; use e.g. '1850-01-01'")
    bits += [1] * (3 - len(bits))
    return cftime.datetime(*bits, *hms, calendar=calendar)


def layout(entries: list[Entry], var: str, dim: str | None = None) -> Layout:
    """Order ``entries`` along ``dim`` (default: the variable's first dimension)."""
    entries = [e for e in entries if var in e.variables]
    if not entries:
        raise ActiveZarrError(f"no catalog entry has variable '{var}'")
    dims = entries[0].dimensions(var)
    if dim is None:
        if not dims:
            raise ActiveZarrError(f"'{var}' is a scalar: there is no dimension to concatenate")
        dim = dims[0]
    for e in entries:
        if e.dimensions(var) != dims:
            raise narrowing_error(
                f"'{var}' has dimensions {list(e.dimensions(var))} in {e.source} but "
                f"{list(dims)} in {entries[0].source}: the files must share them",
                [e.source],
                [x.source for x in entries],
            )
    if dim not in dims:
        what = f"'{var}' has no dimension '{dim}' (dimensions: {', '.join(dims)})"
        raise ActiveZarrError(
            f"{what}; give concat_dim one of them", cli=f"{what}; give --concat-dim one of them"
        )
    axis = dims.index(dim)
    ranges = {e.source: e.coord_range(dim) for e in entries}
    with_coords = [s for s, r in ranges.items() if r is not None and r.min is not None]
    if with_coords and len(with_coords) != len(entries):
        missing = sorted(set(ranges) - set(with_coords))
        raise narrowing_error(
            f"{_names(missing)} {'has' if len(missing) == 1 else 'have'} no values for "
            f"coordinate '{dim}' in the catalog while {_names(with_coords)} "
            f"{'has' if len(with_coords) == 1 else 'have'}: the files must all have it or none",
            missing,
            list(ranges),
        )
    parts = [_part(e, var, axis, ranges[e.source]) for e in entries]
    units = calendar = None
    if with_coords:
        calendars: dict[str, list[str]] = {}
        for p in parts:
            calendars.setdefault(p.calendar or "standard", []).append(p.name)
        if len(calendars) > 1:
            usual = max(calendars, key=lambda c: len(calendars[c]))
            odd = [n for c, names in calendars.items() if c != usual for n in names]
            said = "; ".join(f"{c}: {_names(names, 2)}" for c, names in sorted(calendars.items()))
            raise narrowing_error(
                f"the files of '{var}' use different calendars for '{dim}' ({said}), so their "
                "dates cannot be laid end to end",
                odd,
                [p.name for p in parts],
            )
        calendar = parts[0].calendar
        # order in the first entry's units, then express everything in the first file's
        probe = parts[0].units
        parts.sort(key=lambda p: (_converted(p.lo, p.units, probe, calendar), p.name))
        units = parts[0].units
        for p in parts:
            p.lo = _converted(p.lo, p.units, units, calendar)
            p.hi = _converted(p.hi, p.units, units, calendar)
    offset = 0
    for p in parts:
        p.offset = offset
        offset += p.length
    return Layout(var, dim, dims, parts, units, calendar)


def _part(entry: Entry, var: str, axis: int, rng) -> Part:
    length = int(entry.variables[var]["shape"][axis])
    if rng is None or rng.min is None:
        return Part(entry, axis, length, 0, None, None, None, None)
    return Part(entry, axis, length, 0, rng.min, rng.max, rng.units, rng.calendar)


def _converted(value, src, dst, calendar) -> float:
    return float(convert_units(np.array([value], dtype=np.float64), src, dst, calendar)[0])


def window(
    layout: Layout, part: Part, lo: float, hi: float, storage_options: dict | None = None
) -> tuple[int, int]:
    """The index range ``[start, stop)`` of ``part`` whose coordinate lies in ``[lo, hi]``."""
    if part.lo is None:
        what = f"{part.name} has no coordinate values for '{layout.dim}' in the catalog"
        raise ActiveZarrError(
            f"{what}; where needs them (select by position with selection= instead)",
            cli=f"{what}; --where needs them (select by position with --select instead)",
        )
    if part.hi < lo or part.lo > hi:
        return 0, 0
    if lo <= part.lo and part.hi <= hi:
        return 0, part.length
    values = layout.coordinate_values(part, storage_options)
    inside = np.flatnonzero((values >= lo) & (values <= hi))
    if inside.size == 0:
        return 0, 0
    if np.any(np.diff(inside) != 1):
        what = (
            f"coordinate '{layout.dim}' of {part.name} is not monotonic: the values in "
            f"[{lo}, {hi}] are not one contiguous range"
        )
        raise narrowing_error(
            what,
            [part.name],
            [p.name for p in layout.parts],
            python="select by position with selection= instead, or leave the file out with "
            "select(path=GLOB)",
            cli="select by position with --select instead, or leave the file out with --path GLOB",
        )
    return int(inside[0]), int(inside[-1]) + 1


def concatenate(variables: list[VariableIndex], axis: int, source: str) -> VariableIndex:
    """One variable holding ``variables`` end to end along ``axis``: their chunk tables
    concatenated over the chunk grid, URL ids renumbered, inline chunks moved.

    Every variable must have the metadata of the first and all but the last a whole number
    of chunks along ``axis`` (``Catalog.reduce`` checks this before asking).
    """
    first = variables[0]
    grids = [v.grid for v in variables]
    urls: list[str] = []
    tables: dict[str, list[np.ndarray]] = {"url_ids": [], "offsets": [], "sizes": []}
    inline: dict[int, bytes] = {}
    shape = list(first.shape)
    shape[axis] = sum(v.shape[axis] for v in variables)
    grid = chunk_grid(tuple(shape), first.chunks)
    start = 0  # where each variable starts along axis, in chunks
    for v, g in zip(variables, grids, strict=True):
        v.load_chunks()  # the whole table (a no-op unless read lazily)
        ids = v.url_ids
        tables["url_ids"].append(np.where(ids >= 0, ids + len(urls), ids).reshape(g))
        tables["offsets"].append(v.offsets.reshape(g))
        tables["sizes"].append(v.sizes.reshape(g))
        urls += v.urls
        for flat, data in v.inline.items():
            coords = list(np.unravel_index(flat, g))
            coords[axis] += start
            inline[int(np.ravel_multi_index(coords, grid))] = data
        start += g[axis]
    joined = {k: np.concatenate(t, axis=axis).reshape(-1) for k, t in tables.items()}
    return dataclasses.replace(
        first,
        source=source,
        shape=tuple(shape),
        urls=urls,
        url_ids=joined["url_ids"].astype(np.int32, copy=False),
        offsets=joined["offsets"],
        sizes=joined["sizes"],
        inline=inline,
        sources={u: fp for v in variables for u, fp in v.sources.items()},
        source_sizes={u: n for v in variables for u, n in v.source_sizes.items()},
        loader=None,
        extent=None,  # netCDF-C's reads past a record variable's extent are per file
        unlimited=None,
    )


def narrowing_error(
    what: str,
    odd: list[str],
    every: list[str],
    *,
    python: str | None = None,
    cli: str | None = None,
) -> ActiveZarrError:
    """An error about files that do not go together, with how to choose the files that do
    (``python``/``cli``: another fix instead)."""
    fix_py, fix_cli = narrowing_fix(odd, every)
    return ActiveZarrError(f"{what}; {python or fix_py}", cli=f"{what}; {cli or fix_cli}")


def narrowing_fix(odd: list[str], every: list[str]) -> tuple[str, str]:
    """How to choose the files that go together, in Python and on the command line.

    ``odd`` are the files at fault among ``every`` file involved; when most of the others
    share a directory the odd ones are not in, the command-line fix names that directory.
    """
    folders = Counter(os.path.dirname(s) for s in every)
    usual, n = folders.most_common(1)[0]
    example = ""
    if n > 1 and any(os.path.dirname(s) != usual for s in odd):
        example = f", e.g. --path '{usual}/*' for the {n} files there,"
    cli = (
        f"choose the files with --path GLOB{example} or FACET=VALUE terms (`activezarr "
        "catalog search FACET=VALUE` lists the files they match)"
    )
    return "choose the files first with select(path=GLOB) or search(FACET=VALUE)", cli


def _names(sources: list[str], limit: int = 5) -> str:
    shown = ", ".join(sources[:limit])
    return shown + (f" and {len(sources) - limit} more" if len(sources) > limit else "")
