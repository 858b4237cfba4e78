"""A fuzzer over the command line: no input ends in a traceback, a hang or a half-written file.

Hypothesis draws invocations of every command and subcommand from a grammar of good and
hostile values (netCDF files, directories, symlink loops, ``null`` JSON, truncated JSON,
catalogs and parquet indexes given as the index; a corrupt ``catalog.db``; missing and binary
``--from-list`` files; invalid ``--storage-options``; ``ftp://`` and bare ``s3://`` URLs;
impossible dates and NaN in ``--where``; empty, unicode, negative, huge and NaN counts and
selections ...) and runs the entry point in-process (``activezarr.cli.main(argv)``, for
speed). Every run must

- exit 0, 1 (a runtime error) or 2 (a usage error), print no traceback and never reach the
  catch-all "unexpected" message;
- on failure, print one ``activezarr: error:`` line that spells its fix as options and
  commands, never as Python (``selection=``, ``Catalog.reduce``);
- with ``--json``, print strict JSON on stdout (no NaN literals), an error object on failure;
- leave every index directory consistent: each catalog row's index loads, no index file
  without its row, no temporary files, and no directory at all when a run into a new one
  indexed nothing.

Cases that could hang (named pipes), need another environment (CI=true without stdin, no HOME,
an unwritable cache directory, NO_COLOR, a 20-column terminal) or must show the exact message
run as a subprocess through ``python -m activezarr``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import sqlite3
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.catalog_files import write_series
from tests.cli_run import run_cli
from tests.generate import write_variable

# Python spellings a command-line user cannot type: keyword arguments, classes, "in Python"
PYTHONISMS = re.compile(
    r"\b[a-z_]+=(\[|\(|\{|None|True|False|\.\.\.|')|\bCatalog\.|\bActive\(|in Python|\bpass \w+="
)


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
    with netCDF4.Dataset(series[2], "a") as ds:  # non-finite attributes: --json must stay JSON
        ds.setncattr("nan_attr", np.nan)
        ds.setncattr("inf_attr", np.array([np.inf, -np.inf]))
    index_many([str(p) for p in series], root / "indexes", progress=False)
    index_many([str(data / "v.nc")], root / "indexes", progress=False)
    index_many([str(data / "v.nc")], root / "pq", progress=False, format="parquet")
    index_many([str(data / "v.nc")], root / "sel", progress=False)  # no fuzzed command writes here
    index_many([str(series[0])], root / "corrupt", progress=False)
    (root / "corrupt" / "catalog.db").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 20)
    for extra in (root / "corrupt").glob("catalog.db-*"):
        extra.unlink()
    shutil.copytree(root / "indexes", root / "damaged")  # rows edited outside activezarr
    with contextlib.closing(sqlite3.connect(root / "damaged" / "catalog.db")) as con, con:
        con.execute("UPDATE files SET attrs = '{bad' WHERE source LIKE '%tas_01.nc'")
        con.execute("UPDATE files SET fingerprint = 'x' WHERE source LIKE '%v.nc'")
    (root / "old_catalog.json").write_text(json.dumps({"version": 1, "entries": {}}))
    (root / "null.json").write_text("null")
    (root / "list.json").write_text("[1, 2]")
    (root / "other.json").write_text(json.dumps({"name": "not an index"}))
    (root / "bad.json").write_text('{"refs": ')
    (root / "empty.json").write_text("")
    whole = (root / "indexes" / "tas_00.json").read_text()
    (root / "truncated.json").write_text(whole[: len(whole) // 2])
    (root / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (root / "cdf3.nc").write_bytes(b"CDF\x01" + bytes(100))
    (root / "truncated.nc").write_bytes(series[0].read_bytes()[:3000])
    (root / "tâs ünï.nc").write_bytes(series[0].read_bytes())
    (root / "list.txt").write_text(f"{data / 'v.nc'}\n")
    (root / "nopath.csv").write_text("file,size\nv.nc,1\n")
    (root / "a_file").write_text("x")
    (root / "empty.nc").write_bytes(b"")
    shutil.copyfile(data / "v.nc", root / "sp ace.nc")
    shutil.copyfile(data / "v.nc", root / "new\nline.nc")
    with h5py.File(root / "plain.h5", "w") as f:  # HDF5 that is not netCDF
        f["x"] = np.arange(10.0)
    os.symlink(root / "loop_b", root / "loop_a")
    os.symlink(root / "loop_a", root / "loop_b")
    os.mkfifo(root / "fifo")
    return root


INDEXES = [
    "indexes/v.json",
    "indexes/tas_00.json",
    "pq/v.parq",
    "data/v.nc",
    "series/tas_01.nc",
    "tâs ünï.nc",
    "cdf3.nc",
    "truncated.nc",
    "truncated.json",
    "data",
    "indexes",
    "old_catalog.json",
    "indexes/catalog.db",
    "corrupt/catalog.db",
    "loop_a",
    "null.json",
    "list.json",
    "other.json",
    "bad.json",
    "empty.json",
    "binary.bin",
    "missing.json",
    "plain.h5",
    "sp ace.nc",
    "new\nline.nc",
    "empty.nc",
    "-",
    "ftp://host/x.json",
    "s3://",
    "s3://bucket",
    "https://",
    "",
]
VARIABLES = ["v", "tas", "pr", "time", "nosuch", "", " ", "-1", "tâs", "a b", "x" * 300]
NUMBERS = ["0", "-1", "1", "2", "99999999999999999999999", "-99999999999999999999", "nan", "inf",
           "1e400", "1.5", "", " ", "０", "x"]  # fmt: skip
SELECTS = [
    "0", "-1:", "-1:,...", "0:2,4:6,7:9", "...", "::2", "3,...,::2", "1:2:3:4", "a",
    "0,0,0,0,0", "::0", "1:2:-1", "::-1", "99", "-99", ",", "0:1,,", "...,...", "1.5", "0.0:1",
    " 0 : 2 , ... ", "", "nan", "inf", "99999999999999999999999", "-99999999999999999999:",
    "０:２", ":,:,:", "Ellipsis", "0:1:1e3", "0;1", "[0]", "(0,1)", "0 1", "1_0", "+1", "--1",
    "0x1", ":::", "::", ":", "-0", "0,", ",0", "...,0,...", "\t0", "１", "0:-99999999999999999999:-1",
]  # fmt: skip
AXES = ["0", "-1", "0,2", "5", "x", "0,0", "", " 1 , 2 ", "1.5", "nan", "99999999999999999999"]
OPTIONS_JSON = ["{", "null", "[]", '{"anon": true}', "{}", '"x"', "1", '{"anon": NaN}', ""]
WHERES = [
    "time=0..100", "time=2000-01-01..2000-02-15", "time=2000-13-45..2001", "time=2000-02-31..",
    "time=..", "time", "x=1..2", "=..", "time=abc..def", "time=5000..6000", "time=nan..1",
    "time=inf..-inf", "time=1e400..", "lat=0..10", "tïme=0..1", "time=2000-01-01T25:00..",
    "time=-99999999999-01-01..", "", "time=1..0",
]  # fmt: skip
PATHS = ["series/*.nc", "./series/tas_0[01].nc", "series/", "**/v.nc", "*.nc", "nothing/*",
         "", "/", "[", "tas_0[!1].nc", "../*"]  # fmt: skip
TERMS = ["experiment_id=historical", "experiment_id=nope", "source_id=*", "=x", "x", "foo=bar",
         "variable_id=tas,pr"]  # fmt: skip
CATALOGS = ["indexes", "indexes/catalog.db", "pq", "corrupt", "damaged", "null.json", "missing.json",
            "binary.bin", "data", "", "a_file", "old_catalog.json"]  # fmt: skip
LISTS = ["list.txt", "missing.txt", "binary.bin", "nopath.csv", "data", "loop_a", ""]
OUTS = ["out_fuzz", "a_file", "indexes", "", "data/v.nc", "new/deeper/dir"]
SERVERS = ["not-a-url", "http://127.0.0.1:9", "ftp://x", "http://", "", "http://h:99999"]
INDEX_PATHS = [
    "data/v.nc", "data/*.nc", "missing.nc", "cdf3.nc", "truncated.nc", "data", "loop_a",
    "binary.bin", "ftp://host/x.nc", "s3://", "s3://bucket", "", "tâs ünï.nc", "series/*.nc",
    "-", "plain.h5", "new\nline.nc", "empty.nc",
]  # fmt: skip


def _maybe(draw, flag: str, values: list[str]) -> list[str]:
    return [flag, draw(st.sampled_from(values))] if draw(st.booleans()) else []


def _pick(draw, values: list[str], good: int) -> str:
    """One of ``values``, its first ``good`` (the valid ones) half of the time: so that hostile
    values are met both first and after everything else was accepted."""
    return draw(st.sampled_from(values[:good] if draw(st.booleans()) else values))


def _selection(draw, command: str) -> list[str]:
    """The options that narrow a catalog: FACET=VALUE terms, --path, --attr."""
    argv = [_pick(draw, TERMS, 1) for _ in range(draw(st.integers(0, 2)))]
    argv += _maybe(draw, "--path", PATHS)
    argv += _maybe(draw, "--attr", ["title=*", "title", "experiment_id=nope", "=x", 'a"b=1'])
    return argv


def _catalog_command(draw) -> list[str]:
    sub = draw(st.sampled_from(["ls", "search", "reduce", "verify", "show", "prune", "export"]))
    argv = ["catalog", sub, "--catalog", _pick(draw, CATALOGS, 3)]
    if sub == "show":
        argv.append(draw(st.sampled_from(["data/v.nc", "nosuch", "v.json", ""])))
    if sub == "prune":
        return argv + (["--dry-run"] if draw(st.booleans()) else [])
    argv += _selection(draw, sub)
    if sub == "verify":
        argv += ["--json"] if draw(st.booleans()) else []
    if sub in ("ls", "search"):
        argv += _maybe(draw, "--var", VARIABLES)
        argv += ["--json"] if draw(st.booleans()) else []
    elif sub == "export":
        argv += ["--intake-esm", draw(st.sampled_from(["esm_fuzz", "a_file", ""]))]
        argv += _maybe(draw, "--name", ["ok", "", "../x", "a/b", ".", " "])
    elif sub == "reduce":
        argv += ["--var", _pick(draw, VARIABLES, 3)]
        argv += ["--op", draw(st.sampled_from(["mean", "max", "count", "sum"]))]
        argv += _maybe(draw, "--where", WHERES)
        argv += _maybe(draw, "--select", SELECTS)
        argv += _maybe(draw, "--axis", AXES)
        argv += _maybe(draw, "--concat-dim", ["time", "lat", "", "nosuch"])
        argv += _maybe(draw, "--server", SERVERS)
        argv += ["--json"] if draw(st.booleans()) else []
    return argv


@st.composite
def command_lines(draw) -> list[str]:
    command = draw(
        st.sampled_from(["reduce", "info", "index", "catalog", "combine", "demo", "versions"])
    )
    argv: list[str] = []
    if draw(st.booleans()):
        argv.append("-v")
    if command == "reduce":
        argv += ["reduce", _pick(draw, INDEXES, 6), _pick(draw, VARIABLES, 3)]
        op = _pick(draw, ["mean", "sum", "min", "max", "count", "median", "", None], 5)
        argv += ["--op", op] if op is not None else []
        argv += _maybe(draw, "--select", SELECTS)
        argv += _maybe(draw, "--axis", AXES)
        argv += _maybe(draw, "--server", SERVERS)
        argv += _maybe(draw, "--server-ca", ["", "a_file", "missing.pem"])
        argv += _maybe(draw, "--storage-options", OPTIONS_JSON)
        argv += _maybe(draw, "--allow-path", ["", "data", "/"])
        argv += ["--no-check-stale"] if draw(st.booleans()) else []
        argv += ["--json"] if draw(st.booleans()) else []
    elif command == "info":
        argv += ["info", _pick(draw, INDEXES, 6)]
        argv += [draw(st.sampled_from(VARIABLES))] if draw(st.booleans()) else []
        argv += _maybe(draw, "--storage-options", OPTIONS_JSON)
    elif command == "index":
        argv += ["index", *draw(st.lists(st.sampled_from(INDEX_PATHS), max_size=3))]
        argv += ["--out", draw(st.sampled_from(OUTS))]
        argv += _maybe(draw, "--from-list", LISTS)
        argv += _maybe(draw, "--jobs", NUMBERS)
        argv += _maybe(draw, "--format", ["json", "parquet", "zarr", ""])
        argv += _maybe(draw, "--storage-options", OPTIONS_JSON)
        argv += ["--force"] if draw(st.booleans()) else []
        argv += ["--json"] if draw(st.booleans()) else ["-q"]
    elif command == "catalog":
        argv += _catalog_command(draw)
    elif command == "combine":
        argv += ["combine", "--catalog", _pick(draw, CATALOGS, 3)]
        argv += ["--var", draw(st.sampled_from(["tas", "v", "nosuch", ""]))]
        argv += _selection(draw, "combine")
        argv += _maybe(draw, "--concat-dim", ["time", "lat", "", "nosuch"])
        argv += _maybe(draw, "--out", ["c_fuzz.json", "data", "", "nodir/x.json", "a_file"])
    elif command == "demo":
        argv += ["demo", "--out", draw(st.sampled_from(OUTS)), "--data", "demo_data_fuzz"]
    else:
        argv += ["versions"]
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


def _reject_constant(name):
    raise AssertionError(f"--json printed the non-JSON literal {name}")


def check_outcome(argv, code, out, err) -> None:
    shown = " ".join(map(repr, argv))
    assert code in (0, 1, 2), f"`activezarr {shown}` exited {code}\n{err}"
    assert "Traceback" not in err, f"`activezarr {shown}` printed a traceback:\n{err}"
    assert "unexpected" not in err, f"`activezarr {shown}` hit the catch-all:\n{err}"
    payload = None
    if "--json" in argv and argv[0] != "versions":
        try:
            payload = json.loads(out, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"`activezarr {shown}`: not JSON ({exc}):\n{out!r}") from None
    errors = [ln for ln in err.splitlines() if ln.startswith("activezarr: error:")]
    for line in errors:
        assert not PYTHONISMS.search(line), f"`activezarr {shown}`: Python in {line}"
    if code == 1 and "verify" in argv[:3] and (re.search(r"\d+ problems", err) or payload):
        return  # files changed since indexing: one line (or JSON object) per problem, with its fix
    if code == 1 and {"ls", "search"} & set(argv[:3]) and "is damaged" in err:
        assert payload is None or isinstance(payload, list), payload  # the readable entries
        return  # one line per damaged entry, the others listed
    if code == 1 and "index" in argv[:2] and ("failed:" in err or payload):
        assert errors or payload["failed"], err  # one line (or JSON object) per failed file
        return
    if code:
        assert len(errors) == 1, f"`activezarr {shown}`: want one error line, got:\n{err}"
        if "-v" not in argv:
            assert err.strip().splitlines()[-1] == errors[0], err
            stray = [ln for ln in err.splitlines() if not ln.startswith("activezarr: ")]
            assert not stray, f"`activezarr {shown}`: lines besides the error:\n{err}"
        if payload is not None:
            message = errors[0].removeprefix("activezarr: error: ")
            assert payload == {"error": message, "exit_status": code}, payload
    if code == 2:  # argparse's errors end with the help to read; ours name the option
        assert " -h`" in errors[0] or "needs" in errors[0] or "index -:" in errors[0], err


def assert_consistent(directory: Path) -> None:
    """Every catalog row's index loads, every index has its row, nothing temporary is left."""
    from activezarr.catalog import Catalog
    from activezarr.index.load import read_index
    from activezarr.index.parquet import read_metadata

    if not (directory / "catalog.db").is_file():
        return
    leftovers = [p.name for p in directory.glob(".*.tmp")] + [
        p.name for p in directory.glob(".*.parq.*")
    ]
    assert not leftovers, f"{directory}: temporary files left: {leftovers}"
    cat = Catalog(directory)
    names = {e.index.name for e in cat}
    for e in cat:  # a parquet index is a directory: its .zmetadata, not JSON
        (read_metadata if e.index.suffix == ".parq" else read_index)(str(e.index))
    on_disk = {p.name for p in directory.iterdir() if p.suffix in (".json", ".parq")}
    on_disk -= {n for n in on_disk if n.startswith("combined_")} | set(cat.combined)
    assert on_disk <= names, f"{directory}: indexes without a catalog row: {on_disk - names}"


