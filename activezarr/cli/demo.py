"""``activezarr demo``: write a sample file, index it and reduce it."""

from __future__ import annotations

from pathlib import Path

from ._common import FORMATTER, index_dir_option
from ._inputs import path_text

EPILOG = """\
examples:
  activezarr demo                              # data/demo_tas.nc, indexes/demo_tas.json
  activezarr demo --data /tmp/d --out /tmp/i"""


def cmd_demo(args) -> int:
    from ..demo import run_demo
    from ._inputs import check_out_dir

    check_out_dir(args.out)
    check_out_dir(args.data, "--data", "the sample file")
    run_demo(Path(args.out), Path(args.data))
    return 0


def register(sub, parents=()) -> None:
    sp = sub.add_parser(
        "demo",
        parents=list(parents),
        help="write a sample file, index it and reduce it",
        description="Write a small CF netCDF4 file, index it, and print a few reductions next "
        "to the same numbers read directly with h5py.",
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    index_dir_option(sp)
    sp.add_argument(
        "--data",
        type=path_text,
        default="data",
        metavar="DIR",
        help="where the sample netCDF file goes (default: data/)",
    )
    sp.set_defaults(func=cmd_demo)
