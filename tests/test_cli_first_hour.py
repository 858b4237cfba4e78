"""The command line as a newcomer meets it: the demo, errors, help and output for scripts.

CLI tests run the real entry point (``python -m activezarr``) in a subprocess, as a user would.
"""

from __future__ import annotations

import json
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from tests.catalog_files import write_series
from tests.cli_run import commands, run_cli

REPO = Path(__file__).parents[1]


run = run_cli


def test_demo_keeps_data_and_indexes_apart(tmp_path):
    proc = run("demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data" / "demo_tas.nc").is_file()
    indexes = tmp_path / "indexes"
    names = {p.name for p in indexes.iterdir() if not p.name.startswith(".")}
    assert names - {"catalog.db-wal", "catalog.db-shm"} == {"catalog.db", "demo_tas.json"}
    assert not [p for p in indexes.iterdir() if p.name.endswith(".lock") and not p.stat().st_size]
    assert not list(indexes.rglob("*.nc")), "the sample file belongs outside the index folder"
    assert "indexes/demo_tas.json" in proc.stdout


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture
def nc(tmp_path) -> Path:
    """``tas``: (time=4, y=2, x=3) with units and names, one column all missing, one NaN;
    ``time`` in days since 2000-01-01."""
    path = tmp_path / "data" / "tas.nc"
    path.parent.mkdir()
    with netCDF4.Dataset(path, "w") as ds:
        for name, n in (("time", 4), ("y", 2), ("x", 3)):
            ds.createDimension(name, n)
        t = ds.createVariable("time", "f8", ("time",))
        t.units = "days since 2000-01-01"
        t.calendar = "noleap"
        t[:] = [0, 31, 59, 90]
        v = ds.createVariable("tas", "f4", ("time", "y", "x"), fill_value=np.float32(1e20))
        v.units = "K"
        v.long_name = "near-surface air temperature"
        v.standard_name = "air_temperature"
        data = np.arange(24, dtype="f4").reshape(4, 2, 3) + 270
        data[:, 1, 2] = 1e20  # this cell never has a valid value
        data[0, 0, 0] = np.nan  # an unmasked NaN: the mean of column (0, 0) is NaN
        v.set_auto_maskandscale(False)
        v[:] = data
        ds.createVariable("nofill", "i4", ("x",))[:] = [1, 2, 3]
    return path


def _reject_constants(name):
    raise AssertionError(f"--json printed the non-JSON literal {name}")


# ------------------------------------------------------------------------------ output
def test_json_is_strict_masked_is_null_and_nan_is_a_string(nc, tmp_path):
    index = tmp_path / "indexes" / "tas.json"
    assert run("index", nc, "--out", tmp_path / "indexes").returncode == 0
    proc = run("reduce", index, "tas", "--op", "mean", "--axis", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout, parse_constant=_reject_constants)
    assert payload["result"][1][2] is None and payload["count"][1][2] == 0
    assert payload["result"][0][0] == "NaN"
    assert payload["result"][0][1] == pytest.approx(np.mean([271, 277, 283, 289]))


def test_text_says_when_there_is_no_valid_value(nc, tmp_path):
    run("index", nc, "--out", tmp_path / "indexes")
    proc = run("reduce", tmp_path / "indexes/tas.json", "tas", "--op", "min", "--select", ":,1,2")
    assert proc.returncode == 0, proc.stderr
    assert "no valid value" in proc.stdout and "inf" not in proc.stdout
    proc = run("reduce", tmp_path / "indexes/tas.json", "tas", "--op", "mean", "--axis", "0")
    assert "1 of 6 cells have no valid value" in proc.stdout


