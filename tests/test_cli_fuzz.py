"""A fuzzer over the command line's argument grammar: no input ends in a Python traceback.

Hypothesis draws ``reduce``/``info``/``index``/``catalog``/``combine`` invocations from a
grammar of good and bad values (netCDF files, directories, symlink loops, ``null`` JSON and
catalogs given as the index; missing and binary ``--from-list`` files; invalid
``--storage-options``; ``ftp://`` and bare ``s3://`` URLs; impossible dates in ``--where``;
negative, zero and non-numeric counts ...) and runs the entry point in-process
(``activezarr.cli.main(argv)``, for speed). Every run must exit 0, 1 or 2, print no
traceback, and never reach the catch-all "unexpected" message: each error has its own line.
A few cases also run as a subprocess, through ``python -m activezarr``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.catalog_files import write_series
from tests.generate import write_variable

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace holding one of everything a user might type."""
    from activezarr.catalog.indexing import index_many

    root = tmp_path_factory.mktemp("fuzz")
    data = root / "data"
    data.mkdir()
    values = np.arange(60, dtype="f4").reshape(3, 4, 5)
    mask = np.zeros(values.shape, bool)
    mask[0, 0] = True
    write_variable(data / "v.nc", values, mask=mask, fill_value=np.float32(-1), chunks=(2, 2, 5))
    series = write_series(root / "series", n=3)
    index_many([str(p) for p in series], root / "indexes", progress=False)
    index_many([str(data / "v.nc")], root / "indexes", progress=False)
    index_many([str(data / "v.nc")], root / "pq", progress=False, format="parquet")
    (root / "old_catalog.json").write_text(json.dumps({"version": 1, "entries": {}}))
    (root / "null.json").write_text("null")
    (root / "list.json").write_text("[1, 2]")
    (root / "other.json").write_text(json.dumps({"name": "not an index"}))
    (root / "bad.json").write_text('{"refs": ')
    (root / "empty.json").write_text("")
    (root / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (root / "cdf3.nc").write_bytes(b"CDF\x01" + bytes(100))
    (root / "list.txt").write_text(f"{data / 'v.nc'}\n")
    (root / "nopath.csv").write_text("file,size\nv.nc,1\n")
    (root / "a_file").write_text("x")
    os.symlink(root / "loop_b", root / "loop_a")
    os.symlink(root / "loop_a", root / "loop_b")
    return root


INDEXES = [
    "indexes/v.json",
    "indexes/tas_00.json",
    "pq/v.parq",
    "data/v.nc",
    "cdf3.nc",
    "data",
    "indexes",
    "old_catalog.json",
    "indexes/catalog.db",
    "loop_a",
    "null.json",
    "list.json",
    "other.json",
    "bad.json",
    "empty.json",
    "binary.bin",
    "missing.json",
    "ftp://host/x.json",
    "s3://",
    "s3://bucket",
    "https://",
    "",
]
VARIABLES = ["v", "tas", "pr", "time", "nosuch", "", "-1"]
SELECTS = [
    "0",
    "-1:",
    "-1:,...",
    "0:2,4:6,7:9",
    "...",
    "::2",
    "3,...,::2",
    "1:2:3:4",
    "a",
    "0,0,0,0,0",
    "::0",
    "99",
    "-99",
    ",",
    "0:1,,",
]
AXES = ["0", "-1", "0,2", "5", "x", "0,0", ""]
OPTIONS_JSON = ["{", "null", "[]", '{"anon": true}', "{}", '"x"', "1"]
WHERES = [
    "time=0..100",
    "time=2000-01-01..2000-02-15",
    "time=2000-13-45..2001",
    "time=2000-02-31..2000-03-01",
    "time=..",
    "time",
    "x=1..2",
    "=..",
    "time=abc..def",
    "time=5000..6000",
]
JOBS = ["0", "-1", "x", "2", "1"]
LISTS = ["list.txt", "missing.txt", "binary.bin", "nopath.csv", "data", "loop_a"]
OUTS = ["out", "a_file", "indexes"]
SERVERS = ["not-a-url", "http://127.0.0.1:9", "ftp://x", "http://"]
INDEX_PATHS = [
    "data/v.nc",
    "data/*.nc",
    "missing.nc",
    "cdf3.nc",
    "data",
    "loop_a",
    "binary.bin",
    "ftp://host/x.nc",
    "s3://",
    "s3://bucket",
]


def _maybe(draw, flag: str, values: list[str], p: bool = True) -> list[str]:
    return [flag, draw(st.sampled_from(values))] if p and draw(st.booleans()) else []


@st.composite
def command_lines(draw) -> list[str]:
    command = draw(st.sampled_from(["reduce", "info", "index", "catalog", "combine"]))
    argv: list[str] = []
    if draw(st.booleans()):
        argv.append("-v")
    if command == "reduce":
        argv += ["reduce", draw(st.sampled_from(INDEXES)), draw(st.sampled_from(VARIABLES))]
        op = draw(st.sampled_from(["mean", "sum", "min", "max", "count", "median", None]))
        argv += ["--op", op] if op else []
        argv += _maybe(draw, "--select", SELECTS)
        argv += _maybe(draw, "--axis", AXES)
        argv += _maybe(draw, "--server", SERVERS)
        argv += _maybe(draw, "--storage-options", OPTIONS_JSON)
        argv += ["--json"] if draw(st.booleans()) else []
    elif command == "info":
        argv += ["info", draw(st.sampled_from(INDEXES))]
        argv += [draw(st.sampled_from(VARIABLES))] if draw(st.booleans()) else []
        argv += _maybe(draw, "--storage-options", OPTIONS_JSON)
    elif command == "index":
        argv += ["index", *draw(st.lists(st.sampled_from(INDEX_PATHS), max_size=3))]
        argv += ["--out", draw(st.sampled_from(OUTS)) + "_fuzz"]
        argv += _maybe(draw, "--from-list", LISTS)
        argv += _maybe(draw, "--jobs", JOBS)
        argv += _maybe(draw, "--storage-options", OPTIONS_JSON)
    elif command == "catalog":
        sub = draw(st.sampled_from(["ls", "reduce", "verify", "show"]))
        argv += ["catalog", sub]
        catalog = draw(
            st.sampled_from(
                ["indexes", "indexes/catalog.db", "null.json", "missing.json", "binary.bin"]
            )
        )
        argv += ["--catalog", catalog]
        if sub == "show":
            argv.append(draw(st.sampled_from(["data/v.nc", "nosuch", "v.json"])))
        if sub == "reduce":
            argv += ["--var", draw(st.sampled_from(VARIABLES))]
            argv += ["--op", draw(st.sampled_from(["mean", "max", "count"]))]
            argv += _maybe(draw, "--where", WHERES)
            argv += _maybe(draw, "--select", SELECTS)
            argv += _maybe(draw, "--axis", AXES)
            argv += ["--json"] if draw(st.booleans()) else []
    else:
        argv += ["combine", "--catalog", draw(st.sampled_from(["indexes", "x"]))]
        argv += ["--var", draw(st.sampled_from(["tas", "v", "nosuch"]))]
    return argv


def run_in_process(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    from activezarr.cli import main

    out, err = io.StringIO(), io.StringIO()
    before = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        os.chdir(before)
    return code, out.getvalue(), err.getvalue()


def check_outcome(argv, code, err) -> None:
    shown = " ".join(argv)
    assert code in (0, 1, 2), f"`activezarr {shown}` exited {code}\n{err}"
    assert "Traceback" not in err, f"`activezarr {shown}` printed a traceback:\n{err}"
    assert "unexpected" not in err, f"`activezarr {shown}` hit the catch-all:\n{err}"
    if code == 1 and argv[-1] != "-v" and "index" not in argv[:2]:
        errors = [ln for ln in err.splitlines() if ln.startswith("activezarr: error:")]
        assert len(errors) == 1, f"`activezarr {shown}`: want one error line, got:\n{err}"
    if code == 2:
        assert err.strip().splitlines()[-1].startswith(("activezarr", "usage")), err


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(argv=command_lines())
def test_no_command_line_ends_in_a_traceback(ws, monkeypatch, argv):
    monkeypatch.setenv("ACTIVEZARR_INDEX_DIR", str(ws / "cache"))
    code, _, err = run_in_process(argv, ws)
    check_outcome(argv, code, err)


SUBPROCESS_CASES = [
    (["reduce", "data", "v", "--op", "mean"], 1, "is a directory"),
    (["reduce", "loop_a", "v", "--op", "mean"], 1, "loops back on itself"),
    (["info", "null.json"], 1, "holds JSON null, not a kerchunk index"),
    (["info", "old_catalog.json"], 1, "is an activezarr catalog, not an index"),
    (["info", "indexes"], 1, "is an index directory, not an index"),
    (["catalog", "ls", "--catalog", "null.json"], 1, "holds JSON null, not a catalog"),
    (["index", "--from-list", "missing.txt", "--out", "sp_out"], 1, "does not exist"),
    (["index", "--from-list", "binary.bin", "--out", "sp_out"], 1, "is a binary file"),
    (["index", "--from-list", "nopath.csv", "--out", "sp_out"], 1, "no 'path' column"),
    (["index", "data/v.nc", "--out", "a_file"], 1, "is a file; give a directory"),
    (["index", "ftp://host/x.nc", "--out", "sp_out"], 1, "ftp:// protocol is not supported"),
    (["index", "s3://", "--out", "sp_out"], 1, "name a bucket and an object"),
    (["reduce", "indexes/v.json", "v", "--op", "mean", "--storage-options", "{"], 2, "JSON"),
    (["index", "data/v.nc", "--jobs", "0"], 2, "not 1 or more"),
    (["reduce", "indexes/v.json", "v", "--op", "max", "--server", "not-a-url"], 2, "server URL"),
    (
        ["catalog", "reduce", "--catalog", "indexes", "--var", "tas", "--op", "mean",
         "--where", "time=2000-13-45..2001-01-01"],
        1,
        "has no month 13",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "code", "message"), SUBPROCESS_CASES)
def test_errors_are_one_line_from_the_real_entry_point(ws, argv, code, message):
    env = dict(os.environ, ACTIVEZARR_INDEX_DIR=str(ws / "cache"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "activezarr", *argv],
        capture_output=True,
        text=True,
        cwd=ws,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr, proc.stderr
    if code == 1:
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
