"""The catalog across many files: entries, select, combine, reduce, staleness, verify, prune.

Datasets are monthly netCDF4 files written by ``tests/catalog_files.py``; the oracle is
netCDF4-python reading every file and concatenating along time (``oracle_concat``), reduced
with the contract's rules (``tests/oracle.py``).
"""

from __future__ import annotations

import copy as copy_module
import dataclasses
import json
import pickle
import sqlite3
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from activezarr import Active, ActiveZarrError, Catalog, StaleIndexError
from activezarr.catalog.indexing import index_many
from activezarr.cli import main
from activezarr.index.cache import cache_file
from tests.catalog_files import UNITS, oracle_concat, oracle_time, write_month, write_series
from tests.fixtures_data import needs_real_files
from tests.oracle import OPS, assert_same, reduce_masked

REAL_DIR = Path(__file__).resolve().parents[2] / "shared/data/real"  # = fixtures_data's

CASES = [  # (id, selection of the concatenation, axis)
    ("all", (), None),
    ("time-step", (slice(3, 70, 3),), None),
    ("time-kept", (slice(1, 90, 7), 2), 1),
    ("reversed-time-kept", (slice(None, None, -2), slice(1, 3)), (1, 2)),
    ("time-int", (33,), None),
    ("map", (slice(5, 80),), 0),
    ("lat-lon-kept", (slice(None), 1), (0,)),
    ("empty", (slice(10, 10),), None),
]


def scaled(var: str):
    return np.float64 if var == "pr" else False


def build(directory: Path, paths: list[Path]) -> Catalog:
    report = index_many([str(p) for p in paths], directory, jobs=2, progress=False)
    assert not report.failed, report.failed
    return Catalog(directory)


@pytest.fixture(scope="module")
def uniform(tmp_path_factory):
    """24 files that one chunk grid holds: whole chunks, the last one shorter; one file keeps
    time in hours since 2000-01-01 instead of days."""
    base = tmp_path_factory.mktemp("uniform")
    paths = write_series(
        base / "data",
        24,
        overrides={7: {"units": "hours since 2000-01-01"}, 23: {"length": 3}},
    )
    return paths, build(base / "indexes", paths)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """24 files no single chunk grid holds: the second year chunked differently, one month
    of 5 steps in the middle."""
    base = tmp_path_factory.mktemp("mixed")
    overrides = {m: {"chunks": (3, 4, 6)} for m in range(12, 24)}
    overrides[5] = {"length": 5}
    paths = write_series(base / "data", 24, overrides=overrides)
    return paths, build(base / "indexes", paths)


def small_series(tmp_path: Path, n: int = 3) -> tuple[list[Path], Catalog]:
    paths = write_series(tmp_path / "data", n)
    return paths, build(tmp_path / "indexes", paths)


def touch_data(path: Path) -> None:
    """Change a file's contents (size and mtime change as well)."""
    with netCDF4.Dataset(path, "a") as ds:
        ds["tas"][0, 0, 0] = 123.0
        ds.note = "changed after indexing" * 20


# -------------------------------------------------------------------------------- entries


def test_entries_record_coordinate_range_dimensions_and_fingerprint(uniform):
    paths, cat = uniform
    assert len(cat.entries) == 24
    entry = cat[str(paths[7])]
    assert entry.source == str(paths[7].resolve())
    assert entry.index.exists()
    assert set(entry.fingerprint) == {"size", "mtime"}
    assert entry.fingerprint["size"] == paths[7].stat().st_size
    tas = entry.variables["tas"]
    assert tas["dimensions"] == ["time", "lat", "lon"]
    assert tas["shape"] == [4, 4, 6] and tas["chunks"] == [2, 2, 3]
    assert tas["n_chunks"] == 8 and tas["nbytes"] > 0
    with netCDF4.Dataset(paths[7]) as ds:
        t = ds["time"][:]
    time = entry.coords["time"]
    assert (time["min"], time["max"], time["size"]) == (t.min(), t.max(), 4)
    assert time["units"] == "hours since 2000-01-01" and time["calendar"] == "standard"
    assert entry.attrs["experiment_id"] == "historical"
    with sqlite3.connect(cat.path) as con:
        (coords,) = con.execute("SELECT coords FROM files WHERE source = ?", (entry.source,))
    assert json.loads(coords[0])["time"]["max"] == t.max()


