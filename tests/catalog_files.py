"""Multi-file datasets for the catalog tests, written with netCDF4-python, and their oracle.

``write_series`` writes one file per "month": ``tas`` (float32 with _FillValue and a few
missing values) and ``pr`` (int16 packed with scale_factor/add_offset), both over
``(time, lat, lon)``, plus a ``time`` coordinate in "days since 2000-01-01" that keeps
increasing from file to file. ``oracle_concat`` reads the files with netCDF4 and concatenates
them along time: the answer a reduction across files must give.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import netCDF4
import numpy as np

NLAT, NLON = 4, 6
UNITS = "days since 2000-01-01"
TAS_FILL = np.float32(1.0e20)
PR_FILL = np.int16(-32767)


def write_month(
    path: Path,
    month: int,
    *,
    length: int = 4,
    chunks: tuple[int, int, int] = (2, 2, 3),
    start_day: float | None = None,
    units: str = UNITS,
    seed: int | None = None,
) -> Path:
    """One file of ``length`` time steps starting at day ``start_day`` (default 30 * month)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(month if seed is None else seed)
    start = 30.0 * month if start_day is None else start_day
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.title = f"synthetic month {month}"
        ds.experiment_id = "historical" if month < 12 else "ssp585"
        ds.createDimension("time", None)
        ds.createDimension("lat", NLAT)
        ds.createDimension("lon", NLON)
        time = ds.createVariable("time", "f8", ("time",), chunksizes=(max(length, 1),))
        time.units = units
        time.calendar = "standard"
        time.standard_name = "time"
        lat = ds.createVariable("lat", "f4", ("lat",))
        lat.units = "degrees_north"
        lat[:] = np.linspace(-60, 60, NLAT)
        lon = ds.createVariable("lon", "f4", ("lon",))
        lon.units = "degrees_east"
        lon[:] = np.linspace(0, 300, NLON)
        tas = ds.createVariable(
            "tas", "f4", ("time", "lat", "lon"), chunksizes=chunks, zlib=True,
            fill_value=TAS_FILL,
        )  # fmt: skip
        tas.units = "K"
        values = (250 + 40 * rng.random((length, NLAT, NLON))).astype("f4")
        values[rng.random(values.shape) < 0.1] = TAS_FILL
        tas.set_auto_maskandscale(False)
        tas[:] = values
        pr = ds.createVariable(
            "pr", "i2", ("time", "lat", "lon"), chunksizes=chunks, fill_value=PR_FILL
        )
        pr.scale_factor = 0.01
        pr.add_offset = 5.0
        raw = rng.integers(-3000, 3000, size=(length, NLAT, NLON), dtype="i2")
        raw[rng.random(raw.shape) < 0.05] = PR_FILL
        pr.set_auto_maskandscale(False)
        pr[:] = raw
        days = start + np.arange(length, dtype="f8")
        time[:] = netCDF4.date2num(netCDF4.num2date(days, UNITS), units)
    return path


def write_series(
    directory: Path,
    n: int = 24,
    *,
    length: int = 4,
    chunks: tuple[int, int, int] = (2, 2, 3),
    overrides: dict[int, dict] | None = None,
    prefix: str = "tas_",
) -> list[Path]:
    """``n`` monthly files ``<prefix>MM.nc``; ``overrides[month]`` changes one file's options."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for month in range(n):
        options = {"length": length, "chunks": chunks, **(overrides or {}).get(month, {})}
        paths.append(write_month(directory / f"{prefix}{month:02d}.nc", month, **options))
    return paths


def oracle_concat(paths: Sequence[Path], var: str) -> np.ma.MaskedArray:
    """``var`` of every file, as netCDF4 reads it, concatenated along time in time order."""
    parts = []
    for path in paths:
        with netCDF4.Dataset(path) as ds:
            t0 = netCDF4.date2num(
                netCDF4.num2date(ds["time"][0], ds["time"].units), UNITS
            )  # sort key in common units
            data = ds[var][:]
            parts.append((float(t0), np.ma.masked_array(data.data, np.ma.getmaskarray(data))))
    parts.sort(key=lambda p: p[0])
    return np.ma.concatenate([p[1] for p in parts], axis=0)


def oracle_time(paths: Sequence[Path]) -> np.ndarray:
    """The time values of every file in common units, concatenated in time order."""
    out = []
    for path in paths:
        with netCDF4.Dataset(path) as ds:
            out.append(netCDF4.date2num(netCDF4.num2date(ds["time"][:], ds["time"].units), UNITS))
    return np.sort(np.concatenate(out))
