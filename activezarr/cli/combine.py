"""``activezarr combine``: the catalog's files of one variable as one virtual index."""

from __future__ import annotations

from pathlib import Path

from ._common import catalog_option, open_catalog


def cmd_combine(args) -> int:
    cat = open_catalog(args)
    out = cat.combine(var=args.var, concat_dim=args.concat_dim, out=args.out)
    print(out)
    return 0


def register(sub) -> None:
    sp = sub.add_parser("combine", help="combine the catalog's files into one virtual index")
    catalog_option(sp)
    sp.add_argument("--var", required=True, help="variable to combine")
    sp.add_argument("--concat-dim", default="time", help="dimension to concatenate along")
    sp.add_argument("--out", type=Path, help="output index (default: DIR/combined_VAR_DIM.json)")
    sp.set_defaults(func=cmd_combine)
