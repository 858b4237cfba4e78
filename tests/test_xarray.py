"""The xarray interface: ``open_dataset`` and ``.active`` against xarray itself.

xarray over the netCDF4 engine is the oracle where the two agree (values, dims, coords, dtype,
attrs); for ``valid_*`` attributes, which xarray ignores and netCDF4 applies, the oracle is
netCDF4-python + numpy.ma. Sums compare with xarray's ``min_count=1`` (a sum of nothing is
missing, as in activezarr's contract).
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.fixtures_data)
from __future__ import annotations

import subprocess
import sys
import warnings

import netCDF4
import numpy as np
import pytest
import xarray as xr

import activezarr
from activezarr.errors import ActiveZarrError, SelectionError
from tests.cli_run import cli_env
from tests.fixtures_data import REAL_DIR, real_index  # noqa: F401
from tests.oracle import oracle_read, reduce_masked
from tests.xarray_files import write_series, write_valid

OPS = ("mean", "sum", "min", "max", "count")
SERIES = {
    "daily_standard": {"calendar": "standard", "freq": "daily"},
    "daily_noleap": {"calendar": "noleap", "freq": "daily"},
    "monthly_360_day": {"calendar": "360_day", "freq": "monthly"},
    "monthly_standard": {"calendar": "standard", "freq": "monthly"},
}


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """name → (netCDF path, index path) for each generated series."""
    root = tmp_path_factory.mktemp("xarray_series")
    out = {}
    for name, kwargs in SERIES.items():
        nc = write_series(root / f"{name}.nc", **kwargs)
        out[name] = (nc, activezarr.build_index(nc, out=root / "indexes"))
    nc = write_valid(root / "valid.nc")
    out["valid"] = (nc, activezarr.build_index(nc, out=root / "indexes"))
    return out


def _pair(series, name):
    nc, index = series[name]
    return activezarr.open_dataset(index), xr.open_dataset(nc)


def _xr_reduce(da, op, dim):
    return getattr(da, op)(dim, **({"min_count": 1} if op == "sum" else {}))


def assert_like_xarray(got: xr.DataArray, expected: xr.DataArray, op: str, dims) -> None:
    """Values, dims, coords, dtype as xarray; attrs as xarray's plus the cell method."""
    assert got.dims == expected.dims
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.name == expected.name
    rtol = 1e-5 if got.dtype == np.float32 else 1e-12
    xr.testing.assert_allclose(got, expected, rtol=rtol)
    assert set(got.coords) == set(expected.coords)
    attrs = dict(got.attrs)
    if op != "count" and expected.attrs:
        cell = attrs.pop("cell_methods")
        names = [dims] if isinstance(dims, str) else list(dims)
        assert cell.endswith(" ".join(f"{d}:" for d in names) + " " + _cf(op)), cell
        expected_attrs = {k: v for k, v in expected.attrs.items() if k != "cell_methods"}
    else:
        attrs.pop("cell_methods", None)
        expected_attrs = {k: v for k, v in expected.attrs.items() if k != "cell_methods"}
    assert attrs == expected_attrs


def _cf(op):
    return {"mean": "mean", "sum": "sum", "min": "minimum", "max": "maximum"}[op]


SELECTIONS = {
    "all": lambda da: da,
    "sel_slices": lambda da: da.sel(time=slice("2000-03", "2001-06"), lat=slice(-40, 60)),
    "isel_step": lambda da: da.isel(time=slice(5, None, 7), lon=slice(None, None, -3)),
    "scalar": lambda da: da.isel(time=10),
    "label_lists": lambda da: da.isel(time=[0, 1, 2, 30, 31, 20, 3], lat=[4, 1, 2]),
    "transposed": lambda da: da.transpose("lon", "time", "lat").isel(lat=[5, 3, 4]),
}


