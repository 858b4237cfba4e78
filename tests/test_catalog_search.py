"""Facets, search (Python and command line), ``ls`` with dates, and the intake-esm export
opened by intake-esm itself."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from activezarr import Active, Catalog
from activezarr.catalog.facets import facets, time_range
from activezarr.catalog.indexing import index_many
from activezarr.cli import main
from tests.catalog_files import oracle_concat, write_month
from tests.cli_run import cli_env

REAL_DIR = Path(__file__).resolve().parents[2] / "shared/data/real"
CMIP6 = sorted(REAL_DIR.glob("CMIP6_*.nc"))


def write_cmip6(path: Path, month: int, source_id: str, experiment: str, member: str) -> Path:
    """A small file with CMIP6 global attributes."""
    write_month(path, month, units="days since 1850-01-01")
    with netCDF4.Dataset(path, "a") as ds:
        ds.setncatts(
            {
                "mip_era": "CMIP6",
                "activity_id": "CMIP" if experiment == "historical" else "ScenarioMIP",
                "institution_id": source_id.split("-")[0],
                "source_id": source_id,
                "experiment_id": experiment,
                "variant_label": member,
                "sub_experiment_id": "none",
                "table_id": "Amon",
                "frequency": "mon",
                "grid_label": "gn",
                "variable_id": "tas",
            }
        )
        ds["tas"].coordinates = "height"
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A CMIP6-like tree: 2 models x 2 experiments x 2 members x 2 years, in DRS paths."""
    root = tmp_path_factory.mktemp("cmip6")
    paths = []
    for source_id in ("IPSL-CM6A-LR", "MIROC6"):
        for experiment in ("historical", "ssp585"):
            for member in ("r1i1p1f1", "r2i1p1f1"):
                for year in range(2):
                    drs = root / source_id / experiment / member / "Amon/tas/gn/v20190101"
                    name = f"tas_Amon_{source_id}_{experiment}_{member}_gn_{year}.nc"
                    paths.append(write_cmip6(drs / name, 12 * year, source_id, experiment, member))
    out = root / "indexes"
    report = index_many([str(p) for p in paths], out, jobs=2, progress=False)
    assert not report.failed, report.failed
    return paths, Catalog(out)


# ---------------------------------------------------------------------------------- facets


@pytest.mark.skipif(not CMIP6, reason="no CMIP6 file in ../shared/data/real")
def test_facets_of_the_real_cmip6_file(tmp_path):
    index_many([str(CMIP6[0])], tmp_path, progress=False)
    entry = Catalog(tmp_path)[str(CMIP6[0])]
    with netCDF4.Dataset(CMIP6[0]) as ds:
        attrs = {k: ds.getncattr(k) for k in ds.ncattrs()}
        time = ds["time"]
        first, last = netCDF4.num2date([time[:].min(), time[:].max()], time.units, time.calendar)
    for facet in ("activity_id", "institution_id", "source_id", "experiment_id", "table_id"):
        assert entry.facets[facet] == attrs[facet], facet
    assert entry.facets["member_id"] == attrs["variant_label"]
    assert entry.facets["project"] == "CMIP6" and entry.facets["grid_label"] == attrs["grid_label"]
    assert entry.facets["frequency"] == attrs["frequency"]
    assert entry.time_start == first.isoformat() and entry.time_end == last.isoformat()
    cat = Catalog(tmp_path)
    assert cat.search(variable_id="tas").entries == [entry]
    assert len(cat.search(variable_id="time_bnds")) == 0  # bounds are not data variables
    assert len(cat.search(variable_id="height")) == 0  # nor is a scalar coordinate


