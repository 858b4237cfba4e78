"""netCDF4 test files written with netCDF4-python, one builder per file.

Each builder writes ``<directory>/<name>`` and covers one family of features: dtypes, storage
layouts and filters, dimensionality, unwritten chunks, CF masking attributes, packing and
_Unsigned, scalars. ``GENERATED_FILES`` maps each file name to its builder and variable names;
``GENERATED_CASES`` lists the (file name, variable) pairs the tests parametrise over.

Every value is deterministic (seeded per variable), so failures reproduce.
"""

from __future__ import annotations

import zlib as _zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import netCDF4
import numpy as np

DEFAULT_FILL = netCDF4.default_fillvals


@dataclass(frozen=True)
class GeneratedFile:
    name: str
    build: Callable[[Path], None]
    variables: tuple[str, ...]


GENERATED_FILES: dict[str, GeneratedFile] = {}


def generated(name: str, *variables: str):
    """Register a builder writing file ``name`` with ``variables``."""

    def register(func: Callable[[Path], None]) -> Callable[[Path], None]:
        GENERATED_FILES[name] = GeneratedFile(name, func, tuple(variables))
        return func

    return register


def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(_zlib.crc32(name.encode()))


def sprinkle(data: np.ndarray, value, rng: np.random.Generator, fraction: float = 0.1):
    """Put ``value`` at a random ``fraction`` of positions (at least one), in place."""
    flat = data.reshape(-1)
    n = max(1, round(flat.size * fraction))
    where = rng.choice(flat.size, size=min(n, flat.size), replace=False)
    flat[where] = value
    return data


def raw_var(ds, name, dtype, dims, **kwargs):
    """createVariable with auto mask/scale off, so that raw values are written as given."""
    var = ds.createVariable(name, dtype, dims, **kwargs)
    return var


def put_raw(var, data, index=Ellipsis):
    var.set_auto_maskandscale(False)
    var[index] = data
    var.set_auto_maskandscale(True)


def ints(rng, shape, dtype, lo=None, hi=None):
    info = np.iinfo(dtype)
    lo = info.min if lo is None else lo
    hi = info.max if hi is None else hi
    return rng.integers(lo, hi, size=shape, dtype=dtype, endpoint=True)


# --------------------------------------------------------------------------------- dtypes
DTYPES = ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8")
DTYPE_FILL = {
    "i1": -99,
    "i2": -9999,
    "i4": -999999,
    "i8": -(2**40),
    "u1": 250,
    "u2": 65000,
    "u4": 4000000000,
    "u8": 2**62,
    "f4": -1.0e30,
    "f8": 1.0e300,
}


def dtype_values(rng, shape, code):
    """Values that exercise sum widening: large enough to overflow the native dtype."""
    dtype = np.dtype(code)
    if code == "i1":
        data = ints(rng, shape, dtype, -128, 127)
    elif code == "i2":
        data = ints(rng, shape, dtype, -30000, 30000)
    elif code == "i4":
        data = ints(rng, shape, dtype, -2_000_000_000, 2_100_000_000)
    elif code == "i8":
        data = ints(rng, shape, dtype, -(2**50), 2**50)
    elif code == "u1":
        data = ints(rng, shape, dtype, 0, 249)
    elif code == "u2":
        data = ints(rng, shape, dtype, 0, 64000)
    elif code == "u4":
        data = ints(rng, shape, dtype, 0, 3_900_000_000)
    elif code == "u8":
        data = ints(rng, shape, dtype, 0, 2**55)
    elif code == "f4":
        data = rng.normal(280.0, 20.0, shape).astype(dtype)
    else:
        data = rng.normal(0.0, 1.0e3, shape).astype(dtype)
    return data


@generated("dtypes.nc", *DTYPES, "i4_nofill", "u1_nofill")
def build_dtypes(path: Path) -> None:
    shape = (6, 5, 7)
    with netCDF4.Dataset(path, "w") as ds:
        for dim, n in zip(("t", "y", "x"), shape):
            ds.createDimension(dim, n)
        for code in DTYPES:
            rng = rng_for(code)
            var = ds.createVariable(
                code,
                code,
                ("t", "y", "x"),
                chunksizes=(4, 2, 3),
                zlib=True,
                shuffle=True,
                fill_value=np.array(DTYPE_FILL[code], code),
            )
            put_raw(var, sprinkle(dtype_values(rng, shape, code), DTYPE_FILL[code], rng))
        # no _FillValue: the netCDF default fill (present in the data) is masked by netCDF4
        for name, code in (("i4_nofill", "i4"), ("u1_nofill", "u1")):
            rng = rng_for(name)
            var = ds.createVariable(name, code, ("t", "y", "x"), chunksizes=(3, 5, 4))
            data = dtype_values(rng, shape, code)
            put_raw(var, sprinkle(data, DEFAULT_FILL[code], rng, 0.15))


