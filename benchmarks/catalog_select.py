"""Catalog benchmark: choosing a few files out of a big catalog for ``combine`` and ``reduce``.

    python -m benchmarks.catalog_select [--rows 5000 20000] [--real 48]
                                        [--out benchmarks/results/catalog-select-latest.json]

A catalog of ``--real`` small netCDF4 files really indexed (``catalog_cases.write_files``:
``tas(12, 18, 36)``, years 1850..) plus synthetic rows of the same variable for later years,
whose sources and indexes do not exist (they must never be read). Each case runs in a fresh
process; wall time and peak RSS are measured there (the process start and imports excluded):

- ``reduce_where``: ``Catalog.reduce("tas", "mean", where={"time": (the real years)})``;
- ``combine_path``: ``Catalog.select(path=<the real files' folder>/*).combine("tas")``;
- ``open_len``: ``len(Catalog(dir))`` (the catalog lists a combined index of every row);
- ``layout_all``: the first step of ``combine`` and ``reduce`` over every row (the files
  holding ``tas`` ordered along time), which is all a synthetic row can take part in.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.catalog_cases import DATA, RESULTS, _env, write_files

CASES = {
    "reduce_where": "cat.reduce('tas', 'mean', where={'time': slice('1850-01-01', END)})",
    "combine_path": "cat.select(path=FOLDER + '/*').combine('tas', out=OUT)",
    "open_len": "len(cat)",
    "layout_all": "layout(chosen(cat), 'tas', 'time')",
}

RUNNER = """
import json, sys, time
import activezarr.catalog.combine, activezarr.catalog.reduce, activezarr.active
from activezarr import Catalog
from activezarr.catalog.concat import layout
try:
    from activezarr.catalog.members import members
    chosen = lambda cat: members(cat, "tas", "time")
except ImportError:  # before members.py: every entry, whole
    chosen = lambda cat: cat.entries
def status(key):  # kB, from the kernel (ru_maxrss would include the parent's, kept by exec)
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
directory, FOLDER, END, OUT, code = sys.argv[1:]
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak (VmHWM) to the current size
before = status("VmRSS")
start = time.perf_counter()
cat = Catalog(directory)
eval(code)
seconds = time.perf_counter() - start
peak = status("VmHWM")
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak / 1024,
                  "grew_mb": (peak - before) / 1024}))
"""


def build(rows: int, real: int) -> tuple[Path, Path]:
    """The catalog directory (made once) and the real files' folder."""
    from activezarr.catalog import store

    paths = write_files(real)
    folder = paths[0].parent
    directory = DATA / f"select-{real}-{rows}"
    if (directory / "catalog.db").exists():
        _combined_record(directory)
        return directory, folder
    cmd = [sys.executable, "-m", "activezarr", "index", str(folder / "tas_*.nc")]
    subprocess.run([*cmd, "--out", str(directory), "-q"], check=True, env=_env())
    with store.opened(directory) as con:
        template = dict(con.execute("SELECT * FROM files LIMIT 1").fetchone())
    summary = json.loads(template["variables"])
    coords = json.loads(template["coords"])
    batch = []
    for i in range(rows):
        year = real + i  # after the real files
        time_range = {**coords["time"], "min": 365.0 * year + 15.5, "max": 365.0 * year + 345.5}
        time_range |= {"first": time_range["min"], "last": time_range["max"]}
        model = i % 100
        batch.append(
            {
                "source": f"/archive/M{model}/tas_{i:07d}.nc",
                "index": f"synthetic_{i:07d}.json",
                "fingerprint": {"size": 20000 + i, "mtime": 1.7e9 + i},
                "attrs": {"title": f"file {i}"},
                "variables": summary,
                "roles": {"tas": "data", "time": "coordinate", "lat": "coordinate",
                          "lon": "coordinate"},
                "coords": {**coords, "time": time_range},
                "source_id": f"M{model}",
                "time_start": f"{1850 + year:04d}-01-16",
                "time_end": f"{1850 + year:04d}-12-16",
            }
        )  # fmt: skip
    with store.opened(directory) as con, store.transaction(con):
        store.put_entries(con, batch)
    _combined_record(directory)
    return directory, folder


def _combined_record(directory: Path) -> None:
    """A combined index of every row recorded (not written): what opening a catalog reads."""
    from activezarr.catalog import store

    with store.opened(directory) as con:
        if con.execute("SELECT 1 FROM combined").fetchone():
            return
        sources = {
            s: json.loads(f) for s, f in con.execute("SELECT source, fingerprint FROM files")
        }
        record = {
            "index": "combined_tas_time.json",
            "default_name": True,
            "variable": "tas",
            "concat_dim": "time",
            "shape": [12 * len(sources), 18, 36],
            "sources": sources,
        }
        with store.transaction(con):
            store.put_combined(con, "combined_tas_time.json", record)


def run_case(directory: Path, folder: Path, real: int, name: str, code: Path | None) -> dict:
    end = f"{1850 + real - 1}-12-31"
    out = str(DATA / "select-combined.json")
    cmd = [sys.executable, "-c", RUNNER, str(directory), str(folder), end, out, CASES[name]]
    env = _env() if code is None else {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=code)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--real", type=int, default=48)
    parser.add_argument("--code", type=Path, help="checkout to measure (default: this one)")
    parser.add_argument("--out", type=Path, default=RESULTS / "catalog-select-latest.json")
    args = parser.parse_args(argv)
    result: dict = {"real": args.real, "loadavg_start": os.getloadavg(), "cases": {}}
    for rows in args.rows:
        start = time.perf_counter()
        directory, folder = build(rows, args.real)
        result[f"build_{rows}_s"] = time.perf_counter() - start
        for name in CASES:
            case = run_case(directory, folder, args.real, name, args.code)
            result["cases"][f"{name}@{rows}"] = case
            print(f"{name} @ {rows} rows: {case}", file=sys.stderr)
    result["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
