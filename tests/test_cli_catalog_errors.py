"""The catalog commands' errors as a command-line user meets them (issue 11).

``--server`` is refused the same way by every command that takes it; files that do not go
together (calendar, overlap, shape, dimensions, chunks) are named with the options that choose
the ones that do; ``--path`` globs match as the shell expands them, and one that matches
nothing says where the catalog's files are. Each runs the real entry point in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from tests.catalog_files import write_month, write_series
from tests.cli_run import commands, run_cli

# Python spellings a command-line user cannot type: keyword arguments, classes, "in Python"
PYTHONISMS = re.compile(
    r"\b[a-z_]+=(\[|\(|\{|None|True|False|\.\.\.|')|\bCatalog\.|\bActive\(|in Python|\bpass \w+="
)


run = run_cli


def one_error(proc: subprocess.CompletedProcess, code: int = 1) -> str:
    """The one error line of a failed command, checked for Python spellings."""
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 or code == 2, proc.stderr
    assert lines[-1].startswith("activezarr: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not PYTHONISMS.search(lines[-1]), f"a Python spelling in: {lines[-1]}"
    return lines[-1]


def write_odd(path: Path, *, calendar="standard", nlat=4, dims=("time", "lat", "lon")) -> Path:
    """A one-month ``tas`` file that differs from ``write_series`` in one respect."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = {"time": None, "lat": nlat, "lon": 6}
    with netCDF4.Dataset(path, "w") as ds:
        for name in ("time", "lat", "lon"):
            ds.createDimension(name, sizes[name])
        t = ds.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "days since 2000-01-01", calendar
        t[:] = [400.0, 401.0]
        v = ds.createVariable("tas", "f4", dims, fill_value=np.float32(1e20))
        shape = [2 if d == "time" else sizes[d] for d in dims]
        v[:] = np.ones(shape, "f4")
    return path