def test_facets_from_file_name_and_path_when_attributes_are_missing():
    got = facets({}, "/data/CMIP6/v20200101/pr_day_MIROC6_ssp245_r3i1p1f1_gn_20150101-20241231.nc")
    assert got["variable_id"] == "pr" and got["table_id"] == "day"
    assert got["source_id"] == "MIROC6" and got["experiment_id"] == "ssp245"
    assert got["member_id"] == "r3i1p1f1" and got["grid_label"] == "gn"
    assert got["version"] == "v20200101"
    cordex = facets(
        {"project_id": "CORDEX", "CORDEX_domain": "EUR-11", "driving_model_id": "MPI-M-MPI-ESM-LR",
         "model_id": "RCA4", "driving_model_ensemble_member": "r1i1p1", "frequency": "day"},
        "tas_EUR-11_MPI-M-MPI-ESM-LR_rcp85_r1i1p1_SMHI-RCA4_v1_day_20060101-20101231.nc",
    )  # fmt: skip
    assert cordex["project"] == "CORDEX" and cordex["domain"] == "EUR-11"
    assert cordex["source_id"] == "RCA4" and cordex["driving_source_id"] == "MPI-M-MPI-ESM-LR"
    assert cordex["member_id"] == "r1i1p1" and cordex["experiment_id"] == "rcp85"
    assert (
        facets({"variant_label": "r1i1p1f1", "sub_experiment_id": "s1960"}, "x.nc")["member_id"]
        == "s1960-r1i1p1f1"
    )


def test_time_range_uses_the_calendar():
    coords = {"time": {"min": 0.0, "max": 364.0, "units": "days since 2001-01-01",
                       "calendar": "360_day"}}  # fmt: skip
    assert time_range(coords) == ("2001-01-01", "2002-01-05")
    coords["time"]["calendar"] = "noleap"
    assert time_range(coords) == ("2001-01-01", "2001-12-31")
    assert time_range({"depth": {"min": 0, "max": 5, "units": "m"}}) == (None, None)


# ---------------------------------------------------------------------------------- search


def test_search_in_intake_esm_style(archive):
    paths, cat = archive
    assert len(cat) == 16
    assert len(cat.search(source_id="IPSL*")) == 8
    assert len(cat.search(source_id="IPSL*", experiment_id="historical")) == 4
    assert len(cat.search(experiment_id=["historical", "ssp585"], member_id="r2*")) == 8
    assert len(cat.search(variable_id="tas", version="v2019*")) == 16
    assert len(cat.search(variable_id="height")) == 0
    assert len(cat.search(source_id="nope")) == 0
    assert cat.unique("source_id") == ["IPSL-CM6A-LR", "MIROC6"]
    assert cat.unique("variable_id") == ["pr", "tas"]
    assert len(cat.search(title="synthetic month 1?")) == 8  # any global attribute (12)
    hist = cat.search(source_id="MIROC6", experiment_id="historical", member_id="r1i1p1f1")
    assert [e.time_start for e in hist] == ["2000-01-01", "2000-12-26"]
    # a search feeds combine and reduce
    index = hist.combine(var="tas", concat_dim="time")
    ordered = [p for p in paths if "MIROC6/historical/r1i1p1f1" in str(p)]
    with Active(index, "tas") as a:
        assert np.array_equal(a[:].filled(0), oracle_concat(ordered, "tas").filled(0))
    assert hist.reduce("tas", "count") == oracle_concat(ordered, "tas").count()


