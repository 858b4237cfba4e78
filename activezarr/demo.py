"""``activezarr demo``: write a small CF netCDF4 file, index it, reduce it, compare.

The file is written with h5py in netCDF4's layout (dimension scales, ``_FillValue``), so the
demo needs nothing beyond activezarr's own dependencies; the "direct" numbers are read back
with h5py and masked with numpy.
"""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np

from .active import Active
from .catalog.single import build_index
from .index.atomic import write_atomic

FILL = np.float32(1e20)


def write_sample(path: Path) -> Path:
    """A 24×18×36 monthly ``tas`` field in K, zlib+shuffle, with a few missing values."""
    rng = np.random.default_rng(42)
    nt, ny, nx = 24, 18, 36
    lat = np.linspace(-85, 85, ny)
    tas = 288 - 30 * np.abs(np.sin(np.radians(lat)))[None, :, None] + rng.normal(0, 2, (nt, ny, nx))
    tas = tas.astype(np.float32)
    tas[0, 0, :5] = FILL  # missing values
    # built in memory and written whole: HDF5 writing straight onto a full disk leaves half
    # a file and can crash the interpreter when it closes it
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        coords = {
            "time": np.arange(nt, dtype="f8") * 30 + 15,
            "lat": lat,
            "lon": np.linspace(0, 350, nx),
        }
        for name, values in coords.items():
            d = f.create_dataset(name, data=values)
            d.make_scale(name)
        f["time"].attrs["units"] = "days since 2000-01-01"
        v = f.create_dataset(
            "tas", data=tas, chunks=(6, 9, 18), compression="gzip", shuffle=True, fillvalue=FILL
        )
        for i, name in enumerate(coords):
            v.dims[i].attach_scale(f[name])
        v.attrs["_FillValue"] = FILL
        v.attrs["units"] = "K"
        v.attrs["standard_name"] = "air_temperature"
    write_atomic(path, buffer.getvalue())
    return path


def direct(path: Path, selection) -> np.ma.MaskedArray:
    with h5py.File(path, "r") as f:
        data = f["tas"][selection]
    return np.ma.masked_equal(data, FILL)


def run_demo(out: Path, data: Path = Path("data")) -> None:
    """Write ``data/demo_tas.nc``, index it into ``out`` (data and indexes kept apart)."""
    sample = write_sample(data / "demo_tas.nc")
    index = build_index(sample, out)
    print(f"wrote {sample}\nindexed -> {index}\n")
    selection = (slice(0, 12), slice(None), slice(10, 20))
    cases = [("mean", None), ("min", None), ("max", None), ("count", None), ("sum", None)]
    print(f"{'reduction of tas[0:12, :, 10:20]':<36}{'activezarr':>16}{'read directly':>16}")
    with Active(index, "tas") as a:
        for op, axis in cases:
            got = a.reduce(op, selection, axis)
            data = direct(sample, selection)
            want = {
                "mean": lambda d: d.mean(dtype="f8"),
                "sum": lambda d: d.sum(dtype="f8"),
                "min": np.ma.min,
                "max": np.ma.max,
                "count": np.ma.count,
            }[op](data)
            print(f"{op:<36}{float(got):>16.6f}{float(want):>16.6f}")
        zonal = a.mean(axis=(0, 2))[selection]
        print(f"\nzonal-time mean, first 4 latitudes: {np.round(zonal[:4], 3).tolist()}")
    print(f"\ntry: activezarr info {index}")
    print(f'     activezarr reduce {index} tas --op mean --select "0:12,:,10:20"')
