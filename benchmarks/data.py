"""Benchmark input files, generated once into ``benchmarks/data/<mode>/`` and reused afterwards.

Every file is a netCDF4 file written slab by slab (a few chunk layers at a time) with values
from ``numpy.random.default_rng(seed)``, so the same command always makes the same bytes.
Next to each file go its activezarr index (``indexes/``) and its kerchunk references
(``kerchunk/``, ``SingleHdf5ToZarr(inline_threshold=0)``), both built once.

``python -m benchmarks.data [--quick]`` makes whatever is missing and prints the manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
SLAB_BYTES = 128 * 2**20


@dataclass(frozen=True)
class FileSpec:
    """One generated netCDF4 file holding one data variable."""

    label: str  # role in the cases: c75, c25, c8 (uncompressed f8), z75 (zlib f4), tll
    var: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    zlib: bool
    seed: int

    @property
    def filename(self) -> str:
        return f"{self.label}.nc"


def file_specs(quick: bool) -> dict[str, FileSpec]:
    """The files of the full suite (500³ cubes) or of ``--quick`` (100³ cubes)."""
    n, edges = (100, (15, 5, 4)) if quick else (500, (75, 25, 8))
    cube = ("z", "y", "x")
    tll_shape, tll_chunks = (
        ((36, 36, 72), (6, 18, 18)) if quick else ((365, 180, 360), (30, 90, 90))
    )
    specs = [
        FileSpec("c75", "data", cube, (n,) * 3, (edges[0],) * 3, "f8", False, 75),
        FileSpec("c25", "data", cube, (n,) * 3, (edges[1],) * 3, "f8", False, 25),
        FileSpec("c8", "data", cube, (n,) * 3, (edges[2],) * 3, "f8", False, 8),
        FileSpec("z75", "data", cube, (n,) * 3, (edges[0],) * 3, "f4", True, 175),
        FileSpec("tll", "tas", ("time", "lat", "lon"), tll_shape, tll_chunks, "f4", False, 365),
    ]
    return {s.label: s for s in specs}


def mode_dir(quick: bool) -> Path:
    return DATA_DIR / ("quick" if quick else "full")


def slab_values(spec: FileSpec, rng: np.random.Generator, start: int, stop: int) -> np.ndarray:
    """Values for rows ``start:stop`` of axis 0 (drawn in order, so deterministic)."""
    shape = (stop - start, *spec.shape[1:])
    if spec.label.startswith("c"):
        return rng.random(shape)  # uniform [0, 1) float64
    # temperature-like float32 in kelvin, rounded to 0.01 K (compresses like real data)
    lat = np.linspace(-1.5, 1.5, shape[1])[None, :, None]
    rows = np.arange(start, stop)[:, None, None]
    base = 288.0 - 30.0 * lat**2 + 5.0 * np.sin(2 * np.pi * rows / 365.0)
    noise = rng.normal(0.0, 2.0, shape)
    return np.round(base + noise, 2).astype(spec.dtype)


def slab_rows(spec: FileSpec) -> int:
    """Rows per write: a whole number of chunk layers, about SLAB_BYTES each."""
    row_bytes = int(np.prod(spec.shape[1:])) * np.dtype(spec.dtype).itemsize
    layers = max(1, SLAB_BYTES // (spec.chunks[0] * row_bytes))
    return spec.chunks[0] * layers


def write_netcdf(spec: FileSpec, path: Path) -> None:
    """Write ``spec`` to ``path`` (via a temporary name, so a killed run leaves no half file)."""
    import netCDF4

    tmp = path.with_suffix(".tmp")
    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
        for dim, size in zip(spec.dims, spec.shape, strict=True):
            ds.createDimension(dim, size)
        opts = {"zlib": True, "complevel": 4, "shuffle": True} if spec.zlib else {}
        var = ds.createVariable(spec.var, spec.dtype, spec.dims, chunksizes=spec.chunks, **opts)
        var.set_var_chunk_cache(size=512 * 2**20, nelems=200_003, preemption=1.0)
        if spec.label == "tll":
            _write_coordinates(ds, spec)
        rng = np.random.default_rng(spec.seed)
        step = slab_rows(spec)
        for start in range(0, spec.shape[0], step):
            stop = min(start + step, spec.shape[0])
            var[start:stop] = slab_values(spec, rng, start, stop)
    os.replace(tmp, path)


def _write_coordinates(ds, spec: FileSpec) -> None:
    nt, ny, nx = spec.shape
    for name, values, units in (
        ("time", np.arange(nt, dtype="f8"), "days since 2000-01-01"),
        ("lat", np.linspace(-90 + 90 / ny, 90 - 90 / ny, ny), "degrees_north"),
        ("lon", np.linspace(0, 360, nx, endpoint=False), "degrees_east"),
    ):
        coord = ds.createVariable(name, "f8", (name,))
        coord.units = units
        coord[:] = values
    ds[spec.var].units = "K"


def ensure_file(spec: FileSpec, root: Path) -> Path:
    path = root / spec.filename
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        write_netcdf(spec, path)
        mb = path.stat().st_size / 2**20
        print(f"wrote {path} ({mb:.0f} MB) in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


def ensure_activezarr_index(path: Path, root: Path, fmt: str = "json") -> Path:
    """activezarr's index of ``path``: ``indexes/<stem>.json`` or ``indexes-parquet/<stem>.parq``."""
    from activezarr import build_index

    if fmt == "json":
        out, target = root / "indexes", root / "indexes" / f"{path.stem}.json"
    else:
        out, target = root / "indexes-parquet", root / "indexes-parquet" / f"{path.stem}.parq"
    if not target.exists() or target.stat().st_mtime < path.stat().st_mtime:
        target = build_index(path, out=out, format=fmt)
    return target


