"""The catalog's own decoding of CF time values against cftime's (``catalog/dates.py``)."""

from __future__ import annotations

import cftime
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from activezarr.catalog.dates import iso_dates
from activezarr.catalog.facets import time_range

SUPPORTED = ["standard", "gregorian", "proleptic_gregorian", "noleap", "365_day", "360_day",
             "all_leap", "366_day", "Noleap", "STANDARD"]  # fmt: skip
CALENDARS = st.sampled_from(SUPPORTED * 3 + ["julian", "tai", "none"])
UNITS = st.sampled_from(["days", "day", "d", "hours", "hour", "h", "hrs", "minutes", "min",
                         "seconds", "sec", "s", "Days"] * 3
                        + ["milliseconds", "months", "common_years", "weeks"])  # fmt: skip


@st.composite
def references(draw) -> str:
    year = draw(st.integers(0, 9999) | st.sampled_from([1, 1582, 1583, 1850, 1970, 2000]))
    month = draw(st.integers(1, 12) | st.integers(0, 13))
    text = f"{year:04d}-{month}-{draw(st.integers(1, 28) | st.integers(0, 32)):02d}"
    if draw(st.booleans()):
        hour, minute, second = draw(st.tuples(*[st.integers(0, 23) | st.integers(0, 61)] * 3))
        sep = draw(st.sampled_from([" ", "T"]))
        text += f"{sep}{hour}:{minute:02d}" + (f":{second:02d}" if draw(st.booleans()) else "")
        text += draw(st.sampled_from(["", ".0", ".000", ".5", "."]))
    return text + draw(st.sampled_from(["", "Z", " UTC", " Z", " +01:00", "+00:00"]))


values = st.one_of(
    st.floats(-1e7, 1e7, allow_nan=False),
    st.integers(-(10**7), 10**7),
    st.floats(-1e12, 1e12, allow_nan=False).map(lambda v: round(v, 3)),
    st.integers(-(10**6), 10**6).map(lambda v: v + 0.5),
    st.integers(-(10**8), 10**8).map(lambda v: v / 86400),
    # a microsecond either side of a whole second, in days or hours: cftime's corrections
    st.tuples(
        st.integers(-(10**9), 10**9), st.sampled_from([-1, 1]), st.sampled_from([86400, 3600])
    ).map(lambda t: (t[0] * 1_000_000 + t[1]) / 1e6 / t[2]),
)


def reference(vals, units, calendar):
    try:
        return [d.isoformat() for d in cftime.num2date(vals, units, calendar)]
    except (ValueError, TypeError, OverflowError):
        return None


@settings(max_examples=400, deadline=None)
@given(st.lists(values, min_size=1, max_size=3), UNITS, references(), CALENDARS)
@example([15.5, 345.5], "days", "1850-01-01", "noleap")
@example([1.0000000115740741e-05], "days", "2000-01-01", "standard")  # 1 µs off a second
@example([0.99999999], "seconds", "2000-01-01", "360_day")
def test_same_dates_as_cftime(vals, unit, ref, calendar):
    units = f"{unit} since {ref}"
    fast = iso_dates(vals, units, calendar)
    if fast is not None:
        assert fast == reference(vals, units, calendar)


@pytest.mark.parametrize(
    "vals, units, calendar",
    [
        ([15.5, 345.5], "days since 1850-01-01", "noleap"),
        ([0, 10**9], "seconds since 1970-01-01 00:00:00", "standard"),
        ([0.5, 7200.25], "hours since 1900-01-01 00:00:00.0", "gregorian"),
        ([15.5, 345.5], "days since 2000-01-01", "360_day"),
        ([-15.5, 59.0], "days since 2000-03-01T06:00Z", "proleptic_gregorian"),
        ([59.0, 1e5 / 3], "minutes since 1600-02-29", "366_day"),
    ],
)
def test_common_cases_skip_cftime(vals, units, calendar):
    fast = iso_dates(vals, units, calendar)
    assert fast is not None and fast == reference(vals, units, calendar)


@pytest.mark.parametrize(
    "units, calendar",
    [
        ("days since 1500-01-01", "standard"),  # Julian part of the mixed calendar
        ("days since 2000-01-01", "julian"),
        ("months since 2000-01-01", "360_day"),
        ("days since 2000-01-01 +01:00", "standard"),  # an offset
        ("days since 0000-01-01", "proleptic_gregorian"),
    ],
)
def test_other_cases_left_to_cftime(units, calendar):
    assert iso_dates([1.5, 20.0], units, calendar) is None
    coords = {"time": {"min": 1.5, "max": 20.0, "units": units, "calendar": calendar}}
    first = reference([1.5, 20.0], units, calendar)
    assert list(time_range(coords)) == [d.replace("T00:00:00", "") for d in first]
