"""Catalog benchmark: indexing an archive of small files, re-running over it, and searching,
listing and exporting a catalog of a million rows.

    python -m benchmarks.catalog_cases [--files N] [--rows N] [--export-rows N]
                                       [--out benchmarks/results/catalog-latest.json]

(``python -m benchmarks.run --cases 'catalog*'`` runs the same.)

1. ``N`` netCDF4 files ``tas(12, 18, 36)`` float32 (zlib, one chunk per time step) with a CF
   ``time`` axis (``days since 1850-01-01``, noleap), written once under
   ``benchmarks/data/catalog/files-N/``.
2. ``activezarr index`` into a fresh directory with ``--jobs 1`` and ``--jobs 2`` (timed from
   start to exit, wall and CPU, user and system; the rows' ``created_at`` give the time of
   every 1,000th file; the previous run's outputs are removed first, once, see
   ``clear_outputs``),
   side by side with kerchunk's loop (``SingleHdf5ToZarr(path, inline_threshold=0).translate()``
   then ``json.dump`` per file) in one and in two processes, and VirtualiZarr's
   (``open_virtual_dataset(..., parser=HDFParser())`` then ``.vz.to_kerchunk(...)`` per file)
   over the first ``--virtualizarr-files`` of them.
3. The same ``activezarr index`` again over the unchanged files (the fingerprint sweep).
4. A synthetic catalog of ``--rows`` rows (100 models x 10 experiments x ... facets) written
   straight into ``catalog.db``; timed: ``Catalog(...).search(...)`` with three facets and
   ``activezarr catalog ls FACET=VALUE ...`` as a command (process start included), and the
   intake-esm export of ``--export-rows`` of its rows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data/catalog"
RESULTS = ROOT / "results"


def write_files(n: int) -> list[Path]:
    """``n`` small CF files (made once; later calls reuse them)."""
    import netCDF4

    folder = DATA / f"files-{n}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"tas_{i:06d}.nc" for i in range(n)]
    for i, path in enumerate(paths):
        if path.exists():
            continue
        with netCDF4.Dataset(path, "w") as ds:
            ds.title = f"synthetic year {i}"
            ds.createDimension("time", None)
            ds.createDimension("lat", 18)
            ds.createDimension("lon", 36)
            t = ds.createVariable("time", "f8", ("time",))
            t.units, t.calendar, t.standard_name = "days since 1850-01-01", "noleap", "time"
            t[:] = 365.0 * i + 15.5 + 30.0 * np.arange(12)
            ds.createVariable("lat", "f4", ("lat",))[:] = np.linspace(-85, 85, 18)
            ds.createVariable("lon", "f4", ("lon",))[:] = np.arange(36) * 10.0
            v = ds.createVariable(
                "tas", "f4", ("time", "lat", "lon"), zlib=True, chunksizes=(1, 18, 36)
            )
            v.units = "K"
            v[:] = (250 + 40 * np.random.default_rng(i).random((12, 18, 36))).astype("f4")
    return paths


def clear_outputs(folders: list[Path]) -> float:
    """Remove the previous run's outputs, then wait until the file system forgets them;
    return the seconds waited.

    On ext4 without a journal (this machine's disk) the inode allocator skips every free
    inode that was deleted less than 60 s ago (360 s while its inode table block is still
    dirty, which writeback cleans after ``dirty_expire_centisecs``), looking each one up in
    the buffer cache (``recently_deleted`` in ``fs/ext4/ialloc.c``; perf: ~55% of a create
    loop's samples). Deleting the previous run's 20,000 files and then timing a tool that
    writes files cost that tool up to 0.7 ms of kernel CPU per file created, the more the
    more files it writes (two per source for activezarr, one for kerchunk). Removed once
    here, not before each run; other sessions' deletions still add noise.
    """
    removed = [f for f in folders if f.exists()]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    if not removed:
        return 0.0
    try:
        writeback = int(Path("/proc/sys/vm/dirty_expire_centisecs").read_text()) / 100
    except (OSError, ValueError):
        writeback = 30.0
    wait = 60 + writeback + 5
    print(f"removed the previous outputs; waiting {wait:.0f} s", file=sys.stderr)
    time.sleep(wait)
    return wait


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT.parent)}


def _cpu_children() -> tuple[float, float]:
    """User and system CPU seconds of the waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime


def _cpu_since(before: tuple[float, float]) -> dict:
    user, system = (now - then for now, then in zip(_cpu_children(), before, strict=True))
    return {"cpu_seconds": user + system, "cpu_user_s": user, "cpu_system_s": system}


def index_run(files_glob: str, out: Path, jobs: int, fresh: bool = True) -> dict:
    """``activezarr index`` as a command: wall and CPU seconds (CPU: this machine is shared,
    the wall time depends on what else runs), and when every 1,000th file was recorded (from
    the rows' ``created_at``, to the second)."""
    import datetime as dt
    import sqlite3

    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "activezarr", "index", files_glob, "--out", str(out)]
    cmd += ["--jobs", str(jobs), "-q"]
    cpu, began = _cpu_children(), dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=_env())
    total = time.perf_counter() - start
    cpu = _cpu_since(cpu)
    with sqlite3.connect(out / "catalog.db") as con:
        stamps = [r[0] for r in con.execute("SELECT created_at FROM files ORDER BY created_at")]
    marks = [
        (dt.datetime.fromisoformat(stamps[k - 1]) - began).total_seconds()
        for k in range(1000, len(stamps) + 1, 1000)
    ]
    return {"seconds": total, **cpu, "files": len(stamps), "per_1000": marks}


