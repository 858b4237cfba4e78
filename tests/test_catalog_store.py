"""The catalog's SQLite store under stress: concurrent indexers, kill -9, Ctrl-C, a full disk,
and the migration of an old ``catalog.json``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from activezarr import Active, ActiveZarrError, Catalog
from activezarr.catalog.indexing import index_many
from tests.catalog_files import oracle_concat, write_series
from tests.cli_run import COMMAND, cli_env

FIXTURE = Path(__file__).parent / "fixtures" / "catalog_json_v1"


def assert_consistent(out: Path) -> Catalog:
    """The catalog opens, every row's index loads, no temporary or uncommitted file is left."""
    cat = Catalog(out)
    names = {e.index.name for e in cat}
    assert len(names) == len(cat), "two sources share one index file"
    for e in cat:
        with Active(e.index, "tas") as a:
            assert a.shape[1:] == (4, 6)
    assert not list(out.glob(".*.tmp")), list(out.glob(".*.tmp"))
    on_disk = {p.name for p in out.glob("*.json")}
    assert on_disk == names, f"uncommitted indexes: {sorted(on_disk - names)}"
    return cat


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*COMMAND, "-v", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def _wait_for_indexed(proc: subprocess.Popen, n: int) -> list[str]:
    """Read the run's log until ``n`` files were indexed (or it ended)."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if sum("INFO: indexed" in s for s in seen) >= n:
            break
    return seen


# ------------------------------------------------------------------------------ concurrency


@pytest.mark.parametrize("runs", [2, 4])
def test_concurrent_indexers_with_overlapping_files_lose_nothing(tmp_path, runs):
    files = write_series(tmp_path / "data", 24)
    out = tmp_path / "indexes"
    # run k indexes files 6k .. 6k + 11 (mod 24): each file is in two runs, and the odd runs
    # force re-indexing, so that runs replace each other's rows and indexes too
    share = [(files * 2)[6 * k : 6 * k + 12] for k in range(runs)]
    procs = [
        subprocess.Popen(
            [*COMMAND, "index", "--out", str(out), "-q", "--jobs", "2"]
            + (["--force"] if k % 2 else [])
            + [str(p) for p in share[k]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        for k in range(runs)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    covered = sorted({p.name for paths in share for p in paths})
    cat = assert_consistent(out)
    assert sorted(Path(e.source).name for e in cat) == covered
    with Active(cat[str(files[7])].index, "tas") as a:
        want = oracle_concat([files[7]], "tas")
        assert np.array_equal(a[:].filled(0), want.filled(0))


# ----------------------------------------------------------------------- kill -9, Ctrl-C


def test_kill_9_mid_run_leaves_a_catalog_that_opens_and_a_rerun_finishes(tmp_path):
    files = write_series(tmp_path / "data", 24)
    out = tmp_path / "indexes"
    proc = _start("index", "--out", str(out), "--jobs", "2", str(tmp_path / "data" / "*.nc"))
    _wait_for_indexed(proc, 6)
    os.killpg(proc.pid, signal.SIGKILL)  # the parent, its workers and the fork server
    proc.communicate(timeout=60)
    cat = Catalog(out)  # opens; whatever it holds points at indexes that load
    for e in cat:
        with Active(e.index, "tas"):
            pass
    rerun = index_many([str(tmp_path / "data" / "*.nc")], out, jobs=2, progress=False)
    assert not rerun.failed
    assert len(rerun.indexed) + len(rerun.skipped) == len(files)
    assert len(assert_consistent(out)) == len(files)


def test_ctrl_c_stops_commits_what_finished_prints_a_summary_and_exits_130(tmp_path):
    write_series(tmp_path / "data", 30)
    out = tmp_path / "indexes"
    proc = _start("index", "--out", str(out), "--jobs", "2", str(tmp_path / "data" / "*.nc"))
    seen = _wait_for_indexed(proc, 5)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    stdout, rest = proc.communicate(timeout=60)  # it exits (how fast is not asserted)
    err = "".join(seen) + rest
    assert proc.returncode == 130, err
    assert "interrupted:" in err and "run the same command again to resume" in err
    assert "Traceback" not in err
    done = len(assert_consistent(out))
    assert done >= 5 and stdout.count("indexed ") == done
    rerun = index_many([str(tmp_path / "data" / "*.nc")], out, jobs=2, progress=False)
    assert len(rerun.skipped) == done and len(rerun.indexed) == 30 - done


# -------------------------------------------------------------------------------- full disk


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk needs a small tmpfs, which only root can mount here")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.decode().strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_full_disk_fails_the_new_files_and_keeps_the_old_catalog(tmp_path, small_disk, capsys):
    files = write_series(tmp_path / "data", 6)
    out = small_disk / "indexes"
    assert not index_many([str(p) for p in files[:3]], out, jobs=1, progress=False).failed
    before = sorted(e.source for e in Catalog(out))
    filler = _fill(small_disk)
    try:
        report = index_many([str(p) for p in files], out, jobs=1, progress=False)
    except ActiveZarrError as exc:  # the catalog could not even reserve the new names
        assert "full" in str(exc) or "space" in str(exc) or "I/O" in str(exc), exc
    else:
        assert len(report.failed) == 3 and len(report.skipped) == 3
        reasons = " ".join(reason for _, reason in report.failed)
        assert "space" in reasons or "full" in reasons, reasons
    filler.unlink()
    cat = Catalog(out)
    assert sorted(e.source for e in cat) == before
    for e in cat:
        with Active(e.index, "tas"):
            pass
    assert not index_many([str(p) for p in files], out, jobs=1, progress=False).failed
    assert len(assert_consistent(out)) == 6


# -------------------------------------------------------------------------------- migration


def _legacy(tmp_path: Path) -> tuple[Path, list[Path]]:
    """The fixture's catalog.json and indexes (made by activezarr 0.1.0 before the database),
    over freshly written copies of the same files with the recorded mtimes."""
    data = tmp_path / "data"
    files = write_series(data, 3)
    out = tmp_path / "indexes"
    out.mkdir()
    for item in FIXTURE.iterdir():
        (out / item.name).write_text(item.read_text().replace("{DATA}", str(data)))
    raw = json.loads((out / "catalog.json").read_text())
    for entry in raw["entries"].values():
        mtime = entry["fingerprint"]["mtime"]
        os.utime(entry["source"], (mtime, mtime))
    return out, files


def test_migration_from_catalog_json(tmp_path):
    out, files = _legacy(tmp_path)
    raw = json.loads((out / "catalog.json").read_text())
    cat = Catalog(out)  # the first open moves it into the database
    assert not (out / "catalog.json").exists() and (out / "catalog.json.migrated").exists()
    assert (out / "catalog.db").exists()
    assert sorted(e.source for e in cat) == sorted(raw["entries"])
    for e in cat:
        old = raw["entries"][e.source]
        assert e.fingerprint == old["fingerprint"] and e.index.name == old["index"]
        assert e.variables == old["variables"] and e.coords == old["coords"]
        assert e.attrs == old["attrs"] and e.facets["experiment_id"] == "historical"
    assert (
        cat.combined["combined_tas_time.json"]["sources"]
        == (raw["combined"]["combined_tas_time.json"]["sources"])
    )
    assert Catalog(out).search(variable_id="tas").variables == ["lat", "lon", "pr", "tas", "time"]
    sizes_match = all(
        os.stat(s).st_size == e["fingerprint"]["size"] for s, e in raw["entries"].items()
    )
    if sizes_match:  # the same netCDF library wrote the same bytes: the old indexes still hold
        assert cat.verify() == []
        with Active(out / "combined_tas_time.json", "tas") as a:
            want = oracle_concat(files, "tas")
            assert np.array_equal(a[:].filled(0), want.filled(0))
        assert len(index_many([str(p) for p in files], out, progress=False).skipped) == 3
    report = index_many([str(p) for p in files], out, force=True, progress=False)
    assert sorted(t.name for _, t in report.indexed) == [
        "tas_00.json",
        "tas_01.json",
        "tas_02.json",
    ]


def _python(code: str, *args: str) -> subprocess.Popen:
    """``python -c code args...`` started with this checkout first on the path."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )


