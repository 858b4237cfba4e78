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

# Files of many small variables that run through the oracle matrix with fewer selections (the
# forms that differ: whole, strided, reversed, integer-collapsed, one element), to keep the
# suite fast; tests/test_cf_corners.py's hypothesis test draws arbitrary selections of them.
LIGHT_MATRIX_FILES = {
    "corners_filters.nc",
    "corners_h5.h5",
    "corners_structure.nc",
    "corners_cf2.nc",
    "corners_be_unsigned.nc",
}
LIGHT_SELECTIONS = {"full", "ellipsis", "steps", "negint_negstep", "all_ints", "int_middle"}


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


# ----------------------------------------------------------- filters netCDF4 can write
FILTER_VARIABLES = (
    "zstd_shuffle",
    "zstd_fletcher_i8",
    "bzip2_i2",
    "blosc_lz4_f4",
    "blosc_zstd_bitshuffle_i4",
    "blosc_zlib_fletcher_f8",
    "quantize_bitround_f4",
)


def _compression(kind: str) -> dict:
    """netCDF4's ``compression=`` if this build has the filter, else zlib (same values)."""
    flag = {"zstd": "zstandard", "bzip2": "bzip2"}.get(kind.split("_")[0], kind.split("_")[0])
    if getattr(netCDF4, f"__has_{flag}_support__", 0):
        return {"compression": kind}
    return {"zlib": True}


@generated("corners_filters.nc", *FILTER_VARIABLES)
def build_filters(path: Path) -> None:
    """zstd, bzip2 and blosc (each compressor, byte and bit shuffle, with fletcher32) as
    netCDF4-python writes them (plugins bundled with it), and quantized floats. The values
    repeat so that blosc can compress every chunk (its HDF5 filter fails on chunks it cannot)."""
    with netCDF4.Dataset(path, "w") as ds:
        dims = _dims(ds, t=20, x=50)
        base = np.arange(1000).reshape(20, 50) % 13

        def var(name, code, kind, **kwargs):
            v = ds.createVariable(
                name, code, dims, chunksizes=(10, 25), **_compression(kind), **kwargs
            )
            return v, rng_for(name)

        v, rng = var("zstd_shuffle", "f4", "zstd", shuffle=True, fill_value=np.float32(-9))
        put_raw(v, sprinkle((base * 0.25).astype("f4"), -9, rng))
        v, rng = var("zstd_fletcher_i8", "i8", "zstd", complevel=9, fletcher32=True)
        put_raw(v, base.astype("i8") * 2**40 - 7)
        v, rng = var("bzip2_i2", "i2", "bzip2", fill_value=np.int16(12))
        put_raw(v, base.astype("i2"))
        v, rng = var("blosc_lz4_f4", "f4", "blosc_lz4", fill_value=np.float32(0.5))
        put_raw(v, sprinkle((base * 0.5).astype("f4"), np.nan, rng, 0.02))
        v, rng = var("blosc_zstd_bitshuffle_i4", "i4", "blosc_zstd", blosc_shuffle=2)
        put_raw(v, sprinkle(base.astype("i4") - 6, DEFAULT_FILL["i4"], rng))
        v, rng = var("blosc_zlib_fletcher_f8", "f8", "blosc_zlib", fletcher32=True)
        put_raw(v, base * 1e-3)
        v = ds.createVariable(
            "quantize_bitround_f4",
            "f4",
            dims,
            zlib=True,
            significant_digits=6,
            quantize_mode="BitRound",
            fill_value=np.float32(1e20),
        )
        rng = rng_for("quantize_bitround_f4")
        data = np.ma.masked_array(rng.normal(280, 20, (20, 50)).astype("f4"))
        data[3, 4:9] = np.ma.masked
        v[:] = data


# ------------------------------------------------------------- HDF5 layouts h5py makes
H5_VARIABLES = (
    "shuffle_only",
    "shuffle_fletcher_be",
    "fletcher_shuffle_gzip",
    "compact_f4",
    "user_fill_no_attr",
    "tiny_chunks",
    "chunk_beyond_shape",
    "empty_chunked",
    "scalar_h5",
    "enum_u1",
)


