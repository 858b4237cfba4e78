"""``activezarr demo``: write a sample file, index it and reduce it."""

from __future__ import annotations

from pathlib import Path


def cmd_demo(args) -> int:
    from ..demo import run_demo

    run_demo(Path(args.out), Path(args.data))
    return 0


def register(sub) -> None:
    sp = sub.add_parser("demo", help="write a sample file, index it and reduce it")
    sp.add_argument("--out", default="indexes", help="index directory (default: indexes/)")
    sp.add_argument(
        "--data", default="data", help="where the sample netCDF file goes (default: data/)"
    )
    sp.set_defaults(func=cmd_demo)
