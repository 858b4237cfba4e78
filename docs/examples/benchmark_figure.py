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
KINDS = ("whole", "sel100", "small", "axis0", "xarray")  # reduction cases, by name prefix


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs/images")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = json.loads(args.results.read_text())["results"]
    written = [_cases(rows, args.out)]
    curve = [r for r in rows if (r.get("extra") or {}).get("files") and r.get("median_s")]
    if curve:
        written.append(_indexing_curve(curve, args.out))
    return written


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
    by_tool: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in rows:
        by_tool[row["tool"]].append((int(row["extra"]["files"]), row["median_s"]))
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    for tool, points in sorted(by_tool.items()):
        files, seconds = zip(*sorted(points), strict=True)
        ax.plot(files, seconds, "o-", label=tool)
    ax.set(xscale="log", yscale="log", xlabel="files", ylabel="indexing time (s)")
    ax.legend(fontsize=8)
    path = out / "catalog_indexing.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


if __name__ == "__main__":
    for written in main():
        print(written)