# -------------------------------------------------------------------- layouts and filters
LAYOUTS = {
    "contig": {"contiguous": True},
    "chunked_raw": {"chunksizes": (4, 3, 4)},
    "one_chunk": {"chunksizes": (9, 4, 6)},
    "zlib1": {"chunksizes": (4, 3, 4), "zlib": True, "complevel": 1, "shuffle": False},
    "zlib9_shuffle": {"chunksizes": (2, 4, 5), "zlib": True, "complevel": 9, "shuffle": True},
    "fletcher": {"chunksizes": (4, 3, 4), "fletcher32": True},
    "zlib_fletcher": {"chunksizes": (4, 3, 4), "zlib": True, "shuffle": False, "fletcher32": True},
    "zlib_shuffle_fletcher": {
        "chunksizes": (5, 2, 4),
        "zlib": True,
        "shuffle": True,
        "fletcher32": True,
    },
    "be_contig": {"contiguous": True, "endian": "big"},
    "be_zlib_shuffle": {"chunksizes": (4, 3, 4), "zlib": True, "shuffle": True, "endian": "big"},
    "be_i2_fletcher": {"chunksizes": (3, 3, 3), "fletcher32": True, "endian": "big"},
    "be_f8": {"chunksizes": (4, 4, 4), "endian": "big", "zlib": True},
}


@generated("layouts.nc", *LAYOUTS)
def build_layouts(path: Path) -> None:
    shape = (9, 4, 6)
    with netCDF4.Dataset(path, "w") as ds:
        for dim, n in zip(("time", "lat", "lon"), shape):
            ds.createDimension(dim, n)
        for name, kwargs in LAYOUTS.items():
            rng = rng_for(name)
            code = "i2" if "_i2" in name else "f8" if "_f8" in name else "f4"
            fill = DTYPE_FILL[code]
            dtype = np.dtype(code)
            if kwargs.get("endian") == "big":
                dtype = dtype.newbyteorder(">")  # else netCDF4 warns that they disagree
            var = ds.createVariable(
                name, dtype, ("time", "lat", "lon"), fill_value=np.array(fill, dtype), **kwargs
            )
            put_raw(var, sprinkle(dtype_values(rng, shape, code), fill, rng))


# ---------------------------------------------------------------------- dimensionality
@generated("dims.nc", "d1", "d1_single", "d2", "d4", "d4_contig")
def build_dims(path: Path) -> None:
    with netCDF4.Dataset(path, "w") as ds:
        for dim, n in (("n", 23), ("one", 1), ("a", 9), ("b", 10), ("w", 4), ("z", 3)):
            ds.createDimension(dim, n)
        ds.createDimension("y", 5)
        ds.createDimension("x", 6)
        rng = rng_for("d1")
        var = ds.createVariable("d1", "f8", ("n",), chunksizes=(5,), zlib=True, fill_value=-1.0)
        put_raw(var, sprinkle(rng.normal(10, 5, 23), -1.0, rng))
        var = ds.createVariable("d1_single", "i4", ("one",), chunksizes=(1,), fill_value=-1)
        put_raw(var, np.array([42], "i4"))
        rng = rng_for("d2")
        var = ds.createVariable(
            "d2", "i2", ("a", "b"), chunksizes=(4, 3), zlib=True, shuffle=True, fill_value=-5
        )
        put_raw(var, sprinkle(ints(rng, (9, 10), "i2", -1000, 1000), -5, rng))
        rng = rng_for("d4")
        var = ds.createVariable(
            "d4", "f4", ("w", "z", "y", "x"), chunksizes=(3, 2, 2, 4), zlib=True, fill_value=1e20
        )
        put_raw(var, sprinkle(rng.normal(0, 3, (4, 3, 5, 6)).astype("f4"), 1e20, rng))
        rng = rng_for("d4_contig")
        var = ds.createVariable(
            "d4_contig", "f8", ("w", "z", "y", "x"), contiguous=True, fill_value=-999.0
        )
        put_raw(var, sprinkle(rng.normal(100, 3, (4, 3, 5, 6)), -999.0, rng))