@generated("corners_h5.h5", *H5_VARIABLES)
def build_h5(path: Path) -> None:
    """What h5py writes and netCDF4 reads: shuffle without compression, fletcher32 in front
    of shuffle, compact layout, a dataset fill value without a _FillValue attribute, 3,000
    one-element chunks, chunks larger than the (growable) extent, an empty dataset, a scalar,
    an enum (read as its base type)."""
    with h5py.File(path, "w") as f:
        rng = rng_for("corners_h5")
        d = rng.normal(0, 1, (9, 13)).astype("f4")
        i = ints(rng, (9, 13), "i4", -1000, 1000)
        f.create_dataset("shuffle_only", data=d, chunks=(4, 5), shuffle=True)
        f.create_dataset(
            "shuffle_fletcher_be",
            data=i.astype(">i2"),
            chunks=(4, 5),
            shuffle=True,
            fletcher32=True,
        )
        f.create_dataset(
            "fletcher_shuffle_gzip",
            data=i,
            chunks=(4, 5),
            shuffle=True,
            fletcher32=True,
            compression="gzip",
        )
        space = h5py.h5s.create_simple((3, 4))
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_layout(h5py.h5d.COMPACT)
        dsid = h5py.h5d.create(f.id, b"compact_f4", h5py.h5t.NATIVE_FLOAT, space, plist)
        dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(d[:3, :4]))
        u = f.create_dataset("user_fill_no_attr", (6, 5), dtype="i2", chunks=(4, 4), fillvalue=-3)
        u[0:4, 0:4] = sprinkle(ints(rng, (4, 4), "i2", -5, 5), -3, rng)
        f.create_dataset("tiny_chunks", data=rng.normal(0, 1, (60, 50)), chunks=(1, 1))
        f.create_dataset("chunk_beyond_shape", data=d, chunks=(16, 16), maxshape=(None, None))
        f.create_dataset("empty_chunked", (0, 5), dtype="f4", chunks=(2, 2), maxshape=(None, 5))
        f.create_dataset("scalar_h5", data=np.float64(3.25))
        kinds = h5py.enum_dtype({"clear": 0, "cloud": 1, "snow": 7}, basetype="u1")
        f.create_dataset("enum_u1", data=np.array([[0, 1, 7], [7, 7, 0]], "u1"), dtype=kinds)


@generated("corners_refused.h5")
def build_refused(path: Path) -> None:
    """Datasets activezarr does not index, each for a reason ``info`` states: filters it
    cannot decode (lzf, scale-offset int and float, n-bit, szip), external storage, strings,
    variable-length, compound, complex and boolean types."""
    with h5py.File(path, "w") as f:
        rng = rng_for("corners_refused")
        d = rng.normal(0, 1, (9, 13)).astype("f4")
        i = ints(rng, (9, 13), "i4", -1000, 1000)
        f.create_dataset("lzf", data=d, chunks=(4, 5), compression="lzf")
        f.create_dataset("scaleoffset_int", data=i, chunks=(4, 5), scaleoffset=0)
        f.create_dataset("scaleoffset_float", data=d, chunks=(4, 5), scaleoffset=3)
        if h5py.h5z.filter_avail(h5py.h5z.FILTER_SZIP):
            f.create_dataset("szip", data=i, chunks=(4, 5), compression="szip")
        space = h5py.h5s.create_simple((9, 13))
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_chunk((4, 5))
        plist.set_filter(h5py.h5z.FILTER_NBIT)
        nbit = h5py.h5t.NATIVE_INT32.copy()
        nbit.set_precision(16)
        h5py.h5d.create(f.id, b"nbit", nbit, space, plist).write(h5py.h5s.ALL, h5py.h5s.ALL, i)
        external = path.with_suffix(".external")
        f.create_dataset("external", (10,), dtype="i4", external=[(str(external), 0, 40)])
        f["external"][:] = np.arange(10, dtype="i4")
        f.create_dataset("fixed_strings", data=np.array([b"a", b"bc"]))
        f.create_dataset("vlen_strings", data=["a", "bcd"], dtype=h5py.string_dtype())
        f.create_dataset("compound", data=np.zeros(3, [("a", "i4"), ("b", "f4")]))
        f.create_dataset("complex", data=np.array([1 + 2j]))
        f.create_dataset("boolean", data=np.array([True, False]))


