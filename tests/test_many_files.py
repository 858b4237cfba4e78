"""Reductions across many files reduced together: files that continue one another in one
chunk grid are concatenated into one variable (``catalog/reduce.py``), their indexes opened
in one pass (``index.load.open_variables``, ``index.cache.load_many``).

The oracle is netCDF4-python reading every file, concatenated along time
(``tests/catalog_files.py``), reduced with numpy.ma (``tests/oracle.py``).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from activezarr import ActiveZarrError, Catalog
from activezarr.catalog.indexing import index_many
from activezarr.catalog.reduce import FileTask, _groups
from activezarr.index import cache
from activezarr.index.load import open_variable, open_variables, read_index
from activezarr.index.validate import confine
from tests.catalog_files import oracle_concat, write_series
from tests.oracle import OPS, assert_same, reduce_masked

CASES = [  # (id, selection of the concatenation, axis)
    ("all", (), None),
    ("step-across-files", (slice(1, 38, 3),), None),
    ("step-kept", (slice(2, 39, 5), 1), 1),
    ("reversed", (slice(None, None, -3), slice(1, 3)), (1, 2)),
    ("one-step", (17,), None),
    ("map", (slice(3, 35),), 0),
    ("series", (slice(None), 2), (1,)),
]


def build(directory, paths) -> Catalog:
    report = index_many([str(p) for p in paths], directory, jobs=2, progress=False)
    assert not report.failed, report.failed
    return Catalog(directory)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """10 files of 4 time steps in chunks of 2 (one grid), the last one 3 steps long."""
    base = tmp_path_factory.mktemp("series")
    paths = write_series(base / "data", 10, overrides={9: {"length": 3}})
    return paths, build(base / "indexes", paths)


def tasks_of(cat: Catalog, var: str) -> list[FileTask]:
    from activezarr.catalog.concat import layout

    return [FileTask(p, (slice(0, p.length, 1),)) for p in layout(cat.entries, var).parts]


@pytest.mark.parametrize("blosc", [True, False])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("var", ["tas", "pr"])
def test_files_reduced_together_match_netcdf4(series, var, op, blosc, monkeypatch):
    """(Without c-blosc, small zlib + shuffle chunks are inflated and unshuffled by blocks.)"""
    from activezarr.backends import local

    if not blosc:
        monkeypatch.setattr(local, "_blosc_decompress", lambda: None)
    paths, cat = series
    want_all = oracle_concat(paths, var)
    scaled = np.float64 if var == "pr" else False
    for jobs in (1, 4):
        for case, selection, axis in CASES:
            got = cat.reduce(var, op, selection=selection, axis=axis, jobs=jobs)
            want = reduce_masked(want_all[selection], op, axis)
            assert_same(got, want, op, scaled=scaled, where=f"{var} {case} jobs={jobs}")


def test_files_taken_a_few_at_a_time_match_netcdf4(series, monkeypatch):
    """Files reduced three at a time (the next three opened meanwhile) give the same."""
    from activezarr.catalog import reduce

    monkeypatch.setattr(reduce, "_limit", lambda: 3)
    paths, cat = series
    want_all = oracle_concat(paths, "tas")
    for case, selection, axis in CASES:
        got = cat.reduce("tas", "sum", selection=selection, axis=axis)
        assert_same(got, reduce_masked(want_all[selection], "sum", axis), "sum", where=case)


def test_files_join_while_they_continue_one_grid(tmp_path):
    """Runs break after a file that is not whole chunks and where the chunking changes."""
    overrides = {m: {"chunks": (4, 2, 3)} for m in range(6, 9)}
    overrides[2] = {"length": 5}
    paths = write_series(tmp_path / "data", 9, overrides=overrides)
    cat = build(tmp_path / "indexes", paths)
    tasks = tasks_of(cat, "tas")
    variables = [v for (v,) in open_variables([t.part.entry.index for t in tasks], ["tas"])]
    assert [len(g) for g in _groups(tasks, variables, limit=64)] == [3, 3, 3]
    assert [len(g) for g in _groups(tasks, variables, limit=2)] == [2, 1, 2, 1, 2, 1]
    want_all = oracle_concat(paths, "tas")
    for case, selection, axis in CASES:
        got = cat.reduce("tas", "mean", selection=selection, axis=axis)
        assert_same(got, reduce_masked(want_all[selection], "mean", axis), "mean", where=case)


def test_files_with_other_attributes_are_not_joined(tmp_path):
    """A file packed with another scale factor is reduced on its own, with its own rules."""
    import netCDF4

    paths = write_series(tmp_path / "data", 4)
    with netCDF4.Dataset(paths[2], "a") as ds:
        ds["pr"].scale_factor = 0.02
    cat = build(tmp_path / "indexes", paths)
    tasks = tasks_of(cat, "pr")
    variables = [v for (v,) in open_variables([t.part.entry.index for t in tasks], ["pr"])]
    assert [len(g) for g in _groups(tasks, variables, limit=64)] == [2, 1, 1]
    got = cat.reduce("pr", "sum", axis=0)
    want = reduce_masked(oracle_concat(paths, "pr"), "sum", 0)
    assert_same(got, want, "sum", scaled=np.float64)


def test_open_variables_equals_open_variable_one_by_one(series, tmp_path):
    """Shared metadata checked once gives what opening each index alone gives; an index
    without its sidecar, or with a stale one, opens the usual way."""
    _, cat = series
    copied = tmp_path / "indexes"
    shutil.copytree(cat.directory, copied)
    names = sorted(p.name for p in copied.glob("tas_*.json"))
    cache.cache_file(copied / names[1]).unlink()
    os.utime(copied / names[2], ns=(1, 1))  # the sidecar's stamp no longer matches
    indexes = [copied / n for n in names]
    together = open_variables(indexes, ["pr", "time"])
    for index, row in zip(indexes, together, strict=True):
        for name, var in zip(["pr", "time"], row, strict=True):
            assert_same_variable(var, open_variable(index, name))


def assert_same_variable(var, alone) -> None:
    assert (var.shape, var.chunks, var.dtype, var.codecs) == (
        alone.shape, alone.chunks, alone.dtype, alone.codecs,
    )  # fmt: skip
    assert var.urls == alone.urls and var.sources == alone.sources
    assert var.attrs.keys() == alone.attrs.keys()
    assert all(np.array_equal(var.attrs[k], alone.attrs[k]) for k in var.attrs)
    assert (var.fill_value, var.fill_attr, var.no_fill) == (
        alone.fill_value, alone.fill_attr, alone.no_fill,
    )  # fmt: skip
    for field in ("url_ids", "offsets", "sizes"):
        assert np.array_equal(getattr(var, field), getattr(alone, field))


def test_open_variables_checks_every_index(series, tmp_path):
    """A sidecar whose chunk table points outside its sources is refused, shared metadata
    or not."""
    _, cat = series
    copied = tmp_path / "indexes"
    shutil.copytree(cat.directory, copied)
    names = sorted(p.name for p in copied.glob("tas_*.json"))
    var = open_variable(copied / names[3], "tas")
    var.offsets = var.offsets + np.uint64(10**9)  # every chunk now ends beyond the file
    cache.save(copied / names[3], [var], read_index(copied / names[3]).member)
    with pytest.raises(ActiveZarrError, match="ends beyond"):
        open_variables([copied / n for n in names], ["tas"])


def test_confine_with_shared_directories_still_resolves_each_file(tmp_path):
    """Resolved directories are shared between indexes; a file that is itself a symlink
    out of them is still refused."""
    inside = tmp_path / "data"
    inside.mkdir()
    (inside / "a.nc").write_bytes(b"x" * 10)
    (inside / "b.nc").symlink_to("/etc/passwd")
    memo: dict[str, str] = {}
    assert confine([str(inside / "a.nc")], [str(inside)], "here", memo) == {
        str(inside / "a.nc"): 10
    }
    with pytest.raises(ActiveZarrError, match="outside"):
        confine([str(inside / "b.nc")], [str(inside)], "here", memo)


# -------------------------------------------------------------------------------- combine


def mzz_refs(cat: Catalog, var: str) -> dict:
    """kerchunk's MultiZarrToZarr over the same per-file indexes (what combine wrote before)."""
    import json

    from kerchunk.combine import MultiZarrToZarr

    from activezarr.catalog.concat import layout

    lay = layout(cat.entries, var, "time")
    keep = {var, "time", "lat", "lon"}
    refs = [
        {k: v for k, v in json.loads(p.entry.index.read_text())["refs"].items()
         if k.startswith(".z") or k.split("/")[0] in keep}
        for p in lay.parts
    ]  # fmt: skip
    values = [lay.coordinate_values(p) for p in lay.parts]
    mzz = MultiZarrToZarr(
        refs, concat_dims=["time"], coo_map={"time": values}, identical_dims=["lat", "lon"],
        remote_protocol="file", inline_threshold=0,
    )  # fmt: skip
    return mzz.translate()["refs"]


@pytest.mark.parametrize("var", ["tas", "pr"])
def test_combined_from_sidecars_equals_multizarrtozarr(series, tmp_path, var):
    """Same references, metadata and time values as kerchunk's MultiZarrToZarr writes."""
    import base64
    import json

    import numcodecs

    _, cat = series
    ours = json.loads(cat.combine(var, "time", out=tmp_path / "c.json").read_text())["refs"]
    theirs = mzz_refs(cat, var)
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        if key.startswith("time/"):
            continue
        if key.endswith((".zarray", ".zattrs", ".zgroup")):
            assert json.loads(ours[key]) == json.loads(value), key
        else:
            assert ours[key] == value, key
    zarray = json.loads(theirs["time/.zarray"])
    raw = base64.b64decode(theirs["time/0"].removeprefix("base64:"))
    if zarray["compressor"]:
        raw = numcodecs.get_codec(zarray["compressor"]).decode(raw)
    mine = base64.b64decode(ours["time/0"].removeprefix("base64:"))
    assert np.array_equal(np.frombuffer(mine, "<f8"), np.frombuffer(raw, "<f8"))
