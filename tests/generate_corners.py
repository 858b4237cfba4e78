"""Corner-case files where a reduction used to differ from netCDF4-python, one family per file.

Each builder registers with ``tests.generate`` like the other generated files, so every
variable here also runs through the whole oracle matrix (reads, reductions, components over
many selections and axes). The families are those of issue 9: NaN in min/max, 64-bit integer
means, packed float32 values, attribute types, attributes netCDF4 refuses (``_check_safecast``),
no-fill variables, plain HDF5 fills, ``_Unsigned`` spellings, record variables shorter than
their unlimited dimension, and large contiguous variables.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import netCDF4
import numpy as np

from tests.generate import generated, ints, put_raw, rng_for, sprinkle

DEFAULT_FILL = netCDF4.default_fillvals


def _dims(ds, **sizes) -> tuple[str, ...]:
    for name, n in sizes.items():
        ds.createDimension(name, n)
    return tuple(sizes)


# ------------------------------------------------------------------------- NaN in min/max
@generated("corners_nan.nc", "nan_late_block", "nan_late_chunk", "nan_rows", "nan_fill_nan")
def build_nan(path: Path) -> None:
    """NaN after the first 65,536-element block of a big uncompressed chunk, NaN only in a
    later chunk of a compressed variable, NaN along kept axes, NaN that is the fill."""
    with netCDF4.Dataset(path, "w") as ds:
        dims = _dims(ds, t=2, y=300, x=300)
        rng = rng_for("nan_late_block")
        v = ds.createVariable("nan_late_block", "f8", dims, chunksizes=(1, 300, 300))
        data = rng.normal(0, 1, (2, 300, 300))
        data[1, 250, 17] = np.nan  # element 75,017 of the second chunk
        put_raw(v, data)
        small = _dims(ds, a=8, b=10)
        rng = rng_for("nan_late_chunk")
        v = ds.createVariable(
            "nan_late_chunk", "f4", small, chunksizes=(2, 5), zlib=True, fill_value=np.float32(-1)
        )
        data = sprinkle(rng.normal(0, 1, (8, 10)).astype("f4"), -1, rng)
        data[7, 9] = np.nan
        put_raw(v, data)
        rng = rng_for("nan_rows")
        v = ds.createVariable("nan_rows", "f4", small, chunksizes=(3, 4))
        data = rng.normal(0, 1, (8, 10)).astype("f4")
        data[[1, 6], [2, 8]] = np.nan
        put_raw(v, data)
        rng = rng_for("nan_fill_nan")
        v = ds.createVariable("nan_fill_nan", "f8", small, chunksizes=(4, 4), fill_value=np.nan)
        put_raw(v, sprinkle(rng.normal(0, 1, (8, 10)), np.nan, rng))


# -------------------------------------------------------------------- 64-bit integer means
@generated("corners_int64.nc", "i8_near_2_62", "u8_near_2_64", "i8_time_ns", "i8_negative")
def build_int64(path: Path) -> None:
    """Values whose integer sum wraps: the mean must be the float64 mean of the values."""
    with netCDF4.Dataset(path, "w") as ds:
        dims = _dims(ds, t=6, x=7)
        specs = {
            "i8_near_2_62": ("i8", 2**62 - 10**6, 2**62),
            "u8_near_2_64": ("u8", 2**64 - 10**9, 2**64 - 3),
            "i8_time_ns": ("i8", 1_600_000_000 * 10**9, 1_700_000_000 * 10**9),
            "i8_negative": ("i8", -(2**63) + 2, -(2**63) + 10**6),
        }
        for name, (code, lo, hi) in specs.items():
            v = ds.createVariable(name, code, dims, chunksizes=(4, 3), zlib=True)
            put_raw(v, ints(rng_for(name), (6, 7), code, lo, hi))


# ------------------------------------------------------------------------- packed values
@generated("corners_packed.nc", "p32_single", "p32_neg_scale", "p32_offset_only_f4")
def build_packed(path: Path) -> None:
    """Packed variables netCDF4 unpacks to float32: reductions are over those float32s."""
    with netCDF4.Dataset(path, "w") as ds:
        dims = _dims(ds, t=5, x=9)
        v = ds.createVariable("p32_single", "i2", dims, chunksizes=(2, 4), fill_value=np.int16(-1))
        v.scale_factor = np.float32(0.01)
        v.add_offset = np.float32(273.15)
        rng = rng_for("p32_single")
        put_raw(v, sprinkle(ints(rng, (5, 9), "i2", -30000, 30000), -1, rng))
        v = ds.createVariable("p32_neg_scale", "i2", dims, chunksizes=(3, 3), zlib=True)
        v.scale_factor = np.float32(-0.037)
        v.add_offset = np.float32(1.5)
        put_raw(v, ints(rng_for("p32_neg_scale"), (5, 9), "i2", -30000, 30000))
        v = ds.createVariable("p32_offset_only_f4", "i2", dims, chunksizes=(5, 9))
        v.add_offset = np.float32(0.1)
        put_raw(v, ints(rng_for("p32_offset_only_f4"), (5, 9), "i2", -3000, 3000))


# ------------------------------------------------------------- attributes netCDF4 refuses
SAFECAST_VARIABLES = (
    "mv_string",
    "mv_fraction_on_i4",
    "vmin_f8_on_f4",
    "vmax_too_big_for_i2",
    "vrange_u1_on_unsigned_i1",
    "mv_f4_on_f8",
    "vrange_three_values",
    "vrange_safe_vmax_unsafe",
)


@generated("corners_safecast.nc", *SAFECAST_VARIABLES)
def build_safecast(path: Path) -> None:
    """Attributes that do (and do not) survive netCDF4's cast to the variable's type."""
    with netCDF4.Dataset(path, "w") as ds:
        dims = _dims(ds, t=4, x=10)

        def var(name, code, **attrs):
            v = ds.createVariable(name, code, dims, chunksizes=(2, 5))
            for key, value in attrs.items():
                if isinstance(value, str):
                    v.setncattr_string(key, value)
                else:
                    v.setncattr(key, value)
            return v, rng_for(name)

        v, rng = var("mv_string", "f4", missing_value="-999")
        put_raw(v, sprinkle(rng.normal(0, 1, (4, 10)).astype("f4"), -999, rng, 0.2))
        v, rng = var("mv_fraction_on_i4", "i4", missing_value=np.float64(1.5))
        put_raw(v, ints(rng, (4, 10), "i4", -3, 3))
        v, rng = var("vmin_f8_on_f4", "f4", valid_min=np.float64(0.1))
        put_raw(v, rng.uniform(-1, 1, (4, 10)).astype("f4"))
        v, rng = var("vmax_too_big_for_i2", "i2", valid_max=np.int32(40000))
        put_raw(v, ints(rng, (4, 10), "i2"))
        v, rng = var("vrange_u1_on_unsigned_i1", "i1", valid_range=np.array([0, 255], "u1"))
        v.setncattr("_Unsigned", "true")
        put_raw(v, ints(rng, (4, 10), "i1"))
        v, rng = var("mv_f4_on_f8", "f8", missing_value=np.float32(1e20))
        put_raw(v, sprinkle(rng.normal(0, 1, (4, 10)), float(np.float32(1e20)), rng, 0.2))
        v, rng = var("vrange_three_values", "i2", valid_range=np.array([-5, 0, 5], "i2"))
        v.setncattr("valid_max", np.int16(3))
        put_raw(v, ints(rng, (4, 10), "i2", -8, 8))
        v, rng = var(
            "vrange_safe_vmax_unsafe",
            "f4",
            valid_range=np.array([-0.5, 0.5], "f4"),
            valid_max=np.float64(0.3),
        )
        put_raw(v, rng.uniform(-1, 1, (4, 10)).astype("f4"))


# ------------------------------------------------------------------------------ no fill
@generated("corners_nofill.nc", "nofill_i1", "nofill_u1", "nofill_i2", "nofill_f4")
def build_nofill(path: Path) -> None:
    """Variables created with fill_value=False (HDF5 fill time NEVER): byte types do not mask
    the default fill, others do. Every chunk is written (unwritten ones are undefined)."""
    with netCDF4.Dataset(path, "w") as ds:
        dims = _dims(ds, t=4, x=6)
        for code in ("i1", "u1", "i2", "f4"):
            name = f"nofill_{code}"
            v = ds.createVariable(name, code, dims, chunksizes=(2, 3), fill_value=False)
            rng = rng_for(name)
            if code == "f4":
                data = rng.normal(0, 1, (4, 6)).astype("f4")
            else:
                data = ints(rng, (4, 6), code)
            put_raw(v, sprinkle(data, DEFAULT_FILL[code], rng, 0.25))


# ------------------------------------------------------------------------- plain HDF5
@generated("corners_plain.h5", "plain_i4_fill5", "plain_f4_default", "plain_f8_nan_fill")
def build_plain(path: Path) -> None:
    """A plain HDF5 file (no netCDF attributes): a dataset's own fill value is not a
    _FillValue (written and unwritten values equal to it count), netCDF's default fill is."""
    with h5py.File(path, "w") as f:
        d = f.create_dataset("plain_i4_fill5", (8, 6), dtype="i4", chunks=(4, 3), fillvalue=5)
        d[0:4, :] = sprinkle(
            ints(rng_for("plain_i4_fill5"), (4, 6), "i4", 0, 9), -2147483647, rng_for("x"), 0.2
        )
        d = f.create_dataset("plain_f4_default", (8, 6), dtype="f4", chunks=(4, 3))
        d[0:4, 0:3] = sprinkle(
            rng_for("plain_f4_default").normal(0, 1, (4, 3)).astype("f4"),
            np.float32(DEFAULT_FILL["f4"]),
            rng_for("y"),
            0.3,
        )
        d = f.create_dataset(
            "plain_f8_nan_fill", (8, 6), dtype="f8", chunks=(8, 3), fillvalue=np.nan
        )
        d[:, 0:3] = rng_for("plain_f8_nan_fill").normal(0, 1, (8, 3))


