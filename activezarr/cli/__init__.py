"""The ``activezarr`` command: parse arguments, call the library, print; errors are one line.

One module per command group (``index``, ``info``/``versions``, ``reduce``, ``demo``,
``catalog ...``, ``combine``); each registers its subcommands here. Nothing imports the CLI.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from . import catalog, combine, demo, index, info, reduce
from ._common import run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="activezarr",
        description="Index netCDF4/HDF5 files once, then reduce them where the data lives.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress and details")
    sub = p.add_subparsers(dest="command", required=True)
    index.register(sub)
    info.register(sub)
    reduce.register(sub)
    demo.register(sub)
    catalog.register(sub)
    combine.register(sub)
    info.register_versions(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    warnings.simplefilter("default")
    return run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
