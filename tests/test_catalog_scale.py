"""The catalog at archive scale: work chosen in SQL, read lazily, written only when needed.

Real files from ``tests/catalog_files.py`` indexed into a real ``catalog.db``; big catalogs
are those files plus synthetic rows (sources and indexes that do not exist, so any attempt to
read one fails); values checked against netCDF4 (``oracle_concat``) with numpy.ma.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from activezarr import Active, Catalog
from activezarr.catalog import store
from activezarr.catalog.concat import to_coordinate
from activezarr.catalog.indexing import index_many
from activezarr.catalog.members import members
from tests.catalog_files import UNITS, oracle_concat, oracle_time, write_series
from tests.oracle import assert_same, reduce_masked


def build(directory: Path, paths: list[Path]) -> Catalog:
    report = index_many([str(p) for p in paths], directory, jobs=1, progress=False)
    assert not report.failed, report.failed
    return Catalog(directory)


def add_synthetic(
    directory: Path, n: int, *, first_day: float, shape=None, prefix: str = "synthetic"
) -> list[str]:
    """``n`` rows of ``tas`` after ``first_day`` copied from a real row, whose sources and
    indexes do not exist; ``shape``: another shape for ``tas`` (files no layout would take
    together with the real ones)."""
    with store.opened(directory) as con:
        template = dict(con.execute("SELECT * FROM files ORDER BY source LIMIT 1").fetchone())
    variables = json.loads(template["variables"])
    if shape is not None:
        variables["tas"] = {**variables["tas"], "shape": list(shape)}
    coords = json.loads(template["coords"])
    rows = []
    for i in range(n):
        lo = first_day + 4.0 * i
        rows.append(
            {
                "source": f"/nowhere/{prefix}_{i:05d}.nc",
                "index": f"{prefix}_{i:05d}.json",
                "fingerprint": {"size": 1, "mtime": 1.0},
                "variables": variables,
                "roles": {name: "data" for name in variables},
                "coords": {**coords, "time": {**coords["time"], "min": lo, "max": lo + 3}},
            }
        )
    with store.opened(directory) as con, store.transaction(con):
        store.put_entries(con, rows)
    return [r["source"] for r in rows]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """12 real monthly files (one keeps time in hours since another epoch) and 300 synthetic
    rows after them, a third of them with another shape."""
    base = tmp_path_factory.mktemp("archive")
    paths = write_series(base / "data", 12, overrides={7: {"units": "hours since 1999-12-01"}})
    directory = base / "indexes"
    build(directory, paths)
    add_synthetic(directory, 200, first_day=1000.0)
    add_synthetic(directory, 100, first_day=2000.0, shape=(4, 5, 5), prefix="other")
    return paths, Catalog(directory)


def in_days(bound, default: float) -> float:
    return default if bound is None else to_coordinate(bound, UNITS, "standard")


@pytest.mark.parametrize(
    ("bounds", "view"),
    [
        (("2000-02-15", "2000-08-10"), {}),  # dates: in each file's own units
        ((45.0, 200.0), {"path": ["*/tas_0[0-6].nc", "/nowhere/*"]}),  # numbers, one unit
        ((45.0, 250.0), {"path": "*/tas_*.nc"}),  # numbers, two units: the exact test decides
        ((None, "2000-03-01"), {}),
        (("2000-06-01", "2001-01-01"), {}),
        (("2000-02-02", "2000-02-02T12:00"), {}),  # inside one file: only that one is read
    ],
)
def test_where_reads_only_the_overlapping_rows_and_values_equal_netcdf4(archive, bounds, view):
    paths, cat = archive
    cat = cat.search(**view)
    paths = [p for p in paths if len(cat.search(path=str(p)))]
    lo, hi = in_days(bounds[0], -np.inf), in_days(bounds[1], np.inf)
    overlapping = [p for p in paths if np.any((oracle_time([p]) >= lo) & (oracle_time([p]) <= hi))]
    got = cat.reduce("tas", "mean", where={"time": slice(*bounds)})
    assert [Path(s).name for s in cat.files_read] == [p.name for p in overlapping]
    t = oracle_time(paths)
    want = oracle_concat(paths, "tas")[(t >= lo) & (t <= hi)]
    assert_same(got, reduce_masked(want, "mean"), "mean")


def test_the_store_leaves_out_rows_outside_a_date_range(archive):
    _, cat = archive
    within = {"time": slice("2000-02-15", "2000-08-10")}
    chosen = [e.source for e in members(cat, "tas", "time", within)]
    assert [Path(s).name for s in chosen] == [f"tas_{m:02d}.nc" for m in range(2, 8)]
    every = list(members(cat, "tas"))
    assert len(every) == 312
    entry = every[0]  # trimmed: the variable and the range of its first dimension only
    assert list(entry.variables) == ["tas"] and list(entry.coords) == ["time"]
    assert entry.dimensions("tas") == ("time", "lat", "lon")


def test_where_outside_the_real_files_gives_the_empty_answer(archive):
    _, cat = archive
    got = cat.reduce("tas", "max", where={"time": slice("1990-01-01", "1990-12-31")}, axis=0)
    assert got.shape == (4, 6) and got.mask.all() and got.dtype == np.float32
    assert cat.files_read == []


def test_combine_a_path_selection_out_of_a_big_catalog_equals_netcdf4(archive):
    paths, cat = archive
    chosen = cat.select(path=str(paths[0].parent) + "/*")
    index = chosen.combine("tas", out=cat.directory / "combined_real.json")
    with Active(index, "tas") as a:
        got = a.mean[...]
    assert_same(got, reduce_masked(oracle_concat(paths, "tas"), "mean"), "mean")


def test_combined_records_are_parsed_when_used(tmp_path, capsys):
    """Opening, listing and searching a catalog read no combined record: one that is not
    JSON any more fails only where it is used."""
    from activezarr.cli import main

    paths = write_series(tmp_path / "data", 4)
    cat = build(tmp_path / "indexes", paths)
    index = cat.combine("tas")
    cat.combine("pr")
    assert sorted(cat.combined) == ["combined_pr_time.json", "combined_tas_time.json"]
    assert len(cat.combined["combined_tas_time.json"]["sources"]) == 4
    with store.opened(cat.directory) as con:
        con.execute("UPDATE combined SET record = '{broken' WHERE name = 'combined_pr_time.json'")
    again = Catalog(cat.directory)
    assert len(again) == 4 and len(again.search(variable_id="tas")) == 4
    assert "combined_pr_time.json" in again.combined and len(again.combined) == 2
    assert again.combined[index.name]["variable"] == "tas"
    with pytest.raises(json.JSONDecodeError):
        again.combined["combined_pr_time.json"]
    with pytest.raises(KeyError):
        again.combined["nope.json"]
    with store.opened(cat.directory) as con:  # ls shows the summaries, from SQL
        con.execute(
            "UPDATE combined SET record = json_set(record, '$.variable', 'pr') "
            "WHERE name = 'combined_tas_time.json'"
        )
        con.execute("DELETE FROM combined WHERE name = 'combined_pr_time.json'")
    assert main(["catalog", "ls", "--catalog", str(cat.directory)]) == 0
    out = capsys.readouterr().out
    assert "combined combined_tas_time.json: pr along time [16, 4, 6] from 4 files" in out


def assert_map_equal(got, want: np.ma.MaskedArray) -> None:
    """An xarray result (NaN where no value) against the netCDF4 oracle's masked mean."""
    values = np.asarray(got.values, dtype=np.float64)
    assert np.array_equal(np.isnan(values), np.ma.getmaskarray(want))
    np.testing.assert_allclose(values, want.filled(np.nan), rtol=1e-6)