# ------------------------------------------------------------------------ unwritten chunks
@generated(
    "unwritten.nc",
    "partial_fill",
    "partial_unlimited",
    "partial_default_f4",
    "partial_default_i2",
    "partial_default_i1",
    "partial_zlib",
    "never_written",
    "contig_never",
    "unlimited_big_chunk",
)
def build_unwritten(path: Path) -> None:
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("a", 10)
        ds.createDimension("b", 9)
        ds.createDimension("x", 8)
        fixed = ("a", "b")
        writes = [(slice(0, 4), slice(0, 4)), (slice(8, 10), slice(5, 9))]

        def partial(name, code, fill=None, **kwargs):
            rng = rng_for(name)
            var = ds.createVariable(name, code, fixed, chunksizes=(4, 4), fill_value=fill, **kwargs)
            for index in writes:
                block = dtype_values(rng, (4 if index[0].start == 0 else 2, 4), code)
                if fill is not None:
                    sprinkle(block, fill, rng)
                put_raw(var, block, index)

        partial("partial_fill", "f8", fill=-9.0)
        partial("partial_default_f4", "f4")
        partial("partial_default_i2", "i2")
        partial("partial_default_i1", "i1")
        partial("partial_zlib", "i4", fill=-1, zlib=True, shuffle=True)
        rng = rng_for("partial_unlimited")
        var = ds.createVariable(
            "partial_unlimited", "f4", ("time", "x"), chunksizes=(2, 3), fill_value=-1e30
        )
        put_raw(var, rng.normal(5, 1, (2, 8)).astype("f4"), (slice(0, 2), slice(None)))
        put_raw(var, rng.normal(5, 1, (1, 8)).astype("f4"), (slice(7, 8), slice(None)))
        # a chunk longer than the (unlimited) dimension: HDF5 stores the whole chunk
        rng = rng_for("unlimited_big_chunk")
        var = ds.createVariable(
            "unlimited_big_chunk", "i4", ("time", "x"), chunksizes=(16, 5), fill_value=-7
        )
        put_raw(var, sprinkle(ints(rng, (8, 8), "i4", -50, 50), -7, rng))
        ds.createVariable("never_written", "f4", fixed, chunksizes=(4, 4), fill_value=1e20)
        ds.createVariable("contig_never", "i2", fixed, contiguous=True, fill_value=-3)


# ---------------------------------------------------------------------------- CF masking
@generated(
    "cf.nc",
    "fill_f4",
    "nofill_f4",
    "nofill_f8",
    "missing_scalar",
    "missing_vector",
    "missing_and_fill",
    "valid_min",
    "valid_max",
    "valid_range",
    "valid_range_fill",
    "fill_zero_i4",
    "fill_zero_f4",
    "all_missing",
    "fill_nan",
    "nan_unmasked",
)
def build_cf(path: Path) -> None:
    shape = (5, 4, 6)
    dims = ("t", "y", "x")
    with netCDF4.Dataset(path, "w") as ds:
        for dim, n in zip(dims, shape):
            ds.createDimension(dim, n)

        def var(name, code, fill=None, **attrs):
            v = ds.createVariable(
                name, code, dims, chunksizes=(2, 3, 4), zlib=True, fill_value=fill
            )
            for key, value in attrs.items():
                v.setncattr(key, value)
            return v, rng_for(name)

        v, rng = var("fill_f4", "f4", fill=np.float32(1e20))
        put_raw(v, sprinkle(rng.normal(250, 10, shape).astype("f4"), np.float32(1e20), rng))

        for name, code in (("nofill_f4", "f4"), ("nofill_f8", "f8")):
            v, rng = var(name, code)
            put_raw(v, sprinkle(rng.normal(0, 10, shape).astype(code), DEFAULT_FILL[code], rng))

        v, rng = var("missing_scalar", "f4", missing_value=np.float32(-99))
        put_raw(v, sprinkle(rng.normal(0, 10, shape).astype("f4"), -99, rng))

        v, rng = var("missing_vector", "i2", missing_value=np.array([-99, -98, 32000], "i2"))
        data = ints(rng, shape, "i2", -200, 200)
        for value in (-99, -98, 32000):
            sprinkle(data, value, rng, 0.05)
        put_raw(v, data)

        v, rng = var("missing_and_fill", "f8", fill=-1.0, missing_value=-2.0)
        data = rng.normal(50, 10, shape)
        sprinkle(data, -1.0, rng, 0.08)
        sprinkle(data, -2.0, rng, 0.08)
        put_raw(v, data)

        v, rng = var("valid_min", "i4", valid_min=np.int32(0))
        put_raw(v, ints(rng, shape, "i4", -20, 100))

        v, rng = var("valid_max", "f4", valid_max=np.float32(100))
        put_raw(v, rng.uniform(0, 150, shape).astype("f4"))

        v, rng = var("valid_range", "i2", valid_range=np.array([-50, 50], "i2"))
        put_raw(v, ints(rng, shape, "i2", -100, 100))

        v, rng = var(
            "valid_range_fill", "f4", fill=np.float32(-999), valid_range=np.array([0, 300], "f4")
        )
        data = rng.uniform(-50, 350, shape).astype("f4")
        put_raw(v, sprinkle(data, -999, rng))

        v, rng = var("fill_zero_i4", "i4", fill=np.int32(0))
        put_raw(v, sprinkle(ints(rng, shape, "i4", -5, 5), 0, rng, 0.2))

        v, rng = var("fill_zero_f4", "f4", fill=np.float32(0))
        put_raw(v, sprinkle(rng.normal(0, 1, shape).astype("f4"), 0, rng, 0.2))

        v, rng = var("all_missing", "f4", fill=np.float32(-999))
        put_raw(v, np.full(shape, -999, "f4"))

        v, rng = var("fill_nan", "f4", fill=np.float32(np.nan))
        put_raw(v, sprinkle(rng.normal(0, 1, shape).astype("f4"), np.nan, rng, 0.2))

        # NaNs that are not the fill value stay unmasked in netCDF4: means become NaN
        v, rng = var("nan_unmasked", "f8", fill=-999.0)
        data = rng.normal(0, 1, shape)
        data[0, 0, 0] = np.nan
        put_raw(v, sprinkle(data, -999.0, rng))


