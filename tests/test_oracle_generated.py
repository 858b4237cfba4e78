"""Every generated (file, variable): reductions, reads and components against the oracle.

The oracle is netCDF4-python + numpy.ma on the same selection (tests/oracle.py). Each test
builds the file's index once per session (``generated_index``) and compares
``Active(index, var).<op>(axis=...)[sel]`` with ``oracle_reduce`` over a matrix of
selections and axes.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.fixtures_data)
from __future__ import annotations

import h5py
import netCDF4
import numpy as np
import pytest

from activezarr.index.hdf5 import virtual_chunks
from tests.fixtures_data import (  # noqa: F401
    GENERATED_CASES,
    GENERATED_FILES,
    active_for,
    generated_dir,
    generated_index,
)
from tests.generate_corners import LIGHT_MATRIX_FILES, LIGHT_SELECTIONS
from tests.oracle import (
    OPS,
    assert_same,
    assert_same_read,
    nc_variable,
    oracle_atol,
    oracle_info,
    oracle_read,
    oracle_reduce,
    reduce_masked,
    sum_dtype,
)

# -------------------------------------------------------------------------- selections


def selections_for(shape: tuple[int, ...]) -> list[tuple[str, object]]:
    """(id, selection) pairs covering the contract's selection forms for ``shape``."""
    nd = len(shape)
    if nd == 0:
        return [("ellipsis", Ellipsis), ("empty_tuple", ())]
    n0 = shape[0]
    i1 = min(1, n0 - 1)
    sels: list[tuple[str, object]] = [
        ("full", Ellipsis),
        ("head2", (slice(0, 2), Ellipsis)),
        ("neg_bounds", (slice(-3, None),)),  # also fewer indices than dims
        ("neg_both", (slice(-4, -1),) + (slice(None),) * (nd - 1)),
        (
            "steps",
            tuple(slice(None, None, 2) if i % 2 == 0 else slice(1, -1, 3) for i in range(nd)),
        ),
        ("int_first", (i1,)),
        ("negint_negstep", (-1,) + (slice(None, None, -2),) * min(1, nd - 1)),
        ("ellipsis_int_last", (Ellipsis, shape[-1] // 2)),
        ("clamped", (slice(-100, 100),) + ((slice(1, 50, 2),) if nd > 1 else ())),
        ("empty", (slice(3, 3),)),
    ]
    if nd >= 3:
        sels.append(("int_middle", (slice(1, None), shape[1] - 1, slice(None, 4))))
    if nd >= 2:
        sels.append(("all_ints", tuple(s - 1 for s in shape)))
    return [(sid, sel) for sid, sel in sels if not _int_into_empty(sel, shape)]


def _int_into_empty(sel, shape: tuple[int, ...]) -> bool:
    """An integer index into a dimension of length 0 (refused by netCDF4 and activezarr)."""
    keys = sel if isinstance(sel, tuple) else (sel,)
    if Ellipsis in keys:
        at = keys.index(Ellipsis)
        keys = keys[:at] + (slice(None),) * (len(shape) - len(keys) + 1) + keys[at + 1 :]
    return any(isinstance(k, int) and n == 0 for k, n in zip(keys, shape, strict=False))


def axes_for(ndim: int) -> list[object]:
    """Axes to test for a selected array of ``ndim`` dimensions (None always)."""
    axes: list[object] = [None]
    if ndim >= 1:
        axes.append(0)
    if ndim >= 2:
        axes.append(ndim - 1)
        axes.append(tuple(range(ndim)))
    if ndim >= 3:
        axes.append((0, ndim - 1))
    return axes


# Variable shapes for parametrisation, from a throwaway copy of the files at collection time.
_SHAPES: dict[tuple[str, str], tuple[int, ...]] = {}


def _case_shape(filename: str, var: str) -> tuple[int, ...]:
    if not _SHAPES:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            for spec in GENERATED_FILES.values():
                path = Path(tmp) / spec.name
                spec.build(path)
                with netCDF4.Dataset(path) as ds:
                    for name in spec.variables:
                        _SHAPES[(spec.name, name)] = tuple(nc_variable(ds, name).shape)
    return _SHAPES[(filename, var)]


def _matrix() -> list:
    params = []
    for filename, var in GENERATED_CASES:
        for sel_id, sel in selections_for(_case_shape(filename, var)):
            if filename in LIGHT_MATRIX_FILES and sel_id not in LIGHT_SELECTIONS:
                continue
            params.append(pytest.param(filename, var, sel, id=f"{filename}-{var}-{sel_id}"))
    return params


MATRIX = _matrix()

# ---------------------------------------------------------------------------- helpers


def check_reduction(active, path, var, op, sel, axis, *, info=None, data=None, where=""):
    info = info or oracle_info(path, var)
    data = oracle_read(path, var, sel) if data is None else data
    expected = reduce_masked(data, op, axis)
    if axis is None:
        result = getattr(active, op)[sel]
    else:
        result = getattr(active, op)(axis=axis)[sel]
    assert_same(
        result,
        expected,
        op,
        atol=oracle_atol(data, op, axis),
        scaled=info["dtype"] if info["scaled"] else False,
        where=where or f"{var}{_fmt(sel)} axis={axis}",
    )


def _fmt(sel) -> str:
    sel = sel if isinstance(sel, tuple) else (sel,)

    def one(s):
        if s is Ellipsis:
            return "..."
        if isinstance(s, slice):
            parts = ["" if x is None else str(x) for x in (s.start, s.stop, s.step)]
            return ":".join(parts[:2] if s.step is None else parts)
        return str(s)

    return "[" + ", ".join(one(s) for s in sel) + "]"


# ------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(("filename", "var", "sel"), MATRIX)
def test_reduction_matches_oracle(generated_dir, generated_index, filename, var, sel, op):
    path = generated_dir / filename
    active = active_for(generated_index(filename), var)
    info = oracle_info(path, var)
    data = oracle_read(path, var, sel)
    failures = []
    for axis in axes_for(data.ndim):
        try:
            check_reduction(active, path, var, op, sel, axis, info=info, data=data)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("filename", "var", "sel"), MATRIX)
def test_read_matches_netcdf4(generated_dir, generated_index, filename, var, sel):
    path = generated_dir / filename
    active = active_for(generated_index(filename), var)
    info = oracle_info(path, var)
    expected = oracle_read(path, var, sel)
    assert_same_read(
        active[sel],
        expected,
        scaled=info["dtype"] if info["scaled"] else False,
        where=f"{var}{_fmt(sel)}",
    )


@pytest.mark.parametrize(("filename", "var"), GENERATED_CASES)
def test_properties_match_netcdf4(generated_dir, generated_index, filename, var):
    info = oracle_info(generated_dir / filename, var)
    active = active_for(generated_index(filename), var)
    assert tuple(active.shape) == info["shape"]
    assert active.ndim == len(info["shape"])
    assert np.dtype(active.dtype).newbyteorder("=") == info["dtype"].newbyteorder("=")
    with netCDF4.Dataset(generated_dir / filename) as ds:
        chunking = nc_variable(ds, var).chunking()
        itemsize = nc_variable(ds, var).dtype.itemsize
    if chunking == "contiguous":  # cut into virtual chunks of about 1 MB when large
        expected_chunks = virtual_chunks(info["shape"], itemsize)
    else:
        expected_chunks = tuple(chunking)
    assert tuple(active.chunks) == expected_chunks


COMPONENT_KEYS = {
    "mean": {"sum", "count"},
    "sum": {"sum", "count"},
    "min": {"min", "count"},
    "max": {"max", "count"},
    "count": {"count"},
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(("filename", "var"), GENERATED_CASES)
def test_components_match_oracle(generated_dir, generated_index, filename, var, op):
    path = generated_dir / filename
    active = active_for(generated_index(filename), var)
    info = oracle_info(path, var)
    sels = [s for sid, s in selections_for(info["shape"]) if sid in ("full", "head2", "steps")]
    failures = []
    for sel in sels:
        data = oracle_read(path, var, sel)
        axes = [None] + ([0] if data.ndim else [])
        for axis in axes:
            where = f"{var}{_fmt(sel)} axis={axis} components"
            try:
                parts = getattr(active, op)(axis=axis, components=True)[sel]
                assert isinstance(parts, dict), f"{where}: got {type(parts).__name__}, not dict"
                assert set(parts) == COMPONENT_KEYS[op], f"{where}: keys {sorted(parts)}"
                count = reduce_masked(data, "count", axis)
                assert_same(parts["count"], count, "count", where=where)
                has_data = np.asarray(count.data) > 0
                for key in COMPONENT_KEYS[op] - {"count"}:
                    expected = reduce_masked(data, key, axis)
                    if op == "mean" and _is_int64(data.dtype):
                        # a mean's sum of 64-bit integers is a float64 sum: it must not wrap
                        expected = reduce_masked(data.astype(np.float64), key, axis)
                    got = parts[key]
                    assert isinstance(got, np.ma.MaskedArray), f"{where}: {key} not masked array"
                    assert got.shape == expected.shape, f"{where}: {key} shape {got.shape}"
                    want_dtype = sum_dtype(expected.dtype) if key == "sum" else expected.dtype
                    assert np.dtype(got.dtype).newbyteorder("=") == want_dtype, (
                        f"{where}: {key} dtype {got.dtype} != {want_dtype}"
                    )
                    # where nothing was seen a partial may be masked or an identity (0);
                    # where something was, it must be the oracle's value
                    got_valid = np.ma.masked_array(
                        np.asarray(got.data), mask=~has_data | np.ma.getmaskarray(got)
                    )
                    assert not np.any(np.ma.getmaskarray(got) & has_data), (
                        f"{where}: {key} masked where count > 0"
                    )
                    assert_same(
                        got_valid,
                        expected,
                        key,
                        atol=oracle_atol(data, key, axis),
                        scaled=info["dtype"] if info["scaled"] else False,
                        where=where,
                    )
                    if op == "mean":
                        # and the components recombine into the mean
                        mean = oracle_reduce(path, var, "mean", sel, axis)
                        with np.errstate(invalid="ignore", divide="ignore"):
                            combined = np.ma.masked_array(
                                np.asarray(got.data, np.float64)
                                / np.maximum(np.asarray(parts["count"].data), 1),
                                mask=~has_data,
                            )
                        assert_same(
                            combined,
                            mean,
                            "mean",
                            atol=oracle_atol(data, "mean", axis),
                            scaled=info["dtype"] if info["scaled"] else False,
                            where=where,
                        )
            except AssertionError as exc:
                failures.append(str(exc))
    assert not failures, "\n".join(failures)


def _is_int64(dtype: np.dtype) -> bool:
    return dtype.kind in "iu" and dtype.itemsize == 8


def test_negative_axis(generated_dir, generated_index):
    path = generated_dir / "dims.nc"
    active = active_for(generated_index("dims.nc"), "d4")
    for op in OPS:
        for axis in (-1, (-1, 0), (0, -2)):
            check_reduction(active, path, "d4", op, (slice(None), 1), axis)


def test_call_without_axis_equals_getitem(generated_dir, generated_index):
    path = generated_dir / "dtypes.nc"
    active = active_for(generated_index("dtypes.nc"), "f4")
    for op in OPS:
        expected = oracle_reduce(path, "f4", op, (slice(1, 4),))
        assert_same(getattr(active, op)()[1:4], expected, op, atol=1e-9)
        assert_same(getattr(active, op)(axis=None)[1:4], expected, op, atol=1e-9)


def test_empty_selection_is_masked_with_count_zero(generated_dir, generated_index):
    active = active_for(generated_index("dtypes.nc"), "i4")
    for op in ("mean", "sum", "min", "max"):
        result = getattr(active, op)[5:5]
        assert isinstance(result, np.ma.MaskedArray) and result.shape == ()
        assert bool(np.ma.getmaskarray(result)), f"{op} of an empty selection is not masked"
    count = active.count[5:5]
    assert count.shape == () and int(count) == 0


def test_all_missing_is_masked(generated_dir, generated_index):
    for filename, var in (("cf.nc", "all_missing"), ("unwritten.nc", "never_written")):
        active = active_for(generated_index(filename), var)
        for op in ("mean", "sum", "min", "max"):
            result = getattr(active, op)[...]
            assert result.shape == () and bool(np.ma.getmaskarray(result)), (filename, var, op)
        assert int(active.count[...]) == 0


# ---------------------------------------------------------- the oracle against raw h5py


def _raw(path, var):
    with h5py.File(path, "r") as f:
        return f[var][...]


@pytest.mark.parametrize(
    ("filename", "var"),
    [
        ("cf.nc", "fill_f4"),
        ("cf.nc", "missing_vector"),
        ("cf.nc", "valid_range"),
        ("packed.nc", "packed_f32"),
        ("unsigned.nc", "u_i1"),
        ("dtypes.nc", "i4_nofill"),
        ("unwritten.nc", "partial_fill"),
    ],
)
def test_oracle_agrees_with_raw_h5py(generated_dir, filename, var):
    """The oracle's decoded values and reductions, rebuilt by hand from h5py's raw values."""
    path = generated_dir / filename
    raw = _raw(path, var)
    with netCDF4.Dataset(path) as ds:
        attrs = {k: ds[var].getncattr(k) for k in ds[var].ncattrs()}
    values = raw.astype(raw.dtype.newbyteorder("="))
    if attrs.get("_Unsigned") == "true":
        values = values.view(f"u{values.dtype.itemsize}")
    mask = np.zeros(values.shape, bool)
    if "_FillValue" in attrs:
        fill = np.array(attrs["_FillValue"], raw.dtype).view(values.dtype)
        mask |= values == fill
    else:
        mask |= values == netCDF4.default_fillvals[raw.dtype.str[1:]]
    for mv in np.atleast_1d(attrs.get("missing_value", [])):
        mask |= values == mv
    if "valid_range" in attrs:
        lo, hi = attrs["valid_range"]
        mask |= (values < lo) | (values > hi)
    if "scale_factor" in attrs or "add_offset" in attrs:
        values = values * attrs.get("scale_factor", 1) + attrs.get("add_offset", 0)
    expected = np.ma.masked_array(values, mask=mask)
    got = oracle_read(path, var)
    assert got.dtype == expected.dtype
    assert np.array_equal(np.ma.getmaskarray(got), mask)
    assert np.array_equal(got.compressed(), expected.compressed())
    valid = values[~mask].astype(np.float64)
    assert int(oracle_reduce(path, var, "count")) == valid.size
    np.testing.assert_allclose(float(oracle_reduce(path, var, "mean")), valid.mean(), rtol=1e-12)
    np.testing.assert_allclose(float(oracle_reduce(path, var, "sum")), valid.sum(), rtol=1e-12)
    assert float(oracle_reduce(path, var, "min")) == valid.min()
    assert float(oracle_reduce(path, var, "max")) == valid.max()
    by_axis = oracle_reduce(path, var, "count", Ellipsis, axis=0)
    assert np.array_equal(by_axis.data, (~mask).sum(axis=0))


def test_oracle_shapes_and_dtypes(generated_dir):
    """Oracle conventions: 0-d masked arrays, widened sums, masked empty results."""
    path = generated_dir / "dtypes.nc"
    for op, dtype in (("mean", "f8"), ("sum", "i8"), ("min", "i4"), ("max", "i4"), ("count", "i8")):
        r = oracle_reduce(path, "i4", op)
        assert isinstance(r, np.ma.MaskedArray) and r.shape == () and r.dtype == np.dtype(dtype)
        r = oracle_reduce(path, "i4", op, (slice(None), 0), axis=(0, 1))
        assert r.shape == () and r.dtype == np.dtype(dtype)
    assert oracle_reduce(path, "u1", "sum").dtype == np.uint64
    assert oracle_reduce(path, "f4", "sum").dtype == np.float64
    assert oracle_reduce(path, "f4", "max").dtype == np.float32
    assert oracle_reduce(path, "i4", "sum", (slice(2, 2),)).mask
    assert oracle_reduce(path, "i4", "min", (slice(2, 2),), axis=0).mask.all()
    # the int32 values overflow an int32 accumulator: the oracle must not
    exact = oracle_read(path, "i4").compressed().astype(object).sum()
    assert int(oracle_reduce(path, "i4", "sum")) == exact
    scalar = generated_dir / "scalar.nc"
    masked = oracle_read(scalar, "scalar_i4_masked")
    assert masked.shape == () and masked.dtype == np.int32 and masked.mask
