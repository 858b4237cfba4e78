"""Wrong answers found by the CF hunt, one test per class, each against netCDF4-python.

Each test writes the smallest file that shows its class, indexes it and compares reads and
every reduction over every combination of axes with the oracle (netCDF4-python + numpy.ma).
The generator that found them is ``tests/cf_hunt.py`` (its hypothesis test is below).
"""

from __future__ import annotations

import json
import uuid

import netCDF4
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import activezarr
from tests import cf_hunt
from tests.cf_hunt import check_variable as assert_matches_netcdf4

SELECTIONS = (Ellipsis, (slice(None, None, -1),), (slice(1, None, 2), slice(-3, None)), (-1,))
SELECTIONS_1D = (Ellipsis, (slice(None, None, -1),), (slice(1, None, 2),), (-1,), (slice(0, 2),))


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


def _on_reductionist(path, out, s3_store, reductionist_target) -> tuple:
    """``path`` uploaded to moto's S3 and indexed there: the index and the ``Active`` options
    that send its chunks to the Reductionist test server."""
    url = s3_store.upload(f"cfhunt/{uuid.uuid4().hex}/{path.name}", path)
    options = s3_store.storage_options()
    index = activezarr.build_index(url, out=out, catalog=False, storage_options=options)
    server = {"server": reductionist_target.url, "verify": reductionist_target.verify}
    return index, {"backend": "reductionist", "storage_options": options, **server}


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
    index, remote = _on_reductionist(path, tmp_path, s3_store, reductionist_target)
    for dtype in ("f4", "f8"):
        sels = (Ellipsis, (slice(0, 2),), (slice(2, 4),), (slice(4, None, 3),))
        active = assert_matches_netcdf4(path, f"v{dtype}", sels, index, **remote)
        active.max[...]
        assert active.stats.chunks_remote >= 1  # the other chunks did go to the server


# ---------------------------------------------- record variables shorter than their dimension


def _record_file(path) -> list[str]:
    """Record variables of 2 records while ``t`` has 6 (another variable wrote them): the
    unlimited dimension first and last, with and without fill, bytes and floats."""
    names = []
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("t", None)
        ds.createDimension("x", 3)
        ds.createVariable("full", "f8", ("t", "x"))[:] = np.arange(18.0).reshape(6, 3)
        for dims, first in ((("t", "x"), True), (("x", "t"), False)):
            for dtype, fill in (("f4", None), ("i2", -5), ("i2", False), ("u1", False)):
                name = f"{dtype}_{'first' if first else 'last'}_{fill}"
                v = ds.createVariable(name, dtype, dims, chunksizes=(2, 2), fill_value=fill)
                values = np.arange(6).reshape(2, 3) * 7 + 1
                v[...] = values if first else values.T
                names.append(name)
    return names


RECORD_SELECTIONS = (
    Ellipsis,
    (slice(None, None, -1), slice(None, None, -1)),
    (slice(1, None, 2), slice(None, None, 2)),
    (slice(None, None, 4),),
    (slice(3, None), 1),
    (1,),
    (Ellipsis, 1),
    (slice(0, 2), slice(0, 2)),  # inside the extent: the plain read
)


@pytest.mark.parametrize("order", ["first", "last"])
def test_record_variables_past_their_extent_read_as_netcdf_c_lays_them_out(tmp_path, order):
    """Past a record variable's own extent netCDF-C writes netCDF's fill (``_FillValue``, else
    the default, also for variables created without fill, whose chunks hold no fill there);
    when the unlimited dimension is not the first, it packs the stored values at the start of
    the output. activezarr reads (and reduces) what netCDF4 returns in both cases."""
    path = tmp_path / "records.nc"
    names = [n for n in _record_file(path) if f"_{order}_" in n]
    index = activezarr.build_index(path, out=tmp_path, catalog=False)
    for name in names:
        assert_matches_netcdf4(path, name, RECORD_SELECTIONS, index)
    refs = json.loads(index.read_text())  # the JSON itself, not the sidecar the build wrote
    assert_matches_netcdf4(path, names[0], RECORD_SELECTIONS[:3], refs, check_stale=False)
    parquet = tmp_path / "parquet"
    index = activezarr.build_index(path, out=parquet, catalog=False, format="parquet")
    assert_matches_netcdf4(path, names[-1], RECORD_SELECTIONS[:3], index, allow_paths=[tmp_path])


