"""Property tests: random variables, chunkings, fills, selections and axes against the oracle.

Each example writes one netCDF4 file with netCDF4-python (in a temporary directory made inside
the test), indexes it, and compares every reduction and the read with netCDF4 + numpy.ma.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.generate import write_variable
from tests.oracle import (
    OPS,
    assert_reduces_like,
    assert_same,
    assert_same_read,
    oracle_atol,
    oracle_read,
    reduce_masked,
)

DTYPES = ("i2", "i4", "u1", "f4", "f8")
FILLS = {
    "i2": -32000,
    "i4": -99999,
    "u1": 0,
    "f4": np.float32(1e20),
    "f8": -9.5,
}  # outside the data

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def variables(draw):
    """(data, mask, chunks or None, dtype, zlib, explicit fill?)."""
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 12), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(DTYPES))
    contiguous = draw(st.booleans())
    chunks = None if contiguous else tuple(draw(st.integers(1, n)) for n in shape)
    zlib = False if contiguous else draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if dtype == "u1":
        data = rng.integers(1, 255, shape).astype(dtype)
    elif dtype.startswith("i"):
        data = rng.integers(-30000, 30000, shape).astype(dtype)
    else:
        data = rng.normal(0, 100, shape).astype(dtype)
    placement = draw(st.sampled_from(["none", "some", "all", "first_chunk", "one"]))
    mask = np.zeros(shape, bool)
    if placement == "some":
        mask = rng.random(shape) < draw(st.sampled_from([0.1, 0.5, 0.9]))
    elif placement == "all":
        mask[...] = True
    elif placement == "first_chunk":
        mask[tuple(slice(0, c) for c in (chunks or shape))] = True
    elif placement == "one":
        mask[tuple(rng.integers(0, n) for n in shape)] = True
    explicit_fill = draw(st.booleans())
    return data, mask, chunks, dtype, zlib, explicit_fill


@st.composite
def selections(draw, shape):
    """A basic-indexing selection of ``shape`` (ints, slices with steps/negatives, ...)."""
    items = []
    for n in shape:
        kind = draw(st.sampled_from(["int", "slice", "slice", "full"]))
        if kind == "int":
            items.append(draw(st.integers(-n, n - 1)))
        elif kind == "full":
            items.append(slice(None))
        else:
            bound = st.one_of(st.none(), st.integers(-n - 2, n + 2))
            step = draw(st.one_of(st.none(), st.integers(1, 4), st.integers(-4, -1)))
            items.append(slice(draw(bound), draw(bound), step))
    form = draw(st.sampled_from(["tuple", "prefix", "ellipsis"]))
    if form == "prefix":
        items = items[: draw(st.integers(0, len(items)))]
    elif form == "ellipsis" and items:
        cut = draw(st.integers(0, len(items)))
        items = [*items[:cut], Ellipsis, *items[cut + 1 :]]
    return tuple(items)


@st.composite
def axes(draw, ndim):
    if ndim == 0:
        return None
    choice = draw(st.sampled_from(["none", "one", "tuple"]))
    if choice == "none":
        return None
    if choice == "one":
        return draw(st.integers(0, ndim - 1))
    return tuple(sorted(draw(st.sets(st.integers(0, ndim - 1), min_size=1, max_size=ndim))))


@SETTINGS
@given(data=st.data(), var=variables())
def test_reductions_match_oracle(data, var):
    import activezarr

    values, mask, chunks, dtype, zlib, explicit_fill = var
    with tempfile.TemporaryDirectory() as tmp:
        path = write_variable(
            Path(tmp) / "p.nc",
            values,
            mask=mask,
            fill_value=FILLS[dtype] if explicit_fill else None,
            chunks=chunks,
            zlib=zlib,
            shuffle=zlib,
        )
        index = activezarr.build_index(path, out=Path(tmp) / "idx")
        sel = data.draw(selections(values.shape), label="selection")
        selected = oracle_read(path, "v", sel)
        axis = data.draw(axes(selected.ndim), label="axis")
        with activezarr.Active(index, "v") as active:
            assert_same_read(active[sel], selected, where=f"read {sel}")
            for op in OPS:
                assert_reduces_like(active, selected, sel, op, axis, where=f"{sel} axis={axis}")
            parts = active.sum(axis=axis, components=True)[sel]
            assert_same(parts["count"], reduce_masked(selected, "count", axis), "count")


@SETTINGS
@given(var=variables())
def test_whole_variable_is_the_oracle(var):
    """Full reductions on every layout, without selection noise."""
    import activezarr

    values, mask, chunks, dtype, zlib, explicit_fill = var
    with tempfile.TemporaryDirectory() as tmp:
        path = write_variable(
            Path(tmp) / "w.nc",
            values,
            mask=mask,
            fill_value=FILLS[dtype] if explicit_fill else None,
            chunks=chunks,
            zlib=zlib,
        )
        index = activezarr.build_index(path, out=Path(tmp) / "idx")
        full = oracle_read(path, "v")
        assert np.array_equal(np.ma.getmaskarray(full), mask)  # the writer did its job
        with activezarr.Active(index, "v") as active:
            for op in OPS:
                assert_same(
                    getattr(active, op)[...],
                    reduce_masked(full, op),
                    op,
                    atol=oracle_atol(full, op),
                    where=f"{op} shape={values.shape} chunks={chunks}",
                )
