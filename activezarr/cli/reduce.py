"""``activezarr reduce``: one reduction over a selection of one index's variable."""

from __future__ import annotations

import json

import numpy as np

from ._common import (
    index_options,
    parse_axis,
    parse_selection,
    remote_options,
    storage_options,
    to_jsonable,
    value_of,
)


def cmd_reduce(args) -> int:
    from ..active import Active

    options = {}
    if args.server:
        options = {"backend": "reductionist", "server": args.server}
        if args.server_ca:
            options["server_ca"] = args.server_ca
    options["check_stale"] = not args.no_check_stale
    options["allow_paths"] = args.allow_path
    with Active(args.index, args.variable, storage_options=storage_options(args), **options) as a:
        selection = parse_selection(args.select)
        axis = parse_axis(args.axis)
        parts = a.reduce(args.op, selection, axis, components=True)
        count = parts["count"]
        value = value_of(args.op, parts)
        if args.json:
            print(
                json.dumps(
                    {
                        "op": args.op,
                        "variable": args.variable,
                        "result": to_jsonable(value),
                        "count": to_jsonable(count),
                        "dtype": str(np.asarray(value).dtype),
                        "shape": list(np.shape(value)),
                        "stats": a.stats.as_dict(),
                    }
                )
            )
        else:
            print(f"{args.op} of {args.variable}: {value}")
            print(f"count: {count}")
    return 0


def register(sub) -> None:
    sp = sub.add_parser("reduce", help="reduce a variable over a selection")
    sp.add_argument("index")
    sp.add_argument("variable")
    sp.add_argument("--op", required=True, choices=["mean", "sum", "min", "max", "count"])
    sp.add_argument("--select", help='selection, e.g. "0:2,4:6,7:9" or "3,...,::2"')
    sp.add_argument("--axis", help="axes to reduce, e.g. 0 or 0,2 (default: all)")
    sp.add_argument("--server", help="Reductionist server URL (default: reduce locally)")
    sp.add_argument(
        "--server-ca", metavar="PATH", help="CA bundle (PEM) that signed the server's certificate"
    )
    sp.add_argument("--json", action="store_true", help="print JSON for scripts")
    remote_options(sp)
    index_options(sp)
    sp.set_defaults(func=cmd_reduce)
