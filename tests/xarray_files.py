"""Climate-like netCDF4 files for the xarray tests: multi-year daily and monthly series.

``write_series`` writes ``tas(time, lat, lon)`` (float32, ``_FillValue``, a few missing
values, zlib, time chunks that cut across months) with a CF time axis in one calendar, plus
``lat``/``lon`` coordinates and ``time_bnds``; ``write_valid`` writes variables whose
``valid_*`` attributes netCDF4 applies and xarray ignores.
"""

from __future__ import annotations

from pathlib import Path

import cftime
import netCDF4
import numpy as np

FILL = np.float32(1e20)


def write_series(
    path: Path,
    *,
    calendar: str = "standard",
    freq: str = "daily",
    years: int = 3,
    shape: tuple[int, int] = (6, 8),
    chunks: tuple[int, int, int] = (45, 3, 4),
) -> Path:
    """``tas`` over ``years`` of daily or monthly steps in ``calendar``; returns ``path``."""
    if freq == "daily":
        days = {"noleap": 365, "365_day": 365, "360_day": 360}.get(calendar)
        n = (
            years * days
            if days
            else len(np.arange("2000-01-01", f"{2000 + years}-01-01", dtype="M8[D]"))
        )
        time = np.arange(n) + 0.5
        units = "days since 2000-01-01"
    else:
        n = years * 12
        time = np.arange(n) + 0.5
        units = "months since 2000-01-01" if calendar == "360_day" else None
        if units is None:  # mid-month days in the calendar
            dates = [cftime.datetime(2000 + i // 12, i % 12 + 1, 15, calendar=calendar)
                     for i in range(n)]  # fmt: skip
            units = "days since 2000-01-01"
            time = cftime.date2num(dates, units, calendar)
    rng = np.random.default_rng(n + len(calendar))
    nlat, nlon = shape
    lat = np.linspace(-75, 75, nlat)
    lon = np.arange(nlon) * 360.0 / nlon
    seasonal = 10 * np.cos(2 * np.pi * np.arange(n) / (365 if freq == "daily" else 12))
    data = 280 + seasonal[:, None, None] - 30 * np.abs(np.sin(np.deg2rad(lat)))[None, :, None]
    data = (data + rng.normal(0, 2, (n, nlat, nlon))).astype("f4")
    data[rng.random(data.shape) < 0.03] = FILL
    data[:, 0, 0] = FILL  # one cell never valid
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("lat", nlat)
        ds.createDimension("lon", nlon)
        ds.createDimension("bnds", 2)
        t = ds.createVariable("time", "f8", ("time",))
        t.setncatts({"units": units, "calendar": calendar, "standard_name": "time",
                     "bounds": "time_bnds"})  # fmt: skip
        t[:] = time
        tb = ds.createVariable("time_bnds", "f8", ("time", "bnds"))
        tb[:] = np.stack([time - 0.5, time + 0.5], axis=1)
        for name, values, units_ in (("lat", lat, "degrees_north"), ("lon", lon, "degrees_east")):
            v = ds.createVariable(name, "f8", (name,))
            v.units = units_
            v[:] = values
        v = ds.createVariable(
            "tas", "f4", ("time", "lat", "lon"), fill_value=FILL, chunksizes=chunks, zlib=True
        )
        v.setncatts({"units": "K", "standard_name": "air_temperature",
                     "cell_methods": "time: mean"})  # fmt: skip
        v.set_auto_maskandscale(False)
        v[:] = data
    return path


def write_valid(path: Path) -> Path:
    """Variables with ``valid_min``/``valid_max``/``valid_range`` and a packed one."""
    rng = np.random.default_rng(7)
    shape = (24, 5, 6)
    with netCDF4.Dataset(path, "w") as ds:
        for dim, n in zip(("time", "lat", "lon"), shape, strict=True):
            ds.createDimension(dim, n)
        t = ds.createVariable("time", "f8", ("time",))
        t.setncatts({"units": "days since 2000-01-01", "calendar": "noleap"})
        t[:] = np.arange(shape[0]) * 15.0
        ds.createVariable("lat", "f8", ("lat",))[:] = np.linspace(-60, 60, shape[1])
        ds.createVariable("lon", "f8", ("lon",))[:] = np.arange(shape[2]) * 60.0

        def var(name, code, **attrs):
            fill = attrs.pop("_FillValue", None)
            v = ds.createVariable(
                name, code, ("time", "lat", "lon"), chunksizes=(5, 3, 4), zlib=True,
                fill_value=fill,
            )  # fmt: skip
            v.setncatts(attrs)
            v.set_auto_maskandscale(False)
            return v

        var("vrange", "f4", valid_range=np.array([0, 300], "f4"), _FillValue=np.float32(-999))[
            :
        ] = rng.uniform(-50, 350, shape).astype("f4")
        var("vmin", "i4", valid_min=np.int32(0))[:] = rng.integers(-20, 100, shape, dtype="i4")
        var("vmax", "f8", valid_max=100.0)[:] = rng.uniform(0, 150, shape)
        var("packed", "i2", scale_factor=0.01, add_offset=273.15, _FillValue=np.int16(-32767),
            valid_min=np.int16(-2000))[:] = rng.integers(-3000, 3000, shape, dtype="i2")  # fmt: skip
    return path