REFUSED = {  # dataset -> what ``info`` and ``Active`` say about it
    "lzf": "filter lzf",
    "scaleoffset_int": "filter scaleoffset",
    "scaleoffset_float": "filter scaleoffset",
    "szip": "filter szip",
    "nbit": "filter nbit",
    "external": "external files",
    "fixed_strings": "string type",
    "vlen_strings": "variable-length string type",
    "compound": "compound/opaque type",
    "complex": "complex128",
    "boolean": "bool",
}


# ------------------------------------------------------------- netCDF4 file structure
STRUCTURE_VARIABLES = (
    "grp/sub/deep",
    "grp/mid",
    "top same",
    "température",
    "a.b",
    "zero_len",
    "rec_empty",
    "rec_empty_1d",
    "rec_a",
    "rec_b",
    "scalar_i8",
    "chunk_gt_dim",
    "chunk_ones",
    "enum_var",
)


@generated("corners_structure.nc", *STRUCTURE_VARIABLES)
def build_structure(path: Path) -> None:
    """Variables in groups (named by path), names that need care, dimensions of length 0, an
    unlimited dimension without records, record variables of different lengths, a 0-d
    int64, a chunk longer than its dimension, chunks of one element, an enum; and string,
    char, vlen and compound variables, which are not indexed (``info`` says why)."""
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 6)
        ds.createDimension("zero", 0)
        ds.createDimension("rec", None)
        ds.createDimension("rec0", None)
        rng = rng_for("corners_structure")
        g = ds.createGroup("grp")
        g.createDimension("y", 4)
        v = g.createGroup("sub").createVariable(
            "deep", "f4", ("y", "x"), chunksizes=(2, 3), fill_value=np.float32(-1)
        )
        put_raw(v, sprinkle(rng.normal(0, 1, (4, 6)).astype("f4"), -1, rng))
        put_raw(g.createVariable("mid", "i2", ("x",)), ints(rng, 6, "i2", -5, 5))
        put_raw(ds.createVariable("top same", "f8", ("x",)), rng.normal(0, 1, 6))
        v = ds.createVariable("température", "f4", ("x",), fill_value=np.float32(0))
        put_raw(v, sprinkle(rng.normal(0, 1, 6).astype("f4"), 0, rng))
        put_raw(ds.createVariable("a.b", "i4", ("x",)), ints(rng, 6, "i4", -5, 5))
        ds.createVariable("zero_len", "f4", ("zero", "x"))
        ds.createVariable("rec_empty", "f4", ("rec0", "x"))
        ds.createVariable("rec_empty_1d", "i4", ("rec0",))
        v = ds.createVariable("rec_a", "f4", ("rec", "x"), fill_value=np.float32(-2))
        v[0:3] = rng.normal(0, 1, (3, 6)).astype("f4")
        ds.createVariable("rec_b", "i2", ("rec",))[0:7] = ints(rng, 7, "i2", 0, 100)
        ds.createVariable("scalar_i8", "i8", ()).assignValue(2**62)
        v = ds.createVariable("chunk_gt_dim", "f4", ("rec",), chunksizes=(100,))
        put_raw(v, rng.normal(0, 1, 6).astype("f4"), slice(0, 6))
        v = ds.createVariable("chunk_ones", "i4", ("rec", "x"), chunksizes=(1, 1))
        v[0:7] = ints(rng, (7, 6), "i4", -9, 9)
        kinds = ds.createEnumType(np.uint8, "kind_t", {"a": 0, "b": 1, "none": 255})
        v = ds.createVariable("enum_var", kinds, ("x",), fill_value=255)
        v[:] = np.array([0, 1, 1, 0, 255, 1], "u1")
        ds.createVariable("str_var", str, ("x",))[0] = "hello"
        ds.createVariable("char_var", "S1", ("x",))[:] = np.array(list("abcdef"), "S1")
        ds.createVariable("vlen_var", ds.createVLType(np.int32, "vl_t"), ("x",))
        compound = ds.createCompoundType(np.dtype([("a", "i4"), ("b", "f8")]), "cmp_t")
        ds.createVariable("cmp_var", compound, ("x",))


STRUCTURE_REFUSED = {
    "str_var": "variable-length string type",
    "char_var": "string type",
    "vlen_var": "variable-length type",
    "cmp_var": "compound/opaque type",
}


