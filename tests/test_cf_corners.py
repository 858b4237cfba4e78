"""The CF corners of issue 9, each checked for what the oracle matrix alone would not show.

Every corner-case variable (``tests/generate_corners.py``) also runs through the whole oracle
matrix in ``test_oracle_generated.py`` and, where a server takes part, the S3 conformance
classes. Here: exactness that a tolerance would hide, netCDF4's warnings, the shape of one-
element reads, how much a small selection of contiguous data reads, and xarray over the index.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.fixtures_data)
from __future__ import annotations

import warnings

import netCDF4
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import activezarr
from activezarr.errors import SelectionError
from activezarr.reduction.missing import MissingRule, Packing, storage_dtype
from tests.fixtures_data import generated_dir, generated_index  # noqa: F401
from tests.generate_corners import (
    BE_UNSIGNED_VARIABLES,
    REFUSED,
    SAFECAST_VARIABLES,
    STRUCTURE_REFUSED,
)
from tests.oracle import assert_same_read, oracle_read


def _active(generated_index, filename: str, var: str) -> activezarr.Active:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return activezarr.Active(generated_index(filename), var)


def test_packed_float32_mean_of_one_element_is_that_element(generated_dir, generated_index):
    """Unpacked to float32 as netCDF4 does, then summed in float64: exact, not within 1e-7."""
    path = generated_dir / "corners_packed.nc"
    for var in ("p32_single", "p32_neg_scale", "p32_offset_only_f4"):
        active = _active(generated_index, "corners_packed.nc", var)
        data = oracle_read(path, var)
        assert active.dtype == np.float32 == data.dtype
        for i, j in np.ndindex(data.shape):
            mean = active.mean[i, j]
            if data.mask[i, j]:
                assert mean.mask
                continue
            assert mean == np.float64(data[i, j]), (var, i, j, float(mean), data[i, j])
        exact = np.ma.sum(data[1:3, 2:5].astype(np.float64))  # 6 terms: any order is exact
        assert active.sum[1:3, 2:5] == exact


def test_decoded_dtype_follows_the_attributes_types(generated_dir, generated_index):
    """float64 attributes that fit float32 still decode to float64; an int16 scale_factor
    keeps int16; float32 attributes on int32 give float64 (numpy's promotion, as netCDF4)."""
    path = generated_dir / "corners_types.nc"
    with netCDF4.Dataset(path) as ds:
        for var in ("p64_binary_fraction", "pint_scale", "p64_on_i4", "pf32_on_i4"):
            want = ds.variables[var][:].dtype
            active = _active(generated_index, "corners_types.nc", var)
            assert active.dtype == want, (var, active.dtype, want)
            assert active[:].dtype == want
            assert active.max[...].dtype == want


def test_int64_mean_does_not_wrap(generated_dir, generated_index):
    path = generated_dir / "corners_int64.nc"
    for var in ("i8_near_2_62", "u8_near_2_64", "i8_negative"):
        data = oracle_read(path, var)
        mean = _active(generated_index, "corners_int64.nc", var).mean[...]
        want = np.ma.mean(data, dtype=np.float64)
        assert mean.dtype == np.float64
        assert np.isclose(float(mean), float(want), rtol=1e-12), (var, mean, want)
        wrapped = np.ma.sum(data, dtype=data.dtype) / data.count()  # what a naive sum gives
        assert not np.isclose(float(wrapped), float(want), rtol=1e-6)


@pytest.mark.parametrize("op", ["min", "max"])
def test_nan_anywhere_makes_extremes_nan(generated_index, op):
    for var, sel in (
        ("nan_late_block", ...),  # the NaN is past the first 65,536-element block
        ("nan_late_chunk", ...),  # the NaN is in the last chunk of a zlib variable
        ("nan_late_block", (slice(1, 2),)),
    ):
        result = getattr(_active(generated_index, "corners_nan.nc", var), op)[sel]
        assert np.isnan(result), (var, op, result)


@pytest.mark.parametrize("var", SAFECAST_VARIABLES)
def test_refused_attributes_warn_like_netcdf4(generated_dir, generated_index, var):
    """An attribute netCDF4 does not use is named in the same warning by activezarr."""
    with (
        netCDF4.Dataset(generated_dir / "corners_safecast.nc") as ds,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        ds.variables[var][:]
    expected = sorted({str(w.message) for w in caught if "safely cast" in str(w.message)})
    index = generated_index("corners_safecast.nc")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        activezarr.Active(index, var)
    got = sorted({str(w.message) for w in caught if "safely cast" in str(w.message)})
    assert got == expected


def test_one_element_reads_take_netcdf4s_form(generated_dir, generated_index):
    """A 0-d masked array when unpacked, a numpy scalar when unpacked by scale/offset,
    np.ma.masked when missing: what netCDF4-python 1.7 returns."""
    cases = [
        ("corners_nan.nc", "nan_late_chunk"),
        ("corners_packed.nc", "p32_single"),
        ("corners_safecast.nc", "mv_f4_on_f8"),
    ]
    for filename, var in cases:
        active = _active(generated_index, filename, var)
        with netCDF4.Dataset(generated_dir / filename) as ds:
            ncvar = ds.variables[var]
            for index in np.ndindex(ncvar.shape):
                want = ncvar[index]
                got = active[index]
                assert type(got) is type(want), (var, index, type(got), type(want))
                if want is np.ma.masked:
                    continue
                assert np.asarray(got).dtype == np.asarray(want).dtype
                assert np.array_equal(np.asarray(got), np.asarray(want), equal_nan=True)


def test_small_selection_of_contiguous_data_reads_only_its_chunks(generated_index):
    active = _active(generated_index, "corners_contiguous.nc", "contig_big")
    assert active.chunks == (240, 1000)  # 4.8 MB cut into 1 MB virtual chunks
    active.mean[::499, ::301]
    assert active.stats.chunks_local == 3  # rows 0, 499 and 998 sit in chunks 0, 2 and 4
    active.mean(axis=0)[5:7, :]
    assert active.stats.chunks_local == 1


def test_record_variables_have_their_dimensions_length(generated_dir, generated_index):
    with netCDF4.Dataset(generated_dir / "corners_records.nc") as ds:
        length = len(ds.dimensions["time"])
    for var in ("rec_short", "rec_short_fill", "time"):
        active = _active(generated_index, "corners_records.nc", var)
        assert active.shape[0] == length == 10
        assert int(active.count[5:]) == 0  # records never written are fill, masked


@pytest.mark.parametrize("axis", [1.5, "01", ["0"], True, np.float64(1), (0, 0.0)])
def test_bad_axis_values_raise_selection_error(generated_index, axis):
    active = _active(generated_index, "corners_nan.nc", "nan_rows")
    with pytest.raises(SelectionError, match="axis"):
        active.mean(axis=axis)[...]


XARRAY_FILES = [
    "corners_cf2.nc",
    "corners_be_unsigned.nc",
    "corners_filters.nc",
    "corners_types.nc",  # an integer scale_factor on integers: xarray once failed on it
    "corners_nan.nc",
    "corners_int64.nc",
    "corners_packed.nc",
    "corners_safecast.nc",
    "corners_nofill.nc",
    "corners_unsigned.nc",
    "corners_contiguous.nc",
    "packed.nc",
    "dtypes.nc",
    "cf.nc",
]


@pytest.mark.parametrize("filename", XARRAY_FILES)
def test_xarray_decodes_our_index_as_kerchunks(generated_dir, generated_index, filename):
    """xarray over activezarr's index decodes every variable as over kerchunk's own index."""
    xr = pytest.importorskip("xarray")
    from kerchunk.hdf import SingleHdf5ToZarr

    theirs = SingleHdf5ToZarr(str(generated_dir / filename), inline_threshold=0).translate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # xarray cannot decode a 2-element scale_factor (netCDF4 leaves it packed): not ours
        drop = ["scale_two_values"]
        ours = xr.open_dataset(
            str(generated_index(filename)), engine="kerchunk", drop_variables=drop
        )
        kerchunk = xr.open_dataset(theirs, engine="kerchunk", drop_variables=drop)
        for var in kerchunk.data_vars:
            a, b = ours[var].values, kerchunk[var].values
            assert a.dtype == b.dtype, (var, a.dtype, b.dtype)
            assert np.array_equal(a, b, equal_nan=True), var


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
CF_NAMES = ("_FillValue", "missing_value", "valid_min", "valid_max", "valid_range")


@settings(max_examples=300, deadline=None)
@given(
    dtype=st.sampled_from(["i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8", ">f8"]),
    attrs=st.dictionaries(
        st.sampled_from([*CF_NAMES, "scale_factor", "add_offset", "_Unsigned"]), JSON_VALUES
    ),
    no_fill=st.booleans(),
)
def test_any_attribute_values_give_a_rule_never_a_crash(dtype, attrs, no_fill):
    """Whatever an index says an attribute is, the CF rules decide (use it or ignore it with
    netCDF4's warning) without raising."""
    raw = np.dtype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rule = MissingRule.from_metadata(raw, attrs.get("_FillValue"), attrs, no_fill)
        packing = Packing.from_attrs(attrs, raw)
        rule.mask(np.zeros(3, storage_dtype(raw, attrs)))
        packing.decode(np.zeros(3, storage_dtype(raw, attrs)))


def test_info_shows_attribute_values_with_their_types(generated_index):
    """`activezarr info` prints typed attributes as numbers and types, not numpy reprs."""
    from activezarr.info import describe

    text = describe(generated_index("corners_types.nc"), "p64_binary_fraction")
    assert "scale_factor=0.5 (float64)" in text and "add_offset=10.0 (float64)" in text
    assert "np." not in text and "array(" not in text


@pytest.mark.parametrize(
    ("filename", "refused"),
    [("corners_refused.h5", REFUSED), ("corners_structure.nc", STRUCTURE_REFUSED)],
)
def test_variables_not_indexed_are_named_with_the_reason(
    generated_dir, generated_index, filename, refused
):
    """Nothing is dropped silently: the index records every variable it leaves out and why,
    ``info`` lists them, and asking for one says why it is not there (one line)."""
    from activezarr.errors import UnsupportedVariableError
    from activezarr.info import describe

    index = generated_index(filename)
    text = describe(index)
    for name, reason in refused.items():
        if name == "szip" and "szip" not in text:
            continue  # this HDF5 build cannot write szip
        line = next((x for x in text.splitlines() if x.startswith(f"not indexed: '{name}' ")), "")
        assert reason in line, (name, line)
        with pytest.raises(UnsupportedVariableError) as caught:
            activezarr.Active(index, name)
        message = str(caught.value)
        assert "\n" not in message and name in message and reason in message, message


def test_one_element_reads_of_big_endian_unsigned_take_netcdf4s_mask(
    generated_dir, generated_index
):
    """netCDF4 compares one element of a big-endian _Unsigned variable with byte-swapped
    fill, missing value and bounds; arrays of the same elements are masked as expected."""
    path = generated_dir / "corners_be_unsigned.nc"
    differs = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for var in BE_UNSIGNED_VARIABLES:
            active = _active(generated_index, "corners_be_unsigned.nc", var)
            data = oracle_read(path, var)
            for index in np.ndindex(data.shape):
                one = oracle_read(path, var, index)
                got = active[index]
                if one.mask:
                    assert got is np.ma.masked, (var, index, got)
                else:
                    assert got is not np.ma.masked and got == one, (var, index, got, one)
                    assert active.mean[index] == np.float64(one)
                differs += bool(one.mask) != bool(np.ma.getmaskarray(data)[index])
    assert differs > 0  # the file does show netCDF4's one-element rule


CF_CODES = ("i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8")


def _special(code: str) -> list:
    if np.dtype(code).kind == "f":
        return [0.0, 1.0, -1.0, 0.5, 1e20, -999.0, np.nan, np.inf, -np.inf, 9.969209968386869e36]
    info = np.iinfo(code)
    return [0, 1, -1, 2, 100, -100, int(info.min), int(info.max), int(info.max) - 1, 255, -127]


@st.composite
def _cf_variable(draw):
    """One small variable: a dtype, byte order, layout, fill, CF attributes of any numeric
    type drawn from values that matter (fills, extremes, NaN, inf), data drawn from them."""
    code = draw(st.sampled_from(CF_CODES))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    attrs = {}
    for name in (*CF_NAMES[1:], "scale_factor", "add_offset"):
        if draw(st.integers(0, 3)) == 0:
            acode = draw(st.sampled_from((*CF_CODES, code, code)))
            size = (
                1
                if name in ("valid_min", "valid_max", "scale_factor", "add_offset")
                else draw(st.integers(1, 3))
            )
            values = draw(
                st.lists(
                    st.sampled_from(_special(code) + _special(acode)), min_size=size, max_size=size
                )
            )
            with np.errstate(all="ignore"):
                value = np.array(values, np.float64).astype(acode)
            attrs[name] = value if size > 1 else value[0]
    if np.dtype(code).kind == "i" and draw(st.booleans()):
        attrs["_Unsigned"] = draw(st.sampled_from(["true", "True", "false"]))
    fill = draw(st.one_of(st.none(), st.just(False), st.sampled_from(_special(code))))
    values = _special(code) + [float(v) for v in np.atleast_1d(attrs.get("missing_value", []))]
    n = int(np.prod(shape))
    data = draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))
    layout = draw(st.sampled_from(("contiguous", "chunked", "zlib", "unwritten")))
    chunks = tuple(draw(st.integers(1, s)) for s in shape)
    return code, draw(st.booleans()), shape, attrs, fill, layout, chunks, data


