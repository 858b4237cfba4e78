"""The documentation site: its example scripts run and draw their figures, and
``mkdocs build --strict`` passes (broken links or API references fail it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_data import REAL_DIR

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "docs/examples"


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(args, check=False, cwd=REPO, env=env, capture_output=True, text=True)


@pytest.mark.skipif(not REAL_DIR.is_dir(), reason=f"{REAL_DIR} is missing")
def test_xarray_figures(tmp_path):
    done = _run([sys.executable, str(EXAMPLES / "xarray_figures.py"), "--out", str(tmp_path)])
    assert done.returncode == 0, done.stderr
    for name in ("xarray_time_mean.png", "xarray_global_mean.png"):
        assert (tmp_path / name).stat().st_size > 10_000
        assert (REPO / "docs/images" / name).is_file()  # the copy the site shows


def test_benchmark_figure(tmp_path):
    done = _run([sys.executable, str(EXAMPLES / "benchmark_figure.py"), "--out", str(tmp_path)])
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "benchmarks.png").stat().st_size > 10_000
    assert (REPO / "docs/images/benchmarks.png").is_file()
    if (REPO / "benchmarks/results/xarray-latest.json").exists():
        assert (tmp_path / "xarray_benchmarks.png").stat().st_size > 10_000
        assert (REPO / "docs/images/xarray_benchmarks.png").is_file()


def test_site_builds_strictly(tmp_path):
    done = _run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path)])
    assert done.returncode == 0, done.stdout + done.stderr
    api = (tmp_path / "api/index.html").read_text()
    for name in ("Active", "open_dataset", "ActiveDataArrayAccessor", "SelectionError"):
        assert name in api
    assert (tmp_path / "images/xarray_time_mean.png").is_file()