# ------------------------------------------------------------- CF attribute combinations
CF_COMBO_VARIABLES = (
    "i2_fill_mv_vr_packed",
    "vmin_only_scaled",
    "vmax_only_scaled_f8",
    "vmin_f4_on_scaled_i2",
    "unsigned_fill_vr_i2",
    "unsigned_fill_vr_i1",
    "unsigned_vmax_negative",
    "unsigned_mv_signed",
    "unsigned_mv_u1",
    "fill_inf",
    "fill_neginf_mv_nan",
    "mv_i4_on_f4",
    "mv_f8_on_i2",
    "mv_i8_too_big_on_i2",
    "scale_offset_i4_arrays",
    "scale_i8_on_i4",
    "scale_u1_wraps",
    "offset_f8_on_f4",
    "scale_f4_on_f8",
    "scale_two_values",
    "scale_zero_inf_data",
    "be_packed",
    "i1_default",
    "u1_default",
    "i1_default_unwritten",
    "u1_unwritten_fill",
    "i8_sum_wraps",
    "u8_sum_wraps",
    "all_masked_chunks",
    "all_masked_i2",
    "fill_and_string_mv",
    "vrange_reversed",
    "vrange_nan",
    "vmin_nan",
    "fill_outside_vrange",
    "scale_nan",
    "mv_empty",
)


