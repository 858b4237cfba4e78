"""``activezarr combine``: the catalog's files of one variable as one virtual index."""

from __future__ import annotations

from pathlib import Path

from ..errors import shown
from ._common import FORMATTER
from ._inputs import check_out_file, check_writable, name_text, path_text
from ._narrow import catalog_option, open_catalog

EPILOG = """\
examples:
  activezarr combine --var tas                                  # -> indexes/combined_tas_time.json
  activezarr combine --catalog idx --var pr --path "*ssp585*"
  activezarr combine --var tas --out indexes/tas_all.json

The files need one chunk grid (the same chunks, whole chunks along the concatenated dimension
except in the last file); when they do not, use `activezarr catalog reduce`."""


def cmd_combine(args) -> int:
    if args.out is not None:
        check_out_file(args.out)
    elif "://" not in args.catalog and Path(args.catalog).is_dir():
        fix = "combine writes beside the catalog: give --out FILE in a directory you can write"
        check_writable(Path(args.catalog), "--catalog", fix)
    cat = open_catalog(args, var=args.var)
    out = cat.combine(var=args.var, concat_dim=args.concat_dim, out=args.out)
    print(shown(out))
    return 0


def register(sub, parents=()) -> None:
    sp = sub.add_parser(
        "combine",
        parents=list(parents),
        help="combine the catalog's files into one virtual index",
        description="Concatenate the indexes of the catalog's files holding one variable along "
        "a dimension into one virtual kerchunk index, recorded in the catalog.",
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    catalog_option(sp)
    sp.add_argument("--var", type=name_text, required=True, help="variable to combine (required)")
    sp.add_argument(
        "--concat-dim",
        type=name_text,
        default="time",
        metavar="DIM",
        help="dimension to concatenate along (default: time)",
    )
    sp.add_argument(
        "--out",
        type=path_text,
        metavar="FILE",
        help="output index (default: DIR/combined_VAR_DIM.json beside the catalog)",
    )
    sp.set_defaults(func=cmd_combine)