@pytest.fixture
def ws(tmp_path) -> Path:
    """``data/`` (3 months) indexed into ``indexes/``; commands run from ``tmp_path``."""
    write_series(tmp_path / "data", n=3)
    proc = run("index", "data/tas_00.nc", "data/tas_01.nc", "data/tas_02.nc", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return tmp_path


# ------------------------------------------------------------------------------ --server
def test_every_command_with_server_shares_one_check(ws):
    with_server = {
        name for name, p in commands() if any("--server" in a.option_strings for a in p._actions)
    }
    assert with_server == {"reduce", "catalog reduce"}
    server = "http://127.0.0.1:9"
    calls = {
        "reduce": ["reduce", "indexes/tas_00.json", "tas", "--op", "max"],
        "catalog reduce": ["catalog", "reduce", "--var", "tas", "--op", "max"],
    }
    for name in with_server:
        line = one_error(run(*calls[name], "--server", server, cwd=ws))
        assert f"--server {server} cannot read local files (" in line, line
        assert "tas_00.nc" in line and "drop --server" in line, line
        line = one_error(run(*calls[name], "--server-ca", "ca.pem", cwd=ws), code=2)
        assert "--server-ca ca.pem needs --server URL" in line
        usage = one_error(run(*calls[name], "--server", "not-a-url", cwd=ws), code=2)
        assert "is not a server URL" in usage


# ------------------------------------------------------------------------------ files that differ
def test_combine_names_the_odd_file_and_the_path_that_leaves_it_out(ws):
    write_month(ws / "other" / "m5.nc", 5, chunks=(1, 2, 3))
    assert run("index", "other/m5.nc", "-q", cwd=ws).returncode == 0
    line = one_error(run("combine", "--var", "tas", cwd=ws))
    assert "other/m5.nc has chunks [(1, 2, 3)]" in line, line
    assert f"--path '{ws / 'data'}/*' for the 3 files there" in line, line
    assert "`activezarr catalog search FACET=VALUE`" in line
    assert "`activezarr catalog reduce --var tas --op OP`" in line
    # what it suggests works, and the reduction it names needs no common grid
    assert run("combine", "--var", "tas", "--path", "data/*", cwd=ws).returncode == 0
    assert run("catalog", "reduce", "--var", "tas", "--op", "count", cwd=ws).returncode == 0


def test_overlapping_files_are_named_by_combine_and_noted_by_catalog_reduce(ws):
    write_month(ws / "rerun" / "m1.nc", 1)  # the same month as data/tas_01.nc
    assert run("index", "rerun/m1.nc", "-q", cwd=ws).returncode == 0
    line = one_error(run("combine", "--var", "tas", cwd=ws))
    assert "rerun/m1.nc" in line and "data/tas_01.nc" in line and "overlap in 'time'" in line
    assert "--path" in line
    proc = run("catalog", "reduce", "--var", "tas", "--op", "count", "--json", cwd=ws)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["files"]
    assert "overlap in 'time'" in proc.stderr and "2000-01-31..2000-02-03" in proc.stderr
    assert "--path GLOB" in proc.stderr


@pytest.mark.parametrize(
    ("odd", "said"),
    [
        ({"calendar": "noleap"}, r"use different calendars for 'time' \(noleap: "),
        ({"nlat": 3}, r"has (shape \[2, 3, 6\] in|chunks \[\(1, 3, 6\)\] where)"),
        ({"dims": ("time", "lon", "lat")}, r"has dimensions \['time', 'lon', 'lat'\] in"),
    ],
)
@pytest.mark.parametrize("command", ["combine", "catalog reduce"])
def test_files_that_do_not_go_together_are_named_with_what_to_select(ws, odd, said, command):
    write_odd(ws / "odd" / "x.nc", **odd)
    assert run("index", "odd/x.nc", "-q", cwd=ws).returncode == 0
    argv = command.split() + ["--var", "tas"] + (["--op", "mean"] if "reduce" in command else [])
    line = one_error(run(*argv, cwd=ws))
    assert re.search(said, line), line
    assert str(ws / "odd" / "x.nc") in line, line
    assert "--path GLOB" in line and "catalog search" in line, line
    assert f"--path '{ws / 'data'}/*'" in line, line


def test_where_on_another_dimension_says_select(ws):
    proc = run("catalog", "reduce", "--var", "tas", "--op", "max", "--where", "lat=0..10", cwd=ws)
    line = one_error(proc)
    assert "--where can only restrict the concatenated dimension 'time'" in line
    assert "--select" in line


# ------------------------------------------------------------------------------ --path
@pytest.mark.parametrize(
    ("where", "glob", "want"),
    [
        ("", "data/*.nc", 3),
        ("", "./data/tas_0[01].nc", 2),
        ("", "data/", 3),
        ("", "**/tas_02.nc", 1),
        ("", "tas_0[!1].nc", 2),  # no "/": the file name, in any directory
        ("", "*.nc", 3),
        ("data", "*.nc", 3),
        ("data", "./tas_00.nc", 1),
        ("data", "../data/*", 3),
        ("sub", "../data/tas_01.nc", 1),
        ("", "{abs}/data/*.nc", 3),
        ("data", "{abs}/data/tas_02.nc", 1),
    ],
)
def test_path_globs_match_as_the_shell_expands_them(ws, where, glob, want):
    cwd = ws / where
    cwd.mkdir(exist_ok=True)
    catalog = os.path.relpath(ws / "indexes", cwd)
    glob = glob.format(abs=ws)
    proc = run("catalog", "ls", "--catalog", catalog, "--path", glob, "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == want, glob


def test_a_star_does_not_cross_directories(ws):
    write_month(ws / "data" / "deeper" / "m9.nc", 9)
    assert run("index", "data/deeper/m9.nc", "-q", cwd=ws).returncode == 0
    ls = run("catalog", "ls", "--path", "data/*.nc", "--json", cwd=ws)
    assert len(json.loads(ls.stdout)) == 3
    ls = run("catalog", "ls", "--path", "data/**/*.nc", "--json", cwd=ws)
    assert len(json.loads(ls.stdout)) == 4


@pytest.mark.parametrize("command", ["catalog ls", "catalog reduce", "combine", "catalog verify"])
def test_a_path_that_matches_nothing_says_where_the_files_are(ws, command):
    argv = command.split() + (["--var", "tas"] if command in ("catalog reduce", "combine") else [])
    argv += ["--op", "mean"] if command == "catalog reduce" else []
    line = one_error(run(*argv, "--path", "dta/*.nc", cwd=ws))
    assert f"--path dta/*.nc (matched as {ws}/dta/*.nc) matches none of the 3 files" in line
    assert f"they are in {ws / 'data'}" in line


def test_facets_and_variables_that_match_nothing_list_what_there_is(ws):
    line = one_error(run("catalog", "ls", "experiment_id=piControl", cwd=ws))
    assert "matches experiment_id=piControl (values: historical)" in line
    line = one_error(run("catalog", "reduce", "--var", "ts", "--op", "max", cwd=ws))
    assert "holds variable 'ts' (variables: lat, lon, pr, tas, time)" in line
    proc = run("catalog", "ls", "--var", "ts", "--json", cwd=ws)
    assert json.loads(proc.stdout)["exit_status"] == 1
    # terms may come before, between and after the options
    argv = ["experiment_id=historical", "--path", "data/*", "variable_id=tas", "--json"]
    proc = run("catalog", "ls", *argv, cwd=ws)
    assert proc.returncode == 0 and len(json.loads(proc.stdout)) == 3, proc.stderr


# ------------------------------------------------------------------------------ --json
def test_json_reports_partial_failures_file_by_file(ws):
    (ws / "bad.nc").write_bytes(b"not a netCDF file")
    proc = run("index", "data/tas_00.nc", "bad.nc", "--json", cwd=ws)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["skipped"] == ["data/tas_00.nc"] and report["indexed"] == []
    assert [f["path"] for f in report["failed"]] == ["bad.nc"]
    assert "not a netCDF4/HDF5 file" in report["failed"][0]["error"]
    with open(ws / "data" / "tas_01.nc", "ab") as fh:  # the source changes after indexing
        fh.write(b"\0" * 16)
    proc = run("catalog", "verify", "--json", cwd=ws)
    assert proc.returncode == 1, proc.stderr
    verified = json.loads(proc.stdout)
    assert verified["entries"] == 3
    [problem] = verified["problems"]
    assert problem["kind"] == "changed" and problem["source"].endswith("tas_01.nc")
    assert problem["fix"].startswith("activezarr index ")
    # a command that fails as a whole still prints JSON: the error and the exit status
    proc = run("catalog", "reduce", "--var", "tas", "--op", "max", "--json", cwd=ws)
    assert proc.returncode == 1
    payload = json.loads(proc.stdout)
    assert (
        payload["exit_status"] == 1 and "tas_01.nc changed since it was indexed" in payload["error"]
    )
    assert proc.stderr.strip() == f"activezarr: error: {payload['error']}"


def test_indexing_again_in_the_other_format_replaces_the_index(ws):
    idx = ws / "indexes"
    for fmt, name, gone in (("parquet", "tas_00.parq", "tas_00.json"), ("json", "tas_00.json",
                                                                        "tas_00.parq")):  # fmt: skip
        proc = run("index", "data/tas_00.nc", "--format", fmt, "--force", "--json", cwd=ws)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["indexed"][0]["index"].endswith(name)
        assert (idx / name).exists() and not (idx / gone).exists()
        assert not list(idx.glob(".*.old")), "the replaced index left debris"
        [entry] = json.loads(run("catalog", "ls", "--path", "*_00.nc", "--json", cwd=ws).stdout)
        assert entry["index"].endswith(name)
        proc = run("reduce", idx / name, "tas", "--op", "count", cwd=ws)
        assert proc.returncode == 0, proc.stderr