@pytest.mark.parametrize("selection", sorted(SELECTIONS))
@pytest.mark.parametrize("name", ["daily_standard", "monthly_360_day"])
def test_reductions_match_xarray(series, name, selection):
    ds, ref = _pair(series, name)
    pick = SELECTIONS[selection]
    da, expected_da = pick(ds.tas), pick(ref.tas)
    for dim in ("time", ["lat", "lon"], None, "lon"):
        names = [dim] if isinstance(dim, str) else dim
        if names is not None and not set(names) <= set(da.dims):
            continue
        for op in OPS:
            got = getattr(da.active, op)(dim)
            expected = _xr_reduce(expected_da, op, dim)
            assert_like_xarray(got, expected, op, dim if dim is not None else list(da.dims))


def test_open_dataset_is_xarrays_view_of_the_file(series):
    ds, ref = _pair(series, "daily_noleap")
    assert set(ds.variables) == set(ref.variables)
    for name in ref.variables:
        assert ds[name].dims == ref[name].dims
    xr.testing.assert_identical(ds.time, ref.time)
    np.testing.assert_array_equal(ds.tas.values, ref.tas.values)
    assert ds.tas.attrs == ref.tas.attrs
    assert isinstance(ds.tas.variable._data, xr.core.indexing.MemoryCachedArray)  # lazy


def test_keep_attrs_false_and_cell_methods(series):
    ds, _ = _pair(series, "daily_standard")
    assert ds.tas.active.mean("time", keep_attrs=False).attrs == {}
    out = ds.tas.active.max(["lat", "lon"], keep_attrs=True)
    assert out.attrs["cell_methods"] == "time: mean lat: lon: maximum"
    assert out.attrs["units"] == "K"


def test_dataset_accessor_reduces_each_variable(series):
    ds, ref = _pair(series, "monthly_standard")
    got = ds.active.mean("time")
    expected = ref.mean("time")
    for name in ("tas",):
        assert_like_xarray(got[name], expected[name], "mean", "time")
    assert set(got.data_vars) == set(expected.data_vars)
    assert got.time_bnds.dtype == expected.time_bnds.dtype
    assert got.attrs == expected.attrs


def test_dataset_accessor_leaves_out_what_xarray_leaves_out(series):
    """A string variable along time (labels a user added): xarray's ds.mean drops it, ds.max
    and ds.count reduce it; the Dataset accessor does the same (its mean raised numpy's
    no-loop error)."""
    ds, ref = _pair(series, "monthly_standard")
    labels = ("time", np.array([f"m{i % 12}" for i in range(ds.sizes["time"])]))
    ds, ref = ds.assign(label=labels), ref.assign(label=labels)
    for op in ("mean", "max", "count"):
        got, expected = getattr(ds.active, op)("time"), getattr(ref, op)("time")
        assert set(got.data_vars) == set(expected.data_vars), op
        if "label" in expected:
            assert got.label.item() == expected.label.item(), op
        assert_like_xarray(got.tas, _xr_reduce(ref.tas, op, "time"), op, "time")


@pytest.mark.skipif(not REAL_DIR.is_dir(), reason=f"{REAL_DIR} is missing")
@pytest.mark.parametrize(
    "filename",
    ["CMIP6_IPSL-CM6A-LR_tas.nc", "daily_data.nc", "daily_data_fullmask.nc", "test1.nc"],
)
def test_real_files_match_xarray(real_index, filename):
    ds = activezarr.open_dataset(real_index(filename))
    ref = xr.open_dataset(REAL_DIR / filename)
    names = [n for n, v in ref.data_vars.items() if v.dtype.kind == "f" and v.ndim >= 2]
    assert names
    for name in names:
        da, expected_da = ds[name], ref[name]
        for dim in (da.dims[0], list(da.dims[1:]), None):
            for op in OPS:
                got = getattr(da.active, op)(dim)
                assert_like_xarray(got, _xr_reduce(expected_da, op, dim), op, dim or list(da.dims))