@generated("corners_cf2.nc", *CF_COMBO_VARIABLES)
def build_cf_combinations(path: Path) -> None:
    """CF attributes together: _FillValue + missing_value vector + valid_range on packed
    ints, one-sided bounds with scale, _Unsigned with fill/range/missing (compared as
    unsigned), non-finite fills and bounds, attributes of other types, integer and
    1-element-array packing (an integer scale wraps as numpy wraps it), a 2-element scale
    (not applied), float data times a zero scale (inf * 0 is NaN), big-endian everything, byte
    default fills, 64-bit sums that wrap, all-masked chunks, an empty missing_value."""
    with netCDF4.Dataset(path, "w") as ds:
        dims = _dims(ds, t=5, x=8)
        shape = (5, 8)

        def var(name, code, fill=None, **attrs):
            endian = "big" if np.dtype(code).byteorder == ">" else "native"
            v = ds.createVariable(
                name, code, dims, chunksizes=(2, 3), fill_value=fill, endian=endian
            )
            for key, value in attrs.items():
                if isinstance(value, str) and key != "_Unsigned":
                    v.setncattr_string(key, value)
                else:
                    v.setncattr(key, value)
            return v, rng_for(name)

        v, rng = var(
            "i2_fill_mv_vr_packed",
            "i2",
            fill=np.int16(-32768),
            missing_value=np.array([-999, -998], "i2"),
            valid_range=np.array([-1000, 1000], "i2"),
            scale_factor=np.float32(0.1),
            add_offset=np.float32(5),
        )
        data = ints(rng, shape, "i2", -1200, 1200)
        for value in (-999, -998, -32768):
            sprinkle(data, value, rng)
        put_raw(v, data)
        v, rng = var("vmin_only_scaled", "i2", valid_min=np.int16(-100), scale_factor=np.float32(2))
        put_raw(v, ints(rng, shape, "i2", -200, 200))
        v, rng = var(
            "vmax_only_scaled_f8",
            "i2",
            valid_max=np.int16(100),
            scale_factor=np.float64(0.5),
            add_offset=np.float64(1),
        )
        put_raw(v, ints(rng, shape, "i2", -200, 200))
        v, rng = var(
            "vmin_f4_on_scaled_i2", "i2", valid_min=np.float32(-100), scale_factor=np.float32(2)
        )
        put_raw(v, ints(rng, shape, "i2", -200, 200))
        v, rng = var(
            "unsigned_fill_vr_i2",
            "i1",
            fill=np.int8(-1),
            _Unsigned="true",
            valid_range=np.array([10, 200], "i2"),  # 200 does not fit int8: not used
        )
        put_raw(v, sprinkle(ints(rng, shape, "i1"), -1, rng))
        v, rng = var(
            "unsigned_fill_vr_i1",
            "i1",
            fill=np.int8(-1),
            _Unsigned="true",
            valid_range=np.array([10, -56], "i1"),  # 10..200 once read as unsigned
        )
        put_raw(v, sprinkle(ints(rng, shape, "i1"), -1, rng))
        v, rng = var("unsigned_vmax_negative", "i2", _Unsigned="true", valid_max=np.int16(-100))
        put_raw(v, ints(rng, shape, "i2"))
        v, rng = var("unsigned_mv_signed", "i1", _Unsigned="true", missing_value=np.int8(-2))
        put_raw(v, sprinkle(ints(rng, shape, "i1"), -2, rng))
        v, rng = var("unsigned_mv_u1", "i1", _Unsigned="true", missing_value=np.uint8(254))
        put_raw(v, sprinkle(ints(rng, shape, "i1"), -2, rng))
        v, rng = var("fill_inf", "f4", fill=np.float32(np.inf))
        put_raw(v, sprinkle(rng.normal(0, 1, shape).astype("f4"), np.inf, rng))
        v, rng = var("fill_neginf_mv_nan", "f8", fill=-np.inf, missing_value=np.nan)
        data = rng.normal(0, 1, shape)
        sprinkle(data, -np.inf, rng)
        put_raw(v, sprinkle(data, np.nan, rng))
        v, rng = var("mv_i4_on_f4", "f4", missing_value=np.int32(-999))
        put_raw(v, sprinkle(rng.normal(0, 1, shape).astype("f4"), -999, rng))
        v, rng = var("mv_f8_on_i2", "i2", missing_value=np.float64(-999.0))
        put_raw(v, sprinkle(ints(rng, shape, "i2", -5, 5), -999, rng))
        v, rng = var("mv_i8_too_big_on_i2", "i2", missing_value=np.int64(70000))
        put_raw(v, ints(rng, shape, "i2", -5, 5))
        v, rng = var(
            "scale_offset_i4_arrays",
            "i4",
            scale_factor=np.array([3], "i4"),
            add_offset=np.array([1], "i4"),
        )
        put_raw(v, ints(rng, shape, "i4", -1000, 1000))
        v, rng = var("scale_i8_on_i4", "i4", scale_factor=np.int64(2))
        put_raw(v, ints(rng, shape, "i4", -1000, 1000))
        v, rng = var("scale_u1_wraps", "u1", scale_factor=np.uint8(2))
        put_raw(v, ints(rng, shape, "u1", 0, 200))
        v, rng = var("offset_f8_on_f4", "f4", add_offset=np.float64(0.1))
        put_raw(v, rng.normal(0, 1, shape).astype("f4"))
        v, rng = var("scale_f4_on_f8", "f8", scale_factor=np.float32(0.1))
        put_raw(v, rng.normal(0, 1, shape))
        v, rng = var("scale_two_values", "i2", scale_factor=np.array([1.0, 2.0], "f4"))
        put_raw(v, ints(rng, shape, "i2", -5, 5))
        v, rng = var("scale_zero_inf_data", "f4", scale_factor=np.float32(0))
        data = rng.normal(0, 1, shape).astype("f4")
        data[1, 2], data[3, 7] = np.inf, -np.inf
        put_raw(v, data)
        v, rng = var(
            "be_packed",
            np.dtype(">i2"),
            fill=np.array(-5, ">i2"),
            scale_factor=np.array(0.5, ">f4"),
            add_offset=np.array(1, ">f8"),
            valid_min=np.array(-100, ">i2"),
        )
        put_raw(v, sprinkle(ints(rng, shape, "i2", -200, 200), -5, rng))
        v, rng = var("i1_default", "i1")
        put_raw(v, sprinkle(ints(rng, shape, "i1"), -127, rng))
        v, rng = var("u1_default", "u1")
        put_raw(v, sprinkle(ints(rng, shape, "u1"), 255, rng))
        v, rng = var("i1_default_unwritten", "i1")
        put_raw(v, ints(rng, (2, 3), "i1"), (slice(0, 2), slice(0, 3)))
        v, rng = var("u1_unwritten_fill", "u1", fill=np.uint8(7))
        put_raw(v, ints(rng, (2, 3), "u1"), (slice(0, 2), slice(0, 3)))
        v, rng = var("i8_sum_wraps", "i8")
        put_raw(v, np.full(shape, 2**62, "i8"))
        v, rng = var("u8_sum_wraps", "u8")
        put_raw(v, np.full(shape, 2**63 + 5, "u8"))
        v, rng = var("all_masked_chunks", "f4", fill=np.float32(-1))
        data = rng.normal(0, 1, shape).astype("f4")
        data[0:2, 0:3] = -1
        data[:, 6:] = -1
        put_raw(v, data)
        v, rng = var("all_masked_i2", "i2", fill=np.int16(3))
        put_raw(v, np.full(shape, 3, "i2"))
        v, rng = var("fill_and_string_mv", "f4", fill=np.float32(-1), missing_value="-1")
        put_raw(v, sprinkle(rng.normal(0, 1, shape).astype("f4"), -1, rng))
        v, rng = var("vrange_reversed", "f4", valid_range=np.array([1, -1], "f4"))
        put_raw(v, rng.normal(0, 1, shape).astype("f4"))
        v, rng = var("vrange_nan", "f4", valid_range=np.array([np.nan, 1], "f4"))
        put_raw(v, rng.normal(0, 1, shape).astype("f4"))
        v, rng = var("vmin_nan", "f8", valid_min=np.nan)
        put_raw(v, rng.normal(0, 1, shape))
        v, rng = var(
            "fill_outside_vrange", "f4", fill=np.float32(1e20), valid_range=np.array([-2, 2], "f4")
        )
        put_raw(v, sprinkle(rng.normal(0, 2, shape).astype("f4"), 1e20, rng))
        v, rng = var("scale_nan", "i2", scale_factor=np.float32(np.nan))
        put_raw(v, ints(rng, shape, "i2", -5, 5))
        v, rng = var("mv_empty", "f4", missing_value=np.array([], "f4"))
        put_raw(v, rng.normal(0, 2, shape).astype("f4"))