def _has_rows(out: Path) -> bool:
    """Whether a run recorded any file in ``out``'s catalog (what ``-q`` does not print)."""
    import sqlite3

    if not (out / "catalog.db").is_file():
        return False
    with contextlib.closing(sqlite3.connect(out / "catalog.db")) as con:
        return con.execute("SELECT COUNT(*) FROM files").fetchone()[0] > 0


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(argv=command_lines())
def test_no_command_line_ends_in_a_traceback(ws, monkeypatch, argv):
    monkeypatch.setenv("ACTIVEZARR_INDEX_DIR", str(ws / "cache"))
    monkeypatch.setenv("CI", "true")
    out_dir = argv[argv.index("--out") + 1] if "--out" in argv and "index" in argv[:2] else None
    new = out_dir and not (ws / out_dir).exists()
    try:
        code, out, err = run_in_process(argv, ws)
        check_outcome(argv, code, out, err)
        if out_dir:
            report = json.loads(out) if "--json" in argv else {}
            made = report.get("indexed") or report.get("skipped") or "indexed " in out
            made = made or ("-q" in argv and _has_rows(ws / out_dir))  # -q prints no summary
            if new and not made and "up to date" not in out:
                assert not (ws / out_dir).exists(), f"{out_dir} left behind by a run that failed"
            elif (ws / out_dir).is_dir():
                assert_consistent(ws / out_dir)
    finally:
        for made in ("out_fuzz", "new"):  # later examples start from no such directory again
            shutil.rmtree(ws / made, ignore_errors=True)