def test_dimension_coordinates_point_to_xarray(series):
    ds, _ = _pair(series, "daily_standard")
    with pytest.raises(SelectionError, match=r"'lat' is a dimension coordinate.*ds\.lat\.mean"):
        ds.lat.active.mean()


@pytest.mark.parametrize("var", ["vrange", "vmin", "vmax", "packed"])
def test_valid_attributes_follow_netcdf4(series, var):
    """xarray ignores valid_*: here the oracle is netCDF4-python with numpy.ma."""
    nc, index = series["valid"]
    ds = activezarr.open_dataset(index)
    sel = (slice(2, 20), slice(None), slice(1, 5))
    da = ds[var].isel(time=sel[0], lon=sel[2])
    data = oracle_read(nc, var, sel)
    for op in OPS:
        for dim, axis in (("time", 0), (["lat", "lon"], (1, 2)), (None, None)):
            got = getattr(da.active, op)(dim)
            expected = reduce_masked(data, op, axis)
            want = np.ma.filled(expected.astype(np.float64), np.nan)
            np.testing.assert_allclose(got.values.astype(np.float64), want, rtol=1e-6)
    assert int(da.active.count().values) < da.size  # valid_* masked values netCDF4 masks


GROUPS = ["time.month", "time.season", "time.year"]


@pytest.mark.parametrize("name", ["daily_standard", "daily_noleap", "monthly_360_day"])
def test_groupby_matches_xarray(series, name):
    ds, ref = _pair(series, name)
    da = ds.tas.sel(lat=slice(-50, 50))
    expected_da = ref.tas.sel(lat=slice(-50, 50))
    for group in GROUPS:
        for op in ("mean", "max", "count", "sum"):
            got = getattr(da.active.groupby(group), op)()
            expected = getattr(expected_da.groupby(group), op)(
                **({"min_count": 1} if op == "sum" else {})
            )
            assert_like_xarray(got, expected, op, "time")
    got = da.active.groupby("time.season").mean(["time", "lon"])
    expected = expected_da.groupby("time.season").mean(["time", "lon"])
    xr.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("name", ["daily_standard", "daily_noleap", "monthly_360_day"])
@pytest.mark.parametrize("freq", ["1MS", "QS-DEC", "YS"])
def test_resample_matches_xarray(series, name, freq):
    ds, ref = _pair(series, name)
    da = ds.tas.isel(time=slice(20, None))
    expected_da = ref.tas.isel(time=slice(20, None))
    for op in ("mean", "min"):
        got = getattr(da.active.resample(time=freq), op)()
        expected = getattr(expected_da.resample(time=freq), op)()
        assert_like_xarray(got, expected, op, "time")


def test_resample_keeps_empty_bins(series):
    ds, ref = _pair(series, "monthly_standard")
    keep = [0, 1, 5, 6, 7]  # months 3-5 absent: empty bins, NaN
    got = ds.tas.isel(time=keep).active.resample(time="1MS").mean()
    expected = ref.tas.isel(time=keep).resample(time="1MS").mean()
    assert_like_xarray(got, expected, "mean", "time")
    assert np.isnan(got.isel(time=3)).all()
    counts = ds.tas.isel(time=keep).active.resample(time="1MS").count()
    assert_like_xarray(
        counts, ref.tas.isel(time=keep).resample(time="1MS").count(), "count", "time"
    )
    assert counts.dtype == np.float64 and np.isnan(counts.isel(time=3)).all()  # as xarray


@pytest.mark.parametrize("dim", [["lat", "lon"], ["time", "lat", "lon"], "lon", None])
def test_weighted_matches_xarray(series, dim):
    ds, ref = _pair(series, "daily_noleap")
    weights = np.cos(np.deg2rad(ds.lat))
    da = ds.tas.sel(time=slice("2001", "2002"))
    expected_da = ref.tas.sel(time=slice("2001", "2002"))
    got = da.active.weighted(weights).mean(dim)
    expected = expected_da.weighted(np.cos(np.deg2rad(ref.lat))).mean(dim)
    assert_like_xarray(got, expected, "mean", dim or list(da.dims))
    got = da.active.weighted(weights).sum(dim)
    expected = expected_da.weighted(np.cos(np.deg2rad(ref.lat))).sum(dim)
    valid = da.active.count(dim) > 0
    xr.testing.assert_allclose(got.where(valid), expected.where(valid), rtol=1e-5)


