"""The ``activezarr`` member of an index: attribute types (and source fingerprints).

* every index we write has ``{"activezarr": {"format": 1, "sources": ..., "attribute_types":
  ...}}`` next to ``refs``, and kerchunk readers ignore it (fsspec's ReferenceFileSystem sees
  only the references; zarr, xarray and VirtualiZarr open the index: test_index_format.py);
* ``VariableIndex.attrs`` holds each typed attribute as a numpy value of its HDF5 type, as
  netCDF4-python returns it (scalars for single values, arrays for several, ``str`` for text);
* ``.zattrs`` keeps plain JSON values; an index without types loads JSON values as before;
* a value that does not fit its recorded type is an ``IndexLoadError``, not dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import netCDF4
import numpy as np
import pytest

import activezarr
from activezarr.index.load import open_variable

ATTRS = {
    "scale_factor": np.float64(0.5),  # fits float32 exactly: JSON alone cannot tell
    "add_offset": np.float32(100.0),
    "valid_range": np.array([0, 250], dtype=np.uint8),
    "missing_value": np.int16(-1),
    "flag_values": np.array([1, 2, 4], dtype=np.int8),
    "big": np.uint64(2**63 + 5),
    "units": "K",
}


@pytest.fixture(scope="module")
def typed_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("typed") / "typed.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 6)
        v = ds.createVariable("v", "i2", ("x",), fill_value=-999)
        for key, value in ATTRS.items():
            v.setncattr(key, value)
        v.setncattr_string("history", "made by a test")  # a variable-length string
        v.set_auto_maskandscale(False)
        v[:] = np.arange(6, dtype="i2")
    return path


@pytest.fixture(scope="module")
def typed_index(typed_file, tmp_path_factory) -> Path:
    return activezarr.build_index(typed_file, out=tmp_path_factory.mktemp("idx"))


def test_member_records_attribute_types_and_sources(typed_index, typed_file):
    doc = json.loads(typed_index.read_text())
    member = doc["activezarr"]
    assert member["format"] == 1
    assert member["attribute_types"]["v"] == {
        "scale_factor": "<f8",
        "add_offset": "<f4",
        "valid_range": "|u1",
        "missing_value": "<i2",
        "flag_values": "|i1",
        "big": "<u8",
        "units": "str",
        "history": "str",
    }
    fingerprint = member["sources"][str(typed_file.resolve())]
    assert fingerprint["size"] == typed_file.stat().st_size
    # .zattrs stays plain JSON for other readers
    zattrs = json.loads(doc["refs"]["v/.zattrs"])
    assert zattrs["scale_factor"] == 0.5 and zattrs["valid_range"] == [0, 250]
    assert zattrs["big"] == 2**63 + 5


def test_fsspec_sees_only_the_references(typed_index):
    fs = fsspec.filesystem("reference", fo=str(typed_index), remote_protocol="file")
    keys = set(fs.references)
    assert "activezarr" not in keys and not any(k.startswith("activezarr") for k in keys)
    assert json.loads(fs.cat("v/.zattrs"))["units"] == "K"


def test_variable_attrs_are_typed_like_netcdf4(typed_index, typed_file):
    var = open_variable(typed_index, "v")
    with netCDF4.Dataset(typed_file) as ds:
        want = {k: ds["v"].getncattr(k) for k in ds["v"].ncattrs() if k != "_FillValue"}
    for key, expected in want.items():
        got = var.attrs[key]
        assert type(got) is type(expected), (key, type(got), type(expected))
        if isinstance(expected, str):
            assert got == expected
        else:
            assert np.dtype(got.dtype) == np.dtype(expected.dtype), key
            assert np.array_equal(got, expected) and np.shape(got) == np.shape(expected), key
    assert var.attrs["_ARRAY_DIMENSIONS"] == ["x"]


def test_typed_attrs_survive_the_cache(typed_index):
    """The second open comes from the binary cache: the same typed values."""
    first = open_variable(typed_index, "v")
    second = open_variable(typed_index, "v")
    for key, value in first.attrs.items():
        assert type(second.attrs[key]) is type(value), key
        assert np.array_equal(second.attrs[key], value), key


def test_float64_attribute_that_fits_float32_keeps_float64(typed_index, typed_file):
    """netCDF4 decodes with the attributes' types: float64 scale_factor gives float64."""
    with activezarr.Active(typed_index, "v") as active:
        got = active[...]
    with netCDF4.Dataset(typed_file) as ds:
        want = ds["v"][...]
    assert active.attrs["scale_factor"].dtype == np.float64
    np.testing.assert_array_equal(np.ma.getdata(got), np.ma.getdata(want))