def _write_cf_variable(path, code, big, shape, attrs, fill, layout, chunks, data) -> None:
    with netCDF4.Dataset(path, "w") as ds:
        dims = tuple(f"d{i}" for i in range(len(shape)))
        for dim, n in zip(dims, shape, strict=True):
            ds.createDimension(dim, n)
        kwargs = {"endian": "big" if big else "native"}
        if layout == "contiguous":
            kwargs["contiguous"] = True
        else:
            kwargs.update(chunksizes=chunks, zlib=layout == "zlib")
        if fill is not None:
            with np.errstate(all="ignore"):
                kwargs["fill_value"] = False if fill is False else np.array(fill).astype(code)
        v = ds.createVariable("v", code, dims, **kwargs)
        for key, value in attrs.items():
            v.setncattr(key, value)
        v.set_auto_maskandscale(False)
        with np.errstate(all="ignore"):
            values = np.array(data, np.float64).reshape(shape).astype(code)
        if layout == "unwritten" and fill is not False:
            v[tuple(slice(0, c) for c in chunks)] = values[tuple(slice(0, c) for c in chunks)]
        else:
            v[...] = values


def _selection(n: int):
    bound = st.one_of(st.none(), st.integers(-n - 1, n + 1))
    step = st.one_of(st.none(), st.integers(-3, 3).filter(bool))
    return st.one_of(st.integers(-n, n - 1), st.builds(slice, bound, bound, step))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=_cf_variable(), draw=st.data())
