"""The CF hunt's generator: random files over the CF corner space, checked against netCDF4.

``write_netcdf`` writes a netCDF4 file with netCDF4-python (every dtype and byte order,
contiguous / chunked / zlib / shuffle / fletcher32 storage, fills including none and NaN,
``missing_value`` scalars and vectors, valid bounds and packing attributes of any numeric type,
``_Unsigned`` spellings, groups, dimensions of length 0, two unlimited dimensions and record
variables shorter than them, chunks never written). ``write_hdf5`` writes what h5py makes and
netCDF4 reads (compact layout, fill values without ``_FillValue``, attributes of other types and
byte orders, 1-element arrays). ``check_file`` indexes a file and compares every variable's
reads and every reduction over every axis combination with the oracle.

The suite draws a few derandomized examples (``tests/test_cf_hunt.py``); a bigger local run::

    python -m tests.cf_hunt 0 500          # seeds 0..499 of both generators
"""

from __future__ import annotations

import itertools
import math
import sys
import tempfile
import warnings
from pathlib import Path

import netCDF4
import numpy as np

import activezarr
from activezarr.plan import normalize_selection
from tests.oracle import (
    OPS,
    _as_masked,
    assert_reduces_like,
    assert_same_read,
    decoded_dtype,
    nc_variable,
)

CODES = ["i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8"]


def special(code: str) -> list:
    """Values that matter for ``code``: extremes, fills, NaN, infinities."""
    if np.dtype(code).kind == "f":
        return [0.0, 1.0, -1.0, 0.5, 1e20, -999.0, np.nan, np.inf, -np.inf, 9.969209968386869e36,
                3.4028234663852886e38, 1e-40, -0.0, 0.1, 1e300]  # fmt: skip
    info = np.iinfo(code)
    return [0, 1, -1, 2, 100, -100, int(info.min), int(info.max), int(info.max) - 1, 255, -127,
            127, 128, -128, 32767, -32767, 65535, 2**31 - 1, -(2**31) + 1, 2**62]  # fmt: skip


def cast(values, code: str) -> np.ndarray:
    """``values`` as ``code``; integers wrap as C does, non-finite ones become 0."""
    dt = np.dtype(code)
    if dt.kind == "f":
        with np.errstate(all="ignore"):
            return np.array(values, dtype=np.float64).astype(code)
    bits, out = dt.itemsize * 8, []
    for v in values:
        x = int(v) if np.isfinite(float(v)) else 0
        x %= 2**bits
        out.append(x - 2**bits if dt.kind == "i" and x >= 2 ** (bits - 1) else x)
    return np.array(out, dtype=code)


def _pick(rng, pool):
    return pool[int(rng.integers(len(pool)))]


def _attr(rng, name: str, code: str):
    """A random value for CF attribute ``name`` of a ``code`` variable."""
    acode = str(_pick(rng, CODES + [code] * 4))
    size = 1
    if name == "missing_value" and rng.random() < 0.3:
        size = int(rng.integers(2, 4))
    if name == "valid_range":
        size = 2
    pool = special(code) + special(acode) + list(rng.normal(0, 50, 4))
    if name in ("scale_factor", "add_offset"):
        pool = [0.5, 2.0, 0.01, 0.1, -0.5, 1.0, 0.0, 3, 10, 273.15, 1e-3]
        acode = str(_pick(rng, ["f4", "f8", "f8", "f4", "i2", "i4", "i1", "u1", "i8", code]))
    values = [_pick(rng, pool) for _ in range(size)]
    if name == "valid_range" and rng.random() < 0.7:
        values.sort(key=lambda v: (np.isnan(v), v))
    if rng.random() < 0.03:
        return "bad"
    arr = cast(values, acode)
    return arr if size > 1 else arr[0]


# ------------------------------------------------------------------------- netCDF4 files