def test_a_recorded_extent_that_does_not_fit_is_refused(tmp_path):
    """The extent an index records for a short record variable is checked on load."""
    from activezarr.errors import IndexLoadError

    path = tmp_path / "records.nc"
    _record_file(path)
    refs = json.loads(activezarr.build_index(path, out=tmp_path, catalog=False).read_text())
    facts = refs["activezarr"]["variables"]["f4_last_None"]
    assert facts["extent"] == [3, 2] and facts["unlimited"] == [False, True]
    for extent, unlimited in (([3, 7], [False, True]), ([2, 2], [False, True]), ([3], [True])):
        facts.update(extent=extent, unlimited=unlimited)
        with pytest.raises(IndexLoadError, match="extent"):
            activezarr.Active(refs, "f4_last_None", check_stale=False)


# ------------------------------------------------------------- HDF5 files netCDF4 reads


def _h5_file(path, build) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        build(f)


def test_filling_off_is_a_fill_value_not_user_defined(tmp_path):
    """netCDF-C reports "filling off" for every dataset whose HDF5 fill value is not
    user-defined, whatever its fill time: byte variables of plain h5py files then keep their
    default fill (255, -127) as values, while one made with ``fillvalue=`` masks it even with
    fill time NEVER. activezarr took fill time NEVER as the only sign, and masked the 255s."""
    import h5py

    path = tmp_path / "plain.h5"
    values = np.array([[255, 0, 7], [255, 1, 255]], "u1")

    def build(f):
        f.create_dataset("u1_default", data=values, chunks=(1, 2))
        f.create_dataset("i1_default", data=values.view("i1") // 2 - 64)  # -127 among them
        f.create_dataset("u1_user", data=values, chunks=(1, 2), fillvalue=9, fill_time="never")
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        space = h5py.h5s.create_simple(values.shape)
        dsid = h5py.h5d.create(f.id, b"u1_compact", h5py.h5t.NATIVE_UINT8, space, dcpl=dcpl)
        h5py.Dataset(dsid)[...] = values

    _h5_file(path, build)
    index = activezarr.build_index(path, out=tmp_path, catalog=False)
    for name in ("u1_default", "i1_default", "u1_user", "u1_compact"):
        assert_matches_netcdf4(path, name, SELECTIONS, index)
    assert int(activezarr.Active(index, "u1_default").count[...]) == 6
    assert int(activezarr.Active(index, "u1_user").count[...]) == 3


def test_a_fill_value_attribute_of_another_type_is_ignored_not_fatal(tmp_path):
    """A ``_FillValue`` attribute that does not fit the variable's type (-inf as float64 on a
    uint32 dataset, 1.5 on int16) failed indexing of the whole file (OverflowError); netCDF4
    ignores it with its warning, and so does activezarr."""

    def build(f):
        f.create_dataset("u4", data=np.array([0, 7, 4294967295], "u4"))
        f["u4"].attrs["_FillValue"] = np.array([-np.inf], ">f8")
        f.create_dataset("i2", data=np.array([1, 2, -32767], "i2"), chunks=(2,))
        f["i2"].attrs["_FillValue"] = np.float32(1.5)

    path = tmp_path / "fill_types.h5"
    _h5_file(path, build)
    index = activezarr.build_index(path, out=tmp_path, catalog=False)
    for name in ("u4", "i2"):
        assert_matches_netcdf4(path, name, SELECTIONS_1D, index)


def test_an_integer_scale_factor_wraps_before_a_float_offset(tmp_path):
    """``int8 * int16(273) + 273.15``: numpy multiplies in int16 (wrapping) before the float
    offset, so unpacking is not monotonic and min/max are of the unpacked values (the
    unpacked stored minimum was returned)."""
    path = tmp_path / "int_scale.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 6)
        for dtype, scale in (("i1", np.int16(273)), ("u2", np.int32(70000)), ("i2", np.int8(3))):
            v = ds.createVariable(f"v_{dtype}", dtype, ("x",), chunksizes=(2,))
            v.scale_factor, v.add_offset = scale, np.float64(273.15)
            v.set_auto_maskandscale(False)
            info = np.iinfo(dtype)
            v[:] = np.array([106, 25, info.min + 1, info.max, 1, info.max - 1]).astype(dtype)
    index = activezarr.build_index(path, out=tmp_path, catalog=False)
    for dtype in ("i1", "u2", "i2"):
        assert_matches_netcdf4(path, f"v_{dtype}", SELECTIONS_1D, index)


def test_reductionist_sums_of_packed_64_bit_integers(tmp_path, s3_store, reductionist_target):
    """The server sums int64 values in int64, which wraps (2**62 * 3); netCDF4 sums the
    unpacked float64 values. Sums and means of packed 64-bit integers stay local (they were
    sent, and came back wrapped)."""
    path = tmp_path / "packed64.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 6)
        for dtype in ("i8", "u8"):
            v = ds.createVariable(f"v_{dtype}", dtype, ("x",), chunksizes=(6,))
            v.scale_factor, v.add_offset = np.float64(0.5), np.float32(0.5)
            v.set_auto_maskandscale(False)
            v[:] = np.array([2**62, 2**62, 2**62, 1, 2, 2**62 + 7], dtype)
    index, remote = _on_reductionist(path, tmp_path, s3_store, reductionist_target)
    for dtype in ("i8", "u8"):
        active = assert_matches_netcdf4(path, f"v_{dtype}", SELECTIONS_1D, index, **remote)
        active.sum[...]
        assert active.stats.chunks_remote == 0 and active.stats.local_reasons
        active.max[...]
        assert active.stats.chunks_remote == 1  # min/max still go to the server


# ------------------------------------------------------------------------- the generator


@settings(max_examples=16, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["netcdf", "hdf5"]))
def test_generated_cf_files_reduce_as_netcdf4(tmp_path_factory, seed, kind):
    """A file of five random variables over the CF corner space (``tests/cf_hunt.py``: every
    dtype, byte order, storage, fill, attribute types, groups, record variables, h5py's
    layouts): reads and every reduction over every axis combination equal netCDF4's.
    ``python -m tests.cf_hunt 0 500`` runs 1,000 such files."""
    rng = np.random.default_rng(seed)
    path = tmp_path_factory.mktemp("hunt") / "hunt.nc"
    write = cf_hunt.write_netcdf if kind == "netcdf" else cf_hunt.write_hdf5
    cf_hunt.check_file(path, write(path, rng), rng)