def test_migration_happens_once_even_with_concurrent_openers(tmp_path):
    out, _ = _legacy(tmp_path)
    code = f"import activezarr; print(len(activezarr.Catalog({str(out)!r})))"
    procs = [_python(code) for _ in range(3)]
    for proc in procs:
        stdout, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert stdout.strip() == "3"
    with sqlite3.connect(out / "catalog.db") as con:
        assert con.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 3
        assert con.execute("SELECT value FROM meta WHERE key = 'migrated'").fetchone()[0] == "3"


def test_many_processes_creating_one_new_catalog_at_once_all_succeed(tmp_path):
    """The switch to WAL needs the database to itself and SQLite does not wait for it;
    before the retry, about one opener in 240 failed with "database is locked"."""
    code = (
        "import sys; from activezarr.catalog import store\n"
        "for d in sys.argv[1:]: store.connect(d, create=True).close()"
    )
    directories = [str(tmp_path / f"c{i}") for i in range(10)]
    procs = [_python(code, *directories) for _ in range(6)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    for directory in directories:
        with sqlite3.connect(Path(directory) / "catalog.db") as con:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_index_names_reserved_in_bulk(tmp_path):
    """A source keeps its name; a new one takes its preferred name unless another source holds
    it (then the name gets the source's hash); a format switch keeps the stem and frees the old
    name, which a new source in the same call may take."""
    from activezarr.catalog import store

    with store.opened(tmp_path, create=True) as con:
        first = store.reserve_names(con, {"/a/x.nc": "x.json", "/b/y.nc": "y.json"})
        assert first == {"/a/x.nc": "x.json", "/b/y.nc": "y.json"}
        replaced: dict[str, str] = {}
        again = store.reserve_names(
            con,
            {"/a/x.nc": "x.json", "/c/x.nc": "x.json", "/b/y.nc": "y.parq", "/d/y.nc": "y.json"},
            replaced,
        )
        assert again["/a/x.nc"] == "x.json"
        assert again["/c/x.nc"].startswith("x-") and again["/c/x.nc"].endswith(".json")
        assert again["/b/y.nc"] == "y.parq" and replaced == {"/b/y.nc": "y.json"}
        assert again["/d/y.nc"] == "y.json"  # freed by /b/y.nc in this very call
        rows = dict(con.execute("SELECT source, index_name FROM names"))
        assert rows == again