def test_empty_selections_reduce_to_empty_results(series):
    """A selection with nothing along a kept dimension (lon=slice(3, 3)): plain and weighted
    reductions give xarray's empty result (the weighted one crashed on missing partials)."""
    ds, ref = _pair(series, "monthly_standard")
    da, expected_da = ds.tas.isel(lon=slice(3, 3)), ref.tas.isel(lon=slice(3, 3))
    weights = xr.DataArray(np.linspace(0.5, 1, ds.sizes["time"]), dims="time")
    got = da.active.weighted(weights).mean("time")
    expected = expected_da.weighted(weights).mean("time")
    assert got.dims == expected.dims and got.shape == expected.shape == (ds.sizes["lat"], 0)
    for op in OPS:
        assert_like_xarray(getattr(da.active, op)("time"), _xr_reduce(expected_da, op, "time"),
                           op, "time")  # fmt: skip


def test_boolean_and_integer_weights_give_xarrays_dtype(series):
    ds, ref = _pair(series, "daily_noleap")
    for weights in (ds.lat > 0, (ds.lat > 0).astype(int), np.cos(np.deg2rad(ds.lat)).astype("f4")):
        got = ds.tas.active.weighted(weights).mean(["lat", "lon"])
        expected = ref.tas.weighted(weights).mean(["lat", "lon"])
        assert got.dtype == expected.dtype, weights.dtype
        xr.testing.assert_allclose(got, expected, rtol=1e-5)


def test_weighted_warns_when_nothing_is_reduced_actively(series):
    ds, ref = _pair(series, "monthly_standard")
    weights = np.cos(np.deg2rad(ds.lat))
    with pytest.warns(UserWarning, match="vary along every reduced dimension"):
        got = ds.tas.active.weighted(weights).mean("lat")
    expected = ref.tas.weighted(np.cos(np.deg2rad(ref.lat))).mean("lat")
    xr.testing.assert_allclose(got, expected, rtol=1e-5)


def test_weights_with_missing_values_are_refused(series):
    ds, _ = _pair(series, "monthly_standard")
    weights = np.cos(np.deg2rad(ds.lat)).where(ds.lat > 0)
    with pytest.raises(ValueError, match="fillna"):
        ds.tas.active.weighted(weights)


def test_plain_xarray_dataset_with_index(series):
    nc, index = series["daily_standard"]
    ref = xr.open_dataset(nc)
    da = ref.tas.sel(time="2001")
    got = da.active(index=index).mean("time")
    assert_like_xarray(got, da.mean("time"), "mean", "time")


def test_errors_say_what_to_do(series):
    ds, ref = _pair(series, "monthly_standard")
    with pytest.raises(ActiveZarrError, match="open_dataset"):
        ref.tas.active.mean()
    with pytest.raises(SelectionError, match="in memory"):
        ds.tas.compute().active.mean()
    with pytest.raises(SelectionError, match="dask"):
        ds.tas.chunk({"time": 6}).active.mean()
    pointwise = ds.tas.isel(lat=xr.DataArray([0, 1], dims="p"), lon=xr.DataArray([2, 3], dims="p"))
    with pytest.raises(SelectionError, match="vectorized"):
        pointwise.active.mean()
    with pytest.raises(ValueError, match="not found"):
        ds.tas.active.mean("height")
    with pytest.raises(ActiveZarrError, match="xarray's own reduction"):
        ds.time_bnds.active.mean()
    not_an_index = series["daily_standard"][1].parent / "not_an_index.json"
    not_an_index.write_text('{"version": 1, "refs": {".zgroup": "{\\"zarr_format\\": 2}"}}')
    with pytest.raises(ActiveZarrError, match="not a kerchunk index"):
        activezarr.open_dataset(not_an_index)
    with pytest.raises(ActiveZarrError, match="does not exist"):
        activezarr.open_dataset(not_an_index.parent / "nothing.json")


