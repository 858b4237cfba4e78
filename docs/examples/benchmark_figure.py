"""The performance page's figure: each benchmark case, activezarr against every peer.

Drawn from ``benchmarks/results/latest.json`` (written by ``python -m benchmarks.run``):
one panel of median times per reduction case (log scale, one bar per tool), and, when the
results hold catalog indexing cases (``extra.files``), the indexing time against the number
of files. Run from the repository root::

    python docs/examples/benchmark_figure.py --out docs/images
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks/results/latest.json"
XARRAY_RESULTS = REPO / "benchmarks/results/xarray-latest.json"
CATALOG_RESULTS = REPO / "benchmarks/results/catalog-latest.json"
KINDS = ("whole", "sel100", "small", "axis0", "xarray")  # reduction cases, by name prefix


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs/images")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--xarray-results", type=Path, default=XARRAY_RESULTS)
    parser.add_argument("--catalog-results", type=Path, default=CATALOG_RESULTS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = json.loads(args.results.read_text())["results"]
    written = [_cases(rows, args.out)]
    curve = [r for r in rows if _curve_points(r)]
    if args.catalog_results.exists():
        curve += _catalog_rows(json.loads(args.catalog_results.read_text()))
    if curve:
        written.append(_indexing_curve(curve, args.out))
    if args.xarray_results.exists():
        written.append(_xarray_cases(json.loads(args.xarray_results.read_text()), args.out))
    return written


SHORT = {"time-mean": "time mean", "weighted-global-mean": "weighted\nseries",
         "monthly-climatology": "monthly\nclimatology"}  # fmt: skip


def _case_label(case: str) -> str:
    """``xarray-catalog-time-mean`` as ``time mean`` over ``120 files`` (two lines)."""
    name = case.removeprefix("xarray-")
    where = "one file"
    if name.startswith("catalog-"):
        name, where = name.removeprefix("catalog-"), "catalog"
    return f"{SHORT.get(name, name)}\n({where})"


def _xarray_cases(results: dict, out: Path) -> Path:
    """Time and the memory each operation used, per tool (``benchmarks/xarray_cases.py``):
    the time on a log scale, the memory above each process's baseline."""
    rows = [r for r in results["results"] if r.get("median_s")]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    tools = list(dict.fromkeys(r["tool"] for r in rows))
    width = 0.8 / len(tools)
    fig, axes = plt.subplots(2, 1, figsize=(9, 6.5), layout="constrained")
    keys = ("median_s", "median_op_mb")
    for i, tool in enumerate(tools):
        mine = {r["case"]: r for r in rows if r["tool"] == tool}
        x = np.arange(len(cases)) + i * width
        color = "C3" if tool == "activezarr" else f"C{i}"
        for ax, key in zip(axes, keys, strict=True):
            values = [mine[c].get(key, np.nan) if c in mine else np.nan for c in cases]
            ax.bar(x, values, width, label=tool, color=color)
    labels = ("median time (s, log scale)", "memory the operation used (MB, log scale)")
    for ax, key, label in zip(axes, keys, labels, strict=True):
        ax.set_xticks(np.arange(len(cases)) + 0.4 - width / 2, map(_case_label, cases), fontsize=8)
        ax.set_ylabel(label)
        ax.set_yscale("log")
        low = min((r[key] for r in rows if r.get(key, 0) > 0), default=1.0)
        ax.set_ylim(bottom=low / 3)
    axes[0].legend(fontsize=8, ncols=len(tools), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    path = out / "xarray_benchmarks.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _catalog_rows(result: dict) -> list[dict]:
    """``benchmarks/catalog_cases.py`` runs (``{"seconds", "files", "per_1000"}`` each) as rows:
    the cumulative time at every 1,000th file, or the end point alone."""
    rows = []
    for name, run in result.items():
        if not isinstance(run, dict) or "seconds" not in run or not run.get("files"):
            continue
        marks = run.get("per_1000") or []
        if any(t < 0 for t in marks):  # a re-run adds no rows: its marks are the first run's
            marks = []
        points = [[1000 * (i + 1), t] for i, t in enumerate(marks)] or [
            [run["files"], run["seconds"]]
        ]
        rows.append({"case": "catalog index", "tool": name, "extra": {"curve": points}})
    return rows


def _curve_points(row: dict) -> list[tuple[float, float]]:
    """(files, seconds) points of a catalog indexing row: ``extra.files`` with the median,
    or a per-1,000-file list under ``extra`` (``per_1000_s``, ``curve``)."""
    extra = row.get("extra") or {}
    for key in ("per_1000_s", "curve"):
        values = extra.get(key)
        if isinstance(values, list) and values and not isinstance(values[0], list):
            return [(1000.0 * (i + 1), float(v)) for i, v in enumerate(values)]
        if isinstance(values, list) and values:
            return [(float(a), float(b)) for a, b in values]
    if extra.get("files") and row.get("median_s"):
        return [(float(extra["files"]), float(row["median_s"]))]
    return []


def _cases(rows: list[dict], out: Path) -> Path:
    times: dict[str, dict[str, float]] = defaultdict(dict)
    for row in rows:
        if row.get("median_s") and row["case"].split("-")[0] in KINDS:
            times[row["case"]][row["tool"]] = row["median_s"]
    cases = [c for c in times if "activezarr" in times[c]]
    tools = sorted({t for c in cases for t in times[c]}, key=lambda t: (t != "activezarr", t))
    width = 0.8 / len(tools)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(cases) * len(tools) / 3 + 1.5))
    y = np.arange(len(cases))
    others = iter(["C0", "C1", "C2", "C4", "C5", "C6", "C7", "C8", "C9"])
    for i, tool in enumerate(tools):
        values = [times[c].get(tool, np.nan) for c in cases]
        color = "C3" if tool == "activezarr" else next(others)
        ax.barh(y + i * width, values, width, label=tool, color=color)
    ax.set_yticks(y + 0.4 - width / 2, cases)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median time (s, log scale; shorter is better)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = out / "benchmarks.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _indexing_curve(rows: list[dict], out: Path) -> Path:
    by_tool: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        by_tool[f"{row['case']}: {row['tool']}"] += _curve_points(row)
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    for label, points in sorted(by_tool.items()):
        files, seconds = zip(*sorted(points), strict=True)
        ax.plot(files, seconds, "o-", label=label)
    ax.set(xlabel="files indexed", ylabel="seconds since the start")
    ax.legend(fontsize=8)
    path = out / "catalog_indexing.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


if __name__ == "__main__":
    for written in main():
        print(written)
