"""The real ``activezarr`` entry point in a subprocess, as CLI tests run it (this checkout's
code first on the path, so that the tests exercise the worktree, not an installed copy)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[1]
COMMAND = [sys.executable, "-m", "activezarr"]


def cli_env(env: dict | None = None) -> dict:
    """This process's environment with ``env`` laid over it (a ``None`` value removes that
    variable) and this checkout first on ``PYTHONPATH``."""
    environ = {**os.environ, **(env or {})}
    environ = {name: value for name, value in environ.items() if value is not None}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environ.get("PYTHONPATH")]))
    return environ


def run_cli(
    *args, cwd: Path | None = None, env: dict | None = None, check: bool = False, stdin=None
) -> subprocess.CompletedProcess:
    """``python -m activezarr ARGS`` in ``cwd``, text out; ``env`` as :func:`cli_env` takes
    it; ``check`` asserts exit 0."""
    proc = subprocess.run(
        [*COMMAND, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=cli_env(env),
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
