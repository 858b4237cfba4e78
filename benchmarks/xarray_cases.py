"""xarray-level benchmark: the ``.active`` accessor against xarray + dask over the same kerchunk
index and against plain xarray over the netCDF4 engine, on one file and on a 120-file catalog.

    python -m benchmarks.xarray_cases [--quick] [--reps N] [--datasets file catalog]
                                      [--out benchmarks/results/xarray-latest.json]

One daily ``tas(time, lat, lon)`` float32 file (zlib level 1 + shuffle, CMIP-like chunks of one
time step), written once under ``benchmarks/data/xarray/`` with its activezarr index, and the
same values as 120 monthly files (``catalog-120/``: one file a month, as archives hold them),
indexed into an activezarr catalog and combined by kerchunk's ``MultiZarrToZarr`` for the dask
peer; the netCDF4 peer opens them with ``xr.open_mfdataset``. Three operations a climate
scientist writes: the time-mean map, the area-weighted global-mean series and the monthly
climatology. Each (dataset, tool, operation) runs ``--reps`` times, each in a fresh process;
the operation is timed alone (the dataset is opened beforehand, untimed). Memory, per process:
*interpreter* is the resident size of ``python`` with numpy at start, *baseline* the size after
the imports, the open and a warm-up (what the process holds before the operation), *work* the
peak during the operation above the baseline (the peak is reset, through
``/proc/self/clear_refs``, just before the operation). Answers are checked against plain
xarray's.
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
DATASETS = ("file", "catalog")
MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # noleap
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
    activezarr.Active(index, "tas").close()  # the chunk-table sidecar, written on first open
    return nc, index


def split_months(nc: Path, folder: Path) -> list[Path]:
    """``nc`` as one file a month (same encoding, chunks and time units), written once."""
    import netCDF4

    folder.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(nc) as src:
        n = len(src.dimensions["time"])
        stops = np.cumsum(np.tile(MONTH_DAYS, n // 365))
        paths = []
        for i, stop in enumerate(stops):
            path = folder / f"tas_day_{2000 + i // 12}{i % 12 + 1:02d}.nc"
            paths.append(path)
            if not path.exists():
                _write_month(src, path.with_suffix(".tmp"), int(stop) - MONTH_DAYS[i % 12], stop)
                path.with_suffix(".tmp").rename(path)
    return paths


def _write_month(src, path: Path, start: int, stop: int) -> None:
    import netCDF4

    tas = src["tas"]
    tas.set_auto_maskandscale(False)
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        for dim in ("lat", "lon"):
            ds.createDimension(dim, len(src.dimensions[dim]))
            ds.createVariable(dim, "f8", (dim,))[:] = src[dim][:]
        t = ds.createVariable("time", "f8", ("time",))
        t.setncatts({"units": src["time"].units, "calendar": src["time"].calendar})
        t[:] = src["time"][start:stop]
        v = ds.createVariable(
            "tas", "f4", ("time", "lat", "lon"), chunksizes=tas.chunking(), zlib=True,
            complevel=1, shuffle=True, fill_value=tas._FillValue,
        )  # fmt: skip
        v.set_auto_maskandscale(False)
        v.units = tas.units
        v[:] = tas[start:stop]


def prepare_catalog(nc: Path) -> dict:
    """The 120 monthly files, their activezarr catalog and kerchunk's combined references."""
    import activezarr
    from activezarr.catalog.indexing import index_many

    folder = DATA / f"catalog-{nc.stem}"
    paths = split_months(nc, folder / "files")
    catalog = folder / "indexes"
    if not (catalog / "catalog.db").exists():
        report = index_many([str(p) for p in paths], catalog, jobs=2, progress=False)
        if report.failed:
            raise RuntimeError(f"indexing failed: {report.failed[:3]}")
    combined = activezarr.Catalog(catalog).combine(var="tas", concat_dim="time")
    activezarr.Active(combined, "tas").close()  # the sidecar, as for the file
    kerchunk_refs = folder / "kerchunk_combined.json"
    if not kerchunk_refs.exists():
        _kerchunk_combine(paths, kerchunk_refs)
    return {"paths": [str(p) for p in paths], "catalog": str(catalog),
            "kerchunk": str(kerchunk_refs)}  # fmt: skip


def _kerchunk_combine(paths: list[Path], out: Path) -> None:
    """kerchunk's own route: ``SingleHdf5ToZarr`` per file, ``MultiZarrToZarr`` along time."""
    from kerchunk.combine import MultiZarrToZarr
    from kerchunk.hdf import SingleHdf5ToZarr

    refs = [SingleHdf5ToZarr(str(p), inline_threshold=0).translate() for p in paths]
    combined = MultiZarrToZarr(
        refs, concat_dims=["time"], identical_dims=["lat", "lon"], remote_protocol="file"
    ).translate()
    out.write_text(json.dumps(combined))


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


