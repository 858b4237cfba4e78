"""The real files in ../shared/data/real: every numeric variable against the oracle.

The files are read in place (never copied). emac.nc is netCDF3 and must be refused, by
``build_index`` and by the CLI, with a message that names the file.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.fixtures_data)
from __future__ import annotations

import re

import h5py
import netCDF4
import numpy as np
import pytest

from tests.cli_run import run_cli
from tests.fixtures_data import REAL_DIR, active_for, real_index  # noqa: F401
from tests.oracle import (
    OPS,
    assert_same,
    assert_same_read,
    oracle_atol,
    oracle_info,
    oracle_read,
    reduce_masked,
)

NETCDF3 = "emac.nc"
HDF5_FILES = sorted(p.name for p in REAL_DIR.glob("*.nc") if p.name != NETCDF3)

pytestmark = pytest.mark.skipif(not REAL_DIR.is_dir(), reason=f"{REAL_DIR} is missing")


def _numeric_variables(filename: str) -> list[str]:
    with netCDF4.Dataset(REAL_DIR / filename) as ds:
        return [name for name, v in ds.variables.items() if np.dtype(v.dtype).kind in "iuf"]


CASES = [(f, v) for f in HDF5_FILES for v in _numeric_variables(f)] if REAL_DIR.is_dir() else []


def selections_for(shape):
    if not shape:
        return [Ellipsis]
    sels = [Ellipsis, (slice(0, 2),), (slice(None, None, 3),), (-1,)]
    if len(shape) >= 2:
        sels.append((slice(1, None), slice(-5, None, 2)))
    if len(shape) >= 3:
        sels.append((slice(2, 9), slice(10, 60, 7), slice(-20, -2)))
    return sels


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(("filename", "var"), CASES)
def test_reductions_match_oracle(real_index, filename, var, op):
    path = REAL_DIR / filename
    info = oracle_info(path, var)
    active = active_for(real_index(filename), var)
    scaled = info["dtype"] if info["scaled"] else False
    failures = []
    for sel in selections_for(info["shape"]):
        data = oracle_read(path, var, sel)
        for axis in [None] + ([0] if data.ndim else []) + ([(0, 2)] if data.ndim >= 3 else []):
            where = f"{filename}:{var}[{sel}] axis={axis}"
            try:
                result = getattr(active, op)(axis=axis)[sel]
                expected = reduce_masked(data, op, axis)
                atol = oracle_atol(data, op, axis)
                assert_same(result, expected, op, atol=atol, scaled=scaled, where=where)
            except AssertionError as exc:
                failures.append(str(exc))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("filename", "var"), CASES)
def test_reads_match_netcdf4(real_index, filename, var):
    path = REAL_DIR / filename
    info = oracle_info(path, var)
    active = active_for(real_index(filename), var)
    assert tuple(active.shape) == info["shape"]
    assert np.dtype(active.dtype).newbyteorder("=") == info["dtype"].newbyteorder("=")
    for sel in selections_for(info["shape"]):
        assert_same_read(
            active[sel],
            oracle_read(path, var, sel),
            scaled=info["scaled"],
            where=f"{filename}:{var}[{sel}]",
        )


def test_cmip6_tas_components(real_index):
    path = REAL_DIR / "CMIP6_IPSL-CM6A-LR_tas.nc"
    active = active_for(real_index(path.name), "tas")
    sel = (slice(0, 12), slice(None), slice(10, 20))
    data = oracle_read(path, "tas", sel)
    parts = active.mean(components=True)[sel]
    assert set(parts) == {"sum", "count"}
    assert_same(parts["count"], reduce_masked(data, "count"), "count")
    assert_same(parts["sum"], reduce_masked(data, "sum"), "sum", atol=oracle_atol(data, "sum"))


# ------------------------------------------------------------------- netCDF3 is refused

NETCDF3_MESSAGE = re.compile(
    r"netcdf-?3|netcdf classic|classic|not (an? )?(netcdf4/)?hdf5", re.IGNORECASE
)


def test_netcdf3_is_refused_by_build_index(tmp_path):
    import activezarr

    with pytest.raises(activezarr.IndexBuildError) as info:
        activezarr.build_index(REAL_DIR / NETCDF3, out=tmp_path)
    message = str(info.value)
    assert NETCDF3 in message, message
    assert NETCDF3_MESSAGE.search(message), message
    assert isinstance(info.value, activezarr.ActiveZarrError)
    assert isinstance(info.value, ValueError)
    assert not (tmp_path / "emac.json").exists()


def test_missing_file_is_refused(tmp_path):
    import activezarr

    with pytest.raises(activezarr.IndexBuildError, match="nothere.nc"):
        activezarr.build_index(tmp_path / "nothere.nc", out=tmp_path / "out")


def test_cli_refuses_netcdf3_but_indexes_the_good_file(tmp_path):
    good = REAL_DIR / "zero_chunked.nc"
    out = tmp_path / "out"
    proc = run_cli("index", REAL_DIR / NETCDF3, good, "--out", out)
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # one clear line saying why (a per-file progress line may also name the file)
    reasons = [line for line in lines if NETCDF3 in line and NETCDF3_MESSAGE.search(line)]
    assert len(reasons) == 1, proc.stderr
    # the good file was still indexed, and works
    indexes = [p for p in out.glob("*.json") if p.name != "catalog.json"]
    assert [p.stem for p in indexes] == ["zero_chunked"], sorted(out.iterdir())
    import activezarr

    a = activezarr.Active(indexes[0], "var")
    assert_same(
        a.sum[...], reduce_masked(oracle_read(good, "var"), "sum"), "sum", where="zero_chunked"
    )


@pytest.mark.parametrize(
    ("filename", "var"),
    [("test1.nc", "tas"), ("CMIP6_IPSL-CM6A-LR_tas.nc", "tas"), ("daily_data.nc", "ta")],
)
def test_oracle_agrees_with_raw_h5py(filename, var):
    """The oracle on real files, rebuilt from h5py's raw values and the _FillValue rule."""
    path = REAL_DIR / filename
    with h5py.File(path, "r") as h5:
        raw = h5[var][()]
        fill = h5[var].attrs.get("_FillValue")
    fill = netCDF4.default_fillvals[raw.dtype.str[1:]] if fill is None else fill[0]
    mask = raw == fill
    got = oracle_read(path, var)
    assert got.dtype == raw.dtype
    assert np.array_equal(np.ma.getmaskarray(got), mask)
    assert np.array_equal(got.compressed(), raw[~mask])
    valid = raw[~mask].astype(np.float64)
    mean = reduce_masked(got, "mean")
    np.testing.assert_allclose(float(mean), valid.mean(), rtol=1e-12)
    assert float(reduce_masked(got, "max")) == valid.max()
    by_time = reduce_masked(got, "sum", axis=0)
    np.testing.assert_allclose(
        by_time.data, np.where(mask, 0, raw).astype(np.float64).sum(axis=0), rtol=1e-12
    )
