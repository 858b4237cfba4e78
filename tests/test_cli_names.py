"""File names with newlines, tabs, runs of spaces or terminal escapes in command-line messages:
shown with Python's escapes (``a\\nb.nc``), never as a space that names another file, never
split over lines or columns; ``--json`` keeps the name itself (JSON escapes it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli_run import run_cli
from tests.generate import write_variable

NAMES = ["a\nb", "tab\there", "two  spaces", "esc\x1b[31mred"]


def _shown(name: str) -> str:
    return name.encode("unicode_escape").decode("ascii")


@pytest.mark.parametrize("name", NAMES)
def test_index_and_info_show_the_name(tmp_path, name):
    write_variable(tmp_path / f"{name}.nc", np.arange(12.0).reshape(4, 3), chunks=(2, 3))
    done = run_cli("index", f"{name}.nc", "--out", "idx", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"indexed {_shown(name)}.nc -> idx/{_shown(name)}.json\n"
    info = run_cli("info", f"idx/{name}.json", cwd=tmp_path)
    assert info.stdout.startswith(f"index: idx/{_shown(name)}.json\n"), info.stdout
    listing = run_cli("catalog", "ls", "--catalog", "idx", cwd=tmp_path)
    (row,) = listing.stdout.splitlines()
    assert row.split("\t")[:2] == [_shown(str(tmp_path / f"{name}.nc")), _shown(f"{name}.json")]
    report = run_cli("index", f"{name}.nc", "--out", "again", "--json", cwd=tmp_path)
    assert json.loads(report.stdout)["indexed"][0]["path"] == f"{name}.nc"


@pytest.mark.parametrize("name", NAMES)
def test_errors_show_the_name(tmp_path, name):
    (tmp_path / f"{name}.nc").write_bytes(b"not HDF5")
    for argv, says in [
        (["index", f"{name}.nc", "--out", "idx"], "is not a netCDF4/HDF5 file"),
        (["index", f"missing {name}.nc"], "no such file"),
        (["reduce", f"{name}.json", "v", "--op", "mean"], "does not exist"),
    ]:
        done = run_cli(*argv, cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert _shown(name) in done.stderr and says in done.stderr, done.stderr
        assert "\x1b" not in done.stderr
