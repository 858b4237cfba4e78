"""``activezarr reduce``: one reduction over a selection of one index's variable."""

from __future__ import annotations

import numpy as np

from ..errors import ActiveZarrError
from ._common import (
    FORMATTER,
    describe_value,
    dumps,
    index_options,
    parse_axis,
    parse_selection,
    remote_options,
    storage_options,
    to_jsonable,
    value_of,
)
from ._inputs import resolve_index, server_url

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


def _check_server_reaches(active, server: str) -> None:
    """Reductionist reads S3 and HTTP(S) objects only: refuse an index of local files."""
    local = [u for u in active.index.urls if "://" not in u or u.startswith("file://")]
    if local and len(local) == len(active.index.urls):
        raise ActiveZarrError(
            f"--server {server}: {active.source} points at local files ({local[0]}), which a "
            "Reductionist server cannot read; drop --server to reduce on this machine, or index "
            "the files from s3:// or https:// URLs the server can reach"
        )


def cmd_reduce(args) -> int:
    from ..active import Active

    so = storage_options(args)
    selection = parse_selection(args.select)
    axis = parse_axis(args.axis)
    index = resolve_index(args.index, so)
    options = {}
    if args.server:
        options = {"backend": "reductionist", "server": args.server}
        if args.server_ca:
            options["server_ca"] = args.server_ca
    options["check_stale"] = not args.no_check_stale
    options["allow_paths"] = args.allow_path
    with Active(index, args.variable, storage_options=so, **options) as a:
        if args.server:
            _check_server_reaches(a, args.server)
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
    sp.add_argument("index", help="index file (.json), parquet index directory, URL, or a .nc file")
    sp.add_argument("variable", help="variable name, e.g. tas (see `activezarr info INDEX`)")
    sp.add_argument("--op", required=True, choices=OPS, help="the reduction (required)")
    sp.add_argument(
        "--select",
        metavar="SEL",
        help='selection, e.g. "0:12,:,10:20", "3,...,::2" or -1: (default: everything)',
    )
    sp.add_argument(
        "--axis", metavar="AXES", help="axes to reduce, e.g. 0 or 0,2 (default: all axes)"
    )
    sp.add_argument(
        "--server",
        type=server_url,
        metavar="URL",
        help="Reductionist server URL, for data on S3/HTTPS (default: reduce on this machine)",
    )
    sp.add_argument(
        "--server-ca",
        metavar="PATH",
        help="CA bundle (PEM) that signed the server's certificate (default: the system's)",
    )
    sp.add_argument("--json", action="store_true", help="print strict JSON for scripts")
    remote_options(sp)
    index_options(sp)
    sp.set_defaults(func=cmd_reduce)