def write_netcdf(path, rng, nvars: int = 5) -> list[str]:
    """A netCDF4 file of ``nvars`` random variables; their names (paths inside groups)."""
    names = []
    with warnings.catch_warnings(), netCDF4.Dataset(path, "w") as ds:
        warnings.simplefilter("ignore")
        ds.createDimension("t", None)
        ds.createDimension("u", None)
        for i in range(4):
            ds.createDimension(f"d{i}", int(_pick(rng, [0, 1, 2, 3, 5, 7, 1, 2, 3, 5])))
        groups = [ds]
        if rng.random() < 0.3:
            groups.append(ds.createGroup("g"))
            groups.append(groups[-1].createGroup("h"))
        for k in range(nvars):
            names.append(_netcdf_variable(ds, _pick(rng, groups), rng, f"v{k}"))
    return names


def _netcdf_variable(ds, grp, rng, name: str) -> str:
    code = str(_pick(rng, CODES))
    ndim = int(_pick(rng, [0, 1, 1, 2, 2, 3]))
    dims = tuple(rng.permutation(["d0", "d1", "d2", "d3", "t", "u"])[:ndim].tolist())
    records = any(d in ("t", "u") for d in dims)
    kw = {"endian": "big" if rng.random() < 0.3 else "native"}
    layout = str(_pick(rng, ["contiguous", "chunked", "zlib", "shuffle", "fletcher", "plain_zlib"]))
    empty = any(d not in ("t", "u") and not len(ds.dimensions[d]) for d in dims)
    if layout == "contiguous" and not records and not empty:  # (netCDF-C refuses those)
        kw["contiguous"] = True
    else:
        if ndim:
            longest = [4 if d in ("t", "u") else max(2, len(ds.dimensions[d]) + 1) for d in dims]
            kw["chunksizes"] = tuple(int(rng.integers(1, min(4, n))) for n in longest)
        kw["zlib"] = layout in ("zlib", "shuffle", "plain_zlib")
        kw["shuffle"] = layout != "plain_zlib"
        kw["fletcher32"] = layout == "fletcher" or rng.random() < 0.1
    fill = rng.random()
    if 0.3 <= fill < 0.4:
        kw["fill_value"] = False
    elif fill >= 0.4:
        kw["fill_value"] = cast([_pick(rng, special(code))], code)[0]
    v = grp.createVariable(name, code, dims, **kw)
    for attr in ("missing_value", "valid_min", "valid_max", "valid_range"):
        if rng.random() < 0.25:
            v.setncattr(attr, _attr(rng, attr, code))
    for attr in ("scale_factor", "add_offset"):
        if rng.random() < 0.25:
            v.setncattr(attr, _attr(rng, attr, code))
    if np.dtype(code).kind == "i" and rng.random() < 0.3:
        v.setncattr("_Unsigned", str(_pick(rng, ["true", "True", "false", "TRUE"])))
    v.set_auto_maskandscale(False)
    shape = tuple(
        int(rng.integers(0, 6)) if d in ("t", "u") else len(ds.dimensions[d]) for d in dims
    )
    _write_values(v, rng, code, shape, no_fill=kw.get("fill_value") is False)
    return f"{grp.path.strip('/')}/{name}".lstrip("/")