def test_other_backends_through_the_accessor(series):
    """``da.active(...)`` options reach ``Active``: a thread-pool executor gives the same."""
    import concurrent.futures as cf

    ds, ref = _pair(series, "daily_standard")
    with cf.ThreadPoolExecutor(2) as pool:
        got = ds.tas.active(executor=pool, max_workers=2).mean("time")
    assert_like_xarray(got, ref.tas.mean("time"), "mean", "time")


def test_import_activezarr_does_not_import_xarray():
    code = (
        "import sys, activezarr; assert 'xarray' not in sys.modules; "
        "assert 'activezarr.catalog' not in sys.modules; activezarr.open_dataset; "
        "from activezarr import Catalog, open_dataset"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=cli_env())


def test_no_warnings_on_plain_reductions(series):
    ds, _ = _pair(series, "daily_noleap")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds.tas.active.mean("time")
        ds.tas.active.groupby("time.month").mean()


def test_netcdf4_engine_agrees_with_oracle_on_plain_files(series):
    """The generated series carry no valid_*: xarray and netCDF4 agree, so both oracles hold."""
    nc, _ = series["daily_standard"]
    with netCDF4.Dataset(nc) as f:
        data = f["tas"][:]
    ref = xr.open_dataset(nc)
    np.testing.assert_allclose(ref.tas.mean("time").values, data.mean(axis=0).filled(np.nan))


def test_readme_xarray_section_runs(tmp_path, monkeypatch):
    """The README's xarray block, as written (the Reductionist line aside: no server here)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    body = text[text.index("## xarray") :]
    body = body[: body.index("\n## ")]
    (block,) = re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)
    nc = write_series(tmp_path / "tas_day.nc", years=11, shape=(8, 6))
    activezarr.build_index(nc, out=tmp_path / "indexes")
    monkeypatch.chdir(tmp_path)
    code = "\n".join(line for line in block.splitlines() if "reductionist" not in line)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["tas"].sizes["time"] == 3653


GROUPED_PICKS = {
    "whole": lambda da: da,
    "slices": lambda da: da.isel(time=slice(7, None), lon=slice(1, 7)),
    "step": lambda da: da.isel(time=slice(None, None, -2), lat=slice(1, 5)),
    "labels": lambda da: da.isel(time=[400, 3, 4, 5, 90, 91, 700, 2, 365], lon=[0, 3, 1]),
}


@pytest.mark.parametrize("pick", list(GROUPED_PICKS))
def test_groupby_one_pass_and_runs_agree(series, pick):
    """The one-pass fold by group codes (chunks of 45 days cut across seasons) and the
    per-group runs (the remote path) give xarray's answer."""
    ds, ref = _pair(series, "daily_noleap")
    da, expected_da = GROUPED_PICKS[pick](ds.tas), GROUPED_PICKS[pick](ref.tas)
    grouped = da.active.groupby("time.season")
    for op in ("mean", "sum", "min", "max", "count"):
        expected = getattr(expected_da.groupby("time.season"), op)(
            **({"min_count": 1} if op == "sum" else {})
        )
        assert_like_xarray(getattr(grouped, op)(), expected, op, "time")
        target = da.active._target()
        assert grouped._one_pass(target)
        runs = grouped._by_runs(target, ["time"], op)
        codes = grouped._by_codes(target, ["time"], op)
        np.testing.assert_array_equal(runs.count, codes.count)
        if op != "count":
            valid = runs.count > 0
            np.testing.assert_allclose(runs.value[valid], codes.value[valid], rtol=1e-12)