def test_any_cf_variable_reduces_as_netcdf4(tmp_path_factory, case, draw):
    """Whatever the dtype, byte order, layout and CF attributes, every reduction over a random
    selection and every axis equals netCDF4-python + numpy.ma (the oracle)."""
    from tests.oracle import OPS, _as_masked, assert_reduces_like, decoded_dtype

    tmp = tmp_path_factory.mktemp("cf")
    path = tmp / "v.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _write_cf_variable(path, *case)
        index = activezarr.build_index(path, out=tmp, catalog=False)
        with netCDF4.Dataset(path) as ds:
            ncvar = ds.variables["v"]
            sel = draw.draw(st.tuples(*[_selection(n) for n in ncvar.shape]))
            try:
                expected = _as_masked(ncvar[sel], decoded_dtype(ncvar))
            except (TypeError, ValueError):
                return  # netCDF4 itself fails (e.g. a string scale_factor): no oracle
        active = activezarr.Active(index, "v")
        assert_same_read(active[sel], expected, where=f"read {sel}")
        axes = [None, *range(expected.ndim)] + (
            [(expected.ndim - 1, 0)] if expected.ndim > 1 else []
        )
        for op in OPS:
            for axis in axes:
                where = f"{op}{sel} axis={axis} {case}"
                assert_reduces_like(active, expected, sel, op, axis, where=where)