# ---------------------------------------------------------- big-endian _Unsigned, one element
BE_UNSIGNED_VARIABLES = (
    "be_unsigned_i2",
    "be_unsigned_i4_vmin",
    "be_unsigned_packed",
    "be_unsigned_0d",
)


@generated("corners_be_unsigned.nc", *BE_UNSIGNED_VARIABLES)
def build_be_unsigned(path: Path) -> None:
    """Big-endian ``_Unsigned`` variables: netCDF4 masks arrays as expected but compares one
    element with byte-swapped fill, missing and bounds (``missing.swaps_one_element``)."""
    with netCDF4.Dataset(path, "w") as ds:
        dims = _dims(ds, t=4, x=5)
        be = lambda code: np.dtype(code).newbyteorder(">")

        def var(name, code, fill=None, **attrs):
            v = ds.createVariable(
                name, be(code), dims, chunksizes=(2, 3), fill_value=fill, endian="big"
            )
            v.setncattr("_Unsigned", "true")
            for key, value in attrs.items():
                v.setncattr(key, value)
            return v, rng_for(name)

        v, rng = var(
            "be_unsigned_i2",
            "i2",
            fill=np.array(-2, ">i2"),
            missing_value=np.array(-999, ">i2"),
            valid_range=np.array([-25536, 255], ">i2"),  # 40000 .. 255 as unsigned
        )
        data = ints(rng, (4, 5), "i2")
        for value in (-2, -999, 100, 300, 255):
            sprinkle(data, value, rng, 0.1)
        put_raw(v, data)
        v, rng = var("be_unsigned_i4_vmin", "i4", valid_min=np.array(70000, ">i4"))
        put_raw(v, ints(rng, (4, 5), "i4", 0, 200000))
        v, rng = var(
            "be_unsigned_packed",
            "i2",
            fill=np.array(7, ">i2"),
            scale_factor=np.array(0.5, ">f4"),
            valid_max=np.array(30000, ">i2"),
        )
        put_raw(v, sprinkle(ints(rng, (4, 5), "i2", 0, 2000), 7, rng, 0.2))
        v = ds.createVariable(
            "be_unsigned_0d", be("i2"), (), fill_value=np.array(-3, ">i2"), endian="big"
        )
        v.setncattr("_Unsigned", "true")
        v.setncattr("valid_max", np.array(200, ">i2"))
        v.set_auto_maskandscale(False)
        v.assignValue(np.int16(150))
