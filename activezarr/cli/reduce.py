"""``activezarr reduce``: one reduction over a selection of one index's variable."""

from __future__ import annotations

from ._common import (
    FORMATTER,
    check_server_reads,
    describe_value,
    dumps,
    index_options,
    naming_selection,
    parse_axis,
    parse_selection,
    remote_options,
    server_backend,
    server_options,
    storage_options,
    to_jsonable,
    value_of,
)
from ._inputs import name_text, path_text, resolve_index

OPS = ["mean", "sum", "min", "max", "count"]

EPILOG = """\
examples:
  activezarr reduce indexes/tas.json tas --op mean --select "0:12,:,10:20"
  activezarr reduce indexes/tas.json tas --op max --axis 0 --json      # a map, as JSON
  activezarr reduce tas.nc tas --op mean --select -1:                  # indexes tas.nc first

--select takes numpy-style selections: integers, start:stop:step (negative bounds count from
the end) and ... for the remaining dimensions. --json prints strict JSON: "result" and "count"
are numbers or nested lists, null where no valid value was seen, and the strings "NaN",
"Infinity" and "-Infinity" for non-finite results."""


def cmd_reduce(args) -> int:
    import numpy as np

    from ..active import Active

    so = storage_options(args)
    selection = parse_selection(args.select)
    axis = parse_axis(args.axis)
    options = server_backend(args)  # its usage errors before any file is touched
    index = resolve_index(args.index, so)
    options["check_stale"] = not args.no_check_stale
    options["allow_paths"] = args.allow_path
    with Active(index, args.variable, storage_options=so, **options) as a:
        check_server_reads(args.server, list(a.index.urls))
        with naming_selection(args):
            parts = a.reduce(args.op, selection, axis, components=True)
        count = parts["count"]
        value = value_of(args.op, parts)
        if args.json:
            payload = {
                "op": args.op,
                "variable": args.variable,
                "result": to_jsonable(value),
                "count": to_jsonable(count),
                "dtype": str(np.asarray(value).dtype),
                "shape": list(np.shape(value)),
                "stats": a.stats.as_dict(),
            }
            print(dumps(payload))
        else:
            print(describe_value(args.op, args.variable, value, count))
    return 0


def register(sub, parents=()) -> None:
    sp = sub.add_parser(
        "reduce",
        parents=list(parents),
        help="reduce a variable over a selection",
        description="Reduce one variable of an index (mean, sum, min, max or count) over a "
        "selection, on this machine or on a Reductionist server next to the data. Given a "
        "netCDF4/HDF5 file instead of an index, index it into indexes/ first.",
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    sp.add_argument(
        "index",
        type=path_text,
        help="index file (.json), parquet index directory, URL, or a .nc file",
    )
    sp.add_argument(
        "variable", type=name_text, help="variable name, e.g. tas (see `activezarr info INDEX`)"
    )
    sp.add_argument("--op", required=True, choices=OPS, help="the reduction (required)")
    sp.add_argument(
        "--select",
        metavar="SEL",
        help='selection, e.g. "0:12,:,10:20", "3,...,::2" or -1: (default: everything)',
    )
    sp.add_argument(
        "--axis", metavar="AXES", help="axes to reduce, e.g. 0 or 0,2 (default: all axes)"
    )
    sp.add_argument("--json", action="store_true", help="print strict JSON for scripts")
    server_options(sp)
    remote_options(sp)
    index_options(sp)
    sp.set_defaults(func=cmd_reduce)
