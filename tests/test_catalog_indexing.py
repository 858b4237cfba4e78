"""Indexing many files into one catalog: failures, incremental runs, progress, concurrency."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pytest

from activezarr import Active, ActiveZarrError, Catalog, StaleIndexError
from activezarr.catalog.indexing import Progress, index_many
from activezarr.cli import main
from activezarr.index.cache import cache_file
from tests.catalog_files import oracle_concat, write_series
from tests.cli_run import COMMAND, cli_env
from tests.generate import GENERATED_FILES
from tests.oracle import assert_same, reduce_masked
from tests.servers.conftest_fixtures import moto_server  # noqa: F401 - a fixture
from tests.servers.s3 import make_bucket, upload


@pytest.fixture
def files(tmp_path) -> list[Path]:
    return write_series(tmp_path / "data", 6)


def test_corrupt_files_among_good_ones(tmp_path, files, capsys):
    garbage = tmp_path / "data" / "garbage.nc"
    garbage.write_bytes(b"not a netCDF file at all" * 100)
    truncated = tmp_path / "data" / "truncated.nc"
    truncated.write_bytes(files[0].read_bytes()[:3000])
    out = tmp_path / "indexes"
    rc = main(["index", str(tmp_path / "data" / "*.nc"), "--out", str(out), "--jobs", "2"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "2 of 8 files failed" in err
    assert f"{garbage}: is not a netCDF4/HDF5 file" in err
    assert str(truncated) in err
    cat = Catalog(out)
    assert sorted(Path(e.source).name for e in cat) == sorted(p.name for p in files)
    assert all(e.index.exists() for e in cat)


def test_incremental_runs_skip_unchanged_files(tmp_path, files):
    out = tmp_path / "indexes"
    first = index_many([str(p) for p in files], out, progress=False)
    assert len(first.indexed) == 6
    again = index_many([str(p) for p in files], out, progress=False)
    assert again.indexed == [] and len(again.skipped) == 6
    with netCDF4.Dataset(files[2], "a") as ds:
        ds["tas"][0, 0, 0] = 1.0
        ds.note = "changed" * 50
    third = index_many([str(p) for p in files], out, progress=False)
    assert [Path(p).name for p, _ in third.indexed] == ["tas_02.nc"]
    forced = index_many([str(p) for p in files], out, progress=False, force=True)
    assert len(forced.indexed) == 6


def test_from_list_reads_a_csv_with_a_path_column(tmp_path, files):
    listing = tmp_path / "files.csv"
    listing.write_text("activity,path\n" + "".join(f"CMIP,{p}\n" for p in files[:3]))
    report = index_many([], tmp_path / "indexes", from_list=str(listing), progress=False)
    assert sorted(Path(p).name for p, _ in report.indexed) == [
        "tas_00.nc",
        "tas_01.nc",
        "tas_02.nc",
    ]


def test_progress_off_a_terminal_is_a_line_every_few_seconds_not_per_file(tmp_path, files):
    log = io.StringIO()
    bar = Progress(3, stream=log, interval=3600.0)
    for _ in range(3):
        bar.step("a", chunks=19, nbytes=2000)
    bar.close()
    assert log.getvalue() == ""  # the interval never passed: stderr is left to errors
    log = io.StringIO()
    bar = Progress(3, stream=log, interval=0.0)  # every step is an interval later
    for _ in range(3):
        bar.step("a", chunks=19, nbytes=2000)
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[-1].startswith("[3/3] 57 chunks, 6.0 kB indexed, ")
    assert "files/s" in lines[-1] and "ETA 0s" in lines[-1]


def test_progress_on_a_terminal_is_a_tqdm_bar_that_fits(files):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    bar = Progress(2, stream=screen)
    bar.step("a", chunks=5, nbytes=2000)
    bar.step("b", chunks=5, nbytes=2000)
    bar.close()
    text = screen.getvalue()
    assert "\r" in text and "2/2" in text and "10 chunks, 4.0 kB" in text
    width = max(len(part) for line in text.split("\n") for part in line.split("\r"))
    assert width <= 100, text  # tqdm fits the terminal (80 columns when it cannot tell)


def test_quiet_index_prints_no_progress(tmp_path, files, capsys):
    assert main(["index", *map(str, files[:2]), "--out", str(tmp_path / "i"), "-q"]) == 0
    assert "[" not in capsys.readouterr().err


def test_concurrent_index_runs_into_one_catalog(tmp_path):
    first = write_series(tmp_path / "a", 16, prefix="a_")
    second = write_series(tmp_path / "b", 16, prefix="b_")
    out = tmp_path / "indexes"
    command = [*COMMAND, "index", "--out", str(out)]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "env": cli_env()}
    runs = [subprocess.Popen([*command, *map(str, paths)], **pipes) for paths in (first, second)]
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    entries = Catalog(out).entries
    assert sorted(Path(e.source).name for e in entries) == sorted(p.name for p in first + second)
    assert all(e.index.exists() for e in entries)
    assert not list(out.glob(".*.tmp"))


def test_s3_glob_etag_fingerprints_combine_and_reduce(moto_server, tmp_path, capsys):  # noqa: F811
    paths = write_series(tmp_path / "data", 4)
    make_bucket(moto_server, "cmip")
    for p in paths:
        upload(moto_server, "cmip", f"run1/tas/{p.name}", p)
    upload(moto_server, "cmip", "run1/readme.txt", paths[0])  # not matched by the glob
    options = moto_server.storage_options()
    out = tmp_path / "indexes"
    report = index_many(["s3://cmip/run1/**/*.nc"], out, storage_options=options, jobs=2)
    assert not report.failed and len(report.indexed) == 4
    cat = Catalog(out, storage_options=options)
    entry = cat["s3://cmip/run1/tas/tas_02.nc"]
    assert set(entry.fingerprint) == {"size", "etag"} and entry.fingerprint["etag"]
    assert entry.coords["time"]["min"] == 60.0

    want = oracle_concat(paths, "tas")
    assert_same(cat.reduce("tas", "mean", axis=0), reduce_masked(want, "mean", 0), "mean")
    index = cat.combine(var="tas")
    with Active(index, "tas", storage_options=options) as a:
        assert_same(a.max(axis=(1, 2))[...], reduce_masked(want, "max", (1, 2)), "max")
    assert index_many(["s3://cmip/run1/**/*.nc"], out, storage_options=options).skipped

    with netCDF4.Dataset(paths[1], "a") as ds:
        ds.note = "changed" * 40
    upload(moto_server, "cmip", "run1/tas/tas_01.nc", paths[1])
    assert cat.verify()[0].kind == "changed"
    with pytest.raises(StaleIndexError, match="s3://cmip/run1/tas/tas_01.nc"):
        cat.reduce("tas", "sum")
    capsys.readouterr()
    config = ["--storage-options", json.dumps(options)]
    assert main(["catalog", "verify", "--catalog", str(out), *config]) == 1
    err = capsys.readouterr().err
    assert "activezarr index s3://cmip/run1/tas/tas_01.nc --out" in err


def test_parquet_indexes_reduce_across_files_and_prune(tmp_path, files):
    pytest.importorskip("pyarrow")
    out = tmp_path / "indexes"
    report = index_many([str(p) for p in files], out, format="parquet", progress=False)
    assert not report.failed
    cat = Catalog(out)
    assert all(e.index.suffix == ".parq" and e.index.is_dir() for e in cat)
    assert cat[str(files[0])].coords["time"]["max"] == 3.0
    want = oracle_concat(files, "pr")
    got = cat.reduce("pr", "mean", axis=(1, 2), where={"time": slice(30, None)})
    assert_same(got, reduce_masked(want[4:], "mean", (1, 2)), "mean", scaled=np.float64)
    with pytest.raises(ActiveZarrError, match="parquet index.*Catalog.reduce"):
        cat.combine(var="pr")
    files[0].unlink()
    gone = cat[str(files[0])].index
    assert cat.prune() == [str(files[0])]
    assert not gone.exists() and not cache_file(gone).exists()
    assert len(Catalog(out)) == 5


def test_reduce_combine_and_verify_show_a_bar_on_a_terminal_only(tmp_path, files, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = tmp_path / "indexes"
    index_many([str(p) for p in files], out, progress=False)
    for stream in (io.StringIO(), Terminal()):
        monkeypatch.setattr(sys, "stderr", stream)
        cat = Catalog(out)
        cat.reduce("tas", "count")
        cat.combine(var="tas")
        assert cat.verify() == []
        text = stream.getvalue()
        if stream.isatty():
            assert text.count("6/6") >= 3, text  # a bar for each
        else:
            assert text == ""


@pytest.mark.parametrize("filename", sorted(GENERATED_FILES))
def test_values_read_while_indexing_equal_active(filename, generated_dir, tmp_path):
    """The catalog's coordinate ranges come from values read while the file is open
    (``entries.cf_values``); for every generated variable whose chunks are all stored they
    equal ``Active(index)[:]`` over the file's index: mask, values, dtype and netCDF4's
    warnings."""
    import warnings

    from activezarr.catalog.entries import cf_values
    from activezarr.index.build import stored_whole, translate, write_index
    from activezarr.index.h5objects import H5Dataset
    from activezarr.index.load import from_table
    from activezarr.index.sources import open_source

    source = open_source(generated_dir / filename)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        translation = translate(source)
    index = tmp_path / "index.json"
    write_index(index, translation)
    with h5py.File(source.url, "r") as h5:
        for var in translation.variables:
            dset = H5Dataset(h5[var.name].id, "/" + var.name)
            if not var.shape or not stored_whole(var, dset):
                continue  # 0-d reads take netCDF4's scalar forms; coordinates are 1-d
            with warnings.catch_warnings(record=True) as ours:
                warnings.simplefilter("always")
                got = cf_values(dset.read(), from_table(var, source.url))
            with warnings.catch_warnings(record=True) as theirs:
                warnings.simplefilter("always")
                with Active(index, var.name) as a:
                    want = a[:]
            assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
            got, want = np.ma.asarray(got), np.ma.asarray(want)  # plain when nothing masked
            assert got.dtype == want.dtype and got.shape == want.shape, var.name
            np.testing.assert_array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(want))
            np.testing.assert_array_equal(got.compressed(), want.compressed())