# ------------------------------------------------------------------------- _Unsigned
@generated("corners_unsigned.nc", "unsigned_upper", "unsigned_title", "unsigned_one")
def build_unsigned_spellings(path: Path) -> None:
    """netCDF4 honours _Unsigned only as "true"/"True": "TRUE" and "1" leave values signed."""
    with netCDF4.Dataset(path, "w") as ds:
        dims = _dims(ds, x=12)
        for name, spelling in (
            ("unsigned_upper", "TRUE"),
            ("unsigned_title", "True"),
            ("unsigned_one", "1"),
        ):
            v = ds.createVariable(name, "i2", dims, chunksizes=(5,), fill_value=np.int16(-3))
            v.setncattr("_Unsigned", spelling)
            rng = rng_for(name)
            put_raw(v, sprinkle(ints(rng, 12, "i2"), -3, rng))


# ------------------------------------------------------------------------ record variables
@generated("corners_records.nc", "rec_long", "rec_short", "rec_short_fill", "time")
def build_records(path: Path) -> None:
    """Record variables shorter than their unlimited dimension read never-written records as
    fill (netCDF4 reports the dimension's length)."""
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("x", 3)
        t = ds.createVariable("time", "f8", ("time",))
        v = ds.createVariable("rec_long", "f4", ("time", "x"), chunksizes=(4, 3))
        v[0:10] = rng_for("rec_long").normal(0, 1, (10, 3)).astype("f4")
        v = ds.createVariable("rec_short", "i2", ("time", "x"), chunksizes=(4, 3), zlib=True)
        v[0:5] = ints(rng_for("rec_short"), (5, 3), "i2", -100, 100)
        v = ds.createVariable(
            "rec_short_fill", "f4", ("time", "x"), chunksizes=(4, 3), fill_value=np.float32(-5)
        )
        v[0:2] = rng_for("rec_short_fill").normal(0, 1, (2, 3)).astype("f4")
        t[0:3] = [0.0, 1.0, 2.0]


