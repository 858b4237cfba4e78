"""ISO dates of CF time values in the common calendars, without building cftime objects.

``iso_dates(values, units, calendar)`` returns what ``cftime.num2date(values, units,
calendar)`` and each date's ``isoformat()`` return, the values rounded to microseconds the
way cftime rounds them, or ``None`` when the case is not one it handles: units
``<days|hours|minutes|seconds> since YYYY-MM-DD[ hh:mm[:ss]]`` (optionally ``Z`` / ``UTC``),
the proleptic Gregorian, standard/gregorian (dates from 1582-10-15 on), noleap/365_day,
all_leap/366_day and 360_day calendars, years 1 to 9999. The caller asks cftime for
the rest. A catalog entry decodes two dates per file; cftime's parsing and objects cost
more than the rest of the entry.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Sequence

US_PER_DAY = 86_400_000_000
_FACTORS = {  # cftime's UNIT_CONVERSION_FACTORS of the units handled here
    **dict.fromkeys(("second", "seconds", "sec", "secs", "s"), 1_000_000),
    **dict.fromkeys(("minute", "minutes", "min", "mins"), 60_000_000),
    **dict.fromkeys(("hour", "hours", "hr", "hrs", "h"), 3_600_000_000),
    **dict.fromkeys(("day", "days", "d"), US_PER_DAY),
}
_REFERENCE = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[ T](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.0*)?)?)?"
    r"(?:Z| UTC| Z)?"
)
_INT64 = (-(2**63), 2**63 - 1)
_GREGORIAN_START = dt.date(1582, 10, 15).toordinal()
_MONTHS_365 = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MONTHS_366 = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def iso_dates(values: Sequence[float | int], units: str, calendar: str) -> list[str] | None:
    """``[cftime.num2date(v, units, calendar).isoformat() for v in values]``, or None.

    Examples
    --------
    >>> iso_dates([15.5, 45.0], "days since 1850-01-01", "noleap")
    ['1850-01-16T12:00:00', '1850-02-15T00:00:00']
    """
    if not isinstance(units, str) or not isinstance(calendar, str):
        return None
    parts = units.split(None, 2)
    if len(parts) != 3 or parts[1].lower() != "since":
        return None
    factor = _FACTORS.get(parts[0].lower())
    match = _REFERENCE.fullmatch(parts[2].strip())
    days = _CALENDARS.get(calendar.lower())
    if factor is None or match is None or days is None:
        return None
    year, month, day, hour, minute, second = (int(g or 0) for g in match.groups())
    if hour > 23 or minute > 59 or second > 59:
        return None
    to_days, from_days = days
    base = to_days(year, month, day)
    offsets = microseconds(values, factor)
    if base is None or offsets is None:
        return None
    start = base * US_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1_000_000
    out = []
    for offset in offsets:
        date, rest = divmod(start + offset, US_PER_DAY)
        ymd = from_days(date)
        if ymd is None:
            return None
        seconds, micro = divmod(rest, 1_000_000)
        minutes, seconds = divmod(seconds, 60)
        hours, minutes = divmod(minutes, 60)
        text = f"{ymd[0]:04d}-{ymd[1]:02d}-{ymd[2]:02d}T{hours:02d}:{minutes:02d}:{seconds:02d}"
        out.append(f"{text}.{micro:06d}" if micro else text)
    return out


def microseconds(values: Sequence[float | int], factor: int) -> list[int] | None:
    """``values`` in microseconds as cftime's ``num2date`` rounds them (floats scaled in
    long double, rounded to the nearest, then a result one microsecond off a whole second
    moved onto it), exactly, in Python; None where cftime would raise."""
    kinds = {type(v) for v in values}
    if kinds <= {int}:
        out = [v * factor for v in values]
    elif kinds <= {int, float}:  # numpy makes every value a double
        try:
            out = [_scaled_float(float(v), factor) for v in values]
        except OverflowError:  # an int beyond any double
            return None
        if None in out:
            return _numpy_microseconds(values, factor)
    else:
        return _numpy_microseconds(values, factor)
    return out if all(_INT64[0] <= v <= _INT64[1] for v in out) else None


def _scaled_float(value: float, factor: int) -> int | None:
    """``_numpy_microseconds`` of one double, when ``value * factor`` is exact in a long
    double (so that its rounding needs no emulation); else None."""
    if not math.isfinite(value):
        return None
    num, den = value.as_integer_ratio()
    exact = num * factor
    if exact and (exact >> ((exact & -exact).bit_length() - 1)).bit_length() > _long_double_bits():
        return None
    whole, rest = divmod(exact, den)  # den is a power of two
    if 2 * rest > den or (2 * rest == den and whole % 2):  # round half to even (rint)
        rounded = whole + 1
    else:
        rounded = whole
    if rounded % 1_000_000 == 1:
        return whole  # floor
    if rounded % 1_000_000 == 999_999:
        return whole + (rest != 0)  # ceil
    return rounded


@functools.cache
def _long_double_bits() -> int:
    """Significant bits of numpy's long double: 64 on x86, 53 or 113 elsewhere."""
    import numpy as np

    return int(np.finfo(np.longdouble).nmant) + 1