def test_index_without_types_loads_json_values(typed_index, tmp_path):
    doc = json.loads(typed_index.read_text())
    del doc["activezarr"]
    (tmp_path / typed_index.name).write_text(json.dumps(doc))
    var = open_variable(tmp_path / typed_index.name, "v", allow_paths=[typed_index.parent.parent])
    assert var.attrs["scale_factor"] == 0.5 and type(var.attrs["scale_factor"]) is float
    assert var.attrs["valid_range"] == [0, 250]
    assert var.attribute_types == {}


@pytest.mark.parametrize(
    ("attr", "value", "type_name"),
    [
        ("scale_factor", "abc", "<f4"),
        ("valid_range", [0, 300], "|u1"),
        ("missing_value", 1.5, "<i2"),
        ("units", 3, "str"),
        ("scale_factor", [], "<f4"),
        ("scale_factor", 1.0, "<f3"),
        ("scale_factor", 1.0, "|O"),
    ],
)
def test_value_that_does_not_fit_its_type_is_refused(typed_index, tmp_path, attr, value, type_name):
    doc = json.loads(typed_index.read_text())
    zattrs = json.loads(doc["refs"]["v/.zattrs"])
    zattrs[attr] = value
    doc["refs"]["v/.zattrs"] = json.dumps(zattrs)
    doc["activezarr"]["attribute_types"]["v"][attr] = type_name
    index = typed_index.parent / f"bad_{attr}.json"
    index.write_text(json.dumps(doc))
    with pytest.raises(activezarr.IndexLoadError, match=str(index)) as info:
        activezarr.Active(index, "v", check_stale=False)
    assert attr in str(info.value) or type_name in str(info.value)


def test_json_scale_factor_that_is_not_a_number_is_refused(typed_index):
    """Without types too: a CF packing attribute that is no number is an error, not dropped."""
    doc = json.loads(typed_index.read_text())
    del doc["activezarr"]
    zattrs = json.loads(doc["refs"]["v/.zattrs"])
    zattrs["scale_factor"] = "abc"
    doc["refs"]["v/.zattrs"] = json.dumps(zattrs)
    index = typed_index.parent / "abc.json"
    index.write_text(json.dumps(doc))
    with pytest.raises(activezarr.IndexLoadError, match="scale_factor"):
        activezarr.Active(index, "v", allow_paths=[typed_index.parent.parent])


def test_string_scale_factor_in_the_file_is_not_an_index_error(tmp_path):
    """A typed string attribute is the file's own: netCDF4 leaves the data packed (warning)."""
    path = tmp_path / "s.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 3)
        v = ds.createVariable("v", "i2", ("x",))
        v.set_auto_maskandscale(False)
        v[:] = np.array([1, 2, 3], dtype="i2")
        v.scale_factor = "abc"
    index = activezarr.build_index(path, out=tmp_path / "idx")
    var = open_variable(index, "v")
    assert var.attrs["scale_factor"] == "abc" and var.attribute_types["scale_factor"] == "str"


def test_combined_index_keeps_attribute_types(tmp_path):
    """A combined index carries the files' attribute types: float64 packing stays float64."""
    paths = []
    for i in range(2):
        path = tmp_path / "data" / f"p_{i}.nc"
        path.parent.mkdir(exist_ok=True)
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("time", 4)
            t = ds.createVariable("time", "f8", ("time",))
            t.units = "days since 2000-01-01"
            t[:] = np.arange(4) + 4 * i
            v = ds.createVariable("v", "i2", ("time",), chunksizes=(2,), fill_value=-1)
            v.scale_factor = np.float64(0.5)
            v.set_auto_maskandscale(False)
            v[:] = np.arange(4, dtype="i2")
        activezarr.build_index(path, out=tmp_path / "idx")
        paths.append(path)
    combined = activezarr.Catalog(tmp_path / "idx").combine(var="v", concat_dim="time")
    assert json.loads(Path(combined).read_text())["activezarr"]["attribute_types"]["v"] == {
        "scale_factor": "<f8"
    }
    with activezarr.Active(combined, "v") as active:
        assert active.attrs["scale_factor"].dtype == np.float64
        assert active[...].dtype == np.float64
        assert float(active.sum[...]) == 2 * 0.5 * (0 + 1 + 2 + 3)