# --------------------------------------------------------------------- contiguous storage
@generated("corners_contiguous.nc", "contig_big", "contig_big_i2")
def build_contiguous(path: Path) -> None:
    """Contiguous variables large enough to be cut into virtual chunks by the indexer."""
    with netCDF4.Dataset(path, "w") as ds:
        dims = _dims(ds, y=1200, x=1000)
        v = ds.createVariable("contig_big", "f4", dims, contiguous=True, fill_value=np.float32(-1))
        rng = rng_for("contig_big")
        put_raw(v, sprinkle(rng.normal(0, 1, (1200, 1000)).astype("f4"), -1, rng, 0.01))
        ds.createDimension("z", 2000)
        v = ds.createVariable("contig_big_i2", "i2", ("z", "y"), contiguous=True)
        v.scale_factor = np.float32(0.5)
        v.valid_min = np.int16(-20000)
        put_raw(v, ints(rng_for("contig_big_i2"), (2000, 1200), "i2"))


# ---------------------------------------------------------------------- attribute types
@generated("corners_types.nc", "p64_binary_fraction", "pint_scale", "p64_on_i4", "pf32_on_i4")
def build_attribute_types(path: Path) -> None:
    """The decoded dtype follows the attributes' types (kept in the index's own member):
    float64 0.5/10.0 on int16 decode to float64 although they fit float32; an int16
    scale_factor on int16 stays int16; float32 attributes on int32 decode to float64."""
    with netCDF4.Dataset(path, "w") as ds:
        dims = _dims(ds, t=4, x=9)
        specs = {
            "p64_binary_fraction": ("i2", np.float64(0.5), np.float64(10.0)),
            "pint_scale": ("i2", np.int16(2), None),
            "p64_on_i4": ("i4", np.float64(0.25), np.float64(-3.0)),
            "pf32_on_i4": ("i4", np.float32(0.125), None),
        }
        for name, (code, scale, offset) in specs.items():
            v = ds.createVariable(name, code, dims, chunksizes=(2, 5))
            v.scale_factor = scale
            if offset is not None:
                v.add_offset = offset
            put_raw(v, ints(rng_for(name), (4, 9), code, -1000, 1000))