# --select strings: integers (huge ones too), slices with any bounds and steps (zero, negative),
# "...", spaces; the answer must be numpy's, or one error line where numpy raises
_INT = st.one_of(st.integers(-7, 7), st.sampled_from([10**20, -(10**20)]))
_BOUND = st.one_of(st.none(), _INT)
_ITEM = st.one_of(
    _INT,
    st.tuples(_BOUND, _BOUND, st.one_of(st.none(), st.integers(-4, 4))).map(lambda t: slice(*t)),
    st.just(Ellipsis),
)


def _as_text(item, pad: str) -> str:
    if item is Ellipsis:
        return "..."
    if isinstance(item, slice):
        parts = ["" if v is None else str(v) for v in (item.start, item.stop, item.step)]
        return pad + ":".join(parts[:2] if item.step is None else parts) + pad
    return f"{pad}{item}{pad}"


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(items=st.lists(_ITEM, min_size=1, max_size=4), pad=st.sampled_from(["", " "]),
       axis=st.sampled_from([None, "0", "-1", "0,1"]))  # fmt: skip
def test_select_strings_give_numpys_answer_or_one_error_line(ws, items, pad, axis):
    values = np.ma.masked_array(np.arange(60, dtype="f8").reshape(3, 4, 5))
    values[0, 0] = np.ma.masked
    text = ",".join(_as_text(i, pad) for i in items)
    argv = ["reduce", "sel/v.json", "v", "--op", "sum", f"--select={text}", "--json"]
    argv += ["--axis", axis] if axis else []
    code, out, err = run_in_process(argv, ws)
    check_outcome(argv, code, out, err)
    try:
        chosen = values[tuple(items)]
        axes = None if axis is None else tuple(int(a) for a in axis.split(","))
        want_count = np.ma.count(chosen, axis=axes)
        want_sum = np.ma.sum(chosen, axis=axes)
    except (IndexError, ValueError, TypeError, np.exceptions.AxisError):
        assert code == 1, f"--select={text!r}: numpy refuses it, activezarr printed {out}"
        return
    assert code == 0, f"--select={text!r} --axis {axis}: {err}"
    got = json.loads(out)
    assert got["shape"] == list(np.shape(want_count)), text  # JSON's [] has no shape of its own
    count = np.asarray(got["count"], dtype=np.int64).reshape(got["shape"])
    assert np.array_equal(count, want_count), text
    want = np.ma.filled(np.ma.masked_where(np.asarray(want_count) == 0, want_sum), np.nan)
    result = np.asarray(got["result"], dtype=object).reshape(got["shape"])
    result = np.where(result == None, np.nan, result).astype("f8")  # null: no valid value
    assert np.allclose(result, want, equal_nan=True), text


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    text=st.text(alphabet="0123456789-+:,. ._;[]()eEx\t１…", min_size=1, max_size=14),
    option=st.sampled_from(["--select", "--axis"]),
)
def test_any_select_or_axis_text_is_an_answer_or_one_line_naming_it(ws, text, option):
    argv = ["reduce", "sel/v.json", "v", "--op", "max", f"{option}={text}", "--json"]
    code, out, err = run_in_process(argv, ws)
    check_outcome(argv, code, out, err)
    assert code in (0, 1) or code == 2 and text == "--", err
    if code:
        assert option in err, f"{option}={text!r}: the error does not name {option}: {err}"


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
    # named pipes: refused without reading them (reading would block)
    (["reduce", "fifo", "v", "--op", "mean"], 1, "index fifo is a named pipe (FIFO), not a file"),
    (["info", "fifo"], 1, "is a named pipe (FIFO)"),
    (["catalog", "ls", "--catalog", "fifo"], 1, "--catalog fifo is a named pipe (FIFO)"),
    (["index", "fifo", "--out", "sp_out"], 1, "fifo is a named pipe (FIFO), not a netCDF4"),
    (["combine", "--var", "tas", "--out", "fifo"], 1, "--out fifo is a named pipe (FIFO)"),
    (["demo", "--out", "fifo"], 1, "--out fifo is a named pipe (FIFO)"),
    # empty paths are usage errors, not "."
    (["index", "data/v.nc", "--out", ""], 2, "argument --out: is empty"),
    (["reduce", "", "v", "--op", "mean", "--json"], 2, "argument index: is empty"),
    (["catalog", "export", "--intake-esm", ""], 2, "argument --intake-esm: is empty"),
    # no stdin (CI): --from-list - says so
    (["index", "--from-list", "-", "--out", "sp_out"], 1, "--from-list <stdin> lists no paths"),
    (["catalog", "ls", "--catalog", "corrupt"], 1, "cannot be opened as a catalog"),
    (["catalog", "show", "--catalog", "damaged", "series/tas_01.nc"], 1, "tas_01.nc is damaged"),
    (["reduce", "truncated.json", "tas", "--op", "mean"], 1, "is not valid JSON"),
    (["reduce", "truncated.nc", "tas", "--op", "mean"], 1, "cannot be read as HDF5"),
    (["combine", "--var", "tas", "--out", "data"], 1, "--out data is a directory"),
    (["combine", "--var", "tas", "--out", "nodir/x.json"], 1, "nodir does not exist"),
    (["catalog", "reduce", "--var", "tas", "--op", "max", "--where", "time=nan..1"], 1, "NaN"),
    (["reduce", "indexes/v.json", "v", "--op", "max", "--server-ca", "a_file"], 2, "--server"),
    # a terminal escape or bytes that are not UTF-8 in a name: escaped, never sent raw
    (["reduce", "sel/v.json", "\x1b[31mred", "--op", "mean"], 1, "'\\x1b[31mred'"),
    (["catalog", "ls", "--path", "\udcff/*.nc"], 1, "is not UTF-8 text"),
    (["reduce", "\udcff.json", "v", "--op", "mean"], 1, "\\udcff.json does not exist"),
]  # fmt: skip