def test_streamed_entries_equal_the_listed_ones_and_parse_their_columns_on_demand(uniform):
    """Iterating a catalog streams its rows (no list is kept) and an entry's JSON columns are
    parsed when read: the values are those of the store, whichever way they were reached."""
    _, cat = uniform
    fresh = Catalog(cat.directory)
    streamed = list(fresh)
    assert fresh._entries is None  # iteration kept nothing
    assert streamed == Catalog(cat.directory).entries and len(streamed) == 24
    with sqlite3.connect(cat.path) as con:
        row = con.execute(
            "SELECT fingerprint, variables, coords, attrs FROM files WHERE source = ?",
            (streamed[3].source,),
        ).fetchone()
    e = fresh[streamed[3].source]
    assert [e.fingerprint, e.variables, e.coords, e.attrs] == [json.loads(c) for c in row]
    copy = pickle.loads(pickle.dumps(streamed[5]))
    assert copy == streamed[5] and dataclasses.replace(copy, attrs={}).attrs == {}
    shallow = Catalog(cat.directory)[streamed[6].source]
    assert copy_module.copy(shallow).variables == streamed[6].variables == shallow.variables
    assert copy.coord_range("time").size == 4


def test_ls_json_prints_one_entry_a_line(uniform, capsys):
    """``catalog ls --json`` streams a JSON array, one compact entry a line (greppable, and a
    million entries are never held in memory at once)."""
    _, cat = uniform
    assert main(["catalog", "ls", "--catalog", str(cat.path), "--json"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert len(lines) == 24 + 2 and lines[0] == "[" and lines[-1] == "]"
    records = json.loads(text)
    assert [json.loads(ln.rstrip(",")) for ln in lines[1:-1]] == records
    assert records[0]["variables"]["tas"]["dimensions"] == ["time", "lat", "lon"]


def test_select_by_variable_path_and_attributes(uniform):
    _, cat = uniform
    assert len(cat.select(var="tas")) == 24
    assert len(cat.select(var="nope")) == 0
    assert [Path(e.source).name for e in cat.select(path="*tas_0[0-2].nc")] == [
        "tas_00.nc",
        "tas_01.nc",
        "tas_02.nc",
    ]
    assert len(cat.select(attrs={"experiment_id": "ssp585"})) == 12
    assert len(cat.select(attrs={"experiment_id": ["ssp*", "historical"]})) == 24
    assert len(cat.select(var="pr", attrs={"title": "synthetic month 1?"})) == 10


# -------------------------------------------------------------------------------- combine


def test_combined_index_matches_netcdf4_concatenation(uniform):
    paths, cat = uniform
    index = cat.combine(var="tas", concat_dim="time")
    assert index == cat.directory / "combined_tas_time.json"
    refs = json.loads(index.read_text())
    assert refs["version"] == 1
    with Active(index, "tas") as a:
        assert a.shape == (95, 4, 6) and a.chunks == (2, 2, 3)
        want = oracle_concat(paths, "tas")
        got = a[:]
        assert np.array_equal(got.mask, want.mask)
        assert np.array_equal(got.filled(0), want.filled(0))
        for op in OPS:
            assert_same(a.reduce(op, (slice(5, 90),), 0), reduce_masked(want[5:90], op, 0), op)
    with Active(index, "time") as t:
        assert np.array_equal(t[:], oracle_time(paths))
    record = Catalog(cat.path).combined["combined_tas_time.json"]
    assert record["variable"] == "tas" and record["concat_dim"] == "time"
    assert sorted(record["sources"]) == sorted(e.source for e in cat)


def test_combined_index_opens_with_plain_fsspec_and_zarr(uniform):
    from tests.zarr_recipe import open_zarr

    paths, cat = uniform
    index = cat.combine(var="pr", concat_dim="time", out=cat.directory / "pr_all.json")
    group = open_zarr(index)
    raw = []
    for path in sorted(paths, key=lambda p: oracle_time([p])[0]):
        with netCDF4.Dataset(path) as ds:
            ds.set_auto_maskandscale(False)
            raw.append(ds["pr"][:])
    assert np.array_equal(group["pr"][:], np.concatenate(raw))
    assert np.array_equal(group["time"][:], oracle_time(paths))
    assert group["time"].attrs["units"] == UNITS
    assert group["pr"].attrs["scale_factor"] == pytest.approx(0.01)
    assert "pr_all.json" in Catalog(cat.path).combined


def test_combined_index_opens_with_xarray(uniform):
    xr = pytest.importorskip("xarray")
    paths, cat = uniform
    index = cat.combine(var="tas", concat_dim="time")
    ds = xr.open_dataset(
        "reference://",
        engine="zarr",
        backend_kwargs={"consolidated": False, "zarr_format": 2},
        storage_options={"fo": str(index), "remote_protocol": "file"},
    )
    want = oracle_concat(paths, "tas")
    assert np.allclose(ds["tas"].values, want.filled(np.nan), equal_nan=True)


def test_combine_from_the_command_line(uniform, capsys):
    _, cat = uniform
    out = cat.directory / "cli_tas.json"
    rc = main(
        ["combine", "--catalog", str(cat.path), "--var", "tas", "--concat-dim", "time",
         "--out", str(out), "--path", "*tas_0*"]
    )  # fmt: skip
    assert rc == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Active(out, "tas") as a:
        assert a.shape == (40, 4, 6)


def test_combine_refuses_different_chunking(mixed):
    _, cat = mixed
    with pytest.raises(ActiveZarrError) as info:
        cat.combine(var="tas", concat_dim="time")
    message = str(info.value)
    assert "tas_12.nc" in message and "(3, 4, 6)" in message
    assert "Catalog.reduce" in message


def test_combine_refuses_a_file_that_is_not_whole_chunks(mixed):
    _, cat = mixed
    first_year = cat.select(path="*tas_0*")
    with pytest.raises(
        ActiveZarrError, match=r"tas_05\.nc.*whole number of chunks.*Catalog\.reduce"
    ):
        first_year.combine(var="tas", concat_dim="time")
    # the shorter file is fine at the end
    assert cat.select(path="*tas_0[0-5].nc").combine(var="tas", out=cat.directory / "h.json")


def test_combine_refuses_files_that_overlap_in_time(tmp_path):
    write_month(tmp_path / "data" / "a.nc", 0)
    write_month(tmp_path / "data" / "b.nc", 1, start_day=2.0)
    cat = build(tmp_path / "indexes", sorted((tmp_path / "data").glob("*.nc")))
    with pytest.raises(ActiveZarrError, match=r"a\.nc and .*b\.nc overlap in 'time'"):
        cat.combine(var="tas")


# --------------------------------------------------------------------------------- reduce


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("var", ["tas", "pr"])
def test_reduce_across_files_of_different_chunking(mixed, var, op):
    paths, cat = mixed
    want_all = oracle_concat(paths, var)
    for case, selection, axis in CASES:
        got = cat.reduce(var, op, selection=selection, axis=axis)
        want = reduce_masked(want_all[selection], op, axis)
        assert_same(got, want, op, scaled=scaled(var), where=f"{var} {case}")


@pytest.mark.parametrize("op", OPS)
def test_reduce_across_files_matches_active_over_the_combined_index(uniform, op):
    _, cat = uniform
    with Active(cat.combine(var="pr"), "pr") as a:
        for case, selection, axis in CASES:
            want = a.reduce(op, selection, axis)
            got = cat.reduce("pr", op, selection=selection, axis=axis)
            assert_same(got, want, op, scaled=np.float64, where=case)


def test_reduce_components_combine_like_active(mixed):
    paths, cat = mixed
    parts = cat.reduce("tas", "mean", axis=(1, 2), components=True)
    want = oracle_concat(paths, "tas")
    assert np.array_equal(parts["count"], np.ma.count(want, axis=(1, 2)))
    assert np.allclose(parts["sum"], want.sum(axis=(1, 2), dtype="f8"), rtol=1e-12)


def test_where_selects_by_coordinate_values_and_reads_only_overlapping_files(mixed):
    paths, cat = mixed
    t = oracle_time(paths)
    want_all = oracle_concat(paths, "tas")
    inside = (t >= 45) & (t <= 200)
    got = cat.reduce("tas", "mean", where={"time": slice(45, 200)})
    assert_same(got, reduce_masked(want_all[inside], "mean"), "mean")
    assert [Path(s).name for s in cat.files_read] == [f"tas_{m:02d}.nc" for m in range(2, 7)]
    # dates through the units; a selection applies after where
    got = cat.reduce(
        "tas", "max", where={"time": slice("2000-02-15", "2000-07-19")}, axis=0,
        selection=(slice(None, None, 2),),
    )  # fmt: skip
    assert_same(got, reduce_masked(want_all[inside][::2], "max", 0), "max")
    # open ends
    got = cat.reduce("tas", "count", where={"time": slice(600, None)})
    assert got == np.ma.count(want_all[t >= 600])


def test_where_outside_every_file_gives_a_masked_result(mixed):
    _, cat = mixed
    got = cat.reduce("tas", "mean", where={"time": slice(5000, 6000)})
    assert got.shape == () and got.mask and got.dtype == np.float64
    assert cat.files_read == []
    got = cat.reduce("tas", "max", where={"time": slice(-9, -1)}, axis=0)
    assert got.shape == (4, 6) and got.mask.all() and got.dtype == np.float32


def test_where_only_touches_overlapping_files(tmp_path):
    paths, cat = small_series(tmp_path, 4)
    want = reduce_masked(oracle_concat(paths[:2], "tas"), "sum")
    # the files outside the range are gone (source and index): nothing reads them
    for p in paths[2:]:
        p.unlink()
        cat[str(p)].index.unlink()
    assert_same(cat.reduce("tas", "sum", where={"time": slice(None, 33)}), want, "sum")


def test_reduce_rejects_bad_where(mixed):
    _, cat = mixed
    with pytest.raises(ActiveZarrError, match="only restrict the concatenated dimension"):
        cat.reduce("tas", "mean", where={"lat": slice(0, 10)})
    with pytest.raises(ActiveZarrError, match="without a step"):
        cat.reduce("tas", "mean", where={"time": slice(0, 10, 2)})
    with pytest.raises(ActiveZarrError, match="no catalog entry has variable"):
        cat.reduce("nope", "mean")


# ------------------------------------------------------------------------------ staleness


def test_changed_file_is_stale_everywhere(tmp_path, capsys):
    paths, cat = small_series(tmp_path)
    combined = cat.combine(var="tas")
    touch_data(paths[1])
    source = str(paths[1].resolve())
    with pytest.raises(StaleIndexError) as info:
        Active(cat[source].index, "tas")
    assert source in str(info.value) and "activezarr index" in str(info.value)
    assert "--force" in str(info.value)
    with pytest.raises(StaleIndexError) as info:
        Active(combined, "tas")
    assert source in str(info.value) and "activezarr combine" in str(info.value)
    with pytest.raises(StaleIndexError, match="tas_01.nc.*activezarr index"):
        cat.reduce("tas", "mean")
    # files that did not change still reduce
    cat.reduce("tas", "mean", where={"time": slice(None, 10)})

    assert main(["catalog", "verify", "--catalog", str(cat.path)]) == 1
    err = capsys.readouterr().err
    assert f"changed: {source}" in err and f"activezarr index {source}" in err
    assert "stale-combined: combined_tas_time.json" in err

    assert main(["index", str(paths[1]), "--out", str(cat.directory)]) == 0
    capsys.readouterr()
    assert main(["catalog", "verify", "--catalog", str(cat.path)]) == 1  # combined still stale
    assert "stale-combined" in capsys.readouterr().err
    assert main(["combine", "--catalog", str(cat.path), "--var", "tas"]) == 0
    assert main(["catalog", "verify", "--catalog", str(cat.path)]) == 0
    with Active(combined, "tas") as a:
        assert a[1 * 4, 0, 0] == np.float32(123.0)


def test_prune_drops_entries_whose_source_is_gone(tmp_path, capsys):
    paths, cat = small_series(tmp_path)
    cat.combine(var="tas")
    index = cat[str(paths[0])].index
    assert cache_file(index).is_file()  # the chunk-table sidecar
    paths[0].unlink()
    problems = cat.verify()
    assert (problems[0].kind, Path(problems[0].source).name) == ("missing", "tas_00.nc")
    assert main(["catalog", "prune", "--catalog", str(cat.path), "--dry-run"]) == 0
    assert "would prune" in capsys.readouterr().out and index.exists()
    assert main(["catalog", "prune", "--catalog", str(cat.path)]) == 0
    out = capsys.readouterr().out
    assert str(paths[0].resolve()) in out and "combined_tas_time.json" in out
    assert not index.exists() and not cache_file(index).exists()
    assert not (cat.directory / "combined_tas_time.json").exists()
    again = Catalog(cat.path)
    assert len(again) == 2 and not again.combined
    assert main(["catalog", "verify", "--catalog", str(cat.path)]) == 0


# ---------------------------------------------------------------------------- command line


def test_catalog_ls_show_and_reduce_commands(mixed, capsys):
    paths, cat = mixed
    assert main(["catalog", "ls", "--catalog", str(cat.path)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("combined ")]
    assert (
        len(lines) == 24 and "\t2000-01-01..2000-01-04\t" in lines[0] and "tas_00.json" in lines[0]
    )
    assert main(["catalog", "ls", "--catalog", str(cat.path), "--json", "--attr",
                 "experiment_id=ssp*"]) == 0  # fmt: skip
    assert len(json.loads(capsys.readouterr().out)) == 12
    assert main(["catalog", "show", "tas_03.json", "--catalog", str(cat.path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["coords"]["time"]["min"] == 90.0
    assert main(["catalog", "show", "nope.nc", "--catalog", str(cat.path)]) == 1
    assert "not in catalog" in capsys.readouterr().err

    rc = main(["catalog", "reduce", "--catalog", str(cat.path), "--var", "tas", "--op", "mean",
               "--where", "time=2000-02-15..200", "--json"])  # fmt: skip
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    t = oracle_time(paths)
    want = reduce_masked(oracle_concat(paths, "tas")[(t >= 45) & (t <= 200)], "mean")
    assert result["result"] == pytest.approx(float(want), rel=1e-12)
    assert len(result["files"]) == 5


# ------------------------------------------------------------------------------ real files


@needs_real_files
def test_real_files_catalog(tmp_path):
    report = index_many([str(REAL_DIR / "*.nc")], tmp_path, progress=False)
    assert [Path(p).name for p, _ in report.failed] == ["emac.nc"]  # netCDF3
    assert "netCDF3" in report.failed[0][1]
    cat = Catalog(tmp_path)
    cmip = cat[str(REAL_DIR / "CMIP6_IPSL-CM6A-LR_tas.nc")]
    with netCDF4.Dataset(REAL_DIR / "CMIP6_IPSL-CM6A-LR_tas.nc") as ds:
        t = ds["time"][:]
        assert cmip.coords["time"]["units"] == ds["time"].units
    assert (cmip.coords["time"]["min"], cmip.coords["time"]["max"]) == (t.min(), t.max())

    with Active(cat.select(var="tas", path="*CMIP6*").combine(var="tas"), "tas") as a:
        want = oracle_concat([REAL_DIR / "CMIP6_IPSL-CM6A-LR_tas.nc"], "tas")
        assert_same(a.mean(axis=0)[:], reduce_masked(want, "mean", 0), "mean")

    # two files with the same time axis: no combined index, but a reduction across both
    daily = cat.select(var="ta", path="*daily_data*")
    assert len(daily) == 2
    with pytest.raises(ActiveZarrError, match="overlap"):
        daily.combine(var="ta")
    files = [REAL_DIR / "daily_data.nc", REAL_DIR / "daily_data_fullmask.nc"]
    both = np.ma.concatenate([oracle_concat([f], "ta") for f in files])
    for op in OPS:
        assert_same(daily.reduce("ta", op, axis=(0, 3)), reduce_masked(both, op, (0, 3)), op)


@pytest.mark.parametrize(
    ("bound", "want"),
    [
        (12, 12.0),
        ("2000", 0.0),
        ("2000-02", 31.0),
        ("2000-01-02T12:00", 1.5),
        (np.datetime64("2000-01-05"), 4.0),
    ],
)
def test_where_bounds_in_numbers_or_dates(bound, want):
    from activezarr.catalog.concat import to_coordinate

    assert to_coordinate(bound, UNITS, "standard") == want


def test_coordinate_units_convert_between_epochs():
    from activezarr.catalog.concat import convert_units

    hours = np.array([0.0, 36.0])
    assert convert_units(hours, "hours since 2000-01-02", UNITS, "standard").tolist() == [1.0, 2.5]
    with pytest.raises(ActiveZarrError, match="cannot compare"):
        convert_units(hours, "K", UNITS, None)