def test_catalog_reduce_says_no_file_matched_and_what_the_catalog_holds(tmp_path):
    files = write_series(tmp_path / "series", n=2)
    run("index", *files, "--out", tmp_path / "indexes")
    proc = run(
        "catalog", "reduce", "--catalog", tmp_path / "indexes", "--var", "tas", "--op", "mean",
        "--where", "time=2010-01-01..2010-12-31",
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "no file matched --where" in proc.stderr and "hold time 2000-01-01.." in proc.stderr


def test_server_is_checked(nc, tmp_path):
    run("index", nc, "--out", tmp_path / "indexes")
    index = tmp_path / "indexes/tas.json"
    proc = run("reduce", index, "tas", "--op", "max", "--server", "not-a-url")
    assert proc.returncode == 2 and "is not a server URL" in proc.stderr
    proc = run("reduce", index, "tas", "--op", "max", "--server", "http://127.0.0.1:9")
    assert proc.returncode == 1 and "cannot read" in proc.stderr and "local files" in proc.stderr


def test_python_warnings_are_one_line_each(tmp_path):
    path = tmp_path / "mv.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 4)
        v = ds.createVariable("v", "i4", ("x",))
        v.missing_value = np.float64(1.5)  # netCDF4 cannot cast it to int32: not applied
        v[:] = [1, 2, 3, 4]
    proc = run("reduce", path, "v", "--op", "count", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    want = "missing_value not used since it cannot be safely cast to variable data type"
    assert f"activezarr: warning: {want}" in lines, proc.stderr
    assert "UserWarning" not in proc.stderr and "warnings.warn" not in proc.stderr
    assert "count: 4" in proc.stdout


# ------------------------------------------------------------------------------ a .nc as index
def test_nc_given_as_index_is_indexed_on_the_fly_then_reused(nc, tmp_path):
    proc = run("reduce", nc, "tas", "--op", "count", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "is a netCDF4/HDF5 file, not an index; indexed it into indexes/tas.json" in proc.stderr
    assert "count: 20" in proc.stdout
    assert (tmp_path / "indexes" / "tas.json").is_file()
    again = run("info", nc, "tas", cwd=tmp_path)
    assert "using its index indexes/tas.json" in again.stderr, again.stderr


def test_active_on_a_netcdf_file_indexes_once_into_the_cache_dir(nc, tmp_path, monkeypatch):
    from activezarr import Active

    cache = tmp_path / "cache"
    monkeypatch.setenv("ACTIVEZARR_INDEX_DIR", str(cache))
    with Active(nc, "tas") as a:
        assert int(a.count[...]) == 20
    index = cache / "tas.json"
    stamp = index.stat().st_mtime_ns
    with Active(str(nc), "tas") as a:
        assert int(a.count[...]) == 20
    assert index.stat().st_mtime_ns == stamp, "an unchanged file is not indexed again"
    with netCDF4.Dataset(nc, "a") as ds:
        ds["tas"][0, 0, 1] = np.float32(1e20)
    with Active(nc, "tas") as a:
        assert int(a.count[...]) == 19, "a changed file is indexed again"


# ------------------------------------------------------------------------------ arguments
def test_negative_selection_after_a_space_and_verbose_after_the_command(nc, tmp_path):
    run("index", nc, "--out", tmp_path / "indexes")
    index = tmp_path / "indexes/tas.json"
    spaced = run("reduce", "-v", index, "tas", "--op", "max", "--select", "-1:,...", "--json")
    joined = run("reduce", index, "tas", "--op", "max", "--select=-1:,...", "--json")
    assert spaced.returncode == 0, spaced.stderr
    assert json.loads(spaced.stdout)["result"] == json.loads(joined.stdout)["result"] == 292.0


@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_jobs_below_one_is_a_usage_error(nc, tmp_path, jobs):
    proc = run("index", nc, "--out", tmp_path / "i", "--jobs", jobs)
    assert proc.returncode == 2 and "not 1 or more" in proc.stderr


def test_every_command_has_a_description_examples_and_help_with_defaults():
    import argparse

    found = dict(commands())
    assert {"index", "info", "reduce", "demo", "versions", "combine", "catalog reduce"} <= set(
        found
    )
    for name, parser in found.items():
        assert parser.description, f"{name} has no description"
        assert parser.epilog and "examples:" in parser.epilog, f"{name} has no examples"
        assert parser.epilog.count("activezarr ") >= 2, f"{name}: fewer than two examples"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                assert "default" in action.help, f"{name} {action.option_strings}: no default"


# ------------------------------------------------------------------------------ information
def test_info_shows_names_units_time_range_and_the_default_fill(nc, tmp_path):
    run("index", nc, "--out", tmp_path / "indexes")
    proc = run("info", tmp_path / "indexes/tas.json")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in (
        "units: K",
        "long_name: near-surface air temperature",
        "standard_name: air_temperature",
        "calendar: noleap",
        "time: 2000-01-01 .. 2000-04-01 (4 steps, calendar noleap)",
        "netCDF's default fill value for int32",
    ):
        assert text in out, f"{text!r} not in\n{out}"
    assert "KB" not in out and "KiB" not in out


def test_info_on_a_parquet_index(nc, tmp_path):
    run("index", nc, "--out", tmp_path / "pq", "--format", "parquet")
    proc = run("info", tmp_path / "pq/tas.parq", "tas")
    assert proc.returncode == 0, proc.stderr
    assert "tas(time=4, y=2, x=3)" in proc.stdout and "units: K" in proc.stdout


def test_versions_for_bug_reports():
    out = run("versions").stdout
    for name in ("os:", "xarray:", "pandas:", "parquet engine: pyarrow", "deflate", "hdf5:"):
        assert name in out, out
    if (REPO / ".git").exists():
        assert "activezarr git commit:" in out
