"""The command line as a newcomer meets it: the demo, errors, help and output for scripts.

CLI tests run the real entry point (``python -m activezarr``) in a subprocess, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[1]


def run(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "activezarr", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
        check=False,
    )


def test_demo_keeps_data_and_indexes_apart(tmp_path):
    proc = run("demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data" / "demo_tas.nc").is_file()
    indexes = tmp_path / "indexes"
    assert sorted(p.name for p in indexes.iterdir() if not p.name.startswith(".")) == [
        "catalog.json",
        "demo_tas.json",
    ]
    assert not list(indexes.rglob("*.nc")), "the sample file belongs outside the index folder"
    assert "indexes/demo_tas.json" in proc.stdout