def ensure_kerchunk_refs(path: Path, root: Path) -> Path:
    target = root / "kerchunk" / f"{path.stem}.json"
    if not target.exists() or target.stat().st_mtime < path.stat().st_mtime:
        from kerchunk.hdf import SingleHdf5ToZarr

        target.parent.mkdir(parents=True, exist_ok=True)
        refs = SingleHdf5ToZarr(str(path), inline_threshold=0).translate()
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(refs))
        os.replace(tmp, target)
    return target


def try_index(path: Path, root: Path, fmt: str) -> str | None:
    try:
        return str(ensure_activezarr_index(path, root, fmt))
    except Exception as exc:  # noqa: BLE001 - activezarr may be mid-development: report, go on
        print(f"activezarr {fmt} index for {path.name} failed: {exc!r}", flush=True)
        return None


MANY_FILES = {False: 2000, True: 200}  # small files of the many-* cases (full, --quick)


def ensure_many(root: Path, n: int, with_activezarr: bool = True) -> dict:
    """``n`` small CF files (``catalog_cases.write_files``: ``tas(12, 18, 36)`` f4, zlib +
    shuffle, one chunk per time step), their activezarr catalog and kerchunk references."""
    import subprocess
    import sys

    from benchmarks.catalog_cases import write_files

    paths = write_files(n)
    base = root / f"many-{n}"
    catalog = base / "indexes"
    if with_activezarr and len(list(catalog.glob("tas_*.json"))) != n:
        cmd = [sys.executable, "-m", "activezarr", "index", str(paths[0].parent / "tas_*.nc")]
        subprocess.run(
            [*cmd, "--out", str(catalog), "--jobs", "2", "-q"],
            stdout=subprocess.DEVNULL,
            check=True,
        )
    refs = base / "kerchunk"
    refs.mkdir(parents=True, exist_ok=True)
    for path in paths:
        ensure_kerchunk_refs(path, base)
    return {
        "files": str(paths[0].parent),
        "catalog": str(catalog),
        "kerchunk": str(refs),
        "var": "tas",
        "dtype": "f4",
        "count": n,
    }


def prepare(quick: bool, with_activezarr: bool = True, labels: list[str] | None = None) -> dict:
    """Make every missing file, index and reference set (of ``labels`` only, when given:
    ``many`` is the small files); return the manifest."""
    root = mode_dir(quick)
    manifest = {"quick": quick, "root": str(root), "files": {}}
    for label, spec in file_specs(quick).items():
        if labels is not None and label not in labels:
            continue
        path = ensure_file(spec, root)
        entry = {
            **asdict(spec),
            "path": str(path),
            "kerchunk": str(ensure_kerchunk_refs(path, root)),
        }
        entry["index"] = entry["index_parquet"] = None
        if with_activezarr:
            entry["index"] = try_index(path, root, "json")
            if label.startswith("c"):
                entry["index_parquet"] = try_index(path, root, "parquet")
        manifest["files"][label] = entry
    if labels is None or "many" in labels:
        manifest["many"] = ensure_many(root, MANY_FILES[quick], with_activezarr)
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100³ files for smoke tests")
    parser.add_argument("--no-activezarr", action="store_true", help="skip activezarr indexes")
    parser.add_argument("--labels", nargs="*", help="only these files (c75, ..., many)")
    args = parser.parse_args(argv)
    manifest = prepare(args.quick, not args.no_activezarr, args.labels)
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