# what a CI job or a minimal container gives: no stdin, no HOME, no colour, a narrow terminal
HOSTILE_ENV = {"CI": "true", "NO_COLOR": "1", "COLUMNS": "20", "LINES": "5", "TERM": "dumb"}


def run_hostile(ws: Path, argv, cwd: Path | None = None, **env) -> object:
    environment = {"HOME": None, **HOSTILE_ENV, "ACTIVEZARR_INDEX_DIR": str(ws / "cache"), **env}
    return run_cli(*argv, cwd=cwd or ws, env=environment)


@pytest.mark.parametrize(("argv", "code", "message"), SUBPROCESS_CASES)
def test_errors_are_one_line_from_the_real_entry_point(ws, argv, code, message):
    proc = run_hostile(ws, argv)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and "\x1b" not in proc.stderr
    assert message in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("activezarr: error:")]
    assert len(errors) == 1, proc.stderr
    assert not PYTHONISMS.search(errors[0]), errors[0]
    if code == 1:
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    if "--json" in argv:
        assert json.loads(proc.stdout)["exit_status"] == code
    assert not (ws / "sp_out").exists(), "a failed run into a new directory left it behind"


def test_a_locked_catalog_is_one_line_and_keeps_nothing_half(ws, tmp_path, monkeypatch):
    import sqlite3

    from activezarr.catalog import store

    out = tmp_path / "locked"
    assert run_in_process(["index", str(ws / "data" / "v.nc"), "--out", str(out), "-q"], ws)[0] == 0
    holder = sqlite3.connect(out / "catalog.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the catalog
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.2)  # instead of waiting two minutes
    try:
        argv = ["index", str(ws / "series" / "tas_00.nc"), "--out", str(out), "--json"]
        code, stdout, err = run_in_process(argv, ws)
        check_outcome(argv, code, stdout, err)
        assert code == 1 and "database is locked" in err, err
        payload = json.loads(stdout)
        assert payload.get("failed") or payload.get("exit_status") == 1, payload
        # readers are not blocked
        argv = ["catalog", "reduce", "--catalog", str(out), "--var", "v", "--op", "count"]
        assert run_in_process([*argv, "--json"], ws)[0] == 0
    finally:
        holder.rollback()
        holder.close()
    assert_consistent(out)
    assert not (out / "tas_00.json").exists(), "an index without its catalog row"