def test_cli_search_ls_with_dates_and_show(archive, capsys):
    _, cat = archive
    where = ["--catalog", str(cat.directory)]
    terms = ["source_id=IPSL*", "experiment_id=historical", "variable_id=tas"]
    assert main(["catalog", "search", *where, *terms]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 4 and "4 entries" in out.err
    assert all("IPSL-CM6A-LR historical" in ln for ln in lines)
    assert "\t2000-01-01..2000-01-04\t" in lines[0]
    assert main(["catalog", "ls", *where, "member_id=r1i1p1f1,r2i1p1f1", "source_id=MIROC6"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 8
    assert main(["catalog", "ls", *where, "--json", "experiment_id=ssp585", "member_id=r1*"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 4 and {r["facets"]["experiment_id"] for r in records} == {"ssp585"}
    assert main(["catalog", "search", *where, "source_id"]) == 1
    assert "bad search term 'source_id'" in capsys.readouterr().err
    assert main(["catalog", "reduce", *where, *terms[:2], "member_id=r1*", "--var", "tas",
                 "--op", "count"]) == 0  # fmt: skip
    assert "over 2 files" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["ls", "search"])
def test_cli_listing_imports_no_array_library(archive, command):
    """``catalog ls`` and ``catalog search`` start quickly: the command line imports numpy,
    h5py, zarr, fsspec and xarray only for the commands that use them."""
    import subprocess
    import sys

    _, cat = archive
    script = (
        "import sys\n"
        "from activezarr.cli import main\n"
        f"rc = main(['catalog', {command!r}, '--catalog', {str(cat.directory)!r}, "
        "'source_id=MIROC6'])\n"
        "heavy = {'numpy', 'h5py', 'zarr', 'fsspec', 'xarray', 'cftime'} & set(sys.modules)\n"
        "assert rc == 0 and not heavy, heavy\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, env=cli_env()
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 8 and "8 entries" in proc.stderr


def test_search_of_a_missing_facet_value_is_an_empty_catalog_not_an_error(archive):
    _, cat = archive
    assert cat.search(domain=None).entries == cat.entries
    assert len(cat.search(domain="EUR-11")) == 0


# ------------------------------------------------------------------------------ intake-esm


def test_intake_esm_opens_searches_and_loads_the_export(archive, tmp_path, capsys):
    intake = pytest.importorskip("intake")
    paths, cat = archive
    where = ["--catalog", str(cat.directory)]
    assert (
        main(["catalog", "export", *where, "--intake-esm", str(tmp_path), "source_id=MIROC6"]) == 0
    )
    collection = Path(capsys.readouterr().out.strip())
    assert collection == tmp_path / "activezarr.json"
    spec = json.loads(collection.read_text())
    assert spec["assets"] == {"column_name": "path", "format": "reference"}
    with gzip.open(tmp_path / "activezarr.csv.gz", "rt") as fh:
        assert len(fh.read().splitlines()) == 1 + 8 * 2  # header, 8 files x (tas, pr)
    col = intake.open_esm_datastore(str(collection))
    assert len(col.df) == 16 and set(col.df["source_id"]) == {"MIROC6"}
    sub = col.search(experiment_id="ssp585", member_id="r2i1p1f1", variable_id="tas")
    assert len(sub.df) == 2
    # intake-esm shares one storage-options dict between threads for reference assets:
    # open them one after another
    datasets = sub.to_dataset_dict(threaded=False, progressbar=False)
    assert len(datasets) == 1
    (ds,) = datasets.values()
    ordered = [p for p in paths if "MIROC6/ssp585/r2i1p1f1" in str(p)]
    want = oracle_concat(ordered, "tas")
    got = ds["tas"].values
    assert got.shape == want.shape
    assert np.array_equal(np.isnan(got), want.mask)
    assert np.array_equal(got[~want.mask], want.compressed())


def test_to_intake_esm_without_facets_groups_by_variable(tmp_path):
    intake = pytest.importorskip("intake")
    data = tmp_path / "data"
    paths = [write_month(data / f"plain_{m}.nc", m) for m in range(3)]
    for p in paths:
        with netCDF4.Dataset(p, "a") as ds:
            ds.delncattr("experiment_id")
    index_many([str(p) for p in paths], tmp_path / "indexes", progress=False)
    target = Catalog(tmp_path / "indexes").to_intake_esm(tmp_path / "esm", name="plain")
    col = intake.open_esm_datastore(str(target))
    datasets = col.search(variable_id="pr").to_dataset_dict(threaded=False, progressbar=False)
    (ds,) = datasets.values()
    want = oracle_concat(paths, "pr")
    assert np.allclose(ds["pr"].values[~want.mask], want.compressed())


def test_export_and_search_survive_a_copy_of_the_catalog_elsewhere(archive, tmp_path):
    _, cat = archive
    copy = tmp_path / "copy"
    shutil.copytree(cat.directory, copy)
    assert len(Catalog(copy).search(source_id="IPSL*")) == 8