# ----------------------------------------------------------------- packing and _Unsigned
@generated(
    "packed.nc",
    "packed_f32",
    "packed_f64",
    "packed_scale_only",
    "packed_offset_only",
    "packed_u1",
    "packed_valid_range",
)
def build_packed(path: Path) -> None:
    shape = (6, 10)
    dims = ("t", "x")
    with netCDF4.Dataset(path, "w") as ds:
        for dim, n in zip(dims, shape):
            ds.createDimension(dim, n)

        def var(name, code, fill=None, **attrs):
            v = ds.createVariable(name, code, dims, chunksizes=(4, 4), zlib=True, fill_value=fill)
            for key, value in attrs.items():
                v.setncattr(key, value)
            return v, rng_for(name)

        v, rng = var(
            "packed_f32",
            "i2",
            fill=np.int16(-32767),
            scale_factor=np.float32(0.01),
            add_offset=np.float32(273.15),
        )
        put_raw(v, sprinkle(ints(rng, shape, "i2", -5000, 5000), -32767, rng))

        v, rng = var(
            "packed_f64",
            "i2",
            scale_factor=np.float64(0.001),
            add_offset=np.float64(-5.0),
            missing_value=np.int16(-9999),
        )
        put_raw(v, sprinkle(ints(rng, shape, "i2", -30000, 30000), -9999, rng))

        v, rng = var("packed_scale_only", "i2", fill=np.int16(-1), scale_factor=np.float32(0.5))
        put_raw(v, sprinkle(ints(rng, shape, "i2", -100, 100), -1, rng))

        v, rng = var("packed_offset_only", "i4", add_offset=np.float64(1000.5))
        put_raw(v, ints(rng, shape, "i4", -1000, 1000))

        v, rng = var(
            "packed_u1", "i1", fill=np.int8(-1), _Unsigned="true", scale_factor=np.float32(0.1)
        )
        put_raw(v, sprinkle(ints(rng, shape, "i1"), -1, rng))

        v, rng = var(
            "packed_valid_range",
            "i2",
            scale_factor=np.float64(0.01),
            valid_range=np.array([-1000, 1000], "i2"),
        )
        put_raw(v, ints(rng, shape, "i2", -2000, 2000))


