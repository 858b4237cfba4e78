"""Wrong answers found by the CF hunt, one test per class, each against netCDF4-python.

Each test writes the smallest file that shows its class, indexes it and compares reads and
every reduction over every combination of axes with the oracle (netCDF4-python + numpy.ma).
The generator that found them is ``tests/cf_hunt.py`` (its hypothesis test is below).
"""

from __future__ import annotations

import itertools
import uuid
import warnings

import netCDF4
import numpy as np
import pytest

import activezarr
from tests.oracle import (
    OPS,
    _as_masked,
    assert_same,
    assert_same_read,
    decoded_dtype,
    nc_variable,
    oracle_atol,
    reduce_masked,
)


def every_axes(ndim: int) -> list:
    """None and every non-empty combination of ``ndim`` axes."""
    combos = [c for r in range(1, ndim + 1) for c in itertools.combinations(range(ndim), r)]
    return [None, *combos]


def assert_matches_netcdf4(path, var: str, selections=(Ellipsis,), index=None, **active_kw):
    """Reads and every reduction over every axis combination of ``var`` equal the oracle."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if index is None:
            index = activezarr.build_index(path, out=path.parent, catalog=False)
        active = activezarr.Active(index, var, **active_kw)
        with netCDF4.Dataset(path) as ds:
            ncvar = nc_variable(ds, var)
            assert tuple(active.shape) == tuple(ncvar.shape), var
            for sel in selections:
                expected = _as_masked(ncvar[sel], decoded_dtype(ncvar))
                assert_same_read(active[sel], expected, where=f"{var}[{sel}]")
                for op in OPS:
                    for axis in every_axes(expected.ndim):
                        assert_same(
                            getattr(active, op)(axis=axis)[sel],
                            reduce_masked(expected, op, axis),
                            op,
                            atol=oracle_atol(expected, op, axis),
                            where=f"{var} {op}[{sel}] axis={axis}",
                        )
    return active


SELECTIONS = (Ellipsis, (slice(None, None, -1),), (slice(1, None, 2), slice(-3, None)), (-1,))


# ------------------------------------------------------------ fletcher32 + shuffle, 8 bytes


@pytest.mark.parametrize("dtype", ["f8", "i8", "u8", "f4", "i2"])
@pytest.mark.parametrize("zlib", [True, False])
def test_fletcher32_before_shuffle_on_8_byte_types(tmp_path, dtype, zlib):
    """netCDF-C puts fletcher32 first in the pipeline, so the shuffle sees the data plus the
    4 checksum bytes: for 8-byte types that is not a whole number of elements, and HDF5
    leaves the trailing bytes unshuffled. Such chunks failed to decode ("Shuffle buffer is not
    an integer multiple of elementsize")."""
    import h5py

    path = tmp_path / "f.nc"
    values = np.arange(-40, 40).reshape(8, 10).astype(dtype) * 3
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("y", 8)
        ds.createDimension("x", 10)
        v = ds.createVariable(
            "v", dtype, ("y", "x"), zlib=True, shuffle=True, fletcher32=True, chunksizes=(3, 4)
        )
        v[...] = values
    if not zlib:  # the same pipeline without compression, as h5py writes it
        path = tmp_path / "plain.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("v", data=values, chunks=(3, 4), fletcher32=True, shuffle=True)
    assert_matches_netcdf4(path, "v", SELECTIONS)


# ------------------------------------------------------ infinities through Reductionist


def test_reductionist_min_max_of_only_infinities(tmp_path, s3_store, reductionist_target):
    """A Reductionist server starts max at the dtype's lowest finite value (min at the
    largest), so a chunk whose valid values are all -inf (+inf) answered that finite value
    (max of [-inf, fill] was -1.8e308). Such an answer is ambiguous: the chunk is reduced
    locally, and min/max equal netCDF4's."""
    path = tmp_path / "inf.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 8)
        for dtype in ("f4", "f8"):
            v = ds.createVariable(f"v{dtype}", dtype, ("x",), chunksizes=(2,), fill_value=-999)
            v[:] = np.ma.masked_values(
                [-np.inf, -999, np.inf, -999, -np.inf, np.inf, 1.5, np.finfo(dtype).max], -999
            )
    url = s3_store.upload(f"cfhunt/{uuid.uuid4().hex}/inf.nc", path)
    options = s3_store.storage_options()
    index = activezarr.build_index(url, out=tmp_path, catalog=False, storage_options=options)
    server = {"server": reductionist_target.url, "verify": reductionist_target.verify}
    for dtype in ("f4", "f8"):
        remote = {"backend": "reductionist", "storage_options": options, **server}
        sels = (Ellipsis, (slice(0, 2),), (slice(2, 4),), (slice(4, None, 3),))
        active = assert_matches_netcdf4(path, f"v{dtype}", sels, index, **remote)
        active.max[...]
        assert active.stats.chunks_remote >= 1  # the other chunks did go to the server