def test_reductionist_keeps_nan_outside_no_valid_bound(tmp_path, s3_store, reductionist_target):
    """NaN is not below valid_min nor above valid_max, so netCDF4 keeps it (sums and means
    are NaN); the test Reductionist dropped NaN as out of range (``x <= max``), where the
    reference says a bound excludes ``x > max``. Sums, means and counts equal netCDF4's."""
    path = tmp_path / "nan_bounds.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 8)
        for name in ("valid_min", "valid_max", "valid_range"):  # (fills the bound excludes)
            fill = -999.0 if name == "valid_min" else 999.0
            v = ds.createVariable(f"v_{name}", "f8", ("x",), chunksizes=(4,), fill_value=fill)
            v.setncattr(name, [-5.0, 5.0] if name == "valid_range" else 0.0)
            v[:] = [np.nan, 1.0, -1.0, 7.0, -7.0, np.nan, 0.5, -0.5]
    url = s3_store.upload(f"cfhunt/{uuid.uuid4().hex}/nan_bounds.nc", path)
    options = s3_store.storage_options()
    index = activezarr.build_index(url, out=tmp_path, catalog=False, storage_options=options)
    remote = {"backend": "reductionist", "storage_options": options}
    remote.update(server=reductionist_target.url, verify=reductionist_target.verify)
    for name in ("valid_min", "valid_max", "valid_range"):
        active = assert_matches_netcdf4(path, f"v_{name}", SELECTIONS_1D, index, **remote)
        active.count[...]
        assert active.stats.chunks_remote == 2