@generated("unsigned.nc", "u_i1", "u_i2_default", "u_i2_vmax", "u_i1_2d")
def build_unsigned(path: Path) -> None:
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 20)
        ds.createDimension("r", 5)
        ds.createDimension("c", 7)
        rng = rng_for("u_i1")
        v = ds.createVariable("u_i1", "i1", ("x",), chunksizes=(6,), fill_value=np.int8(-1))
        v.setncattr("_Unsigned", "true")
        put_raw(v, sprinkle(ints(rng, 20, "i1"), -1, rng))
        # no _FillValue and half unwritten: the default fill, read as unsigned
        rng = rng_for("u_i2_default")
        v = ds.createVariable("u_i2_default", "i2", ("x",), chunksizes=(6,))
        v.setncattr("_Unsigned", "true")
        put_raw(v, ints(rng, 6, "i2"), slice(0, 6))
        rng = rng_for("u_i2_vmax")
        v = ds.createVariable("u_i2_vmax", "i2", ("x",), chunksizes=(7,), fill_value=np.int16(-2))
        v.setncattr("_Unsigned", "true")
        v.setncattr("valid_max", np.int16(20000))
        put_raw(v, sprinkle(ints(rng, 20, "i2"), -2, rng))
        rng = rng_for("u_i1_2d")
        v = ds.createVariable("u_i1_2d", "i1", ("r", "c"), chunksizes=(2, 3), zlib=True)
        v.setncattr("_Unsigned", "true")
        put_raw(v, ints(rng, (5, 7), "i1"))


# ----------------------------------------------------------------------------- scalars
@generated("scalar.nc", "scalar_f8", "scalar_i4_masked", "scalar_never", "scalar_packed")
def build_scalar(path: Path) -> None:
    with netCDF4.Dataset(path, "w") as ds:
        v = ds.createVariable("scalar_f8", "f8", ())
        v.assignValue(3.5)
        v = ds.createVariable("scalar_i4_masked", "i4", (), fill_value=np.int32(7))
        v.set_auto_maskandscale(False)
        v.assignValue(7)
        ds.createVariable("scalar_never", "f4", (), fill_value=np.float32(-1))
        v = ds.createVariable("scalar_packed", "i2", ())
        v.setncattr("scale_factor", np.float32(0.5))
        v.set_auto_maskandscale(False)
        v.assignValue(9)


from tests import generate_corners  # noqa: F401 - registers the corner-case files
from tests.oracle import nc_variable

GENERATED_CASES: list[tuple[str, str]] = [
    (f.name, var) for f in GENERATED_FILES.values() for var in f.variables
]


def _has_variable(ds: netCDF4.Dataset, name: str) -> bool:
    try:
        nc_variable(ds, name)
    except (KeyError, IndexError):
        return False
    return True


def write_all(directory: Path) -> Path:
    """Write every generated file into ``directory``; check each holds its declared variables."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for spec in GENERATED_FILES.values():
        path = directory / spec.name
        spec.build(path)
        with netCDF4.Dataset(path) as ds:
            missing = {v for v in spec.variables if not _has_variable(ds, v)}
            assert not missing, f"{spec.name}: builder did not write {sorted(missing)}"
    return directory


def temperatures(seed: str, shape: tuple[int, ...], fill=None) -> np.ndarray:
    """float32 values around 280 (a temperature field), seeded by ``seed``; ``fill`` at a
    tenth of them when given."""
    rng = rng_for(seed)
    data = rng.normal(280, 20, shape).astype("f4")
    return data if fill is None else sprinkle(data, fill, rng)


def write_variable(
    path: Path,
    data: np.ndarray,
    *,
    name: str = "v",
    mask: np.ndarray | None = None,
    fill_value=None,
    chunks: tuple[int, ...] | None = None,
    zlib: bool = False,
    shuffle: bool = False,
    attrs: dict | None = None,
) -> Path:
    """Write one variable (dims d0, d1, ...) with ``fill_value`` where ``mask`` is True."""
    data = np.array(data)
    with netCDF4.Dataset(path, "w") as ds:
        dims = tuple(f"d{i}" for i in range(data.ndim))
        for dim, n in zip(dims, data.shape):
            ds.createDimension(dim, n)
        kwargs = {}
        if chunks is None:
            kwargs["contiguous"] = True
        else:
            kwargs.update(chunksizes=chunks, zlib=zlib, shuffle=shuffle)
        var = ds.createVariable(name, data.dtype, dims, fill_value=fill_value, **kwargs)
        for key, value in (attrs or {}).items():
            var.setncattr(key, value)
        if mask is not None and np.any(mask):
            data = data.copy()
            data[mask] = fill_value if fill_value is not None else DEFAULT_FILL[data.dtype.str[1:]]
        if data.ndim == 0:
            var.set_auto_maskandscale(False)
            var.assignValue(data)
        else:
            put_raw(var, data)
    return path


if __name__ == "__main__":  # pragma: no cover - handy for looking at the files
    import sys

    print(write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "generated")))
