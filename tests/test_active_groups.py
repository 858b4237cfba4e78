"""``Active.reduce(..., groups=...)``: one pass over the chunks, one result per group.

The oracle is netCDF4-python + numpy.ma on the same selection, each group's positions picked
out and reduced on their own. Files: the xarray tests' daily series (zlib, 45-day chunks that
cut across the groups, missing values) and an uncompressed copy (chunks viewed from the
memory map).
"""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest

import activezarr
from activezarr import Active
from activezarr.errors import ActiveZarrError
from activezarr.reduction.partials import Groups
from tests.oracle import oracle_read
from tests.xarray_files import write_series

OPS = ("mean", "sum", "min", "max", "count")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """``{"zlib": (nc, index), "raw": (nc, index)}``: the same values, two encodings."""
    root = tmp_path_factory.mktemp("groups")
    zlib = write_series(root / "zlib.nc", calendar="noleap", years=2)
    raw = root / "raw.nc"
    with netCDF4.Dataset(zlib) as src, netCDF4.Dataset(raw, "w") as dst:
        for name, dim in src.dimensions.items():
            dst.createDimension(name, len(dim))
        tas = src["tas"]
        tas.set_auto_maskandscale(False)
        out = dst.createVariable(
            "tas", "f4", tas.dimensions, fill_value=tas._FillValue, chunksizes=(30, 2, 8)
        )
        out[:] = tas[:]
    return {name: (nc, activezarr.build_index(nc, out=root / "indexes")) for name, nc in
            (("zlib", zlib), ("raw", raw))}  # fmt: skip


def _expected(data: np.ma.MaskedArray, op: str, axis: int, codes: np.ndarray, n: int, rest):
    """Each group's positions along ``axis`` reduced over ``axis`` and the ``rest`` axes."""
    out = []
    for g in range(n):
        part = np.take(data, np.flatnonzero(codes == g), axis=axis)
        axes = (axis, *rest)
        if part.shape[axis] == 0:  # an empty group: nothing valid
            shape = np.delete(np.array(part.shape), axes)
            dtype = np.int64 if op == "count" else np.float64
            empty = np.zeros(shape, dtype)
            out.append(empty if op == "count" else np.ma.masked_array(empty, mask=True))
            continue
        if op == "count":
            out.append(np.ma.count(part, axis=axes))
        else:
            kwargs = {"dtype": np.float64} if op in ("mean", "sum") else {}
            value = getattr(np.ma, op)(part, axis=axes, **kwargs)
            out.append(np.ma.masked_array(value, mask=np.ma.count(part, axis=axes) == 0))
    return np.ma.stack(out)


SELECTIONS = {
    "whole": (),
    "cut": (slice(10, 700), slice(1, 6), slice(2, 7)),
    "steps": (slice(None, None, -3), slice(0, 6, 2)),
    "point": (slice(5, 400), 3),
}


@pytest.mark.parametrize("encoding", ["zlib", "raw"])
@pytest.mark.parametrize("name", list(SELECTIONS))
@pytest.mark.parametrize("run", [7, 100])
def test_groups_along_time_match_each_group_alone(files, encoding, name, run):
    """Runs of 7 cut every chunk (split in the chunk); runs of 100 hold whole chunks."""
    nc, index = files[encoding]
    sel = SELECTIONS[name]
    data = oracle_read(nc, "tas", sel or Ellipsis)
    rng = np.random.default_rng(len(name))
    n = 5
    codes = rng.integers(-1, n, data.shape[0])
    codes = np.repeat(codes[::run], run)[: data.shape[0]]  # runs, as months are; -1: gaps
    with Active(index, "tas") as active:
        for op in OPS:
            got = active.reduce(op, sel, axis=0, groups=Groups(0, codes, n))
            want = _expected(data, op, 0, codes, n, ())
            assert got.shape == want.shape
            np.testing.assert_array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(want))
            np.testing.assert_allclose(got.filled(0), want.filled(0), rtol=1e-6)


@pytest.fixture(scope="module")
def daily_chunks(tmp_path_factory):
    """A series stored one time step a chunk (as CMIP daily files are): a batch of chunks
    holds several groups, each a run of rows or scattered among the others."""
    root = tmp_path_factory.mktemp("daily")
    nc = write_series(root / "daily.nc", calendar="noleap", years=1, chunks=(1, 6, 8))
    return nc, activezarr.build_index(nc, out=root / "indexes")


CODE_PATTERNS = {
    "months": lambda n: np.repeat(np.arange(12), 31)[:n],  # runs: one block a run
    "alternate": lambda n: np.arange(n) % 2,  # every row a new block: gathered
    "returning": lambda n: (np.arange(n) // 3) % 2,  # a block in several runs of a batch
    "gaps": lambda n: np.where(np.arange(n) % 5 == 0, -1, (np.arange(n) // 4) % 3),
}


@pytest.mark.parametrize("pattern", list(CODE_PATTERNS))
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_groups_of_one_step_chunks(daily_chunks, pattern, workers):
    """However a batch's rows fall into groups (and whichever thread reduces it), each
    group's statistics are netCDF4's."""
    nc, index = daily_chunks
    data = oracle_read(nc, "tas", Ellipsis)
    codes = CODE_PATTERNS[pattern](data.shape[0])
    n = int(codes.max()) + 1
    with Active(index, "tas", max_workers=workers) as active:
        for op in OPS:
            got = active.reduce(op, (), axis=0, groups=Groups(0, codes, n))
            want = _expected(data, op, 0, codes, n, ())
            np.testing.assert_array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(want))
            np.testing.assert_allclose(got.filled(0), want.filled(0), rtol=1e-6)


def test_groups_along_lat_with_other_axes_reduced(files):
    """Groups along a dimension chunked by 3 (2 groups a chunk), time reduced too, lon kept."""
    nc, index = files["zlib"]
    data = oracle_read(nc, "tas", (slice(0, 200),))
    codes = np.array([0, 1, 1, 0, 2, -1])
    with Active(index, "tas") as active:
        for op in OPS:
            got = active.reduce(op, (slice(0, 200),), axis=(0, 1), groups=Groups(1, codes, 3))
            want = _expected(data, op, 1, codes, 3, (0,))
            np.testing.assert_array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(want))
            np.testing.assert_allclose(got.filled(0), want.filled(0), rtol=1e-6)
        parts = active.reduce("sum", (slice(0, 200),), (0, 1), components=True,
                              groups=Groups(1, codes, 3))  # fmt: skip
        assert set(parts) == {"sum", "count"} and parts["count"].shape == (3, 8)


def test_group_errors_say_what_is_wrong(files):
    _, index = files["zlib"]
    with Active(index, "tas") as active:
        with pytest.raises(ActiveZarrError, match="reduced dimension"):
            active.reduce("mean", (), axis=0, groups=Groups(1, np.zeros(6, int), 1))
        with pytest.raises(ActiveZarrError, match="group codes"):
            active.reduce("mean", (), axis=0, groups=Groups(0, np.zeros(3, int), 1))
    remote = Active(index, "tas", backend="reductionist", server="http://127.0.0.1:9")
    with remote, pytest.raises(ActiveZarrError, match="local backend"):
        remote.reduce("mean", (), axis=0, groups=Groups(0, np.zeros(730, int), 1))
