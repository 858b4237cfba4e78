"""The local backend's read paths, each against the netCDF4 oracle.

Small generated files exercise the stacked paths; these files have chunks big enough (over
256 KB) for the streaming paths: whole chunks streamed through a buffer, parts of chunks cut
only along dimension 0 streamed as one range each, and the gather of other parts.
"""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest

import activezarr
from tests.oracle import assert_same, oracle_reduce

SELECTIONS = [
    Ellipsis,  # whole chunks streamed, edge chunks cut along every dimension
    (slice(0, 50),),  # dimension-0 parts streamed as one range per chunk
    (slice(10, 70), slice(5, 60)),  # parts cut along two dimensions: gathered
    (slice(3, 97, 3),),  # steps: gathered
    (slice(None, None, -1), 7),
]


@pytest.fixture(scope="module")
def big_chunks(tmp_path_factory):
    """float64 96x80x70 in 40x40x40 chunks (512 KB), fill values sprinkled in, one chunk unwritten."""
    path = tmp_path_factory.mktemp("big") / "big.nc"
    rng = np.random.default_rng(7)
    data = rng.normal(280, 10, (96, 80, 70))
    data[rng.random(data.shape) < 0.01] = -999.0
    with netCDF4.Dataset(path, "w") as ds:
        for name, n in zip("tyx", data.shape, strict=True):
            ds.createDimension(name, n)
        var = ds.createVariable(
            "v", "f8", ("t", "y", "x"), chunksizes=(40, 40, 40), fill_value=-999.0
        )
        var.valid_max = 320.0
        var[:40] = data[:40]
        var[40:, :, :40] = data[40:, :, :40]  # the chunks at x >= 40 for t >= 40 stay unwritten
    index = activezarr.build_index(path, tmp_path_factory.mktemp("big_index"))
    return path, index


@pytest.mark.parametrize("sel", SELECTIONS, ids=lambda s: str(s))
@pytest.mark.parametrize("op", ["mean", "sum", "min", "max", "count"])
def test_streaming_paths_match_oracle(big_chunks, sel, op):
    path, index = big_chunks
    active = activezarr.Active(index, "v")
    assert_same(active.reduce(op, sel), oracle_reduce(path, "v", op, sel), op, where=str(sel))


@pytest.mark.parametrize("sel", SELECTIONS[:3], ids=lambda s: str(s))
def test_axis_reductions_on_big_chunks(big_chunks, sel):
    path, index = big_chunks
    active = activezarr.Active(index, "v")
    for axis in (0, (1, 2)):
        expected = oracle_reduce(path, "v", "mean", sel, axis)
        assert_same(active.mean(axis=axis)[sel], expected, "mean", where=f"{sel} axis={axis}")


def test_reading_stays_within_a_small_resident_size(big_chunks):
    """Streaming does not map the file: repeated whole reductions leave no mapping behind."""
    _, index = big_chunks
    active = activezarr.Active(index, "v")
    for sel in [
        (slice(0, 80), slice(0, 80), slice(0, 40)),
        (slice(0, 50), slice(40, 80), slice(0, 40)),
    ]:
        active.mean[sel]
    assert active.local.readers.local._maps == {}, "whole/dim-0 parts should not mmap the file"


@pytest.fixture(scope="module", params=[-999.0, 1e20], ids=["fill_below_data", "fill_above_data"])
def one_sided_fill(request, tmp_path_factory):
    """Only a fill value (no valid range): one min or max pass can prove a block clean."""
    fill = request.param
    path = tmp_path_factory.mktemp("onesided") / "fill.nc"
    data = np.random.default_rng(3).normal(0, 50, (64, 64, 64))
    data[5, 5, :] = fill  # one block with missing values, the rest clean
    with netCDF4.Dataset(path, "w") as ds:
        for name in "tyx":
            ds.createDimension(name, 64)
        var = ds.createVariable(
            "v", "f8", ("t", "y", "x"), chunksizes=(64, 64, 64), fill_value=fill
        )
        var[:] = data
    return path, activezarr.build_index(path, tmp_path_factory.mktemp("onesided_index"))


@pytest.mark.parametrize("op", ["mean", "sum", "min", "max", "count"])
def test_one_sided_fill_matches_oracle(one_sided_fill, op):
    path, index = one_sided_fill
    active = activezarr.Active(index, "v")
    for sel in (Ellipsis, (slice(0, 30),), (slice(5, 6),)):
        assert_same(active.reduce(op, sel), oracle_reduce(path, "v", op, sel), op, where=str(sel))
