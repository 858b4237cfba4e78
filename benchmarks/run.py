"""Run the benchmark suite and print one table.

    python -m benchmarks.run [--quick] [--cases PATTERN ...] [--tools NAME ...] [--reps N]
                             [--budget SECONDS] [--out benchmarks/results/latest.json]

(``--cases 'catalog*'`` runs only ``benchmarks/catalog_cases.py``: indexing many small files
against kerchunk's loop, the re-run sweep, search and export on a million-row catalog.)

(``--quick`` writes ``latest-quick.json`` unless ``--out`` says otherwise.)

1. ``benchmarks.data`` (in a subprocess) generates whatever input file, activezarr index or
   kerchunk reference set is missing under ``benchmarks/data/``.
2. For each case, every file it touches is read once (warm page cache), then each tool runs
   ``--reps`` times, each time in a fresh ``python -m benchmarks.tools`` process; a tool whose
   runs add up to more than ``--budget`` seconds stops repeating early (at least one run).
3. Medians of the operation time and of peak RSS; each tool's answer checked against
   h5py + numpy's (relative tolerance ``RTOL``); the ratio of each tool's median to
   activezarr's (``> 1``: activezarr is faster).
4. A markdown table on stdout; JSON to ``benchmarks/results/<timestamp>.json`` and ``--out``.
5. The xarray-level cases (``benchmarks/xarray_cases.py``: the ``.active`` accessor, on one
   file and on a 120-file catalog of it, against
   xarray + dask over kerchunk and xarray over netCDF4) run first, with at most 3 repetitions;
   their results go to ``xarray-latest.json``. ``--cases 'xarray*'`` runs only them.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
REFERENCE = "h5py+numpy"
REDUCERS = (
    "h5py+numpy",
    "activezarr",
    "netcdf4",
    "kerchunk+zarr",
    "pyactivestorage",
    "floor",
    "floor-mmap",
)
WARM = ("h5py+numpy", "activezarr")
INDEXERS = ("activezarr", "kerchunk+zarr")
MANY_REDUCERS = ("h5py+numpy", "activezarr", "netcdf4")
ALL_TOOLS = REDUCERS
RTOL = {"f8": 1e-9, "f4": 1e-6}
SELECTIONS = {"whole": ":", "sel100": "0:100", "small": "0:2,4:6,7:9"}
CUBES = ("c75", "c25", "c8")


@dataclass
class Case:
    """One row group of the table: an operation on one file, run by several tools."""

    name: str
    kind: str  # reduce | warm | build | load | import | many_reduce | combine
    tools: tuple[str, ...]
    label: str | None = None  # which generated file (benchmarks.data labels)
    sel: str = ":"
    axis: int | None = None
    about: str = ""
    cold: bool = False  # load: without activezarr's binary sidecar (parse the JSON)
    index_format: str = "json"  # or "parquet": activezarr's and kerchunk's references; or
    # "kerchunk": activezarr opens kerchunk's JSON too


@dataclass
class Row:
    """The measurements of one tool on one case."""

    case: str
    tool: str
    runs: list[dict] = field(default_factory=list)
    error: str | None = None
    median_s: float | None = None
    median_rss_mb: float | None = None
    import_s: float | None = None
    value: float | None = None
    extra: dict = field(default_factory=dict)
    check: str = ""
    ratio: float | None = None


def build_cases() -> list[Case]:
    cases = []
    for label in CUBES:
        for sel_name, sel in SELECTIONS.items():
            about = f"mean of {label}[{sel}], float64, uncompressed"
            cases.append(Case(f"{sel_name}-{label}", "reduce", REDUCERS, label, sel, about=about))
    for label in ("c75", "c8"):
        about = f"mean of {label}[{SELECTIONS['small']}], 1,000 calls on one open object: median"
        cases.append(Case(f"warm-{label}", "warm", WARM, label, SELECTIONS["small"], about=about))
    cases.append(Case("whole-z75", "reduce", REDUCERS, "z75", ":", about="zlib+shuffle f4 mean"))
    cases.append(Case("axis0-tll", "reduce", REDUCERS, "tll", ":", 0, about="time mean map of tas"))
    for label in CUBES:
        cases.append(Case(f"build-{label}", "build", INDEXERS, label, about="index the file"))
        cases.append(Case(f"load-{label}", "load", INDEXERS, label, about="open the index"))
        about = "open the index, activezarr's binary sidecar removed first"
        cases.append(Case(f"load-json-{label}", "load", INDEXERS, label, about=about, cold=True))
    about = "both open kerchunk's own JSON (SingleHdf5ToZarr), activezarr's sidecar removed first"
    cases.append(Case("load-kerchunk-c8", "load", INDEXERS, "c8", about=about, cold=True,
                      index_format="kerchunk"))  # fmt: skip
    parquet = {"index_format": "parquet", "label": "c8"}
    about = "open the parquet index (both tools read the same .parq)"
    cases.append(Case("load-parquet-c8", "load", INDEXERS, about=about, **parquet))
    tools, sel = (REFERENCE, *INDEXERS), SELECTIONS["small"]
    about = f"mean of c8[{sel}] through the parquet index"
    cases.append(Case("small-parquet-c8", "reduce", tools, sel=sel, about=about, **parquet))
    about = "mean of tas over 2,000 small files (200 with --quick): a catalog vs a file loop"
    cases.append(Case("many-reduce", "many_reduce", MANY_REDUCERS, "many", about=about))
    about = "one virtual index of tas along time over the same files"
    cases.append(Case("many-combine", "combine", INDEXERS, "many", about=about))
    cases.append(Case("import", "import", ALL_TOOLS, about="import the tool's modules"))
    return cases


def select_cases(cases: list[Case], patterns: list[str] | None) -> list[Case]:
    if not patterns:
        return cases
    return [c for c in cases if any(fnmatch.fnmatch(c.name, p) for p in patterns)]


def prepare_data(quick: bool, labels: list[str] | None = None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.data"] + (["--quick"] if quick else [])
    if labels is not None:
        cmd += ["--labels", *labels]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT.parent)
    for line in proc.stdout.splitlines()[:-1]:
        print(line, file=sys.stderr)
    if proc.returncode:
        sys.exit(f"data generation failed:\n{proc.stderr}")
    return json.loads(proc.stdout.splitlines()[-1])


def payload(case: Case, tool: str, manifest: dict) -> dict:
    """The CASE_JSON handed to ``benchmarks.tools``."""
    scratch = Path(manifest["root"]) / "tmp"
    scratch.mkdir(exist_ok=True)
    body = {"kind": case.kind, "sel": case.sel, "axis": case.axis, "cold": case.cold}
    body["save"] = str(scratch / f"{case.name}-{tool}.npy")
    body["tmp"] = str(scratch / f"build-{tool}")
    if case.label == "many":
        body.update(manifest["many"])
    elif case.label:
        entry = manifest["files"][case.label]
        body.update(path=entry["path"], var=entry["var"], index=entry["index"])
        body["refs"] = entry["kerchunk"]
        if case.index_format == "parquet":
            body["index"] = body["refs"] = entry["index_parquet"]
        elif case.index_format == "kerchunk":
            body["index"] = entry["kerchunk"]
    return body


def case_files(case: Case, manifest: dict) -> list[str]:
    if not case.label:
        return []
    if case.label == "many":
        return [manifest["many"][k] for k in ("files", "catalog", "kerchunk")]
    body = payload(case, REFERENCE, manifest)
    return [p for p in (body["path"], body["index"], body["refs"]) if p]


def warm(paths: list[str]) -> None:
    """Read each file (or every file under a directory) once: all tools start warm."""
    buf = bytearray(16 * 2**20)
    for path in paths:
        files = [p for p in Path(path).rglob("*") if p.is_file()] if Path(path).is_dir() else [path]
        for name in files:
            with open(name, "rb", buffering=0) as fh:
                while fh.readinto(buf):
                    pass


def run_once(tool: str, body: dict, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.tools", tool, json.dumps(body)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT.parent
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if proc.returncode:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return {"error": tail[0][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(case: Case, tool: str, manifest: dict, args) -> Row:
    row = Row(case.name, tool)
    body, spent = payload(case, tool, manifest), 0.0
    if tool in INDEXERS and case.kind in ("reduce", "load") and not body.get("index"):
        row.error = f"no activezarr {case.index_format} index (build failed)"
        return row
    for _ in range(args.reps):
        run = run_once(tool, body, args.timeout)
        if "error" in run:
            row.error = run["error"]
            break
        row.runs.append(run)
        spent += run["op_s"]
        if spent > args.budget:
            break
    if row.runs:
        summarize_runs(row)
    return row


def summarize_runs(row: Row) -> None:
    row.median_s = statistics.median(r["op_s"] for r in row.runs)
    row.median_rss_mb = statistics.median(r["peak_rss_mb"] for r in row.runs)
    row.import_s = statistics.median(r["import_s"] for r in row.runs)
    row.value = row.runs[-1]["value"]
    row.extra = row.runs[-1]["extra"]


def check_rows(case: Case, rows: list[Row], manifest: dict) -> None:
    """Compare every tool's answer with h5py's; for index builds, compare the chunk refs."""
    if case.kind in ("build", "combine"):
        check_build(case, rows, manifest)
        return
    if case.kind not in ("reduce", "warm", "many_reduce"):
        return
    ref = next((r for r in rows if r.tool == REFERENCE and r.runs), None)
    if ref is None:
        return
    entry = manifest["many"] if case.label == "many" else manifest["files"][case.label]
    rtol = RTOL.get(entry["dtype"], 1e-6)
    for row in rows:
        if row.runs and row is not ref:
            err = relative_error(case, row, ref, manifest)
            row.extra["rel_err"] = err
            row.check = "ok" if err <= rtol else f"DIFF {err:.1e}"


def relative_error(case: Case, row: Row, ref: Row, manifest: dict) -> float:
    import numpy as np

    if case.axis is None:
        if row.value is None:
            return float("inf")
        return abs(row.value - ref.value) / max(abs(ref.value), 1e-300)
    scratch = Path(manifest["root"]) / "tmp"
    got = np.load(scratch / f"{case.name}-{row.tool}.npy")
    want = np.load(scratch / f"{case.name}-{ref.tool}.npy")
    if got.shape != want.shape:
        return float("inf")
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def check_build(case: Case, rows: list[Row], manifest: dict) -> None:
    """activezarr's refs must equal kerchunk's: same chunk keys, offsets and lengths."""
    built = {r.tool: Path(payload(case, r.tool, manifest)["tmp"]) for r in rows if r.runs}
    if set(built) != {"activezarr", "kerchunk+zarr"}:
        return
    if case.kind == "combine":
        stem, var = "combined", manifest["many"]["var"]
    else:
        stem, var = case.label, manifest["files"][case.label]["var"]
    ours = chunk_refs(built["activezarr"] / f"{stem}.json", var)
    theirs = chunk_refs(built["kerchunk+zarr"] / f"{stem}.json", var)
    differ = sum(ours.get(k) != v for k, v in theirs.items()) + len(set(ours) - set(theirs))
    for row in rows:
        row.extra["chunks"] = len(theirs) if row.tool == "kerchunk+zarr" else len(ours)
    row = next(r for r in rows if r.tool == "activezarr")
    row.check = "identical refs" if not differ else f"DIFF {differ} chunk refs"


def chunk_refs(path: Path, var: str) -> dict[str, tuple]:
    with open(path) as fh:
        refs = json.load(fh)
    refs = refs.get("refs", refs)
    prefix = f"{var}/"
    return {k: tuple(v[1:]) for k, v in refs.items() if k.startswith(prefix) and ".z" not in k[-8:]}


def add_ratios(rows: list[Row]) -> None:
    ours = next((r for r in rows if r.tool == "activezarr" and r.median_s), None)
    for row in rows:
        if ours and row.median_s is not None:
            row.ratio = row.median_s / ours.median_s


def run_case(case: Case, manifest: dict, args) -> list[Row]:
    warm(case_files(case, manifest))
    tools = [t for t in case.tools if not args.tools or t in args.tools]
    rows = []
    for tool in tools:
        rows.append(measure(case, tool, manifest, args))
        print(f"  {case.name:<17} {tool:<16} {describe(rows[-1])}", file=sys.stderr, flush=True)
    check_rows(case, rows, manifest)
    add_ratios(rows)
    return rows


def describe(row: Row) -> str:
    if row.error:
        return f"error: {row.error}"
    return f"{row.median_s:.4f} s median of {len(row.runs)}, {row.median_rss_mb:.0f} MB"


def format_table(rows: list[Row]) -> str:
    head = (
        "| case | tool | median s | runs | peak RSS MB | vs activezarr | import s | check | note |"
    )
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        if r.error and not r.runs:
            lines.append(f"| {r.case} | {r.tool} | — | 0 | — | — | — | error | {r.error} |")
            continue
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "—"
        cells = [r.case, r.tool, fmt_s(r.median_s), str(len(r.runs)), f"{r.median_rss_mb:.0f}"]
        cells += [ratio, f"{r.import_s:.2f}", r.check, note(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt_s(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1e6:.1f} µs"
    return (
        f"{seconds:.4f}"
        if seconds < 0.1
        else f"{seconds:.3f}"
        if seconds < 10
        else f"{seconds:.1f}"
    )


def note(row: Row) -> str:
    parts = []
    if "index_bytes" in row.extra:
        parts.append(f"index {row.extra['index_bytes'] / 2**20:.1f} MB")
    if row.runs and row.runs[0]["kind"] == "load":
        grew = statistics.median(r["peak_rss_mb"] - r["base_rss_mb"] for r in row.runs)
        parts.append(f"+{grew:.0f} MB over imports")
        if "op_cpu_s" in row.runs[0]:
            parts.append(f"CPU {statistics.median(r['op_cpu_s'] for r in row.runs):.3f} s")
    if "chunks" in row.extra:
        parts.append(f"{row.extra['chunks']} chunks")
    if row.error:
        parts.append(f"stopped: {row.error}")
    return ", ".join(parts)


def versions() -> dict[str, str]:
    names = ["activezarr", "numpy", "h5py", "netCDF4", "zarr", "kerchunk", "fsspec", "numcodecs"]
    found = {}
    for name in [*names, "pyactivestorage", "pyfive"]:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_commit() -> str | None:
    """HEAD, with ``+dirty`` when activezarr/ has uncommitted changes (what was measured)."""

    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=False, cwd=ROOT.parent
        )
        return proc.stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return head + ("+dirty" if git("status", "--porcelain", "activezarr") else "") or None


def write_results(rows: list[Row], meta: dict, out: Path) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = json.dumps({"meta": meta, "results": [asdict(r) for r in rows]}, indent=1)
    stamped = RESULTS / f"{meta['started'].replace(':', '')}.json"
    stamped.write_text(doc)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc)
    return stamped


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100³ files: a smoke test")
    parser.add_argument("--cases", nargs="+", metavar="PATTERN", help="case names or globs")
    parser.add_argument("--tools", nargs="+", choices=ALL_TOOLS, help="only these tools")
    parser.add_argument("--reps", type=int, default=5, help="runs per tool and case (5)")
    parser.add_argument("--budget", type=float, default=60.0, help="stop repeating past this (s)")
    parser.add_argument("--timeout", type=float, default=900.0, help="per-run timeout (s)")
    parser.add_argument(
        "--out", type=Path, help="results JSON (latest.json; latest-quick.json with --quick)"
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out = args.out or RESULTS / ("latest-quick.json" if args.quick else "latest.json")
    cases = select_cases(build_cases(), args.cases)
    if args.list:
        for case in cases:
            print(f"{case.name:<17} {case.kind:<7} {case.about}")
        print(f"{'xarray-cases':<17} {'xarray':<7} benchmarks/xarray_cases.py (--cases 'xarray*')")
        print(
            f"{'catalog-cases':<17} {'catalog':<7} benchmarks/catalog_cases.py (--cases 'catalog*')"
        )
        return
    if not args.cases or any(fnmatch.fnmatch("catalog-cases", p) for p in args.cases):
        from benchmarks import catalog_cases  # index many files vs kerchunk; search 1M rows

        catalog_cases.main(["--files", "1000", "--rows", "100000"] if args.quick else [])
    if not args.cases or any(fnmatch.fnmatch("xarray-cases", p) for p in args.cases):
        from benchmarks import xarray_cases  # accessor vs xarray + dask vs xarray netCDF4

        xarray_cases.main(["--reps", str(min(args.reps, 3))] + (["--quick"] if args.quick else []))
    if not cases:
        return
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    manifest = prepare_data(args.quick, sorted({c.label for c in cases if c.label}))
    meta = {"started": started, "quick": args.quick, "reps": args.reps, "budget": args.budget}
    meta |= {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "python": sys.version}
    meta |= {"platform": platform.platform(), "versions": versions(), "commit": git_commit()}
    rows = []
    for case in cases:
        rows += run_case(case, manifest, args)
    meta["loadavg_end"] = os.getloadavg()
    print(format_table(rows))
    stamped = write_results(rows, meta, args.out)
    print(f"\nresults: {stamped} and {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