def _stamps(*paths: Path) -> list[tuple[int, int]]:
    return [(p.stat().st_ino, p.stat().st_mtime_ns) for p in paths]


def test_open_dataset_on_a_catalog_reuses_the_combined_index_until_its_rows_change(tmp_path):
    """The second open writes nothing (the combined index and its sidecar keep their inode
    and mtime); a source indexed again after it changed makes the next open write it again;
    values equal netCDF4 each time."""
    import netCDF4

    import activezarr
    from activezarr.index.cache import cache_file

    paths = write_series(tmp_path / "data", 6)
    cat = build(tmp_path / "indexes", paths)
    view = cat.search(variable_id="tas")

    def mean_time_of_tas():
        ds = activezarr.open_dataset(view, var="tas")
        got = ds.tas.active.mean("time")
        ds.close()
        return got

    want = reduce_masked(oracle_concat(paths, "tas"), "mean", 0)
    assert_map_equal(mean_time_of_tas(), want)
    (index,) = cat.directory.glob("combined_tas_time_*.json")  # the selection's own
    files = (index, cache_file(index))
    first = _stamps(*files)
    assert_map_equal(mean_time_of_tas(), want)
    assert _stamps(*files) == first  # nothing written

    with netCDF4.Dataset(paths[2], "a") as ds:  # a source changes and is indexed again
        ds["tas"][0, 0, 0] = 321.0
        ds.note = "changed" * 50
    report = index_many([str(paths[2])], cat.directory, jobs=1, progress=False)
    assert not report.failed
    want = reduce_masked(oracle_concat(paths, "tas"), "mean", 0)
    assert_map_equal(mean_time_of_tas(), want)
    again = _stamps(*files)
    assert again[0] != first[0] and again[1] != first[1]  # the index and its sidecar rewritten
    assert _stamps(*files) == again