def _numpy_microseconds(values: Sequence[float | int], factor: int) -> list[int] | None:
    """What cftime computes, with the same numpy operations."""
    import numpy as np  # here: the catalog's listing commands import no numpy

    arr = np.asanyarray(values)
    if arr.dtype.kind in "iu":
        out = [int(v) * factor for v in arr.tolist()]
        return out if all(_INT64[0] <= v <= _INT64[1] for v in out) else None
    if arr.dtype.kind != "f":
        return None
    scaled = factor * arr.astype(np.longdouble)
    if not np.isfinite(scaled).all() or (scaled < _INT64[0]).any() or (scaled > _INT64[1]).any():
        return None
    rounded = np.array(np.rint(scaled), dtype=np.int64)
    rounded = np.where(rounded % 1000000 == 1, np.array(np.floor(scaled), np.int64), rounded)
    rounded = np.where(rounded % 1000000 == 999999, np.array(np.ceil(scaled), np.int64), rounded)
    return [int(v) for v in rounded.tolist()]


def _gregorian_days(year: int, month: int, day: int, start: int = 1) -> int | None:
    try:
        days = dt.date(year, month, day).toordinal()
    except ValueError:
        return None
    return days if days >= start else None


def _gregorian_date(days: int, start: int = 1) -> tuple[int, int, int] | None:
    if not start <= days <= dt.date.max.toordinal():
        return None
    date = dt.date.fromordinal(days)
    return date.year, date.month, date.day


def _fixed(months: tuple[int, ...]):
    """Day numbers of a calendar whose every year has the same ``months``."""
    year_days = sum(months)
    before = [sum(months[:i]) for i in range(12)]

    def to_days(year: int, month: int, day: int) -> int | None:
        if not (1 <= month <= 12 and 1 <= day <= months[month - 1]):
            return None
        return year * year_days + before[month - 1] + day - 1

    def from_days(days: int) -> tuple[int, int, int] | None:
        year, day = divmod(days, year_days)
        if not 1 <= year <= 9999:
            return None
        month = 0
        while day >= months[month]:
            day -= months[month]
            month += 1
        return year, month + 1, day + 1

    return to_days, from_days


def _standard() -> tuple:
    """The mixed Julian/Gregorian calendar where it is Gregorian (from 1582-10-15)."""

    def to_days(year: int, month: int, day: int) -> int | None:
        return _gregorian_days(year, month, day, _GREGORIAN_START)

    def from_days(days: int) -> tuple[int, int, int] | None:
        return _gregorian_date(days, _GREGORIAN_START)

    return to_days, from_days


_CALENDARS = {
    "proleptic_gregorian": (_gregorian_days, _gregorian_date),
    "standard": _standard(),
    "gregorian": _standard(),
    "noleap": _fixed(_MONTHS_365),
    "365_day": _fixed(_MONTHS_365),
    "all_leap": _fixed(_MONTHS_366),
    "366_day": _fixed(_MONTHS_366),
    "360_day": _fixed((30,) * 12),
}