def test_integer_index_into_an_empty_dimension_is_refused(generated_dir, generated_index):
    """netCDF4 raises IndexError for ``v[0]`` of a dimension of length 0; so does activezarr
    (SelectionError is an IndexError), and every slice of it is an empty selection."""
    path = generated_dir / "corners_structure.nc"
    for var in ("zero_len", "rec_empty", "rec_empty_1d"):
        active = _active(generated_index, "corners_structure.nc", var)
        with netCDF4.Dataset(path) as ds, pytest.raises(IndexError):
            ds.variables[var][0]
        with pytest.raises(SelectionError):
            active.mean[0]
        assert int(active.count[...]) == 0 and active.sum[...].mask
        assert active[...].shape == oracle_read(path, var).shape


def test_parquet_indexes_of_the_structure_files(generated_dir, tmp_path):
    """Parquet references of files with groups, empty dimensions and refused variables:
    written without error, every variable reduces as netCDF4, the refused ones are named."""
    pytest.importorskip("pyarrow")
    from activezarr.errors import UnsupportedVariableError
    from activezarr.info import describe
    from tests.generate_corners import STRUCTURE_VARIABLES
    from tests.oracle import assert_same, oracle_reduce

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = activezarr.build_index(
            generated_dir / "corners_structure.nc", out=tmp_path, catalog=False, format="parquet"
        )
        for var in STRUCTURE_VARIABLES:
            active = activezarr.Active(index, var, allow_paths=[generated_dir])
            for op in ("mean", "count", "max"):
                expected = oracle_reduce(generated_dir / "corners_structure.nc", var, op)
                assert_same(active.reduce(op, ...), expected, op, atol=1e-12, where=var)
        refused = activezarr.build_index(
            generated_dir / "corners_refused.h5", out=tmp_path, catalog=False, format="parquet"
        )
    assert "not indexed: 'lzf' uses the HDF5 filter lzf" in describe(refused)
    with pytest.raises(UnsupportedVariableError, match="lzf"):
        activezarr.Active(refused, "lzf")