def test_groups_of_a_variable_shorter_than_its_time_dimension(tmp_path):
    """Records never written read as fill (netCDF4 masks them): each month's statistics
    skip them. xarray's own reading keeps netCDF's default fill as data, so netCDF4 is the
    oracle here."""
    nc = tmp_path / "records.nc"
    with netCDF4.Dataset(nc, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("x", 3)
        t = ds.createVariable("time", "f8", ("time",))
        t.setncatts({"units": "days since 2000-01-01", "calendar": "noleap"})
        t[:] = np.arange(730) + 0.5
        tas = ds.createVariable("tas", "f4", ("time", "x"), chunksizes=(30, 3), zlib=True)
        tas[0:500] = np.random.default_rng(5).normal(280, 2, (500, 3)).astype("f4")
    da = activezarr.open_dataset(activezarr.build_index(nc, out=tmp_path / "indexes")).tas
    data = oracle_read(nc, "tas", Ellipsis)
    months = da.time.dt.month.values
    for op in OPS:
        got = getattr(da.active.groupby("time.month"), op)()
        want = np.ma.stack([reduce_masked(data[months == m], op, 0) for m in range(1, 13)])
        want = want.astype(np.float64).filled(np.nan) if op != "count" else want.data
        np.testing.assert_allclose(got.values, want, rtol=1e-6)
    halves = da.isel(time=slice(400, 600)).active.groupby("time.season").count()
    assert int(halves.sum()) == 3 * 100  # only records 400..499 were written


def test_dask_backed_data_located_by_coordinates(series):
    """xarray's own dask-backed datasets (kerchunk engine, netCDF4 with chunks) reduce
    actively when told the index; arithmetic in the graph is refused, not reduced."""
    nc, index = series["daily_noleap"]
    ref = xr.open_dataset(nc)
    expected = ref.tas.sel(time=slice("2001-02", "2001-11")).isel(lat=[4, 1, 2]).mean("time")
    for ds in (
        xr.open_dataset(str(index), engine="kerchunk"),
        xr.open_dataset(nc, chunks={"time": 90}),
        activezarr.open_dataset(index, chunks={}),
    ):
        da = ds.tas.sel(time=slice("2001-02", "2001-11")).isel(lat=[4, 1, 2])
        assert hasattr(da.data, "dask")
        got = da.active(index=index).mean("time")
        assert_like_xarray(got, expected, "mean", "time")
        scalar = ds.tas.isel(time=40, lon=slice(2, 5)).active(index=index).max("lat")
        xr.testing.assert_allclose(scalar, ref.tas.isel(time=40, lon=slice(2, 5)).max("lat"))
        with pytest.raises(SelectionError, match="dask"):
            (ds.tas * 2).active(index=index).mean("time")


def test_chunks_in_one_output_block_leave_a_batch_as_one_partial(series):
    """A time mean over many time chunks: the local backend adds up the chunks of a batch
    that land in the same output block, so a batch returns one partial per block, not per
    chunk; reversed steps and label lists agree with xarray."""
    ds, ref = _pair(series, "daily_standard")
    active = ds.tas.active._target().active
    seen = []
    reduce = active.local.reduce

    def counting(job, batch, stats=None):
        parts = reduce(job, batch, stats)
        seen.append((len(batch), len(parts)))
        return parts

    active.local.reduce = counting  # an observer: the real backend still does the work
    got = ds.tas.active.mean("time")
    assert_like_xarray(got, ref.tas.mean("time"), "mean", "time")
    blocks = 2 * 2  # (6, 8) cells in (3, 4) chunks
    assert sum(n for n, _ in seen) > blocks and all(parts <= blocks for _, parts in seen)
    for pick in (
        lambda da: da.isel(time=slice(None, None, -3), lat=[0, 1, 2, 5]),
        lambda da: da.isel(time=slice(500, 20, -1)),
    ):
        for op in ("mean", "max", "count"):
            got = getattr(pick(ds.tas).active, op)("time")
            assert_like_xarray(got, _xr_reduce(pick(ref.tas), op, "time"), op, "time")


def test_open_dataset_takes_a_data_file_as_active_does(series, tmp_path, monkeypatch):
    """A netCDF4 file given in place of an index is indexed once (in the index cache) and
    opened through its index; a file that is no index and cannot be indexed says so."""
    monkeypatch.setenv("ACTIVEZARR_INDEX_DIR", str(tmp_path / "cache"))
    nc, _ = series["daily_noleap"]
    ds = activezarr.open_dataset(nc)
    expected = xr.open_dataset(nc).tas.mean("time")
    assert_like_xarray(ds.tas.active.mean("time"), expected, "mean", "time")
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    activezarr.open_dataset(nc)  # the second open reuses the index
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    classic = tmp_path / "classic.nc"
    with netCDF4.Dataset(classic, "w", format="NETCDF3_CLASSIC") as out:
        out.createDimension("x", 2)
        out.createVariable("v", "f4", ("x",))[:] = [1, 2]
    with pytest.raises(ActiveZarrError, match="netCDF3 .classic.*nccopy -k netCDF4"):
        activezarr.open_dataset(classic)
    renamed = tmp_path / "data.json"  # a data file named like an index
    renamed.write_bytes(nc.read_bytes()[:4096])
    from activezarr.index.load import read_index

    with pytest.raises(ActiveZarrError, match="netCDF4/HDF5 data file, not an index"):
        read_index(str(renamed))


def test_open_dataset_on_a_catalog_selection(tmp_path):
    """Many files along time: a catalog selection opens as one Dataset, reduced actively."""
    from activezarr.catalog.indexing import index_many
    from tests.catalog_files import write_series as write_months

    paths = write_months(tmp_path / "data", 12)
    report = index_many([str(p) for p in paths], tmp_path / "indexes", jobs=1, progress=False)
    assert not report.failed
    cat = activezarr.Catalog(tmp_path / "indexes")
    ds = activezarr.open_dataset(cat.search(variable_id="tas", experiment_id="historical"))
    assert set(ds.data_vars) == {"tas", "pr"}
    assert list(activezarr.open_dataset(cat, var="pr").data_vars) == ["pr"]
    ref = xr.open_mfdataset(paths, combine="by_coords")
    assert ds.sizes["time"] == ref.sizes["time"]
    for op in ("mean", "max", "count"):
        got = getattr(ds.tas.isel(time=slice(3, 40)).active, op)("time")
        expected = _xr_reduce(ref.tas.isel(time=slice(3, 40)), op, "time").compute()
        assert_like_xarray(got, expected, op, "time")
    with pytest.raises(ActiveZarrError, match="var="):
        activezarr.open_dataset(cat.select(var="tas"), concat_dim="height")


def test_a_variable_xarray_cannot_decode_is_left_packed_not_fatal(tmp_path):
    """A two-element scale_factor: netCDF4-python warns and leaves that variable packed;
    open_dataset does the same for it and still decodes every other variable."""
    path = tmp_path / "odd.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 6)
        good = ds.createVariable("good", "i2", ("x",), fill_value=-1)
        good.scale_factor = 0.5
        good[:] = np.array([1, 2, -1, 4, 5, 6]) * 0.5
        odd = ds.createVariable("odd", "i2", ("x",))
        odd.scale_factor = np.array([2.0, 3.0])
        odd.set_auto_maskandscale(False)
        odd[:] = np.arange(6, dtype="i2")
    index = activezarr.build_index(path, tmp_path / "indexes")
    with pytest.warns(UserWarning, match="odd: its CF attributes cannot be applied"):
        ds = activezarr.open_dataset(index)
    with netCDF4.Dataset(path) as nc:
        want = nc["good"][:]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            packed = nc["odd"][:]
    np.testing.assert_array_equal(ds["good"].values, np.ma.filled(want.astype("f8"), np.nan))
    np.testing.assert_array_equal(ds["odd"].values, np.asarray(packed))
    assert ds["odd"].dtype == np.dtype("i2")
