"""The accessor over random files: CF corner files (``tests/cf_hunt.py``'s generators)
against netCDF4, and groups and bins of random series against xarray.

xarray decodes some files otherwise than netCDF4-python (an ``_Unsigned`` spelling it does
not take, packing it leaves alone, a float32 where netCDF4 gives float64), and activezarr's
values follow netCDF4: results must hold them whole (no wrapped integer, no rounded mean), and
means of 64-bit integers must be summed in float64 as numpy.ma sums them. Both were wrong
before this hunt: ``uint32`` maxima labelled ``int32`` came out negative.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import activezarr
from activezarr.errors import ActiveZarrError
from tests import cf_hunt
from tests.oracle import OPS, oracle_atol, oracle_read, reduce_masked


def _dims(da) -> list:
    """The whole array, the first dimension, the others."""
    return [None, da.dims[0]] + ([list(da.dims[1:])] if da.ndim > 1 else [])


def check_accessor(path, da, name: str) -> int:
    """Every reduction of ``da`` over ``_dims`` equals netCDF4's; returns how many ran."""
    try:
        data = oracle_read(path, name, Ellipsis)
    except (TypeError, ValueError, OverflowError):
        return 0  # netCDF4 cannot decode it (a fill that does not fit the dtype): no oracle
    ran = 0
    for op in OPS:
        for dim in _dims(da):
            wanted = [dim] if isinstance(dim, str) else dim
            axis = None if dim is None else tuple(da.dims.index(d) for d in wanted)
            got = getattr(da.active, op)(dim).values
            want = reduce_masked(data, op, axis)
            where = f"{path.name}:{name} {op} over {dim}"
            if want.dtype.kind in "iu" and got.dtype.kind in "iu" and op != "mean":  # exact
                assert np.can_cast(want.dtype, got.dtype, "same_kind"), where
                valid = ~np.ma.getmaskarray(want)
                assert np.array_equal(np.asarray(got)[valid], want.data[valid]), where
                continue
            # (xarray's float dtype, where it decodes integers to floats: within its rounding)
            expected = np.ma.filled(want.astype(np.float64), np.nan)
            values = np.asarray(got, np.float64)
            assert values.shape == expected.shape, where
            slack = oracle_atol(data, op, axis) + 1e-6 * np.abs(expected)
            if got.dtype.kind == "f":  # a float32 result below its normal range is coarse
                slack = slack + np.finfo(got.dtype).tiny
            with np.errstate(invalid="ignore"):
                close = (np.abs(values - expected) <= slack) | (values == expected)
            assert (close | (np.isnan(values) & np.isnan(expected))).all(), (
                f"{where}: {values} != {expected}"
            )
            ran += 1
    return ran


def check_seed(root, seed: int) -> int:
    """A netCDF4 file and an h5py file drawn from ``seed`` (one generator for both); every
    reduction of every variable the accessor takes; returns how many were compared."""
    rng = np.random.default_rng(seed)
    ran = 0
    for kind, write in (("nc", cf_hunt.write_netcdf), ("h5", cf_hunt.write_hdf5)):
        path = root / f"hunt_{kind}.nc"
        write(path, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # xarray's and activezarr's notes on odd attributes
            try:
                index = activezarr.build_index(path, out=root / "indexes")
            except ActiveZarrError:
                continue  # a file activezarr refuses to index, with its reason: tested elsewhere
            ds = activezarr.open_dataset(index)
            for name, da in ds.data_vars.items():
                if not (da.ndim and da.size and da.dtype.kind in "biuf"):
                    continue  # strings and decoded times are refused (tested in test_xarray)
                if cf_hunt._undefined(activezarr.Active(index, str(name)), Ellipsis):
                    continue  # netCDF-C leaves part of the read uninitialised: no oracle
                ran += check_accessor(path, da, str(name))
    return ran


# seeds whose files broke the accessor: _Unsigned and packed integers labelled with xarray's
# dtype (wrapped), 64-bit integer means summed as integers, float32 sums past 3.4e38
@pytest.mark.parametrize("seed", [4, 5, 10, 12, 38, 49, 53, 113])
def test_files_that_broke_the_accessor(tmp_path, seed):
    assert check_seed(tmp_path, seed) > 0


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1))
def test_the_accessor_reduces_random_cf_files_as_netcdf4(tmp_path_factory, seed):
    check_seed(tmp_path_factory.mktemp("xhunt"), seed)


# ------------------------------------------------- groups and bins over random calendars
CALENDARS = ["standard", "noleap", "360_day", "all_leap", "julian", "proleptic_gregorian"]
GROUPINGS = ["time.month", "time.season", "time.year", "time.dayofyear", "1MS", "QS-DEC", "5D"]


def _time_selection(rng, n: int):
    """All, a range, a step from a start, or a sorted label list of positions."""
    kind = rng.integers(0, 4)
    if kind == 0:
        return slice(None)
    if kind == 1:
        start = int(rng.integers(0, n - 1))
        return slice(start, int(rng.integers(start + 1, n + 1)))
    if kind == 2:
        return slice(int(rng.integers(0, 5)), None, int(rng.integers(1, 4)))
    return np.sort(rng.choice(n, size=int(rng.integers(1, min(n, 60))), replace=False))