def test_xarray_over_the_index_keeps_zeros_of_plain_hdf5_datasets(generated_index):
    """A plain h5py dataset's fill 0 is not a _FillValue (netCDF4 masks nothing): xarray over
    the index keeps its zeros and integer dtype, and so does a netCDF scalar's default fill."""
    xr = pytest.importorskip("xarray")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_dataset(str(generated_index("corners_h5.h5")), engine="kerchunk")
        assert ds["fletcher_shuffle_gzip"].dtype == np.int32
        assert ds["shuffle_only"].notnull().all()
        ds = xr.open_dataset(str(generated_index("corners_structure.nc")), engine="kerchunk")
        assert ds["scalar_i8"].dtype == np.int64 and int(ds["scalar_i8"]) == 2**62


def test_half_precision_floats_reduce_as_h5py_reads_them(tmp_path):
    """netCDF has no float16 (netCDF4 cannot read it); activezarr reduces such HDF5 datasets
    as h5py reads them, with no default fill (inf is a value), sums in float64."""
    import h5py

    path = tmp_path / "half.h5"
    values = np.array([[1.5, np.inf, -2.0], [np.nan, 0.0, 65504.0]], "f2")
    with h5py.File(path, "w") as f:
        f.create_dataset("h", data=values.astype(">f2"), chunks=(1, 2))
    index = activezarr.build_index(path, out=tmp_path, catalog=False)
    active = activezarr.Active(index, "h")
    assert active.dtype == np.float16 and not active[...].mask.any()
    assert int(active.count[...]) == 6
    assert active.sum(axis=1)[1:, 1:].dtype == np.float64 and active.sum(axis=0)[1, 1:] == 65504
    assert np.isnan(active.max[...]) and active.max[0].dtype == np.float16
    assert active.max[0, ::2] == np.float16(1.5) and active.min[0] == np.float16(-2.0)