def _reset_peak() -> bool:
    """Reset the process's ``VmHWM`` to its current size (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _open(tool: str, dataset: dict):
    """The ``tas`` DataArray as the tool opens it (untimed)."""
    import xarray as xr

    if tool == "activezarr":
        import activezarr

        source = dataset.get("index") or activezarr.Catalog(dataset["catalog"])
        return activezarr.open_dataset(source, var="tas").tas
    if tool.startswith("xarray+dask"):
        refs = dataset.get("index") or dataset["kerchunk"]
        return xr.open_dataset(refs, engine="kerchunk", chunks={}).tas
    if "nc" in dataset:
        return xr.open_dataset(dataset["nc"]).tas
    return xr.open_mfdataset(dataset["paths"], engine="netcdf4", combine="by_coords").tas


def run_one(tool: str, op: str, dataset: dict, interpreter_mb: float) -> dict:
    import xarray as xr

    da = _open(tool, dataset)
    weights = np.cos(np.deg2rad(da.lat))
    reduce = da.active if tool == "activezarr" else da
    ops = {
        "time-mean": lambda: reduce.mean("time"),
        "weighted-global-mean": lambda: reduce.weighted(weights).mean(["lat", "lon"]),
        "monthly-climatology": lambda: reduce.groupby("time.month").mean(),
    }
    xr.DataArray(np.zeros(2), dims="x").mean()  # xarray's one-time imports (dask.array), untimed
    base_mb = _rss_mb()
    reset = _reset_peak()
    start = time.perf_counter()
    result = ops[op]().compute()
    seconds = time.perf_counter() - start
    values = np.asarray(result.values, dtype=np.float64)
    peak_mb = _peak_mb()
    return {"op_s": seconds, "peak_mb": peak_mb, "base_mb": base_mb,
            "interpreter_mb": interpreter_mb, "work_mb": peak_mb - base_mb,
            "peak_reset": reset, "checksum": float(np.nansum(values))}  # fmt: skip


# ------------------------------------------------------------------------------------ driver
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--ops", nargs="*", choices=list(OPS), default=list(OPS))
    parser.add_argument("--datasets", nargs="*", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--tools", nargs="*", choices=TOOLS, default=list(TOOLS),
                        help="re-measure only these; other rows of --out are kept")  # fmt: skip
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        interpreter_mb = _rss_mb()  # python + numpy, before any tool is imported
        tool, op, dataset = args.one
        print(json.dumps(run_one(tool, op, json.loads(dataset), interpreter_mb)))
        return
    nc, index = prepare(args.quick)
    datasets = {"file": {"nc": str(nc), "index": str(index)}}
    if "catalog" in args.datasets:
        datasets["catalog"] = prepare_catalog(nc)
    for path in (nc, index, *datasets.get("catalog", {}).get("paths", [])):
        Path(path).read_bytes()  # warm page cache for every tool
    rows = []
    for name in args.datasets:
        for op in args.ops:
            for tool in args.tools:
                rows.append(_measure(name, datasets[name], op, tool, args.reps))
    out = args.out or ROOT / "results" / ("xarray-latest-quick.json" if args.quick
                                          else "xarray-latest.json")  # fmt: skip
    if out.exists():  # rows not measured this time are kept from the last run
        fresh = {(r["case"], r["tool"]) for r in rows}
        kept = [r for r in json.loads(out.read_text())["results"]
                if (r["case"], r["tool"]) not in fresh]  # fmt: skip
        rows = kept + rows
        rows.sort(key=_order)
    _check(rows)
    catalog_files = len(datasets["catalog"]["paths"]) if "catalog" in datasets else None
    meta = {"file": nc.name, "size_mb": nc.stat().st_size / 2**20, "reps": args.reps,
            "quick": args.quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "loadavg": os.getloadavg(), "catalog_files": catalog_files}  # fmt: skip
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    print(out)


def _prefix(dataset: str) -> str:
    return "xarray-" if dataset == "file" else "xarray-catalog-"


def _order(row: dict) -> tuple:
    case = row["case"]
    dataset = "catalog" if case.startswith("xarray-catalog-") else "file"
    op = case.removeprefix(_prefix(dataset))
    return DATASETS.index(dataset), list(OPS).index(op), TOOLS.index(row["tool"])


def _measure(name: str, dataset: dict, op: str, tool: str, reps: int) -> dict:
    """``reps`` fresh processes of one (dataset, operation, tool); medians."""
    runs = []
    for _ in range(reps):
        cmd = [sys.executable, "-m", "benchmarks.xarray_cases", "--one", tool, op,
               json.dumps(dataset)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT.parent, check=False)
        if proc.returncode:
            print(proc.stderr[-2000:], file=sys.stderr)
            break
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    row = {"case": f"{_prefix(name)}{op}", "tool": tool, "runs": runs}
    if runs:
        med = lambda key: statistics.median(r[key] for r in runs)
        row.update(median_s=med("op_s"), median_rss_mb=med("peak_mb"),
                   median_base_mb=med("base_mb"), median_interpreter_mb=med("interpreter_mb"),
                   median_op_mb=med("work_mb"), checksum=runs[-1]["checksum"])  # fmt: skip
    print(f"{row['case']:34s} {tool:24s} {row.get('median_s', float('nan')):8.3f} s "
          f"work {row.get('median_op_mb', float('nan')):6.1f} MB "
          f"baseline {row.get('median_base_mb', float('nan')):6.0f} MB "
          f"(interpreter {row.get('median_interpreter_mb', float('nan')):3.0f} MB)",
          flush=True)  # fmt: skip
    return row


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
