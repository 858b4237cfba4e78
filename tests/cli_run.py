"""The real ``activezarr`` entry point in a subprocess, as CLI tests run it (this checkout's
code first on the path, so that the tests exercise the worktree, not an installed copy)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[1]


def run_cli(
    *args, cwd: Path | None = None, env: dict | None = None, check: bool = False, stdin=None
) -> subprocess.CompletedProcess:
    """``python -m activezarr ARGS`` in ``cwd`` with ``env`` (default: this process's)."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "activezarr", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
        check=False,
    )
    if check:
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def commands(parser=None, prefix: str = ""):
    """Every ``(name, parser)`` of the command line: ``"reduce"``, ``"catalog reduce"`` ..."""
    import argparse

    from activezarr.cli import build_parser

    for action in (parser or build_parser())._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from commands(sub, f"{prefix}{name} ")