def _grouped(data, how: str):
    """``data.groupby(how)`` for a ``time.<part>``, else ``data.resample(time=how)``."""
    return data.groupby(how) if "." in how else data.resample(time=how)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1))
def test_groups_and_bins_match_xarray(tmp_path_factory, seed):
    """groupby/resample of a random selection of a random series (calendar, daily or
    monthly, time chunking) in every op, optionally with lat/lon reduced too, equals
    xarray's over the netCDF4 engine (these files have no valid_* attributes, so the two
    agree): values, dims, shape and group coordinate."""
    import xarray as xr

    from tests.xarray_files import write_series

    rng = np.random.default_rng(seed)
    root = tmp_path_factory.mktemp("ghunt")
    calendar = CALENDARS[rng.integers(len(CALENDARS))]
    freq = ("daily", "monthly")[rng.integers(2)]
    chunks = (int(rng.integers(1, 60)), 3, 4)
    nc = write_series(root / "s.nc", calendar=calendar, freq=freq, years=2, chunks=chunks)
    ds = activezarr.open_dataset(activezarr.build_index(nc, out=root / "indexes"))
    ref = xr.open_dataset(nc)
    for _ in range(3):
        picked = _time_selection(rng, ds.sizes["time"])
        how = GROUPINGS[rng.integers(len(GROUPINGS))]
        dims = [["time"], ["time", "lat"], ["time", "lat", "lon"]][rng.integers(3)]
        for op in OPS:
            want = getattr(_grouped(ref.tas.isel(time=picked), how), op)(
                dim=dims, **({"min_count": 1} if op == "sum" else {})
            )
            got = getattr(_grouped(ds.tas.isel(time=picked).active, how), op)(dims)
            where = f"{calendar} {freq} {chunks} {how} {op} over {dims}"
            assert got.dims == want.dims and got.dtype == want.dtype, where
            np.testing.assert_allclose(got.values, want.values, rtol=1e-5, err_msg=where)
            name = want.dims[0]
            assert np.array_equal(got[name].values, want[name].values), where


# -------------------------------------------------- selections and weights, random shapes
def _position_selection(rng, n: int):
    """All, a range (maybe empty), a negative step, a scalar, or a label list (repeats too)."""
    kind = rng.integers(0, 5)
    if kind == 0:
        return slice(None)
    if kind == 1:
        start = int(rng.integers(0, n))
        return slice(start, int(rng.integers(start, n + 1)))
    if kind == 2:
        return slice(None, None, -int(rng.integers(1, 3)))
    if kind == 3:
        return int(rng.integers(-n, n))
    return list(rng.choice(n, size=int(rng.integers(1, n + 1)), replace=bool(rng.random() < 0.2)))


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1))
def test_selections_and_weights_match_xarray(tmp_path_factory, seed):
    """Random ``isel`` on every dimension, random reduced dimensions, a plain reduction or a
    weighted mean/sum with 1-D weights along a random dimension: xarray's answer (weighted
    sums compared where something valid was seen)."""
    import xarray as xr

    from tests.xarray_files import write_series

    rng = np.random.default_rng(seed)
    root = tmp_path_factory.mktemp("whunt")
    shape = (int(rng.integers(2, 8)), int(rng.integers(2, 8)))
    chunks = (int(rng.integers(1, 40)), int(rng.integers(1, shape[0] + 1)),
              int(rng.integers(1, shape[1] + 1)))  # fmt: skip
    nc = write_series(root / "s.nc", freq="monthly", years=2, shape=shape, chunks=chunks)
    ds = activezarr.open_dataset(activezarr.build_index(nc, out=root / "indexes"))
    ref = xr.open_dataset(nc)
    for _ in range(4):
        picks = {
            d: _position_selection(rng, ds.sizes[d]) for d in ds.tas.dims if rng.random() < 0.6
        }
        da, expected_da = ds.tas.isel(picks), ref.tas.isel(picks)
        if da.ndim == 0:
            continue
        dims = [d for d in da.dims if rng.random() < 0.5] or None
        where = f"{chunks} {picks} over {dims}"
        along = da.dims[int(rng.integers(da.ndim))]
        weights = xr.DataArray(rng.random(da.sizes[along]) + 0.1, dims=along)
        for op in OPS:
            try:
                want = _xr(expected_da, op, dims)
            except ValueError:  # numpy's min/max of nothing: xarray has no answer
                continue
            got = getattr(da.active, op)(dims)
            np.testing.assert_allclose(got.values, want.values, rtol=1e-5, err_msg=where)
            assert got.dims == want.dims, where
        for op in ("mean", "sum"):
            got = getattr(da.active.weighted(weights), op)(dims)
            want = getattr(expected_da.weighted(weights), op)(dims)
            valid = np.asarray(da.active.count(dims) > 0)
            assert got.dims == want.dims, where
            np.testing.assert_allclose(got.values[valid], want.values[valid], rtol=1e-5)


def _xr(data, op: str, dims):
    """xarray's own reduction, with a sum over nothing missing (min_count=1) as activezarr's."""
    return getattr(data, op)(dims, **({"min_count": 1} if op == "sum" else {}))
