"""Malformed selections raise SelectionError naming the dimension; unknown variables name it.

The contract: out-of-range ints, zero steps, too many indices and wrong types raise
``SelectionError`` (a subclass of ActiveZarrError and IndexError) whose message names the
dimension, by name ("time") or by position. Slices clamp like numpy, so never raise.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.fixtures_data)
from __future__ import annotations

import re

import numpy as np
import pytest

from tests.fixtures_data import generated_dir, generated_index  # noqa: F401
from tests.oracle import assert_same, assert_same_read, oracle_read, reduce_masked

FILE, VAR = "layouts.nc", "zlib1"  # dims (time=9, lat=4, lon=6), chunks (4, 3, 4)
DIMS = ("time", "lat", "lon")


@pytest.fixture
def active(generated_index):
    import activezarr

    with activezarr.Active(generated_index(FILE), VAR) as a:
        yield a


def _names_dimension(message: str, position: int) -> bool:
    name = DIMS[position]
    return bool(
        re.search(rf"\b{name}\b", message)
        or re.search(rf"(dimension|dim|axis)\s*#?\s*{position}\b", message, re.IGNORECASE)
    )


# (id, selection, position of the dimension the message must name, or None)
BAD_SELECTIONS = [
    ("int_too_big", (9,), 0),
    ("int_too_small", (-10,), 0),
    ("int_too_big_dim1", (0, 4), 1),
    ("int_too_small_dim2", (slice(None), 0, -7), 2),
    ("int_after_ellipsis", (Ellipsis, 6), 2),
    ("zero_step", (slice(None, None, 0),), 0),
    ("zero_step_dim1", (0, slice(1, 3, 0)), 1),
    ("float_index", (1.5,), 0),
    ("float_index_dim2", (0, 0, 2.0), 2),
    ("float_slice_bound", (slice(0, 2.5),), 0),
    ("string_index", (0, "a"), 1),
    ("too_many", (0, 0, 0, 0), None),
    ("too_many_slices", (slice(None),) * 4, None),
    ("two_ellipses", (Ellipsis, 0, Ellipsis), None),
]


@pytest.mark.parametrize("how", ["read", "mean", "sum_axis0", "count"])
@pytest.mark.parametrize(
    ("sel", "position"), [pytest.param(s, p, id=i) for i, s, p in BAD_SELECTIONS]
)
def test_bad_selection_raises_selection_error(active, sel, position, how):
    import activezarr

    with pytest.raises(activezarr.SelectionError) as info:
        if how == "read":
            active[sel]
        elif how == "mean":
            active.mean[sel]
        elif how == "sum_axis0":
            active.sum(axis=0)[sel]
        else:
            active.count[sel]
    error = info.value
    assert isinstance(error, activezarr.ActiveZarrError)
    assert isinstance(error, IndexError)
    message = str(error)
    if position is not None:
        assert _names_dimension(message, position), (
            f"message does not name dimension {position} ({DIMS[position]!r}): {message}"
        )
    if "too_many" in str(sel):
        assert "3" in message or "dimension" in message


def test_too_many_indices_says_how_many(active):
    import activezarr

    with pytest.raises(activezarr.SelectionError) as info:
        active.max[0, 0, 0, 0]
    assert re.search(r"\b4\b", str(info.value)) and re.search(r"\b3\b", str(info.value))


def test_numpy_integer_indices_are_accepted(active, generated_dir):
    path = generated_dir / FILE
    sel = (np.int64(2), slice(np.int32(1), np.int16(3)), np.uint8(5))
    plain = (2, slice(1, 3), 5)
    assert_same(active.sum[sel], reduce_masked(oracle_read(path, VAR, plain), "sum"), "sum")


@pytest.mark.parametrize(
    "sel",
    [
        (slice(-100, 100),),
        (slice(5, 100), slice(-50, 2)),
        (slice(100, 200),),
        (slice(8, 2),),
        (slice(None, None, -1), slice(10, None, -2)),
    ],
    ids=["wide", "partly_outside", "all_outside", "reversed_bounds", "negative_steps"],
)
def test_slices_clamp_like_numpy(active, generated_dir, sel):
    path = generated_dir / FILE
    data = oracle_read(path, VAR, sel)
    assert data.shape == np.empty((9, 4, 6))[sel].shape
    for op in ("count", "sum", "max"):
        assert_same(getattr(active, op)[sel], reduce_masked(data, op), op, atol=1e-6)
    assert_same_read(active[sel], data)


@pytest.mark.parametrize("axis", [3, -4, (0, 0), (0, 5)])
def test_bad_axis_raises(active, axis):
    import activezarr

    with pytest.raises((activezarr.ActiveZarrError, ValueError, IndexError)):
        active.mean(axis=axis)[...]


def test_axis_refers_to_selected_dimensions(active):
    """After an int drops a dimension, axis 2 no longer exists."""
    import activezarr

    with pytest.raises((activezarr.ActiveZarrError, ValueError, IndexError)):
        active.mean(axis=2)[0]


def test_unknown_variable_names_it(generated_index):
    import activezarr

    with pytest.raises(activezarr.ActiveZarrError) as info:
        activezarr.Active(generated_index(FILE), "no_such_variable")
    assert "no_such_variable" in str(info.value)


def test_unknown_variable_in_refs_dict(generated_index):
    import json

    import activezarr

    refs = json.loads(generated_index(FILE).read_text())
    with pytest.raises(activezarr.ActiveZarrError, match="tas_missing"):
        activezarr.Active(refs, "tas_missing")


def test_missing_index_file_is_an_activezarr_error(tmp_path):
    import activezarr

    with pytest.raises(activezarr.ActiveZarrError, match="nothing.json"):
        activezarr.Active(tmp_path / "nothing.json", "tas")