def _write_values(v, rng, code: str, shape: tuple, no_fill: bool) -> None:
    pool = special(code) + list(rng.normal(0, 100, 8))
    for attr in ("missing_value", "_FillValue"):
        try:
            pool += [float(x) for x in np.atleast_1d(v.getncattr(attr))] * 2
        except (AttributeError, KeyError, TypeError, ValueError):
            pass
    n = math.prod(shape)
    data = cast([_pick(rng, pool) for _ in range(n)], code).reshape(shape)
    how = 1.0 if no_fill else rng.random()  # unwritten parts of no-fill data are undefined
    if n == 0:
        return
    if how < 0.1 and shape:  # only the last element: chunks never written before it
        last = tuple(s - 1 for s in shape)
        v[last] = data[last]
    elif how < 0.3 and shape:  # the first half along every dimension
        part = tuple(slice(0, max(1, s // 2)) for s in shape)
        v[part] = data[part]
    else:
        v[...] = data if shape else data.reshape(())


# ---------------------------------------------------------------------------- HDF5 files


def write_hdf5(path, rng, nvars: int = 5) -> list[str]:
    """An HDF5 file (h5py) of ``nvars`` random datasets netCDF4 can read; their names."""
    import h5py

    with h5py.File(path, "w") as f:
        return [_hdf5_dataset(f, rng, f"v{k}") for k in range(nvars)]


def _hdf5_dataset(f, rng, name: str) -> str:
    import h5py

    code = str(_pick(rng, CODES))
    dt = np.dtype(code).newbyteorder(">" if rng.random() < 0.3 else "<")
    shape = tuple(int(_pick(rng, [1, 2, 3, 5, 40])) for _ in range(int(_pick(rng, [0, 1, 2, 3]))))
    layout = str(_pick(rng, ["compact", "contiguous", "chunked", "gzip", "fletcher_shuffle"]))
    fill = cast([_pick(rng, special(code))], code)[0] if rng.random() < 0.5 else None
    pool = special(code) + list(rng.normal(0, 100, 6))
    data = cast([_pick(rng, pool) for _ in range(math.prod(shape))], code).reshape(shape)
    if layout == "compact" and math.prod(shape) * dt.itemsize > 60_000:
        layout = "contiguous"  # too big for an object header
    if layout == "compact":
        space = h5py.h5s.create_simple(shape) if shape else h5py.h5s.create(h5py.h5s.SCALAR)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        if fill is not None:
            dcpl.set_fill_value(np.array(fill, dt))
        dset = h5py.Dataset(
            h5py.h5d.create(f.id, name.encode(), h5py.h5t.py_create(dt), space, dcpl=dcpl)
        )
        dset[...] = data
    else:
        kw = {} if fill is None else {"fillvalue": fill}
        if layout != "contiguous" and shape:
            kw["chunks"] = tuple(int(rng.integers(1, s + 1)) for s in shape)
            kw["compression"] = "gzip" if layout == "gzip" else None
            kw["shuffle"] = layout == "fletcher_shuffle" or rng.random() < 0.5
            kw["fletcher32"] = layout == "fletcher_shuffle"
        dset = f.create_dataset(name, shape=shape, dtype=dt, **kw)
        if rng.random() < 0.8 or "chunks" not in kw:
            dset[...] = data
        else:  # the first chunk only
            first = tuple(slice(0, c) for c in kw["chunks"])
            dset[first] = data[first]
    names = ("_FillValue", "missing_value", "valid_min", "valid_max", "valid_range")
    for attr in (*names, "scale_factor", "add_offset"):
        if rng.random() < 0.25:
            value = _attr(rng, attr, code)
            if isinstance(value, np.ndarray | np.generic) and rng.random() < 0.3:
                value = np.atleast_1d(value).astype(value.dtype.newbyteorder(">"))
            dset.attrs[attr] = value
    if np.dtype(code).kind == "i" and rng.random() < 0.3:
        dset.attrs["_Unsigned"] = _pick(rng, ["true", "True", np.bytes_(b"true"), "false"])
    return name


# -------------------------------------------------------------------------------- checks


def every_axes(ndim: int) -> list:
    """None and every non-empty combination of ``ndim`` axes."""
    combos = [c for r in range(1, ndim + 1) for c in itertools.combinations(range(ndim), r)]
    return [None, *combos]


def selections(shape: tuple[int, ...], rng) -> list:
    """Whole, reversed, strided, integer and random basic selections of ``shape``."""
    if not shape:
        return [Ellipsis]
    sels = [
        Ellipsis,
        tuple(slice(None, None, -1) for _ in shape),
        tuple(slice(1, None, 2) for _ in shape),
        tuple(n // 2 if n else slice(None) for n in shape),
        tuple(slice(-2, None) for _ in shape),
        (slice(None, None, -3), *(slice(0, 1) for _ in shape[1:])),
    ]
    for _ in range(2):
        sel = []
        for n in shape:
            if n and rng.random() < 0.2:
                sel.append(int(rng.integers(-n, n)))
            else:
                bounds = [
                    int(rng.integers(-n - 1, n + 2)) if rng.random() < 0.6 else None for _ in "ab"
                ]
                sel.append(slice(*bounds, int(_pick(rng, [1, 2, 3, -1, -2, 5]))))
        sels.append(tuple(sel))
    return sels


def _undefined(active, sel) -> bool:
    """netCDF-C leaves part of this read uninitialised (two unlimited dimensions, one short):
    netCDF4-python returns whatever memory held there, so there is nothing to compare with."""
    read = active._record_read(normalize_selection(sel, active.shape, active.dimensions))
    return read is not None and read.n_read + read.n_fill < math.prod(read.counts)


def check_variable(path, var: str, sels, index=None, **active_kw) -> activezarr.Active:
    """Reads and every reduction over every axis combination of the selections ``sels`` of
    ``var`` equal netCDF4's (AssertionError naming the case otherwise); the ``Active``.
    ``index``: built beside ``path`` when not given (a path, or the references as a dict)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if index is None:
            index = activezarr.build_index(path, out=Path(path).parent, catalog=False)
        active = activezarr.Active(index, var, **active_kw)
        with netCDF4.Dataset(path) as ds:
            ncvar = nc_variable(ds, var)
            assert tuple(active.shape) == tuple(ncvar.shape), var
            try:
                dtype = decoded_dtype(ncvar)
            except (TypeError, ValueError):
                return active  # netCDF4 cannot decode it (a string scale_factor): no oracle
            for sel in sels:
                _check_selection(active, ncvar, dtype, var, sel)
    return active


def _check_selection(active, ncvar, dtype, var: str, sel) -> None:
    try:
        expected = _as_masked(ncvar[sel], dtype)
    except (IndexError, TypeError, ValueError):
        return  # netCDF4 refuses it (an integer into a dimension of length 0)
    if _undefined(active, sel):
        return
    assert_same_read(active[sel], expected, where=f"{var}[{sel}]")
    for op in OPS:
        for axis in every_axes(expected.ndim):
            where = f"{var} {op}[{sel}] axis={axis}"
            assert_reduces_like(active, expected, sel, op, axis, where=where)


def check_file(path: Path, names: list[str], rng, **active_kw) -> None:
    """Index ``path`` and ``check_variable`` every numeric variable of ``names`` over
    ``selections`` drawn with ``rng``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = activezarr.build_index(path, out=path.parent, catalog=False)
        with netCDF4.Dataset(path) as ds:
            shapes = {n: nc_variable(ds, n).shape for n in names}
            numeric = [n for n in names if np.dtype(nc_variable(ds, n).dtype).kind in "iuf"]
    for var in numeric:
        check_variable(path, var, selections(shapes[var], rng), index, **active_kw)


def run(seeds: range) -> int:
    """Both generators over ``seeds``; prints each failure, returns how many files failed."""
    failed = 0
    for seed, (kind, write) in itertools.product(seeds, (("nc", write_netcdf), ("h5", write_hdf5))):
        rng = np.random.default_rng(seed)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{kind}{seed}.nc"
            try:
                check_file(path, write(path, rng), rng)
            except Exception as exc:  # noqa: BLE001 - a report of every failing seed
                failed += 1
                print(f"{kind} seed {seed}: {type(exc).__name__}: {exc}"[:600], flush=True)
    return failed


if __name__ == "__main__":
    first, count = (int(a) for a in sys.argv[1:3])
    bad = run(range(first, first + count))
    print(f"{bad} of {2 * count} files differ from netCDF4")
    sys.exit(bool(bad))