def test_two_selections_keep_their_own_combined_index(tmp_path):
    """Datasets of two selections of one variable, open side by side, each reduce their own
    files; the whole catalog's keeps the documented name."""
    import activezarr

    paths = write_series(tmp_path / "data", 6)
    cat = build(tmp_path / "indexes", paths)
    early = activezarr.open_dataset(cat.search(path="*/tas_0[0-2].nc"), var="tas")
    late = activezarr.open_dataset(cat.search(path="*/tas_0[3-5].nc"), var="tas")
    whole = activezarr.open_dataset(cat, var="tas")
    for ds, picked in ((late, paths[3:]), (early, paths[:3]), (whole, paths)):
        want = reduce_masked(oracle_concat(picked, "tas"), "mean", 0)
        assert_map_equal(ds.tas.active.mean("time"), want)
    names = sorted(p.name for p in cat.directory.glob("combined_tas_time*.json"))
    assert len(names) == 3 and "combined_tas_time.json" in names


def test_a_dataset_refuses_a_combined_index_written_again_for_another_selection(tmp_path):
    import activezarr
    from activezarr.errors import IndexLoadError

    paths = write_series(tmp_path / "data", 6)
    cat = build(tmp_path / "indexes", paths)
    shared = tmp_path / "indexes" / "mine.json"
    early = activezarr.open_dataset(cat.search(path="*/tas_0[0-2].nc").combine("tas", out=shared))
    cat.search(path="*/tas_0[3-5].nc").combine("tas", out=shared)
    with pytest.raises(IndexLoadError, match="written again after this Dataset was opened"):
        early.tas.active.mean("time")


def test_verify_over_many_entries_one_line_per_problem_a_summary_and_a_trusty_status(tmp_path):
    """300 rows whose sources are gone, one real file changed, a combined index made stale:
    one stderr line per problem with its fix, the summary last, nothing on stdout, exit 1;
    after pruning and refreshing: exit 0 and the all-clear on stdout."""
    import netCDF4

    from tests.cli_run import run_cli

    paths = write_series(tmp_path / "data", 6)
    cat = build(tmp_path / "indexes", paths)
    cat.combine("tas")
    gone = add_synthetic(cat.directory, 300, first_day=1000.0)
    with netCDF4.Dataset(paths[4], "a") as ds:
        ds.note = "changed" * 50
    proc = run_cli("catalog", "verify", "--catalog", cat.directory)
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr
    lines = proc.stderr.strip().splitlines()
    missing = [ln for ln in lines if ln.startswith("missing: ")]
    assert sorted(ln.split(": ")[1] for ln in missing) == sorted(gone)
    assert all(
        ln.endswith(f"fix: activezarr catalog prune --catalog {cat.directory}") for ln in missing
    )
    [changed] = [ln for ln in lines if ln.startswith("changed: ")]
    assert str(paths[4].resolve()) in changed and "fix: activezarr index" in changed
    [stale] = [ln for ln in lines if ln.startswith("stale-combined: ")]
    assert "combined_tas_time.json: 1 of its 6 sources changed" in stale
    assert len(lines) == 303  # one line per problem, then the summary
    assert lines[-1].startswith(
        "302 problems (1 changed, 300 missing, 1 stale-combined) in 306 entries and 1 combined "
        "index of "
    )
    as_json = json.loads(run_cli("catalog", "verify", "--catalog", cat.directory, "--json").stdout)
    assert as_json["entries"] == 306 and len(as_json["problems"]) == 302

    assert run_cli("catalog", "prune", "--catalog", cat.directory).returncode == 0
    index_many([str(paths[4])], cat.directory, jobs=1, progress=False)
    cat.combine("tas")
    proc = run_cli("catalog", "verify", "--catalog", cat.directory, "-q")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout == f"all 6 entries and 1 combined index of {cat.path} are up to date\n"