def test_on_the_fly_indexing_without_a_writable_directory(ws):
    nc = ws / "data" / "v.nc"
    # the working directory cannot hold indexes/: the cache directory does
    proc = run_hostile(ws, ["reduce", nc, "v", "--op", "count", "--json"], cwd=Path("/proc"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["count"] == 55
    assert f"into {ws / 'cache'}" in proc.stderr and "indexes/ here:" in proc.stderr
    # neither can: one line naming the directory and the command that works
    argv = ["info", nc]
    proc = run_hostile(ws, argv, cwd=Path("/proc"), ACTIVEZARR_INDEX_DIR="/proc/no/such")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "cannot write the index of" in proc.stderr and "/proc/no/such" in proc.stderr
    assert f"`activezarr index {nc} --out DIR`" in proc.stderr


def test_help_fits_a_narrow_terminal_without_colour(ws):
    from tests.cli_run import commands

    for name, _ in commands():
        proc = run_hostile(ws, [*name.split(), "--help"])
        assert proc.returncode == 0, (name, proc.stderr)
        assert "examples:" in proc.stdout and "\x1b[" not in proc.stdout + proc.stderr
    proc = run_hostile(ws, ["--version"])
    assert proc.returncode == 0 and proc.stdout.startswith("activezarr "), proc.stderr


def test_exit_status_and_json_are_documented():
    usage = (Path(__file__).parents[1] / "docs" / "usage.md").read_text()
    for text in ("exit status", '"error"', '"exit_status"', "2", "1"):
        assert text in usage, text
