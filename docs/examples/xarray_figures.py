"""Figures of the xarray page: a time-mean map and an area-weighted global-mean series.

Both are computed with the ``.active`` accessor on a real CMIP6 file (IPSL-CM6A-LR ``tas``),
indexed into a temporary directory; the series is drawn next to xarray's own answer over the
netCDF4 engine. Run from the repository root::

    python docs/examples/xarray_figures.py --out docs/images
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

import activezarr

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared/data/real/CMIP6_IPSL-CM6A-LR_tas.nc"


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs/images")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        index = activezarr.build_index(args.data, out=tmp)
        ds = activezarr.open_dataset(index)
        time_mean = ds.tas.active.mean("time")
        weights = np.cos(np.deg2rad(ds.lat))
        series = ds.tas.active.weighted(weights).mean(["lat", "lon"])
    with xr.open_dataset(args.data) as ref:
        expected = ref.tas.weighted(np.cos(np.deg2rad(ref.lat))).mean(["lat", "lon"])
        np.testing.assert_allclose(series.values, expected.values, rtol=1e-5)
        return [_map(time_mean, args.out), _series(series, expected, args.out)]


def _map(time_mean: xr.DataArray, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.4), layout="constrained")
    mesh = ax.pcolormesh(time_mean.lon, time_mean.lat, time_mean, cmap="RdBu_r", shading="auto")
    fig.colorbar(mesh, ax=ax, label=f"{time_mean.name} ({time_mean.attrs.get('units', '')})")
    ax.set(xlabel="longitude", ylabel="latitude", title='ds.tas.active.mean("time")')
    path = out / "xarray_time_mean.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _series(series: xr.DataArray, expected: xr.DataArray, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
    times = [str(t)[:7] for t in series.time.values]
    ax.plot(times, series.values, "-", lw=2, label="activezarr: .active.weighted(cos lat)")
    ax.plot(times, expected.values, "o", ms=4, label="xarray over netCDF4: .weighted(cos lat)")
    ax.set(ylabel=f"global mean tas ({series.attrs.get('units', '')})", xlabel="month")
    ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    ax.legend(fontsize=8)
    path = out / "xarray_global_mean.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


if __name__ == "__main__":
    for written in main():
        print(written)