def test_verify_progress_away_from_a_terminal_is_a_line_now_and_then(tmp_path):
    import io

    from activezarr.catalog.progress import Checking

    paths = write_series(tmp_path / "data", 3)
    cat = build(tmp_path / "indexes", paths)
    add_synthetic(cat.directory, 600, first_day=1000.0)
    stream = io.StringIO()
    bar = Checking(len(cat), stream, interval=0.0)  # a line after each part of 256
    problems = list(Catalog(cat.directory).problems(progress=bar))
    assert len(problems) == 600
    lines = stream.getvalue().splitlines()
    assert [ln.split(" entries checked, ")[0] for ln in lines] == [
        "verify: 256/603",
        "verify: 512/603",
        "verify: 603/603",
    ]
    assert "600 problems so far" in lines[-1]
    quiet = io.StringIO()
    list(Catalog(cat.directory).problems(progress=Checking(603, quiet, enabled=False)))
    assert quiet.getvalue() == ""


def _facet_rows(start: int, n: int) -> list[dict]:
    """Rows of a CMIP-like catalog: one table and frequency for all, 50 models, 5
    experiments, 4 members; ``tas`` in every file, ``pr`` in every tenth."""
    rows = []
    for i in range(start, start + n):
        variables = {"tas": {"shape": [12], "dimensions": ["time"]}}
        if i % 10 == 0:
            variables["pr"] = {"shape": [12], "dimensions": ["time"]}
        rows.append(
            {
                "source": f"/archive/M{i % 50}/tas_{i:06d}.nc",
                "index": f"tas_{i:06d}.json",
                "fingerprint": {"size": i, "mtime": 1.0},
                "variables": variables,
                "roles": dict.fromkeys(variables, "data"),
                "table_id": "Amon",
                "frequency": "mon",
                "source_id": f"M{i % 50}",
                "experiment_id": f"exp{(i // 50) % 5}",
                "member_id": f"r{(i // 250) % 4}i1p1f1",
            }
        )
    return rows


def _plan(cat: Catalog) -> str:
    from activezarr.catalog.search import order, where

    clause, args = where(cat._conditions)
    sql = f"EXPLAIN QUERY PLAN SELECT * FROM files{clause} ORDER BY {order(cat._conditions)}"
    with store.opened(cat.directory) as con:
        return " | ".join(r[3] for r in con.execute(sql, args))


