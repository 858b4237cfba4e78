"""xarray-level benchmark: the ``.active`` accessor against xarray + dask over the same kerchunk
index and against plain xarray over the netCDF4 engine.

    python -m benchmarks.xarray_cases [--quick] [--reps N] [--out benchmarks/results/xarray-latest.json]

One daily ``tas(time, lat, lon)`` float32 file (zlib level 1 + shuffle, CMIP-like chunks of one
time step), written once under ``benchmarks/data/xarray/`` with its activezarr index. Three
operations a climate scientist writes: the time-mean map, the area-weighted global-mean series
and the monthly climatology. Each (tool, operation) runs ``--reps`` times, each in a fresh
process; the operation is timed alone (the dataset is opened beforehand, untimed), peak memory
is the process's ``VmHWM``. Answers are checked against plain xarray's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data/xarray"
TOOLS = ("activezarr", "xarray+dask (kerchunk)", "xarray (netCDF4)")
OPS = {
    "time-mean": "da.mean('time')",
    "weighted-global-mean": "da.weighted(cos(lat)).mean(['lat', 'lon'])",
    "monthly-climatology": "da.groupby('time.month').mean()",
}


def write_file(path: Path, years: int, nlat: int, nlon: int) -> Path:
    import netCDF4

    n = 365 * years
    rng = np.random.default_rng(0)
    lat = np.linspace(-89, 89, nlat)
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("lat", nlat)
        ds.createDimension("lon", nlon)
        t = ds.createVariable("time", "f8", ("time",))
        t.setncatts({"units": "days since 2000-01-01", "calendar": "noleap"})
        t[:] = np.arange(n) + 0.5
        ds.createVariable("lat", "f8", ("lat",))[:] = lat
        ds.createVariable("lon", "f8", ("lon",))[:] = np.arange(nlon) * 360 / nlon
        v = ds.createVariable(
            "tas", "f4", ("time", "lat", "lon"), chunksizes=(1, nlat, nlon), zlib=True,
            complevel=1, shuffle=True, fill_value=np.float32(1e20),
        )  # fmt: skip
        v.units = "K"
        base = 280 - 30 * np.abs(np.sin(np.deg2rad(lat)))[:, None]
        for start in range(0, n, 365):
            stop = min(n, start + 365)
            season = 10 * np.cos(2 * np.pi * np.arange(start, stop) / 365)[:, None, None]
            noise = rng.normal(0, 2, (stop - start, nlat, nlon))
            v[start:stop] = (base + season + noise).astype("f4")
    return path


def prepare(quick: bool) -> tuple[Path, Path]:
    import activezarr

    DATA.mkdir(parents=True, exist_ok=True)
    years, nlat, nlon = (2, 48, 96) if quick else (10, 96, 192)
    nc = DATA / f"tas_day_{years}y_{nlat}x{nlon}.nc"
    if not nc.exists():
        write_file(nc.with_suffix(".tmp"), years, nlat, nlon).rename(nc)
    index = DATA / "indexes" / f"{nc.stem}.json"
    if not index.exists():
        activezarr.build_index(nc, out=DATA / "indexes")
    return nc, index


# ------------------------------------------------------------------ one run, in a fresh process
def _peak_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(tool: str, op: str, nc: str, index: str) -> dict:
    import xarray as xr

    if tool == "activezarr":
        import activezarr

        da = activezarr.open_dataset(index).tas
        acc = da.active
        lat = da.lat
        ops = {
            "time-mean": lambda: acc.mean("time"),
            "weighted-global-mean": lambda: acc.weighted(np.cos(np.deg2rad(lat))).mean(
                ["lat", "lon"]
            ),
            "monthly-climatology": lambda: acc.groupby("time.month").mean(),
        }
    else:
        if tool.startswith("xarray+dask"):
            da = xr.open_dataset(index, engine="kerchunk", chunks={}).tas
        else:
            da = xr.open_dataset(nc).tas
        lat = da.lat
        ops = {
            "time-mean": lambda: da.mean("time"),
            "weighted-global-mean": lambda: da.weighted(np.cos(np.deg2rad(lat))).mean(
                ["lat", "lon"]
            ),
            "monthly-climatology": lambda: da.groupby("time.month").mean(),
        }
    xr.DataArray(np.zeros(2), dims="x").mean()  # xarray's one-time imports (dask.array), untimed
    base_mb = _rss_mb()
    start = time.perf_counter()
    result = ops[op]().compute()
    seconds = time.perf_counter() - start
    values = np.asarray(result.values, dtype=np.float64)
    return {"op_s": seconds, "peak_mb": _peak_mb(), "base_mb": base_mb,
            "checksum": float(np.nansum(values))}  # fmt: skip


# ------------------------------------------------------------------------------------ driver
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--ops", nargs="*", choices=list(OPS), default=list(OPS))
    parser.add_argument("--tools", nargs="*", choices=TOOLS, default=list(TOOLS),
                        help="re-measure only these; other rows of --out are kept")  # fmt: skip
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return
    nc, index = prepare(args.quick)
    for path in (nc, index):  # warm page cache for every tool
        path.read_bytes()
    rows = []
    for op in args.ops:
        for tool in args.tools:
            runs = []
            for _ in range(args.reps):
                cmd = [sys.executable, "-m", "benchmarks.xarray_cases", "--one", tool, op,
                       str(nc), str(index)]  # fmt: skip
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, cwd=ROOT.parent, check=False
                )
                if proc.returncode:
                    print(proc.stderr[-2000:], file=sys.stderr)
                    break
                runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            row = {"case": f"xarray-{op}", "tool": tool, "runs": runs}
            if runs:
                row["median_s"] = statistics.median(r["op_s"] for r in runs)
                row["median_rss_mb"] = statistics.median(r["peak_mb"] for r in runs)
                row["median_op_mb"] = statistics.median(r["peak_mb"] - r["base_mb"] for r in runs)
                row["checksum"] = runs[-1]["checksum"]
            rows.append(row)
            print(f"{op:22s} {tool:24s} {row.get('median_s', float('nan')):8.3f} s "
                  f"{row.get('median_rss_mb', float('nan')):8.0f} MB peak "
                  f"{row.get('median_op_mb', float('nan')):8.0f} MB in the operation",
                  flush=True)  # fmt: skip
    out = args.out or ROOT / "results" / ("xarray-latest-quick.json" if args.quick
                                          else "xarray-latest.json")  # fmt: skip
    if out.exists() and (set(args.tools) != set(TOOLS) or set(args.ops) != set(OPS)):
        fresh = {(r["case"], r["tool"]) for r in rows}
        kept = json.loads(out.read_text())["results"]
        rows = [r for r in kept if (r["case"], r["tool"]) not in fresh] + rows
        rows.sort(key=lambda r: (list(OPS).index(r["case"].removeprefix("xarray-")),
                                 TOOLS.index(r["tool"])))  # fmt: skip
    _check(rows)
    meta = {"file": nc.name, "size_mb": nc.stat().st_size / 2**20, "reps": args.reps,
            "quick": args.quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "loadavg": os.getloadavg()}  # fmt: skip
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    print(out)


def _check(rows: list[dict]) -> None:
    by_case: dict[str, dict[str, float]] = {}
    for row in rows:
        if "checksum" in row:
            by_case.setdefault(row["case"], {})[row["tool"]] = row["checksum"]
    for case, sums in by_case.items():
        ref = sums.get("xarray (netCDF4)")
        for tool, value in sums.items():
            if ref is not None and not np.isclose(value, ref, rtol=1e-4):
                print(f"CHECK FAILED {case} {tool}: {value} != {ref}", file=sys.stderr)


if __name__ == "__main__":
    main()