def _kerchunk_one(args: tuple[str, str]) -> None:
    from kerchunk.hdf import SingleHdf5ToZarr

    path, out = args
    refs = SingleHdf5ToZarr(path, inline_threshold=0).translate()
    with open(out, "w") as fh:
        json.dump(refs, fh)


_VZ_REGISTRY = None


def _virtualizarr_one(args: tuple[str, str]) -> None:
    """VirtualiZarr 2's own HDF5 parser, then its kerchunk JSON writer, for one file."""
    import warnings

    from obspec_utils.registry import ObjectStoreRegistry
    from obstore.store import LocalStore
    from virtualizarr import open_virtual_dataset
    from virtualizarr.parsers import HDFParser

    global _VZ_REGISTRY
    if _VZ_REGISTRY is None:
        _VZ_REGISTRY = ObjectStoreRegistry({"file://": LocalStore()})
    path, out = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numcodecs' zarr 3 wrappers warn on every codec
        vds = open_virtual_dataset(
            f"file://{path}", registry=_VZ_REGISTRY, parser=HDFParser(), loadable_variables=[]
        )
        vds.vz.to_kerchunk(out, format="json")


def kerchunk_run(paths: list[Path], out: Path, processes: int, tool: str = "_kerchunk_one") -> dict:
    """kerchunk's loop (or VirtualiZarr's, ``tool="_virtualizarr_one"``) in ``processes``
    processes (started inside the timing, like ours)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    script = (
        "import sys, json, multiprocessing as mp\n"
        f"from benchmarks.catalog_cases import {tool} as one\n"
        "jobs = json.load(sys.stdin)\n"
        f"n = {processes}\n"
        "if n == 1:\n"
        "    for j in jobs: one(j)\n"
        "else:\n"
        "    with mp.get_context('fork').Pool(n) as pool:\n"
        "        pool.map(one, jobs, chunksize=64)\n"
    )
    jobs = [(str(p), str(out / f"{p.stem}.json")) for p in paths]
    cpu, start = _cpu_children(), time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(jobs), text=True, check=True, env=_env()
    )
    seconds, cpu = time.perf_counter() - start, _cpu_since(cpu)
    return {"seconds": seconds, **cpu, "files": len(paths)}


def synthetic_catalog(directory: Path, rows: int) -> None:
    """A catalog of ``rows`` CMIP6-like rows, written straight into the store."""
    from activezarr.catalog import store

    db = directory / "catalog.db"
    if db.exists():
        with store.opened(directory) as con:
            if con.execute("SELECT COUNT(*) FROM files").fetchone()[0] == rows:
                return
        shutil.rmtree(directory)
    variables = {
        "tas": {"shape": [12, 18, 36], "dtype": "<f4", "chunks": [1, 18, 36],
                "dimensions": ["time", "lat", "lon"], "n_chunks": 12, "nbytes": 20000},
        "time": {"shape": [12], "dtype": "<f8", "chunks": [12], "dimensions": ["time"],
                 "n_chunks": 1, "nbytes": 96},
    }  # fmt: skip
    roles = {"tas": "data", "time": "coordinate"}
    with store.opened(directory, create=True) as con:
        batch = []
        for i in range(rows):
            model, experiment, member = i % 100, (i // 100) % 10, (i // 1000) % 10
            year = 1850 + i // 10000
            source = f"/archive/M{model}/exp{experiment}/r{member}i1p1f1/tas_{i:07d}.nc"
            batch.append(
                {
                    "source": source,
                    "index": f"tas_{i:07d}.json",
                    "fingerprint": {"size": 20000 + i, "mtime": 1.7e9 + i},
                    "size": 20000 + i,
                    "mtime": 1.7e9 + i,
                    "attrs": {"title": f"file {i}"},
                    "variables": variables,
                    "roles": roles,
                    "coords": {},
                    "project": "CMIP6",
                    "institution_id": f"I{model % 30}",
                    "source_id": f"M{model}",
                    "experiment_id": f"exp{experiment}",
                    "member_id": f"r{member}i1p1f1",
                    "table_id": "Amon",
                    "frequency": "mon",
                    "grid_label": "gn",
                    "variable_id": "tas",
                    "time_start": f"{year}-01-16",
                    "time_end": f"{year}-12-16",
                }
            )
            if len(batch) == 50_000:
                with store.transaction(con):
                    store.put_entries(con, batch)
                batch = []
        if batch:
            with store.transaction(con):
                store.put_entries(con, batch)


def timed(fn, reps: int = 5) -> float:
    best = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best.append(time.perf_counter() - start)
    return float(np.median(best))


def search_cases(directory: Path, export_rows: int) -> dict:
    from activezarr import Catalog

    def search():
        hits = Catalog(directory).search(source_id="M17", experiment_id="exp3", member_id="r5*")
        return hits.entries

    out = {"search_python_s": timed(search), "search_hits": len(search())}
    cmd = [sys.executable, "-m", "activezarr", "catalog", "ls", "--catalog", str(directory)]
    cmd += ["source_id=M17", "experiment_id=exp3", "member_id=r5*"]
    out["ls_command_s"] = timed(
        lambda: subprocess.run(cmd, capture_output=True, check=True, env=_env()), reps=3
    )
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import activezarr.cli"], check=True, env=_env(), capture_output=True
    )
    out["cli_import_s"] = time.perf_counter() - start  # process start + the command line's imports
    per_experiment = len(Catalog(directory)) // 10
    wanted = [f"exp{k}" for k in range(max(1, round(export_rows / per_experiment)))]
    view = Catalog(directory).search(experiment_id=wanted)
    target = DATA / "esm"
    start = time.perf_counter()
    view.to_intake_esm(target)
    out["export_s"] = time.perf_counter() - start
    out["export_rows"] = len(view)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="small files to index")
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic catalog rows")
    parser.add_argument("--export-rows", type=int, default=100_000)
    parser.add_argument(
        "--skip", nargs="*", default=[], help="index, kerchunk, virtualizarr, search"
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[2, 1], help="index runs")
    parser.add_argument(
        "--kerchunk-processes", type=int, nargs="+", default=[2, 1], help="kerchunk loop runs"
    )
    parser.add_argument(
        "--virtualizarr-files",
        type=int,
        default=1000,
        help="files VirtualiZarr indexes (the first N: it is ~10x slower than kerchunk), 0: none",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "catalog-latest.json")
    args = parser.parse_args(argv)
    result: dict = {"files": args.files, "rows": args.rows, "loadavg_start": os.getloadavg()}
    paths = write_files(args.files)
    files_glob = str(paths[0].parent / "tas_*.nc")
    outputs = [DATA / f"indexes-j{jobs}" for jobs in args.jobs]
    outputs += [DATA / f"{tool}-p{n}" for tool in ("kerchunk", "virtualizarr")
                for n in args.kerchunk_processes]  # fmt: skip
    result["waited_s"] = clear_outputs(outputs)
    if "index" not in args.skip:
        for jobs in args.jobs:
            run = index_run(files_glob, DATA / f"indexes-j{jobs}", jobs)
            result[f"activezarr_jobs{jobs}"] = run
            print(f"activezarr index --jobs {jobs}: {run['seconds']:.1f} s", file=sys.stderr)
        again = index_run(files_glob, DATA / f"indexes-j{args.jobs[0]}", 2, fresh=False)
        result["activezarr_rerun"] = again
        print(f"activezarr index again: {again['seconds']:.2f} s", file=sys.stderr)
    if "kerchunk" not in args.skip:
        for n in args.kerchunk_processes:
            run = kerchunk_run(paths, DATA / f"kerchunk-p{n}", n)
            result[f"kerchunk_processes{n}"] = run
            print(f"kerchunk loop, {n} processes: {run['seconds']:.1f} s", file=sys.stderr)
    if "virtualizarr" not in args.skip and args.virtualizarr_files:
        some = paths[: args.virtualizarr_files]
        for n in args.kerchunk_processes:
            run = kerchunk_run(some, DATA / f"virtualizarr-p{n}", n, "_virtualizarr_one")
            run["seconds_per_1000"] = run["seconds"] / len(some) * 1000
            result[f"virtualizarr_processes{n}"] = run
            print(f"VirtualiZarr loop, {n} processes, {len(some)} files: {run['seconds']:.1f} s",
                  file=sys.stderr)  # fmt: skip
    for n in args.jobs:  # wall and CPU ratios of the other tools to `activezarr index --jobs n`
        ours = result.get(f"activezarr_jobs{n}")
        for tool, per in (
            ("kerchunk", 1),
            ("virtualizarr", args.files / max(1, min(args.files, args.virtualizarr_files))),
        ):
            theirs = result.get(f"{tool}_processes{n}")
            if ours and theirs:
                result[f"{tool}_over_activezarr_jobs{n}"] = {
                    key: theirs[key] * per / ours[key] for key in ("seconds", "cpu_seconds")
                }  # fmt: skip
    if "search" not in args.skip:
        directory = DATA / f"synthetic-{args.rows}"
        start = time.perf_counter()
        synthetic_catalog(directory, args.rows)
        result["synthetic_build_s"] = time.perf_counter() - start
        result |= search_cases(directory, args.export_rows)
    result["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