def test_writes_keep_planner_statistics_so_searches_start_from_the_selective_facet(tmp_path):
    directory = tmp_path / "indexes"
    with store.opened(directory, create=True) as con, store.transaction(con):
        store.put_entries(con, _facet_rows(0, 2000))
    with store.opened(directory) as con:  # the writer's close made them
        assert con.execute("SELECT COUNT(*) FROM sqlite_stat1").fetchone()[0] > 0
        assert (
            con.execute("SELECT value FROM meta WHERE key = 'analyzed_rows'").fetchone()[0]
            == "2000"
        )
    cat = Catalog(directory)
    cases = {  # query: the index the plan must start from
        (("table_id", "Amon"), ("source_id", "M7")): "files_by_source_id (source_id=?)",
        (("frequency", "mon"), ("member_id", "r2i1p1f1")): "files_by_member_id (member_id=?)",
        (
            ("table_id", "Amon"),
            ("experiment_id", "exp3"),
            ("source_id", "M1*"),
        ): "files_by_source_id",
        (("source_id", "M10"), ("variable_id", "pr")): "files_by_source_id (source_id=?)",
    }
    for query, index in cases.items():
        view = cat.search(**dict(query))
        plan = _plan(view)
        assert plan.startswith(f"SEARCH files USING INDEX {index}"), (query, plan)
        rows = _facet_rows(0, 2000)
        want = sorted(
            r["source"]
            for r in rows
            if all(
                (k == "variable_id" and v in r["variables"])
                or (
                    k != "variable_id"
                    and (r[k] == v or (v.endswith("*") and r[k].startswith(v[:-1])))
                )
                for k, v in query
            )
        )
        assert want and [e.source for e in view] == want and len(view) == len(want)
    # the variable alone: from the variables table's index (a rare variable is a short list)
    assert "variables_by_name" in _plan(cat.search(variable_id="pr"))
    assert len(cat.search(variable_id="pr")) == 200


def test_statistics_are_remade_when_the_catalog_doubles(tmp_path):
    directory = tmp_path / "indexes"

    def analyzed() -> str | None:
        with store.opened(directory) as con:
            row = con.execute("SELECT value FROM meta WHERE key = 'analyzed_rows'").fetchone()
            return row[0] if row else None

    with store.opened(directory, create=True) as con, store.transaction(con):
        store.put_entries(con, _facet_rows(0, 40))
    assert analyzed() is None  # too small to matter
    with store.opened(directory) as con, store.transaction(con):
        store.put_entries(con, _facet_rows(40, 60))
    assert analyzed() == "100"
    with store.opened(directory) as con, store.transaction(con):
        store.put_entries(con, _facet_rows(100, 50))
    assert analyzed() == "100"  # not yet twice the rows
    with store.opened(directory) as con, store.transaction(con):
        store.put_entries(con, _facet_rows(150, 50))
    assert analyzed() == "200"


def test_reduce_matching_nothing_says_what_the_catalog_holds_per_units(archive, capsys):
    from activezarr.cli import main

    _, cat = archive
    argv = ["catalog", "reduce", "--catalog", str(cat.directory), "--var", "tas", "--op", "mean"]
    assert main([*argv, "--where", "time=1990-01-01..1990-12-31"]) == 1
    err = capsys.readouterr().err
    assert (
        "no file matched --where time=1990-01-01..1990-12-31; the catalog's 312 files hold " in err
    )
    assert "time 2000-01-01..2006-07-27 (311 files in days since 2000-01-01); " in err
    assert "2000-07-29..2000-08-01 (1 file in hours since 1999-12-01)" in err


def test_export_streams_every_row_once_in_order(tmp_path):
    """25,000 rows (the table is written 10,000 rows at a time): each file variable once, in
    variable then time order, the facets every row has grouping the datasets."""
    import csv
    import gzip

    directory = tmp_path / "indexes"
    with store.opened(directory, create=True) as con, store.transaction(con):
        store.put_entries(con, _facet_rows(0, 25_000))
    spec_path = Catalog(directory).to_intake_esm(tmp_path / "esm")
    spec = json.loads(spec_path.read_text())
    with gzip.open(tmp_path / "esm" / spec["catalog_file"], "rt", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 25_000 + 2_500  # tas everywhere, pr in every tenth file
    assert spec["description"].startswith("activezarr kerchunk indexes of 27500 file variables")
    keys = [(r["variable_id"], r["source"]) for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert {r["catalog"] for r in rows} == {"indexes"}
    assert all(r["path"] == str(directory.resolve() / Path(r["source"]).stem) + ".json"
               for r in rows[:3])  # fmt: skip
    assert "time_start" not in rows[0]  # no row has a time range: no empty column
    grouping = spec["aggregation_control"]["groupby_attrs"]
    assert grouping[0] == "catalog" and sorted(grouping[1:]) == [
        "experiment_id", "frequency", "member_id", "source_id", "table_id"]  # fmt: skip
